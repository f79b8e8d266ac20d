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
    /// iptables applies here replace the tables on purpose: they say
    /// `--iptables owned` unless they choose a mode themselves.
    fn amwall(&self, args: &[&str], ssh: Option<&str>) -> Output {
        let mut args = args.to_vec();
        if args.windows(2).any(|w| w == ["--backend", "iptables"]) && !args.contains(&"--iptables")
        {
            args.extend(["--iptables", "owned"]);
        }
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
    save(f, "iptables-save")
}

/// `ip6tables-save`, as [`saved`].
fn saved6(f: &Fixture) -> String {
    save(f, "ip6tables-save")
}

fn save(f: &Fixture, tool: &str) -> String {
    f.sh(&[tool])
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
    // The IPv6 policy came with it, and goes with the rollback.
    let during6 = f.sh(&["nft", "list", "table", "ip6", "amwall"]);
    assert!(during6.contains("policy drop"), "{during6}");
    assert!(during6.contains("icmpv6 type"), "{during6}");
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
    f.load(
        &["nft", "-f", "-"],
        "delete table ip amwall\ndelete table ip6 amwall\n",
    );
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
    f.load(
        &["ip6tables-restore"],
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT\nCOMMIT\n",
    );
    let (before, before6) = (saved(&f), saved6(&f));
    let o = f.apply("iptables", "2", None);
    assert!(o.status.success(), "{}", text(&o));
    let during = saved(&f);
    assert!(during.contains(":INPUT DROP"), "{during}");
    assert!(!during.contains("9999"), "{during}");
    assert!(
        during.contains("--set-xmark 0x7"),
        "mangle is not in the file, so not replaced: {during}"
    );
    // HOST.rules6 replaced the IPv6 filter table too.
    let during6 = saved6(&f);
    assert!(during6.contains(":INPUT DROP"), "{during6}");
    assert!(during6.contains("--icmpv6-type 135"), "{during6}");
    assert!(!during6.contains("9999"), "{during6}");
    assert_eq!(f.outcome(Duration::from_secs(10)), "rolled-back");
    assert_eq!(saved(&f), before);
    assert_eq!(saved6(&f), before6);
}

/// Another manager's table still rejects Amanda after amwall's table is
/// loaded (nftables: a reject in any base chain wins): the live check of
/// the host's flows names that rule and the table, and the apply is rolled
/// back; with `--force` it stays, with the finding as a note.
#[test]
fn a_foreign_table_that_still_blocks_amanda_rolls_the_apply_back() {
    let f = Fixture::new();
    f.load(
        &["nft", "-f", "-"],
        "table inet fw {\n\tchain input {\n\t\ttype filter hook input priority 10; policy accept;\n\t\ttcp dport 10080 reject\n\t}\n}\n",
    );
    let before = f.sh(&["nft", "list", "ruleset"]);
    let o = f.apply("nft", "30", None);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("still blocks Amanda"), "{err}");
    assert!(err.contains("nft table `fw`"), "{err}");
    assert!(err.contains("tcp dport 10080 reject"), "{err}");
    assert!(err.contains("previous rules are back"), "{err}");
    assert_eq!(f.sh(&["nft", "list", "ruleset"]), before);
    let state = f.state();
    let o = f.amwall(
        &[
            "apply",
            "t.toml",
            "--host",
            "c1",
            "--backend",
            "nft",
            "--timeout",
            "2",
            "--state-dir",
            &state,
            "--no-wait",
            "--force",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("loaded anyway (--force)"),
        "{}",
        text(&o)
    );
    assert_eq!(f.outcome(Duration::from_secs(10)), "rolled-back");
}

