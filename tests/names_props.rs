//! Random bytes and random unicode in every name field (issue 10): the input is
//! refused with an error (never a panic), or every file the plan writes parses
//! back with amwall's own parsers to exactly the IR the plan rendered from its
//! policy, and nothing lands outside `--out`. A name that smuggled a line, a
//! quote or a path into a file breaks one of these.

use std::path::{Path, PathBuf};

use amwall::model::{self, AmandaSources};
use amwall::netfilter::{iptables, nft};
use amwall::render::{self, BackendSet};
use amwall::Plan;
use proptest::prelude::*;

/// A TOML basic string for any text, so the random name reaches the field as is.
fn toml_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Names: raw bytes (lossy UTF-8), any unicode, and near-misses of real names
/// built from the characters that matter to the files (so accepted names occur).
fn name() -> BoxedStrategy<String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        any::<String>(),
        "[a-zA-Z0-9._+*:/ \n\t\"'\\\\;$`|-]{0,20}",
        "[a-z][a-z0-9.-]{0,14}",
    ]
    .boxed()
}

fn topology(fields: &[String; 4]) -> String {
    let [client, iface, net, siface] = fields;
    format!(
        "[amanda]\nauth = \"bsd\"\nclient-port = 10080\n[management]\nfrom = [{net}]\n\
         [[network]]\nname = {net}\ncidr = \"192.0.2.0/24\"\n\
         [[host]]\nname = \"ts\"\nroles = [\"server\", \"client\"]\ninterfaces = [{{ name = {siface}, network = {net}, address = \"192.0.2.2\" }}]\n\
         [[host]]\nname = {client}\nroles = [\"client\", \"recover\"]\ninterfaces = [{{ name = {iface}, network = {net}, address = \"192.0.2.3\" }}]\n",
        client = toml_str(client),
        iface = toml_str(iface),
        net = toml_str(net),
        siface = toml_str(siface),
    )
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The property for one loaded (or refused) topology.
fn holds(loaded: amwall::Result<model::Deployment>) -> Result<(), TestCaseError> {
    let Ok(d) = loaded else { return Ok(()) };
    let Ok(plan) = Plan::build(d) else {
        return Ok(());
    };
    let files = plan
        .outputs(BackendSet::Both, None)
        .map_err(|e| TestCaseError::fail(format!("{e}")))?;
    for hp in &plan.policies {
        let host = &plan.deployment.hosts[hp.host].name;
        let text = |ext: &str| {
            files
                .iter()
                .find(|(n, _)| *n == format!("{host}.{ext}"))
                .map(|(_, t)| t.clone())
                .expect("every host has its files")
        };
        let rules = text("rules");
        let parsed = iptables::parse("x.rules", &rules)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{rules}")))?;
        prop_assert_eq!(
            parsed.ruleset.canonical(),
            render::iptables_ruleset(hp).canonical(),
            "\n{}",
            rules
        );
        let rules6 = text("rules6");
        let parsed = iptables::parse("x.rules6", &rules6)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{rules6}")))?;
        prop_assert_eq!(
            parsed.ruleset.canonical(),
            render::ip6tables_ruleset(hp).canonical(),
            "\n{}",
            rules6
        );
        let script = text("nft");
        let parsed = nft::parse("x.nft", &script)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{script}")))?;
        let mut both = render::nft_ruleset(hp);
        both.tables.push(render::nft6_table(hp));
        prop_assert_eq!(parsed.ruleset.canonical(), both.canonical(), "\n{}", script);
    }
    // Checked before anything is written: a regression must fail here, not
    // litter the machine (with the old code, `/x` wrote `/x.rules`).
    for (n, _) in &files {
        let mut c = Path::new(n).components();
        prop_assert!(
            matches!(
                (c.next(), c.next()),
                (Some(std::path::Component::Normal(_)), None)
            ),
            "file name {:?} is not one plain name",
            n
        );
    }
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    amwall::output::write_outputs(&out, &files).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    let written = files_under(root.path());
    prop_assert_eq!(written.len(), files.len());
    for f in written {
        prop_assert!(f.starts_with(&out), "{} outside --out", f.display());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Host, interface and network names in the topology, and the topology's
    /// own path (copied into every header).
    #[test]
    fn topology_names(client in name(), iface in name(), net in name(), siface in name(), path in name(), which in 0usize..5) {
        // Mostly one hostile field at a time, so the others do not hide it.
        let good = ["c".to_string(), "eth0".into(), "lan".into(), "eth0".into()];
        let mut f = good.clone();
        let mut path_name = "t.toml".to_string();
        match which {
            0 => f[0] = client,
            1 => f[1] = iface,
            2 => f[2] = net,
            3 => path_name = path,
            _ => f = [client, iface, net, siface],
        }
        holds(amwall::load::load_str(&path_name, topology(&f)))?;
    }

    /// A host only the disklist and the hosts file name, and `--server`.
    #[test]
    fn disklist_hosts_file_and_server_names(client in name(), server in name()) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("DailySet1");
        std::fs::create_dir(&cfg).unwrap();
        std::fs::write(
            cfg.join("amanda.conf"),
            "org \"DailySet1\"\ndefine dumptype bsd-tar {\n  program \"GNUTAR\"\n  auth \"bsd\"\n  client-port 10080\n}\n",
        ).unwrap();
        std::fs::write(cfg.join("disklist"), format!("{client} /etc bsd-tar\n")).unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, format!("192.0.2.2 ts {server}\n192.0.2.3 {client}\n")).unwrap();
        let src = AmandaSources {
            config: Some(cfg.clone()),
            hosts_file: Some(hosts.clone()),
            ..Default::default()
        };
        let f = ["ts2".to_string(), "eth0".into(), "lan".into(), "eth0".into()];
        // The topology's second host is unrelated; the disklist adds `client`.
        let t = topology(&f).replace("roles = [\"client\", \"recover\"]", "roles = [\"recover\"]");
        holds(amwall::load::load_str_with(&dir.path().join("t.toml").display().to_string(), t, &src))?;
        // Without a topology: the server's name is pasted into a generated one.
        if let Ok(text) = amwall::load::flat_topology(&server, &hosts) {
            holds(amwall::load::load_str_with("(flat)", text, &src))?;
        }
    }
}
