//! `amwall doctor` against real Amanda: the wiki lab of tests/amanda_e2e.rs
//! (tests/fixtures/lab/wiki-doc.toml, bsd), the plan's rules loaded, then
//! one fault planted at a time. Real `amcheck` on the server prints
//! Amanda's own message; `doctor`, run inside the faulty host's namespace
//! with that message as `--error`, must name exactly the planted cause
//! first, and exit 1.
//!
//! The lab's xinetd reads a configuration of its own; each test copies it
//! to the namespace's `/etc/xinetd.d/amanda` (through `/etc/netns/NS`),
//! where a real host keeps it and doctor looks.
//!
//! Needs root, amanda-server, amanda-client, xinetd, iptables, nftables,
//! ipset: anything missing fails the test, it never skips.

mod common;

use std::path::Path;
use std::time::Duration;

use amwall::amanda::settings::Auth;
use amwall::lab::amanda::AmandaLab;
use amwall::netfilter::Backend;
use amwall::ports::PortRange;
use amwall::Plan;

use common::amanda::{fail, lab, plan, show, FIXTURE};

/// Where doctor finds the xinetd service on a real host.
fn publish_xinetd(lab: &AmandaLab, host: &str) {
    let dir = lab.etc_dir(host).unwrap().join("xinetd.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(lab.xinetd_conf(host).unwrap(), dir.join("amanda")).unwrap();
}

/// amcheck's ERROR lines about `host` (it must have failed there).
fn amcheck_error(lab: &AmandaLab, host: &str) -> String {
    let o = lab.amcheck().expect("running amcheck");
    let lines: Vec<&str> = o
        .stdout
        .lines()
        .chain(o.stderr.lines())
        .filter(|l| l.contains("ERROR") && l.contains(host))
        .collect();
    if lines.is_empty() {
        fail(
            lab,
            &format!("amcheck printed no ERROR for {host}"),
            &show(&o),
        );
    }
    eprintln!("amcheck: {}", lines.join(" | "));
    lines.join("\n")
}

/// `amwall doctor TOPOLOGY --host HOST --error MESSAGE --format json` inside
/// HOST's namespace: exit 1 and the report.
fn doctor(lab: &AmandaLab, host: &str, error: &str) -> serde_json::Value {
    doctor_with(
        lab,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE),
        host,
        error,
    )
}

fn doctor_with(lab: &AmandaLab, topo: &Path, host: &str, error: &str) -> serde_json::Value {
    let o = lab
        .run(
            host,
            None,
            &[
                env!("CARGO_BIN_EXE_amwall"),
                "doctor",
                topo.to_str().unwrap(),
                "--host",
                host,
                "--error",
                error,
                "--format",
                "json",
            ],
            None,
            Duration::from_secs(120),
        )
        .expect("running doctor");
    if o.status != 1 {
        fail(
            lab,
            "doctor: expected exit 1 (a finding breaks Amanda)",
            &show(&o),
        );
    }
    let r: serde_json::Value = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("doctor's JSON: {e}\n{}", show(&o)));
    for f in r["findings"].as_array().unwrap() {
        eprintln!(
            "doctor on {host}: {} {}: {}",
            f["severity"], f["cause"], f["summary"]
        );
    }
    r
}

fn first_cause(r: &serde_json::Value) -> (&str, &str) {
    let f = &r["findings"][0];
    (
        f["cause"].as_str().unwrap_or("(none)"),
        f["severity"].as_str().unwrap_or("(none)"),
    )
}

fn loaded(plan: &Plan) -> AmandaLab {
    let lab = lab(plan);
    lab.load_rules(Backend::Iptables)
        .unwrap_or_else(|e| panic!("loading the generated rules: {e}"));
    for h in ["tshost", "fwhost", "lhost", "rhost"] {
        publish_xinetd(&lab, h);
    }
    lab
}

#[test]
fn inetd_serving_bsdtcp_to_a_bsd_server() {
    let plan = plan(Auth::Bsd, false);
    let mut lab = loaded(&plan);
    lab.serve_amandad(&plan, "lhost", Auth::Bsdtcp)
        .unwrap_or_else(|e| panic!("restarting lhost's xinetd: {e}"));
    publish_xinetd(&lab, "lhost");
    let msg = amcheck_error(&lab, "lhost");
    assert!(msg.contains("timeout waiting for ACK"), "{msg}");
    let r = doctor(&lab, "lhost", &msg);
    assert_eq!(first_cause(&r), ("inetd-auth", "breaks"), "{r:#}");
    assert_eq!(r["findings"][0]["explains_error"], true, "{r:#}");
    assert!(
        r["findings"][0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["at"] == "/etc/xinetd.d/amanda:9"
                && e["text"].as_str().unwrap().contains("-auth=bsdtcp")),
        "{r:#}"
    );
    // Nothing else is wrong on lhost.
    assert_eq!(r["findings"].as_array().unwrap().len(), 1, "{r:#}");
}