/// Without `--iptables`, tables holding rules amwall did not write are not
/// replaced: the apply is refused (exit 2) naming them, and nothing changes.
#[test]
fn iptables_apply_refuses_to_remove_foreign_rules_unless_told() {
    let f = Fixture::new();
    f.load(
        &["iptables-restore"],
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\nCOMMIT\n",
    );
    let before = saved(&f);
    let state = f.state();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", f.ns.name(), env!("CARGO_BIN_EXE_amwall")])
        .args([
            "apply",
            "t.toml",
            "--host",
            "c1",
            "--backend",
            "iptables",
            "--timeout",
            "5",
            "--state-dir",
            &state,
            "--no-wait",
        ])
        .current_dir(f.dir.path())
        .env_remove("SSH_CONNECTION");
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("filter: chain DOCKER-USER"), "{err}");
    assert!(err.contains("--iptables merged"), "{err}");
    assert_eq!(saved(&f), before);
    assert!(!Path::new(&state).join("pending.json").exists());
}

/// Merged mode over a fail2ban-style chain: the host's rules and policy stay
/// while amwall's chain is loaded, a ban added while the apply waits survives
/// the rollback, and after it only amwall's chain and jump are gone. Applied
/// twice (confirmed in between), there is still one jump. The first apply
/// names no backend: the foreign chain makes it choose merged mode; the
/// second gives `--iptables merged` alone, which implies iptables.
#[test]
fn iptables_merged_apply_and_rollback_leave_foreign_rules_standing() {
    let f = Fixture::new();
    f.load(
        &["iptables-restore"],
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:f2b-sshd - [0:0]\n-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A f2b-sshd -j RETURN\nCOMMIT\n",
    );
    let before = saved(&f);
    let merged = |timeout: &str, flags: &[&str]| {
        let state = f.state();
        let mut args = vec!["apply", "t.toml", "--host", "c1"];
        args.extend(flags);
        args.extend(["--timeout", timeout, "--state-dir", &state, "--no-wait"]);
        f.amwall(&args, None)
    };
    let o = merged("30", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("fail2ban")
            && text(&o).contains("so: --backend iptables --iptables merged"),
        "detected: {}",
        text(&o)
    );
    let during = saved(&f);
    assert!(during.contains(":INPUT DROP"), "the policy stays: {during}");
    assert!(during.contains("-A f2b-sshd -j RETURN"), "{during}");
    let first = during.lines().find(|l| l.starts_with("-A INPUT")).unwrap();
    assert_eq!(first, "-A INPUT -j AMWALL-INPUT", "{during}");
    assert!(during.contains("-A AMWALL-INPUT"), "{during}");
    let o = f.amwall(&["apply", "--confirm", "--state-dir", &f.state()], None);
    assert!(o.status.success(), "{}", text(&o));
    let o = merged("2", &["--iptables", "merged"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !text(&o).contains("so: "),
        "nothing to detect: {}",
        text(&o)
    );
    let again = saved(&f);
    assert_eq!(again.matches("-j AMWALL-INPUT").count(), 1, "{again}");
    // fail2ban bans someone while the second apply waits.
    f.sh(&[
        "iptables",
        "-I",
        "f2b-sshd",
        "1",
        "-s",
        "192.0.2.66/32",
        "-j",
        "REJECT",
    ]);
    assert_eq!(f.outcome(Duration::from_secs(10)), "rolled-back");
    let after = saved(&f);
    assert!(
        after.contains("-A f2b-sshd -s 192.0.2.66/32 -j REJECT"),
        "{after}"
    );
    // The confirmed first apply's chain is what remains of amwall's.
    assert_eq!(
        after.replace(
            "-A f2b-sshd -s 192.0.2.66/32 -j REJECT --reject-with icmp-port-unreachable\n",
            ""
        ),
        during,
    );
    assert_ne!(after, before);
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
    // An admin who came in over IPv6: `[management] from` names no IPv6
    // prefix, so the IPv6 policy would drop the next login — refused too,
    // for both backends, and both families are as they were.
    let v6 = Some("2001:db8::9 40000 2001:db8::3 22");
    // A table restored by the rollback is listed after the others: compare
    // the tables, not their order.
    let nft_tables = |f: &Fixture| {
        let mut t: Vec<String> = f
            .sh(&["nft", "list", "ruleset"])
            .split("\ntable ")
            .map(|b| b.trim_start_matches("table ").trim_end().to_string())
            .collect();
        t.sort();
        t
    };
    let (before4, before6, before_nft) = (saved(&f), saved6(&f), nft_tables(&f));
    for backend in ["nft", "iptables"] {
        let o = f.apply(backend, "30", v6);
        assert_eq!(o.status.code(), Some(2), "{backend}: {}", text(&o));
        let t = text(&o);
        assert!(
            t.contains("tcp [2001:db8::9]:40000 -> [2001:db8::3]:22"),
            "{backend}: {t}"
        );
        assert_eq!(
            (saved(&f), saved6(&f)),
            (before4.clone(), before6.clone()),
            "{backend}"
        );
        assert_eq!(nft_tables(&f), before_nft, "{backend}");
    }

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
        kind: amwall::netfilter::Backend::Nft,
        host: "tshost".into(),
        rules: "table ip amwall {\n chain input { type filter hook input priority 0; policy drop; tcp dport 99999 accept }\n}\n".into(),
        ipset: None,
        rules6: None,
        merged: vec![],
        merged6: vec![],
        firewalld: None,
        ufw: None,
    };
    let opts = amwall::apply::Options {
        timeout: Duration::from_secs(5),
        admin: None,
        force: false,
        watchdog_exe: env!("CARGO_BIN_EXE_amwall").into(),
        replace_foreign: true,
        flows: None,
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

// ---------------------------------------------------------------------------
// Faults: the watchdog killed, the state directory full or read-only, two
// applies racing. The watchdog is found by the PID it leaves in the state
// directory (or, for builds that do not write it, by its command line naming
// our own temporary state directory): only our own process is ever killed.

/// The PID of the watchdog guarding `state`, if one runs.
fn watchdog_pid(state: &str) -> Option<i32> {
    let ours = |pid: i32| -> bool {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let words: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            words.contains(&&b"--watchdog"[..]) && words.contains(&state.as_bytes())
        })
    };
    if let Ok(t) = std::fs::read_to_string(Path::new(state).join("watchdog.pid")) {
        return t.trim().parse().ok().filter(|p| ours(*p));
    }
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|p| ours(*p))
}

