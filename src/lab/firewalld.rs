//! A real firewalld inside one namespace, as firewalld's own test suite runs
//! it: a private D-Bus system bus on an abstract socket (abstract sockets
//! belong to the network namespace, so nothing outside can reach it and it
//! cannot reach the machine's bus), and `firewalld --nofork --nopid
//! --system-config DIR`, so the configuration it reads and writes is a
//! directory of ours, never /etc/firewalld. Both processes are our children,
//! stopped by PID when the guard drops.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::{Netns, Output};

/// The bus policy: root may own firewalld's names, everyone may talk to it.
const DBUS_CONF: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <auth>EXTERNAL</auth>
  <listen>unix:path=/nonexistent</listen>
  <policy context="default">
    <allow user="*"/>
    <allow own="org.fedoraproject.FirewallD1"/>
    <allow own="org.fedoraproject.FirewallD1.config"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#;

pub struct Firewalld {
    ns: String,
    bus: String,
    config: PathBuf,
    dbus: Child,
    daemon: Child,
}

fn spawn(ns: &str, env: &[(&str, &str)], argv: &[&str], log: &Path) -> io::Result<Child> {
    let log = std::fs::File::create(log)?;
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

impl Firewalld {
    /// Start firewalld in `ns` on the configuration in `config` (which must
    /// hold a `firewalld.conf`; `Firewalld::default_config` writes one).
    /// Waits until `firewall-cmd --state` answers, up to 30 s.
    pub fn start(ns: &Netns, config: &Path) -> io::Result<Firewalld> {
        let bus = format!("unix:abstract=amwall-{}", ns.name());
        let conf = config.join("dbus.conf");
        std::fs::write(&conf, DBUS_CONF)?;
        let conf = conf.to_str().ok_or_else(|| io::Error::other("path"))?;
        let dbus = spawn(
            ns.name(),
            &[],
            &[
                "dbus-daemon",
                "--nofork",
                &format!("--address={bus}"),
                &format!("--config-file={conf}"),
            ],
            &config.join("dbus.log"),
        )?;
        let dir = config.to_str().ok_or_else(|| io::Error::other("path"))?;
        let log = config.join("firewalld.log");
        let daemon = spawn(
            ns.name(),
            &[("DBUS_SYSTEM_BUS_ADDRESS", &bus)],
            &[
                "firewalld",
                "--nofork",
                "--nopid",
                "--log-target",
                "file",
                "--log-file",
                log.to_str().ok_or_else(|| io::Error::other("path"))?,
                "--system-config",
                dir,
            ],
            &config.join("firewalld.out"),
        )?;
        let mut f = Firewalld {
            ns: ns.name().to_string(),
            bus,
            config: config.to_path_buf(),
            dbus,
            daemon,
        };
        let start = Instant::now();
        loop {
            if f.cmd(&["--state"])?.ok() {
                return Ok(f);
            }
            if let Some(st) = f.daemon.try_wait()? {
                return Err(io::Error::other(format!(
                    "firewalld exited ({st}) before it answered: {}",
                    f.log()
                )));
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(io::Error::other(format!(
                    "firewalld did not answer in 30 s: {}",
                    f.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A firewalld.conf for `config`: Debian's, with CleanupOnExit off (the
    /// namespace goes away anyway, and a stop must not flush what a test
    /// inspects).
    pub fn default_config(config: &Path) -> io::Result<()> {
        let conf = std::fs::read_to_string("/etc/firewalld/firewalld.conf")?;
        let conf: String = conf
            .lines()
            .map(|l| {
                if l.starts_with("CleanupOnExit=") {
                    "CleanupOnExit=no\n".to_string()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(config.join("firewalld.conf"), conf)
    }

    /// The configuration directory firewalld reads.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The D-Bus address, for other commands that talk to this firewalld.
    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// `firewall-cmd ARGS` against this firewalld.
    pub fn cmd(&self, args: &[&str]) -> io::Result<Output> {
        self.run(&[&["firewall-cmd"], args].concat())
    }

    /// Any command in the namespace, with this firewalld's bus.
    pub fn run(&self, argv: &[&str]) -> io::Result<Output> {
        let env = format!("DBUS_SYSTEM_BUS_ADDRESS={}", self.bus);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "env", &env])
            .args(argv);
        let out = cmd.stdin(Stdio::null()).output()?;
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Write plan's `--firewalld` files for one host (`Plan::firewalld`) into
    /// `dir` and run their install script against this firewalld, as an admin
    /// would: `FIREWALLD_CONFIG` names this instance's configuration.
    pub fn install(&self, files: &[(String, String)], dir: &Path) -> io::Result<Output> {
        let mut script = None;
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text)?;
            if name.ends_with(".firewalld.sh") {
                script = Some(path);
            }
        }
        let script = script.ok_or_else(|| io::Error::other("no .firewalld.sh among the files"))?;
        let conf = format!("FIREWALLD_CONFIG={}", self.config.display());
        let script = script.to_str().ok_or_else(|| io::Error::other("path"))?;
        self.run(&["env", &conf, "sh", script])
    }

    /// What firewalld logged, for failure messages.
    pub fn log(&self) -> String {
        let mut s = std::fs::read_to_string(self.config.join("firewalld.log")).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(self.config.join("firewalld.out")).unwrap_or_default());
        s
    }

    /// ERROR and WARNING lines of firewalld's log (firewalld's own tests
    /// fail on them).
    pub fn complaints(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARNING"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Firewalld {
    fn drop(&mut self) {
        for c in [&mut self.daemon, &mut self.dbus] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
