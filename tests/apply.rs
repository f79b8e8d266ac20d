//! `amwall apply` in network namespaces, with the real nft / iptables-restore
//! / ipset: the load is one transaction, the previous rules come back exactly
//! unless confirmed (also when the admin's session dies), `--confirm` keeps the
//! new ones, and rules that would drop the admin's next login are refused.
//! Needs root, iproute2, nftables, iptables, ipset; fails (never skips)
//! without them.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use amwall::lab::Netns;

/// A LAN with the server and clients at the given last octets.
fn topology(server: u8, clients: &[(&str, &str, u8)]) -> String {
    let mut t = String::from(
        "[amanda]\nauth = \"bsdtcp\"\n[management]\nfrom = [\"192.0.2.0/25\"]\n\
         [[network]]\nname = \"lan\"\ncidr = \"192.0.2.0/24\"\n",
    );
    let mut host = |name: &str, roles: &str, octet: u8| {
        t.push_str(&format!(
            "[[host]]\nname = \"{name}\"\nroles = [{roles}]\n\
             interfaces = [{{ name = \"eth0\", network = \"lan\", address = \"192.0.2.{octet}\" }}]\n"
        ))
    };
    host("tshost", "\"server\"", server);
    for (name, roles, octet) in clients {
        host(name, roles, *octet);
    }
    t
}

/// The namespace is c1 (192.0.2.3), a client of tshost.
fn plain() -> String {
    topology(2, &[("c1", "\"client\"", 3), ("c2", "\"client\"", 4)])
}

/// The namespace is tshost (192.0.2.3), with five recovering clients: its
/// rules match an ipset.
fn with_sets() -> String {
    let r = "\"client\", \"recover\"";
    topology(
        3,
        &[
            ("c1", r, 10),
            ("c2", r, 12),
            ("c3", r, 14),
            ("c4", r, 16),
            ("c5", r, 18),
        ],
    )
}

