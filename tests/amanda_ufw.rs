//! Real Amanda, end to end, with the real ufw (Debian's 0.36.2) enabled on
//! every host of the wiki lab (tests/fixtures/lab/wiki-doc.toml), each on a
//! private copy of /etc/ufw (`lab::ufw`), loaded only from `plan --ufw`'s
//! files by their install script: `HOST.ufw.sh`, and on the router
//! `HOST.ufw-before.init` for its masquerade and port forward.
//!
//! ufw's default policy is deny incoming and deny routed, so before the
//! install amcheck fails (negative control); after it, amcheck, amdump and
//! amrecover on every host pass, RHost's recovery through FWHost's port
//! forward included. No packet falls through to ufw's policy drop during
//! the run: the built-in chains' policy counters stay 0, and a datagram to a
//! port nothing opens shows that they count.
//!
//! Needs root, amanda-server, amanda-client, xinetd, iptables and ufw:
//! anything missing fails the test, it never skips.

mod common;

use std::time::Instant;

use amwall::amanda::settings::Auth;
use amwall::lab::amanda::{AmandaLab, Options};
use amwall::lab::ufw::Ufw;
use amwall::Plan;
use common::amanda::{check_ok, dump_ok, fail, plan, recover_ok, show};
use tempfile::TempDir;

struct Host {
    name: String,
    ufw: Ufw,
    out: TempDir,
}

fn enable_everywhere(lab: &AmandaLab, plan: &Plan) -> Vec<Host> {
    plan.deployment
        .hosts
        .iter()
        .map(|h| {
            let ns = lab.namespace(&h.name).unwrap();
            let ufw = Ufw::enable(ns)
                .unwrap_or_else(|e| panic!("{}: ufw must be installed and enable: {e}", h.name));
            Host {
                name: h.name.clone(),
                ufw,
                out: tempfile::tempdir().unwrap(),
            }
        })
        .collect()
}

fn install(plan: &Plan, host: &Host) {
    let files = plan.ufw_outputs(Some(&host.name));
    let o = host
        .ufw
        .install(&files, host.out.path())
        .expect("running the install script");
    assert!(o.ok(), "{}: {}{}", host.name, o.stdout, o.stderr);
}

/// Packets that fell through to a built-in chain's DROP policy (ufw's
/// "deny"), as `host: chain packets`, from `iptables-save -c`.
fn policy_drops(hosts: &[Host]) -> Vec<String> {
    let mut out = Vec::new();
    for h in hosts {
        let o = h
            .ufw
            .exec(&["iptables-save", "-c", "-t", "filter"])
            .unwrap();
        assert!(o.ok(), "{}: {}", h.name, o.stderr);
        for l in o.stdout.lines() {
            // ":INPUT DROP [12:3456]"
            let Some(rest) = l.strip_prefix(':') else {
                continue;
            };
            let w: Vec<&str> = rest.split_whitespace().collect();
            if let [chain, "DROP", counts] = w.as_slice() {
                let packets = counts
                    .trim_matches(['[', ']'])
                    .split(':')
                    .next()
                    .unwrap_or("");
                if packets != "0" {
                    out.push(format!("{}: {chain} {packets}", h.name));
                }
            }
        }
    }
    out
}

fn ufw_run(auth: Auth) {
    let start = Instant::now();
    let label = format!("{auth}/ufw");
    let plan = plan(auth, false);
    let lab = AmandaLab::build_with(&plan, &Options { dles_per_host: 2 })
        .unwrap_or_else(|e| panic!("building the Amanda lab: {e}"));
    let hosts = enable_everywhere(&lab, &plan);

    let o = lab.amcheck().expect("running amcheck");
    if o.ok() && o.stdout.contains("0 problems found") {
        fail(
            &lab,
            &format!("{label}: amcheck passed before amwall's ufw rules were added"),
            &show(&o),
        );
    }
    eprintln!("{label}: amcheck fails before the install, as it must");

    for h in &hosts {
        install(&plan, h);
    }
    // Counting starts now: what the negative control dropped is not the run's.
    for h in &hosts {
        let o = h.ufw.exec(&["iptables", "-Z"]).unwrap();
        assert!(o.ok(), "{}: {}", h.name, o.stderr);
    }
    check_ok(&lab, &label);
    dump_ok(&lab, &label);
    for host in ["lhost", "rhost", "fwhost", "tshost"] {
        recover_ok(&lab, &label, host);
    }
    let dropped = policy_drops(&hosts);
    if !dropped.is_empty() {
        fail(
            &lab,
            &format!("{label}: packets fell to ufw's deny during a passing run"),
            &dropped.join("\n"),
        );
    }
    eprintln!("{label}: no packet fell to ufw's deny");
    let lhost = lab.namespace("lhost").unwrap();
    lhost
        .must(&["bash", "-c", "echo probe > /dev/udp/192.0.2.2/9"])
        .unwrap();
    let dropped = policy_drops(&hosts);
    assert!(
        dropped.len() == 1 && dropped[0].starts_with("tshost: INPUT "),
        "the counters count: {dropped:#?}"
    );
    eprintln!("{label}: whole run {:.1?}", start.elapsed());
}

#[test]
fn bsdtcp_ufw() {
    ufw_run(Auth::Bsdtcp);
}

#[test]
fn bsdudp_ufw() {
    ufw_run(Auth::Bsdudp);
}
