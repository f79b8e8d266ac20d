//! A fault-injecting double of [`System`]: the kernel (nft's `table ip
//! amwall`, iptables tables, ipsets), the state directory (with a size, so
//! it can fill) and the watchdog (alive or not) kept in memory, with the
//! tools' semantics that matter to a rollback. A test names a call — the Nth
//! of a kind — and the double fails it, or "dies" there (a panic with the
//! payload [`Died`]: no cleanup code of apply runs, as when the OOM killer
//! strikes), or kills the watchdog there. The test then checks the
//! recorded kernel state, as `tests/apply.rs` does with the real tools.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::system::{Lock, System};
use super::*;
use crate::netfilter::Jump;

/// The kinds of call a fault can be aimed at.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub(crate) enum Op {
    DryRun,
    /// Reading the kernel's state (snapshots).
    Save,
    /// Changing the kernel's state (loads and restores alike).
    Load,
    /// Writing a state file.
    Write,
    Spawn,
    /// Writing or removing a file of firewalld's configuration.
    Config,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fault {
    Fail,
    DieBefore,
    DieAfter,
    /// The watchdog is killed just before this call.
    KillWatchdog,
}

/// Panic payload: the process died here.
pub(crate) struct Died;

/// What the kernel holds.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Kernel {
    pub nft: Option<String>,
    /// `table ip6 amwall`.
    pub nft6: Option<String>,
    /// iptables table → its block (`*t` … `COMMIT`).
    pub tables: BTreeMap<String, String>,
    /// The same for ip6tables.
    pub tables6: BTreeMap<String, String>,
    pub sets: BTreeMap<String, Vec<String>>,
    /// firewalld mode's `table ip amwall_sport`.
    pub sport: Option<String>,
    /// And its `table ip6 amwall_sport`.
    pub sport6: Option<String>,
    /// A running firewalld, when there is one.
    pub fw: Option<Fw>,
    /// ufw, when it manages the host.
    pub ufw: Option<UfwSim>,
}

/// ufw as apply sees it: its files in /etc/ufw and what its chains hold.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct UfwSim {
    pub active: bool,
    pub disk: BTreeMap<String, super::ufw::UfwFile>,
    /// The rules in ufw's chains: user.rules as last loaded, plus what a
    /// command added live.
    pub running: String,
    /// The hook whose `start` loaded amwall's nat and raw chains, while
    /// they are loaded.
    pub chains: Option<String>,
}

/// firewalld as apply sees it: its configuration directory (/etc/firewalld
/// here) and the runtime its last reload made of it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Fw {
    /// `DIR/NAME.xml` → text.
    pub permanent: BTreeMap<String, String>,
    /// What the runtime was loaded from.
    pub runtime: BTreeMap<String, String>,
    /// Changes made in the runtime only (a fail2ban ban); a reload drops them.
    pub runtime_only: Vec<String>,
}

/// The double's firewalld configuration directory.
pub(crate) const FW_CONFIG: &str = "/etc/firewalld";

impl Kernel {
    /// What packets meet: firewalld's permanent files left out.
    pub fn live(&self) -> Kernel {
        let mut k = self.clone();
        if let Some(fw) = k.fw.as_mut() {
            fw.permanent.clear();
        }
        if let Some(u) = k.ufw.as_mut() {
            u.disk.clear();
        }
        k
    }
}

#[derive(Default)]
struct World {
    kernel: Kernel,
    files: BTreeMap<String, String>,
    /// Bytes the state directory can hold (`None`: unlimited).
    capacity: Option<usize>,
    watchdog: bool,
    spawned: usize,
    clock_ms: u64,
    boot: String,
    verdict: Option<Verdict>,
    counts: BTreeMap<Op, usize>,
    faults: Vec<(Op, usize, Fault)>,
    calls: Vec<(Op, usize)>,
}

pub(crate) struct Faulty {
    w: RefCell<World>,
}

fn err(what: String) -> Error {
    failed(what)
}

impl Faulty {
    pub fn new(kernel: Kernel) -> Faulty {
        Faulty {
            w: RefCell::new(World {
                kernel,
                clock_ms: 1_000_000_000_000,
                boot: "boot-1".into(),
                ..World::default()
            }),
        }
    }
    pub fn inject(&self, op: Op, nth: usize, f: Fault) -> &Faulty {
        self.w.borrow_mut().faults.push((op, nth, f));
        self
    }
    pub fn kernel(&self) -> Kernel {
        self.w.borrow().kernel.clone()
    }
    pub fn kill_watchdog(&self) {
        self.w.borrow_mut().watchdog = false;
    }
    pub fn advance(&self, secs: u64) {
        self.w.borrow_mut().clock_ms += secs * 1000;
    }
    pub fn count(&self, op: Op) -> usize {
        self.w.borrow().counts.get(&op).copied().unwrap_or(0)
    }
    pub fn calls(&self) -> Vec<(Op, usize)> {
        self.w.borrow().calls.clone()
    }
    pub fn spawned(&self) -> usize {
        self.w.borrow().spawned
    }
    /// The disk is full from now on.
    pub fn fill_disk(&self) {
        let mut w = self.w.borrow_mut();
        w.capacity = Some(w.files.values().map(String::len).sum());
    }
    pub fn set_capacity(&self, bytes: usize) {
        self.w.borrow_mut().capacity = Some(bytes);
    }
    pub fn reboot(&self) {
        let mut w = self.w.borrow_mut();
        w.boot = "boot-2".into();
        w.kernel = Kernel::default();
        w.watchdog = false;
    }
    pub fn set_verdict(&self, v: Verdict) {
        self.w.borrow_mut().verdict = Some(v);
    }

    /// Count the call, apply the fault aimed at it, else run `f`.
    fn step<T>(&self, op: Op, what: &str, f: impl FnOnce(&mut World) -> Result<T>) -> Result<T> {
        let fault = {
            let mut w = self.w.borrow_mut();
            let n = {
                let c = w.counts.entry(op).or_insert(0);
                *c += 1;
                *c
            };
            w.calls.push((op, n));
            w.faults
                .iter()
                .find(|(o, k, _)| *o == op && *k == n)
                .map(|(_, k, f)| (*k, *f))
        };
        match fault {
            Some((_, Fault::DieBefore)) => std::panic::panic_any(Died),
            Some((n, Fault::Fail)) => {
                return Err(err(format!("injected failure of {what} (call {n})")))
            }
            Some((_, Fault::KillWatchdog)) => self.kill_watchdog(),
            _ => {}
        }
        let r = f(&mut self.w.borrow_mut());
        if matches!(fault, Some((_, Fault::DieAfter))) {
            std::panic::panic_any(Died);
        }
        r
    }
}

fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for l in text.lines() {
        if let Some(t) = l.strip_prefix('*') {
            cur = Some((t.trim().to_string(), String::new()));
        }
        if let Some((_, b)) = cur.as_mut() {
            b.push_str(l);
            b.push('\n');
        }
        if l.trim() == "COMMIT" {
            out.extend(cur.take());
        }
    }
    out
}

