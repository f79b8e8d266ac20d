//! `amwall apply`: load one host's planned rules into the running kernel in
//! one transaction, keep what was loaded before, and put it back unless the
//! admin confirms in time — from a *new* connection, because an established
//! SSH session survives almost any ruleset (ESTABLISHED is accepted first)
//! and so proves nothing about the next login.
//!
//! The rollback is owned by a watchdog process in its own session, so it still
//! runs when the admin's SSH session (and with it the `amwall apply` that
//! started it) dies. Admin and watchdog talk through files in the state
//! directory only: no signals, so nothing but our own watchdog is ever touched.
//!
//! What is replaced, and so what a rollback restores:
//! - nft: only `table ip amwall` (the rest of the ruleset is not ours);
//! - iptables: the tables the rules file names (iptables-restore replaces
//!   whole tables), plus the `amw_*` ipsets it fills.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::check::{HostRules, RulesFile};
use crate::diag::{Error, Result};
use crate::sim::{self, Verdict};

/// Where pending applies live unless `--state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/amwall/apply";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Iptables,
    Nft,
}

/// What one host gets: the rules text as `plan` writes it.
#[derive(Debug, Clone)]
pub struct Payload {
    pub kind: Kind,
    pub host: String,
    pub rules: String,
    /// `HOST.ipset` (iptables with large address groups).
    pub ipset: Option<String>,
}

/// The state directory's record of an apply waiting for confirmation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub kind: Kind,
    pub host: String,
    /// Seconds since the epoch after which the watchdog rolls back.
    pub deadline: u64,
    /// Tables `rules` replaces (iptables).
    pub tables: Vec<String>,
    /// `amw_*` sets the ipset file fills, and whether each existed before.
    pub sets: Vec<(String, bool)>,
    /// Whether `table ip amwall` existed before (nft).
    pub had_table: bool,
}

/// How a pending apply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Confirmed,
    RolledBack,
    /// The rollback itself failed: the message is in `result.log`.
    RollbackFailed,
}

