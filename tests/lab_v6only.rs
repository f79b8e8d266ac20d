//! `amwall lab` on an IPv6-only client (tests/fixtures/v6only/upstream.toml),
//! both backends: the IPv4 flows pass, and over IPv6 exactly what each host's
//! IPv6 policy accepts arrives, C6Host's Amanda flows from TSHost through
//! FWHost included (the lab maps `v6lan` onto a 2001:db8 /64 only). Negative
//! control: C6Host's Amanda rule dropped (as `--drop` drops it), the server's
//! reserved-port connections to it are reported blocked and the lab fails.
//! With Debian's build the lab passes with nothing of Amanda's reaching it.
//!
//! Needs root, iproute2, iptables (with ip6tables), nftables and ping: a
//! missing one fails here loudly, it never skips.

use amwall::lab::{ExposureKind, Lab, LabReport, Status};
use amwall::netfilter::Backend;
use amwall::ports::Proto;

fn lab(mode: Backend) -> Lab {
    lab_of("upstream", mode)
}

fn lab_of(fixture: &str, mode: Backend) -> Lab {
    let path = format!(
        "{}/tests/fixtures/v6only/{fixture}.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let d = amwall::load::load_file(std::path::Path::new(&path)).unwrap();
    Lab::new(d, mode).expect("the IPv6-only fixture maps and plans")
}

fn run(mut lab: Lab) -> LabReport {
    lab.run(&mut |_| {}).unwrap_or_else(|e| {
        panic!("the lab could not run (needs root, iproute2, iptables, nftables, ping): {e}")
    })
}

fn passes(mode: Backend) {
    let r = run(lab(mode));
    assert!(r.passed(), "{r}");
    assert_eq!(r.flows.len(), 6, "the IPv4 flows: {r}");
    assert!(r.flows.iter().all(|f| f.status == Status::Pass), "{r}");
    let c6 = r.ipv6.hosts.iter().find(|h| h.host == "c6host").unwrap();
    // ssh from the LAN's three hosts (two source-port classes each is more;
    // at least one each) and Amanda from tshost.
    assert!(c6.needed >= 4 && c6.arrived == c6.needed, "{r}");
    assert!(r.ipv6.findings.is_empty(), "{r}");
    let text = r.to_string();
    assert!(
        text.contains("v6lan IPv6-only 2001:db8:6::/64 → 2001:db8:1ab:1::/64"),
        "{text}"
    );
}

fn without_c6hosts_amanda_rule(mode: Backend) {
    let mut l = lab(mode);
    let rules = l.rules.iter_mut().find(|r| r.host == "c6host").unwrap();
    let gone = rules.drop_rules(&["amanda check,estimate,backup"]);
    assert!(!gone.is_empty(), "the rule is found");
    let r = run(l);
    assert!(!r.passed(), "{r}");
    let blocked: Vec<_> = r
        .ipv6
        .findings
        .iter()
        .filter(|f| f.kind == ExposureKind::Blocked)
        .collect();
    assert!(!blocked.is_empty(), "{r}");
    for f in blocked {
        assert_eq!((f.src.as_str(), f.proto), ("tshost", Proto::Tcp), "{r}");
        assert!(f.dst.starts_with("c6host "), "{r}");
        assert!((512..=1023).contains(&f.sport), "{r}");
    }
    assert!(
        r.to_string().contains("needed over IPv6 but blocked"),
        "{r}"
    );
}

#[test]
fn ipv6_only_client_passes_iptables() {
    passes(Backend::Iptables);
}

#[test]
fn ipv6_only_client_passes_nft() {
    passes(Backend::Nft);
}

#[test]
fn without_the_rule_the_ipv6_only_flows_are_blocked_iptables() {
    without_c6hosts_amanda_rule(Backend::Iptables);
}

#[test]
fn without_the_rule_the_ipv6_only_flows_are_blocked_nft() {
    without_c6hosts_amanda_rule(Backend::Nft);
}

/// Debian's build: nothing for Amanda reaches C6Host over IPv6 (only the
/// admins' ssh from the LAN's prefix), and the lab passes: the left-out
/// flows are not required, and nothing is open for them.
#[test]
fn debian_build_opens_nothing_for_the_ipv6_only_client_nft() {
    let r = run(lab_of("debian", Backend::Nft));
    assert!(r.passed(), "{r}");
    assert_eq!(r.flows.len(), 6, "{r}");
    let c6 = r.ipv6.hosts.iter().find(|h| h.host == "c6host").unwrap();
    let up = run(lab(Backend::Nft));
    let c6up = up.ipv6.hosts.iter().find(|h| h.host == "c6host").unwrap();
    assert!(c6.needed < c6up.needed, "{r}\n{up}");
    assert_eq!((c6.arrived, c6.beyond_need), (c6.needed, 0), "{r}");
}
