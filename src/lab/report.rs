//! What `amwall lab` prints: the flow table, the exposure check, one verdict line.

use std::fmt;

use super::check::{FindingKind, Report, Status};

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line += cell;
            } else {
                line += cell;
                line += &" ".repeat(width[c] - cell.chars().count() + 2);
            }
        }
        out += "  ";
        out += line.trim_end();
        out += "\n";
    }
    out
}

fn ports(v: &[crate::ports::PortRange]) -> String {
    v.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for Report {
    // Long: the lab report's sections in print order; to be cut per section with the shared
    // table formatter (issue 11)
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = self.backend.name();
        let auth = self
            .auth
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            f,
            "amwall lab {}: {backend}, auth {auth}{}",
            self.topology,
            if self.auth.iter().any(|a| a.is_udp()) {
                if self.helper {
                    ", conntrack helper on"
                } else {
                    ", conntrack helper off"
                }
            } else {
                ""
            }
        )?;
        let nets = self
            .networks
            .iter()
            .map(|n| format!("{} {} → {}", n.name, n.original, n.mapped))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(f, "Lab addresses (documentation ranges only): {nets}")?;
        writeln!(f)?;
        writeln!(
            f,
            "Required flows (a probe passes when the responder sees the address and source-port class the plan says, and UDP answers come back):"
        )?;
        let mut rows = vec![vec![
            "#".to_string(),
            "operation".into(),
            "initiator → responder".into(),
            "proto".into(),
            "dport".into(),
            "sport".into(),
            "probe".into(),
            "responder saw".into(),
            "result".into(),
        ]];
        for r in &self.flows {
            let via = if r.via.is_empty() {
                String::new()
            } else {
                format!(" via {}", r.via.join(", "))
            };
            let result = match r.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::NotProbed => "not probed",
            };
            let result = if r.detail.is_empty() {
                result.to_string()
            } else {
                format!("{result}: {}", r.detail)
            };
            rows.push(vec![
                r.id.to_string(),
                r.operation.to_string(),
                format!("{} → {}{via}", r.initiator, r.responder),
                r.proto.to_string(),
                r.dport.to_string(),
                r.sport.map_or("any".into(), |s| s.to_string()),
                r.probe.clone(),
                r.seen.clone().unwrap_or_else(|| "-".into()),
                result,
            ]);
        }
        f.write_str(&table(&rows))?;
        writeln!(f)?;
        let e = &self.exposure;
        writeln!(
            f,
            "Exposure: {} probes from every host to every address of every other host ({} pairs), tcp and udp, to ports {}, each from an ephemeral source port and from a port of each source range Amanda uses.",
            e.probes,
            e.pairs,
            ports(&crate::ports::merge_ranges(
                e.dports.iter().map(|p| crate::ports::PortRange::single(*p)).collect()
            ))
        )?;
        writeln!(
            f,
            "  {} arrived, {} of them needed by a flow or the management service; {} had no route.",
            e.arrived, e.needed, e.unroutable
        )?;
        for x in &e.findings {
            let kind = match x.kind {
                FindingKind::Unneeded => "reachable but not needed",
                FindingKind::Blocked => "needed but blocked",
                FindingKind::Misrouted => "arrived at the wrong host",
                FindingKind::OnPath => "reachable from the masquerading router itself",
            };
            writeln!(
                f,
                "  FAIL {kind}: {} → {} {} {} (source port {}){}: {}",
                x.src,
                x.dst,
                x.proto,
                ports(&x.dports),
                x.sport,
                x.arrived_at
                    .as_ref()
                    .map(|h| format!(", arrived at {h}"))
                    .unwrap_or_default(),
                x.why
            )?;
        }
        if e.findings.is_empty() {
            writeln!(
                f,
                "  Nothing reachable beyond need, and every needed edge reachable."
            )?;
        }
        for x in &e.on_path {
            writeln!(
                f,
                "  note: {} → {} {} {} (source port {}) also arrives: {}; the router is on that path anyway (only its own OUTPUT could refuse this).",
                x.src,
                x.dst,
                x.proto,
                ports(&x.dports),
                x.sport,
                x.why
            )?;
        }
        for n in &e.notes {
            writeln!(f, "  note: {n}")?;
        }
        writeln!(f)?;
        let failed = self.failed_flows();
        let probed = self
            .flows
            .iter()
            .filter(|r| r.status != Status::NotProbed)
            .count();
        let passed = probed - failed;
        let not_probed = self.flows.len() - probed;
        let np = if not_probed > 0 {
            format!(" ({not_probed} not probed)")
        } else {
            String::new()
        };
        if self.passed() {
            writeln!(
                f,
                "Verdict: PASS: {passed} of {probed} flows pass{np}, nothing reachable beyond need ({backend}, {auth}, {:.1} s).",
                self.seconds
            )
        } else {
            writeln!(
                f,
                "Verdict: FAIL: {failed} of {probed} flows fail{np}, {} exposure findings ({backend}, {auth}, {:.1} s).",
                e.findings.len(),
                self.seconds
            )
        }
    }
}
