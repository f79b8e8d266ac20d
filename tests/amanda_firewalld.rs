//! Real Amanda, end to end, with the real firewalld (Debian's 1.3.3) on every
//! host of the wiki lab (tests/fixtures/lab/wiki-doc.toml), each on its own
//! D-Bus and configuration directory (`lab::firewalld`), loaded only from
//! `plan --firewalld`'s files by their install script.
//!
//! The router is set up as a firewalld admin would: its LAN side in the
//! `internal` zone, its Internet side in the default `public` zone, so
//! firewalld forwards nothing between them unless a policy says so; every
//! other host keeps the default zone. Before the install, firewalld's zones
//! refuse Amanda (negative control); after it, amcheck, amdump and amrecover on
//! every host pass, RHost's recovery through FWHost's port forward included,
//! and firewalld logs no error or warning.
//!
//! The peers' way is measured too: firewalld's own `amanda-client` service
//! (udp/tcp 10080 and the `amanda` conntrack helper) instead of amwall's
//! files lets bsd's amcheck and amdump through but not recovery, because the
//! kernel's helper does not parse amidxtaped's CTL stream (docs/design.md).
//!
//! Needs root, amanda-server, amanda-client, xinetd, nftables, firewalld and
//! dbus-daemon: anything missing fails the test, it never skips.

mod common;

use std::time::Instant;

use amwall::amanda::settings::Auth;
use amwall::lab::amanda::{AmandaLab, Options};
use amwall::lab::firewalld::Firewalld;
use amwall::Plan;
use common::amanda::{check_ok, dump_ok, fail, plan, recover_ok, show};
use tempfile::TempDir;

/// One host's firewalld and its directories; the daemon stops (field order)
/// before its configuration directory goes.
struct Host {
    name: String,
    fw: Firewalld,
    _conf: TempDir,
    out: TempDir,
}

/// A firewalld on every host of `plan`, FWHost's interfaces in their zones.
fn start_everywhere(lab: &AmandaLab, plan: &Plan) -> Vec<Host> {
    let mut hosts = Vec::new();
    for h in &plan.deployment.hosts {
        let ns = lab.namespace(&h.name).unwrap();
        let conf = tempfile::tempdir().unwrap();
        Firewalld::default_config(conf.path()).expect("firewalld must be installed");
        let fw = Firewalld::start(ns, conf.path())
            .unwrap_or_else(|e| panic!("{}: firewalld must start: {e}", h.name));
        if h.name == "fwhost" {
            must(
                &fw,
                &["--permanent", "--zone=internal", "--add-interface=eth0"],
            );
            must(
                &fw,
                &["--permanent", "--zone=public", "--add-interface=eth1"],
            );
            must(&fw, &["--reload"]);
        }
        hosts.push(Host {
            name: h.name.clone(),
            fw,
            _conf: conf,
            out: tempfile::tempdir().unwrap(),
        });
    }
    hosts
}

fn must(fw: &Firewalld, args: &[&str]) -> String {
    let o = fw.cmd(args).expect("firewall-cmd must be installed");
    assert!(o.ok(), "firewall-cmd {args:?}: {}{}", o.stdout, o.stderr);
    o.stdout
}

/// Run `host`'s install script from plan's files.
fn install(plan: &Plan, host: &Host) {
    let files = plan.firewalld_outputs(Some(&host.name));
    let o = host
        .fw
        .install(&files, host.out.path())
        .expect("running the install script");
    assert!(o.ok(), "{}: {}{}", host.name, o.stdout, o.stderr);
}

fn no_complaints(hosts: &[Host]) {
    for h in hosts {
        let c = h.fw.complaints();
        assert!(c.is_empty(), "{}: firewalld complained: {c:#?}", h.name);
    }
}

/// Every zone chain jumps to `filter_*_POLICIES_post` just before its final
/// ICMP accept and reject, and nothing here fills those chains: a counter
/// there counts what firewalld is about to reject.
const POST: [&str; 2] = ["filter_INPUT_POLICIES_post", "filter_FORWARD_POLICIES_post"];
const COUNTED: &str = "reaches firewalld's reject";

fn count_rejects(lab: &AmandaLab, hosts: &[Host]) {
    for h in hosts {
        let ns = lab.namespace(&h.name).unwrap();
        for chain in POST {
            let rule = format!(
                "add rule inet firewalld {chain} meta l4proto != {{ icmp, ipv6-icmp }} counter comment \"{COUNTED}\""
            );
            ns.must(&["nft", &rule])
                .unwrap_or_else(|e| panic!("{}: a counter in {chain}: {e}", h.name));
        }
    }
}

