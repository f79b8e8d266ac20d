//! The Ansible fleet of tests/ansible.rs and bench/rollout.sh: the real-Amanda
//! lab, an sshd in every host's namespace, a control namespace running real
//! `ansible-playbook` over real SSH, and the project written by the real CLI.
//! Shared so that the benchmark measures exactly what the tests prove.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use amwall::lab::amanda::AmandaLab;
use amwall::lab::Netns;
use amwall::Plan;

pub const CONTROL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);
pub const ROLLBACK_SECS: u32 = 15;

pub struct Fleet {
    // Drop order: the control node's processes (Drop), the control
    // namespace, then the lab (sshds, Amanda, namespaces), then the files.
    pub control: Netns,
    pub lab: AmandaLab,
    pub plan: Plan,
    pub dir: tempfile::TempDir,
    pub project: PathBuf,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // ssh's ControlPersist masters outlive ansible-playbook: ours, by PID.
        kill_all_in(self.control.name());
    }
}

pub fn kill_all_in(ns: &str) {
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

pub fn must(cmd: &mut Command) -> String {
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
pub fn fleet(
    name: &str,
    text: &str,
    network: &str,
    gateway: Option<Ipv4Addr>,
    backend: &str,
) -> Fleet {
    let dir = tempfile::Builder::new()
        .prefix("amwall-ansible-")
        .tempdir()
        .unwrap();
    let topo = dir.path().join(name);
    std::fs::write(&topo, text).unwrap();
    let d = amwall::load::load_str(name, text.to_string()).unwrap_or_else(|e| panic!("{e:?}"));
    let plan = Plan::build(d).expect("plans");
    let mut lab = super::amanda::lab(&plan);

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

pub struct Run {
    pub ok: bool,
    pub out: String,
    /// Per host of PLAY RECAP: (changed, failed, unreachable).
    pub recap: BTreeMap<String, (u32, u32, u32)>,
    pub took: Duration,
}

impl Fleet {
    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.dir.path().join("hosts").join(host)
    }

    pub fn playbook(&self, extra: &[&str]) -> Run {
        let vars = format!("@{}", self.dir.path().join("vars.json").display());
        let mut args = vec!["site.yml", "-e", &vars];
        args.extend(extra);
        self.ansible("ansible-playbook", &args)
    }

    /// `program` (ansible-playbook, ansible) in the project directory on the
    /// control node, with the fleet's key and SSH settings.
    pub fn ansible(&self, program: &str, args: &[&str]) -> Run {
        let t = Instant::now();
        let home = self.dir.path().join("home");
        let key = self.dir.path().join("id_ed25519");
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
            program.into(),
        ];
        argv.extend(args.iter().map(|s| s.to_string()));
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

    pub fn has_table(&self, host: &str) -> bool {
        self.lab
            .namespace(host)
            .unwrap()
            .exec(&["nft", "list", "table", "ip", "amwall"], None)
            .unwrap()
            .ok()
    }
}

/// The first result line after each run of `task` ("ok: [..]", "skipping: [..]").
pub fn task_results<'a>(out: &'a str, task: &str) -> Vec<&'a str> {
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

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/lab")
            .join(name),
    )
    .unwrap()
}

pub fn assert_run(f: &Fleet, r: &Run, what: &str) {
    if !r.ok {
        super::amanda::fail(&f.lab, &format!("{what}: ansible-playbook failed"), &r.out);
    }
    eprintln!("{what}: ok in {:.1?}; recap {:?}", r.took, r.recap);
}
