//! The seam between apply's decisions and the machine: everything apply asks
//! of the kernel (dry run, snapshot, load, restore), of the state directory
//! (durable writes, reads, the lock) and of the process table (starting the
//! watchdog, asking whether it lives). `Real` calls the tools as an admin
//! would; the tests' `fault::Faulty` keeps the same state in memory and fails
//! or "dies" on the call a test names, so every failure path is exercised
//! deterministically, without root.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::libc;

use super::ufw::UfwFile;
use super::{admin_verdict, failed, AdminConn, Backend};
use crate::diag::{Error, Result};
use crate::sim::Verdict;

/// What apply needs from the machine. Kernel methods mirror one tool call
/// each, so a fault can be aimed at exactly one step.
pub trait System {
    /// The kernel's own check of `rules` (`nft -c`, `iptables-restore --test`).
    fn dry_run(&self, kind: Backend, rules: &str) -> Result<()>;
    /// `ip6tables-restore --test`: the kernel's check of `HOST.rules6`.
    fn dry_run6(&self, rules: &str) -> Result<()>;
    /// `table FAMILY TABLE` (amwall's `ip` and `ip6` tables, or firewalld
    /// mode's source-port table) as loaded, or `None` when there is none.
    fn nft_table(&self, family: &str, table: &str) -> Result<Option<String>>;
    /// Load an nft script (one transaction).
    fn nft_load(&self, script: &str) -> Result<()>;
    /// Make `table FAMILY TABLE` what `saved` says (`None`: no table).
    fn nft_restore(&self, family: &str, table: &str, saved: Option<&str>) -> Result<()>;
    fn iptables_save(&self) -> Result<String>;
    fn ip6tables_save(&self) -> Result<String>;
    /// `ip6tables-restore`: replaces each IPv6 table the text names.
    fn ip6tables_restore(&self, text: &str) -> Result<()>;
    /// `nft list ruleset`: every table, whoever wrote it.
    fn nft_ruleset(&self) -> Result<String>;
    /// `iptables-restore`: replaces each table the text names.
    fn iptables_restore(&self, text: &str) -> Result<()>;
    /// `iptables-restore --noflush`: chains it declares are created or
    /// emptied, every other chain keeps its rules (merged mode).
    fn iptables_restore_noflush(&self, text: &str) -> Result<()>;
    /// The same for IPv6 (merged mode's `HOST.merged.rules6`).
    fn ip6tables_restore_noflush(&self, text: &str) -> Result<()>;
    fn ipset_save(&self) -> Result<String>;
    fn ipset_restore(&self, text: &str) -> Result<()>;
    fn ipset_destroy(&self, name: &str) -> Result<()>;
    /// firewalld's loadable files under `config` (services/, ipsets/,
    /// policies/) as `DIR/NAME.xml` → text.
    fn fw_files(&self, config: &Path) -> Result<BTreeMap<String, String>>;
    /// Write `path` whole (mode 0644), or remove it (`None`).
    fn fw_put(&self, path: &Path, text: Option<&str>) -> Result<()>;
    /// `firewall-offline-cmd --system-config CONFIG --check-config`; a
    /// warning is an error.
    fn fw_check(&self, config: &Path) -> Result<()>;
    /// `firewall-cmd ARGS` against the running firewalld; its stdout.
    fn firewall_cmd(&self, args: &[&str]) -> Result<String>;
    /// ufw's files apply changes ([`super::ufw::FILES`]) under `config`
    /// that exist, with their modes.
    fn ufw_files(&self, config: &Path) -> Result<BTreeMap<String, UfwFile>>;
    /// Write one of ufw's files whole with its mode, or remove it (`None`).
    fn ufw_put(&self, path: &Path, file: Option<&UfwFile>) -> Result<()>;
    /// `ufw ARGS` (in the C locale, whose messages apply reads); its stdout.
    fn ufw(&self, args: &[&str]) -> Result<String>;
    /// Run a before.init hook's text with `arg`, as ufw would run the file.
    fn ufw_hook(&self, hook: &str, arg: &str) -> Result<()>;
    /// The fate of a new connection like the admin's through the live ruleset.
    fn admin_verdict(&self, kind: Backend, conn: &AdminConn) -> Result<(Verdict, String)>;

