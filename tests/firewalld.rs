//! `plan --firewalld` with the real firewalld (Debian's 1.3.3) running inside
//! a network namespace on its own D-Bus and its own configuration directory
//! (`lab::firewalld`): the install script puts amwall's service, ipsets and
//! policies beside the admin's zone, firewalld checks and loads them, and real
//! packets show Amanda's request passing only from its reserved source ports
//! while the admin's ban and ssh stay as they were. Every variant's files also
//! pass `firewall-offline-cmd --check-config` without a warning. Needs root,
//! iproute2, nftables and firewalld: CI installs them, and a missing one
//! fails here loudly.

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;

use amwall::check::{self, HostRules, Options, RulesFile};
use amwall::lab::firewalld::Firewalld;
use amwall::lab::netns::veth;
use amwall::lab::Netns;
use amwall::Plan;

fn must(fw: &Firewalld, args: &[&str]) -> String {
    let o = fw.cmd(args).expect("firewall-cmd must be installed");
    assert!(o.ok(), "firewall-cmd {args:?}: {}{}", o.stdout, o.stderr);
    o.stdout
}

/// The flows to `host` that `check` finds blocked in the live `ruleset`
/// (after asserting there are flows to it at all).
fn blocked_to(plan: &Plan, host: &str, ruleset: String) -> Vec<String> {
    let rules = HostRules::new(
        vec![RulesFile::parse("live", ruleset).unwrap_or_else(|e| panic!("{e:?}"))],
        None,
    );
    let r = check::check(plan, &[(host.into(), rules)], Options::default());
    let to: Vec<_> = r
        .flows
        .iter()
        .filter(|f| f.flow.responder == host)
        .collect();
    assert!(!to.is_empty(), "no flow to {host}");
    to.iter()
        .filter(|f| f.result.status == check::Status::Blocked)
        .map(|f| format!("{}: {:?}", f.flow, f.result))
        .collect()
}

