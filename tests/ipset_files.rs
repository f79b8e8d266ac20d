//! `check --ipset` reads the `HOST.ipset` file `plan` writes (an `ipset
//! restore` script: create a temporary twin, flush, add, swap, destroy) with
//! the meaning ipset gives it, and `ipset save` output; the kernel is the judge
//! of that meaning: the file restored in a namespace and saved back parses to
//! the same sets.

mod common;

use amwall::lab::Netns;
use amwall::netfilter::ipset::{self, IpSets};
use common::amwall;

/// Sets by name with sorted members, for comparing two readings.
fn sorted(s: &IpSets) -> Vec<(String, Vec<String>)> {
    let mut v: Vec<(String, Vec<String>)> = s
        .sets
        .iter()
        .map(|s| {
            let mut m: Vec<String> = s.elements.iter().map(|e| e.to_string()).collect();
            m.extend(s.elements6.iter().map(|e| e.to_string()));
            m.sort();
            (s.name.clone(), m)
        })
        .collect();
    v.sort();
    v
}

/// Every `.ipset` plan writes (the examples in every auth mode, and 200
/// clients whose groups aggregate into prefixes) reads as exactly the groups
/// the rules name, and the kernel agrees after `ipset restore` + `ipset save`.
#[test]
fn planned_ipset_files_read_as_the_kernel_loads_them() {
    let mut plans = common::variants();
    plans.push((
        "generated-200".into(),
        amwall::Plan::build(common::generated(200)).unwrap(),
    ));
    let mut seen = 0;
    for (label, plan) in plans {
        for hp in &plan.policies {
            let host = &plan.deployment.hosts[hp.host].name;
            let Some(text) = plan.ipset(hp) else { continue };
            let ours = ipset::parse("plan.ipset", &text)
                .unwrap_or_else(|e| panic!("{label}/{host}: {e:?}\n{text}"));
            assert!(ours.unsupported.is_empty(), "{label}/{host}: {ours:?}");
            assert!(
                ours.sets.iter().all(|s| !s.name.ends_with('~')),
                "{label}/{host}: the temporary twin is destroyed: {ours:?}"
            );
            // Each set the rules name has the members of its group.
            for g in hp.groups.iter() {
                let name = amwall::render::ipset_name(g);
                if let Some(s) = ours.set(&name) {
                    let mut want: Vec<String> = g.members.iter().map(|m| m.to_string()).collect();
                    want.sort();
                    let mut got: Vec<String> = s.elements.iter().map(|m| m.to_string()).collect();
                    got.sort();
                    assert_eq!(got, want, "{label}/{host}: set {name}");
                }
            }
            let ns = Netns::new("amwis").expect("creating a netns needs root and iproute2");
            let r = ns
                .exec(&["ipset", "restore"], Some(&text))
                .expect("ipset must be installed");
            assert!(r.ok(), "{label}/{host}: ipset restore: {}", r.stderr);
            let saved = ns.must(&["ipset", "save"]).unwrap().stdout;
            let kernel = ipset::parse("ipset save", &saved)
                .unwrap_or_else(|e| panic!("{label}/{host}: {e:?}\n{saved}"));
            assert_eq!(sorted(&kernel), sorted(&ours), "{label}/{host}:\n{saved}");
            seen += 1;
        }
    }
    assert!(seen >= 5, "only {seen} ipset files");
}

/// Restore scripts that use every command: what ipset leaves is what we read.
#[test]
fn restore_commands_end_where_the_kernel_ends() {
    let script = "create a hash:ip family inet hashsize 1024 maxelem 65536 -exist\n\
                  create a~ hash:ip family inet -exist\nflush a~\n\
                  add a~ 192.0.2.1\nadd a~ 192.0.2.4-192.0.2.6\nadd a~ 192.0.2.8/30\ndel a~ 192.0.2.9\n\
                  swap a~ a\ndestroy a~\n\
                  create n hash:net family inet\nadd n 198.51.100.0/24\nadd n 203.0.113.0/25\n\
                  add n 203.0.113.128/25\ndel n 203.0.113.0/25\n\
                  -N old hash:ip\n-A old 203.0.113.1\nrename old new\n\
                  create gone hash:ip\nadd gone 192.0.2.200\ndestroy gone\n\
                  create b bitmap:ip range 192.0.2.0/24\nadd b 192.0.2.16/29\nflush b\nadd b 192.0.2.3\n\
                  COMMIT\n";
    let ours = ipset::parse("s.ipset", script).unwrap();
    let ns = Netns::new("amwis").expect("creating a netns needs root and iproute2");
    let r = ns.exec(&["ipset", "restore"], Some(script)).unwrap();
    assert!(r.ok(), "{}", r.stderr);
    let saved = ns.must(&["ipset", "save"]).unwrap().stdout;
    let kernel = ipset::parse("ipset save", &saved).unwrap();
    assert_eq!(sorted(&kernel), sorted(&ours), "{saved}");
    assert_eq!(ours.sets.len(), 4, "{ours:?}");
}

