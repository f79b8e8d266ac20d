//! `amwall explain`: one packet's way through one host's ruleset, every
//! table and chain in hook order, every rule tried, the verdict.

use serde_json::json;

use super::load::HostRules;
use super::{cube_text, end_loc};
use crate::sim::engine::{ct_name, End, RuleRes, Step};
use crate::sim::{self, Compiled, Explained, Outcome, Route, Verdict};

fn route_text(r: Route) -> &'static str {
    match r {
        Route::Input => "input (for this host): prerouting, input",
        Route::Forward => "forwarded: prerouting, forward, postrouting",
        Route::Output => "output (sent by this host): output, postrouting",
    }
}

fn res_text(r: &RuleRes) -> &'static str {
    match r {
        RuleRes::NoMatch => "no match",
        RuleRes::Match => "MATCH",
        RuleRes::AssumedMatch => "unknown (this branch: matched)",
        RuleRes::AssumedNoMatch => "unknown (this branch: no match)",
        RuleRes::UnknownHarmless => "unknown (no effect either way)",
        RuleRes::PartMatch => "matches part (no effect)",
    }
}

fn chain_head(c: &Compiled, id: usize) -> String {
    let ch = &c.chains[id];
    let (fam, table) = &c.tables[ch.table];
    match &ch.base {
        Some(b) => format!(
            "{} {} {} (priority {}, policy {})",
            fam.name(),
            table,
            ch.name,
            b.priority,
            match b.policy {
                crate::netfilter::Policy::Accept => "accept",
                crate::netfilter::Policy::Drop => "drop",
            }
        ),
        None => format!("{} {} {}", fam.name(), table, ch.name),
    }
}

/// The trace of one outcome as lines.
pub fn trace_lines(hr: &HostRules, c: &Compiled, o: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 1usize;
    let pad = |d: usize| "  ".repeat(d);
    for step in o.state.trace.iter().flatten() {
        match step {
            Step::Hook(h) => {
                out.push(format!("{}:", h.name()));
                depth = 1;
            }
            Step::Enter { chain, how } => match *how {
                "base chain" | "base chain (nat)" => {
                    depth = 1;
                    out.push(format!("{}{}", pad(depth), chain_head(c, *chain)));
                }
                "back in" => {
                    out.push(format!(
                        "{}(back in {})",
                        pad(depth + 1),
                        c.chains[*chain].name
                    ));
                }
                how => {
                    depth += 1;
                    out.push(format!("{}{how} {}", pad(depth), chain_head(c, *chain)));
                }
            },
            Step::Rule { chain, rule, res } => {
                let loc = hr.loc(c, *chain, *rule);
                out.push(format!(
                    "{}{:<32} {:<16} {}",
                    pad(depth + 1),
                    loc.to_string(),
                    res_text(res),
                    loc.text
                ));
            }
            Step::End { chain, policy } => match policy {
                Some(acc) => out.push(format!(
                    "{}policy {}",
                    pad(depth + 1),
                    if *acc { "ACCEPT" } else { "DROP" }
                )),
                None => {
                    out.push(format!(
                        "{}end of {}: back to the caller",
                        pad(depth + 1),
                        c.chains[*chain].name
                    ));
                    depth = depth.saturating_sub(1).max(1);
                }
            },
            Step::Note(n) => out.push(format!("{}· {n}", pad(depth + 1))),
        }
    }
    out
}

pub fn outcome_text(hr: &HostRules, c: &Compiled, o: &Outcome) -> String {
    match &o.end {
        None => "ACCEPT (passed every hook)".into(),
        Some(End::Unknown { what, .. }) => {
            let loc = end_loc(hr, c, o.end.as_ref().expect("some")).expect("rule end");
            format!("UNKNOWN at {loc}: {what} ({})", loc.text)
        }
        Some(End::Loop { chain }) => format!(
            "UNKNOWN: jumps nested too deep at {}",
            c.chains[*chain].name
        ),
        Some(e) => {
            let loc = end_loc(hr, c, e).expect("drop has a location");
            let word = if matches!(e, End::Reject { .. }) {
                "REJECT"
            } else {
                "DROP"
            };
            format!("{word} at {loc}: {}", loc.text)
        }
    }
}