/// A table block as chains (name, policy) and rules (`-A` lines), in order.
fn parse_block(block: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut chains = Vec::new();
    let mut rules = Vec::new();
    for l in block.lines() {
        if let Some(c) = l.strip_prefix(':') {
            let mut w = c.split_whitespace();
            chains.push((
                w.next().unwrap_or("").to_string(),
                w.next().unwrap_or("-").to_string(),
            ));
        } else if l.starts_with("-A ") {
            rules.push(l.to_string());
        }
    }
    (chains, rules)
}

fn chain_of(rule: &str) -> &str {
    rule.split_whitespace().nth(1).unwrap_or("")
}

/// One table's part of an `iptables-restore --noflush` text, applied as the
/// tool does: `:CHAIN` creates a chain or empties one that exists, `-A`
/// appends, `-I C 1` inserts at the top, `-D` deletes the first equal rule
/// (and fails when there is none), `-F` empties, `-X` deletes an unused chain.
fn noflush(table: &str, old: Option<&str>, cmds: &str) -> Result<String> {
    let (mut chains, mut rules) = old.map(parse_block).unwrap_or_default();
    for l in cmds.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            [c, ..] if c.starts_with(':') => {
                let name = &c[1..];
                if chains.iter().any(|(n, _)| n == name) {
                    rules.retain(|r| chain_of(r) != name);
                } else {
                    chains.push((name.to_string(), w.get(1).unwrap_or(&"-").to_string()));
                }
            }
            ["-A", c, ..] | ["-I", c, ..] | ["-D", c, ..] | ["-F", c] | ["-X", c]
                if !chains.iter().any(|(n, _)| n == c) =>
            {
                return Err(err(format!("iptables-restore: no chain {c} in {table}")))
            }
            ["-A", ..] => rules.push(l.to_string()),
            ["-I", c, "1", rest @ ..] => {
                let at = rules
                    .iter()
                    .position(|r| chain_of(r) == *c)
                    .unwrap_or(rules.len());
                rules.insert(at, format!("-A {c} {}", rest.join(" ")));
            }
            ["-D", c, rest @ ..] => {
                let want = format!("-A {c} {}", rest.join(" "));
                let i = rules
                    .iter()
                    .position(|r| *r == want)
                    .ok_or_else(|| err(format!("iptables-restore: no rule `{want}` to delete")))?;
                rules.remove(i);
            }
            ["-F", c] => rules.retain(|r| chain_of(r) != *c),
            ["-X", c] => {
                if rules.iter().any(|r| r.ends_with(&format!("-j {c}"))) {
                    return Err(err(format!("iptables-restore: chain {c} is in use")));
                }
                chains.retain(|(n, _)| n != c);
            }
            [] | ["COMMIT"] => {}
            [x, ..] if x.starts_with('*') || x.starts_with('#') => {}
            _ => return Err(err(format!("iptables-restore: cannot read `{l}`"))),
        }
    }
    let mut b = format!("*{table}\n");
    for (n, p) in &chains {
        b.push_str(&format!(":{n} {p} [0:0]\n"));
    }
    for r in &rules {
        b.push_str(r);
        b.push('\n');
    }
    b.push_str("COMMIT\n");
    Ok(b)
}

/// A whole `--noflush` text: all tables or none, as the tool.
fn noflush_all(tables: &mut BTreeMap<String, String>, text: &str) -> Result<()> {
    let mut new = tables.clone();
    for (t, b) in blocks(text) {
        let next = noflush(&t, new.get(&t).map(String::as_str), &b)?;
        new.insert(t, next);
    }
    *tables = new;
    Ok(())
}

fn ipset_line(k: &mut Kernel, l: &str) -> Result<()> {
    let w: Vec<&str> = l.split_whitespace().collect();
    let missing = |n: &str| err(format!("ipset: set {n} does not exist"));
    match w.as_slice() {
        [] => {}
        ["create", n, ..] => {
            if k.sets.contains_key(*n) && !w.contains(&"-exist") {
                return Err(err(format!("ipset: set {n} exists")));
            }
            k.sets.entry(n.to_string()).or_default();
        }
        ["add", n, m, ..] => k
            .sets
            .get_mut(*n)
            .ok_or_else(|| missing(n))?
            .push(m.to_string()),
        ["flush", n] => k.sets.get_mut(*n).ok_or_else(|| missing(n))?.clear(),
        ["swap", a, b] => {
            let x = k.sets.remove(*a).ok_or_else(|| missing(a))?;
            let y = k.sets.remove(*b).ok_or_else(|| missing(b))?;
            k.sets.insert(a.to_string(), y);
            k.sets.insert(b.to_string(), x);
        }
        ["destroy", n] => {
            k.sets.remove(*n).ok_or_else(|| missing(n))?;
        }
        _ => return Err(err(format!("ipset: cannot read `{l}`"))),
    }
    Ok(())
}

