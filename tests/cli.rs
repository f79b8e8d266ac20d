//! The CLI end to end: exit codes, files written, and that bad input leaves no
//! output behind.

mod common;

use common::amwall;
use std::path::Path;

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn plan_writes_every_host_and_the_summary() {
    let dir = tmpdir();
    let out = dir.path().join("out");
    let (code, stdout, stderr) =
        amwall(&["plan", "examples/wiki.toml", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    for h in ["tshost", "fwhost", "lhost", "rhost"] {
        assert!(out.join(format!("{h}.rules")).is_file(), "{h}.rules");
        assert!(out.join(format!("{h}.rules6")).is_file(), "{h}.rules6");
        assert!(out.join(format!("{h}.nft")).is_file(), "{h}.nft");
    }
    let summary = std::fs::read_to_string(out.join("SUMMARY.md")).unwrap();
    assert_eq!(stdout, summary, "plan prints the summary it writes");
    assert!(summary.contains("## Required ports") && summary.contains("## Recovery traffic"));
    assert!(out.join("topology.svg").is_file());
    assert!(summary.contains("[topology.svg](topology.svg)"));
    // No temporary files left beside the outputs.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 14);
}

/// `--ufw` and `--firewalld` add their files for the host, and SUMMARY.md
/// says how each loads; without them it says nothing of either.
#[test]
fn ufw_and_firewalld_files_are_in_the_summary() {
    let dir = tmpdir();
    let out = dir.path().join("o");
    let (code, _, stderr) = amwall(&[
        "plan",
        "examples/wiki.toml",
        "--out",
        out.to_str().unwrap(),
        "--host",
        "fwhost",
        "--ufw",
        "--firewalld",
        "-q",
    ]);
    assert_eq!(code, 0, "{stderr}");
    for f in [
        "fwhost.ufw.sh",
        "fwhost.ufw-before.init",
        "fwhost.firewalld.sh",
        "fwhost.firewalld-sport.nft",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let summary = std::fs::read_to_string(out.join("SUMMARY.md")).unwrap();
    assert!(summary.contains("\nufw (`sh HOST.ufw.sh`"), "{summary}");
    assert!(
        summary.contains("\nfirewalld (`sh HOST.firewalld.sh`"),
        "{summary}"
    );
    let plain = dir.path().join("p");
    let (code, summary, stderr) = amwall(&[
        "plan",
        "examples/wiki.toml",
        "--out",
        plain.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!summary.contains("HOST.ufw.sh") && !summary.contains("HOST.firewalld.sh"));
}

/// A host's `firewall` in the topology picks its files whatever the
/// options say: firewalld's or ufw's only, merged for a shared one; an
/// unknown manager is an error at its line and column.
#[test]
fn a_declared_firewall_manager_picks_the_hosts_files() {
    let dir = tmpdir();
    let wiki =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wiki.toml"))
            .unwrap();
    let declare = |text: &str, host: &str, m: &str| {
        text.replace(
            &format!("name = \"{host}\"\n"),
            &format!("name = \"{host}\"\nfirewall = \"{m}\"\n"),
        )
    };
    let t = declare(
        &declare(&declare(&wiki, "fwhost", "ufw"), "lhost", "firewalld"),
        "rhost",
        "shared",
    );
    assert_ne!(t, wiki);
    let topo = dir.path().join("t.toml");
    std::fs::write(&topo, &t).unwrap();
    let out = dir.path().join("o");
    let (code, _, stderr) = amwall(&[
        "plan",
        topo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let of = |h: &str| -> Vec<&str> {
        names
            .iter()
            .filter(|n| n.starts_with(&format!("{h}.")))
            .map(String::as_str)
            .collect()
    };
    assert_eq!(of("fwhost"), ["fwhost.ufw-before.init", "fwhost.ufw.sh"]);
    assert!(
        of("lhost").iter().all(|n| n.starts_with("lhost.firewalld")),
        "{names:?}"
    );
    assert!(of("lhost").contains(&"lhost.firewalld.sh"), "{names:?}");
    assert_eq!(
        of("rhost"),
        ["rhost.merged.rules", "rhost.merged.sh", "rhost.nft"]
    );
    assert_eq!(
        of("tshost"),
        ["tshost.nft", "tshost.rules", "tshost.rules6"]
    );
    let summary = std::fs::read_to_string(out.join("SUMMARY.md")).unwrap();
    assert!(
        summary.contains("`fwhost` (ufw: `sh HOST.ufw.sh` or `amwall apply --backend ufw` only)"),
        "{summary}"
    );

    let bad = t.replace("firewall = \"shared\"", "firewall = \"iptables\"");
    std::fs::write(&topo, &bad).unwrap();
    let (code, _, stderr) = amwall(&[
        "plan",
        topo.to_str().unwrap(),
        "--out",
        dir.path().join("b").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    let line = bad
        .lines()
        .position(|l| l.contains("\"iptables\""))
        .unwrap()
        + 1;
    assert!(
        stderr.contains("unknown firewall manager `iptables`"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("t.toml:{line}:")), "{stderr}");
    assert!(!dir.path().join("b").exists(), "nothing written");
}

#[test]
fn backend_and_host_select_files() {
    let dir = tmpdir();
    let out = dir.path().join("o");
    let (code, _, stderr) = amwall(&[
        "plan",
        "examples/wiki.toml",
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "nft",
        "--host",
        "fwhost",
        "-q",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["SUMMARY.md", "fwhost.nft", "topology.svg"]);
    let (code, _, stderr) = amwall(&[
        "plan",
        "examples/wiki.toml",
        "--out",
        out.to_str().unwrap(),
        "--host",
        "nohost",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no host `nohost`"), "{stderr}");
}

#[test]
fn bad_topology_exits_2_with_file_line_column_and_writes_nothing() {
    let dir = tmpdir();
    let bad = dir.path().join("bad.toml");
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wiki.toml"))
            .unwrap()
            .replace("address = \"192.168.2.3\"", "address = \"192.168.3.3\"");
    std::fs::write(&bad, &text).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("lhost.rules"), "previous").unwrap();
    let (code, _, stderr) = amwall(&[
        "plan",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    let line = text
        .lines()
        .position(|l| l.contains("192.168.3.3"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("bad.toml:{line}:")),
        "names file and line: {stderr}"
    );
    assert!(
        stderr.contains("not a host address in network `lan`"),
        "{stderr}"
    );
    assert!(
        stderr.contains('^') || stderr.contains('┬') || stderr.contains("─"),
        "caret under the spot: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("lhost.rules")).unwrap(),
        "previous",
        "old output untouched"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    assert!(!stderr.contains("panicked"));
}

#[test]
fn missing_file_and_unroutable_host_exit_2() {
    let (code, _, stderr) = amwall(&["plan", "examples/nope.toml", "--out", "/nonexistent/x"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("examples/nope.toml"), "{stderr}");

    // RHost without the router's masquerade: nothing reaches the LAN from outside.
    let dir = tmpdir();
    let bad = dir.path().join("noroute.toml");
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wiki.toml"))
            .unwrap()
            .replace(
                "masquerade = [{ from = \"lan\", to = \"internet\" }]",
                "roles = [\"client\", \"recover\", \"router\"]",
            )
            .replace(
                "roles = [\"client\", \"recover\", \"router\"]\ninterfaces = [\n",
                "interfaces = [\n",
            );
    std::fs::write(&bad, &text).unwrap();
    let (code, _, stderr) = amwall(&[
        "plan",
        bad.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no route") || stderr.contains("cannot return"),
        "{stderr}"
    );
    assert!(!dir.path().join("o").exists());
}

#[test]
fn flows_json_lists_paths() {
    let (code, stdout, stderr) = amwall(&["flows", "examples/wiki.toml", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = v.as_array().unwrap();
    let remote = rows
        .iter()
        .find(|r| r["initiator"] == "rhost" && r["operation"] == "recovery" && r["proto"] == "udp")
        .expect("rhost's recovery flow");
    assert_eq!(remote["target"], "1.2.3.4");
    assert_eq!(remote["hops"][1]["dnat_to"], "192.168.2.2");
    let (code, text, _) = amwall(&["flows", "examples/wiki.toml"]);
    assert_eq!(code, 0);
    assert!(text.contains("rhost → tshost"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(amwall(&["plan"]).0, 2);
    assert_eq!(amwall(&["frobnicate"]).0, 2);
    assert_eq!(amwall(&["--help"]).0, 0);
}

/// Man page and completions come from the same clap definitions as --help.
#[test]
fn man_page_and_completions() {
    let (code, man, _) = amwall(&["man"]);
    assert_eq!(code, 0);
    assert!(
        man.contains(".TH amwall 1") && man.contains("plan"),
        "{man}"
    );
    let (code, bash, _) = amwall(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(
        bash.contains("_amwall()") && bash.contains("--backend"),
        "{bash}"
    );
}

/// An Amanda config whose one dumptype is bsdtcp, lhost its only DLE.
fn bsdtcp_config(dir: &Path) -> std::path::PathBuf {
    let conf = dir.join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(
        conf.join("amanda.conf"),
        "define dumptype tcp-tar {\n    auth \"bsdtcp\"\n    program \"GNUTAR\"\n}\n",
    )
    .unwrap();
    std::fs::write(conf.join("disklist"), "lhost / tcp-tar\n").unwrap();
    conf
}

/// `flows` reads the Amanda files as `plan` does: the disklist decides lhost's auth.
#[test]
fn flows_takes_the_amanda_options() {
    let dir = tmpdir();
    let conf = bsdtcp_config(dir.path());
    let (code, plain, _) = amwall(&["flows", "examples/wiki.toml"]);
    assert_eq!(code, 0);
    let (code, from_conf, err) = amwall(&[
        "flows",
        "examples/wiki.toml",
        "--amanda-config",
        conf.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!plain.contains("bsdtcp tshost → lhost"), "{plain}");
    assert!(from_conf.contains("bsdtcp tshost → lhost"), "{from_conf}");
    let (_, json, _) = amwall(&[
        "flows",
        "examples/wiki.toml",
        "--amanda-config",
        conf.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(json.contains("\"bsdtcp\""), "{json}");
}

/// `lab` reads the Amanda files too: a broken disklist stops it before any
/// namespace exists (so this needs no root), at the disklist's line.
#[test]
fn lab_takes_the_amanda_options() {
    let (code, _, err) = amwall(&[
        "lab",
        "examples/wiki.toml",
        "--amanda-config",
        "tests/fixtures/amanda/broken/unknown-dumptype",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unknown-dumptype/disklist:3:10: unknown dumptype"),
        "{err}"
    );
    let (code, _, err) = amwall(&["lab", "examples/wiki.toml", "--server", "tshost"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--server names the server only when there is no topology file"));
}

/// `doctor --root`: 1 when a finding breaks Amanda (Debian's xinetd serves
/// bsdtcp, amanda-client.conf says bsd), 0 when nothing does, 2 for a host
/// not in the topology; text and JSON say the same.
#[test]
fn doctor_exit_codes() {
    let dir = tmpdir();
    let root = dir.path();
    let put = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put("etc/services", "amanda 10080/tcp\n");
    put(
        "etc/amanda/amanda-client.conf",
        "auth \"bsd\"\nclient-port 10080\n",
    );
    put(
        "etc/xinetd.d/amanda",
        "service amanda\n{\n\tsocket_type = stream\n\tprotocol = tcp\n\tserver = /usr/lib/amanda/amandad\n\tserver_args = -auth=bsdtcp amdump\n}\n",
    );
    let r = root.to_str().unwrap();
    let (code, stdout, stderr) = amwall(&["doctor", "--root", r, "--host", "lhost"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("1. BREAKS inetd-auth"), "{stdout}");
    let (code, json, _) = amwall(&["doctor", "--root", r, "--host", "lhost", "--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["findings"][0]["cause"], "inetd-auth");
    put("etc/amanda/amanda-client.conf", "auth \"bsdtcp\"\n");
    let (code, stdout, stderr) = amwall(&["doctor", "--root", r, "--host", "lhost"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, _, stderr) = amwall(&[
        "doctor",
        "examples/wiki.toml",
        "--root",
        r,
        "--host",
        "nohost",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nohost"), "{stderr}");
}

/// `plan --ansible DIR`: the project (inventory, playbook, each host's files)
/// and nothing in --out; --ansible with --out or --host is a usage error; a
/// topology whose host another manager runs is refused with nothing written.
#[test]
fn plan_ansible_writes_the_project_only() {
    let dir = tmpdir();
    let proj = dir.path().join("fleet");
    let (code, stdout, stderr) = amwall(&[
        "plan",
        "examples/lan.toml",
        "--ansible",
        proj.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("ansible-playbook site.yml --check --diff"),
        "{stdout}"
    );
    for f in [
        "inventory.yml",
        "site.yml",
        "amwall-host.yml",
        "amwall-verify.yml",
        "amwall-rollback.yml",
        "ansible.cfg",
        "SUMMARY.md",
        "backup.nft",
        "backup.rules",
        "backup.rules6",
        "backup.ipset",
        "web1.nft",
    ] {
        assert!(proj.join(f).is_file(), "{f}");
    }
    let inv = std::fs::read_to_string(proj.join("inventory.yml")).unwrap();
    assert!(
        inv.contains("\"web1\":\n      ansible_host: \"10.20.0.21\""),
        "{inv}"
    );
    assert!(inv.contains("amanda_auth: \"bsdtcp\""), "{inv}");
    for bad in [&["--out", "x"][..], &["--host", "web1"][..]] {
        let mut args = vec![
            "plan",
            "examples/lan.toml",
            "--ansible",
            proj.to_str().unwrap(),
        ];
        args.extend_from_slice(bad);
        let (code, _, stderr) = amwall(&args);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
    }
    let topo = dir.path().join("ufw.toml");
    std::fs::write(
        &topo,
        std::fs::read_to_string("examples/lan.toml")
            .unwrap()
            .replace("name = \"db\"\n", "name = \"db\"\nfirewall = \"ufw\"\n"),
    )
    .unwrap();
    let other = dir.path().join("other");
    let (code, _, stderr) = amwall(&[
        "plan",
        topo.to_str().unwrap(),
        "--ansible",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("db declare"), "{stderr}");
    assert!(!other.exists(), "nothing is written on refusal");
}