/// The counters `count_rejects` added that counted packets, as `host: rule`.
fn rejected(lab: &AmandaLab, hosts: &[Host]) -> Vec<String> {
    let mut out = Vec::new();
    for h in hosts {
        let ns = lab.namespace(&h.name).unwrap();
        let listed = ns
            .must(&["nft", "list", "table", "inet", "firewalld"])
            .unwrap()
            .stdout;
        let counters: Vec<&str> = listed.lines().filter(|l| l.contains(COUNTED)).collect();
        assert_eq!(counters.len(), POST.len(), "{}: {listed}", h.name);
        out.extend(
            counters
                .iter()
                .filter(|l| !l.contains("counter packets 0 "))
                .map(|l| format!("{}: {}", h.name, l.trim())),
        );
    }
    out
}

fn firewalld_run(auth: Auth) {
    let start = Instant::now();
    let label = format!("{auth}/firewalld");
    let plan = plan(auth, false);
    let lab = AmandaLab::build_with(&plan, &Options { dles_per_host: 2 })
        .unwrap_or_else(|e| panic!("building the Amanda lab: {e}"));
    let hosts = start_everywhere(&lab, &plan);

    // Negative control: firewalld's zones as they are refuse Amanda.
    let o = lab.amcheck().expect("running amcheck");
    if o.ok() && o.stdout.contains("0 problems found") {
        fail(
            &lab,
            &format!("{label}: amcheck passed before amwall's files were installed"),
            &show(&o),
        );
    }
    eprintln!("{label}: amcheck fails before the install, as it must");

    for h in &hosts {
        install(&plan, h);
    }
    no_complaints(&hosts);
    count_rejects(&lab, &hosts);
    check_ok(&lab, &label);
    dump_ok(&lab, &label);
    for host in ["lhost", "rhost", "fwhost", "tshost"] {
        recover_ok(&lab, &label, host);
    }
    // The admin's zones are still where they were on the router.
    let fwhost = hosts.iter().find(|h| h.name == "fwhost").unwrap();
    assert_eq!(
        must(&fwhost.fw, &["--get-zone-of-interface=eth0"]).trim(),
        "internal"
    );
    no_complaints(&hosts);
    // No packet of the run was refused and then got through on a retry.
    let refused = rejected(&lab, &hosts);
    if !refused.is_empty() {
        fail(
            &lab,
            &format!("{label}: packets reached firewalld's reject during a passing run"),
            &refused.join("\n"),
        );
    }
    eprintln!("{label}: no packet reached firewalld's reject");
    // ...and the counters do count: a datagram to a port nothing opens.
    let lhost = lab.namespace("lhost").unwrap();
    lhost
        .must(&["bash", "-c", "echo probe > /dev/udp/192.0.2.2/9"])
        .unwrap();
    let refused = rejected(&lab, &hosts);
    assert!(
        refused.len() == 1 && refused[0].starts_with("tshost: "),
        "{refused:#?}"
    );
    eprintln!("{label}: whole run {:.1?}", start.elapsed());
}

#[test]
fn bsdtcp_firewalld() {
    firewalld_run(Auth::Bsdtcp);
}

#[test]
fn bsd_firewalld() {
    firewalld_run(Auth::Bsd);
}

/// firewalld's `amanda-client` service on every host but the router (which
/// keeps amwall's files, so RHost's traffic still crosses it): bsd's amcheck
/// and amdump pass on the helper, recovery stops at amidxtaped's CTL stream.
#[test]
fn negative_firewalld_amanda_client_service_breaks_bsd_recovery() {
    let label = "bsd/firewalld amanda-client service";
    let plan = plan(Auth::Bsd, false);
    let lab = AmandaLab::build_with(&plan, &Options { dles_per_host: 1 })
        .unwrap_or_else(|e| panic!("building the Amanda lab: {e}"));
    let hosts = start_everywhere(&lab, &plan);
    for h in &hosts {
        if h.name == "fwhost" {
            install(&plan, h);
        } else {
            must(&h.fw, &["--permanent", "--add-service=amanda-client"]);
            must(&h.fw, &["--reload"]);
        }
    }
    check_ok(&lab, label);
    dump_ok(&lab, label);
    let r = lab.amrecover("lhost").expect("running amrecover");
    assert!(
        r.compared.is_err(),
        "{label}: recovery passed on firewalld's service alone\n{}",
        show(&r.output)
    );
    let said = format!("{}{}", r.output.stdout, r.output.stderr);
    assert!(
        said.contains("could not connect CTL stream"),
        "{label}: not the CTL stream:\n{}",
        show(&r.output)
    );
    eprintln!("{label}: amrecover on lhost fails at the CTL stream, as measured");
}