impl System for Faulty {
    fn dry_run(&self, _: Backend, _: &str) -> Result<()> {
        self.step(Op::DryRun, "the dry run", |_| Ok(()))
    }
    fn dry_run6(&self, _: &str) -> Result<()> {
        self.step(Op::DryRun, "the IPv6 dry run", |_| Ok(()))
    }
    fn nft_table(&self, family: &str, table: &str) -> Result<Option<String>> {
        self.step(Op::Save, "nft list table", |w| {
            Ok(match (family, table) {
                ("ip", "amwall") => w.kernel.nft.clone(),
                ("ip6", "amwall") => w.kernel.nft6.clone(),
                ("ip6", _) => w.kernel.sport6.clone(),
                _ => w.kernel.sport.clone(),
            })
        })
    }
    fn nft_load(&self, script: &str) -> Result<()> {
        self.step(Op::Load, "nft -f", |w| {
            // One transaction: every table the script replaces, or none.
            if script.contains("amwall_sport") {
                if script.contains("table ip amwall_sport") {
                    w.kernel.sport = Some(script.to_string());
                }
                if script.contains("table ip6 amwall_sport") {
                    w.kernel.sport6 = Some(script.to_string());
                }
            } else {
                w.kernel.nft = Some(script.to_string());
                if script.contains("delete table ip6 amwall") {
                    w.kernel.nft6 = Some(script.to_string());
                }
            }
            Ok(())
        })
    }
    fn nft_restore(&self, family: &str, table: &str, saved: Option<&str>) -> Result<()> {
        self.step(Op::Load, "nft -f (restore)", |w| {
            let slot = match (family, table) {
                ("ip", "amwall") => &mut w.kernel.nft,
                ("ip6", "amwall") => &mut w.kernel.nft6,
                ("ip6", _) => &mut w.kernel.sport6,
                _ => &mut w.kernel.sport,
            };
            *slot = saved.map(str::to_string);
            Ok(())
        })
    }
    fn fw_files(&self, config: &std::path::Path) -> Result<BTreeMap<String, String>> {
        self.step(Op::Save, "firewalld's files", |w| {
            assert_eq!(config, std::path::Path::new(FW_CONFIG));
            Ok(w.kernel
                .fw
                .as_ref()
                .map(|f| f.permanent.clone())
                .unwrap_or_default())
        })
    }
    fn fw_put(&self, path: &std::path::Path, text: Option<&str>) -> Result<()> {
        self.step(Op::Config, "a firewalld file", |w| {
            let rel = path
                .strip_prefix(FW_CONFIG)
                .expect("under the configuration")
                .to_str()
                .unwrap()
                .to_string();
            let fw = w
                .kernel
                .fw
                .as_mut()
                .ok_or_else(|| err("no firewalld".into()))?;
            match text {
                Some(t) => fw.permanent.insert(rel, t.to_string()),
                None => fw.permanent.remove(&rel),
            };
            Ok(())
        })
    }
    fn ufw_files(&self, config: &std::path::Path) -> Result<BTreeMap<String, super::ufw::UfwFile>> {
        self.step(Op::Save, "ufw's files", |w| {
            assert_eq!(config, std::path::Path::new(super::ufw::CONFIG));
            Ok(w.kernel
                .ufw
                .as_ref()
                .map(|u| u.disk.clone())
                .unwrap_or_default())
        })
    }
    fn ufw_put(&self, path: &std::path::Path, file: Option<&super::ufw::UfwFile>) -> Result<()> {
        self.step(Op::Config, "a ufw file", |w| {
            let name = path
                .strip_prefix(super::ufw::CONFIG)
                .expect("under ufw's directory")
                .to_str()
                .unwrap()
                .to_string();
            let u = w.kernel.ufw.as_mut().ok_or_else(|| err("no ufw".into()))?;
            match file {
                Some(f) => u.disk.insert(name, f.clone()),
                None => u.disk.remove(&name),
            };
            Ok(())
        })
    }
    /// `status`; `reload` (the hook on disk: stop, then start, when it is
    /// amwall's and executable; the chains from user.rules); any other
    /// command adds its words as a line to user.rules and the chains unless
    /// user.rules has it (ufw's "Skipping adding existing rule").
    fn ufw(&self, args: &[&str]) -> Result<String> {
        let op = if args == ["status"] {
            Op::Save
        } else {
            Op::Load
        };
        self.step(op, "ufw", |w| {
            let u = w
                .kernel
                .ufw
                .as_mut()
                .ok_or_else(|| err("ufw: command not found".into()))?;
            match args {
                ["status"] => Ok(format!(
                    "Status: {}\n",
                    if u.active { "active" } else { "inactive" }
                )),
                _ if !u.active => Ok("Firewall not enabled (skipping reload)\n".into()),
                ["reload"] => {
                    let hook = u.disk.get("before.init").filter(|f| {
                        f.mode & 0o111 != 0 && f.text.contains(crate::render::UFW_MARKER)
                    });
                    if hook.is_some() {
                        u.chains = None;
                    }
                    u.chains = hook.map(|f| f.text.clone()).or(u.chains.take());
                    u.running = u
                        .disk
                        .get("user.rules")
                        .map(|f| f.text.clone())
                        .unwrap_or_default();
                    Ok("Firewall reloaded\n".into())
                }
                _ => {
                    let line = format!("{}\n", args.join(" "));
                    let f = u
                        .disk
                        .entry("user.rules".into())
                        .or_insert(super::ufw::UfwFile {
                            text: String::new(),
                            mode: 0o640,
                        });
                    if !f.text.contains(&line) {
                        f.text.push_str(&line);
                        u.running.push_str(&line);
                    }
                    Ok("Rule added\n".into())
                }
            }
        })
    }
    fn ufw_hook(&self, hook: &str, arg: &str) -> Result<()> {
        self.step(Op::Load, "before.init", |w| {
            let u = w.kernel.ufw.as_mut().ok_or_else(|| err("no ufw".into()))?;
            if arg == "stop" && hook.contains(crate::render::UFW_MARKER) {
                u.chains = None;
            }
            Ok(())
        })
    }
    fn fw_check(&self, _: &std::path::Path) -> Result<()> {
        self.step(Op::DryRun, "firewall-offline-cmd --check-config", |w| {
            let fw = w
                .kernel
                .fw
                .as_ref()
                .ok_or_else(|| err("no firewalld".into()))?;
            match fw.permanent.values().find(|t| t.contains("INVALID")) {
                Some(_) => Err(err("firewall-offline-cmd: INVALID_POLICY".into())),
                None => Ok(()),
            }
        })
    }
    fn firewall_cmd(&self, args: &[&str]) -> Result<String> {
        let op = if args == ["--reload"] {
            Op::Load
        } else {
            Op::Save
        };
        self.step(op, "firewall-cmd", |w| {
            let fw = w
                .kernel
                .fw
                .as_mut()
                .ok_or_else(|| err("firewall-cmd: FirewallD is not running".into()))?;
            let listing = |files: &BTreeMap<String, String>, extra: &[String]| {
                let mut s: String = files.keys().map(|k| format!("{k}\n")).collect();
                s.extend(extra.iter().map(|e| format!("{e}\n")));
                s
            };
            match args {
                ["--state"] => Ok("running\n".into()),
                ["--reload"] => {
                    if fw.permanent.values().any(|t| t.contains("INVALID")) {
                        return Err(err("firewall-cmd --reload: INVALID_POLICY".into()));
                    }
                    fw.runtime = fw.permanent.clone();
                    fw.runtime_only.clear();
                    Ok(String::new())
                }
                ["--permanent", ..] => Ok(listing(&fw.permanent, &[])),
                _ => Ok(listing(&fw.runtime, &fw.runtime_only)),
            }
        })
    }
    fn iptables_save(&self) -> Result<String> {
        self.step(Op::Save, "iptables-save", |w| {
            Ok(format!(
                "# Generated by the double\n{}",
                w.kernel.tables.values().cloned().collect::<String>()
            ))
        })
    }
    fn iptables_restore(&self, text: &str) -> Result<()> {
        self.step(Op::Load, "iptables-restore", |w| {
            // One commit per table, all tables or none (as the tool).
            for (t, b) in blocks(text) {
                w.kernel.tables.insert(t, b);
            }
            Ok(())
        })
    }
    fn ip6tables_save(&self) -> Result<String> {
        self.step(Op::Save, "ip6tables-save", |w| {
            Ok(format!(
                "# Generated by the double (ip6tables-save)\n{}",
                w.kernel.tables6.values().cloned().collect::<String>()
            ))
        })
    }
    fn ip6tables_restore(&self, text: &str) -> Result<()> {
        self.step(Op::Load, "ip6tables-restore", |w| {
            for (t, b) in blocks(text) {
                w.kernel.tables6.insert(t, b);
            }
            Ok(())
        })
    }
    fn nft_ruleset(&self) -> Result<String> {
        self.step(Op::Save, "nft list ruleset", |w| {
            Ok(w.kernel.nft.clone().unwrap_or_default())
        })
    }
    fn iptables_restore_noflush(&self, text: &str) -> Result<()> {
        self.step(Op::Load, "iptables-restore --noflush", |w| {
            noflush_all(&mut w.kernel.tables, text)
        })
    }
    fn ip6tables_restore_noflush(&self, text: &str) -> Result<()> {
        self.step(Op::Load, "ip6tables-restore --noflush", |w| {
            noflush_all(&mut w.kernel.tables6, text)
        })
    }
    fn ipset_save(&self) -> Result<String> {
        self.step(Op::Save, "ipset save", |w| {
            let mut s = String::new();
            for (n, ms) in &w.kernel.sets {
                s.push_str(&format!("create {n} hash:ip family inet\n"));
                for m in ms {
                    s.push_str(&format!("add {n} {m}\n"));
                }
            }
            Ok(s)
        })
    }
    fn ipset_restore(&self, text: &str) -> Result<()> {
        // Line by line, not atomic: a failure leaves the lines before it done.
        self.step(Op::Load, "ipset restore", |w| {
            text.lines().try_for_each(|l| ipset_line(&mut w.kernel, l))
        })
    }
    fn ipset_destroy(&self, name: &str) -> Result<()> {
        self.step(Op::Load, "ipset destroy", |w| {
            ipset_line(&mut w.kernel, &format!("destroy {name}"))
        })
    }
    fn admin_verdict(&self, _: Backend, _: &AdminConn) -> Result<(Verdict, String)> {
        let v = self.w.borrow().verdict.unwrap_or(Verdict::Accept);
        Ok((
            v,
            "tcp 198.51.100.9:40000 -> 192.0.2.3:22 in eth0 state new".into(),
        ))
    }

