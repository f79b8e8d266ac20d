//! `check` against what `plan` writes: every ruleset of every example × auth
//! mode re-parses (iptables-restore text with its ipset file, and the nft
//! script), and every flow passes through them. Negative controls: a needed
//! rule removed, or a DROP put in front of it, makes the flow BLOCKED at the
//! right FILE:LINE with the message Amanda prints (docs/design.md's table).

mod common;

use amwall::check::{self, HostRules, Options, Problem, RulesFile, Status};
use amwall::netfilter::ipset;
use amwall::Plan;

/// Each host's generated rules, as files `check` reads.
fn rules(plan: &Plan, nft: bool) -> Vec<(String, HostRules)> {
    let mut out = Vec::new();
    for hp in &plan.policies {
        let host = plan.deployment.hosts[hp.host].name.clone();
        let (path, text) = if nft {
            (format!("{host}.nft"), plan.nft(hp))
        } else {
            (format!("{host}.rules"), plan.iptables(hp))
        };
        let f = RulesFile::parse(&path, text).unwrap_or_else(|e| panic!("{path}: {e:?}"));
        let mut files = vec![f];
        if !nft {
            // HOST.rules6, as `check --rules HOST=HOST.rules --rules HOST=HOST.rules6`.
            let path6 = format!("{host}.rules6");
            files.push(RulesFile::parse(&path6, plan.ip6tables(hp)).expect("rules6 parses"));
        }
        // The `ipset restore` script plan writes, read as `check --ipset` reads it.
        let sets = (!nft)
            .then(|| plan.ipset(hp))
            .flatten()
            .map(|t| ipset::parse(&format!("{host}.ipset"), &t).expect("our ipset file parses"));
        out.push((host, HostRules::new(files, sets)));
    }
    out
}

fn describe(r: &check::Report) -> String {
    amwall::check::report::text(r)
}

#[test]
fn every_planned_ruleset_passes_check() {
    let mut checked = 0;
    for (label, plan) in common::variants() {
        for nft in [false, true] {
            let hosts = rules(&plan, nft);
            for (h, hr) in &hosts {
                assert_eq!(
                    hr.ruleset.unknown_count(),
                    0,
                    "{label}/{h}: unknown matches"
                );
            }
            let report = check::check(&plan, &hosts, Options::default());
            let bad: Vec<_> = report
                .flows
                .iter()
                .filter(|f| f.result.status != Status::Pass)
                .collect();
            assert!(
                bad.is_empty(),
                "{label} ({}): flows do not pass:\n{}",
                if nft { "nft" } else { "iptables" },
                describe(&report)
            );
            assert!(report.warnings.is_empty(), "{label}: {:?}", report.warnings);
            // Nothing planned is redundant or shadowed, except what the
            // management rule (kept on every host) already accepts: with ssh
            // auth amrecover's tcp 22 from the LAN duplicates it (reported to
            // the policy's owner).
            for h in &report.hosts {
                for r in &h.redundant {
                    assert!(
                        r.by.iter().any(|b| b.text.contains("management")),
                        "{label}/{}: {r:?}",
                        h.host
                    );
                }
            }
            checked += report.flows.len();
        }
    }
    assert!(checked > 400, "only {checked} flow checks");
}

/// The plan opens nothing that no flow needs, on plain hosts and routers,
/// with either backend: whatever input accepts beyond the flows is only for
/// the management service (counted as needed), and a router forwards only
/// what flows cross it (port forwards only for connections it DNAT'd).
#[test]
fn planned_rules_open_nothing_beyond_need() {
    for (label, plan) in common::variants() {
        for nft in [false, true] {
            let hosts = rules(&plan, nft);
            let report = check::check(&plan, &hosts, Options::default());
            for h in &report.hosts {
                assert!(!h.open.is_empty(), "{label}/{}: no open view", h.host);
                for v in &h.open {
                    assert!(
                        v.groups.is_empty(),
                        "{label}/{} ({}): {} accepts beyond need:\n{}",
                        h.host,
                        if nft { "nft" } else { "iptables" },
                        v.view,
                        describe(&report)
                    );
                }
            }
        }
    }
}

