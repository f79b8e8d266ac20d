//! What `amwall lab` prints: the flow table, the exposure check (IPv4, then
//! IPv6 per host with neighbour discovery), one verdict line.

use std::fmt;

use super::check::{ExposureFinding, ExposureKind, LabReport, Status};
use crate::table;

fn ports(v: &[crate::ports::PortRange]) -> String {
    v.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for LabReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.header(f)?;
        writeln!(f)?;
        self.flows(f)?;
        writeln!(f)?;
        self.exposure(f)?;
        writeln!(f)?;
        self.ipv6(f)?;
        writeln!(f)?;
        self.verdict(f)
    }
}

impl LabReport {
    fn auth_list(&self) -> String {
        self.auth
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn header(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = self.backend.name();
        let auth = self.auth_list();
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
            .map(|n| match (n.original.zip(n.mapped), n.original6) {
                (Some((o, m)), Some(o6)) => {
                    format!("{} {o} → {m} (IPv6 {o6} → {})", n.name, n.mapped6)
                }
                (Some((o, m)), None) => {
                    format!("{} {o} → {m} (IPv6: the lab's own {})", n.name, n.mapped6)
                }
                (None, o6) => format!(
                    "{} IPv6-only {} → {}",
                    n.name,
                    o6.map_or_else(String::new, |o| o.to_string()),
                    n.mapped6
                ),
            })
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(f, "Lab addresses (documentation ranges only): {nets}")?;
        Ok(())
    }

    fn flows(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Required flows (a probe passes when the responder sees the address and source-port class the plan says, and UDP answers come back):"
        )?;
        let mut rows = vec![[
            "#",
            "operation",
            "initiator → responder",
            "proto",
            "dport",
            "sport",
            "probe",
            "responder saw",
            "result",
        ]
        .map(String::from)
        .to_vec()];
        for r in &self.flows {
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
                r.flow.id.to_string(),
                r.flow.operation.name().to_string(),
                r.flow.who(),
                r.flow.proto.to_string(),
                r.flow.dport.to_string(),
                r.flow.sport_cell(),
                r.probe.clone(),
                r.seen.clone().unwrap_or_else(|| "-".into()),
                result,
            ]);
        }
        f.write_str(&table::render(table::Layout { indent: 2, gap: 2 }, &rows))
    }

    fn exposure(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
                ExposureKind::Unneeded => "reachable but not needed",
                ExposureKind::Blocked => "needed but blocked",
                ExposureKind::Misrouted => "arrived at the wrong host",
                ExposureKind::OnPath => "reachable from the masquerading router itself",
            };
            finding(f, kind, x)?;
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
        Ok(())
    }

    fn ipv6(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.ipv6;
        writeln!(
            f,
            "IPv6: {} probes from every host to every IPv6 address of every other host ({} pairs), tcp and udp, on the same ports from the same source ports, to listeners on :: everywhere; then each host pings a neighbour on each link after every neighbour cache was flushed.",
            e.probes, e.pairs
        )?;
        writeln!(
            f,
            "  {} arrived, {} of them accepted by the responder's IPv6 policy (management, what IPv6 needs, Amanda's IPv6 flows); {} had no route.",
            e.arrived, e.needed, e.unroutable
        )?;
        let mut rows = vec![[
            "host",
            "IPv6 addresses",
            "arrived",
            "needed",
            "beyond need",
            "neighbour discovery",
        ]
        .map(String::from)
        .to_vec()];
        for h in &e.hosts {
            let mine: Vec<_> = e.neighbours.iter().filter(|n| n.src == h.host).collect();
            let ok = mine.iter().filter(|n| n.status == Status::Pass).count();
            rows.push(vec![
                h.host.clone(),
                h.addresses.join(", "),
                h.arrived.to_string(),
                h.needed.to_string(),
                h.beyond_need.to_string(),
                if mine.is_empty() {
                    "-".into()
                } else if ok == mine.len() {
                    format!("PASS ({ok} of {})", mine.len())
                } else {
                    format!("FAIL ({ok} of {})", mine.len())
                },
            ]);
        }
        f.write_str(&table::render(table::Layout { indent: 2, gap: 2 }, &rows))?;
        for x in &e.findings {
            let kind = match x.kind {
                ExposureKind::Misrouted => "arrived over IPv6 at the wrong host",
                ExposureKind::Blocked => "needed over IPv6 but blocked",
                _ => "reachable over IPv6 but not needed",
            };
            finding(f, kind, x)?;
        }
        for n in e.neighbours.iter().filter(|n| n.status != Status::Pass) {
            writeln!(
                f,
                "  FAIL {} → {} on {}: {}",
                n.src, n.dst, n.link, n.detail
            )?;
        }
        if e.passed() {
            writeln!(
                f,
                "  Nothing reachable over IPv6 beyond need, and neighbour discovery works on every link."
            )?;
        }
        Ok(())
    }

    fn verdict(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = self.backend.name();
        let auth = self.auth_list();
        let e = &self.exposure;
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
            "Verdict: PASS: {passed} of {probed} flows pass{np}, nothing reachable beyond need over IPv4 or IPv6 ({backend}, {auth}, {:.1} s).",
            self.seconds
        )
        } else {
            writeln!(
            f,
            "Verdict: FAIL: {failed} of {probed} flows fail{np}, {} exposure findings, {} IPv6 findings ({backend}, {auth}, {:.1} s).",
            e.findings.len(),
            self.ipv6.findings.len() + self.ipv6.failed_neighbours(),
            self.seconds
        )
        }
    }
}