struct Fixture {
    ns: Netns,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A namespace whose eth0 (one end of a veth pair inside it) has c1's address, and a default
    /// route, so `ip route get` answers for any admin address.
    fn new() -> Fixture {
        let ns = Netns::new("amwap").expect("root and iproute2 are required");
        for argv in [
            &[
                "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
            ][..],
            &["ip", "link", "set", "eth0p", "up"],
            &["ip", "addr", "add", "192.0.2.3/24", "dev", "eth0"],
            &["ip", "link", "set", "eth0", "up"],
            &["ip", "route", "add", "default", "via", "192.0.2.1"],
        ] {
            ns.must(argv).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.toml"), plain()).unwrap();
        Fixture { ns, dir }
    }

    fn write_topology(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn state(&self) -> String {
        self.dir.path().join("state").display().to_string()
    }

    /// `amwall ARGS` inside the namespace; SSH_CONNECTION only as given.
    fn amwall(&self, args: &[&str], ssh: Option<&str>) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            self.ns.name(),
            env!("CARGO_BIN_EXE_amwall"),
        ])
        .args(args)
        .current_dir(self.dir.path())
        .env_remove("SSH_CONNECTION");
        if let Some(s) = ssh {
            cmd.env("SSH_CONNECTION", s);
        }
        cmd.output().expect("run amwall")
    }

    fn apply(&self, backend: &str, timeout: &str, ssh: Option<&str>) -> Output {
        let state = self.state();
        self.amwall(
            &[
                "apply",
                "t.toml",
                "--host",
                "c1",
                "--backend",
                backend,
                "--timeout",
                timeout,
                "--state-dir",
                &state,
                "--no-wait",
            ],
            ssh,
        )
    }

    fn sh(&self, argv: &[&str]) -> String {
        self.ns.must(argv).unwrap().stdout
    }

    fn load(&self, argv: &[&str], text: &str) {
        let o = self.ns.exec(argv, Some(text)).unwrap();
        assert!(o.ok(), "{argv:?}: {}", o.stderr);
    }

    /// Wait for the watchdog's outcome file.
    fn outcome(&self, limit: Duration) -> String {
        let f = Path::new(&self.state()).join("result.json");
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(t) = std::fs::read_to_string(&f) {
                return t.trim().trim_matches('"').to_string();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no outcome in {limit:?}");
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// iptables-save without its timestamps and counters.
fn saved(f: &Fixture) -> String {
    f.sh(&["iptables-save"])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.find(" [") {
            Some(i) if l.starts_with(':') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const OTHER_NFT: &str = "table inet other {\n\tchain input {\n\t\ttype filter hook input priority 10; policy accept;\n\t\ttcp dport 8080 counter drop\n\t}\n}\ntable ip amwall {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 9999 accept\n\t}\n}\n";

#[test]
fn nft_rolls_back_exactly_unless_confirmed() {
    let f = Fixture::new();
    f.load(&["nft", "-f", "-"], OTHER_NFT);
    let before = f.sh(&["nft", "list", "ruleset"]);
    let o = f.apply("nft", "2", None);
    assert!(o.status.success(), "{}", text(&o));
    let during = f.sh(&["nft", "list", "table", "ip", "amwall"]);
    assert!(during.contains("policy drop"), "{during}");
    assert!(during.contains("tcp dport 10080"), "{during}");
    assert!(!during.contains("9999"), "{during}");
    assert!(
        f.sh(&["nft", "list", "table", "inet", "other"])
            .contains("tcp dport 8080"),
        "another table is not ours to touch"
    );
    assert_eq!(f.outcome(Duration::from_secs(10)), "rolled-back");
    assert_eq!(f.sh(&["nft", "list", "ruleset"]), before);
    // Nothing pending any more.
    let state = f.state();
    let o = f.amwall(&["apply", "--confirm", "--state-dir", &state], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("rolled back"), "{}", text(&o));
}

#[test]
fn nft_confirmed_rules_stay_and_without_a_table_before_rollback_removes_it() {
    let f = Fixture::new();
    let o = f.apply("nft", "3", None);
    assert!(o.status.success(), "{}", text(&o));
    let state = f.state();
    let c = f.amwall(&["apply", "--confirm", "--state-dir", &state], None);
    assert!(c.status.success(), "{}", text(&c));
    assert!(text(&c).contains("confirmed"), "{}", text(&c));
    std::thread::sleep(Duration::from_millis(3500));
    assert!(f
        .sh(&["nft", "list", "table", "ip", "amwall"])
        .contains("tcp dport 10080"));

    // A second apply, rolled back on request: back to the confirmed rules.
    let confirmed = f.sh(&["nft", "list", "ruleset"]);
    f.load(&["nft", "-f", "-"], "delete table ip amwall\n");
    let o = f.apply("nft", "30", None);
    assert!(o.status.success(), "{}", text(&o));
    let r = f.amwall(&["apply", "--rollback", "--state-dir", &state], None);
    assert!(r.status.success(), "{}", text(&r));
    // There was no table before this apply: none after the rollback.
    assert_eq!(f.sh(&["nft", "list", "ruleset"]), "");
    assert_ne!(confirmed, "");
}

#[test]
fn iptables_rollback_restores_the_tables_it_replaced() {
    let f = Fixture::new();
    f.load(
        &["iptables-restore"],
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:mine - [0:0]\n-A INPUT -p tcp -m tcp --dport 9999 -j mine\n-A mine -j ACCEPT\nCOMMIT\n*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -j MARK --set-xmark 0x7/0xffffffff\nCOMMIT\n",
    );
    let before = saved(&f);
    let o = f.apply("iptables", "2", None);
    assert!(o.status.success(), "{}", text(&o));
    let during = saved(&f);
    assert!(during.contains(":INPUT DROP"), "{during}");
    assert!(!during.contains("9999"), "{during}");
    assert!(
        during.contains("--set-xmark 0x7"),
        "mangle is not in the file, so not replaced: {during}"
    );
    assert_eq!(f.outcome(Duration::from_secs(10)), "rolled-back");
    assert_eq!(saved(&f), before);
}

/// The admin's session dies with the foreground `amwall apply` (here: killed
/// by its PID, which we started): the detached watchdog still rolls back.
#[test]
fn rollback_survives_the_admins_session() {
    let f = Fixture::new();
    let before = f.sh(&["nft", "list", "ruleset"]);
    let state = f.state();
    let mut child = Command::new("ip")
        .args(["netns", "exec", f.ns.name(), env!("CARGO_BIN_EXE_amwall")])
        .args(["apply", "t.toml", "--host", "c1", "--timeout", "3"])
        .args(["--state-dir", &state])
        .current_dir(f.dir.path())
        .env_remove("SSH_CONNECTION")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pending = Path::new(&state).join("pending.json");
    let end = Instant::now() + Duration::from_secs(10);
    while !pending.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Loaded (the table exists) before we pull the plug.
    let end = Instant::now() + Duration::from_secs(5);
    while f
        .ns
        .exec(&["nft", "list", "table", "ip", "amwall"], None)
        .map(|o| !o.ok())
        .unwrap_or(true)
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(f.outcome(Duration::from_secs(10)), "rolled-back");
    assert_eq!(f.sh(&["nft", "list", "ruleset"]), before);
}

/// SSH_CONNECTION from outside `[management] from`: the loaded rules would
/// drop the admin's next login, so they are taken out at once, exit 2; from
/// inside it they load.
#[test]
fn rules_that_lock_the_admin_out_are_refused() {
    let f = Fixture::new();
    f.load(&["nft", "-f", "-"], OTHER_NFT);
    let before = f.sh(&["nft", "list", "ruleset"]);
    let o = f.apply("nft", "30", Some("198.51.100.9 40000 192.0.2.3 22"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("refused"), "{t}");
    assert!(t.contains("tcp 198.51.100.9:40000 -> 192.0.2.3:22"), "{t}");
    assert_eq!(f.sh(&["nft", "list", "ruleset"]), before);
    // iptables the same.
    f.load(
        &["iptables-restore"],
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT\nCOMMIT\n",
    );
    let before = saved(&f);
    let o = f.apply("iptables", "30", Some("198.51.100.9 40000 192.0.2.3 22"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(saved(&f), before);

    let o = f.apply("nft", "30", Some("192.0.2.9 40000 192.0.2.3 22"));
    assert!(o.status.success(), "{}", text(&o));
    let state = f.state();
    let r = f.amwall(&["apply", "--rollback", "--state-dir", &state], None);
    assert!(r.status.success(), "{}", text(&r));
}

/// A pending apply blocks the next one; a ruleset the kernel refuses
/// changes nothing.
#[test]
fn one_pending_apply_at_a_time_and_refused_rules_change_nothing() {
    let f = Fixture::new();
    let o = f.apply("nft", "30", None);
    assert!(o.status.success(), "{}", text(&o));
    let o = f.apply("nft", "30", None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("still waiting"), "{}", text(&o));
    let state = f.state();
    let r = f.amwall(&["apply", "--rollback", "--state-dir", &state], None);
    assert!(r.status.success(), "{}", text(&r));

    let before = f.sh(&["nft", "list", "ruleset"]);
    let st = amwall::apply::StateDir::new(f.dir.path().join("lib"));
    let bad = amwall::apply::Payload {
        kind: amwall::apply::Kind::Nft,
        host: "tshost".into(),
        rules: "table ip amwall {\n chain input { type filter hook input priority 0; policy drop; tcp dport 99999 accept }\n}\n".into(),
        ipset: None,
    };
    let opts = amwall::apply::Options {
        timeout: Duration::from_secs(5),
        admin: None,
        force: false,
        watchdog_exe: env!("CARGO_BIN_EXE_amwall").into(),
    };
    let r =
        f.ns.run_in(move || amwall::apply::apply(&st, &bad, &opts).map(|_| ()))
            .unwrap();
    let e = r.expect_err("the kernel refuses port 99999");
    assert!(e.to_string().contains("nft -c -f -"), "{e}");
    assert_eq!(f.sh(&["nft", "list", "ruleset"]), before);
}

const SET: &str = "amw_in_amrecover_hosts";

/// The ipset the server's rules match is filled by the apply; the rollback
/// destroys it when it is new, and gives an older set of the same name its
/// old members back.
#[test]
fn iptables_rollback_restores_ipsets() {
    let f = Fixture::new();
    f.write_topology("sets.toml", &with_sets());
    let state = f.state();
    let apply = |f: &Fixture| {
        f.amwall(
            &[
                "apply",
                "sets.toml",
                "--host",
                "tshost",
                "--backend",
                "iptables",
                "--timeout",
                "30",
                "--state-dir",
                &state,
                "--no-wait",
            ],
            None,
        )
    };
    let rollback = |f: &Fixture| {
        let r = f.amwall(&["apply", "--rollback", "--state-dir", &state], None);
        assert!(r.status.success(), "{}", text(&r));
    };
    let members = |f: &Fixture| -> Vec<String> {
        f.sh(&["ipset", "list", SET])
            .lines()
            .filter(|l| l.starts_with("192.0.2."))
            .map(str::to_string)
            .collect()
    };
    // (a) No set before.
    let o = apply(&f);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(members(&f).len(), 5);
    assert!(saved(&f).contains(&format!("--match-set {SET} src")));
    rollback(&f);
    assert!(!f.sh(&["ipset", "list", "-n"]).contains(SET));

    // (b) A set of that name, used by the old rules.
    f.load(
        &["ipset", "restore"],
        &format!("create {SET} hash:ip family inet\nadd {SET} 192.0.2.99\n"),
    );
    f.load(
        &["iptables-restore"],
        &format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -m set --match-set {SET} src -j DROP\nCOMMIT\n"),
    );
    let before = saved(&f);
    let o = apply(&f);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(members(&f).len(), 5);
    rollback(&f);
    assert_eq!(members(&f), vec!["192.0.2.99".to_string()]);
    assert_eq!(saved(&f), before);
}

/// The kernel is the judge of the lockout check: with the refusal overridden
/// (`--force`), a real TCP connection to port 22 from the address `apply`
/// refused for is dropped by the loaded rules, and one from the management
/// network still gets through.
#[test]
fn the_kernel_agrees_with_the_lockout_check() {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    let f = Fixture::new();
    let peer = Netns::new("amwap").unwrap();
    f.ns.must(&["ip", "link", "del", "eth0"]).unwrap();
    amwall::lab::netns::veth(&f.ns, "eth0", &peer, "vb").unwrap();
    f.ns.must(&["ip", "addr", "add", "192.0.2.3/24", "dev", "eth0"])
        .unwrap();
    f.ns.must(&["ip", "route", "add", "198.51.100.0/24", "dev", "eth0"])
        .unwrap();
    peer.must(&["ip", "route", "add", "192.0.2.0/24", "dev", "vb"])
        .unwrap();
    // A listener on c1's port 22 (the handshake needs no accept()).
    let listener =
        f.ns.run_in(|| TcpListener::bind("0.0.0.0:22"))
            .unwrap()
            .unwrap();
    let connects_from = |src: &str| -> bool {
        peer.must(&["ip", "addr", "flush", "dev", "vb"]).unwrap();
        peer.must(&["ip", "addr", "add", &format!("{src}/32"), "dev", "vb"])
            .unwrap();
        peer.must(&["ip", "route", "replace", "192.0.2.0/24", "dev", "vb"])
            .unwrap();
        peer.run_in(|| {
            let to: SocketAddr = "192.0.2.3:22".parse().unwrap();
            TcpStream::connect_timeout(&to, Duration::from_millis(1500)).is_ok()
        })
        .unwrap()
    };
    assert!(connects_from("198.51.100.9"), "no rules yet: open");

    let outside = "198.51.100.9 40000 192.0.2.3 22";
    let o = f.apply("nft", "30", Some(outside));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let state = f.state();
    let forced = f.amwall(
        &[
            "apply",
            "t.toml",
            "--host",
            "c1",
            "--timeout",
            "30",
            "--state-dir",
            &state,
            "--no-wait",
            "--force",
        ],
        Some(outside),
    );
    assert!(forced.status.success(), "{}", text(&forced));
    assert!(text(&forced).contains("loaded anyway"), "{}", text(&forced));
    assert!(
        !connects_from("198.51.100.9"),
        "the kernel drops what apply refused"
    );
    assert!(
        connects_from("192.0.2.9"),
        "management still reaches port 22"
    );
    let r = f.amwall(&["apply", "--rollback", "--state-dir", &state], None);
    assert!(r.status.success(), "{}", text(&r));
    assert!(connects_from("198.51.100.9"), "rolled back: open again");
    drop(listener);
}