/// The files of one state directory.
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn io(&self, name: &str) -> impl Fn(std::io::Error) -> Error + '_ {
        let p = self.path(name);
        move |source| Error::Io {
            path: p.clone(),
            source,
        }
    }
    /// Write atomically: a reader sees the old file or the whole new one.
    fn write(&self, name: &str, text: &str) -> Result<()> {
        let mut t = tempfile::NamedTempFile::new_in(&self.dir).map_err(self.io(name))?;
        t.write_all(text.as_bytes()).map_err(self.io(name))?;
        t.persist(self.path(name))
            .map_err(|e| self.io(name)(e.error))?;
        Ok(())
    }
    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path(name)).ok()
    }
    fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }
    fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.path(name));
    }
    pub fn pending(&self) -> Option<Pending> {
        serde_json::from_str(&self.read("pending.json")?).ok()
    }
    pub fn outcome(&self) -> Option<Outcome> {
        serde_json::from_str(self.read("result.json")?.trim()).ok()
    }
    /// The watchdog's log of the last rollback (what ran, what the tools said).
    pub fn log(&self) -> String {
        self.read("result.log").unwrap_or_default()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn failed(what: impl Into<String>) -> Error {
    Error::Usage(what.into())
}

/// Run a tool, feeding `stdin`; its stdout, or an error with its stderr.
fn tool(argv: &[&str], stdin: Option<&str>) -> Result<String> {
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

/// The tables an iptables-restore file names, in order.
fn tables_of(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.strip_prefix('*'))
        .map(|t| t.trim().to_string())
        .collect()
}

/// The sets an ipset file of `plan` fills: each is filled under a temporary
/// name and swapped in (`swap TMP NAME`), so the swaps name them all.
fn sets_of(ipset: &str) -> Vec<String> {
    let mut v: Vec<String> = ipset
        .lines()
        .filter_map(|l| l.strip_prefix("swap "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

fn builtin_chains(table: &str) -> &'static [&'static str] {
    match table {
        "filter" => &["INPUT", "FORWARD", "OUTPUT"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "raw" => &["PREROUTING", "OUTPUT"],
        "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "security" => &["INPUT", "FORWARD", "OUTPUT"],
        _ => &[],
    }
}

/// The restore text that puts the iptables tables `ours` back as `saved`
/// had them: tables `saved` lacks were empty and accepting (that is what
/// the kernel has before anything is loaded).
fn iptables_rollback(saved: &str, ours: &[String]) -> String {
    let present = tables_of(saved);
    let mut out = String::new();
    let mut keep = false;
    for l in saved.lines() {
        if let Some(t) = l.strip_prefix('*') {
            keep = ours.iter().any(|o| o == t.trim());
        }
        if keep {
            out.push_str(l);
            out.push('\n');
        }
        if l.trim() == "COMMIT" {
            keep = false;
        }
    }
    for t in ours.iter().filter(|t| !present.contains(t)) {
        out.push_str(&format!("*{t}\n"));
        for c in builtin_chains(t) {
            out.push_str(&format!(":{c} ACCEPT [0:0]\n"));
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// `ipset restore` text that gives the sets that existed before their old
/// members back (the sets we created are destroyed separately).
fn ipset_rollback(saved: &str, sets: &[(String, bool)]) -> String {
    let mut out = String::new();
    for (name, _) in sets.iter().filter(|(_, existed)| *existed) {
        out.push_str(&format!("flush {name}\n"));
        for l in saved.lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() >= 3 && w[0] == "add" && w[1] == name {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// The admin's own connection, from `SSH_CONNECTION` ("client port server port").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConn {
    pub client: std::net::IpAddr,
    pub server: std::net::IpAddr,
    pub port: u16,
}

impl AdminConn {
    pub fn from_env_value(v: &str) -> Option<AdminConn> {
        let w: Vec<&str> = v.split_whitespace().collect();
        if w.len() != 4 {
            return None;
        }
        Some(AdminConn {
            client: w[0].parse().ok()?,
            server: w[2].parse().ok()?,
            port: w[3].parse().ok()?,
        })
    }
}

/// The interface a packet from `client` arrives on: where the kernel would
/// send our answer.
fn iface_towards(client: std::net::IpAddr) -> Option<String> {
    let out = tool(&["ip", "-o", "route", "get", &client.to_string()], None).ok()?;
    let w: Vec<&str> = out.split_whitespace().collect();
    let i = w.iter().position(|x| *x == "dev")?;
    let dev = w.get(i + 1)?;
    // A connection from one of our own addresses arrives on lo.
    Some(if out.starts_with("local ") {
        "lo".into()
    } else {
        dev.to_string()
    })
}

/// What the simulator says of a new connection like the admin's, through
/// the live ruleset of `kind` (ours and whatever else is loaded), and the
/// packet it tried.
pub fn admin_verdict(kind: Kind, conn: &AdminConn) -> Result<(Verdict, String)> {
    let (text, what) = match kind {
        Kind::Nft => (tool(&["nft", "list", "ruleset"], None)?, "nft list ruleset"),
        Kind::Iptables => (
            if conn.client.is_ipv6() {
                tool(&["ip6tables-save"], None)?
            } else {
                tool(&["iptables-save"], None)?
            },
            "iptables-save",
        ),
    };
    let f = RulesFile::parse(&format!("(live {what})"), text).map_err(Error::Input)?;
    let sets = if kind == Kind::Iptables {
        tool(&["ipset", "save"], None)
            .ok()
            .and_then(|t| crate::netfilter::ipset::parse("(live ipset save)", &t).ok())
    } else {
        None
    };
    let hr = HostRules::new(vec![f], sets);
    let iface = iface_towards(conn.client).unwrap_or_else(|| "eth0".into());
    let fmt = |a: std::net::IpAddr| match a {
        std::net::IpAddr::V6(v) => format!("[{v}]"),
        v4 => v4.to_string(),
    };
    let pkt = format!(
        "tcp {}:40000 -> {}:{} in {iface} state new",
        fmt(conn.client),
        fmt(conn.server),
        conn.port
    );
    let p = sim::packet::parse(&pkt).map_err(|e| failed(format!("packet `{pkt}`: {e}")))?;
    let ex = sim::explain(&hr.ruleset, hr.ipsets.as_ref(), &p);
    Ok((ex.verdict, pkt))
}

/// Options of one apply.
pub struct Options {
    pub timeout: Duration,
    /// The admin's connection; a new one like it must still pass.
    pub admin: Option<AdminConn>,
    /// Load even when the admin's next login would be refused.
    pub force: bool,
    /// The program to start as watchdog (`amwall apply --watchdog DIR`).
    pub watchdog_exe: PathBuf,
}

/// What `apply` did, for the CLI to say.
#[derive(Debug)]
pub struct Applied {
    pub pending: Pending,
    pub notes: Vec<String>,
}

/// Check, snapshot, load, start the watchdog. On any error before the load
/// nothing has changed; an error after it (the admin would be locked out,
/// the watchdog cannot start) rolls back at once.
pub fn apply(state: &StateDir, p: &Payload, o: &Options) -> Result<Applied> {
    std::fs::create_dir_all(&state.dir).map_err(state.io(""))?;
    let mut notes = Vec::new();
    if let Some(pend) = state.pending() {
        // A watchdog that never answered long after its deadline did not
        // survive (a reboot, which also emptied the kernel's rules).
        if !state.exists("result.json") && now() > pend.deadline + 30 {
            notes.push(format!(
                "an earlier apply of {}'s rules was never confirmed nor rolled back \
                 (its watchdog is gone); starting over",
                pend.host
            ));
        } else if !state.exists("result.json") {
            return Err(failed(format!(
                "an apply of {}'s rules is still waiting for confirmation in {}: \
                 `amwall apply --confirm` or `amwall apply --rollback` first",
                pend.host,
                state.dir.display()
            )));
        }
    }
    for f in [
        "pending.json",
        "confirmed",
        "rollback-now",
        "result.json",
        "result.log",
    ] {
        state.remove(f);
    }
    // 1. The kernel's own dry run: a file it refuses changes nothing. (An
    //    iptables file that names ipsets can only be tried once they exist:
    //    see step 3.)
    if p.kind == Kind::Nft || p.ipset.is_none() {
        dry_run(p)?;
    }
    // 2. Snapshot what the load replaces.
    let mut pend = Pending {
        kind: p.kind,
        host: p.host.clone(),
        deadline: 0,
        tables: vec![],
        sets: vec![],
        had_table: false,
    };
    match p.kind {
        Kind::Nft => {
            let saved = tool(&["nft", "list", "table", "ip", "amwall"], None).ok();
            pend.had_table = saved.is_some();
            state.write("previous.nft", saved.as_deref().unwrap_or(""))?;
        }
        Kind::Iptables => {
            pend.tables = tables_of(&p.rules);
            state.write("previous.rules", &tool(&["iptables-save"], None)?)?;
            if let Some(sets) = &p.ipset {
                let existing = tool(&["ipset", "list", "-n"], None)?;
                let existing: Vec<&str> = existing.lines().map(str::trim).collect();
                pend.sets = sets_of(sets)
                    .into_iter()
                    .map(|s| {
                        let e = existing.contains(&s.as_str());
                        (s, e)
                    })
                    .collect();
                state.write("previous.ipset", &tool(&["ipset", "save"], None)?)?;
            }
        }
    }
    pend.deadline = now() + o.timeout.as_secs().max(1);
    state.write(
        "pending.json",
        &serde_json::to_string_pretty(&pend).expect("plain data"),
    )?;
    // 3. Load: nft -f is one transaction; ipsets first (the rules name them),
    //    then iptables-restore.
    let loaded = match p.kind {
        Kind::Nft => tool(&["nft", "-f", "-"], Some(&p.rules)).map(|_| ()),
        Kind::Iptables => (|| {
            if let Some(sets) = &p.ipset {
                tool(&["ipset", "restore"], Some(sets))?;
                dry_run(p)?;
            }
            tool(&["iptables-restore"], Some(&p.rules)).map(|_| ())
        })(),
    };
    if let Err(e) = loaded {
        let rb = rollback(state, &pend);
        state.remove("pending.json");
        return Err(failed(format!(
            "loading failed, the previous rules are back{}: {e}",
            match rb {
                Ok(()) => String::new(),
                Err(r) => format!(" (except: {r})"),
            }
        )));
    }
    // 4. Would the admin's next login still pass? Judge the live ruleset
    //    (ours and everything else loaded), as the kernel now has it.
    if let Some(conn) = &o.admin {
        match admin_verdict(p.kind, conn) {
            Ok((Verdict::Accept, _)) => {}
            Ok((v, pkt)) if o.force => notes.push(format!(
                "a new connection like yours ({pkt}) is {v:?} by the loaded rules; \
                 loaded anyway (--force)"
            )),
            Ok((Verdict::Unknown, pkt)) => notes.push(format!(
                "cannot tell whether a new connection like yours ({pkt}) passes: \
                 the ruleset has matches amwall does not decide; confirm only from a new login"
            )),
            Ok((v, pkt)) => {
                let rb = rollback(state, &pend);
                state.remove("pending.json");
                return Err(failed(format!(
                    "refused: a new connection like yours ({pkt}) would be {} by these rules \
                     (check `[management] from` in the topology, or `amwall explain`); \
                     the previous rules are back{}",
                    match v {
                        Verdict::Mixed => "partly dropped",
                        _ => "dropped",
                    },
                    match rb {
                        Ok(()) => String::new(),
                        Err(r) => format!(" (except: {r})"),
                    }
                )));
            }
            Err(e) => notes.push(format!("could not judge your connection's fate: {e}")),
        }
    }
    // 5. The watchdog, in its own session so it outlives this one.
    if let Err(e) = spawn_watchdog(&o.watchdog_exe, &state.dir) {
        let _ = rollback(state, &pend);
        state.remove("pending.json");
        return Err(failed(format!(
            "could not start the watchdog, rolled back: {e}"
        )));
    }
    Ok(Applied {
        pending: pend,
        notes,
    })
}

fn dry_run(p: &Payload) -> Result<()> {
    match p.kind {
        Kind::Nft => tool(&["nft", "-c", "-f", "-"], Some(&p.rules)),
        Kind::Iptables => tool(&["iptables-restore", "--test"], Some(&p.rules)),
    }
    .map(|_| ())
}

fn spawn_watchdog(exe: &Path, dir: &Path) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(exe);
    cmd.arg("apply")
        .arg("--watchdog")
        .arg("--state-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid() is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            nix::libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().map(|_| ())
}

/// Put back what `pend` replaced.
pub fn rollback(state: &StateDir, pend: &Pending) -> Result<()> {
    match pend.kind {
        Kind::Nft => {
            // Replace-only: create (so the delete cannot fail), delete, then
            // the saved table — one transaction.
            let mut script = String::from("table ip amwall\ndelete table ip amwall\n");
            if pend.had_table {
                script.push_str(&state.read("previous.nft").unwrap_or_default());
            }
            tool(&["nft", "-f", "-"], Some(&script))?;
        }
        Kind::Iptables => {
            let saved = state.read("previous.rules").unwrap_or_default();
            tool(
                &["iptables-restore"],
                Some(&iptables_rollback(&saved, &pend.tables)),
            )?;
            if !pend.sets.is_empty() {
                let saved = state.read("previous.ipset").unwrap_or_default();
                let text = ipset_rollback(&saved, &pend.sets);
                if !text.is_empty() {
                    tool(&["ipset", "restore"], Some(&text))?;
                }
                for (name, _) in pend.sets.iter().filter(|(_, e)| !*e) {
                    tool(&["ipset", "destroy", name], None)?;
                }
            }
        }
    }
    Ok(())
}

/// The watchdog: wait for a confirmation or a rollback request until the
/// deadline; roll back unless confirmed. Records the outcome.
pub fn watchdog(state: &StateDir) -> Result<Outcome> {
    let pend = state
        .pending()
        .ok_or_else(|| failed(format!("no pending apply in {}", state.dir.display())))?;
    loop {
        if state.exists("confirmed") {
            state.write("result.json", "\"confirmed\"\n")?;
            state.remove("pending.json");
            return Ok(Outcome::Confirmed);
        }
        if state.exists("rollback-now") || now() >= pend.deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let outcome = match rollback(state, &pend) {
        Ok(()) => {
            state.write("result.log", "rolled back\n")?;
            Outcome::RolledBack
        }
        Err(e) => {
            state.write("result.log", &format!("rollback failed: {e}\n"))?;
            Outcome::RollbackFailed
        }
    };
    state.write(
        "result.json",
        &format!("{}\n", serde_json::to_string(&outcome).expect("plain")),
    )?;
    state.remove("pending.json");
    Ok(outcome)
}

/// Ask the watchdog to keep the rules (`confirm`) or to roll back now.
pub fn request(state: &StateDir, confirm: bool) -> Result<()> {
    if state.pending().is_none() || state.exists("result.json") {
        return Err(failed(format!(
            "no apply is waiting for confirmation in {}{}",
            state.dir.display(),
            match state.outcome() {
                Some(Outcome::RolledBack) => " (the last one was rolled back)",
                Some(Outcome::Confirmed) => " (the last one was confirmed)",
                Some(Outcome::RollbackFailed) => " (the last rollback failed: see result.log)",
                None => "",
            }
        )));
    }
    state.write(if confirm { "confirmed" } else { "rollback-now" }, "")?;
    Ok(())
}

/// Wait up to `limit` for the watchdog's outcome.
pub fn wait_outcome(state: &StateDir, limit: Duration) -> Option<Outcome> {
    let end = std::time::Instant::now() + limit;
    loop {
        if let Some(o) = state.outcome() {
            return Some(o);
        }
        if std::time::Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_only_our_tables_and_empties_new_ones() {
        let saved = "# Generated\n*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n";
        let t = iptables_rollback(saved, &["raw".into(), "filter".into()]);
        assert_eq!(
            t,
            "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n\
             *raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
        );
    }

    #[test]
    fn ipset_rollback_refills_only_sets_that_existed() {
        let saved = "create amw_a hash:ip family inet\nadd amw_a 192.0.2.1\nadd amw_b 192.0.2.2\nadd amw_ab 192.0.2.3\n";
        let t = ipset_rollback(saved, &[("amw_a".into(), true), ("amw_b".into(), false)]);
        assert_eq!(t, "flush amw_a\nadd amw_a 192.0.2.1\n");
    }

    #[test]
    fn ssh_connection_parses() {
        let c = AdminConn::from_env_value("192.0.2.9 51234 192.0.2.2 22").unwrap();
        assert_eq!(c.port, 22);
        assert_eq!(c.client.to_string(), "192.0.2.9");
        assert!(AdminConn::from_env_value("garbage").is_none());
    }

    #[test]
    fn sets_and_tables_are_found() {
        assert_eq!(
            sets_of("create amw_x hash:ip -exist\ncreate amw_x~ hash:ip -exist\nadd amw_x~ 192.0.2.1\nswap amw_x~ amw_x\ndestroy amw_x~\n"),
            vec!["amw_x".to_string()]
        );
        assert_eq!(
            tables_of("*raw\nCOMMIT\n*filter\nCOMMIT\n"),
            vec!["raw", "filter"]
        );
    }
}