    /// Write a state file so that a crash leaves the old file or the whole
    /// new one, and the data is on the disk when this returns.
    fn write(&self, name: &str, text: &str) -> Result<()>;
    fn read(&self, name: &str) -> Option<String>;
    fn remove(&self, name: &str);
    /// The state directory's lock: one invocation at a time decides.
    fn lock(&self) -> Result<Lock>;
    /// Where the state lives, for messages.
    fn place(&self) -> String;

    /// Start the watchdog for the pending record just written.
    fn spawn_watchdog(&self, id: &str) -> Result<()>;
    /// Whether a watchdog still guards this state directory.
    fn watchdog_alive(&self) -> bool;
    /// Arrange a guard for `deadline` that survives the watchdog; `Err` says
    /// why there is none.
    fn second_guard(&self, deadline: u64) -> std::result::Result<String, String>;

    /// Seconds since the epoch.
    fn now(&self) -> u64;
    fn sleep(&self, d: Duration);
    /// This boot's id: rules loaded in another boot are gone.
    fn boot_id(&self) -> Option<String>;
}

/// A held lock; dropping it (or dying) releases it.
pub struct Lock(#[allow(dead_code)] pub(crate) Option<File>);

/// The environment variable that hands the watchdog its liveness lock.
pub(crate) const LOCK_FD_ENV: &str = "AMWALL_WATCHDOG_LOCK_FD";
/// The environment variable that names the apply the watchdog guards.
pub(crate) const APPLY_ID_ENV: &str = "AMWALL_WATCHDOG_APPLY_ID";
/// Set to any value: no systemd timer as second guard.
pub const NO_TIMER_ENV: &str = "AMWALL_NO_SYSTEMD_TIMER";

/// The machine itself: the tools on PATH, the state directory on disk.
pub struct Real {
    pub dir: PathBuf,
    /// The program started as watchdog (`amwall apply --watchdog`).
    pub exe: Option<PathBuf>,
}

/// Run a tool, feeding `stdin`; its stdout, or an error with its stderr.
pub(crate) fn tool(argv: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", argv[0])))?;
    if let Some(text) = stdin {
        // A write error shows up as the tool's own failure below.
        let _ = child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(format!("{}: {e}", argv[0])))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failed(format!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        error: source,
    }
}

/// Open a lock file, creating it when the directory allows; an existing one
/// opens read-only on a read-only filesystem (flock needs no write access).
fn open_lock(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .or_else(|_| File::open(path))
        .map_err(io_err(path))
}

/// `flock(LOCK_NB)`, exclusive or shared: `Ok(false)` when another open file
/// holds a conflicting lock. flock, not a PID file, because the kernel drops
/// the lock with the last descriptor: a killed process can never look
/// alive, a reused PID never looks like ours.
fn try_flock(f: &File, exclusive: bool) -> std::io::Result<bool> {
    let how = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    // SAFETY: flock only reads the descriptor, which `f` keeps open.
    let rc = unsafe { libc::flock(f.as_raw_fd(), how | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Take `f` exclusively, retrying for `patience`: the liveness lock is also
/// taken, shared and for an instant, by every probe of [`System::watchdog_alive`].
fn flock_within(f: &File, path: &Path, patience: Duration) -> Result<bool> {
    let end = std::time::Instant::now() + patience;
    loop {
        if try_flock(f, true).map_err(io_err(path))? {
            return Ok(true);
        }
        if std::time::Instant::now() >= end {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long an invocation waits for another one to leave the state
/// directory; the lock is held for a load at most, never while waiting for
/// a confirmation.
const LOCK_WAIT: Duration = Duration::from_secs(30);

impl Real {
    pub fn new(dir: impl Into<PathBuf>, exe: Option<PathBuf>) -> Real {
        Real {
            dir: dir.into(),
            exe,
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn tool(&self, argv: &[&str], stdin: Option<&str>) -> Result<()> {
        tool(argv, stdin).map(|_| ())
    }
}

impl System for Real {
    fn dry_run(&self, kind: Backend, rules: &str) -> Result<()> {
        match kind {
            Backend::Nft => self.tool(&["nft", "-c", "-f", "-"], Some(rules)),
            Backend::Iptables => self.tool(&["iptables-restore", "--test"], Some(rules)),
        }
    }
    fn dry_run6(&self, rules: &str) -> Result<()> {
        self.tool(&["ip6tables-restore", "--test"], Some(rules))
    }
    fn nft_table(&self, family: &str, table: &str) -> Result<Option<String>> {
        // The dry run before has shown that nft runs: a failure here is a
        // missing table.
        Ok(tool(&["nft", "list", "table", family, table], None).ok())
    }
    fn nft_load(&self, script: &str) -> Result<()> {
        self.tool(&["nft", "-f", "-"], Some(script))
    }
    fn nft_restore(&self, family: &str, table: &str, saved: Option<&str>) -> Result<()> {
        // Replace-only: create (so the delete cannot fail), delete, then the
        // saved table — one transaction.
        let mut script = format!("table {family} {table}\ndelete table {family} {table}\n");
        script.push_str(saved.unwrap_or(""));
        self.tool(&["nft", "-f", "-"], Some(&script))
    }
    fn iptables_save(&self) -> Result<String> {
        tool(&["iptables-save"], None)
    }
    fn ip6tables_save(&self) -> Result<String> {
        tool(&["ip6tables-save"], None)
    }
    fn ip6tables_restore(&self, text: &str) -> Result<()> {
        self.tool(&["ip6tables-restore"], Some(text))
    }
    fn nft_ruleset(&self) -> Result<String> {
        tool(&["nft", "list", "ruleset"], None)
    }
    fn iptables_restore(&self, text: &str) -> Result<()> {
        self.tool(&["iptables-restore"], Some(text))
    }
    fn iptables_restore_noflush(&self, text: &str) -> Result<()> {
        self.tool(&["iptables-restore", "--noflush"], Some(text))
    }
    fn ip6tables_restore_noflush(&self, text: &str) -> Result<()> {
        self.tool(&["ip6tables-restore", "--noflush"], Some(text))
    }
    fn ipset_save(&self) -> Result<String> {
        tool(&["ipset", "save"], None)
    }
    fn ipset_restore(&self, text: &str) -> Result<()> {
        self.tool(&["ipset", "restore"], Some(text))
    }
    fn ipset_destroy(&self, name: &str) -> Result<()> {
        self.tool(&["ipset", "destroy", name], None)
    }
    fn fw_files(&self, config: &Path) -> Result<BTreeMap<String, String>> {
        super::firewalld::read_config(config)
    }
    fn fw_put(&self, path: &Path, text: Option<&str>) -> Result<()> {
        put_file(path, text, 0o644)
    }
    fn ufw_files(&self, config: &Path) -> Result<BTreeMap<String, UfwFile>> {
        super::ufw::read_config(config)
    }
    fn ufw_put(&self, path: &Path, file: Option<&UfwFile>) -> Result<()> {
        match file {
            Some(f) => put_file(path, Some(&f.text), f.mode),
            None => put_file(path, None, 0),
        }
    }
    fn ufw(&self, args: &[&str]) -> Result<String> {
        tool(&[&["env", "LC_ALL=C", "ufw"], args].concat(), None)
    }
    fn ufw_hook(&self, hook: &str, arg: &str) -> Result<()> {
        // The hook's text on stdin: its here-document is read from there too.
        self.tool(&["sh", "-s", arg], Some(hook))
    }
    fn fw_check(&self, config: &Path) -> Result<()> {
        let dir = config
            .to_str()
            .ok_or_else(|| failed("firewalld's directory is not UTF-8"))?;
        let out = Command::new("firewall-offline-cmd")
            .args(["--system-config", dir, "--check-config"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| failed(format!("cannot run firewall-offline-cmd: {e}")))?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && !said.to_lowercase().contains("warning") {
            Ok(())
        } else {
            Err(failed(format!(
                "firewalld refused the files (firewall-offline-cmd --check-config): {}",
                said.trim()
            )))
        }
    }
    fn firewall_cmd(&self, args: &[&str]) -> Result<String> {
        tool(&[&["firewall-cmd"], args].concat(), None)
    }
    fn admin_verdict(&self, kind: Backend, conn: &AdminConn) -> Result<(Verdict, String)> {
        admin_verdict(kind, conn)
    }

    fn write(&self, name: &str, text: &str) -> Result<()> {
        let path = self.path(name);
        let err = io_err(&path);
        let mut t = tempfile::NamedTempFile::new_in(&self.dir).map_err(&err)?;
        t.write_all(text.as_bytes()).map_err(&err)?;
        // fsync before the rename: after a crash the name holds the whole
        // new text or the old one, never a prefix; a full disk shows here,
        // not later when the page cache is written back.
        t.as_file().sync_all().map_err(&err)?;
        t.persist(&path).map_err(|e| err(e.error))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }
    fn read(&self, name: &str) -> Option<String> {
        let p = self.path(name);
        if !p.exists() {
            return None;
        }
        crate::input::read_text(&p).ok()
    }
    fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.path(name));
    }
    fn lock(&self) -> Result<Lock> {
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let path = self.path("lock");
        let f = open_lock(&path)?;
        if flock_within(&f, &path, LOCK_WAIT)? {
            return Ok(Lock(Some(f)));
        }
        Err(failed(format!(
            "another amwall apply has held {} for {} s; try again",
            path.display(),
            LOCK_WAIT.as_secs()
        )))
    }
    fn place(&self) -> String {
        self.dir.display().to_string()
    }

    fn spawn_watchdog(&self, id: &str) -> Result<()> {
        use std::os::unix::process::CommandExt;
        let exe = self
            .exe
            .as_ref()
            .ok_or_else(|| failed("no watchdog program given"))?;
        let path = self.path("watchdog.lock");
        let f = open_lock(&path)?;
        // Called with the state lock held and nothing pending, so a watchdog
        // still holding it is one that has seen its apply end and is leaving
        // (it looks every 100 ms).
        if !flock_within(&f, &path, Duration::from_secs(5))? {
            return Err(failed(format!(
                "a watchdog still holds {}: an earlier apply has not ended",
                path.display()
            )));
        }
        // The watchdog inherits this very lock (same open file), so there is
        // no moment between the spawn and the watchdog's start in which it
        // looks dead; our copy closes below, the child's lives as long as it.
        let fd = f.as_raw_fd();
        let mut cmd = Command::new(exe);
        cmd.arg("apply")
            .arg("--watchdog")
            .arg("--state-dir")
            .arg(&self.dir)
            .env(LOCK_FD_ENV, fd.to_string())
            .env(APPLY_ID_ENV, id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls
        // (setsid, fcntl), on the child's own copy of the descriptor table.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| failed(format!("cannot start {}: {e}", exe.display())))?;
        self.write("watchdog.pid", &format!("{}\n", child.id()))
    }
    fn watchdog_alive(&self) -> bool {
        let path = self.path("watchdog.lock");
        match open_lock(&path) {
            // Shared, so that two probes never take each other for a
            // watchdog; closing drops it again.
            Ok(f) => !try_flock(&f, false).unwrap_or(false),
            Err(_) => false,
        }
    }
    fn second_guard(&self, deadline: u64) -> std::result::Result<String, String> {
        if std::env::var_os(NO_TIMER_ENV).is_some() {
            return Err(format!("{NO_TIMER_ENV} is set"));
        }
        let comm = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
        let ino = |p: String| std::fs::metadata(p).map(|m| m.ino()).ok();
        let shared = ["net", "mnt"].map(|ns| {
            (
                ns,
                ino(format!("/proc/self/ns/{ns}")) == ino(format!("/proc/1/ns/{ns}")),
            )
        });
        if let Some(why) = no_timer(
            comm.trim(),
            Path::new("/run/systemd/system").is_dir(),
            &shared,
        ) {
            return Err(why);
        }
        let exe = self.exe.as_ref().ok_or("no program for the timer")?;
        let after = deadline.saturating_sub(self.now()) + 2;
        let unit = format!("amwall-guard-{}-{deadline}", std::process::id());
        let dir = self.dir.display().to_string();
        let exe = exe.display().to_string();
        let on = format!("--on-active={after}s");
        tool(
            &[
                "systemd-run",
                "--quiet",
                "--collect",
                "--unit",
                &unit,
                &on,
                "--timer-property=AccuracySec=1s",
                "--",
                &exe,
                "apply",
                "--watchdog",
                "--state-dir",
                &dir,
            ],
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok(format!(
            "systemd timer {unit}.timer rolls back at the deadline should the watchdog die"
        ))
    }

    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
    fn boot_id(&self) -> Option<String> {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
    }
}

/// Write `path` whole with `mode` (a reader sees the old file or the new
/// one, never a part), or remove it (`None`; absent already is fine).
fn put_file(path: &Path, text: Option<&str>, mode: u32) -> Result<()> {
    let err = io_err(path);
    let Some(text) = text else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
            _ => Ok(()),
        };
    };
    let dir = path
        .parent()
        .ok_or_else(|| failed(format!("{}: no directory", path.display())))?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut t = tempfile::NamedTempFile::new_in(dir).map_err(&err)?;
    t.write_all(text.as_bytes()).map_err(&err)?;
    t.as_file().sync_all().map_err(&err)?;
    std::fs::set_permissions(t.path(), std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(&err)?;
    t.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Why a systemd timer cannot be the second guard here, if it cannot: PID 1
/// must be systemd (`/run/systemd/system` is its own test of that), and we
/// must share its network and mount namespaces, because the timer's command
/// runs in them: from inside another network namespace it would restore the
/// wrong rules, from another mount namespace it might not see the state.
fn no_timer(pid1: &str, systemd_dir: bool, shared: &[(&str, bool)]) -> Option<String> {
    if pid1 != "systemd" || !systemd_dir {
        return Some(format!("PID 1 is `{pid1}`, not systemd"));
    }
    shared.iter().find(|(_, same)| !same).map(|(ns, _)| {
        format!("this runs in another {ns} namespace than systemd, where a timer would act")
    })
}

/// The watchdog's own hold on its liveness lock: the descriptor `apply`
/// handed down (checked to be that very file), else the lock taken afresh
/// (a watchdog started by the systemd timer). Refuses when another watchdog
/// holds it.
pub(crate) fn hold_watchdog_lock(dir: &Path) -> Result<OwnedFd> {
    let path = dir.join("watchdog.lock");
    let inherited = std::env::var(LOCK_FD_ENV).ok().and_then(|v| v.parse().ok());
    std::env::remove_var(LOCK_FD_ENV);
    if let Some(fd) = inherited {
        let want = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        let got = std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if want.is_some() && want == got {
            // SAFETY: the descriptor was inherited for exactly this purpose
            // and nothing else in this process refers to it.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            // Our own children (nft, iptables-restore) must not keep it.
            // SAFETY: plain fcntl on a descriptor we own.
            unsafe {
                libc::fcntl(owned.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
            }
            return Ok(owned);
        }
    }
    let f = open_lock(&path)?;
    // A live watchdog holds it for good; a probe only for an instant.
    if !flock_within(&f, &path, Duration::from_secs(1))? {
        return Err(failed(format!(
            "another watchdog already guards {}",
            dir.display()
        )));
    }
    Ok(OwnedFd::from(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_only_with_systemd_as_init_and_in_its_namespaces() {
        let both = [("net", true), ("mnt", true)];
        assert_eq!(no_timer("systemd", true, &both), None);
        assert_eq!(
            no_timer("process_api", false, &both).unwrap(),
            "PID 1 is `process_api`, not systemd"
        );
        assert!(no_timer("systemd", false, &both).is_some());
        let in_netns = [("net", false), ("mnt", true)];
        assert!(no_timer("systemd", true, &in_netns)
            .unwrap()
            .contains("another net namespace"));
    }

    #[test]
    fn liveness_is_a_lock_that_dies_with_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let r = Real::new(dir.path(), None);
        assert!(!r.watchdog_alive(), "no lock file: nobody");
        let f = open_lock(&dir.path().join("watchdog.lock")).unwrap();
        assert!(try_flock(&f, true).unwrap());
        assert!(r.watchdog_alive());
        assert!(r.watchdog_alive(), "a probe does not take it for itself");
        drop(f);
        assert!(!r.watchdog_alive());
    }

    #[test]
    fn durable_writes_replace_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let r = Real::new(dir.path(), None);
        r.write("pending.json", "old").unwrap();
        r.write("pending.json", "new text").unwrap();
        assert_eq!(r.read("pending.json").unwrap(), "new text");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }
}
