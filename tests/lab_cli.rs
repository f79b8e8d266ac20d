//! `amwall lab` end to end: exit codes (0 all pass, 1 findings, 2 bad input),
//! `--keep`, and that namespaces never outlive a run, not even one stopped with
//! Ctrl-C. Needs root, like tests/lab_wiki.rs.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use amwall::lab::{Lab, LabError};
use amwall::netfilter::Backend;
use nix::libc;

fn amwall(args: &[&str]) -> (i32, String, String, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_amwall"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run amwall");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for amwall");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        pid,
    )
}

/// Lab namespaces made by process `pid` (names are `aml-HOST-PID-N`).
fn namespaces_of(pid: u32) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("aml-") && n.contains(&format!("-{pid}-")))
        .map(str::to_string)
        .collect()
}

/// Deletes the named namespaces when dropped (for `--keep`, also on failure).
struct Cleanup(Vec<String>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

#[test]
fn passing_lab_exits_0_and_leaves_nothing_behind() {
    let (code, stdout, stderr, pid) = amwall(&[
        "lab",
        "examples/wiki.toml",
        "--backend",
        "nft",
        "--auth",
        "bsdtcp",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("Required flows"), "{stdout}");
    assert!(stdout.contains("Exposure:"), "{stdout}");
    assert!(stdout.contains("Verdict: PASS"), "{stdout}");
    assert!(
        stdout.contains("internet 0.0.0.0/0 → 198.51.100.0/24"),
        "{stdout}"
    );
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}

#[test]
fn findings_exit_1() {
    // Drop lhost's opening for the server's requests: amcheck, estimate and the
    // backup request to lhost must fail, and nothing else.
    let (code, stdout, stderr, pid) = amwall(&[
        "lab",
        "examples/wiki.toml",
        "--backend",
        "iptables",
        "--drop",
        "lhost:--dport 10080",
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("Verdict: FAIL"), "{stdout}");
    assert!(stderr.contains("dropped from lhost: -A INPUT"), "{stderr}");
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains("FAIL"))
        .collect();
    assert_eq!(
        failed.len(),
        3,
        "check, estimate, backup request to lhost: {stdout}"
    );
    assert!(failed.iter().all(|l| l.contains("lhost")), "{stdout}");
    let (code, _, stderr, _) =
        amwall(&["lab", "examples/wiki.toml", "--drop", "lhost:no such rule"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}

/// `--svg`: the picture marks the probes that failed, and lhost (nothing
/// arrived, no router between) as the host that blocks them.
#[test]
fn svg_draws_the_failed_flows_on_the_host_that_blocks_them() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("lab.svg");
    let (code, stdout, stderr, pid) = amwall(&[
        "lab",
        "examples/wiki.toml",
        "--backend",
        "nft",
        "--drop",
        "lhost:dport 10080",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("amwall lab (nft): examples/wiki.toml (auth bsd): 21 pass, 3 blocked"),
        "{text}"
    );
    assert!(text.contains("blocks #9 #10 #11"), "{text}");
    assert!(text.contains("BLOCKED on lhost"), "{text}");
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}

#[test]
fn bad_input_exits_2() {
    let (code, _, stderr, _) = amwall(&["lab", "examples/no-such.toml"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr, _) = amwall(&["lab", "examples/wiki.toml", "--auth", "krb5"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn a_topology_that_does_not_fit_the_documentation_ranges_is_refused() {
    let mut t = String::from(
        "[amanda]\nauth = \"bsdtcp\"\n[[network]]\nname = \"big\"\ncidr = \"10.0.0.0/16\"\n",
    );
    t += "[[host]]\nname = \"s\"\nroles = [\"server\"]\ninterfaces = [{ name = \"eth0\", network = \"big\", address = \"10.0.0.1\" }]\n";
    for k in 0..300 {
        t += &format!(
            "[[host]]\nname = \"c{k}\"\nroles = [\"client\"]\ninterfaces = [{{ name = \"eth0\", network = \"big\", address = \"10.0.{}.{} \" }}]\n",
            1 + k / 200,
            1 + k % 200
        )
        .replace(" \" }", "\" }");
    }
    let d = amwall::load::load_str("big.toml", t.clone()).unwrap();
    match Lab::new(d, Backend::Iptables) {
        Err(LabError::Map(m)) => assert!(m.contains("does not fit"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("301 hosts on one network cannot fit a /24"),
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.toml");
    std::fs::write(&path, t).unwrap();
    let (code, _, stderr, _) = amwall(&["lab", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("documentation ranges"), "{stderr}");
}

#[test]
fn keep_leaves_the_namespaces_and_says_how_to_enter_them() {
    let (code, stdout, stderr, pid) = amwall(&[
        "lab",
        "examples/wiki.toml",
        "--backend",
        "iptables",
        "--auth",
        "bsdtcp",
        "--keep",
    ]);
    let kept = Cleanup(namespaces_of(pid));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // Four hosts and the bridge namespace for the three-host LAN.
    assert_eq!(kept.0.len(), 5, "{:?}\n{stdout}", kept.0);
    for n in &kept.0 {
        assert!(
            stdout.contains(&format!("ip netns exec {n} ")),
            "{n}\n{stdout}"
        );
    }
    // What is kept is the real lab: the generated rules are loaded in it.
    let ts = kept
        .0
        .iter()
        .find(|n| n.starts_with("aml-tshost-"))
        .unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", ts, "iptables-save"])
        .output()
        .unwrap();
    let saved = String::from_utf8_lossy(&out.stdout);
    assert!(saved.contains(":INPUT DROP"), "{saved}");
    assert!(saved.contains("--dport 10080"), "{saved}");
}

#[test]
fn a_library_lab_removes_its_namespaces_when_dropped() {
    let names: Vec<String>;
    {
        let mut lab = Lab::new(common::example("wiki"), Backend::Nft).unwrap();
        lab.build(&mut |_| {}).expect("needs root and iproute2");
        names = ["tshost", "fwhost", "lhost", "rhost"]
            .iter()
            .map(|h| lab.namespace(h).unwrap().name().to_string())
            .collect();
        for n in &names {
            assert!(
                std::path::Path::new(&format!("/var/run/netns/{n}")).exists(),
                "{n}"
            );
        }
    }
    for n in &names {
        assert!(
            !std::path::Path::new(&format!("/var/run/netns/{n}")).exists(),
            "{n} left behind"
        );
    }
}

#[test]
fn ctrl_c_removes_the_namespaces() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_amwall"))
        .args(["lab", "examples/wiki.toml", "--backend", "both"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run amwall");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while namespaces_of(pid).is_empty() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            let _left = Cleanup(namespaces_of(pid));
            panic!("amwall lab never created its namespaces");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the child we spawned, by its PID.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    let left = Cleanup(namespaces_of(pid));
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(left.0.is_empty(), "left behind: {:?}", left.0);
}