/// Without the DNAT condition, fwhost's forward rules for rhost's recovery
/// also pass packets sent straight to tshost's inner address: open beyond
/// need, reported at the rule's line with the exact extra packets.
#[test]
fn forward_without_dnat_condition_is_open_beyond_need() {
    let plan = wiki_bsd();
    let hosts = edited(&plan, "fwhost", &|t| {
        t.replace(" -m conntrack --ctstate DNAT", "")
    });
    let report = check::check(&plan, &hosts, Options::default());
    assert!(report.flows.iter().all(|f| f.result.status == Status::Pass));
    let fw = report.hosts.iter().find(|h| h.host == "fwhost").unwrap();
    let fwd = fw.open.iter().find(|v| v.view == "forward").unwrap();
    assert!(!fwd.groups.is_empty(), "{}", describe(&report));
    let text = describe(&report);
    assert!(
        text.contains("from 2.3.4.5 to 192.168.2.2 in eth1 out eth0"),
        "{text}"
    );
    let inp = fw.open.iter().find(|v| v.view == "input").unwrap();
    assert!(inp.groups.is_empty(), "{text}");
}

fn wiki_bsd() -> Plan {
    Plan::build(common::example("wiki").with_auth(amwall::amanda::settings::Auth::Bsd)).unwrap()
}

/// Replace `host`'s iptables file by `edit(text)`.
fn edited(plan: &Plan, host: &str, edit: &dyn Fn(&str) -> String) -> Vec<(String, HostRules)> {
    rules(plan, false)
        .into_iter()
        .map(|(h, hr)| {
            if h != host {
                return (h, hr);
            }
            let f = &hr.files[0];
            let text = edit(&f.text);
            (
                h,
                HostRules::new(vec![RulesFile::parse(&f.path, text).unwrap()], None),
            )
        })
        .collect()
}

