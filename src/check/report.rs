//! The check report as text (for people) and JSON (for CI pipelines).

use std::fmt::Write;

use super::flows::{Finding, FlowVerdict, Problem, Status};
use super::redundant::Kind;
use super::Report;
use crate::picture::{Mark, Verdicts};
use crate::table;

/// Lines of open-port findings printed per host in text; JSON has them all.
pub const TEXT_LIMIT: usize = 40;

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pass => "PASS",
        Status::Blocked => "BLOCKED",
        Status::Unknown => "UNKNOWN",
    }
}

/// The verdicts for `check --svg`: a blocked flow is marked on the host whose
/// rule drops it (the first certain finding's, else the first finding's).
pub fn verdicts(r: &Report) -> Verdicts {
    let marks = r
        .flows
        .iter()
        .map(|f| match f.result.status {
            Status::Pass => Mark::Pass,
            Status::Unknown => Mark::Unknown,
            Status::Blocked => {
                let fs = &f.result.findings;
                let drop = |x: &&Finding| matches!(x.problem, Problem::Blocked { .. });
                let at = fs
                    .iter()
                    .filter(drop)
                    .find(|x| x.certain)
                    .or_else(|| fs.iter().find(drop))
                    .or(fs.first());
                Mark::Blocked {
                    host: at.map(|x| x.host.clone()),
                }
            }
        })
        .collect();
    Verdicts {
        title: "check".into(),
        marks,
    }
}

/// The report for people: the rulesets read, every flow with its findings,
/// what is open beyond need, redundant rules, and one verdict line.
pub fn text(r: &Report) -> String {
    let mut o = String::new();
    header(r, &mut o);
    flows(r, &mut o);
    open_beyond_need(r, &mut o);
    redundant(r, &mut o);
    verdict(r, &mut o);
    o
}

fn header(r: &Report, o: &mut String) {
    let total_rules: usize = r.hosts.iter().map(|h| h.rules).sum();
    match &r.topology {
        Some(t) => writeln!(
            o,
            "amwall check {t}: {} flows; rulesets for {} hosts ({total_rules} rules)",
            r.flows.len(),
            r.hosts.len()
        )
        .unwrap(),
        None => writeln!(
            o,
            "amwall check (no topology): {} rulesets ({total_rules} rules); no flows to check, so everything accepted is reported",
            r.hosts.len()
        )
        .unwrap(),
    }
    for w in &r.warnings {
        writeln!(o, "warning: {w}").unwrap();
    }
    for h in &r.hosts {
        writeln!(
            o,
            "  {}: {} ({}), {} rules, {} not understood",
            h.host,
            h.files.join(", "),
            h.formats.join(", "),
            h.rules,
            h.unknown_matches
        )
        .unwrap();
        for w in &h.warnings {
            writeln!(o, "    note: {w}").unwrap();
        }
    }
}

/// The flow table, each row followed by its findings and notes.
fn flows(r: &Report, o: &mut String) {
    if r.flows.is_empty() {
        return;
    }
    writeln!(
        o,
        "\nFlows (each checked for every port it may use: first packet, reply, later packets)"
    )
    .unwrap();
    let mut rows = vec![[
        "#",
        "operation",
        "initiator → responder",
        "proto",
        "dport",
        "result",
    ]
    .map(String::from)
    .to_vec()];
    rows.extend(r.flows.iter().map(|f| {
        vec![
            f.flow.id.to_string(),
            f.flow.operation.name().to_string(),
            f.flow.who(),
            f.flow.proto.to_string(),
            f.flow.dport.to_string(),
            result_cell(&f.result),
        ]
    }));
    let lines = table::render(table::Layout { indent: 2, gap: 1 }, &rows);
    let mut lines = lines.lines();
    writeln!(o, "{}", lines.next().expect("the header row")).unwrap();
    for (line, f) in lines.zip(&r.flows) {
        writeln!(o, "{line}").unwrap();
        for x in &f.result.findings {
            finding(x, o);
        }
        if let Some(m) = &f.result.amanda {
            writeln!(o, "      Amanda: {m}").unwrap();
        }
        // Shown for passing flows too: a pass that rests on the helper
        // should say which rule it rests on.
        for n in &f.result.notes {
            writeln!(o, "      note: {n}").unwrap();
        }
    }
}

/// The result column: PASS, or the first certain finding (else the first).
fn result_cell(v: &FlowVerdict) -> String {
    match v.findings.iter().find(|x| x.certain).or(v.findings.first()) {
        None => "PASS".to_string(),
        Some(x) => {
            let at = match &x.problem {
                Problem::Blocked { at, .. } => format!(" at {at}"),
                Problem::Unknown { at: Some(at), .. } => format!(" at {at}"),
                Problem::Nat { .. } => " (NAT)".into(),
                Problem::SourcePort { .. } => " (source port)".into(),
                _ => String::new(),
            };
            format!("{} on {}{at}", status_word(v.status), x.host)
        }
    }
}

