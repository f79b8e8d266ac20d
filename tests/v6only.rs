//! IPv6-only hosts (tests/fixtures/v6only/): C6Host has no IPv4 address,
//! behind FWHost, which routes between the dual-stack LAN and the IPv6-only
//! `v6lan` without NAT. The kernel is the judge: the planned rules loaded in
//! namespaces (TSHost, FWHost, C6Host), real TCP connections with the source
//! ports Amanda uses. With the upstream build, the server's requests reach
//! C6Host through FWHost from a reserved port and C6Host's recovery reaches
//! the server, while the same from an unreserved port is dropped (negative
//! control). With Debian's build (`--without-ipv6`) nothing is opened for
//! C6Host, the plan warns and still covers the rest. Both backends. Needs
//! root, iproute2, iptables, nftables and ping; a missing one fails loudly.

mod common;

use std::net::TcpListener;

use amwall::lab::netns::veth;
use amwall::lab::Netns;
use amwall::Plan;

const TS: &str = "2001:db8:2::2";
const FW_LAN: &str = "2001:db8:2::1";
const FW_V6: &str = "2001:db8:6::1";
const C6: &str = "2001:db8:6::5";

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/v6only/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn plan(name: &str) -> Plan {
    let d = amwall::load::load_file(std::path::Path::new(&fixture(name))).unwrap();
    Plan::build(d).unwrap()
}

struct Net {
    ts: Netns,
    fw: Netns,
    c6: Netns,
    _listeners: Vec<TcpListener>,
}

fn ip(ns: &Netns, args: &str) {
    let argv: Vec<&str> = args.split_whitespace().collect();
    ns.must(&argv).unwrap_or_else(|e| panic!("{args}: {e}"));
}

fn net() -> Net {
    let ts = Netns::new("amv6ot").expect("creating a netns needs root and iproute2");
    let fw = Netns::new("amv6of").expect("creating a netns needs root and iproute2");
    let c6 = Netns::new("amv6oc").expect("creating a netns needs root and iproute2");
    veth(&ts, "eth0", &fw, "eth0").expect("veth");
    veth(&fw, "eth1", &c6, "eth0").expect("veth");
    ip(&ts, &format!("ip -6 addr add {TS}/64 dev eth0 nodad"));
    ip(
        &ts,
        &format!("ip -6 route add default via {FW_LAN} dev eth0"),
    );
    ip(&fw, &format!("ip -6 addr add {FW_LAN}/64 dev eth0 nodad"));
    ip(&fw, &format!("ip -6 addr add {FW_V6}/64 dev eth1 nodad"));
    ip(&fw, "sysctl -qw net.ipv6.conf.all.forwarding=1");
    ip(&c6, &format!("ip -6 addr add {C6}/64 dev eth0 nodad"));
    ip(
        &c6,
        &format!("ip -6 route add default via {FW_V6} dev eth0"),
    );
    // Link-local addresses come up after their own duplicate detection.
    let reached = (0..10).any(|_| {
        ts.exec(&["ping", "-6", "-c", "1", "-W", "1", C6], None)
            .expect("ping must be installed (iputils-ping)")
            .ok()
    });
    assert!(
        reached,
        "no IPv6 path from tshost to c6host before any rule"
    );
    let listen = |ns: &Netns, port: u16| {
        ns.run_in(move || TcpListener::bind(("::", port)).expect("listen on ::"))
            .unwrap()
    };
    let listeners = vec![listen(&c6, 10080), listen(&ts, 10080), listen(&fw, 10080)];
    Net {
        ts,
        fw,
        c6,
        _listeners: listeners,
    }
}

use common::dual::connects;

fn load(n: &Net, plan: &Plan, nft: bool) {
    common::load_both_families(
        plan,
        &[(&n.ts, "tshost"), (&n.fw, "fwhost"), (&n.c6, "c6host")],
        nft,
    );
}

