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
use tempfile::TempDir;

fn must(fw: &Firewalld, args: &[&str]) -> String {
    let o = fw.cmd(args).expect("firewall-cmd must be installed");
    assert!(o.ok(), "firewall-cmd {args:?}: {}{}", o.stdout, o.stderr);
    o.stdout
}

/// A server namespace (`PREFIX`S, `srv` addresses) and a client (`PREFIX`C)
/// on one link, the client running firewalld with the admin's own permanent
/// ban of `banned` in the default zone (which also allows ssh).
fn pair(prefix: &str, srv: &[&str], cli: &str, banned: &str) -> (Netns, Netns, TempDir, Firewalld) {
    let s = Netns::new(&format!("{prefix}S")).expect("creating a netns needs root and iproute2");
    let c = Netns::new(&format!("{prefix}C")).unwrap();
    veth(&s, "eth0", &c, "eth0").unwrap();
    for a in srv {
        s.must(&["ip", "addr", "add", a, "dev", "eth0"]).unwrap();
    }
    c.must(&["ip", "addr", "add", cli, "dev", "eth0"]).unwrap();
    let conf = tempfile::tempdir().unwrap();
    Firewalld::default_config(conf.path()).expect("firewalld must be installed");
    let fw = Firewalld::start(&c, conf.path()).expect("firewalld must start");
    let ban = format!("--add-rich-rule=rule family=ipv4 source address={banned} drop");
    must(&fw, &["--permanent", "--zone=public", &ban]);
    must(&fw, &["--reload"]);
    (s, c, conf, fw)
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

    let (srv, cli, conf, fw) = pair(
        "amwf",
        &["198.51.100.1/24", "198.51.100.9/24"],
        "198.51.100.2/24",
        "198.51.100.9",
    );
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

/// c1 of a LAN, bsd: Amanda's request must come from a reserved port.
const APPLY_TOPOLOGY: &str = r#"[amanda]
auth = "bsd"
[management]
from = ["192.0.2.0/24"]
[[network]]
name = "lan"
cidr = "192.0.2.0/24"
[[host]]
name = "tshost"
roles = ["server"]
interfaces = [{ name = "eth0", network = "lan", address = "192.0.2.2" }]
[[host]]
name = "c1"
roles = ["client"]
interfaces = [{ name = "eth0", network = "lan", address = "192.0.2.3" }]
"#;

/// Every file of firewalld's configuration directory, path → bytes.
fn config_files(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "xml" || x == "conf") {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// `amwall apply --backend firewalld` with the real firewalld: the load
/// reaches firewalld's runtime (and amwall's source-port table) only; a
/// rollback leaves firewalld's configuration byte for byte as it was and
/// Amanda refused again; a confirmation writes amwall's files, which a
/// reload then keeps; a runtime-only change of the admin's (a ban) stops a
/// later apply, whose reload would drop it, with nothing changed.
#[test]
fn apply_loads_firewalld_runtime_first_and_keeps_it_only_on_confirm() {
    let (srv, cli, conf, fw) = pair("amwfA", &["192.0.2.2/24"], "192.0.2.3/24", "192.0.2.99");
    let work = tempfile::tempdir().unwrap();
    let topo = work.path().join("t.toml");
    std::fs::write(&topo, APPLY_TOPOLOGY).unwrap();
    let state = work.path().join("state");
    let amwall = |args: &[&str]| {
        let conf_env = format!("FIREWALLD_CONFIG={}", conf.path().display());
        let argv = common::amwall_argv(&[&conf_env], args, state.to_str().unwrap());
        let o = fw.run(&argv).unwrap();
        (o.status, format!("{}{}", o.stdout, o.stderr))
    };
    // Without --backend the running firewalld is found and chosen.
    let apply = |named: bool| {
        let mut args = vec!["apply", topo.to_str().unwrap(), "--host", "c1"];
        if named {
            args.extend(["--backend", "firewalld"]);
        }
        args.extend(["--timeout", "60", "--no-wait"]);
        amwall(&args)
    };
    let amandad: UdpSocket = cli
        .run_in(|| UdpSocket::bind("192.0.2.3:10080").unwrap())
        .unwrap();
    let to: SocketAddr = "192.0.2.3:10080".parse().unwrap();
    let passes =
        |sport: u16| common::udp_arrives(&srv, &format!("192.0.2.2:{sport}"), &amandad, to);
    // The runtime, or the configuration on disk (what a reload or a boot
    // loads; firewalld's own `--permanent` view is re-read only on reload).
    let has_policy = |permanent: bool| {
        let listed = if permanent {
            let o = Command::new("firewall-offline-cmd")
                .arg("--system-config")
                .arg(conf.path())
                .arg("--get-policies")
                .output()
                .expect("firewall-offline-cmd must be installed");
            assert!(o.status.success(), "{o:?}");
            String::from_utf8_lossy(&o.stdout).into_owned()
        } else {
            must(&fw, &["--get-policies"])
        };
        listed.split_whitespace().any(|p| p == "amwall-input")
    };
    assert!(!passes(850), "negative control: the zone refuses Amanda");
    let before = config_files(conf.path());

    // A topology that says amwall alone runs c1's firewall is refused here.
    let wrong = work.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        APPLY_TOPOLOGY.replace("name = \"c1\"\n", "name = \"c1\"\nfirewall = \"amwall\"\n"),
    )
    .unwrap();
    let (rc, said) = amwall(&[
        "apply",
        wrong.to_str().unwrap(),
        "--host",
        "c1",
        "--no-wait",
    ]);
    assert_eq!(rc, 2, "{said}");
    assert!(
        said.contains("the topology says `amwall` manages c1's firewall")
            && said.contains("firewalld is running"),
        "{said}"
    );
    assert_eq!(config_files(conf.path()), before);
    assert!(!has_policy(false), "{said}");

    let (rc, said) = apply(false);
    assert_eq!(rc, 0, "{said}");
    assert!(
        said.contains("firewalld is running") && said.contains("so: --backend firewalld"),
        "{said}"
    );
    assert!(has_policy(false), "in the runtime: {said}");
    assert!(!has_policy(true), "not permanent: {said}");
    assert_eq!(config_files(conf.path()), before, "nothing permanent yet");
    assert!(passes(850));
    assert!(!passes(40000), "amwall_sport refuses the wrong source port");

    let (rc, said) = amwall(&["apply", "--rollback"]);
    assert_eq!(rc, 0, "{said}");
    assert!(!has_policy(false), "{said}");
    assert!(!passes(851), "refused again after the rollback");
    let tables = cli.must(&["nft", "list", "tables"]).unwrap().stdout;
    assert!(!tables.contains("amwall_sport"), "{tables}");
    assert_eq!(config_files(conf.path()), before);

    let (rc, said) = apply(true);
    assert_eq!(rc, 0, "{said}");
    let (rc, said) = amwall(&["apply", "--confirm"]);
    assert_eq!(rc, 0, "{said}");
    assert!(has_policy(true), "permanent once confirmed: {said}");
    let policy = std::fs::read_to_string(conf.path().join("policies/amwall-input.xml")).unwrap();
    assert!(policy.contains("Written by amwall"), "{policy}");
    must(&fw, &["--reload"]);
    assert!(has_policy(false));
    assert!(passes(852), "kept across firewalld's reload");
    assert!(fw.complaints().is_empty(), "{}", fw.log());

    // A runtime-only ban: the reload of a new apply would drop it.
    let ban = "rule family=\"ipv4\" source address=\"192.0.2.98\" drop";
    must(&fw, &["--zone=public", &format!("--add-rich-rule={ban}")]);
    let files = config_files(conf.path());
    let (rc, said) = apply(true);
    assert_eq!(rc, 2, "{said}");
    assert!(
        said.contains("runtime only") && said.contains("192.0.2.98"),
        "{said}"
    );
    assert!(must(&fw, &["--zone=public", "--list-rich-rules"]).contains("192.0.2.98"));
    assert_eq!(config_files(conf.path()), files);
}

/// The dual-stack example's upstream build speaks IPv6: with firewalld on
/// TSHost (installed by `HOST.firewalld.sh`) and on RHost (`amwall apply
/// --backend firewalld`), Amanda's control connection and recovery pass
/// over IPv6 through the family-ipv6 rich rules, and `table ip6
/// amwall_sport` drops them from unreserved source ports; the zones refuse
/// them before. RHost's rollback takes the IPv6 openings and the IPv6 table
/// away again.
#[test]
fn firewalld_opens_amandas_ipv6_flows_and_apply_rolls_them_back() {
    use common::dual::{self, connects, RH, TS};
    let plan = Plan::build(common::example("dualstack")).unwrap();
    let n = dual::net("amwf6");
    let start = |ns: &Netns| {
        let conf = tempfile::tempdir().unwrap();
        Firewalld::default_config(conf.path()).expect("firewalld must be installed");
        let fw = Firewalld::start(ns, conf.path()).expect("firewalld must start");
        (conf, fw)
    };
    let (_ts_conf, ts_fw) = start(&n.ts);
    let (rh_conf, rh_fw) = start(&n.rh);
    dual::amanda_closed(&n, "the zones refuse it");

    let out = tempfile::tempdir().unwrap();
    let files = plan.firewalld_outputs(Some("tshost"));
    for round in 1..=2 {
        let o = ts_fw.install(&files, out.path()).unwrap();
        assert!(o.ok(), "round {round}: {}{}", o.stdout, o.stderr);
    }
    let tables = n.ts.must(&["nft", "list", "tables"]).unwrap().stdout;
    assert!(tables.contains("table ip6 amwall_sport"), "{tables}");

    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let topo = format!("{}/examples/dualstack.toml", env!("CARGO_MANIFEST_DIR"));
    let amwall = |args: &[&str]| {
        let conf_env = format!("FIREWALLD_CONFIG={}", rh_conf.path().display());
        let argv = common::amwall_argv(&[&conf_env], args, state.to_str().unwrap());
        let o = rh_fw.run(&argv).unwrap();
        (o.status, format!("{}{}", o.stdout, o.stderr))
    };
    let (rc, said) = amwall(&[
        "apply",
        &topo,
        "--host",
        "rhost",
        "--backend",
        "firewalld",
        "--timeout",
        "60",
        "--no-wait",
    ]);
    assert_eq!(rc, 0, "{said}");
    dual::amanda_passes_reserved_only(&n, "firewalld");
    assert!(ts_fw.complaints().is_empty(), "{}", ts_fw.log());
    assert!(rh_fw.complaints().is_empty(), "{}", rh_fw.log());

    let (rc, said) = amwall(&["apply", "--rollback"]);
    assert_eq!(rc, 0, "{said}");
    assert!(
        !connects(&n.ts, TS, 601, RH, 10080),
        "refused again: {said}"
    );
    let tables = n.rh.must(&["nft", "list", "tables"]).unwrap().stdout;
    assert!(!tables.contains("amwall_sport"), "{tables}");
}

/// Many IPv6 sources: firewalld gets a `family inet6` ipset object and one
/// rich rule naming it. In the kernel a member's recovery passes from a
/// reserved port; a non-member, and a member from an unreserved port, are
/// refused.
#[test]
fn firewalld_matches_many_ipv6_sources_with_an_inet6_ipset() {
    let dep = amwall::load::load_str("dual-lan.toml", common::dual::lan_toml(12)).unwrap();
    let plan = Plan::build(dep).unwrap();
    let files = plan.firewalld_outputs(Some("server"));
    assert!(
        files
            .iter()
            .any(|(n, t)| n.contains("ipset-amw6_") && t.contains("value=\"inet6\"")),
        "{files:?}"
    );
    let srv = Netns::new("amwf6S").expect("creating a netns needs root and iproute2");
    let cli = Netns::new("amwf6C").unwrap();
    veth(&srv, "eth0", &cli, "eth0").unwrap();
    let addr6 = |ns: &Netns, a: &str| {
        ns.must(&["ip", "-6", "addr", "add", a, "dev", "eth0", "nodad"])
            .unwrap();
    };
    addr6(&srv, "2001:db8:5::1/64");
    addr6(&cli, "2001:db8:5::2/64");
    addr6(&cli, "2001:db8:5::99/64");
    let conf = tempfile::tempdir().unwrap();
    Firewalld::default_config(conf.path()).expect("firewalld must be installed");
    let fw = Firewalld::start(&srv, conf.path()).expect("firewalld must start");
    let _amandad = srv
        .run_in(|| TcpListener::bind("[::]:10080").unwrap())
        .unwrap();
    let connects =
        |from: &str, sport: u16| common::dual::connects(&cli, from, sport, "2001:db8:5::1", 10080);
    assert!(
        !connects("2001:db8:5::2", 600),
        "the zone refuses it before"
    );
    let out = tempfile::tempdir().unwrap();
    let o = fw.install(&files, out.path()).unwrap();
    assert!(o.ok(), "{}{}", o.stdout, o.stderr);
    assert!(fw.complaints().is_empty(), "{}", fw.log());
    assert!(connects("2001:db8:5::2", 601), "a member passes");
    assert!(!connects("2001:db8:5::99", 602), "a non-member is refused");
    assert!(
        !connects("2001:db8:5::2", 40000),
        "an unreserved port is dropped"
    );
}