    fn write(&self, name: &str, text: &str) -> Result<()> {
        self.step(Op::Write, name, |w| {
            let others: usize = w
                .files
                .iter()
                .filter(|(n, _)| n.as_str() != name)
                .map(|(_, t)| t.len())
                .sum();
            if w.capacity.is_some_and(|c| others + text.len() > c) {
                return Err(err(format!("{name}: No space left on device")));
            }
            w.files.insert(name.to_string(), text.to_string());
            Ok(())
        })
    }
    fn read(&self, name: &str) -> Option<String> {
        self.w.borrow().files.get(name).cloned()
    }
    fn remove(&self, name: &str) {
        self.w.borrow_mut().files.remove(name);
    }
    fn lock(&self) -> Result<Lock> {
        Ok(Lock(None))
    }
    fn place(&self) -> String {
        "(double)".into()
    }
    fn spawn_watchdog(&self, _: &str) -> Result<()> {
        self.step(Op::Spawn, "the watchdog", |w| {
            w.watchdog = true;
            w.spawned += 1;
            Ok(())
        })
    }
    fn watchdog_alive(&self) -> bool {
        self.w.borrow().watchdog
    }
    fn second_guard(&self, _: u64) -> std::result::Result<String, String> {
        Err("the double has no systemd".into())
    }
    fn now(&self) -> u64 {
        self.w.borrow().clock_ms / 1000
    }
    fn sleep(&self, d: Duration) {
        self.w.borrow_mut().clock_ms += d.as_millis() as u64;
    }
    fn boot_id(&self) -> Option<String> {
        Some(self.w.borrow().boot.clone())
    }
}

// ---------------------------------------------------------------------------

const SET: &str = "amw_in_s";

fn before(with_set: bool) -> Kernel {
    let mut k = Kernel::default();
    k.tables.insert(
        "filter".into(),
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT\nCOMMIT\n"
            .into(),
    );
    k.tables.insert(
        "mangle".into(),
        "*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n".into(),
    );
    k.nft = Some("table ip amwall { chain input { tcp dport 9999 accept } }\n".into());
    k.tables6.insert(
        "filter".into(),
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
            .into(),
    );
    if with_set {
        k.sets.insert(SET.into(), vec!["192.0.2.99".into()]);
    }
    k.sets.insert("theirs".into(), vec!["203.0.113.1".into()]);
    k
}

fn iptables_payload() -> Payload {
    Payload {
        kind: Backend::Iptables,
        host: "tshost".into(),
        rules: format!(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A INPUT -m set --match-set {SET} src -p tcp -m tcp --dport 10080 -j ACCEPT\nCOMMIT\n"
        ),
        ipset: Some(format!(
            "create {SET} hash:ip family inet -exist\ncreate {SET}~ hash:ip family inet -exist\n\
             flush {SET}~\nadd {SET}~ 192.0.2.10\nadd {SET}~ 192.0.2.12\n\
             swap {SET}~ {SET}\ndestroy {SET}~\n"
        )),
        rules6: Some(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A INPUT -i lo -j ACCEPT\nCOMMIT\n"
                .into(),
        ),
        merged: vec![],
        merged6: vec![],
        firewalld: None,
        ufw: None,
    }
}

/// Merged mode: only amwall's chain, entered by one jump.
fn merged_payload() -> Payload {
    Payload {
        rules: format!(
            "*filter\n:AMWALL-INPUT - [0:0]\n\
             -A AMWALL-INPUT -m set --match-set {SET} src -p tcp -m tcp --dport 10080 -j ACCEPT\nCOMMIT\n"
        ),
        merged: vec![Jump {
            table: "filter".into(),
            from: "INPUT".into(),
            chain: "AMWALL-INPUT".into(),
        }],
        rules6: None,
        ..iptables_payload()
    }
}

/// Merged mode where Amanda runs over IPv6 too: amwall's IPv6 chain
/// beside the host's ip6tables rules, entered by its own jump.
fn merged6_payload() -> Payload {
    let input = Jump {
        table: "filter".into(),
        from: "INPUT".into(),
        chain: "AMWALL-INPUT".into(),
    };
    Payload {
        rules6: Some(
            "*filter\n:AMWALL-INPUT - [0:0]\n\
             -A AMWALL-INPUT -s 2001:db8::5/128 -p tcp -m tcp --dport 10080 -j ACCEPT\nCOMMIT\n"
                .into(),
        ),
        merged6: vec![input],
        ..merged_payload()
    }
}

fn nft_payload() -> Payload {
    Payload {
        kind: Backend::Nft,
        host: "c1".into(),
        rules: "table ip amwall\ndelete table ip amwall\ntable ip amwall { chain input { policy drop; tcp dport 10080 accept } }\n\
                table ip6 amwall\ndelete table ip6 amwall\ntable ip6 amwall { chain input { policy drop; } }\n"
            .into(),
        ipset: None,
        rules6: None,
        merged: vec![],
        merged6: vec![],
        firewalld: None,
        ufw: None,
    }
}

const MARK: &str = "<!-- Written by amwall. -->";

/// A host running firewalld: the admin's zone, a service of theirs, and
/// amwall's files from an earlier apply (one the new plan no longer has).
fn before_firewalld() -> Kernel {
    let mut fw = Fw::default();
    for (rel, text) in [
        (
            "zones/public.xml",
            "<zone><service name=\"ssh\"/></zone>".to_string(),
        ),
        ("services/theirs.xml", "<service/>".to_string()),
        (
            "policies/amwall-input.xml",
            format!("{MARK}<policy>old</policy>"),
        ),
        (
            "services/amwall-amanda-2.xml",
            format!("{MARK}<service>old</service>"),
        ),
    ] {
        fw.permanent.insert(rel.into(), text);
    }
    fw.runtime = fw.permanent.clone();
    Kernel {
        fw: Some(fw),
        sport: Some("table ip amwall_sport { old }\n".into()),
        ..before(false)
    }
}