/// One exposure finding's line, IPv4's and IPv6's alike.
fn finding(f: &mut fmt::Formatter<'_>, kind: &str, x: &ExposureFinding) -> fmt::Result {
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
    )
}

#[cfg(test)]
mod tests {
    use super::super::check::testing::wiki;
    use super::super::check::{
        Exposure, ExposureFinding, Host6, Ipv6Exposure, Neighbour, ProbedFlow,
    };
    use super::*;
    use crate::amanda::settings::Auth;
    use crate::netfilter::Backend;
    use crate::ports::{PortRange, Proto};
    use crate::view::FlowView;

    /// What people read after a lab run, pinned: the columns, the exposure
    /// lines and the verdict are what the README and the issues quote.
    #[test]
    fn the_report_reads_as_pinned() {
        let plan = wiki(Auth::Bsd, true);
        let d = &plan.deployment;
        let probed = |i: usize, status, seen: Option<&str>, detail: &str| ProbedFlow {
            flow: FlowView::new(d, i, &plan.flows[i], &plan.paths[i]).into_owned(),
            probe: format!("probe {}", i + 1),
            seen: seen.map(String::from),
            status,
            detail: detail.into(),
        };
        let rhost = (0..plan.flows.len())
            .find(|&i| plan.paths[i].routers().next().is_some())
            .expect("a flow through the router");
        let exposed = |kind, at: Option<&str>| ExposureFinding {
            kind,
            src: "lhost".into(),
            dst: "tshost/eth0 192.0.2.2".into(),
            proto: Proto::Tcp,
            sport: 40000,
            dports: vec![PortRange::single(22), PortRange::new(10080, 10083)],
            arrived_at: at.map(String::from),
            why: "no flow needs it".into(),
        };
        let r = LabReport {
            topology: "examples/wiki.toml".into(),
            backend: Backend::Iptables,
            auth: vec![Auth::Bsd],
            helper: true,
            networks: vec![crate::lab::map::NetMap {
                name: "lan".into(),
                original: Some("192.168.2.0/24".parse().unwrap()),
                mapped: Some("192.0.2.0/24".parse().unwrap()),
                original6: None,
                mapped6: "2001:db8:1ab::/64".parse().unwrap(),
            }],
            flows: vec![
                probed(0, Status::Pass, Some("tshost:840"), ""),
                probed(rhost, Status::Fail, None, "nothing arrived"),
                probed(1, Status::NotProbed, None, ""),
            ],
            exposure: Exposure {
                probes: 120,
                pairs: 12,
                arrived: 30,
                needed: 29,
                unroutable: 2,
                dports: vec![22, 10080, 10081, 10082, 10083],
                findings: vec![exposed(ExposureKind::Unneeded, Some("tshost"))],
                on_path: vec![exposed(ExposureKind::OnPath, None)],
                notes: vec!["the helper opened 50000 on its own".into()],
            },
            ipv6: Ipv6Exposure {
                probes: 120,
                pairs: 12,
                arrived: 3,
                needed: 2,
                unroutable: 0,
                dports: vec![22, 80],
                hosts: vec![
                    Host6 {
                        host: "tshost".into(),
                        addresses: vec!["2001:db8:1ab::2".into()],
                        arrived: 3,
                        needed: 2,
                        beyond_need: 1,
                    },
                    Host6 {
                        host: "lhost".into(),
                        addresses: vec!["2001:db8:1ab::3".into()],
                        arrived: 0,
                        needed: 0,
                        beyond_need: 0,
                    },
                ],
                findings: vec![ExposureFinding {
                    dst: "tshost 2001:db8:1ab::2".into(),
                    dports: vec![PortRange::single(80)],
                    why: "no IPv6 rule of tshost's plan accepts it".into(),
                    ..exposed(ExposureKind::Unneeded, Some("tshost"))
                }],
                neighbours: vec![
                    Neighbour {
                        link: "lan".into(),
                        src: "tshost".into(),
                        dst: "lhost 2001:db8:1ab::3".into(),
                        status: Status::Pass,
                        detail: String::new(),
                    },
                    Neighbour {
                        link: "lan".into(),
                        src: "lhost".into(),
                        dst: "tshost 2001:db8:1ab::2".into(),
                        status: Status::Fail,
                        detail: "neighbour discovery fails: no answer to the neighbour solicitation (neighbour entry FAILED): ICMPv6 types 135/136 dropped?".into(),
                    },
                ],
            },
            seconds: 12.34,
        };
        let text = r.to_string();
        let want = include_str!("report.pinned.txt");
        assert_eq!(text, want, "lab report text changed:\n{text}");
    }
}