pub fn render_text(hr: &HostRules, ex: &Explained, packet_text: &str) -> String {
    let c = &ex.compiled;
    let mut out = String::new();
    let p = &ex.packet;
    out.push_str(&format!("Packet: {packet_text}\n"));
    out.push_str(&format!(
        "State: {}{}, route: {}\n",
        if p.untracked {
            "UNTRACKED".to_string()
        } else {
            ct_name(match p.state.unwrap_or(sim::CtBase::New) {
                sim::CtBase::New => crate::netfilter::CtState::New,
                sim::CtBase::Established => crate::netfilter::CtState::Established,
                sim::CtBase::Related => crate::netfilter::CtState::Related,
                sim::CtBase::Invalid => crate::netfilter::CtState::Invalid,
            })
            .to_string()
        },
        if p.dir == crate::netfilter::CtDirection::Reply {
            " (reply direction)"
        } else {
            ""
        },
        route_text(p.route())
    ));
    if p.iif.is_none() && p.route() != Route::Output {
        out.push_str(
            "No input interface given: every interface but lo is considered (add [in IF]).\n",
        );
    }
    out.push_str(&format!("Ruleset: {}\n", hr.file_names()));
    for s in &c.skipped {
        out.push_str(&format!("note: {s}\n"));
    }
    let many = ex.outcomes.len() > 1;
    for (i, o) in ex.outcomes.iter().enumerate() {
        out.push('\n');
        if many {
            out.push_str(&format!(
                "── Part {} of {}: {}\n",
                i + 1,
                ex.outcomes.len(),
                cube_text(&o.state.cube, c, true)
            ));
            if o.state.tainted() {
                let rules: Vec<String> = o
                    .state
                    .taint
                    .iter()
                    .map(|r| hr.loc(c, r.chain, r.rule).to_string())
                    .collect();
                out.push_str(&format!(
                    "   (a branch: undecidable matches at {})\n",
                    rules.join(", ")
                ));
            }
        }
        for l in trace_lines(hr, c, o) {
            out.push_str(&l);
            out.push('\n');
        }
        out.push_str(&format!("→ {}\n", outcome_text(hr, c, o)));
    }
    out.push_str(&format!(
        "\nVerdict: {}\n",
        match ex.verdict {
            Verdict::Accept => "ACCEPT".to_string(),
            Verdict::Drop => "DROP".to_string(),
            Verdict::Unknown =>
                "UNKNOWN (depends on matches amwall cannot decide; see the branches above)"
                    .to_string(),
            Verdict::Mixed =>
                "MIXED: some of the packets described pass, others do not".to_string(),
        }
    ));
    out
}

pub fn render_json(hr: &HostRules, ex: &Explained, packet_text: &str) -> serde_json::Value {
    let c = &ex.compiled;
    let parts: Vec<_> = ex
        .outcomes
        .iter()
        .map(|o| {
            json!({
                "packets": cube_text(&o.state.cube, c, true),
                "verdict": match &o.end { None => "accept", Some(End::Unknown{..}) | Some(End::Loop{..}) => "unknown", Some(End::Reject{..}) => "reject", Some(_) => "drop" },
                "at": o.end.as_ref().and_then(|e| end_loc(hr, c, e)),
                "branch_of": o.state.taint.iter().map(|r| hr.loc(c, r.chain, r.rule)).collect::<Vec<_>>(),
                "trace": trace_lines(hr, c, o),
            })
        })
        .collect();
    json!({
        "packet": packet_text,
        "files": hr.files.iter().map(|f| json!({"path": f.path, "format": f.format})).collect::<Vec<_>>(),
        "verdict": match ex.verdict { Verdict::Accept => "accept", Verdict::Drop => "drop", Verdict::Unknown => "unknown", Verdict::Mixed => "mixed" },
        "parts": parts,
        "notes": c.skipped,
    })
}
