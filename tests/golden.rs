//! Golden files: what users see for every example × auth mode. Review diffs of
//! tests/snapshots/ like code (`cargo insta review`).

mod common;

use amwall::render::BackendSet;

#[test]
fn every_example_and_auth_mode() {
    for (label, plan) in common::variants() {
        let files = plan.outputs(BackendSet::Both, None).unwrap();
        let mut all = String::new();
        // The picture has snapshots of its own (`topology_pictures`).
        for (name, content) in files.into_iter().filter(|(n, _)| n != "topology.svg") {
            all.push_str(&format!("===== {name} =====\n{content}\n"));
        }
        insta::assert_snapshot!(label, all);
    }
}

/// Same input, byte-identical output.
#[test]
fn output_is_deterministic() {
    let a: Vec<_> = common::variants()
        .into_iter()
        .map(|(_, p)| p.outputs(BackendSet::Both, None).unwrap())
        .collect();
    let b: Vec<_> = common::variants()
        .into_iter()
        .map(|(_, p)| p.outputs(BackendSet::Both, None).unwrap())
        .collect();
    assert_eq!(a, b);
}

/// iptables merged mode, on the example with a router (nat chains) and on
/// the one with the helper (raw chains): the chains, the load scripts, and
/// what SUMMARY.md says about them.
#[test]
fn merged_iptables_mode() {
    for (label, plan) in common::variants() {
        if !["wiki-bsd", "helper-bsdudp-helper", "dualstack-bsdtcp"].contains(&label.as_str()) {
            continue;
        }
        let files = plan
            .outputs_with(
                BackendSet::Iptables,
                amwall::render::IptablesMode::Merged,
                None,
            )
            .unwrap();
        let mut all = String::new();
        for (name, content) in files.into_iter().filter(|(n, _)| n != "topology.svg") {
            all.push_str(&format!("===== {name} =====\n{content}\n"));
        }
        insta::assert_snapshot!(format!("merged-{label}"), all);
    }
}

/// `plan --ufw`: the ufw commands for the LAN example's hosts.
#[test]
fn ufw_scripts() {
    for (label, plan) in common::variants() {
        if !["lan-bsdtcp", "lan-bsd", "dualstack-bsdtcp"].contains(&label.as_str()) {
            continue;
        }
        let mut all = String::new();
        for (name, content) in plan.ufw_outputs(None) {
            all.push_str(&format!("===== {name} =====\n{content}\n"));
        }
        insta::assert_snapshot!(format!("ufw-{label}"), all);
    }
}

/// `plan --firewalld`: firewalld's objects, the source-port tables and the
/// install script, on the example with a router (IPv4 only, Debian's build)
/// and on the dual-stack one (rich rules and a table per family).
#[test]
fn firewalld_files() {
    for (label, plan) in common::variants() {
        if !["wiki-bsd", "dualstack-bsdtcp"].contains(&label.as_str()) {
            continue;
        }
        let mut all = String::new();
        for (name, content) in plan.firewalld_outputs(None) {
            all.push_str(&format!("===== {name} =====\n{content}\n"));
        }
        insta::assert_snapshot!(format!("firewalld-{label}"), all);
    }
}

/// A dual-stack LAN of six recovering clients whose Amanda speaks IPv6:
/// the server's IPv6 recovery opening matches a `family inet6` ipset
/// (`HOST.ipset`, `HOST.rules6`), a named `ipv6_addr` set (`HOST.nft`) and
/// a firewalld ipset object of family inet6.
#[test]
fn inet6_sets() {
    let dep = amwall::load::load_str("dual-lan.toml", common::dual::lan_toml(6)).unwrap();
    let plan = amwall::Plan::build(dep).unwrap();
    let mut all = String::new();
    let mut files = plan.outputs(BackendSet::Both, Some("server")).unwrap();
    files.extend(plan.firewalld_outputs(Some("server")));
    for (name, content) in files {
        if name.starts_with("server.") {
            all.push_str(&format!("===== {name} =====\n{content}\n"));
        }
    }
    insta::assert_snapshot!("inet6-sets", all);
}

/// What `plan` prints on a terminal, 100 columns wide.
#[test]
fn terminal_brief() {
    for (label, plan) in common::variants() {
        if label != "wiki-bsd" && label != "lan-bsdtcp" {
            continue;
        }
        let text = amwall::summary::brief(&plan, None, 100, "out", 9);
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        insta::assert_snapshot!(format!("brief-{label}"), text);
    }
}

/// topology.svg of each example (and of 50 identical clients, drawn as one
/// box): review a changed one by looking at it (`rsvg-convert`).
#[test]
fn topology_pictures() {
    for (label, plan) in common::variants() {
        if !["wiki-bsd", "lan-bsdtcp", "helper-bsd-helper"].contains(&label.as_str()) {
            continue;
        }
        insta::assert_snapshot!(format!("svg-{label}"), amwall::picture::svg(&plan, None));
    }
    let plan = amwall::Plan::build(common::generated(50)).unwrap();
    insta::assert_snapshot!("svg-50-clients", amwall::picture::svg(&plan, None));
}

/// The verdict picture (`check --svg`, `lab --svg`): the wiki with one flow
/// blocked on lhost, one on an unnamed host, and one unknown.
#[test]
fn verdict_picture() {
    use amwall::picture::{Mark, Verdicts};
    let plan = amwall::Plan::build(common::example("wiki")).unwrap();
    let mut marks = vec![Mark::Pass; plan.flows.len()];
    marks[11] = Mark::Blocked {
        host: Some("lhost".into()),
    };
    marks[15] = Mark::Blocked { host: None };
    marks[1] = Mark::Unknown;
    let v = Verdicts {
        title: "check".into(),
        marks,
    };
    insta::assert_snapshot!("svg-wiki-verdicts", amwall::picture::svg(&plan, Some(&v)));
}

/// IPv6-only hosts (tests/fixtures/v6only/): with an upstream build, every
/// file (C6Host's flows only in the IPv6 rules); with Debian's, SUMMARY.md
/// with the `no-ipv4` warning and the Left out section.
#[test]
fn ipv6_only_hosts() {
    let mut plans = common::v6only().into_iter().map(|(_, p)| p);
    let (up, deb) = (plans.next().unwrap(), plans.next().unwrap());
    let mut all = String::new();
    for (name, content) in up
        .outputs(BackendSet::Both, None)
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n != "topology.svg")
    {
        all.push_str(&format!("===== {name} =====\n{content}\n"));
    }
    insta::assert_snapshot!("v6only-upstream", all);
    let summary = deb
        .outputs(BackendSet::Both, None)
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "SUMMARY.md")
        .unwrap()
        .1;
    assert!(summary.contains("**no-ipv4** `c6host`"), "{summary}");
    assert!(summary.contains("## Left out"), "{summary}");
    insta::assert_snapshot!("v6only-debian-summary", summary);
}
