//! iptables merged mode in the real kernel: on a client whose firewall is
//! someone else's (an INPUT policy of DROP, a fail2ban-style ban chain, a
//! Docker-style DOCKER-USER and nat chain, a native nft table), amwall's
//! `HOST.merged.sh` adds its chains and one jump each, twice over, and every
//! foreign rule is still there byte for byte; real packets show Amanda's
//! request getting through only after the load and the ban still refusing.
//! Needs root, iproute2, iptables and nftables: CI has them, and a missing
//! one fails here loudly.

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use amwall::check::{self, HostRules, Options, RulesFile};
use amwall::lab::netns::veth;
use amwall::lab::Netns;
use amwall::render::{BackendSet, IptablesMode};
use amwall::Plan;

const FOREIGN: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:f2b-sshd - [0:0]
-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -j RETURN
-A f2b-sshd -s 198.51.100.9/32 -j REJECT --reject-with icmp-port-unreachable
-A f2b-sshd -j RETURN
COMMIT
";

const NFT_TABLE: &str = "table inet admin {
	chain keep {
		type filter hook input priority filter + 10; policy accept;
		tcp dport 9999 counter packets 0 bytes 0 drop
	}
}
";

/// The rule lines of an iptables-save dump (no comments, no counters).
fn rule_lines(save: &str) -> Vec<String> {
    save.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.strip_prefix(':') {
            Some(c) => format!(":{}", c.rsplit_once(' ').map_or(c, |(a, _)| a)),
            None => l.to_string(),
        })
        .collect()
}

/// (table, chain) → its `-A` lines in order, for amwall's chains only.
fn amwall_chains(save: &str) -> std::collections::BTreeMap<(String, String), Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    let mut table = String::new();
    for l in save.lines() {
        if let Some(t) = l.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(rest) = l.strip_prefix("-A AMWALL-") {
            let chain = rest.split(' ').next().unwrap().to_string();
            out.entry((table.clone(), chain))
                .or_insert_with(Vec::new)
                .push(l.to_string());
        }
    }
    out
}

/// Run a merged load script twice in `ns` and return what `save` lists
/// after, asserting that every line but amwall's is as in `before`.
fn run_twice_keeping_foreign(
    ns: &Netns,
    script: &std::path::Path,
    save: &str,
    before: &str,
) -> String {
    for _ in 0..2 {
        let r = ns.exec(&["sh", script.to_str().unwrap()], None).unwrap();
        assert!(r.ok(), "{}: {}{}", script.display(), r.stdout, r.stderr);
    }
    let after = ns.must(&[save]).unwrap().stdout;
    let foreign: Vec<String> = rule_lines(&after)
        .into_iter()
        .filter(|l| !l.contains("AMWALL-"))
        .collect();
    assert_eq!(
        foreign,
        rule_lines(before),
        "{}:\n{after}",
        script.display()
    );
    after
}