fn firewalld_payload() -> Payload {
    Payload {
        kind: Backend::Nft,
        host: "c1".into(),
        rules:
            "table ip amwall_sport { chain input { udp dport 10080 udp sport != 512-1023 drop } }\n"
                .into(),
        ipset: None,
        rules6: None,
        merged: vec![],
        merged6: vec![],
        firewalld: Some(FirewalldPayload {
            config: FW_CONFIG.into(),
            objects: vec![
                (
                    "policies/amwall-input.xml".into(),
                    format!("{MARK}<policy>new</policy>"),
                ),
                (
                    "services/amwall-amanda.xml".into(),
                    format!("{MARK}<service>new</service>"),
                ),
            ],
        }),
        ufw: None,
    }
}

const UFW_STOCK: &str = "# ufw's own before.init\n";

/// A host ufw manages: the admin's ssh rule, ufw's own hook, or amwall's
/// from an earlier apply with its chains loaded.
fn before_ufw(earlier_hook: bool) -> Kernel {
    use super::ufw::UfwFile;
    let file = |t: &str, mode| UfwFile {
        text: t.into(),
        mode,
    };
    let rules = "### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n";
    let hook = if earlier_hook {
        file(&format!("# {}\nold\n", crate::render::UFW_MARKER), 0o755)
    } else {
        file(UFW_STOCK, 0o640)
    };
    let mut u = UfwSim {
        active: true,
        running: rules.into(),
        chains: earlier_hook.then(|| hook.text.clone()),
        ..UfwSim::default()
    };
    u.disk.insert("user.rules".into(), file(rules, 0o640));
    u.disk.insert("user6.rules".into(), file("### v6\n", 0o640));
    u.disk.insert("before.init".into(), hook);
    Kernel {
        ufw: Some(u),
        ..before(false)
    }
}

fn ufw_payload() -> Payload {
    Payload {
        kind: Backend::Iptables,
        host: "fwhost".into(),
        rules: String::new(),
        ipset: None,
        rules6: None,
        merged: vec![],
        merged6: vec![],
        firewalld: None,
        ufw: Some(super::ufw::UfwPayload {
            config: super::ufw::CONFIG.into(),
            commands: ["192.0.2.10", "192.0.2.12"]
                .iter()
                .map(|src| {
                    format!("allow proto tcp from {src} to any port 10080 comment amanda")
                        .split(' ')
                        .map(str::to_string)
                        .collect()
                })
                .collect(),
            hook: Some(format!("# {}\nnew\n", crate::render::UFW_MARKER)),
            stock: Some(UFW_STOCK.into()),
        }),
    }
}

fn opts() -> Options<'static> {
    Options {
        timeout: Duration::from_secs(60),
        admin: None,
        force: false,
        watchdog_exe: "/nonexistent".into(),
        replace_foreign: true,
        flows: None,
    }
}

/// Nothing waits for confirmation any more.
fn settled(d: &Faulty) -> bool {
    active(d).is_none()
}

/// Both backends, the iptables one with a set that existed before and one
/// that did not.
fn cases() -> Vec<(&'static str, Kernel, Payload)> {
    vec![
        ("iptables, set existed", before(true), iptables_payload()),
        ("iptables, new set", before(false), iptables_payload()),
        ("nft", before(false), nft_payload()),
        (
            "iptables merged, set existed",
            before(true),
            merged_payload(),
        ),
        ("iptables merged, new set", before(false), merged_payload()),
        ("iptables merged, IPv6", before(false), merged6_payload()),
        ("firewalld", before_firewalld(), firewalld_payload()),
        ("ufw", before_ufw(false), ufw_payload()),
        ("ufw, earlier hook", before_ufw(true), ufw_payload()),
    ]
}

/// Merged mode loads beside the host's rules: one jump at the top, the
/// host's rule after it; loading again adds no second jump; and a rollback
/// takes out only amwall's chain, so a rule another manager added while the
/// apply waited (a fail2ban ban) stays.
#[test]
fn a_merged_apply_touches_only_its_own_chains() {
    let k = before(false);
    let d = Faulty::new(k.clone());
    apply_with(&d, &merged_payload(), &opts()).unwrap();
    let filter = d.kernel().tables["filter"].clone();
    assert!(
        filter.contains(
            ":AMWALL-INPUT - [0:0]\n-A INPUT -j AMWALL-INPUT\n-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT\n"
        ),
        "{filter}"
    );
    d.kill_watchdog();
    request_with(&d, true).unwrap();
    apply_with(&d, &merged_payload(), &opts()).unwrap();
    let again = d.kernel().tables["filter"].clone();
    assert_eq!(again.matches("-j AMWALL-INPUT").count(), 1, "{again}");
    // A ban arrives while the second apply waits.
    let banned = again.replace(
        "-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT\n",
        "-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT\n-A INPUT -s 203.0.113.66/32 -j DROP\n",
    );
    d.w.borrow_mut()
        .kernel
        .tables
        .insert("filter".into(), banned.clone());
    assert_eq!(watchdog_with(&d, None).unwrap(), Outcome::RolledBack);
    // The confirmed first apply's chain is back as it was, the ban stays.
    assert_eq!(d.kernel().tables["filter"], banned);
    // And a rollback to before any apply leaves exactly the host's rules.
    let d = Faulty::new(k.clone());
    apply_with(&d, &merged_payload(), &opts()).unwrap();
    d.kill_watchdog();
    request_with(&d, false).unwrap();
    assert_eq!(d.kernel(), k);
}

/// Merged mode's IPv6 chain loads beside the host's ip6tables rules with one
/// jump, and the rollback leaves exactly the host's rules.
#[test]
fn a_merged_apply_loads_and_rolls_back_its_ipv6_chain() {
    let k = before(false);
    let d = Faulty::new(k.clone());
    apply_with(&d, &merged6_payload(), &opts()).unwrap();
    let filter6 = d.kernel().tables6["filter"].clone();
    assert!(
        filter6.contains(":AMWALL-INPUT - [0:0]\n")
            && filter6.matches("-A INPUT -j AMWALL-INPUT\n").count() == 1
            && filter6.contains("-A AMWALL-INPUT -s 2001:db8::5/128"),
        "{filter6}"
    );
    d.kill_watchdog();
    request_with(&d, false).unwrap();
    assert_eq!(d.kernel(), k);
}

#[test]
fn a_clean_apply_loads_and_the_watchdog_rolls_back_at_the_deadline() {
    for (name, k, p) in cases() {
        let d = Faulty::new(k.clone());
        apply_with(&d, &p, &opts()).unwrap();
        assert_ne!(d.kernel(), k, "{name}: loaded");
        assert_eq!(d.spawned(), 1);
        assert_eq!(
            watchdog_with(&d, None).unwrap(),
            Outcome::RolledBack,
            "{name}"
        );
        assert_eq!(d.kernel(), k, "{name}");
        assert!(settled(&d));
    }
}

