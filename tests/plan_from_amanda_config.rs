//! `plan` from the admin's real Amanda files gives the same rules as the
//! hand-written topology they describe (issue 5), and hosts only the disklist
//! names come from a hosts file.

mod common;

use std::path::Path;

use amwall::amanda::settings::Auth;
use amwall::load::load_file;
use amwall::render::BackendSet;
use amwall::Plan;

/// Every rules file without its `#` header (which names the source file).
fn rules(plan: &Plan) -> Vec<(String, String)> {
    plan.outputs(BackendSet::Both, None)
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n != "SUMMARY.md" && n != "topology.svg")
        .map(|(n, t)| {
            (
                n,
                t.lines()
                    .filter(|l| !l.starts_with('#'))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })
        .collect()
}

#[test]
fn amanda_config_gives_the_hand_written_rules() {
    let d = load_file(Path::new("tests/fixtures/amanda/wiki-topology.toml"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    for h in ["tshost", "fwhost", "lhost", "rhost"] {
        let host = d.host(d.host_by_name(h).unwrap());
        assert!(
            host.roles.client,
            "{h} is a client because the disklist names it"
        );
        assert_eq!(host.amanda.auth, Auth::Bsd, "{h}: auth from the dumptype");
    }
    assert_eq!(
        d.hosts[0].amanda.inparallel, 4,
        "inparallel from amanda.conf"
    );
    assert!(d.provenance.files.iter().any(|f| f.ends_with("disklist")));
    let from_config = Plan::build(d).unwrap();
    let by_hand = Plan::build(common::example("wiki")).unwrap();
    assert_eq!(rules(&from_config), rules(&by_hand));
}

#[test]
fn cli_amanda_config_and_hosts_file() {
    // A topology with only the network and the server; the clients come from the
    // disklist, their addresses from a hosts file.
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("t.toml");
    std::fs::write(
        &topo,
        "[amanda]\nauth = \"bsd\"\nclient-port = 10080\n[management]\nfrom = [\"lan\"]\n\
         [[network]]\nname = \"lan\"\ncidr = \"192.0.2.0/24\"\n\
         [[host]]\nname = \"tshost\"\nroles = [\"server\"]\ninterfaces = [{ name = \"eth0\", network = \"lan\", address = \"192.0.2.2\" }]\n",
    )
    .unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "192.0.2.1 fwhost\n192.0.2.3 lhost.example.org lhost\n192.0.2.5 rhost\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_amwall"))
        .args([
            "plan",
            topo.to_str().unwrap(),
            "--amanda-config",
            "tests/fixtures/amanda/wiki",
            "--hosts",
        ])
        .arg(&hosts)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let lhost = std::fs::read_to_string(out.join("lhost.rules")).unwrap();
    assert!(
        lhost.contains(
            "-A INPUT -s 192.0.2.2/32 -i eth0 -p udp -m udp --sport 840:860 --dport 10080"
        ),
        "{lhost}"
    );
    assert!(
        lhost.contains("--dport 50000:50100"),
        "bsd data range from the dumptype's auth: {lhost}"
    );

    // Without the hosts file, the disklist's hosts are unknown: exit 2 at the disklist line.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_amwall"))
        .args([
            "plan",
            topo.to_str().unwrap(),
            "--amanda-config",
            "tests/fixtures/amanda/wiki",
            "--out",
        ])
        .arg(dir.path().join("o2"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tests/fixtures/amanda/wiki/disklist:4:1: disklist host `fwhost` is not in the topology"), "{stderr}");
}

/// amanda.conf and amanda-client.conf are read by different programs
/// (docs/amanda-protocol.md §2): the dumper binds in the server's amanda.conf
/// range, amandad listens in its own host's amanda-client.conf range — on a
/// client for backups, on the server for recoveries — and amrecover binds in
/// its host's amanda-client.conf range. Three different ranges here, and each
/// rule must use the right one.
#[test]
fn server_and_client_confs_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("DailySet1");
    std::fs::create_dir(&cfg).unwrap();
    std::fs::write(
        cfg.join("amanda.conf"),
        "org \"DailySet1\"\nreserved-udp-port 840,860\nunreserved-tcp-port 51000,51010\n\
         define dumptype bsd-tar {\n  program \"GNUTAR\"\n  auth \"bsd\"\n  client-port 10080\n}\n",
    )
    .unwrap();
    std::fs::write(cfg.join("disklist"), "c1 /etc bsd-tar\n").unwrap();
    let conf = |name: &str, range: &str| {
        let p = dir.path().join(format!("{name}.conf"));
        std::fs::write(
            &p,
            format!(
                "conf \"DailySet1\"\nindex-server \"ts\"\ntape-server \"ts\"\nauth \"bsd\"\n\
                 client-port 10080\nreserved-udp-port 840,860\nunreserved-tcp-port {range}\n"
            ),
        )
        .unwrap();
        p.display().to_string()
    };
    let (ts_conf, c1_conf) = (conf("ts", "52000,52010"), conf("c1", "53000,53010"));
    let topo = format!(
        "[amanda]\namanda-config = \"{}\"\nauth = \"bsd\"\nclient-port = 10080\n\
         [[network]]\nname = \"lan\"\ncidr = \"192.0.2.0/24\"\n\
         [[host]]\nname = \"ts\"\nroles = [\"server\", \"recover\"]\namanda-client-conf = \"{ts_conf}\"\n\
         interfaces = [{{ name = \"eth0\", network = \"lan\", address = \"192.0.2.2\" }}]\n\
         [[host]]\nname = \"c1\"\nroles = [\"client\", \"recover\"]\namanda-client-conf = \"{c1_conf}\"\n\
         interfaces = [{{ name = \"eth0\", network = \"lan\", address = \"192.0.2.3\" }}]\n",
        cfg.display()
    );
    let t = dir.path().join("t.toml");
    std::fs::write(&t, topo).unwrap();
    let plan = amwall::Plan::build(amwall::load::load_file(&t).unwrap()).unwrap();
    let rules = |host: &str| {
        let hp = plan
            .policies
            .iter()
            .find(|p| plan.deployment.hosts[p.host].name == host)
            .unwrap();
        plan.iptables(hp)
    };
    let (ts, c1) = (rules("ts"), rules("c1"));
    // Backup: c1's amandad listens in c1's range; the dumper comes from
    // the server's amanda.conf range.
    assert!(
        c1.contains(
            "-s 192.0.2.2/32 -i eth0 -p tcp -m tcp --sport 51000:51010 --dport 53000:53010"
        ),
        "{c1}"
    );
    // Recovery from c1: ts's amandad listens in ts's amanda-client.conf
    // range; amrecover on c1 binds in c1's.
    assert!(
        ts.contains(
            "-s 192.0.2.3/32 -i eth0 -p tcp -m tcp --sport 53000:53010 --dport 52000:52010"
        ),
        "{ts}"
    );
    assert!(!ts.contains("--dport 51000:51010"), "{ts}");
}