#[test]
fn firewalld_files_load_beside_the_admins_zone() {
    let plan = Plan::build(common::generated(6).with_helper(true)).unwrap();
    let files: Vec<_> = plan.firewalld_outputs(Some("c0"));
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"c0.firewalld-service-amwall-amanda.xml")
            && names.contains(&"c0.firewalld-policy-amwall-input.xml")
            && names.contains(&"c0.firewalld-sport.nft"),
        "{names:?}"
    );
    let out = tempfile::tempdir().unwrap();

    let srv = Netns::new("amwfS").expect("creating a netns needs root and iproute2");
    let cli = Netns::new("amwfC").unwrap();
    veth(&srv, "eth0", &cli, "eth0").unwrap();
    for a in ["198.51.100.1/24", "198.51.100.9/24"] {
        srv.must(&["ip", "addr", "add", a, "dev", "eth0"]).unwrap();
    }
    cli.must(&["ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"])
        .unwrap();
    let conf = tempfile::tempdir().unwrap();
    Firewalld::default_config(conf.path()).expect("firewalld must be installed");
    let fw = Firewalld::start(&cli, conf.path()).expect("firewalld must start");
    // The admin's own: a ban in the default zone, which also allows ssh.
    must(
        &fw,
        &[
            "--permanent",
            "--zone=public",
            "--add-rich-rule=rule family=ipv4 source address=198.51.100.9 drop",
        ],
    );
    must(&fw, &["--reload"]);
    let zone = conf.path().join("zones/public.xml");
    let zone_before = std::fs::read(&zone).expect("the admin's zone file");

    let amandad: UdpSocket = cli
        .run_in(|| UdpSocket::bind("198.51.100.2:10080").unwrap())
        .unwrap();
    let _sshd: TcpListener = cli
        .run_in(|| TcpListener::bind("198.51.100.2:22").unwrap())
        .unwrap();
    let to_amandad: SocketAddr = "198.51.100.2:10080".parse().unwrap();
    let to_sshd: SocketAddr = "198.51.100.2:22".parse().unwrap();
    // Negative control: the public zone rejects Amanda's request.
    assert!(!common::udp_arrives(
        &srv,
        "198.51.100.1:850",
        &amandad,
        to_amandad
    ));

    let before = cli.must(&["nft", "list", "ruleset"]).unwrap().stdout;
    let blocked_before = blocked_to(&plan, "c0", before);
    assert!(
        !blocked_before.is_empty(),
        "the simulator reads firewalld's reject: before the install Amanda is blocked"
    );

    for round in 1..=2 {
        let o = fw.install(&files, out.path()).unwrap();
        assert!(o.ok(), "round {round}: {}{}", o.stdout, o.stderr);
    }
    assert_eq!(
        std::fs::read(&zone).unwrap(),
        zone_before,
        "the admin's zone file is not touched"
    );
    assert!(fw.complaints().is_empty(), "{}", fw.log());
    let policies = must(&fw, &["--get-policies"]);
    assert!(
        policies.split_whitespace().any(|p| p == "amwall-input"),
        "{policies}"
    );

    assert!(common::udp_arrives(
        &srv,
        "198.51.100.1:850",
        &amandad,
        to_amandad
    ));
    assert!(
        !common::udp_arrives(&srv, "198.51.100.1:40000", &amandad, to_amandad),
        "firewalld accepts the port; amwall's drop-only table refuses the wrong source port"
    );
    assert_eq!(
        common::tcp_connect(&srv, "198.51.100.1:0", to_sshd),
        ErrorKind::Other,
        "ssh still in"
    );
    assert_ne!(
        common::tcp_connect(&srv, "198.51.100.9:0", to_sshd),
        ErrorKind::Other,
        "the ban holds"
    );

    // firewalld sets the helper on Amanda's request, and its reload leaves
    // amwall's table alone.
    must(&fw, &["--reload"]);
    let ruleset = cli.must(&["nft", "list", "ruleset"]).unwrap().stdout;
    assert!(
        ruleset.contains("ct helper set \"helper-amanda-udp\""),
        "{ruleset}"
    );
    assert_eq!(
        ruleset.matches("table ip amwall_sport").count(),
        1,
        "{ruleset}"
    );
    assert!(common::udp_arrives(
        &srv,
        "198.51.100.1:851",
        &amandad,
        to_amandad
    ));

    // The simulator reads firewalld's table beside amwall's and finds no
    // flow to c0 blocked.
    let blocked = blocked_to(&plan, "c0", ruleset);
    assert!(blocked.is_empty(), "{blocked:#?}");

    // A file of the same name that amwall did not write stops the script
    // before anything changes.
    let foreign = conf.path().join("services/amwall-amanda.xml");
    let admins = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<service><port protocol=\"udp\" port=\"10080\"/></service>\n";
    std::fs::write(&foreign, admins).unwrap();
    let policy = std::fs::read(conf.path().join("policies/amwall-input.xml")).unwrap();
    let o = fw.install(&files, out.path()).unwrap();
    assert!(!o.ok(), "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr
            .contains("amwall-amanda.xml exists and amwall did not write it"),
        "{}",
        o.stderr
    );
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), admins);
    assert_eq!(
        std::fs::read(conf.path().join("policies/amwall-input.xml")).unwrap(),
        policy
    );
}

/// Every example × auth × helper variant: each host's files pass firewalld's
/// own offline check, warnings counted as errors, in a fresh configuration
/// directory (no daemon).
#[test]
fn every_variants_firewalld_files_pass_firewalld_s_check() {
    let mut checked = 0;
    for (label, plan) in common::variants() {
        for hp in &plan.policies {
            let files = plan.firewalld(hp);
            let conf = tempfile::tempdir().unwrap();
            Firewalld::default_config(conf.path()).expect("firewalld must be installed");
            for (name, text) in &files {
                let Some(rest) = name.split_once(".firewalld-").map(|(_, r)| r) else {
                    continue;
                };
                let Some((kind, obj)) = rest.split_once('-') else {
                    continue;
                };
                let dir = match kind {
                    "service" => "services",
                    "ipset" => "ipsets",
                    "policy" => "policies",
                    _ => continue,
                };
                std::fs::create_dir_all(conf.path().join(dir)).unwrap();
                std::fs::write(conf.path().join(dir).join(obj), text).unwrap();
            }
            let o = Command::new("firewall-offline-cmd")
                .arg("--system-config")
                .arg(conf.path())
                .arg("--check-config")
                .output()
                .expect("firewall-offline-cmd must be installed");
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            let host = &plan.deployment.hosts[hp.host].name;
            assert!(
                o.status.success() && !said.to_lowercase().contains("warning"),
                "{label} {host}: {said}"
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "{checked}");
}
