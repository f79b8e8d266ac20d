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