/// Through the binary: `check --ipset` with the file `plan` wrote gives the
/// same verdicts as the planned rules with their sets (every flow passes);
/// today's reader stopped at the file's `flush` line with exit 2.
#[test]
fn check_takes_the_ipset_file_plan_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (code, _, err) = amwall(&[
        "plan",
        "examples/lan.toml",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    let ipset_file = out.join("backup.ipset");
    assert!(ipset_file.exists(), "the lan example's server has an ipset");
    let mut args: Vec<String> = vec!["check".into(), "examples/lan.toml".into()];
    for entry in std::fs::read_dir(&out).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "rules") {
            let host = p.file_stem().unwrap().to_string_lossy().into_owned();
            args.push("--rules".into());
            args.push(format!("{host}={}", p.display()));
        }
    }
    args.push("--ipset".into());
    args.push(format!("backup={}", ipset_file.display()));
    args.push("--format".into());
    args.push("json".into());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = amwall(&a);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let flows = v["flows"].as_array().unwrap();
    assert!(!flows.is_empty());
    for f in flows {
        assert_eq!(f["result"]["status"], "pass", "{f}");
    }
    // The same file through explain: a recovering client's packet is accepted
    // by the rule that names the set.
    let (code, stdout, stderr) = amwall(&[
        "explain",
        "--rules",
        out.join("backup.rules").to_str().unwrap(),
        "--ipset",
        ipset_file.to_str().unwrap(),
        "tcp 10.20.0.21:600 -> 10.20.0.10:10080 [in eth0]",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("amw_in_amrecover_hosts") && stdout.trim_end().ends_with("Verdict: ACCEPT"),
        "{stdout}"
    );
}

/// An IPv6 address on `ns`'s eth0, usable at once (no duplicate detection).
fn addr6(ns: &Netns, a: &str) {
    ns.must(&["ip", "-6", "addr", "add", a, "dev", "eth0", "nodad"])
        .unwrap();
}

/// Amanda over IPv6 with many sources: the server's `HOST.ipset` holds a
/// `hash:net family inet6` set that `HOST.rules6` matches. Loaded with
/// `ipset restore`, `iptables-restore` and `ip6tables-restore` in a
/// namespace, a member's recovery from a reserved port passes and a
/// non-member's is dropped (as is a member's from an unreserved port);
/// `ipset save` reads back as the file; `check` with both files and the
/// sets finds every flow to the server passing and no set unknown.
#[test]
fn an_inet6_set_with_many_members_loads_and_passes_only_its_members() {
    use amwall::check::{self, HostRules, Options, RulesFile};
    use amwall::lab::netns::veth;
    let dep = amwall::load::load_str("dual-lan.toml", common::dual::lan_toml(12)).unwrap();
    let plan = amwall::Plan::build(dep).unwrap();
    let hp = plan
        .policies
        .iter()
        .find(|p| plan.deployment.hosts[p.host].name == "server")
        .unwrap();
    let sets = plan.ipset(hp).expect("a set for 12 sources");
    let rules = plan.iptables(hp);
    let rules6 = plan.ip6tables(hp);
    assert!(sets.contains("hash:net family inet6"), "{sets}");
    let set6 = amwall::render::groups6(hp)
        .into_iter()
        .find(|g| g.members.len() == 12)
        .expect("the recovering clients as one IPv6 group");
    assert!(
        rules6.contains(&format!("--match-set {} src", set6.ipset_name)),
        "{rules6}"
    );
    let ours = ipset::parse("server.ipset", &sets).unwrap();
    assert!(ours.unsupported.is_empty(), "{ours:?}");
    assert_eq!(ours.set(&set6.ipset_name).unwrap().elements6.len(), 12);

    let srv = Netns::new("amwi6S").expect("creating a netns needs root and iproute2");
    let cli = Netns::new("amwi6C").unwrap();
    veth(&srv, "eth0", &cli, "eth0").unwrap();
    addr6(&srv, "2001:db8:5::1/64");
    for a in ["2001:db8:5::2/64", "2001:db8:5::99/64"] {
        addr6(&cli, a);
    }
    for (argv, text) in [
        (&["ipset", "restore"][..], &sets),
        (&["iptables-restore"][..], &rules),
        (&["ip6tables-restore"][..], &rules6),
    ] {
        let r = srv
            .exec(argv, Some(text))
            .expect("the loader must be installed");
        assert!(r.ok(), "{argv:?}: {}\n{text}", r.stderr);
    }
    let saved = srv.must(&["ipset", "save"]).unwrap().stdout;
    let kernel = ipset::parse("ipset save", &saved).unwrap();
    assert_eq!(sorted(&kernel), sorted(&ours), "{saved}");

    let _amandad = srv
        .run_in(|| std::net::TcpListener::bind("[::]:10080").unwrap())
        .unwrap();
    let to: std::net::SocketAddr = "[2001:db8:5::1]:10080".parse().unwrap();
    let connects = |from: &str| {
        // Neighbour discovery may need a moment on a fresh link.
        (0..3).any(|_| common::tcp_connect(&cli, from, to) == std::io::ErrorKind::Other)
    };
    assert!(
        connects("[2001:db8:5::2]:600"),
        "a member's recovery passes"
    );
    assert!(!connects("[2001:db8:5::99]:601"), "a non-member is dropped");
    assert!(
        !connects("[2001:db8:5::2]:40000"),
        "an unreserved port is dropped"
    );

    let files = vec![
        RulesFile::parse("server.rules", rules).unwrap(),
        RulesFile::parse("server.rules6", rules6).unwrap(),
    ];
    // Negative control: without the sets, check cannot tell who the IPv6
    // rule admits, and says the rule naming the set may open more.
    let host = HostRules::new(files.clone(), None);
    let r = check::check(&plan, &[("server".into(), host)], Options::default());
    let maybe: Vec<_> = r.hosts[0]
        .open
        .iter()
        .filter(|o| o.family == "IPv6")
        .flat_map(|o| &o.groups)
        .collect();
    assert!(
        maybe.len() == 1
            && !maybe[0].certain
            && maybe[0].accepted_by.text.contains(&set6.ipset_name),
        "{maybe:?}"
    );
    let host = HostRules::new(files, Some(ours));
    let r = check::check(&plan, &[("server".into(), host)], Options::default());
    let to_server: Vec<_> = r
        .flows
        .iter()
        .filter(|f| f.flow.responder == "server")
        .collect();
    assert!(!to_server.is_empty());
    for f in to_server {
        assert_eq!(
            f.result.status,
            check::Status::Pass,
            "{}: {:?}",
            f.flow,
            f.result
        );
    }
    let h = &r.hosts[0];
    assert!(
        h.warnings.iter().all(|w| !w.contains("unknown")),
        "{:?}",
        h.warnings
    );
    assert!(
        h.open.iter().all(|o| o.groups.is_empty() && o.boxes == 0),
        "nothing open beyond need, over IPv6 too: {:?}",
        h.open
    );
}