#[test]
fn reserved_udp_port_outside_ambinds_range() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let mut d = amwall::load::load_file(&path).unwrap().with_auth(Auth::Bsd);
    let ts = d.host_by_name("tshost").unwrap();
    // Debian's ambind allows 840-860 (/etc/amanda-security.conf).
    d.hosts[ts].amanda.reserved_udp_port = PortRange::new(700, 720);
    let plan = Plan::build(d).unwrap();
    let lab = loaded(&plan);
    let msg = amcheck_error(&lab, "lhost");
    let r = doctor(&lab, "tshost", &msg);
    assert!(msg.contains("Can't bind a socket"), "{msg}");
    assert_eq!(first_cause(&r), ("ambind-range", "breaks"), "{r:#}");
    assert_eq!(r["findings"][0]["explains_error"], true, "{r:#}");
    assert!(
        r["findings"][0]["evidence"][0]["at"]
            .as_str()
            .unwrap()
            .starts_with("/etc/amanda/"),
        "{r:#}"
    );
}

#[test]
fn a_foreign_nft_tables_drop() {
    let plan = plan(Auth::Bsd, false);
    let lab = loaded(&plan);
    let foreign = "table inet foreign {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tudp dport 10080 drop\n\t}\n}\n";
    let o = lab
        .namespace("lhost")
        .unwrap()
        .exec(&["nft", "-f", "-"], Some(foreign))
        .unwrap();
    assert!(o.ok(), "{}", show(&o));
    let msg = amcheck_error(&lab, "lhost");
    assert!(msg.contains("timeout waiting for ACK"), "{msg}");
    let r = doctor(&lab, "lhost", &msg);
    assert_eq!(first_cause(&r), ("ruleset-blocks", "breaks"), "{r:#}");
    assert_eq!(r["findings"][0]["explains_error"], true, "{r:#}");
    let f = &r["findings"][0];
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("nft table `foreign`"),
        "{r:#}"
    );
    assert!(
        f["evidence"][0]["text"]
            .as_str()
            .unwrap()
            .contains("udp dport 10080 drop"),
        "{r:#}"
    );
    assert!(
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["cause"] == "ruleset-blocks"),
        "{r:#}"
    );
}

#[test]
fn amandahosts_naming_the_server_behind_nat_by_its_inner_name() {
    let plan = plan(Auth::Bsd, false);
    let lab = loaded(&plan);
    // rhost is backed up through fwhost's masquerade: the server's requests
    // arrive from fwhost-eth1 (198.51.100.1), not from tshost (192.0.2.2).
    let trust = lab.etc_dir("rhost").unwrap().join("amandahosts");
    std::fs::write(
        &trust,
        "tshost backup amdump\nrhost root amindexd amidxtaped\n",
    )
    .unwrap();
    let msg = amcheck_error(&lab, "rhost");
    let r = doctor(&lab, "rhost", &msg);
    assert_eq!(first_cause(&r), ("amandahosts", "breaks"), "{r:#}");
    assert_eq!(r["findings"][0]["explains_error"], true, "{r:#}");
    let f = &r["findings"][0];
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("masquerade on fwhost"),
        "{r:#}"
    );
    assert!(
        f["fix"]
            .as_str()
            .unwrap()
            .contains("fwhost-eth1 backup amdump"),
        "{r:#}"
    );
}