/// ipset restore succeeds, iptables-restore (the second load step) fails:
/// the sets are emptied or destroyed again, the tables untouched.
#[test]
fn the_second_load_step_fails_and_the_previous_rules_are_back() {
    for with_set in [true, false] {
        let k = before(with_set);
        let d = Faulty::new(k.clone());
        d.inject(Op::Load, 2, Fault::Fail);
        let e = apply_with(&d, &iptables_payload(), &opts()).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("loading failed"), "{e}");
        assert!(e.contains("previous rules are back"), "{e}");
        assert!(e.contains("injected failure of iptables-restore"), "{e}");
        assert_eq!(d.kernel(), k, "set existed: {with_set}");
        assert!(settled(&d));
        assert_eq!(outcome(&d), Some(Outcome::RolledBack));
    }
}

/// The snapshot cannot be written (the first state write, or a full or
/// tiny disk): refused before anything is loaded, no watchdog, no record.
#[test]
fn a_state_dir_that_takes_no_writes_is_refused_before_the_load() {
    for (name, k, p) in cases() {
        for setup in 0..3 {
            let d = Faulty::new(k.clone());
            match setup {
                0 => {
                    d.inject(Op::Write, 1, Fault::Fail);
                }
                1 => d.set_capacity(0),
                // Room for the snapshot but not the reserve.
                _ => d.set_capacity(1000),
            }
            let e = apply_with(&d, &p, &opts()).unwrap_err().to_string();
            assert!(e.contains("nothing was loaded"), "{name}/{setup}: {e}");
            assert_eq!(d.count(Op::Load), 0, "{name}/{setup}");
            assert_eq!(d.spawned(), 0, "{name}/{setup}");
            assert_eq!(d.kernel(), k, "{name}/{setup}");
            assert!(pending(&d).is_none(), "{name}/{setup}");
        }
    }
}

/// The disk fills while the apply waits: the reserve makes room for the
/// outcome, so the rollback is recorded and the directory does not stay
/// "waiting".
#[test]
fn a_disk_that_fills_after_the_load_still_records_the_rollback() {
    for (name, k, p) in cases() {
        let d = Faulty::new(k.clone());
        apply_with(&d, &p, &opts()).unwrap();
        d.fill_disk();
        assert_eq!(
            watchdog_with(&d, None).unwrap(),
            Outcome::RolledBack,
            "{name}"
        );
        assert_eq!(d.kernel(), k, "{name}");
        assert_eq!(outcome(&d), Some(Outcome::RolledBack), "{name}");
        assert!(pending(&d).is_none(), "{name}");
    }
}

/// The process dies at every call of a clean apply, before it and after it;
/// the watchdog dies with it. Whatever was done, the next invocation past
/// the deadline (here a late `--confirm`) leaves the previous rules, and a
/// fresh apply then goes through.
#[test]
fn dying_at_any_step_ends_with_the_previous_rules() {
    for (name, k, p) in cases() {
        let clean = Faulty::new(k.clone());
        apply_with(&clean, &p, &opts()).unwrap();
        for (op, n) in clean.calls() {
            for (fault, watchdog_survives) in [
                (Fault::DieBefore, false),
                (Fault::DieAfter, false),
                (Fault::DieAfter, true),
            ] {
                let at =
                    format!("{name}: {fault:?} {op:?} #{n}, watchdog lives: {watchdog_survives}");
                let d = Faulty::new(k.clone());
                d.inject(op, n, fault);
                let r = catch_unwind(AssertUnwindSafe(|| apply_with(&d, &p, &opts())));
                assert!(
                    r.as_ref().err().is_some_and(|e| e.is::<Died>()),
                    "{at}: did not die"
                );
                if watchdog_survives && d.watchdog_alive() {
                    assert_eq!(
                        watchdog_with(&d, None).unwrap(),
                        Outcome::RolledBack,
                        "{at}"
                    );
                } else {
                    d.kill_watchdog();
                    d.advance(61);
                    let e = request_with(&d, true).unwrap_err().to_string();
                    assert!(e.contains("no apply is waiting"), "{at}: {e}");
                }
                assert_eq!(d.kernel(), k, "{at}");
                assert!(settled(&d), "{at}");
                apply_with(&d, &p, &opts()).unwrap_or_else(|e| panic!("{at}: {e}"));
            }
        }
    }
}

/// The case the issue names: the load is done, then the process dies before
/// the watchdog can take over (here: both gone). Before the deadline the
/// record blocks a new apply and `--rollback` restores from the snapshot
/// alone; after it, the next apply rolls back first.
#[test]
fn dead_between_load_and_watchdog_rollback_needs_no_watchdog() {
    for (name, k, p) in cases() {
        let last_load = {
            let c = Faulty::new(k.clone());
            apply_with(&c, &p, &opts()).unwrap();
            c.count(Op::Load)
        };
        let d = Faulty::new(k.clone());
        d.inject(Op::Load, last_load, Fault::DieAfter);
        let r = catch_unwind(AssertUnwindSafe(|| apply_with(&d, &p, &opts())));
        assert!(r.is_err());
        d.kill_watchdog();
        let loaded = d.kernel();
        assert_ne!(loaded, k, "{name}");
        let e = apply_with(&d, &p, &opts()).unwrap_err().to_string();
        assert!(e.contains("still waiting"), "{name}: {e}");
        assert!(e.contains("watchdog is gone"), "{name}: {e}");
        assert_eq!(d.kernel(), loaded, "a refused apply changes nothing");
        request_with(&d, false).unwrap();
        assert_eq!(d.kernel(), k, "{name}");
        assert_eq!(outcome(&d), Some(Outcome::RolledBack));

        // After the deadline: the next apply restores first, then loads.
        let d = Faulty::new(k.clone());
        d.inject(Op::Load, last_load, Fault::DieAfter);
        let _ = catch_unwind(AssertUnwindSafe(|| apply_with(&d, &p, &opts())));
        d.kill_watchdog();
        d.advance(61);
        let a = apply_with(&d, &p, &opts()).unwrap();
        assert!(
            a.notes.iter().any(|n| n.contains("past its deadline")),
            "{name}: {:?}",
            a.notes
        );
        assert_eq!(watchdog_with(&d, None).unwrap(), Outcome::RolledBack);
        assert_eq!(d.kernel(), k, "{name}");
    }
}

/// The watchdog is killed while the load runs: the apply does not leave
/// unguarded rules behind.
#[test]
fn a_watchdog_killed_during_the_load_makes_the_apply_roll_back() {
    for (name, k, p) in cases() {
        let d = Faulty::new(k.clone());
        d.inject(Op::Load, 1, Fault::KillWatchdog);
        let e = apply_with(&d, &p, &opts()).unwrap_err().to_string();
        assert!(e.contains("watchdog died"), "{name}: {e}");
        assert_eq!(d.kernel(), k, "{name}");
        assert!(settled(&d));
    }
}

/// `--confirm` and `--rollback` with the watchdog gone do the work
/// themselves; a confirmation is kept, and a second request finds nothing.
#[test]
fn confirm_and_rollback_work_without_the_watchdog() {
    for (name, k, p) in cases() {
        let d = Faulty::new(k.clone());
        apply_with(&d, &p, &opts()).unwrap();
        let loaded = d.kernel();
        d.kill_watchdog();
        request_with(&d, true).unwrap();
        assert_eq!(outcome(&d), Some(Outcome::Confirmed), "{name}");
        assert_eq!(d.kernel().live(), loaded.live(), "{name}");
        // firewalld: only the confirmation makes the files permanent.
        if let Some(fw) = d.kernel().fw {
            assert_eq!(fw.permanent, fw.runtime, "{name}");
        }
        // ufw: the files are the applied ones only now.
        if let Some(u) = d.kernel().ufw {
            assert_eq!(u.disk["user.rules"].text, u.running, "{name}");
            assert!(u.disk["before.init"].text.contains("new"), "{name}");
        }
        let kept = d.kernel();
        d.advance(120);
        assert!(request_with(&d, false).is_err(), "{name}");
        assert_eq!(d.kernel(), kept, "a confirmed apply is never rolled back");
    }
}