/// Dead or a zombie (its descriptors, and so its locks, are gone either way).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn sigkill(pid: i32) {
    // SAFETY: kill(2) with a PID checked to be our own watchdog.
    unsafe {
        nix::libc::kill(pid, nix::libc::SIGKILL);
    }
}

/// SIGKILL our watchdog, as the OOM killer would, and wait until it is gone.
fn kill_watchdog(state: &str) -> i32 {
    let pid = watchdog_pid(state).expect("a watchdog runs for our state dir");
    sigkill(pid);
    let end = Instant::now() + Duration::from_secs(5);
    while !gone(pid) {
        assert!(Instant::now() < end, "watchdog {pid} does not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    pid
}

fn ipsets(f: &Fixture) -> String {
    f.sh(&["ipset", "save"])
}

fn iptables_apply(f: &Fixture, timeout: &str) -> Output {
    let state = f.state();
    f.amwall(
        &[
            "apply",
            "sets.toml",
            "--host",
            "tshost",
            "--backend",
            "iptables",
            "--timeout",
            timeout,
            "--state-dir",
            &state,
            "--no-wait",
        ],
        None,
    )
}

/// A fixture with rules of its own in nft, iptables, ip6tables and ipset,
/// and the topology whose server rules fill an ipset.
fn loaded_fixture() -> Fixture {
    let f = Fixture::new();
    f.write_topology("sets.toml", &with_sets());
    f.load(&["nft", "-f", "-"], OTHER_NFT);
    f.load(
        &["ip6tables-restore"],
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT\nCOMMIT\n",
    );
    f.load(
        &["ipset", "restore"],
        &format!("create {SET} hash:ip family inet\nadd {SET} 192.0.2.99\n"),
    );
    f.load(
        &["iptables-restore"],
        &format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT\n-A INPUT -m set --match-set {SET} src -j DROP\nCOMMIT\n"),
    );
    f
}

/// Everything a rollback must give back, as the kernel lists it: nft's
/// tables (sorted: a restored table is listed last, its place in the list
/// means nothing), iptables-save, and `ipset save` sorted, without the hash
/// seed `initval` (a refilled set is the one swapped in, with its own seed).
fn everything(f: &Fixture) -> String {
    let nft = f.sh(&["nft", "list", "ruleset"]);
    let mut tables: Vec<String> = Vec::new();
    for l in nft.lines() {
        if l.starts_with("table ") || tables.is_empty() {
            tables.push(String::new());
        }
        let t = tables.last_mut().unwrap();
        t.push_str(l);
        t.push('\n');
    }
    tables.sort();
    // Members in hash order, which differs between two fills of one set.
    let mut sets: Vec<String> = ipsets(f)
        .lines()
        .map(|l| match l.find(" initval ") {
            Some(i) => l[..i].to_string(),
            None => l.to_string(),
        })
        .collect();
    sets.sort();
    format!(
        "{}\n{}\n{}\n{}",
        tables.concat(),
        saved(f),
        saved6(f),
        sets.join("\n")
    )
}

/// Killed right after the load (`--no-wait` has returned): `--rollback`
/// restores from the state directory itself, for both backends.
#[test]
fn rollback_after_the_watchdog_is_killed_right_after_the_load() {
    let f = loaded_fixture();
    let state = f.state();
    for backend in ["nft", "iptables"] {
        let before = everything(&f);
        let o = if backend == "nft" {
            f.apply("nft", "30", None)
        } else {
            iptables_apply(&f, "30")
        };
        assert!(o.status.success(), "{}", text(&o));
        // Here PID 1 is not systemd, or the test runs in its own network
        // namespace: either way no timer, and the apply says so.
        assert!(
            text(&o).contains("no systemd timer as second guard"),
            "{}",
            text(&o)
        );
        assert_ne!(everything(&f), before, "{backend}: loaded");
        kill_watchdog(&state);
        let r = f.amwall(&["apply", "--rollback", "--state-dir", &state], None);
        assert!(r.status.success(), "{backend}: {}", text(&r));
        assert!(text(&r).contains("rolled back"), "{}", text(&r));
        assert_eq!(everything(&f), before, "{backend}");
        // Nothing pending: a new apply is not refused.
        let o = f.apply("nft", "30", None);
        assert!(o.status.success(), "{backend}: {}", text(&o));
        let r = f.amwall(&["apply", "--rollback", "--state-dir", &state], None);
        assert!(r.status.success(), "{}", text(&r));
        assert_eq!(everything(&f), before, "{backend}");
    }
}

/// The measured bug: watchdog killed, deadline passed, nothing happened.
/// The next invocation (a late `--confirm`, or a new `apply`) finds the
/// overdue apply and rolls it back first.
#[test]
fn an_overdue_apply_without_watchdog_is_rolled_back_by_the_next_invocation() {
    let f = loaded_fixture();
    let state = f.state();
    let before = everything(&f);
    let o = iptables_apply(&f, "1");
    assert!(o.status.success(), "{}", text(&o));
    kill_watchdog(&state);
    std::thread::sleep(Duration::from_millis(2500));
    assert_ne!(everything(&f), before, "nobody acts between invocations");
    let c = f.amwall(&["apply", "--confirm", "--state-dir", &state], None);
    assert_eq!(c.status.code(), Some(2), "{}", text(&c));
    assert!(text(&c).contains("past its deadline"), "{}", text(&c));
    assert!(text(&c).contains("previous rules are back"), "{}", text(&c));
    assert_eq!(everything(&f), before);

    // A new apply does the same before it loads.
    let o = f.apply("nft", "1", None);
    assert!(o.status.success(), "{}", text(&o));
    kill_watchdog(&state);
    std::thread::sleep(Duration::from_millis(2500));
    let o = f.apply("nft", "30", None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("past its deadline"), "{}", text(&o));
    let r = f.amwall(&["apply", "--rollback", "--state-dir", &state], None);
    assert!(r.status.success(), "{}", text(&r));
    assert_eq!(everything(&f), before);
}

/// Killed at the deadline: whether it died before, during or after its own
/// rollback, the next invocation leaves exactly the previous rules.
#[test]
fn the_watchdog_killed_at_the_deadline() {
    let f = loaded_fixture();
    let state = f.state();
    let before = everything(&f);
    for delay_ms in [0u64, 50, 150, 400] {
        let o = iptables_apply(&f, "1");
        assert!(o.status.success(), "{}", text(&o));
        let pend: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(Path::new(&state).join("pending.json")).unwrap(),
        )
        .unwrap();
        let deadline = Duration::from_secs(pend["deadline"].as_u64().unwrap());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        std::thread::sleep(deadline.saturating_sub(now) + Duration::from_millis(delay_ms));
        if let Some(pid) = watchdog_pid(&state) {
            if !gone(pid) {
                sigkill(pid);
            }
        }
        // Too late to confirm: exit 1 (rolled back now) or 2 (nothing
        // pending: already rolled back), never 0.
        let c = f.amwall(&["apply", "--confirm", "--state-dir", &state], None);
        assert!(
            matches!(c.status.code(), Some(1 | 2)),
            "+{delay_ms} ms: {}",
            text(&c)
        );
        let t = text(&c);
        assert!(
            t.contains("rolled back") || t.contains("previous rules are back"),
            "{t}"
        );
        assert_eq!(everything(&f), before, "+{delay_ms} ms");
    }
}

/// Killed before the load finishes: a `System` that delegates to the real
/// one kills the watchdog just before the load step (the seam is the hook;
/// the binary has none). The apply sees it gone and takes its rules out.
#[test]
fn the_watchdog_killed_before_the_load_finishes() {
    use amwall::apply::{self, system::Lock, AdminConn, Real, System};
    use amwall::netfilter::Backend;
    use amwall::sim::Verdict;
    struct KillBeforeLoad(Real, String);
    impl KillBeforeLoad {
        fn kill(&self) {
            kill_watchdog(&self.1);
        }
    }
    impl System for KillBeforeLoad {
        fn dry_run(&self, k: Backend, r: &str) -> amwall::Result<()> {
            self.0.dry_run(k, r)
        }
        fn dry_run6(&self, r: &str) -> amwall::Result<()> {
            self.0.dry_run6(r)
        }
        fn nft_table(&self, f: &str, t: &str) -> amwall::Result<Option<String>> {
            self.0.nft_table(f, t)
        }
        fn nft_load(&self, s: &str) -> amwall::Result<()> {
            self.kill();
            self.0.nft_load(s)
        }
        fn nft_restore(&self, f: &str, t: &str, s: Option<&str>) -> amwall::Result<()> {
            self.0.nft_restore(f, t, s)
        }
        fn fw_files(&self, c: &Path) -> amwall::Result<std::collections::BTreeMap<String, String>> {
            self.0.fw_files(c)
        }
        fn fw_put(&self, p: &Path, t: Option<&str>) -> amwall::Result<()> {
            self.0.fw_put(p, t)
        }
        fn fw_check(&self, c: &Path) -> amwall::Result<()> {
            self.0.fw_check(c)
        }
        fn firewall_cmd(&self, a: &[&str]) -> amwall::Result<String> {
            self.0.firewall_cmd(a)
        }
        fn ufw_files(
            &self,
            c: &Path,
        ) -> amwall::Result<std::collections::BTreeMap<String, amwall::apply::ufw::UfwFile>>
        {
            self.0.ufw_files(c)
        }
        fn ufw_put(&self, p: &Path, f: Option<&amwall::apply::ufw::UfwFile>) -> amwall::Result<()> {
            self.0.ufw_put(p, f)
        }
        fn ufw(&self, a: &[&str]) -> amwall::Result<String> {
            self.0.ufw(a)
        }
        fn ufw_hook(&self, h: &str, a: &str) -> amwall::Result<()> {
            self.0.ufw_hook(h, a)
        }
        fn iptables_save(&self) -> amwall::Result<String> {
            self.0.iptables_save()
        }
        fn iptables_restore(&self, t: &str) -> amwall::Result<()> {
            self.0.iptables_restore(t)
        }
        fn ip6tables_save(&self) -> amwall::Result<String> {
            self.0.ip6tables_save()
        }
        fn ip6tables_restore(&self, t: &str) -> amwall::Result<()> {
            self.0.ip6tables_restore(t)
        }
        fn nft_ruleset(&self) -> amwall::Result<String> {
            self.0.nft_ruleset()
        }
        fn iptables_restore_noflush(&self, t: &str) -> amwall::Result<()> {
            self.0.iptables_restore_noflush(t)
        }
        fn ip6tables_restore_noflush(&self, t: &str) -> amwall::Result<()> {
            self.0.ip6tables_restore_noflush(t)
        }
        fn ipset_save(&self) -> amwall::Result<String> {
            self.0.ipset_save()
        }
        fn ipset_restore(&self, t: &str) -> amwall::Result<()> {
            self.0.ipset_restore(t)
        }
        fn ipset_destroy(&self, n: &str) -> amwall::Result<()> {
            self.0.ipset_destroy(n)
        }
        fn admin_verdict(&self, k: Backend, c: &AdminConn) -> amwall::Result<(Verdict, String)> {
            self.0.admin_verdict(k, c)
        }
        fn write(&self, n: &str, t: &str) -> amwall::Result<()> {
            self.0.write(n, t)
        }
        fn read(&self, n: &str) -> Option<String> {
            self.0.read(n)
        }
        fn remove(&self, n: &str) {
            self.0.remove(n)
        }
        fn lock(&self) -> amwall::Result<Lock> {
            self.0.lock()
        }
        fn place(&self) -> String {
            self.0.place()
        }
        fn spawn_watchdog(&self, id: &str) -> amwall::Result<()> {
            self.0.spawn_watchdog(id)
        }
        fn watchdog_alive(&self) -> bool {
            self.0.watchdog_alive()
        }
        fn second_guard(&self, d: u64) -> Result<String, String> {
            self.0.second_guard(d)
        }
        fn now(&self) -> u64 {
            self.0.now()
        }
        fn sleep(&self, d: Duration) {
            self.0.sleep(d)
        }
        fn boot_id(&self) -> Option<String> {
            self.0.boot_id()
        }
    }
    let f = loaded_fixture();
    let before = everything(&f);
    let state = f.state();
    let sys = KillBeforeLoad(
        Real::new(&state, Some(env!("CARGO_BIN_EXE_amwall").into())),
        state.clone(),
    );
    let p = apply::Payload {
        kind: Backend::Nft,
        host: "c1".into(),
        rules: "table ip amwall\ndelete table ip amwall\ntable ip amwall {\n chain input { type filter hook input priority 0; policy drop; }\n}\n".into(),
        ipset: None,
        rules6: None,
        merged: vec![],
        merged6: vec![],
        firewalld: None,
        ufw: None,
    };
    let opts = apply::Options {
        timeout: Duration::from_secs(30),
        admin: None,
        force: false,
        watchdog_exe: env!("CARGO_BIN_EXE_amwall").into(),
        replace_foreign: true,
        flows: None,
    };
    let r =
        f.ns.run_in(move || apply::apply_with(&sys, &p, &opts).map(|_| ()))
            .unwrap();
    let e = r
        .expect_err("the watchdog died during the load")
        .to_string();
    assert!(e.contains("watchdog died"), "{e}");
    assert!(e.contains("previous rules are back"), "{e}");
    assert_eq!(everything(&f), before);
    // Nothing is left pending.
    let c = f.amwall(&["apply", "--confirm", "--state-dir", &state], None);
    assert_eq!(c.status.code(), Some(2), "{}", text(&c));
    assert!(text(&c).contains("no apply is waiting"), "{}", text(&c));
}

/// A private mount namespace (`unshare -m`, a `sleep` we own) in which a
/// tmpfs or a read-only bind can be mounted without the machine's own
/// namespace ever seeing it.
struct MountNs {
    holder: std::process::Child,
}

impl MountNs {
    fn new() -> MountNs {
        let holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sleep", "600"])
            .spawn()
            .expect("unshare (util-linux) is required");
        let ino = |p: String| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let me = ino("/proc/self/ns/mnt".into());
        let pid = holder.id();
        let end = Instant::now() + Duration::from_secs(5);
        // Never mount before the holder is in its own namespace.
        while !(std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() == "sleep")
            && ino(format!("/proc/{pid}/ns/mnt")) != me)
        {
            assert!(Instant::now() < end, "unshare -m did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        MountNs { holder }
    }

    /// `nsenter -t HOLDER -m ARGV...`
    fn argv<'a>(&self, pid: &'a str) -> Vec<&'a str> {
        vec!["nsenter", "-t", pid, "-m", "--"]
    }

    fn run(&self, argv: &[&str]) -> Output {
        let pid = self.holder.id().to_string();
        Command::new("nsenter")
            .args(["-t", &pid, "-m", "--"])
            .args(argv)
            .output()
            .unwrap()
    }

    fn must(&self, argv: &[&str]) -> String {
        let o = self.run(argv);
        assert!(o.status.success(), "{argv:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

impl Fixture {
    /// `amwall ARGS` in the namespace, inside the mount namespace `m`.
    fn amwall_in(&self, m: &MountNs, args: &[&str]) -> Output {
        let mut args = args.to_vec();
        if args.windows(2).any(|w| w == ["--backend", "iptables"]) {
            args.extend(["--iptables", "owned"]);
        }
        let pid = m.holder.id().to_string();
        let mut cmd = Command::new(m.argv(&pid)[0]);
        cmd.args(&m.argv(&pid)[1..])
            .args(["ip", "netns", "exec", self.ns.name()])
            .arg(env!("CARGO_BIN_EXE_amwall"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("SSH_CONNECTION");
        cmd.output().expect("run amwall")
    }
}

/// A state directory that takes no writes — a full tmpfs, a read-only bind —
/// is refused with exit 2 before anything is loaded; a disk that fills while
/// the apply waits still gets its rollback and outcome recorded.
#[test]
fn a_full_or_read_only_state_dir() {
    let f = loaded_fixture();
    let before = everything(&f);
    let m = MountNs::new();
    let disk = f.dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let disk_s = disk.display().to_string();
    m.must(&["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", &disk_s]);
    let state = format!("{disk_s}/state");
    let fill = format!("of={disk_s}/fill");
    let apply = |backend: &str, timeout: &str| {
        let (topo, host) = if backend == "nft" {
            ("t.toml", "c1")
        } else {
            ("sets.toml", "tshost")
        };
        // nsenter starts in /: the topology by its full path.
        let topo = f.dir.path().join(topo).display().to_string();
        let topo = topo.as_str();
        f.amwall_in(
            &m,
            &[
                "apply",
                topo,
                "--host",
                host,
                "--backend",
                backend,
                "--timeout",
                timeout,
                "--state-dir",
                &state,
                "--no-wait",
            ],
        )
    };

    // (a) The disk fills while the apply waits.
    for backend in ["nft", "iptables"] {
        let o = apply(backend, "2");
        assert!(o.status.success(), "{backend}: {}", text(&o));
        assert_ne!(everything(&f), before);
        m.run(&["dd", "if=/dev/zero", &fill, "bs=4k"]);
        let end = Instant::now() + Duration::from_secs(10);
        let result = format!("{state}/result.json");
        while m.run(&["cat", &result]).stdout.is_empty() {
            assert!(
                Instant::now() < end,
                "{backend}: no outcome recorded on a full disk"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            m.must(&["cat", &result]).contains("rolled-back"),
            "{backend}"
        );
        assert_eq!(everything(&f), before, "{backend}");
        assert!(!m
            .run(&["test", "-e", &format!("{state}/pending.json")])
            .status
            .success());
        // (b) Still full: the next apply is refused before the load.
        let o = apply(backend, "30");
        assert_eq!(o.status.code(), Some(2), "{backend}: {}", text(&o));
        assert!(text(&o).contains("nothing was loaded"), "{}", text(&o));
        assert_eq!(everything(&f), before, "{backend}");
        m.must(&["rm", "-f", &format!("{disk_s}/fill")]);
    }

    // (c) Read-only (a bind of the state directory onto itself).
    m.must(&["mount", "--bind", &state, &state]);
    m.must(&["mount", "-o", "remount,bind,ro", &state]);
    for backend in ["nft", "iptables"] {
        let o = apply(backend, "30");
        assert_eq!(o.status.code(), Some(2), "{backend}: {}", text(&o));
        assert!(text(&o).contains("nothing was loaded"), "{}", text(&o));
        assert_eq!(everything(&f), before, "{backend}");
    }
}

/// Two applies started at once, several times: exactly one loads, the other
/// changes nothing; exactly one watchdog and one pending record; and after
/// confirming or rolling back, the kernel holds the new rules or the
/// previous ones, never a mix.
#[test]
fn two_applies_racing_end_with_one_pending() {
    let f = loaded_fixture();
    let state = f.state();
    let before = everything(&f);
    let mut after_confirm = None;
    for round in 0..6 {
        let spawn = || {
            Command::new("ip")
                .args(["netns", "exec", f.ns.name(), env!("CARGO_BIN_EXE_amwall")])
                .args([
                    "apply",
                    "sets.toml",
                    "--host",
                    "tshost",
                    "--backend",
                    "iptables",
                    "--iptables",
                    "owned",
                ])
                .args(["--timeout", "30", "--state-dir", &state, "--no-wait"])
                .current_dir(f.dir.path())
                .env_remove("SSH_CONNECTION")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let codes = [a.status.code(), b.status.code()];
        assert!(
            codes.contains(&Some(0)) && codes.contains(&Some(2)),
            "round {round}: one loads, one is refused\n{}\n{}",
            text(&a),
            text(&b)
        );
        let loser = if a.status.success() { &b } else { &a };
        assert!(text(loser).contains("still waiting"), "{}", text(loser));
        let watchdogs = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                    let w: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                    w.contains(&&b"--watchdog"[..]) && w.contains(&state.as_bytes())
                }) && !gone(*p)
            })
            .count();
        assert_eq!(watchdogs, 1, "round {round}");
        let confirm = round % 2 == 0;
        let r = f.amwall(
            &[
                "apply",
                if confirm { "--confirm" } else { "--rollback" },
                "--state-dir",
                &state,
            ],
            None,
        );
        assert!(r.status.success(), "round {round}: {}", text(&r));
        let now = everything(&f);
        if confirm {
            assert_ne!(now, before, "round {round}");
            assert_eq!(
                after_confirm.get_or_insert_with(|| now.clone()),
                &now,
                "round {round}: the same new rules every time"
            );
            // Back to the start for the next round.
            f.load(
                &["iptables-restore"],
                &format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT\n-A INPUT -m set --match-set {SET} src -j DROP\nCOMMIT\n"),
            );
            f.load(
                &["ipset", "restore"],
                &format!("flush {SET}\nadd {SET} 192.0.2.99\n"),
            );
            f.load(
                &["ip6tables-restore"],
                "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT\nCOMMIT\n",
            );
        }
        if !confirm {
            assert_eq!(now, before, "round {round}");
        }
        // Start each round from the same kernel state.
        assert_eq!(everything(&f), before, "round {round} reset");
    }
}
