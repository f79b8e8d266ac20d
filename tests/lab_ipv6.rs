//! `amwall lab` over IPv6, on the dual-stack wiki (tests/fixtures/lab/wiki6.toml)
//! for both backends: every (IPv4) flow passes, nothing arrives over IPv6
//! beyond what each host's IPv6 policy accepts (ssh from the LAN's prefix),
//! nothing from the Internet crosses FWHost over IPv6, and neighbour
//! discovery works on both links. Negative controls: without the ICMPv6 rule
//! (dropped as `--drop HOST:TEXT` drops it) neighbour discovery fails and the
//! lab says so; an extra IPv6 accept for tcp/80 is reported as open beyond need.
//!
//! Needs root, iproute2, iptables (with ip6tables), nftables and ping: a
//! missing one fails here loudly, it never skips.

mod common;

use amwall::lab::{ExposureKind, Lab, LabReport, Status};
use amwall::netfilter::Backend;
use amwall::ports::Proto;

fn lab(mode: Backend) -> Lab {
    let path = format!(
        "{}/tests/fixtures/lab/wiki6.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let d = amwall::load::load_str("tests/fixtures/lab/wiki6.toml", text)
        .unwrap_or_else(|e| panic!("{e:?}"));
    Lab::new(d, mode).expect("the dual-stack wiki maps and plans")
}

fn run(mut lab: Lab) -> LabReport {
    lab.run(&mut |_| {}).unwrap_or_else(|e| {
        panic!("the lab could not run (needs root, iproute2, iptables, nftables, ping): {e}")
    })
}

fn dual_stack_passes(mode: Backend) {
    let r = run(lab(mode));
    assert!(r.passed(), "the lab found problems:\n{r}");
    assert_eq!(r.flows.len(), 24, "{r}");
    assert!(r.flows.iter().all(|f| f.status == Status::Pass), "{r}");
    let v6 = &r.ipv6;
    assert_eq!(v6.pairs, 15, "{r}");
    assert!(v6.findings.is_empty(), "{r}");
    // Nothing from the Internet crosses FWHost: rhost's probes to the LAN
    // would be findings above (its address is not the admins').
    // ssh from the LAN's hosts, from both tcp source ports: to tshost and
    // lhost from the two others, to both of fwhost's addresses (the Internet
    // one is its own, delivered locally) from tshost and lhost. (A router
    // that forwards the admins' ssh over IPv6 adds theirs to rhost.)
    assert!(v6.needed >= 2 * 2 * 2 + 2 * 2 * 2, "{r}");
    assert_eq!(v6.arrived, v6.needed, "{r}");
    assert_eq!(
        v6.neighbours.len(),
        5,
        "3 on the lan, 2 on the internet\n{r}"
    );
    assert!(
        v6.neighbours.iter().all(|n| n.status == Status::Pass),
        "neighbour discovery must work through the rules\n{r}"
    );
    assert!(r.to_string().contains("Verdict: PASS"), "{r}");
    eprintln!("{mode}: dual-stack wiki lab passes in {:.1} s", r.seconds);
}

#[test]
fn dual_stack_wiki_passes_iptables() {
    dual_stack_passes(Backend::Iptables);
}

#[test]
fn dual_stack_wiki_passes_nft() {
    dual_stack_passes(Backend::Nft);
}

/// lhost without its ICMPv6 rule: its neighbours' solicitations are dropped,
/// so the pings to lhost (and lhost's own, whose advertisements come back
/// to nobody's rules but whose solicitations get no answer) fail, and the
/// lab fails with the neighbour-discovery finding; IPv4 is untouched.
fn without_icmpv6(mode: Backend) {
    let mut l = lab(mode);
    let r = l
        .rules
        .iter_mut()
        .find(|r| r.host == "lhost")
        .expect("lhost has rules");
    // The same text `amwall lab --drop 'lhost:icmpv6 (rfc 4890)'` drops.
    let gone = r.drop_rules(&["icmpv6 (rfc 4890)"]);
    assert!(!gone.is_empty(), "the ICMPv6 rule is found");
    let r = run(l);
    assert!(!r.passed(), "{r}");
    assert!(r.flows.iter().all(|f| f.status == Status::Pass), "{r}");
    let failed: Vec<_> = r
        .ipv6
        .neighbours
        .iter()
        .filter(|n| n.status == Status::Fail)
        .collect();
    assert!(!failed.is_empty(), "{r}");
    for n in &failed {
        assert!(
            n.src == "lhost" || n.dst.starts_with("lhost "),
            "only lhost's link to its neighbours fails: {n:?}\n{r}"
        );
        assert!(
            n.detail.starts_with("neighbour discovery fails"),
            "{n:?}\n{r}"
        );
    }
    let text = r.to_string();
    assert!(text.contains("neighbour discovery fails"), "{text}");
    assert!(text.contains("Verdict: FAIL"), "{text}");
}

/// The same through the CLI with iptables: `--drop` takes the ICMPv6 rule
/// out of `HOST.rules6`, the lab exits 1, and `--format json` carries the
/// IPv6 results with lhost's failed neighbour discovery.
#[test]
fn without_the_icmpv6_rule_neighbour_discovery_fails_iptables_cli() {
    let (code, out, err) = common::amwall(&[
        "lab",
        "tests/fixtures/lab/wiki6.toml",
        "--backend",
        "iptables",
        "--drop",
        "lhost:icmpv6 (rfc 4890)",
        "--format",
        "json",
    ]);
    assert_eq!(code, 1, "{err}\n{out}");
    let dropped = err
        .lines()
        .filter(|l| l.starts_with("dropped from lhost: -A INPUT -p ipv6-icmp"))
        .count();
    assert_eq!(dropped, 21, "one ip6tables rule per ICMPv6 type: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let r = &v[0];
    assert!(
        r["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["status"] == "pass"),
        "{out}"
    );
    let failed: Vec<&serde_json::Value> = r["ipv6"]["neighbours"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "fail")
        .collect();
    assert!(!failed.is_empty(), "{out}");
    for n in failed {
        let (src, dst) = (n["src"].as_str().unwrap(), n["dst"].as_str().unwrap());
        assert!(src == "lhost" || dst.starts_with("lhost "), "{n}");
        assert!(
            n["detail"]
                .as_str()
                .unwrap()
                .starts_with("neighbour discovery fails"),
            "{n}"
        );
    }
    assert_eq!(r["ipv6"]["findings"].as_array().unwrap().len(), 0, "{out}");
}

#[test]
fn without_the_icmpv6_rule_neighbour_discovery_fails_nft() {
    without_icmpv6(Backend::Nft);
}

/// tshost accepts tcp/80 over IPv6 too (as a careless admin rule would): the
/// lab reports it as reachable beyond need from every neighbour that gets there.
fn extra_accept(mode: Backend) {
    let mut l = lab(mode);
    let r = l
        .rules
        .iter_mut()
        .find(|r| r.host == "tshost")
        .expect("tshost has rules");
    match mode {
        Backend::Iptables => {
            let t6 = r.text6.as_mut().expect("iptables loads HOST.rules6");
            let at = t6.find("COMMIT").expect("a filter table");
            t6.insert_str(at, "-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\n");
        }
        Backend::Nft => {
            let table = r.text.find("table ip6 amwall {").expect("the ip6 table");
            let lo = "iifname \"lo\" accept\n";
            let at = table + r.text[table..].find(lo).expect("its input chain") + lo.len();
            r.text.insert_str(at, "\t\ttcp dport 80 accept\n");
        }
    }
    let r = run(l);
    assert!(!r.passed(), "{r}");
    assert!(r.flows.iter().all(|f| f.status == Status::Pass), "{r}");
    let open: Vec<_> = r.ipv6.findings.iter().collect();
    assert!(!open.is_empty(), "{r}");
    for f in &open {
        assert_eq!(f.kind, ExposureKind::Unneeded, "{r}");
        assert_eq!(
            (f.proto, f.arrived_at.as_deref()),
            (Proto::Tcp, Some("tshost")),
            "{r}"
        );
        assert!(f.dst.starts_with("tshost "), "{r}");
        assert!(f.dports.iter().all(|p| p.lo == 80 && p.hi == 80), "{r}");
    }
    let from: std::collections::BTreeSet<&str> = open.iter().map(|f| f.src.as_str()).collect();
    assert_eq!(
        from,
        ["fwhost", "lhost"].into(),
        "its neighbours; rhost's packets stop at FWHost\n{r}"
    );
    assert!(
        r.ipv6.neighbours.iter().all(|n| n.status == Status::Pass),
        "{r}"
    );
    assert!(
        r.to_string().contains("reachable over IPv6 but not needed"),
        "{r}"
    );
}

#[test]
fn an_extra_ipv6_accept_is_open_beyond_need_iptables() {
    extra_accept(Backend::Iptables);
}

#[test]
fn an_extra_ipv6_accept_is_open_beyond_need_nft() {
    extra_accept(Backend::Nft);
}

/// An IPv6-speaking Amanda (the dual-stack example's upstream build): its
/// flows' IPv6 openings arrive over IPv6 and the lab counts them as needed,
/// so the run passes; the same topology with `ipv6 = false` opens none of
/// them, and then only management arrives over IPv6.
#[test]
fn an_ipv6_speaking_builds_flows_arrive_over_ipv6_and_count_as_needed() {
    let path = format!("{}/examples/dualstack.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let lab_of = |text: String| {
        let d = amwall::load::load_str("examples/dualstack.toml", text)
            .unwrap_or_else(|e| panic!("{e:?}"));
        Lab::new(d, Backend::Nft).expect("the dual-stack example maps and plans")
    };
    let speaks = run(lab_of(text.clone()));
    assert!(speaks.passed(), "{speaks}");
    assert!(speaks.ipv6.findings.is_empty(), "{speaks}");
    let without = run(lab_of(text.replace(
        "build = \"upstream\"\n",
        "build = \"upstream\"\nipv6 = false\n",
    )));
    assert!(without.passed(), "{without}");
    // Amanda's control port arrives over IPv6 only where the build speaks it.
    let amanda = |r: &LabReport| r.ipv6.needed;
    assert!(
        amanda(&speaks) > amanda(&without),
        "the IPv6 flows must arrive and count as needed: {} vs {}\n{speaks}",
        amanda(&speaks),
        amanda(&without)
    );
}