/// `amwall apply` loads the inet6 set with the IPv4 ones before the rules
/// that name it (the dry run of `HOST.rules6` waits for it), and the
/// rollback takes it away again with the IPv6 rules.
#[test]
fn apply_loads_and_rolls_back_inet6_sets() {
    let ns = Netns::new("amwi6A").expect("creating a netns needs root and iproute2");
    for argv in [
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ][..],
        &["ip", "link", "set", "eth0p", "up"],
        &["ip", "addr", "add", "198.51.100.1/24", "dev", "eth0"],
        &["ip", "link", "set", "eth0", "up"],
    ] {
        ns.must(argv).unwrap();
    }
    addr6(&ns, "2001:db8:5::1/64");
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("dual.toml");
    std::fs::write(&topo, common::dual::lan_toml(12)).unwrap();
    let state = dir.path().join("state");
    let amwall = |args: &[&str]| {
        let argv = common::amwall_argv(&[], args, state.to_str().unwrap());
        let o = ns.exec(&argv, None).unwrap();
        (o.ok(), format!("{}{}", o.stdout, o.stderr))
    };
    let set = "amw6_in_amrecover_hosts";
    let empty =
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
    assert!(ns.exec(&["ip6tables-restore"], Some(empty)).unwrap().ok());
    let before6 = ns.must(&["ip6tables-save"]).unwrap().stdout;
    let (ok, said) = amwall(&[
        "apply",
        topo.to_str().unwrap(),
        "--host",
        "server",
        "--backend",
        "iptables",
        "--iptables",
        "owned",
        "--timeout",
        "30",
        "--no-wait",
    ]);
    assert!(ok, "{said}");
    let listed = ns.must(&["ipset", "list", set]).unwrap().stdout;
    assert!(listed.contains("family inet6"), "{listed}");
    assert_eq!(
        listed
            .lines()
            .filter(|l| l.starts_with("2001:db8:5::"))
            .count(),
        12,
        "{listed}"
    );
    let live6 = ns.must(&["ip6tables-save"]).unwrap().stdout;
    assert!(live6.contains(&format!("--match-set {set} src")), "{live6}");
    let (ok, said) = amwall(&["apply", "--rollback"]);
    assert!(ok, "{said}");
    assert!(!ns
        .must(&["ipset", "list", "-n"])
        .unwrap()
        .stdout
        .contains(set));
    let after6 = ns.must(&["ip6tables-save"]).unwrap().stdout;
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(" [").next().unwrap().to_string())
            .collect()
    };
    assert_eq!(strip(&after6), strip(&before6));
}