#[test]
fn helper_relied_on_without_the_assignment() {
    // The fixture with the helper on: lhost's data streams are accepted only
    // as RELATED, so its rules carry no opening for them.
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("wiki-helper.toml");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE))
        .unwrap()
        .replace(
            "auth = \"bsd\"\n",
            "auth = \"bsd\"\nconntrack-helper = true\n",
        );
    assert!(text.contains("conntrack-helper = true"));
    std::fs::write(&topo, text).unwrap();
    let plan = Plan::build(amwall::load::load_file(&topo).unwrap()).unwrap();
    let lab = lab(&plan);
    // The fault: lhost's `-j CT --helper amanda` left out.
    lab.load_rules_with(Backend::Iptables, |host, text| {
        if host != "lhost" {
            return text;
        }
        let cut: String = text
            .lines()
            .filter(|l| !l.contains("-j CT --helper amanda"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(cut, text, "lhost's rules assign the helper");
        cut
    })
    .unwrap_or_else(|e| panic!("loading the rules: {e}"));
    for h in ["tshost", "fwhost", "lhost", "rhost"] {
        publish_xinetd(&lab, h);
    }
    let d = lab.amdump().expect("running amdump");
    let all = format!("{}\n{}\n{}", d.output.stdout, d.output.stderr, d.report);
    let Some(msg) = all
        .lines()
        .find(|l| l.contains("lhost") && l.contains("could not connect"))
    else {
        fail(
            &lab,
            "amdump did not fail to connect to lhost's streams",
            &all,
        );
    };
    eprintln!("amdump: {msg}");
    let r = doctor_with(&lab, &topo, "lhost", msg);
    assert_eq!(first_cause(&r), ("helper-unassigned", "breaks"), "{r:#}");
    assert_eq!(r["findings"][0]["explains_error"], true, "{r:#}");
}

/// The ssh-auth wiki lab (tests/fixtures/lab/wiki-ssh.toml, tests/amanda_ssh.rs)
/// with its rules loaded: amandad behind each host's sshd, whose config,
/// key files and `/etc/passwd` are the namespace's own, where doctor reads them.
const SSH_FIXTURE: &str = "tests/fixtures/lab/wiki-ssh.toml";

fn ssh_loaded() -> (Plan, AmandaLab) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SSH_FIXTURE);
    let plan = Plan::build(amwall::load::load_file(&path).unwrap()).unwrap();
    let lab = lab(&plan);
    lab.load_rules(Backend::Iptables)
        .unwrap_or_else(|e| panic!("loading the generated rules: {e}"));
    (plan, lab)
}

#[test]
fn ssh_backup_users_shell_is_nologin() {
    let (_plan, lab) = ssh_loaded();
    // Debian's own line for backup, written in place (sshd has the file mounted).
    let passwd = lab.etc_dir("lhost").unwrap().join("passwd");
    let text = std::fs::read_to_string(&passwd).unwrap();
    std::fs::write(
        &passwd,
        text.replace(
            "backup:/var/backups:/bin/sh",
            "backup:/var/backups:/usr/sbin/nologin",
        ),
    )
    .unwrap();
    let msg = amcheck_error(&lab, "lhost");
    let r = doctor_with(
        &lab,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(SSH_FIXTURE),
        "lhost",
        &msg,
    );
    assert_eq!(first_cause(&r), ("ssh-shell", "breaks"), "{r:#}");
    assert_eq!(r["findings"][0]["explains_error"], true, "{r:#}");
    only_one_breaks(&r);
}

/// One finding breaks Amanda; others may warn (Debian's own xinetd service
/// for bsdtcp, unused under ssh auth, is one).
fn only_one_breaks(r: &serde_json::Value) {
    let breaks = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "breaks")
        .count();
    assert_eq!(breaks, 1, "{r:#}");
}

#[test]
fn ssh_key_pinned_to_the_servers_inner_address_behind_nat() {
    let (_plan, lab) = ssh_loaded();
    // rhost sees the server as fwhost's public address (masquerade); a key
    // pinned to tshost's own address is refused by sshd.
    let keys = lab
        .etc_dir("rhost")
        .unwrap()
        .join("ssh/authorized_keys/backup");
    let text = std::fs::read_to_string(&keys).unwrap();
    assert!(text.contains("from=\"198.51.100.1\""), "{text}");
    std::fs::write(
        &keys,
        text.replace("from=\"198.51.100.1\"", "from=\"192.0.2.2\""),
    )
    .unwrap();
    let msg = amcheck_error(&lab, "rhost");
    let r = doctor_with(
        &lab,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(SSH_FIXTURE),
        "rhost",
        &msg,
    );
    assert_eq!(first_cause(&r), ("ssh-keys", "breaks"), "{r:#}");
    assert_eq!(r["findings"][0]["explains_error"], true, "{r:#}");
    let f = &r["findings"][0];
    let summary = f["summary"].as_str().unwrap();
    assert!(
        summary.contains("own address 192.0.2.2") && summary.contains("masquerade on fwhost"),
        "{r:#}"
    );
    assert!(
        f["fix"].as_str().unwrap().contains("from=\"198.51.100.1\""),
        "{r:#}"
    );
    only_one_breaks(&r);
}
