//! `check` follows the ruleset's conntrack-helper assignment, as the kernel
//! does, not the topology's `conntrack-helper` flag.
//!
//! The peers' way (Shorewall's and firewalld's Amanda support): open udp and
//! tcp 10080, accept RELATED, and assign the `amanda` helper to the control
//! requests in raw PREROUTING (iptables) or in the filter chain (nft). The
//! announced data streams then arrive as RELATED and real amdump passes
//! (`tests/amanda_e2e.rs::peer_style_*` runs real Amanda through the same
//! shapes); the wiki topology here says nothing about the helper.

mod common;

use common::amwall;
use std::path::{Path, PathBuf};

/// Shorewall-style client rules: no addresses, the helper on every udp/10080.
const SHOREWALL_LIKE: &str = include_str!("fixtures/peers/shorewall-like-client.rules");
/// firewalld-style (nftables backend): a helper object, assigned in the
/// zone's allow chain after conntrack.
const FIREWALLD_LIKE: &str = include_str!("fixtures/peers/firewalld-like-client.nft");

struct Run {
    code: i32,
    stdout: String,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn check(topology: &Path, rules: &[(&str, &Path)], extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec!["check".into(), topology.display().to_string()];
    for (h, f) in rules {
        args.push("--rules".into());
        args.push(format!("{h}={}", f.display()));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = amwall(&a);
    assert!(
        code == 0 || code == 1,
        "check failed to run:\n{stdout}{stderr}"
    );
    Run { code, stdout }
}

fn data_flow<'a>(out: &'a str, from: &str, to: &str) -> (&'a str, Vec<&'a str>) {
    common::data_flow(out, &format!("{from} → {to}"))
}

fn wiki(dir: &Path, auth: &str, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string("examples/wiki.toml").unwrap();
    let text = text.replacen("auth = \"bsd\"", &format!("auth = \"{auth}\"\n{extra}"), 1);
    write(dir, "wiki.toml", &text)
}

#[test]
fn a_peer_style_helper_assignment_makes_the_data_streams_related() {
    let dir = tempfile::tempdir().unwrap();
    let topo = wiki(dir.path(), "bsd", "");
    let rules = write(dir.path(), "lhost.rules", SHOREWALL_LIKE);
    let r = check(&topo, &[("lhost", &rules)], &["--no-redundant"]);
    let (line, under) = data_flow(&r.stdout, "tshost", "lhost");
    assert!(line.ends_with("PASS"), "{}", r.stdout);
    let want = format!(
        "note: lhost: RELATED: the amanda helper assigned at {}:4 expects this connection",
        rules.display()
    );
    assert!(under.iter().any(|l| l.trim() == want), "{under:?}");
    assert_eq!(r.code, 0, "{}", r.stdout);
    // The assignment from anywhere is an opening of its own.
    let open = &r.stdout[r.stdout.find("Open beyond need").unwrap()..];
    assert!(open.contains("IPv4 amanda helper:"), "{open}");
    assert!(
        open.contains(&format!(
            "helper assigned by {}:4 -A PREROUTING -p udp -m udp --dport 10080 -j CT --helper amanda:",
            rules.display()
        )),
        "{open}"
    );

    // The same rules without the assignment: the data streams are NEW and
    // nothing opens them.
    let bare = common::without_lines(SHOREWALL_LIKE, "CT --helper");
    let rules = write(dir.path(), "lhost-bare.rules", &bare);
    let r = check(
        &topo,
        &[("lhost", &rules)],
        &["--no-open", "--no-redundant"],
    );
    let (line, under) = data_flow(&r.stdout, "tshost", "lhost");
    assert!(line.contains("BLOCKED on lhost"), "{}", r.stdout);
    assert!(
        under
            .iter()
            .any(|l| l.contains("could not connect DATA stream")),
        "{under:?}"
    );
    assert_eq!(r.code, 1);
}

#[test]
fn a_firewalld_style_nft_assignment_counts_too() {
    let dir = tempfile::tempdir().unwrap();
    let topo = wiki(dir.path(), "bsd", "");
    let rules = write(dir.path(), "lhost.nft", FIREWALLD_LIKE);
    let r = check(
        &topo,
        &[("lhost", &rules)],
        &["--no-open", "--no-redundant"],
    );
    let (line, under) = data_flow(&r.stdout, "tshost", "lhost");
    assert!(line.ends_with("PASS"), "{}", r.stdout);
    let want = format!("the amanda helper assigned at {}:", rules.display());
    assert!(under.iter().any(|l| l.contains(&want)), "{under:?}");
}

#[test]
fn bsdudp_passes_with_the_second_dumper_caveat() {
    let dir = tempfile::tempdir().unwrap();
    let topo = wiki(dir.path(), "bsdudp", "");
    let rules = write(dir.path(), "lhost.rules", SHOREWALL_LIKE);
    let r = check(
        &topo,
        &[("lhost", &rules)],
        &["--no-open", "--no-redundant"],
    );
    let (line, under) = data_flow(&r.stdout, "tshost", "lhost");
    assert!(line.ends_with("PASS"), "{}", r.stdout);
    assert!(
        under
            .iter()
            .any(|l| l.contains("RELATED") && l.contains("second dumper")),
        "{under:?}"
    );
}

#[test]
fn with_index_no_the_helper_never_expects_state() {
    let dir = tempfile::tempdir().unwrap();
    let topo = wiki(dir.path(), "bsd", "index = false");
    let rules = write(dir.path(), "lhost.rules", SHOREWALL_LIKE);
    let r = check(
        &topo,
        &[("lhost", &rules)],
        &["--no-open", "--no-redundant"],
    );
    let (line, under) = data_flow(&r.stdout, "tshost", "lhost");
    assert!(line.contains("BLOCKED on lhost"), "{}", r.stdout);
    assert!(
        under
            .iter()
            .any(|l| l.contains("`index no`") && l.contains("STATE")),
        "{under:?}"
    );
}

#[test]
fn an_assignment_for_other_sources_or_some_source_ports_does_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let topo = wiki(dir.path(), "bsd", "");
    // Only for another server: tshost's requests get no helper, and no note
    // pretends otherwise.
    let other = SHOREWALL_LIKE.replace(
        "-A PREROUTING -p udp",
        "-A PREROUTING -s 192.168.2.99/32 -p udp",
    );
    let rules = write(dir.path(), "lhost-other.rules", &other);
    let r = check(
        &topo,
        &[("lhost", &rules)],
        &["--no-open", "--no-redundant"],
    );
    let (line, under) = data_flow(&r.stdout, "tshost", "lhost");
    assert!(line.contains("BLOCKED on lhost"), "{}", r.stdout);
    assert!(!under.iter().any(|l| l.contains("RELATED")), "{under:?}");