/// Every host's merged files of `plan`, written into a temporary directory.
fn merged_files(plan: &Plan) -> tempfile::TempDir {
    let files = plan
        .outputs_with(BackendSet::Iptables, IptablesMode::Merged, None)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in &files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn blocked_flows(plan: &Plan, host: &str, live: &str) -> usize {
    let rules = HostRules::new(
        vec![RulesFile::parse("live iptables-save", live.to_string()).unwrap()],
        None,
    );
    let r = check::check(plan, &[(host.to_string(), rules)], Options::default());
    r.flows
        .iter()
        .filter(|f| f.flow.responder == host && f.result.status != check::Status::Pass)
        .count()
}

#[test]
fn merged_chains_leave_foreign_rules_standing_and_let_amanda_in() {
    let plan = Plan::build(common::generated(2)).unwrap();
    let files = plan
        .outputs_with(BackendSet::Iptables, IptablesMode::Merged, Some("c0"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in &files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    assert!(
        !files.iter().any(|(n, _)| n == "c0.rules"),
        "merged mode writes no whole-table file"
    );
    let script = dir.path().join("c0.merged.sh");
    let script = script.to_str().unwrap();

    let srv = Netns::new("amwmS").expect("creating a netns needs root and iproute2");
    let cli = Netns::new("amwmC").unwrap();
    veth(&srv, "eth0", &cli, "eth0").unwrap();
    srv.must(&["ip", "addr", "add", "198.51.100.1/24", "dev", "eth0"])
        .unwrap();
    // The banned address, on the server's side of the wire.
    srv.must(&["ip", "addr", "add", "198.51.100.9/24", "dev", "eth0"])
        .unwrap();
    cli.must(&["ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"])
        .unwrap();
    let r = cli.exec(&["iptables-restore"], Some(FOREIGN)).unwrap();
    assert!(r.ok(), "foreign rules: {}", r.stderr);
    let r = cli.exec(&["nft", "-f", "-"], Some(NFT_TABLE)).unwrap();
    assert!(r.ok(), "foreign nft table: {}", r.stderr);
    let before = cli.must(&["iptables-save"]).unwrap().stdout;
    let nft_before = cli
        .must(&["nft", "list", "table", "inet", "admin"])
        .unwrap()
        .stdout;

    // Listeners in the client: amandad's port and sshd's.
    let amandad: UdpSocket = cli
        .run_in(|| UdpSocket::bind("198.51.100.2:10080").unwrap())
        .unwrap();
    let sshd: TcpListener = cli
        .run_in(|| TcpListener::bind("198.51.100.2:22").unwrap())
        .unwrap();
    let to_amandad: SocketAddr = "198.51.100.2:10080".parse().unwrap();
    let to_sshd: SocketAddr = "198.51.100.2:22".parse().unwrap();

    // Negative control: the host's own rules drop Amanda's request.
    assert!(!common::udp_arrives(
        &srv,
        "198.51.100.1:850",
        &amandad,
        to_amandad
    ));
    assert!(blocked_flows(&plan, "c0", &before) > 0, "{before}");

    for round in 1..=2 {
        let r = cli.exec(&["sh", script], None).unwrap();
        assert!(r.ok(), "round {round}: {}{}", r.stdout, r.stderr);
    }
    let after = cli.must(&["iptables-save"]).unwrap().stdout;

    // Every foreign line is still there, in order; amwall added only its
    // own chains and exactly one jump into each.
    let foreign: Vec<String> = rule_lines(&after)
        .into_iter()
        .filter(|l| !l.contains("AMWALL-"))
        .collect();
    assert_eq!(foreign, rule_lines(&before), "{after}");
    let jumps: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("-A INPUT") && l.contains("-j AMWALL-INPUT"))
        .collect();
    assert_eq!(jumps, ["-A INPUT -j AMWALL-INPUT"], "{after}");
    let first_input = after.lines().find(|l| l.starts_with("-A INPUT")).unwrap();
    assert_eq!(
        first_input, "-A INPUT -j AMWALL-INPUT",
        "the jump comes first"
    );
    assert!(
        after.contains(":INPUT DROP"),
        "the host's policy is kept: {after}"
    );
    let nft_after = cli
        .must(&["nft", "list", "table", "inet", "admin"])
        .unwrap()
        .stdout;
    assert_eq!(nft_after, nft_before);

    // Real packets: Amanda's request now arrives, and from an unprivileged
    // source port it still does not; the ban still refuses, ssh still works.
    assert!(common::udp_arrives(
        &srv,
        "198.51.100.1:850",
        &amandad,
        to_amandad
    ));
    assert!(!common::udp_arrives(
        &srv,
        "198.51.100.1:40000",
        &amandad,
        to_amandad
    ));
    assert_eq!(
        common::tcp_connect(&srv, "198.51.100.9:0", to_sshd),
        ErrorKind::ConnectionRefused,
        "the ban still rejects"
    );
    assert_eq!(
        common::tcp_connect(&srv, "198.51.100.1:0", to_sshd),
        ErrorKind::Other
    );
    drop(sshd);

    // And the simulator agrees with the kernel on the live, combined ruleset.
    assert_eq!(blocked_flows(&plan, "c0", &after), 0, "{after}");
}

/// A router's merged files hang chains in nat too (port forward, masquerade):
/// loaded twice over Docker-style nat rules, each built-in chain has one jump
/// at its top and every foreign line survives.
#[test]
fn a_routers_nat_chains_merge_too() {
    let plan = Plan::build(common::example("wiki")).unwrap();
    let files = plan
        .outputs_with(BackendSet::Iptables, IptablesMode::Merged, Some("fwhost"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in &files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let script = dir.path().join("fwhost.merged.sh");
    let ns = Netns::new("amwmR").expect("creating a netns needs root and iproute2");
    let r = ns.exec(&["iptables-restore"], Some(FOREIGN)).unwrap();
    assert!(r.ok(), "{}", r.stderr);
    let before = ns.must(&["iptables-save"]).unwrap().stdout;
    let after = run_twice_keeping_foreign(&ns, &script, "iptables-save", &before);
    for (builtin, chain) in [
        ("PREROUTING", "AMWALL-PREROUTING"),
        ("POSTROUTING", "AMWALL-POSTROUTING"),
        ("INPUT", "AMWALL-INPUT"),
        ("FORWARD", "AMWALL-FORWARD"),
    ] {
        let jump = format!("-A {builtin} -j {chain}");
        let n = after.lines().filter(|l| *l == jump).count();
        assert_eq!(n, 1, "{jump}:\n{after}");
        let first = after
            .lines()
            .find(|l| l.starts_with(&format!("-A {builtin} ")))
            .unwrap();
        assert_eq!(first, jump, "{after}");
    }
    assert!(after.contains("-A AMWALL-POSTROUTING -s 192.168.2.0/24 -o eth1 -j MASQUERADE"));
    // Loaded twice, amwall's chains hold each of their rules once.
    let ours = std::fs::read_to_string(dir.path().join("fwhost.merged.rules")).unwrap();
    assert_eq!(amwall_chains(&after), amwall_chains(&ours));
}

/// Every example × auth mode × host: the merged files load over the foreign
/// rules, and the kernel lists amwall's chains back exactly as written.
#[test]
fn every_merged_file_loads_and_reads_back() {
    let ns = Netns::new("amwmA").expect("creating a netns needs root and iproute2");
    let reset = format!("{FOREIGN}*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n");
    let mut loaded = 0;
    for (label, plan) in common::variants() {
        let dir = merged_files(&plan);
        for hp in &plan.policies {
            let host = &plan.deployment.hosts[hp.host].name;
            let r = ns.exec(&["iptables-restore"], Some(&reset)).unwrap();
            assert!(r.ok(), "{}", r.stderr);
            ns.must(&["ipset", "destroy"]).unwrap();
            let script = dir.path().join(format!("{host}.merged.sh"));
            let r = ns.exec(&["sh", script.to_str().unwrap()], None).unwrap();
            assert!(r.ok(), "{label}/{host}: {}{}", r.stdout, r.stderr);
            let save = ns.must(&["iptables-save"]).unwrap().stdout;
            let ours =
                std::fs::read_to_string(dir.path().join(format!("{host}.merged.rules"))).unwrap();
            let want = amwall_chains(&ours);
            let got = amwall_chains(&save);
            assert_eq!(got, want, "{label}/{host}:\n{save}");
            loaded += 1;
        }
    }
    assert!(loaded > 40, "only {loaded} hosts loaded");
}

/// The admin's own ip6tables rules on every host of the dual-stack network:
/// drop by default, ICMPv6 (neighbour discovery) and ssh accepted, a ban.
const FOREIGN6: &str = "\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:f2b-sshd - [0:0]
-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p ipv6-icmp -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p ipv6-icmp -j ACCEPT
-A f2b-sshd -s 2001:db8:ee::5/128 -j REJECT --reject-with icmp6-port-unreachable
-A f2b-sshd -j RETURN
COMMIT
";

/// An Amanda that speaks IPv6 (the dual-stack example's upstream build):
/// `HOST.merged.sh` also loads `HOST.merged.rules6` beside the admin's
/// ip6tables rules, twice over, and every foreign line stays; real IPv6
/// connections show Amanda's flows passing only after the load and only
/// from reserved source ports, and the admin's ban still refusing.
#[test]
fn merged_ip6tables_chains_let_amandas_ipv6_flows_in_beside_the_admins() {
    use common::dual::{self, connects, RH, TS};
    let plan = Plan::build(common::example("dualstack")).unwrap();
    let dir = merged_files(&plan);
    let n = dual::net("amwm6");
    let mut before = Vec::new();
    for (ns, _) in n.hosts() {
        let r = ns.exec(&["ip6tables-restore"], Some(FOREIGN6)).unwrap();
        assert!(r.ok(), "{}", r.stderr);
        before.push(ns.must(&["ip6tables-save"]).unwrap().stdout);
    }
    dual::amanda_closed(&n, "the admin's rules alone");
    for (i, (ns, host)) in n.hosts().into_iter().enumerate() {
        let script = dir.path().join(format!("{host}.merged.sh"));
        let after = run_twice_keeping_foreign(ns, &script, "ip6tables-save", &before[i]);
        let ours =
            std::fs::read_to_string(dir.path().join(format!("{host}.merged.rules6"))).unwrap();
        assert_eq!(amwall_chains(&after), amwall_chains(&ours), "{host}");
        for (builtin, chain) in [("INPUT", "AMWALL-INPUT"), ("FORWARD", "AMWALL-FORWARD")] {
            let jump = format!("-A {builtin} -j {chain}");
            let want = usize::from(ours.contains(&format!(":{chain} ")));
            let n = after.lines().filter(|l| *l == jump).count();
            assert_eq!(n, want, "{host}: {jump}:\n{after}");
        }
    }
    dual::amanda_passes_reserved_only(&n, "merged ip6tables");
    // amwall's chains accept no ssh, so what they return meets the ban.
    assert!(!connects(&n.rh, RH, 40002, TS, 22), "the ban must hold");
    assert!(
        connects(&n.fw, dual::FW_LAN, 40003, TS, 22),
        "the admin's ssh"
    );
}

/// `amwall apply --iptables merged` on the dual-stack router loads
/// `HOST.merged.rules6` beside the admin's ip6tables rules too: Amanda's
/// forwarded IPv6 flows pass through it from reserved ports only, and the
/// rollback leaves the router's ip6tables rules exactly as the admin had
/// them.
#[test]
fn merged_apply_loads_and_rolls_back_the_ipv6_chains() {
    use common::dual::{self, connects, RH, TS};
    let plan = Plan::build(common::example("dualstack")).unwrap();
    let dir = merged_files(&plan);
    let n = dual::net("amwmB");
    for (ns, host) in n.hosts() {
        let r = ns.exec(&["ip6tables-restore"], Some(FOREIGN6)).unwrap();
        assert!(r.ok(), "{}", r.stderr);
        if host != "fwhost" {
            let script = dir.path().join(format!("{host}.merged.sh"));
            let r = ns.exec(&["sh", script.to_str().unwrap()], None).unwrap();
            assert!(r.ok(), "{host}: {}{}", r.stdout, r.stderr);
        }
    }
    dual::amanda_closed(&n, "the router's own rules alone");
    let before = n.fw.must(&["ip6tables-save"]).unwrap().stdout;
    let state = dir.path().join("state");
    let topo = format!("{}/examples/dualstack.toml", env!("CARGO_MANIFEST_DIR"));
    let amwall = |args: &[&str]| {
        let o =
            n.fw.exec(
                &common::amwall_argv(&[], args, state.to_str().unwrap()),
                None,
            )
            .unwrap();
        assert!(o.ok(), "{args:?}: {}{}", o.stdout, o.stderr);
    };
    amwall(&[
        "apply",
        &topo,
        "--host",
        "fwhost",
        "--backend",
        "iptables",
        "--iptables",
        "merged",
        "--timeout",
        "60",
        "--no-wait",
    ]);
    dual::amanda_passes_reserved_only(&n, "apply, merged");
    amwall(&["apply", "--rollback"]);
    assert!(!connects(&n.ts, TS, 601, RH, 10080), "rolled back");
    let after = n.fw.must(&["ip6tables-save"]).unwrap().stdout;
    assert_eq!(rule_lines(&after), rule_lines(&before), "{after}");
}
