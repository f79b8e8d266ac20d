//! Shared by the end-to-end tests: every bundled example in every auth mode.
#![allow(dead_code)]

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use amwall::amanda::settings::Auth;
use amwall::lab::Netns;
use amwall::model::Deployment;
use amwall::Plan;

pub mod amanda;
pub mod dual;
pub mod fleet;

pub const EXAMPLES: &[&str] = &["wiki", "lan", "helper", "dualstack"];

pub fn example(name: &str) -> Deployment {
    let path = format!("{}/examples/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    amwall::load::load_str(&format!("examples/{name}.toml"), text)
        .unwrap_or_else(|e| panic!("{e:?}"))
}

/// (label, plan) for the IPv6-only fixtures (tests/fixtures/v6only/): an
/// IPv6-only client with an upstream build, and the same with Debian's.
pub fn v6only() -> Vec<(String, Plan)> {
    ["upstream", "debian"]
        .into_iter()
        .map(|f| {
            let name = format!("tests/fixtures/v6only/{f}.toml");
            let path = format!("{}/{name}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let d = amwall::load::load_str(&name, text).unwrap_or_else(|e| panic!("{e:?}"));
            (format!("v6only-{f}"), Plan::build(d).unwrap())
        })
        .collect()
}

/// (label, plan) for every example × auth mode, plus the conntrack helper on and
/// off for the UDP auths (the helper example's own setting is "on").
pub fn variants() -> Vec<(String, Plan)> {
    let mut out = Vec::new();
    for ex in EXAMPLES {
        let d = example(ex);
        for auth in Auth::ALL {
            let base = d.with_auth(auth);
            let helpers: &[bool] = if auth.is_udp() {
                &[false, true]
            } else {
                &[false]
            };
            for &h in helpers {
                let v = base.with_helper(h);
                let label = format!("{ex}-{auth}{}", if h { "-helper" } else { "" });
                out.push((label, Plan::build(v).expect("examples plan cleanly")));
            }
        }
    }
    // amoldrecover opens 10082/10083 and a range with no source constraint.
    let mut legacy = example("wiki").with_auth(Auth::Bsd);
    for h in &mut legacy.hosts {
        h.amanda.legacy_recover = true;
        h.client_conf.legacy_recover = true;
    }
    out.push(("wiki-bsd-legacy".into(), Plan::build(legacy).unwrap()));
    out
}

/// One server and `n` clients on one network (as bench/gen-topology.sh makes):
/// enough hosts for ipsets, aggregated prefixes and nft interval sets.
pub fn generated(n: usize) -> Deployment {
    amwall::load::load_str("generated.toml", generated_toml(n)).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The topology text of [`generated`], for tests that give amwall a file.
#[allow(dead_code)]
pub fn generated_toml(n: usize) -> String {
    let mut t = String::from(
        "[amanda]\nauth = \"bsd\"\nclient-port = 10080\n[management]\nfrom = [\"198.51.100.0/24\"]\n\
         [[network]]\nname = \"all\"\ncidr = \"198.51.100.0/24\"\n\
         [[host]]\nname = \"server\"\nroles = [\"server\"]\ninterfaces = [{ name = \"eth0\", network = \"all\", address = \"198.51.100.1\" }]\n",
    );
    for i in 0..n {
        // .2 .. .n+1, with a gap at .100 so aggregation has holes to respect.
        let last = if i + 2 >= 100 { i + 3 } else { i + 2 };
        t.push_str(&format!(
            "[[host]]\nname = \"c{i}\"\nroles = [\"client\", \"recover\"]\ninterfaces = [{{ name = \"eth0\", network = \"all\", address = \"198.51.100.{last}\" }}]\n"
        ));
    }
    t
}

/// Run the amwall binary from the repository root: (exit code, stdout, stderr).
pub fn amwall(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_amwall"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run amwall");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The argv that runs the amwall binary with `args` inside a namespace's
/// command runner: no SSH_CONNECTION (so no lockout check for the test's
/// own session), `env` settings first, `--state-dir STATE` last.
pub fn amwall_argv<'a>(env: &[&'a str], args: &[&'a str], state: &'a str) -> Vec<&'a str> {
    let mut argv = vec!["env", "-u", "SSH_CONNECTION"];
    argv.extend(env);
    argv.push(env!("CARGO_BIN_EXE_amwall"));
    argv.extend(args);
    argv.extend(["--state-dir", state]);
    argv
}

/// Where the real-world ruleset corpus lives: `AMWALL_REALWORLD`, else
/// `../shared/rulesets/real-world` beside the clone (see docs/real-world-corpus.md).
/// The corpus is someone else's public collection with its own licences, so it
/// is never copied into this repository; a public clone may not have it.
pub fn real_world_dir() -> Option<std::path::PathBuf> {
    let dir = match std::env::var_os("AMWALL_REALWORLD") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rulesets/real-world")
        }
    };
    if dir.is_dir() {
        return Some(dir);
    }
    let msg = format!(
        "NOT RUN: the real-world ruleset corpus is not at {} \
         (set AMWALL_REALWORLD to its directory; docs/real-world-corpus.md says where it comes from)",
        dir.display()
    );
    // CI always has the corpus beside the clone: there, absence is a failure.
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!`
    // of passing tests, and this must be seen.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** {msg} ***\n");
    None
}

/// The corpus's dumps, sorted (SOURCE.md left out), or `None` when absent.
pub fn real_world_files() -> Option<Vec<std::path::PathBuf>> {
    let dir = real_world_dir()?;
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "SOURCE.md"))
        .collect();
    files.sort();
    Some(files)
}

/// Run the amwall binary from the repository root with extra environment and
/// standard input, killed (our own child, by its handle) after `limit`: a
/// regression that hangs fails instead. Exit code -1 means it was killed.
pub fn amwall_bounded(
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
    limit: std::time::Duration,
) -> (i32, String, String) {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_amwall"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run amwall");
    if let (Some(bytes), Some(mut w)) = (stdin, child.stdin.take()) {
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = w.write_all(&bytes);
        });
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let start = std::time::Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (
        code,
        String::from_utf8_lossy(&o.join().unwrap()).into_owned(),
        String::from_utf8_lossy(&e.join().unwrap()).into_owned(),
    )
}

/// In `amwall check`'s text, the backup data-stream flow along `route`
/// ("tshost → lhost", "tshost → rhost via fwhost"): its line and the lines
/// indented under it (findings, Amanda's message, notes).
pub fn data_flow<'a>(out: &'a str, route: &str) -> (&'a str, Vec<&'a str>) {
    let lines: Vec<&str> = out.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains(" backup ") && l.contains(route) && l.contains(" tcp "))
        .unwrap_or_else(|| panic!("no backup data flow {route} in\n{out}"));
    let under = lines[i + 1..]
        .iter()
        .take_while(|l| l.starts_with("      "))
        .copied()
        .collect();
    (lines[i], under)
}

/// `text` without its lines that contain `needle`.
pub fn without_lines(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| !l.contains(needle))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Does a UDP request from `from` reach `sock` (bound in the client)?
pub fn udp_arrives(server: &Netns, from: &str, sock: &UdpSocket, to: SocketAddr) -> bool {
    let from: SocketAddr = from.parse().unwrap();
    server
        .run_in(move || {
            let s = UdpSocket::bind(from).expect("bind the server's source port");
            s.send_to(b"Amanda 2.6 REQ HANDLE 000-00000000 SEQ 1\n", to)
                .expect("send");
        })
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 256];
    match sock.recv_from(&mut buf) {
        Ok((_, peer)) => peer == from,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(e) => panic!("recv: {e}"),
    }
}

/// A TCP connect from `from` (in `server`) to `to`: `Other` when it is
/// accepted, else why not (refused, timed out).
pub fn tcp_connect(server: &Netns, from: &str, to: SocketAddr) -> ErrorKind {
    let from: SocketAddr = from.parse().unwrap();
    server
        .run_in(move || {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(to),
                socket2::Type::STREAM,
                None,
            )
            .unwrap();
            s.bind(&from.into()).unwrap();
            match s.connect_timeout(&to.into(), Duration::from_millis(700)) {
                Ok(()) => ErrorKind::Other,
                Err(e) => e.kind(),
            }
        })
        .unwrap()
}

/// Load `plan`'s rules for each (namespace, host): the whole `HOST.nft`, or
/// `HOST.rules` and `HOST.rules6`; a refusal fails the test with the text.
pub fn load_both_families(plan: &Plan, hosts: &[(&Netns, &str)], nft: bool) {
    for &(ns, host) in hosts {
        let hp = &plan.policies[plan.deployment.host_by_name(host).unwrap()];
        let loads: Vec<(&[&str], String)> = if nft {
            vec![(&["nft", "-f", "-"], plan.nft(hp))]
        } else {
            vec![
                (&["iptables-restore"], plan.iptables(hp)),
                (&["ip6tables-restore"], plan.ip6tables(hp)),
            ]
        };
        for (argv, text) in loads {
            let r = ns
                .exec(argv, Some(&text))
                .expect("the loader must be installed");
            assert!(r.ok(), "{host}: {argv:?}: {}\n{text}", r.stderr);
        }
    }
}