/// docs/design.md table: S→C control blocked → amcheck "selfcheck request failed:
/// timeout waiting for ACK". Without lhost's udp 10080 rule the request
/// meets the INPUT policy, which iptables-save declares on `:INPUT DROP`.
#[test]
fn removed_rule_blocks_at_the_policy_line() {
    let plan = wiki_bsd();
    let hosts = edited(&plan, "lhost", &|t| {
        t.lines()
            .filter(|l| !l.contains("--dport 10080"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let text = &hosts.iter().find(|(h, _)| h == "lhost").unwrap().1.files[0].text;
    let policy_line = text
        .lines()
        .position(|l| l.starts_with(":INPUT DROP"))
        .unwrap()
        + 1;
    let report = check::check(&plan, &hosts, Options::default());
    let f = report
        .flows
        .iter()
        .find(|f| f.flow.operation.name() == "check" && f.flow.responder == "lhost")
        .unwrap();
    assert_eq!(f.result.status, Status::Blocked, "{}", describe(&report));
    let first = &f.result.findings[0];
    assert_eq!(first.host, "lhost");
    match &first.problem {
        Problem::Blocked { at, chain_path, .. } => {
            assert_eq!(at.file, "lhost.rules");
            assert_eq!(at.line, Some(policy_line));
            assert_eq!(chain_path, &["filter INPUT"]);
        }
        p => panic!("{p:?}"),
    }
    assert_eq!(
        f.result.amanda.as_deref(),
        Some("amcheck: \"selfcheck request failed: timeout waiting for ACK\"")
    );
    // The data streams of the same client still pass; exit code would be 1.
    assert!(report.blocked() >= 3);
    assert!(report
        .flows
        .iter()
        .filter(|f| f.flow.responder == "lhost" && f.flow.proto == amwall::ports::Proto::Tcp)
        .all(|f| f.result.status == Status::Pass));
}

/// A DROP put in front of the data range blocks the dumper's streams at that
/// line: amdump "could not connect DATA stream ... Connection timed out"
/// (docs/design.md lab finding).
#[test]
fn inserted_drop_blocks_at_its_line() {
    let plan = wiki_bsd();
    let drop = "-A INPUT -p tcp -m tcp --dport 50050:50100 -j DROP";
    let hosts = edited(&plan, "lhost", &|t| {
        let mut out = String::new();
        let mut done = false;
        for l in t.lines() {
            if !done && l.starts_with("-A INPUT") {
                out.push_str(drop);
                out.push('\n');
                done = true;
            }
            out.push_str(l);
            out.push('\n');
        }
        out
    });
    let text = &hosts.iter().find(|(h, _)| h == "lhost").unwrap().1.files[0].text;
    let line = text.lines().position(|l| l == drop).unwrap() + 1;
    let report = check::check(&plan, &hosts, Options::default());
    let f = report
        .flows
        .iter()
        .find(|f| {
            f.flow.operation.name() == "backup"
                && f.flow.responder == "lhost"
                && f.flow.proto == amwall::ports::Proto::Tcp
        })
        .unwrap();
    assert_eq!(f.result.status, Status::Blocked, "{}", describe(&report));
    let first = &f.result.findings[0];
    assert!(first.partial, "only ports 50050-50100 are blocked");
    assert!(first.packets.contains(":50050-50100"), "{}", first.packets);
    match &first.problem {
        Problem::Blocked { at, .. } => {
            assert_eq!(at.line, Some(line));
            assert_eq!(at.text, drop);
        }
        p => panic!("{p:?}"),
    }
    assert!(f.result.amanda.as_deref().unwrap().starts_with(
        "amdump: \"could not connect DATA stream: can't connect stream to lhost port 50000"
    ));
}

/// Without the masquerade on fwhost, rhost sees tshost's private address:
/// the flow fails on NAT, not on a filter rule.
#[test]
fn missing_masquerade_is_reported() {
    let plan = wiki_bsd();
    let hosts = edited(&plan, "fwhost", &|t| {
        t.lines()
            .filter(|l| !l.contains("MASQUERADE"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let report = check::check(&plan, &hosts, Options::default());
    let f = report
        .flows
        .iter()
        .find(|f| f.flow.operation.name() == "check" && f.flow.responder == "rhost")
        .unwrap();
    assert_eq!(f.result.status, Status::Blocked);
    assert!(matches!(
        &f.result.findings[0].problem,
        Problem::Nat { message } if message.contains("does not masquerade")
    ));
}

/// A host without rules is accepted with a warning; a missing ESTABLISHED
/// rule blocks the replies (first packets pass).
#[test]
fn replies_need_established() {
    let plan = wiki_bsd();
    let hosts: Vec<_> = edited(&plan, "tshost", &|t| {
        t.lines()
            .filter(|l| !l.contains("RELATED,ESTABLISHED"))
            .map(|l| format!("{l}\n"))
            .collect()
    })
    .into_iter()
    .filter(|(h, _)| h != "rhost")
    .collect();
    let report = check::check(&plan, &hosts, Options::default());
    assert!(report
        .warnings
        .iter()
        .any(|w| w.contains("no ruleset for rhost")));
    let f = report
        .flows
        .iter()
        .find(|f| f.flow.operation.name() == "check" && f.flow.responder == "lhost")
        .unwrap();
    assert_eq!(f.result.status, Status::Blocked);
    let first = &f.result.findings[0];
    assert_eq!(first.packet, check::messages::PacketKind::Reply);
    assert_eq!(first.host, "tshost");
}

/// The wiki's admins sit on the LAN; RHost is beyond FWHost's masquerade, so
/// their SSH reaches it from FWHost's outer address 1.2.3.4, after FWHost
/// forwarded it. Both hops must accept a new connection, in every variant and
/// backend, and RHost must not name the LAN prefix it can never see.
#[test]
fn management_follows_nat_to_rhost() {
    use amwall::sim::{self, Verdict};
    let mut checked = 0;
    for (label, plan) in common::variants()
        .into_iter()
        .filter(|(l, _)| l.starts_with("wiki"))
    {
        for nft in [false, true] {
            let hosts = rules(&plan, nft);
            let at = |host: &str, pkt: &str| {
                let (_, hr) = hosts.iter().find(|(h, _)| h == host).expect("host");
                let p = sim::packet::parse(pkt).expect("packet");
                sim::explain(&hr.ruleset, hr.ipsets.as_ref(), &p).verdict
            };
            let which = if nft { "nft" } else { "iptables" };
            assert_eq!(
                at(
                    "fwhost",
                    "tcp 192.168.2.50:40000 -> 2.3.4.5:22 in eth0 out eth1"
                ),
                Verdict::Accept,
                "{label} ({which}): fwhost does not forward the admin's ssh to rhost"
            );
            assert_eq!(
                at("rhost", "tcp 1.2.3.4:40000 -> 2.3.4.5:22 in eth0"),
                Verdict::Accept,
                "{label} ({which}): rhost refuses the admin's masqueraded ssh"
            );
            assert_eq!(
                at("rhost", "tcp 192.168.2.50:40000 -> 2.3.4.5:22 in eth0"),
                Verdict::Drop,
                "{label} ({which}): rhost names the LAN, which it never sees"
            );
            checked += 1;
        }
    }
    assert!(checked >= 16, "only {checked} wiki variants");
}

/// Over IPv6 the plan opens only what IPv6 needs and management from the
/// admins' IPv6 prefix (the dual-stack lan example): an IPv6 opening of its
/// own, or management from anywhere, is reported as beyond need, with both
/// backends.
#[test]
fn an_extra_ipv6_opening_is_reported() {
    let plan = Plan::build(common::example("lan")).unwrap();
    for nft in [false, true] {
        let mut hosts = rules(&plan, nft);
        let report = check::check(&plan, &hosts, Options::default());
        let v6_open = |r: &check::Report| -> Vec<String> {
            r.hosts
                .iter()
                .flat_map(|h| &h.open)
                .filter(|v| v.family == "IPv6" && !v.groups.is_empty())
                .map(|v| format!("{v:?}"))
                .collect()
        };
        assert!(v6_open(&report).is_empty(), "{}", describe(&report));
        // db gets a web server over IPv6, and ssh from anywhere.
        let db = hosts.iter().position(|(h, _)| h == "db").unwrap();
        let hp = plan
            .policies
            .iter()
            .find(|p| plan.deployment.hosts[p.host].name == "db")
            .unwrap();
        let (path, text) = if nft {
            let t = plan.nft(hp).replace(
                "\t\tip6 daddr fe80::/64 udp dport 546",
                "\t\ttcp dport 80 accept\n\t\ttcp dport 22 accept\n\t\tip6 daddr fe80::/64 udp dport 546",
            );
            ("db.nft", t)
        } else {
            let t = plan.ip6tables(hp).replace(
                "-A FORWARD",
                "-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A FORWARD",
            );
            ("db.rules6", t)
        };
        let mut files = vec![RulesFile::parse(path, text).unwrap()];
        if !nft {
            files.insert(0, RulesFile::parse("db.rules", plan.iptables(hp)).unwrap());
        }
        hosts[db].1 = HostRules::new(files, None);
        let report = check::check(&plan, &hosts, Options::default());
        let text = describe(&report);
        let open = v6_open(&report);
        assert_eq!(open.len(), 1, "{text}");
        assert!(open[0].contains("80") && open[0].contains("22"), "{text}");
    }
}