    // For part of the dumpers' reserved ports only: Amanda binds any port of
    // 840-860, so some backups would pass and some fail; check says BLOCKED
    // and why.
    let part = SHOREWALL_LIKE.replace(
        "-A PREROUTING -p udp -m udp --dport 10080",
        "-A PREROUTING -p udp -m udp --sport 840:850 --dport 10080",
    );
    let rules = write(dir.path(), "lhost-part.rules", &part);
    let r = check(
        &topo,
        &[("lhost", &rules)],
        &["--no-open", "--no-redundant"],
    );
    let (line, under) = data_flow(&r.stdout, "tshost", "lhost");
    assert!(line.contains("BLOCKED on lhost"), "{}", r.stdout);
    assert!(
        under
            .iter()
            .any(|l| l.contains("to only some of the request's packets")),
        "{under:?}"
    );
}

/// RHost behind FWHost's masquerade: the request is NATed on FWHost, so the
/// expected connection there follows the master's NAT; both hosts assign the
/// helper in raw PREROUTING and both say so.
#[test]
fn the_helper_behind_a_nat_router() {
    let dir = tempfile::tempdir().unwrap();
    let topo = wiki(dir.path(), "bsd", "");
    let fw = "\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i eth0 -p udp -m udp --dport 10080 -j CT --helper amanda
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 192.168.2.0/24 -o eth1 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i eth0 -o eth1 -p udp -m udp --dport 10080 -j ACCEPT
COMMIT
";
    let fw = write(dir.path(), "fwhost.rules", fw);
    let rh = write(dir.path(), "rhost.rules", SHOREWALL_LIKE);
    let r = check(
        &topo,
        &[("fwhost", &fw), ("rhost", &rh)],
        &["--no-open", "--no-redundant"],
    );
    let (line, under) = data_flow(&r.stdout, "tshost", "rhost via fwhost");
    assert!(line.ends_with("PASS"), "{}", r.stdout);
    for (h, f) in [("fwhost", &fw), ("rhost", &rh)] {
        let want = format!(
            "{h}: RELATED: the amanda helper assigned at {}:4",
            f.display()
        );
        assert!(under.iter().any(|l| l.contains(&want)), "{want}\n{under:?}");
    }

    // Without FWHost's assignment the forwarded data connection is NEW there
    // and FORWARD drops it.
    let bare = common::without_lines(&std::fs::read_to_string(&fw).unwrap(), "CT --helper");
    let fw = write(dir.path(), "fwhost-bare.rules", &bare);
    let r = check(
        &topo,
        &[("fwhost", &fw), ("rhost", &rh)],
        &["--no-open", "--no-redundant"],
    );
    let (line, _) = data_flow(&r.stdout, "tshost", "rhost via fwhost");
    assert!(line.contains("BLOCKED on fwhost"), "{}", r.stdout);
}

/// The other way round: the topology relies on the helper, the ruleset does
/// not assign it (plan's own lhost rules with the assignment removed).
#[test]
fn a_plan_that_relies_on_the_helper_is_blocked_without_the_assignment() {
    let dir = tempfile::tempdir().unwrap();
    let topo = wiki(dir.path(), "bsd", "conntrack-helper = true");
    let out = dir.path().join("out");
    let (code, _, err) = amwall(&[
        "plan",
        topo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    let planned = std::fs::read_to_string(out.join("lhost.rules")).unwrap();
    let r = check(
        &topo,
        &[("lhost", &out.join("lhost.rules"))],
        &["--no-open", "--no-redundant"],
    );
    let (line, under) = data_flow(&r.stdout, "tshost", "lhost");
    assert!(line.ends_with("PASS"), "{}", r.stdout);
    assert!(under.iter().any(|l| l.contains("RELATED")), "{under:?}");

    let bare = common::without_lines(&planned, "CT --helper");
    assert_ne!(bare, planned, "the plan assigns the helper on lhost");
    let rules = write(dir.path(), "lhost-bare.rules", &bare);
    let r = check(
        &topo,
        &[("lhost", &rules)],
        &["--no-open", "--no-redundant"],
    );
    let (line, under) = data_flow(&r.stdout, "tshost", "lhost");
    assert!(line.contains("BLOCKED on lhost"), "{}", r.stdout);
    assert!(
        under.iter().any(
            |l| l.contains("the plan relies on the amanda helper, but no rule here assigns it")
        ),
        "{under:?}"
    );
}
