//! `plan --ansible` rolled out for real: Debian's Ansible in a control
//! namespace, an OpenSSH server in every host's namespace (real Amanda there,
//! `lab::amanda`), real SSH to each host's address. No local or nsenter
//! connection: a ruleset that cuts management is a real lockout.
//!
//! Every path the playbook writes is pointed (extra vars) at a per-host
//! directory under the test's temporary directory, never /etc or /var/lib;
//! sshd runs with a config, host key and authorized_keys of the test's own
//! and a private /run (tmpfs) for its privilege-separation directory.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use amwall::lab::amanda::AmandaLab;
use amwall::lab::Netns;
use amwall::Plan;

const CONTROL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);
const ROLLBACK_SECS: u32 = 15;

struct Fleet {
    // Drop order: the control node's processes (Drop), the control
    // namespace, then the lab (sshds, Amanda, namespaces), then the files.
    control: Netns,
    lab: AmandaLab,
    plan: Plan,
    dir: tempfile::TempDir,
    project: PathBuf,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // ssh's ControlPersist masters outlive ansible-playbook: ours, by PID.
        kill_all_in(self.control.name());
    }
}

fn kill_all_in(ns: &str) {
    for _ in 0..20 {
        let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() else {
            return;
        };
        let pids: Vec<i32> = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            return;
        }
        for p in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn must(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The lab for `topology` (a file under tests/fixtures, or text), an sshd in
/// every host, the control node at CONTROL on `network`, and the project
/// written by the real CLI.
fn fleet(name: &str, text: &str, network: &str, gateway: Option<Ipv4Addr>, backend: &str) -> Fleet {
    let dir = tempfile::Builder::new()
        .prefix("amwall-ansible-")
        .tempdir()
        .unwrap();
    let topo = dir.path().join(name);
    std::fs::write(&topo, text).unwrap();
    let d = amwall::load::load_str(name, text.to_string()).unwrap_or_else(|e| panic!("{e:?}"));
    let plan = Plan::build(d).expect("plans");
    let mut lab = common::amanda::lab(&plan);

    // Keys: one client key for the control node, a host key per host.
    let key = dir.path().join("id_ed25519");
    must(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "amwall-test", "-f"])
            .arg(&key),
    );
    std::fs::copy(
        key.with_extension("pub"),
        dir.path().join("authorized_keys"),
    )
    .unwrap();
    for h in &plan.deployment.hosts {
        let hd = dir.path().join("hosts").join(&h.name);
        std::fs::create_dir_all(&hd).unwrap();
        let hk = hd.join("ssh_host_ed25519_key");
        must(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&hk),
        );
        let conf = hd.join("sshd_config");
        std::fs::write(
            &conf,
            format!(
                "Port 22\nListenAddress 0.0.0.0\nHostKey {}\nPidFile none\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
                hk.display(),
                dir.path().join("authorized_keys").display()
            ),
        )
        .unwrap();
        // A private /run (this mount namespace only) holds sshd's /run/sshd.
        let script = "mount -t tmpfs -o mode=755 amwall-run /run && mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -e -f \"$0\"";
        lab.spawn(
            &h.name,
            &["sh", "-c", script, &conf.display().to_string()],
            &hd.join("sshd.log"),
        )
        .unwrap();
    }
    for h in &plan.deployment.hosts {
        let ns = lab.namespace(&h.name).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ns.must(&["ss", "-Hlnt"]).unwrap().stdout.contains(":22 ") {
            assert!(
                Instant::now() < deadline,
                "sshd on {} does not listen: {}",
                h.name,
                std::fs::read_to_string(dir.path().join("hosts").join(&h.name).join("sshd.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let control = lab.attach(&plan, network, CONTROL, gateway).unwrap();
    std::fs::create_dir_all(dir.path().join("home")).unwrap();

    let project = dir.path().join("project");
    must(
        Command::new(env!("CARGO_BIN_EXE_amwall"))
            .args(["plan", "-q", "--backend", backend, "--ansible"])
            .arg(&project)
            .arg(&topo),
    );
    // Every path the playbook writes: per host, under the test's directory.
    let hosts = dir.path().join("hosts").display().to_string();
    let per_host = |p: &str| format!("{hosts}/{{{{ inventory_hostname }}}}/{p}");
    let vars = serde_json::json!({
        "amwall_etc_dir": per_host("etc/amwall"),
        "amwall_state_dir": per_host("var/lib/amwall"),
        "amwall_nftables_conf": per_host("etc/nftables.conf"),
        "amwall_iptables_rules_v4": per_host("etc/iptables/rules.v4"),
        "amwall_iptables_rules_v6": per_host("etc/iptables/rules.v6"),
        "amwall_ipsets_file": per_host("etc/iptables/ipsets"),
        // iptables_state's confirmation cookie lives in the async directory
        // (~/.ansible_async/iptables.state): the namespaces share one /root,
        // so without this one host's confirmation would cancel another's
        // rollback (in this test and in one running beside it).
        "ansible_async_dir": per_host("async"),
        // Ansible's remote temporary files, out of the machine's /root too.
        "ansible_remote_tmp": per_host("tmp"),
        "amwall_amanda_config": amwall::lab::amanda::CONFIG,
        "amwall_rollback_timeout": ROLLBACK_SECS,
        "amwall_batch": 2,
    });
    std::fs::write(dir.path().join("vars.json"), vars.to_string()).unwrap();
    Fleet {
        control,
        lab,
        plan,
        dir,
        project,
    }
}

struct Run {
    ok: bool,
    out: String,
    /// Per host of PLAY RECAP: (changed, failed, unreachable).
    recap: BTreeMap<String, (u32, u32, u32)>,
    took: Duration,
}

impl Fleet {
    fn host_dir(&self, host: &str) -> PathBuf {
        self.dir.path().join("hosts").join(host)
    }

    fn playbook(&self, extra: &[&str]) -> Run {
        let t = Instant::now();
        let home = self.dir.path().join("home");
        let key = self.dir.path().join("id_ed25519");
        let vars = format!("@{}", self.dir.path().join("vars.json").display());
        let mut argv: Vec<String> = vec![
            "timeout".into(),
            "900".into(),
            "env".into(),
            "-C".into(),
            self.project.display().to_string(),
            format!("HOME={}", home.display()),
            "ANSIBLE_HOST_KEY_CHECKING=False".into(),
            format!("ANSIBLE_PRIVATE_KEY_FILE={}", key.display()),
            "ANSIBLE_REMOTE_USER=root".into(),
            format!("ANSIBLE_TIMEOUT={}", ROLLBACK_SECS + 10),
            format!("ANSIBLE_SSH_CONTROL_PATH_DIR={}/cp", home.display()),
            "ANSIBLE_SSH_ARGS=-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no".into(),
            "ANSIBLE_NOCOLOR=1".into(),
            "ANSIBLE_FORCE_COLOR=0".into(),
            "ansible-playbook".into(),
            "site.yml".into(),
            "-e".into(),
            vars,
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let o = self.control.exec(&refs, None).unwrap();
        let out = format!("{}\n{}", o.stdout, o.stderr);
        let mut recap = BTreeMap::new();
        if let Some(r) = out.split("PLAY RECAP").nth(1) {
            for line in r.lines() {
                let Some((host, rest)) = line.split_once(" : ") else {
                    continue;
                };
                let field = |k: &str| {
                    rest.split_whitespace()
                        .find_map(|f| f.strip_prefix(k)?.parse::<u32>().ok())
                        .unwrap_or(0)
                };
                recap.insert(
                    host.trim().to_string(),
                    (field("changed="), field("failed="), field("unreachable=")),
                );
            }
        }
        Run {
            ok: o.ok(),
            out,
            recap,
            took: t.elapsed(),
        }
    }

    fn has_table(&self, host: &str) -> bool {
        self.lab
            .namespace(host)
            .unwrap()
            .exec(&["nft", "list", "table", "ip", "amwall"], None)
            .unwrap()
            .ok()
    }
}

/// The first result line after each run of `task` ("ok: [..]", "skipping: [..]").
fn task_results<'a>(out: &'a str, task: &str) -> Vec<&'a str> {
    let header = format!("TASK [{task}]");
    out.split(&header)
        .skip(1)
        .map(|rest| {
            rest.lines()
                .map(str::trim)
                .find(|l| {
                    ["ok:", "skipping:", "changed:", "fatal:"]
                        .iter()
                        .any(|p| l.starts_with(p))
                })
                .unwrap_or("")
        })
        .collect()
}

const AMCHECK: &str = "amwall | amcheck from the Amanda server";

/// The site's NAT as it is before amwall (without it RHost is unreachable
/// from the LAN): a table of the admin's, which the rollout must leave alone.
fn site_nat(f: &Fleet) {
    let o = f
        .lab
        .namespace("fwhost")
        .unwrap()
        .exec(
            &["nft", "-f", "-"],
            Some("table ip site {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname \"eth1\" masquerade\n }\n}\n"),
        )
        .unwrap();
    assert!(o.ok(), "{}", o.stderr);
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/lab")
            .join(name),
    )
    .unwrap()
}

fn assert_run(f: &Fleet, r: &Run, what: &str) {
    if !r.ok {
        common::amanda::fail(&f.lab, &format!("{what}: ansible-playbook failed"), &r.out);
    }
    eprintln!("{what}: ok in {:.1?}; recap {:?}", r.took, r.recap);
}

/// The wiki topology (a NAT router, a host behind it) with nft: check mode
/// changes nothing, the rollout loads and installs every host's rules in
/// order, real amcheck passes through them, and a second run changes nothing.
#[test]
fn wiki_nft_rollout_amcheck_and_idempotence() {
    amwall::lab::amanda::preflight().expect("root, Amanda and the lab's tools");
    // The control node on the LAN; RHost is reached through FWHost's NAT.
    let f = fleet(
        "wiki-doc.toml",
        &fixture("wiki-doc.toml"),
        "lan",
        Some(Ipv4Addr::new(192, 0, 2, 1)),
        "nft",
    );
    let hosts: Vec<String> = f
        .plan
        .deployment
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .collect();
    site_nat(&f);

    let check = f.playbook(&["--check", "--diff"]);
    assert_run(&f, &check, "--check --diff");
    assert!(
        check.out.contains("+table ip amwall {"),
        "check mode shows the rules to come:\n{}",
        check.out
    );
    for h in &hosts {
        assert!(!f.has_table(h), "{h}: --check loaded rules");
        assert!(
            !f.host_dir(h).join("etc/amwall/amwall.nft").exists(),
            "{h}: --check wrote"
        );
    }

    let first = f.playbook(&[]);
    assert_run(&f, &first, "rollout");
    // Routers first, then the server, then the rest.
    let pos = |s: &str| {
        first
            .out
            .find(s)
            .unwrap_or_else(|| panic!("no {s:?} in\n{}", first.out))
    };
    assert!(pos("PLAY [amwall | routers") < pos("PLAY [amwall | the Amanda server"));
    assert!(pos("PLAY [amwall | the Amanda server") < pos("PLAY [amwall | clients"));
    // FWHost was confirmed through to RHost over a new connection.
    let through = task_results(
        &first.out,
        "amwall | nft | a new SSH connection gets through to the hosts behind",
    );
    assert!(
        through
            .iter()
            .any(|l| l.starts_with("ok: [fwhost -> rhost")),
        "{through:?}"
    );
    for h in &hosts {
        assert!(f.has_table(h), "{h}: no table ip amwall after the rollout");
        assert!(
            first.recap[h].0 > 0,
            "{h} changed nothing: {:?}",
            first.recap
        );
        let installed =
            std::fs::read_to_string(f.host_dir(h).join("etc/amwall/amwall.nft")).unwrap();
        let planned = std::fs::read_to_string(f.project.join(format!("{h}.nft"))).unwrap();
        assert_eq!(installed, planned, "{h}: installed file");
        let conf = std::fs::read_to_string(f.host_dir(h).join("etc/nftables.conf")).unwrap();
        assert!(
            conf.contains("include \"") && !conf.contains("flush ruleset"),
            "{h}: {conf}"
        );
        // The rollback was cancelled, not fired.
        assert!(
            !f.host_dir(h).join("var/lib/amwall/rolled-back").exists(),
            "{h}"
        );
        assert!(
            !f.host_dir(h).join("var/lib/amwall/rollback.pid").exists(),
            "{h}"
        );
    }
    let site = f
        .lab
        .namespace("fwhost")
        .unwrap()
        .exec(&["nft", "list", "table", "ip", "site"], None)
        .unwrap();
    assert!(
        site.ok() && site.stdout.contains("masquerade"),
        "the admin's table was touched: {}",
        site.stderr
    );
    // amcheck ran after each batch: the router, the server, the two others.
    let checks = task_results(&first.out, AMCHECK);
    assert!(
        checks.len() == 3 && checks.iter().all(|l| l.starts_with("ok: [")),
        "{checks:?}\n{}",
        first.out
    );
    // Real Amanda through the rolled-out rules, every client.
    common::amanda::check_ok(&f.lab, "after the rollout");

    let second = f.playbook(&[]);
    assert_run(&f, &second, "second run");
    for h in &hosts {
        assert_eq!(
            second.recap[h].0, 0,
            "{h}: a second run changed something:\n{}",
            second.out
        );
    }
    // Nothing loaded, so no batch needs amcheck.
    let checks = task_results(&second.out, AMCHECK);
    assert!(
        !checks.is_empty() && checks.iter().all(|l| l.starts_with("skipping:")),
        "{checks:?}"
    );
}

/// The 5-client LAN with iptables (ipsets, iptables_state's rollback), in
/// batches of two; amcheck after each; a second run changes nothing.
#[test]
fn lan_iptables_rollout_in_batches() {
    amwall::lab::amanda::preflight().expect("root, Amanda and the lab's tools");
    let f = fleet(
        "lan-doc.toml",
        &fixture("lan-doc.toml"),
        "lan",
        None,
        "iptables",
    );
    let hosts: Vec<String> = f
        .plan
        .deployment
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .collect();
    let first = f.playbook(&[]);
    assert_run(&f, &first, "rollout");
    // backup alone (the server), then 5 clients in batches of 2: 3 amchecks of batches.
    let checks = task_results(&first.out, AMCHECK);
    assert!(
        checks.len() == 4 && checks.iter().all(|l| l.starts_with("ok: [")),
        "{checks:?}\n{}",
        first.out
    );
    for h in &hosts {
        let ns = f.lab.namespace(h).unwrap();
        let live = ns.must(&["iptables-save"]).unwrap().stdout;
        assert!(
            live.contains("--dport 22"),
            "{h}: rules not loaded:\n{live}"
        );
        assert!(f.host_dir(h).join("etc/iptables/rules.v4").exists(), "{h}");
        assert!(f.host_dir(h).join("etc/iptables/rules.v6").exists(), "{h}");
    }
    assert!(f.host_dir("backup").join("etc/iptables/ipsets").exists());
    common::amanda::check_ok(&f.lab, "after the rollout");
    let second = f.playbook(&[]);
    assert_run(&f, &second, "second run");
    for h in &hosts {
        assert_eq!(
            second.recap[h].0, 0,
            "{h}: a second run changed something:\n{}",
            second.out
        );
    }
    // Nothing loaded, so no batch needs amcheck.
    let checks = task_results(&second.out, AMCHECK);
    assert!(
        !checks.is_empty() && checks.iter().all(|l| l.starts_with("skipping:")),
        "{checks:?}"
    );
}

/// A plan whose management network leaves out the control node: the first
/// batch (the server) loses SSH, its rollback restores it, the play fails
/// saying so, and no client is touched. nft: amwall's timed revert.
#[test]
fn lockout_nft_rolls_back_the_first_batch_and_stops() {
    lockout("nft");
}

/// The same with iptables: community.general.iptables_state's rollback.
#[test]
fn lockout_iptables_rolls_back_the_first_batch_and_stops() {
    lockout("iptables");
}

fn lockout(backend: &str) {
    amwall::lab::amanda::preflight().expect("root, Amanda and the lab's tools");
    let text = fixture("lan-doc.toml")
        .replace("from = [\"192.0.2.240/28\"]", "from = [\"203.0.113.0/28\"]");
    let f = fleet("lan-lockout.toml", &text, "lan", None, backend);
    let r = f.playbook(&[]);
    assert!(!r.ok, "the rollout must fail:\n{}", r.out);
    let closed = |h: &str| {
        let ns = f.lab.namespace(h).unwrap();
        f.has_table(h)
            || ns
                .must(&["iptables-save"])
                .unwrap()
                .stdout
                .contains(":INPUT DROP")
    };
    if backend == "nft" {
        assert!(
            r.out
                .contains("could not be reached over a new SSH connection")
                && r.out.contains("restored its previous ruleset")
                && r.out.contains("No later batch was touched"),
            "no clear message:\n{}",
            r.out
        );
        assert!(
            f.host_dir("backup")
                .join("var/lib/amwall/rolled-back")
                .exists(),
            "{}",
            r.out
        );
    } else {
        assert!(
            r.out
                .contains("Firewall has been rolled back to its initial state")
                && r.out.contains("No later batch was touched"),
            "no clear message:\n{}",
            r.out
        );
    }
    assert!(
        !closed("backup"),
        "backup's rules were not rolled back:\n{}",
        r.out
    );
    for h in ["web1", "web2", "db", "files", "print"] {
        assert!(!closed(h), "{h} was touched");
        assert!(
            !f.host_dir(h).join("var/lib/amwall").exists(),
            "{h} was touched"
        );
    }
    for boot in ["etc/amwall/amwall.nft", "etc/iptables/rules.v4"] {
        assert!(
            !f.host_dir("backup").join(boot).exists(),
            "{boot} installed after a rollback"
        );
    }
    eprintln!(
        "lockout ({backend}): failed as it should in {:.1?}\n{}",
        r.took,
        r.out
            .lines()
            .filter(|l| l.contains("fatal"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A router whose new rules still let the admins in but no longer forward
/// them to the host behind it (the project's file edited: the forward rule
/// for management removed) is rolled back before that host is touched.
#[test]
fn router_cutting_the_way_behind_it_nft() {
    router_cut(
        "nft",
        "fwhost.nft",
        "ip daddr 198.51.100.5 tcp dport 22 accept",
    );
}

#[test]
fn router_cutting_the_way_behind_it_iptables() {
    router_cut(
        "iptables",
        "fwhost.rules",
        "-d 198.51.100.5/32 -i eth0 -o eth1 -p tcp -m tcp --dport 22",
    );
}

fn router_cut(backend: &str, file: &str, line: &str) {
    amwall::lab::amanda::preflight().expect("root, Amanda and the lab's tools");
    let f = fleet(
        "wiki-doc.toml",
        &fixture("wiki-doc.toml"),
        "lan",
        Some(Ipv4Addr::new(192, 0, 2, 1)),
        backend,
    );
    site_nat(&f);
    let path = f.project.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.contains(line)).count(),
        1,
        "{text}"
    );
    let cut: String = text
        .lines()
        .filter(|l| !l.contains(line))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, cut).unwrap();
    let r = f.playbook(&[]);
    assert!(!r.ok, "the rollout must fail:\n{}", r.out);
    assert!(
        r.out.contains(
            "the hosts behind fwhost (rhost) could not be reached over a new SSH connection"
        ) && r.out.contains("No later batch was touched"),
        "no clear message:\n{}",
        r.out
    );
    let fw = f.lab.namespace("fwhost").unwrap();
    assert!(
        !f.has_table("fwhost"),
        "fwhost's nft rules were not rolled back"
    );
    assert!(
        !fw.must(&["iptables-save"])
            .unwrap()
            .stdout
            .contains(":FORWARD DROP"),
        "fwhost's iptables rules were not rolled back"
    );
    for h in ["tshost", "lhost", "rhost"] {
        assert!(
            !f.host_dir(h).join("var/lib/amwall").exists(),
            "{h} was touched"
        );
    }
    eprintln!(
        "router cut ({backend}): failed as it should in {:.1?}",
        r.took
    );
}

/// The wiki topology with iptables: the router through iptables_state and
/// confirmed through to RHost, amcheck after each batch, then `changed=0`.
#[test]
fn wiki_iptables_rollout_and_idempotence() {
    amwall::lab::amanda::preflight().expect("root, Amanda and the lab's tools");
    let f = fleet(
        "wiki-doc.toml",
        &fixture("wiki-doc.toml"),
        "lan",
        Some(Ipv4Addr::new(192, 0, 2, 1)),
        "iptables",
    );
    site_nat(&f);
    let first = f.playbook(&[]);
    assert_run(&f, &first, "rollout");
    let through = task_results(
        &first.out,
        "amwall | iptables | a new SSH connection gets through to the hosts behind",
    );
    assert!(
        through
            .iter()
            .any(|l| l.starts_with("ok: [fwhost -> rhost")),
        "{through:?}"
    );
    let checks = task_results(&first.out, AMCHECK);
    assert!(
        checks.len() == 3 && checks.iter().all(|l| l.starts_with("ok: [")),
        "{checks:?}"
    );
    for h in ["tshost", "fwhost", "lhost", "rhost"] {
        let live = f
            .lab
            .namespace(h)
            .unwrap()
            .must(&["iptables-save"])
            .unwrap()
            .stdout;
        assert!(
            live.contains(":INPUT DROP"),
            "{h}: rules not loaded:\n{live}"
        );
    }
    common::amanda::check_ok(&f.lab, "after the rollout");
    let second = f.playbook(&[]);
    assert_run(&f, &second, "second run");
    for (h, (changed, _, _)) in &second.recap {
        assert_eq!(
            *changed, 0,
            "{h}: a second run changed something:\n{}",
            second.out
        );
    }
}