/// With the watchdog alive, a request goes through it (the file), and the
/// waiting invocation takes over should it die before acting.
#[test]
fn a_request_outlives_the_watchdog_dying_before_it_acts() {
    let k = before(true);
    let d = Faulty::new(k.clone());
    apply_with(&d, &iptables_payload(), &opts()).unwrap();
    request_with(&d, false).unwrap();
    assert!(d.read(ROLLBACK_NOW).is_some());
    d.kill_watchdog();
    assert_eq!(
        wait_outcome_with(&d, Duration::from_secs(10)),
        Some(Outcome::RolledBack)
    );
    assert_eq!(d.kernel(), k);
}

/// Rules that would lock the admin out are taken out at once.
#[test]
fn a_lockout_is_rolled_back_at_once() {
    for (name, k, p) in cases() {
        let d = Faulty::new(k.clone());
        d.set_verdict(Verdict::Drop);
        let mut o = opts();
        o.admin = AdminConn::from_env_value("198.51.100.9 40000 192.0.2.3 22");
        let e = apply_with(&d, &p, &o).unwrap_err().to_string();
        assert!(e.contains("refused"), "{name}: {e}");
        assert_eq!(d.kernel(), k, "{name}");
    }
}

/// After a reboot the loaded rules are gone already: the stale record is
/// dropped, not "rolled back" over what the boot loaded.
#[test]
fn a_record_from_an_earlier_boot_is_dropped() {
    let d = Faulty::new(before(true));
    apply_with(&d, &iptables_payload(), &opts()).unwrap();
    d.reboot();
    let loads = d.count(Op::Load);
    let a = apply_with(&d, &nft_payload(), &opts()).unwrap();
    assert!(
        a.notes.iter().any(|n| n.contains("before the last reboot")),
        "{:?}",
        a.notes
    );
    assert_eq!(d.count(Op::Load), loads + 1, "only the new load");
}

/// A failure of the watchdog's rollback is recorded as such, never as
/// success.
#[test]
fn a_failed_rollback_is_recorded() {
    let d = Faulty::new(before(true));
    apply_with(&d, &iptables_payload(), &opts()).unwrap();
    let n = d.count(Op::Load);
    d.inject(Op::Load, n + 1, Fault::Fail);
    assert_eq!(watchdog_with(&d, None).unwrap(), Outcome::RollbackFailed);
    assert!(d.read(LOG).unwrap().contains("rollback failed"));
    assert!(settled(&d));
}

/// A watchdog guards the apply that started it, never a later one: one that
/// starts late (after its apply gave up and the next one recorded itself)
/// leaves, so the next apply's own watchdog can start.
#[test]
fn a_watchdog_never_adopts_another_apply() {
    let d = Faulty::new(before(false));
    apply_with(&d, &nft_payload(), &opts()).unwrap();
    let id = pending(&d).unwrap().id;
    assert!(watchdog_with(&d, Some("an-earlier-apply")).is_err());
    assert!(active(&d).is_some(), "left alone");
    assert_eq!(watchdog_with(&d, Some(&id)).unwrap(), Outcome::RolledBack);
}

/// A confirmation that comes after the deadline — the watchdog still alive
/// but not yet acting, or dying — never keeps the rules.
#[test]
fn a_late_confirmation_is_a_rollback() {
    for (name, k, p) in cases() {
        let d = Faulty::new(k.clone());
        apply_with(&d, &p, &opts()).unwrap();
        d.advance(60);
        request_with(&d, true).unwrap();
        assert!(d.read(CONFIRMED).is_none(), "{name}");
        d.kill_watchdog();
        assert_eq!(
            wait_outcome_with(&d, Duration::from_secs(5)),
            Some(Outcome::RolledBack),
            "{name}"
        );
        assert_eq!(d.kernel(), k, "{name}");
    }
}

/// firewalld: the load reaches the runtime only; the permanent files stay the
/// old ones until the confirmation, which writes amwall's new files, removes
/// the one the plan dropped, and leaves the admin's files alone.
#[test]
fn firewalld_is_permanent_only_on_confirm() {
    let k = before_firewalld();
    let d = Faulty::new(k.clone());
    apply_with(&d, &firewalld_payload(), &opts()).unwrap();
    let fw = d.kernel().fw.unwrap();
    let old = k.fw.as_ref().unwrap();
    assert_eq!(
        fw.permanent, old.permanent,
        "not permanent before the confirmation"
    );
    assert!(fw.runtime["policies/amwall-input.xml"].contains("new"));
    assert!(fw.runtime.contains_key("services/amwall-amanda.xml"));
    assert!(!fw.runtime.contains_key("services/amwall-amanda-2.xml"));
    assert!(d.kernel().sport.unwrap().contains("512-1023"));
    d.kill_watchdog();
    request_with(&d, true).unwrap();
    let fw = d.kernel().fw.unwrap();
    assert_eq!(fw.permanent, fw.runtime);
    assert_eq!(
        fw.permanent["zones/public.xml"],
        old.permanent["zones/public.xml"]
    );
    assert_eq!(fw.permanent["services/theirs.xml"], "<service/>");
    assert!(!fw.permanent.contains_key("services/amwall-amanda-2.xml"));
}

/// Refused before anything changes: firewalld not running, a same-named
/// file amwall did not write, a runtime-only change the reload would drop
/// (unless forced); and firewalld's own check failing puts everything back.
#[test]
fn firewalld_refusals_change_nothing() {
    let mut stopped = before_firewalld();
    stopped.fw = None;
    let d = Faulty::new(stopped.clone());
    let e = apply_with(&d, &firewalld_payload(), &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("firewalld is not running"), "{e}");
    assert_eq!(d.kernel(), stopped);

    let mut foreign = before_firewalld();
    foreign.fw.as_mut().unwrap().permanent.insert(
        "services/amwall-amanda.xml".into(),
        "<service>admin's</service>".into(),
    );
    let d = Faulty::new(foreign.clone());
    let e = apply_with(&d, &firewalld_payload(), &opts())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("amwall-amanda.xml exist(s) and amwall did not write it"),
        "{e}"
    );
    assert_eq!(d.kernel(), foreign);

    let mut banned = before_firewalld();
    banned
        .fw
        .as_mut()
        .unwrap()
        .runtime_only
        .push("rule family=\"ipv4\" source address=\"203.0.113.66\" drop".into());
    let d = Faulty::new(banned.clone());
    let e = apply_with(&d, &firewalld_payload(), &opts())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("runtime only") && e.contains("203.0.113.66"),
        "{e}"
    );
    assert_eq!(d.kernel(), banned);
    let forced = Options {
        force: true,
        ..opts()
    };
    apply_with(&d, &firewalld_payload(), &forced).unwrap();

    let mut bad = firewalld_payload();
    bad.firewalld.as_mut().unwrap().objects[0]
        .1
        .push_str("INVALID");
    let k = before_firewalld();
    let d = Faulty::new(k.clone());
    let e = apply_with(&d, &bad, &opts()).unwrap_err().to_string();
    assert!(
        e.contains("INVALID_POLICY") && e.contains("previous rules are back"),
        "{e}"
    );
    assert_eq!(d.kernel(), k);
}

