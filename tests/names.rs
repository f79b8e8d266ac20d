//! Hostile names and silently accepted nonsense (issue 10): every name that can
//! reach a rule, a file name or a printed command is refused at its
//! file:line:col with exit 2, and nothing is written; comments cannot end their
//! line; obvious nonsense in the topology, the hosts file or the disklist is an
//! error an admin can act on.

mod common;

use std::path::{Path, PathBuf};

use common::amwall;

const NET: &str = "[amanda]\nauth = \"bsd\"\nclient-port = 10080\n[management]\nfrom = [\"lan\"]\n[[network]]\nname = \"lan\"\ncidr = \"192.0.2.0/24\"\n";

fn host(name: &str, roles: &str, iface: &str, addr: &str) -> String {
    format!(
        "[[host]]\nname = {}\nroles = [{roles}]\ninterfaces = [{{ name = {}, network = \"lan\", address = \"{addr}\" }}]\n",
        toml_str(name),
        toml_str(iface)
    )
}

/// A TOML basic string for any text (the attacks carry newlines and tabs).
fn toml_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn server() -> String {
    host("ts", "\"server\", \"client\"", "eth0", "192.0.2.2")
}

struct Run {
    code: i32,
    stderr: String,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

/// `plan TOPO --out DIR` on `text`, plus extra arguments.
fn plan_text(text: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("t.toml");
    std::fs::write(&topo, text).unwrap();
    plan_at(dir, &topo, extra)
}

fn plan_at(dir: tempfile::TempDir, topo: &Path, extra: &[&str]) -> Run {
    let out = dir.path().join("out");
    let mut args = vec![
        "plan",
        topo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, _, stderr) = amwall(&args);
    Run {
        code,
        stderr,
        out,
        _dir: dir,
    }
}

/// Exit 2, the message (at FILE:LINE:COL), and nothing written anywhere in the temp dir.
fn refused(r: &Run, pos: &str, words: &str) {
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(pos), "expected {pos:?} in:\n{}", r.stderr);
    assert!(
        r.stderr.contains(words),
        "expected {words:?} in:\n{}",
        r.stderr
    );
    assert!(!r.out.exists(), "output written despite the error");
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// ---- names become rules

#[test]
fn interface_name_with_newline_and_tab_is_refused() {
    // The issue's attack: the tail became its own `-A INPUT` line.
    let evil = "eth0\n-A INPUT -p tcp --dport 10080 -j ACCEPT\n\t";
    let t = format!(
        "{NET}{}{}",
        server(),
        host("c", "\"client\"", evil, "192.0.2.3")
    );
    let r = plan_text(&t, &[]);
    let line = t.lines().position(|l| l.contains("-A INPUT")).unwrap() + 1;
    refused(&r, &format!("t.toml:{line}:"), "a newline");
}

#[test]
fn interface_name_with_commit_is_refused() {
    let t = format!(
        "{NET}{}{}",
        server(),
        host("c", "\"client\"", "eth0\nCOMMIT", "192.0.2.3")
    );
    refused(
        &plan_text(&t, &[]),
        "t.toml:",
        "not an interface name amwall can use",
    );
}

#[test]
fn wildcard_interface_names_are_refused_with_why() {
    for w in ["eth+", "eth*"] {
        let t = format!(
            "{NET}{}{}",
            server(),
            host("c", "\"client\"", w, "192.0.2.3")
        );
        let r = plan_text(&t, &[]);
        refused(&r, "t.toml:", "wildcard");
        assert!(
            r.stderr.contains("every interface with that prefix"),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn kernel_interface_limits() {
    for bad in ["abcdefghijklmnop", "a/b", "eth0:1", "a b", ".."] {
        let t = format!(
            "{NET}{}{}",
            server(),
            host("c", "\"client\"", bad, "192.0.2.3")
        );
        refused(&plan_text(&t, &[]), "t.toml:", "interface name");
    }
}

#[test]
fn topology_path_with_newline_stays_a_comment() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("x\nflush ruleset\n");
    std::fs::create_dir(&sub).unwrap();
    let topo = sub.join("t.toml");
    std::fs::write(
        &topo,
        format!(
            "{NET}{}{}",
            server(),
            host("c", "\"client\"", "eth0", "192.0.2.3")
        ),
    )
    .unwrap();
    let r = plan_at(dir, &topo, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for f in files_under(&r.out) {
        let text = std::fs::read_to_string(&f).unwrap();
        for l in text.lines() {
            assert_ne!(
                l.trim(),
                "flush ruleset",
                "{}: a live statement",
                f.display()
            );
        }
        // topology.svg is XML: its `<` is `&lt;`.
        let shown = if f.extension().is_some_and(|e| e == "svg") {
            "&lt;U+000A&gt;flush ruleset&lt;U+000A&gt;"
        } else {
            "<U+000A>flush ruleset<U+000A>"
        };
        assert!(text.contains(shown), "{}", f.display());
    }
    // And the kernel's tools see only our table (checked with nft's own parser
    // in tests/kernel_load.rs); here: our parser reads it back as the plan rendered.
    let nft = std::fs::read_to_string(r.out.join("c.nft")).unwrap();
    let rs = amwall::netfilter::nft::parse("c.nft", &nft).expect("parses");
    assert_eq!(
        rs.ruleset.tables.len(),
        2,
        "table ip amwall and table ip6 amwall, no flush"
    );
}

// ---- names become paths and commands

/// A config dir whose disklist names `client`, and a hosts file for it.
fn amanda_dir(dir: &Path, client: &str) -> PathBuf {
    let cfg = dir.join("DailySet1");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("amanda.conf"),
        "org \"DailySet1\"\ndefine dumptype bsd-tar {\n  program \"GNUTAR\"\n  auth \"bsd\"\n  client-port 10080\n}\n",
    )
    .unwrap();
    std::fs::write(
        cfg.join("disklist"),
        format!("# one client\n{client} /etc bsd-tar\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("hosts"),
        format!("192.0.2.2 ts\n192.0.2.3 {client}\n"),
    )
    .unwrap();
    cfg
}

#[test]
fn disklist_host_names_cannot_leave_out_or_reach_a_shell() {
    for evil in [
        "../../x",
        "/abs",
        "x;touch${IFS}pwned",
        "$(id)",
        "a`b`",
        "x|y",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = amanda_dir(dir.path(), evil);
        let topo = dir.path().join("t.toml");
        std::fs::write(&topo, format!("{NET}{}", server())).unwrap();
        let hosts = dir.path().join("hosts");
        let root = dir.path().to_path_buf();
        // --out two levels down, so `../../x` would still land under `root`.
        let out = root.join("a/b/out");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let (code, _, stderr) = amwall(&[
            "plan",
            topo.to_str().unwrap(),
            "--amanda-config",
            cfg.to_str().unwrap(),
            "--hosts",
            hosts.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let r = Run {
            code,
            stderr,
            out,
            _dir: dir,
        };
        refused(&r, "disklist:2:1:", "disklist host");
        let stray: Vec<_> = files_under(&root)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "rules" || e == "nft"))
            .collect();
        assert!(stray.is_empty(), "{evil}: {stray:?}");
        assert!(!Path::new("/abs.rules").exists() && !Path::new("/abs.nft").exists());
    }
}

#[test]
fn topology_host_names_are_rfc1123() {
    for evil in ["../../x", "/abs", "a;b", "a b", ".", "..", "-a", "a_b", "é"] {
        let t = format!(
            "{NET}{}",
            host(evil, "\"server\", \"client\"", "eth0", "192.0.2.2")
        );
        refused(&plan_text(&t, &[]), "t.toml:", "host name");
    }
}

#[test]
fn host_names_differing_in_case_are_one_host() {
    let t = format!(
        "{NET}{}{}",
        server(),
        host("TS", "\"client\"", "eth0", "192.0.2.3")
    );
    refused(&plan_text(&t, &[]), "t.toml:", "host names ignore case");
}

#[test]
fn server_option_is_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = amanda_dir(dir.path(), "c");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "192.0.2.2 ts\n192.0.2.3 c\n192.0.2.4 a\"]\n").unwrap();
    for evil in ["ts\"\n[[host]]\nname = \"x", "a\"]", "../ts", "ts;id"] {
        let out = dir.path().join("o");
        let (code, _, stderr) = amwall(&[
            "plan",
            "--amanda-config",
            cfg.to_str().unwrap(),
            "--hosts",
            hosts.to_str().unwrap(),
            "--server",
            evil,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{evil:?}: {stderr}");
        assert!(stderr.contains("--server"), "{stderr}");
        assert!(!out.exists());
    }
}

// ---- silently accepted nonsense

#[test]
fn server_at_debians_127_0_1_1_is_refused_at_the_hosts_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = amanda_dir(dir.path(), "c");
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.1.1 ts.example.org ts\n192.0.2.3 c\n",
    )
    .unwrap();
    let out = dir.path().join("o");
    let (code, _, stderr) = amwall(&[
        "plan",
        "--amanda-config",
        cfg.to_str().unwrap(),
        "--hosts",
        hosts.to_str().unwrap(),
        "--server",
        "ts",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("hosts:2:1:"), "{stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");
    assert!(stderr.contains("127.0.1.1"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn loopback_in_the_topology_is_refused() {
    let t = "[amanda]\nauth = \"bsd\"\nclient-port = 10080\n[[network]]\nname = \"lo\"\ncidr = \"127.0.0.0/8\"\n".to_string()
        + &host("ts", "\"server\", \"client\"", "eth0", "127.0.1.1").replace("\"lan\"", "\"lo\"");
    refused(&plan_text(&t, &[]), "t.toml:", "loopback");
}

#[test]
fn impossible_host_addresses_are_refused() {
    let wide = NET.replace("192.0.2.0/24", "0.0.0.0/0");
    for (net, addr, words) in [
        (&wide, "0.0.0.0", "INADDR_ANY"),
        (&wide, "255.255.255.255", "limited broadcast"),
        (&wide, "224.0.0.1", "multicast"),
        (&wide, "240.0.0.1", "reserved"),
        (
            &NET.to_string(),
            "192.0.2.0",
            "network address of network `lan`",
        ),
        (
            &NET.to_string(),
            "192.0.2.255",
            "broadcast address of network `lan`",
        ),
    ] {
        let t = format!("{net}{}{}", server(), host("c", "\"client\"", "eth0", addr));
        refused(&plan_text(&t, &[]), "t.toml:", words);
    }
}

#[test]
fn hosts_file_addresses_are_checked_too() {
    for (addr, words) in [
        ("0.0.0.0", "INADDR_ANY"),
        ("192.0.2.255", "broadcast address"),
        ("192.0.2.2", "already `ts`'s address"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = amanda_dir(dir.path(), "c");
        std::fs::write(dir.path().join("hosts"), format!("# c\n{addr} c\n")).unwrap();
        let topo = dir.path().join("t.toml");
        std::fs::write(&topo, format!("{NET}{}", server())).unwrap();
        let hosts = dir.path().join("hosts");
        let r = plan_at(
            dir,
            &topo,
            &[
                "--amanda-config",
                cfg.to_str().unwrap(),
                "--hosts",
                hosts.to_str().unwrap(),
            ],
        );
        refused(&r, "hosts:2:1:", words);
    }
}

#[test]
fn empty_topologies_are_errors() {
    refused(&plan_text("", &[]), "t.toml:1:1:", "no [[host]]");
    refused(&plan_text(NET, &[]), "t.toml:1:1:", "no [[host]]");
    let t = format!("{NET}{}", host("ts", "\"server\"", "eth0", "192.0.2.2"));
    refused(&plan_text(&t, &[]), "t.toml:1:1:", "no host is backed up");
}

#[test]
fn an_unused_hosts_file_is_an_error() {
    let t = format!(
        "{}{}",
        NET.replace(
            "client-port = 10080\n",
            "client-port = 10080\nhosts-file = \"nowhere\"\n"
        ),
        server()
    );
    refused(&plan_text(&t, &[]), "t.toml:4:14:", "no Amanda config");
    let t = format!("{NET}{}", server());
    let r = plan_text(&t, &["--hosts", "/nonexistent/hosts"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--hosts"), "{}", r.stderr);
}

#[test]
fn management_from_nothing_is_an_error() {
    let t = format!(
        "{}{}",
        NET.replace("from = [\"lan\"]", "from = []"),
        server()
    );
    refused(&plan_text(&t, &[]), "t.toml:5:8:", "from = []");
}

#[test]
fn same_prefix_twice_names_both_networks() {
    let t = format!(
        "{NET}[[network]]\nname = \"office\"\ncidr = \"192.0.2.0/24\"\n{}",
        server()
    );
    refused(
        &plan_text(&t, &[]),
        "t.toml:11:8:",
        "networks `lan` and `office` are both 192.0.2.0/24",
    );
}

#[test]
fn nested_networks_name_both_in_the_route_error() {
    // dmz sits inside lan: c (on lan) sends ts's dmz address out on lan's wire.
    let t = "[amanda]\nauth = \"bsd\"\nclient-port = 10080\n\
        [[network]]\nname = \"lan\"\ncidr = \"192.0.2.0/24\"\n\
        [[network]]\nname = \"dmz\"\ncidr = \"192.0.2.128/25\"\n\
        [[host]]\nname = \"r\"\nroles = [\"router\"]\ninterfaces = [{ name = \"eth0\", network = \"lan\", address = \"192.0.2.1\" }, { name = \"eth1\", network = \"dmz\", address = \"192.0.2.129\" }]\n\
        [[host]]\nname = \"ts\"\nroles = [\"server\"]\ngateway = \"r\"\ninterfaces = [{ name = \"eth0\", network = \"dmz\", address = \"192.0.2.130\" }]\n\
        [[host]]\nname = \"c\"\nroles = [\"client\"]\ngateway = \"r\"\ninterfaces = [{ name = \"eth0\", network = \"lan\", address = \"192.0.2.3\" }]\n";
    refused(
        &plan_text(t, &[]),
        "t.toml:",
        "networks `lan` (192.0.2.0/24) and `dmz` (192.0.2.128/25) overlap",
    );
}

#[test]
fn client_port_of_the_wrong_type_is_said_in_words() {
    let t = format!(
        "{}{}",
        NET.replace("client-port = 10080", "client-port = [1]"),
        server()
    );
    let r = plan_text(&t, &[]);
    refused(
        &r,
        "t.toml:3:15:",
        "port number (client-port = 10080) or a service name",
    );
    assert!(!r.stderr.contains("untagged"), "{}", r.stderr);
    assert!(!r.stderr.contains("RawClientPort"), "{}", r.stderr);
}

#[test]
fn a_missing_hosts_file_is_an_error_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = amanda_dir(dir.path(), "c");
    let t = format!(
        "{}{}",
        NET.replace(
            "client-port = 10080\n",
            &format!(
                "client-port = 10080\namanda-config = {}\nhosts-file = \"nowhere\"\n",
                toml_str(cfg.to_str().unwrap())
            )
        ),
        server()
    );
    let topo = dir.path().join("t.toml");
    std::fs::write(&topo, t).unwrap();
    refused(&plan_at(dir, &topo, &[]), "t.toml:5:14:", "nowhere");
}

#[test]
fn server_option_beside_a_topology_is_an_error() {
    let t = format!(
        "{NET}{}{}",
        server(),
        host("c", "\"client\"", "eth0", "192.0.2.3")
    );
    let r = plan_text(&t, &["--server", "c"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--server names the server only when there is no topology"),
        "{}",
        r.stderr
    );
    assert!(!r.out.exists());
}