fn finding(x: &Finding, o: &mut String) {
    let certainty = if x.certain { "" } else { " (uncertain)" };
    let part = if x.partial { " part of the flow:" } else { "" };
    match &x.problem {
        Problem::Blocked {
            at,
            chain_path,
            depends_on,
            manager,
        } => {
            writeln!(
                o,
                "      {} blocked{certainty} on {} at {at}: {}",
                x.packet.name(),
                x.host,
                at.text
            )
            .unwrap();
            writeln!(o, "        whose rule: {manager}").unwrap();
            writeln!(
                o,
                "        chain: {}{}; packets:{part} {}",
                chain_path.join(" → "),
                x.hook.map(|h| format!(" ({h})")).unwrap_or_default(),
                x.packets
            )
            .unwrap();
            if !depends_on.is_empty() {
                writeln!(
                    o,
                    "        only if undecidable matches go this way: {}",
                    depends_on
                        .iter()
                        .map(|l| l.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
                .unwrap();
            }
        }
        Problem::Unknown { at, what } => {
            writeln!(
                o,
                "      {} undecided on {}{}: {what}; packets: {}",
                x.packet.name(),
                x.host,
                at.as_ref()
                    .map(|a| format!(" at {a} ({})", a.text))
                    .unwrap_or_default(),
                x.packets
            )
            .unwrap();
        }
        Problem::Nat { message } => {
            writeln!(o, "      {}: {message}", x.packet.name()).unwrap();
        }
        Problem::SourcePort { port } => {
            writeln!(
                o,
                "      {} reaches {} from source port {port}: Amanda needs a privileged (< 1024) source port",
                x.packet.name(),
                x.host
            )
            .unwrap();
        }
    }
}

fn open_beyond_need(r: &Report, o: &mut String) {
    let title = if r.topology.is_some() {
        "\nOpen beyond need (new connections the rulesets accept that no flow needs; management access counts as needed)"
    } else {
        "\nWhat each ruleset accepts for new connections"
    };
    if r.options.open {
        writeln!(o, "{title}").unwrap();
    }
    for h in r.hosts.iter().filter(|_| r.options.open) {
        writeln!(o, "  {}:", h.host).unwrap();
        let mut printed = 0usize;
        let mut hidden = 0usize;
        for v in &h.open {
            let n: usize = v.groups.iter().map(|g| g.lines.len()).sum();
            write!(o, "    {} {}:", v.family, v.view).unwrap();
            if n == 0 {
                writeln!(o, " nothing beyond need").unwrap();
            } else {
                writeln!(o).unwrap();
            }
            if let Some(a) = &v.assumption {
                writeln!(o, "      ({a})").unwrap();
            }
            for g in &v.groups {
                let verb = if v.view == super::open::HELPER_VIEW {
                    "helper assigned"
                } else {
                    "accepted"
                };
                let who = if g.certain {
                    format!("{verb} by {} {}", g.accepted_by, g.accepted_by.text)
                } else {
                    format!(
                        "may be {verb} by {} {} (depends on {})",
                        g.accepted_by,
                        g.accepted_by.text,
                        g.depends_on
                            .iter()
                            .map(|l| l.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                if printed >= TEXT_LIMIT {
                    hidden += g.lines.len();
                    continue;
                }
                writeln!(o, "      {who}:").unwrap();
                for l in &g.lines {
                    if printed >= TEXT_LIMIT {
                        hidden += 1;
                        continue;
                    }
                    writeln!(o, "        {l}").unwrap();
                    printed += 1;
                }
            }
        }
        if hidden > 0 {
            writeln!(
                o,
                "    ... and {hidden} more lines (--format json lists them all)"
            )
            .unwrap();
        }
    }
}

fn redundant(r: &Report, o: &mut String) {
    if r.options.redundant {
        writeln!(o, "\nRedundant and shadowed rules").unwrap();
    }
    let mut any = !r.options.redundant;
    for h in r.hosts.iter().filter(|_| r.options.redundant) {
        if h.redundant.is_empty() {
            continue;
        }
        any = true;
        writeln!(o, "  {}:", h.host).unwrap();
        for (i, x) in h.redundant.iter().enumerate() {
            if i >= TEXT_LIMIT {
                writeln!(
                    o,
                    "    ... and {} more (--format json lists them all)",
                    h.redundant.len() - i
                )
                .unwrap();
                break;
            }
            let kind = match x.kind {
                Kind::Shadowed => "shadowed",
                Kind::Redundant => "redundant",
                Kind::NeverMatches => "never matches",
            };
            let by = if x.by.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    x.by.iter()
                        .map(|l| l.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            writeln!(o, "    {} {kind}: {}; {}{by}", x.rule, x.rule.text, x.note).unwrap();
        }
    }
    if !any {
        writeln!(o, "  none").unwrap();
    }
}

fn verdict(r: &Report, o: &mut String) {
    if !r.flows.is_empty() {
        let (b, u) = (r.blocked(), r.unknown());
        let pass = r.flows.len() - b - u;
        writeln!(
            o,
            "\nVerdict: {}: {pass} of {} flows pass{}{}.",
            if b > 0 {
                "BLOCKED"
            } else if u > 0 {
                "UNDECIDED"
            } else {
                "PASS"
            },
            r.flows.len(),
            if b > 0 {
                format!(", {b} blocked")
            } else {
                String::new()
            },
            if u > 0 {
                format!(", {u} undecided (matches amwall cannot evaluate)")
            } else {
                String::new()
            },
        )
        .unwrap();
    }
}

pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("JSON of plain data")
}