/// Without `--backend`, what already manages the firewall decides: a
/// running firewalld, amwall's own earlier rules, other iptables rules
/// (merged, so they stay), else nft; ufw is refused with the way out.
#[test]
fn detection_follows_the_manager_in_place() {
    use super::{detect_with, Choice};
    use crate::render::IptablesMode;
    let pick = |k: Kernel| {
        let d = Faulty::new(k.clone());
        let got = detect_with(&d).map(|x| (x.choice, x.why));
        assert_eq!(d.kernel(), k, "detection changes nothing");
        got
    };
    let (c, why) = pick(before_firewalld()).unwrap();
    assert_eq!(c, Choice::Firewalld, "{why}");

    let mut docker = Kernel::default();
    docker.tables.insert(
        "filter".into(),
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :DOCKER-USER - [0:0]\n:f2b-sshd - [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j f2b-sshd\n\
         -A FORWARD -j DOCKER-USER\n-A f2b-sshd -s 203.0.113.66/32 -j DROP\nCOMMIT\n"
            .into(),
    );
    let (c, why) = pick(docker).unwrap();
    assert_eq!(c, Choice::Iptables(IptablesMode::Merged), "{why}");
    assert!(why.contains("Docker") && why.contains("fail2ban"), "{why}");

    // amwall's earlier nft table wins over the host's own iptables rule...
    let (c, why) = pick(before(false)).unwrap();
    assert_eq!(c, Choice::Nft, "{why}");
    assert!(why.contains("amwall's nft table"), "{why}");
    // ...which alone calls for merged mode.
    let mut own = before(false);
    own.nft = None;
    let (c, why) = pick(own).unwrap();
    assert_eq!(c, Choice::Iptables(IptablesMode::Merged), "{why}");
    assert!(why.contains("the host's own rules"), "{why}");

    let mut ours = Kernel::default();
    ours.tables.insert(
        "filter".into(),
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A INPUT -p tcp -m tcp --dport 10080 -m comment --comment \"amanda bsdtcp\" -j ACCEPT\n\
         COMMIT\n"
            .into(),
    );
    let (c, why) = pick(ours).unwrap();
    assert_eq!(c, Choice::Iptables(IptablesMode::Owned), "{why}");

    let mut merged = Kernel::default();
    merged.tables.insert(
        "filter".into(),
        "*filter\n:INPUT ACCEPT [0:0]\n:AMWALL-INPUT - [0:0]\n-A INPUT -j AMWALL-INPUT\n\
         -A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT\nCOMMIT\n"
            .into(),
    );
    let (c, why) = pick(merged).unwrap();
    assert_eq!(c, Choice::Iptables(IptablesMode::Merged), "{why}");

    let nft = Kernel {
        nft: Some("table ip filter {\n}\ntable inet f2b-table {\n}\ntable ip amwall {\n}\n".into()),
        ..Kernel::default()
    };
    let (c, why) = pick(nft).unwrap();
    assert_eq!(c, Choice::Nft, "{why}");
    assert!(
        why.contains("inet f2b-table") && !why.contains("ip filter"),
        "{why}"
    );
    assert!(!why.contains("ip amwall"), "{why}");

    let (c, why) = pick(Kernel::default()).unwrap();
    assert_eq!(c, Choice::Nft, "{why}");
    assert!(why.starts_with("no other firewall"), "{why}");

    let mut ufw = Kernel::default();
    ufw.tables.insert(
        "filter".into(),
        "*filter\n:INPUT DROP [0:0]\n:ufw-before-input - [0:0]\n:ufw-user-input - [0:0]\n\
         -A INPUT -j ufw-before-input\nCOMMIT\n"
            .into(),
    );
    let (c, why) = pick(ufw).unwrap();
    assert_eq!(c, Choice::Ufw);
    assert!(
        why.contains("ufw manages") && why.contains("ufw-before-input"),
        "{why}"
    );
}

/// ufw: the chains get amwall's rules at once, the files only on confirm;
/// a ufw command the admin runs meanwhile survives the confirmation.
#[test]
fn ufw_files_change_only_on_confirm_and_keep_the_admins_change() {
    let k = before_ufw(false);
    let d = Faulty::new(k.clone());
    apply_with(&d, &ufw_payload(), &opts()).unwrap();
    let u = d.kernel().ufw.unwrap();
    assert_eq!(
        u.disk,
        k.ufw.as_ref().unwrap().disk,
        "the files are the previous ones"
    );
    assert!(u.running.contains("from 192.0.2.12"), "{}", u.running);
    assert!(
        u.chains.as_ref().is_some_and(|c| c.contains("new")),
        "the hook's start ran"
    );
    d.kill_watchdog();
    request_with(&d, true).unwrap();
    let u = d.kernel().ufw.unwrap();
    assert_eq!(u.disk["user.rules"].text, u.running);
    assert_eq!(u.disk["before.init"].mode, 0o755);

    // Applied again, the admin adds a rule while it waits.
    let d = Faulty::new(k.clone());
    apply_with(&d, &ufw_payload(), &opts()).unwrap();
    d.ufw(&["allow", "from", "198.51.100.7"]).unwrap();
    d.kill_watchdog();
    request_with(&d, true).unwrap();
    let u = d.kernel().ufw.unwrap();
    assert!(
        u.disk["user.rules"]
            .text
            .contains("allow from 198.51.100.7"),
        "{u:?}"
    );
    assert!(
        u.disk["user.rules"].text.contains("from 192.0.2.10"),
        "{u:?}"
    );
    assert_eq!(u.disk["user.rules"].text, u.running, "reloaded");
    assert!(d
        .read(LOG)
        .unwrap()
        .contains("changed while the apply waited"));

    // ufw not active, or an admin's own hook: refused, nothing changed.
    let mut off = before_ufw(false);
    off.ufw.as_mut().unwrap().active = false;
    let d = Faulty::new(off.clone());
    let e = apply_with(&d, &ufw_payload(), &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("ufw is not active"), "{e}");
    assert_eq!(d.kernel(), off);
    let mut theirs = before_ufw(false);
    theirs
        .ufw
        .as_mut()
        .unwrap()
        .disk
        .get_mut("before.init")
        .unwrap()
        .text = "#!/bin/sh\n# the admin's\n".into();
    let d = Faulty::new(theirs.clone());
    let e = apply_with(&d, &ufw_payload(), &opts())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nor amwall's") && e.contains("nothing was loaded"),
        "{e}"
    );
    assert_eq!(d.kernel(), theirs);
    assert_eq!(d.count(Op::Load), 0);
}