#[test]
fn ipv6_only_client_passes_amandas_flows_from_reserved_ports_only() {
    let plan = plan("upstream");
    let c6 = plan.deployment.host_by_name("c6host").unwrap();
    assert_eq!(plan.flows6.len(), 4, "check, estimate, backup, recovery");
    assert!(plan.left_out.is_empty());
    // Its IPv4 policy opens nothing for Amanda: its flows are IPv6 only.
    assert!(
        plan.policies[c6].rules.iter().all(|r| r.flows.is_empty()),
        "{:?}",
        plan.policies[c6].rules
    );
    assert!(!plan.policies[c6].v6.rules.is_empty());
    for nft in [false, true] {
        let b = if nft { "nft" } else { "iptables" };
        let n = net();
        // Before any rule everything passes: the drops below are the rules'.
        assert!(connects(&n.ts, TS, 40000, C6, 10080), "{b}: open before");
        assert!(connects(&n.c6, C6, 40005, TS, 10080), "{b}: open before");
        load(&n, &plan, nft);
        assert!(
            connects(&n.ts, TS, 600, C6, 10080),
            "{b}: the server's request to the IPv6-only client, through fwhost"
        );
        assert!(
            !connects(&n.ts, TS, 40010, C6, 10080),
            "{b}: the same from an unreserved port must be dropped"
        );
        assert!(
            connects(&n.c6, C6, 700, TS, 10080),
            "{b}: the IPv6-only client's recovery to the server"
        );
        assert!(
            !connects(&n.c6, C6, 40001, TS, 10080),
            "{b}: recovery from an unreserved port must be dropped"
        );
        assert!(
            !connects(&n.c6, C6, 701, FW_V6, 10080),
            "{b}: fwhost runs no Amanda: nothing opened there"
        );
    }
}

/// Debian's build cannot reach C6Host: a warning, no rule for it, and the
/// plan still covers the others; in the kernel the server's request to
/// C6Host is dropped even from a reserved port.
#[test]
fn debian_build_leaves_the_ipv6_only_client_out() {
    let plan = plan("debian");
    assert!(plan.flows6.is_empty());
    assert_eq!(plan.left_out.len(), 4);
    let lint = plan
        .lints
        .iter()
        .find(|l| l.code == "no-ipv4")
        .expect("the no-ipv4 lint");
    assert_eq!(lint.host.as_deref(), Some("c6host"));
    assert!(lint.message.contains("--without-ipv6"), "{}", lint.message);
    assert!(plan.policies.iter().all(|p| p.v6.rules.is_empty()));
    let lh = plan.deployment.host_by_name("lhost").unwrap();
    assert!(
        plan.policies[lh].rules.iter().any(|r| !r.flows.is_empty()),
        "the rest of the fleet keeps its rules"
    );
    let (code, out, err) = common::amwall(&["plan", &fixture("debian"), "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"no-ipv4\""), "{out}");
    assert!(err.contains("warning[no-ipv4]: c6host"), "{err}");
    for nft in [false, true] {
        let b = if nft { "nft" } else { "iptables" };
        let n = net();
        load(&n, &plan, nft);
        assert!(
            !connects(&n.ts, TS, 600, C6, 10080),
            "{b}: nothing may be opened for the host Debian's Amanda cannot reach"
        );
    }
}

/// `check` on the IPv6-only host's own rulesets (IPv4 and nft, which holds
/// both families) and `plan --ansible`'s inventory: no panic, exit 0, the
/// host reached at its IPv6 address.
#[test]
fn check_and_ansible_handle_the_ipv6_only_host() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let (code, _, err) = common::amwall(&["plan", &fixture("upstream"), "--out", o, "-q"]);
    assert_eq!(code, 0, "{err}");
    for file in ["c6host.rules", "c6host.nft", "fwhost.nft", "tshost.rules"] {
        let host = file.split('.').next().unwrap();
        let rules = format!("{host}={o}/{file}");
        let (code, stdout, err) =
            common::amwall(&["check", &fixture("upstream"), "--rules", &rules]);
        assert_eq!(code, 0, "{file}: {err}\n{stdout}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let ans = out.path().join("ansible");
    let a = ans.to_str().unwrap();
    let (code, _, err) = common::amwall(&["plan", &fixture("upstream"), "--ansible", a, "-q"]);
    assert_eq!(code, 0, "{err}");
    let inv = std::fs::read_to_string(ans.join("inventory.yml")).unwrap();
    assert!(inv.contains("ansible_host: \"2001:db8:6::5\""), "{inv}");
}
