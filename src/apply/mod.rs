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
//! The timed revert exists for the moment the admin has lost access, so it
//! must not hang on one process. The snapshot on disk is the source of
//! truth, and whoever finds it can restore it:
//! - the watchdog holds an `flock` on `watchdog.lock` for its whole life
//!   (inherited from the `apply` that started it, so it is never "not yet
//!   alive"); the kernel drops the lock when the process dies however it
//!   dies, so liveness is a lock test, never a PID that may be reused;
//! - `--rollback` and `--confirm` do the work themselves when no watchdog
//!   holds the lock;
//! - every `amwall apply` invocation (load, `--confirm`, `--rollback`, and
//!   the foreground wait) first rolls back a pending apply that is past its
//!   deadline and has no live watchdog. This is the guard that works
//!   everywhere, also in containers and namespaces;
//! - where systemd is PID 1 and we share its network and mount namespaces, a
//!   transient timer (`systemd-run --on-active`) starts a fresh watchdog
//!   just after the deadline, which rolls back when the first one is gone —
//!   the only guard that needs no later invocation. Elsewhere it is skipped
//!   with a note: a timer in systemd's namespaces would restore the wrong
//!   namespace's rules.
//!
//! The state directory is written before anything is loaded: snapshot,
//! a space reserve for the outcome, then the pending record, each with
//! write-temp + fsync + rename, so a directory that cannot be written (full,
//! read-only) is refused while the kernel is untouched, and a crash never
//! leaves half a record. One `flock` on `lock` serialises invocations: of two
//! racing applies one loads, the other finds it pending and changes nothing.
//!
//! What is replaced, and so what a rollback restores:
//! - nft: only `table ip amwall`, and `table ip6 amwall` when the script
//!   has it (the rest of the ruleset is not ours);
//! - iptables: the tables the rules file names (iptables-restore replaces
//!   whole tables), the IPv6 tables `HOST.rules6` names (ip6tables-restore),
//!   plus the `amw_*` ipsets it fills; in merged mode only
//!   amwall's own chains (`AMWALL-*`) and the jumps into them, loaded with
//!   `--noflush`, so a rollback leaves every other chain as it is then
//!   (a ban added while the apply waited stays).

mod detect;
mod firewalld;
mod restore;
pub mod system;
pub mod ufw;

#[cfg(test)]
mod fault;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::check::{HostRules, RulesFile};
use crate::diag::{Error, Result};
use crate::netfilter::{Backend, Jump};
use crate::plan::Plan;
use crate::sim::{self, Verdict};
pub use detect::{reconcile, Choice, Detected};
pub use firewalld::{FirewalldPayload, FirewalldPending};
pub use restore::without_iptables_tables;
use restore::{
    ipset_rollback, iptables_rollback, merged_load, merged_rollback, set_names, sets_of, tables_of,
};
use system::tool;
pub use system::{Real, System};
pub use ufw::{UfwPayload, UfwPending};

/// Where pending applies live unless `--state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/amwall/apply";

/// What one host gets: the rules text as `plan` writes it.
#[derive(Debug, Clone)]
pub struct Payload {
    pub kind: Backend,
    pub host: String,
    pub rules: String,
    /// `HOST.ipset` (iptables with large address groups).
    pub ipset: Option<String>,
    /// `HOST.rules6` (iptables, owned): the IPv6 tables, loaded with
    /// ip6tables-restore after `rules`; in merged mode `HOST.merged.rules6`,
    /// amwall's IPv6 chains (where Amanda runs over IPv6).
    pub rules6: Option<String>,
    /// iptables merged mode: `rules` holds only amwall's chains, entered by
    /// these jumps; empty: `rules` replaces the tables it names.
    pub merged: Vec<Jump>,
    /// Merged mode's jumps into the chains of `rules6`.
    pub merged6: Vec<Jump>,
    /// firewalld: its objects; `kind` is then nft and `rules` the
    /// source-port table (empty: none, and an old one is removed).
    pub firewalld: Option<FirewalldPayload>,
    /// ufw: its commands and hook; `kind` is then iptables (what the
    /// admin's login is judged by) and `rules` empty.
    pub ufw: Option<UfwPayload>,
}

/// The state directory's record of an apply waiting for confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub kind: Backend,
    pub host: String,
    /// Seconds since the epoch after which the watchdog rolls back.
    pub deadline: u64,
    /// Tables `rules` replaces (iptables).
    pub tables: Vec<String>,
    /// `amw_*` sets the ipset file fills, and whether each existed before.
    pub sets: Vec<(String, bool)>,
    /// Whether `table ip amwall` existed before (nft).
    pub had_table: bool,
    /// IPv6 tables `rules6` replaces (ip6tables).
    #[serde(default)]
    pub tables6: Vec<String>,
    /// Whether `table ip6 amwall` existed before, when the nft script
    /// replaces it (`None`: the script leaves IPv6 alone).
    #[serde(default)]
    pub had_table6: Option<bool>,
    /// iptables merged mode's jumps: the rollback then restores only
    /// amwall's chains and jumps, and leaves every other chain as it is.
    #[serde(default)]
    pub merged: Vec<Jump>,
    /// The same for ip6tables (merged mode's `rules6`).
    #[serde(default)]
    pub merged6: Vec<Jump>,
    /// This apply's own name, so a watchdog guards the apply that started
    /// it and never a later one that happens to look the same.
    #[serde(default)]
    pub id: String,
    /// The boot the rules were loaded in: after a reboot they are gone, and
    /// restoring the snapshot would overwrite what the boot loaded.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// firewalld: amwall's files before and after; `had_table` then speaks
    /// of the source-port table.
    #[serde(default)]
    pub firewalld: Option<FirewalldPending>,
    /// ufw: its files before, and what the load runs.
    #[serde(default)]
    pub ufw: Option<UfwPending>,
}

impl Pending {
    /// The nft table this apply replaces.
    fn nft_table(&self) -> &'static str {
        if self.firewalld.is_some() {
            crate::render::firewalld::SPORT_TABLE
        } else {
            "amwall"
        }
    }
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

/// The state files. `pending.json` is the record of the apply waiting for
/// confirmation; `result.json` (written before `pending.json` goes) says how
/// it ended, so "pending" means: record present, result absent.
const PENDING: &str = "pending.json";
const RESULT: &str = "result.json";
const LOG: &str = "result.log";
const CONFIRMED: &str = "confirmed";
const ROLLBACK_NOW: &str = "rollback-now";
/// Space kept for the outcome: removed just before the outcome is written,
/// so a disk that fills while the apply waits cannot keep it from being
/// recorded.
const RESERVE: &str = "reserve";
const RESERVE_BYTES: usize = 64 << 10;

/// The files of one state directory.
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }
    fn real(&self) -> Real {
        Real::new(self.dir.clone(), None)
    }
    pub fn pending(&self) -> Option<Pending> {
        pending(&self.real())
    }
    pub fn outcome(&self) -> Option<Outcome> {
        outcome(&self.real())
    }
    /// The log of the last rollback (what ran, what the tools said).
    pub fn log(&self) -> String {
        self.real().read(LOG).unwrap_or_default()
    }
}

fn pending(sys: &dyn System) -> Option<Pending> {
    serde_json::from_str(&sys.read(PENDING)?).ok()
}

fn outcome(sys: &dyn System) -> Option<Outcome> {
    serde_json::from_str(sys.read(RESULT)?.trim()).ok()
}

/// The apply still waiting for confirmation, if any.
fn active(sys: &dyn System) -> Option<Pending> {
    pending(sys).filter(|_| sys.read(RESULT).is_none())
}

fn failed(what: impl Into<String>) -> Error {
    Error::Usage(what.into())
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
pub fn admin_verdict(kind: Backend, conn: &AdminConn) -> Result<(Verdict, String)> {
    let (text, what) = match kind {
        Backend::Nft => (tool(&["nft", "list", "ruleset"], None)?, "nft list ruleset"),
        Backend::Iptables => (
            if conn.client.is_ipv6() {
                tool(&["ip6tables-save"], None)?
            } else {
                tool(&["iptables-save"], None)?
            },
            "iptables-save",
        ),
    };
    let f = RulesFile::parse(&format!("(live {what})"), text).map_err(Error::Input)?;
    let sets = if kind == Backend::Iptables {
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
pub struct Options<'a> {
    pub timeout: Duration,
    /// The admin's connection; a new one like it must still pass.
    pub admin: Option<AdminConn>,
    /// Load even when the admin's next login would be refused.
    pub force: bool,
    /// The program to start as watchdog (`amwall apply --watchdog DIR`).
    pub watchdog_exe: PathBuf,
    /// iptables, owned: replace the tables even when they hold rules amwall
    /// did not write (the admin said `--iptables owned`). Without it such
    /// rules refuse the apply before anything is loaded.
    pub replace_foreign: bool,
    /// The plan and this host's name: after the load, the host's whole live
    /// ruleset (every table, whoever wrote it) must pass this host's flows,
    /// or the apply rolls back (unless `force`).
    pub flows: Option<(&'a Plan, &'a str)>,
}

/// What another table or chain does to this host's flows, judged on the
/// live ruleset after the load: one line per flow that does not pass, with
/// the rule, and whose rule it is.
pub fn live_flow_check(sys: &dyn System, plan: &Plan, host: &str) -> Result<Vec<String>> {
    let mut files =
        vec![RulesFile::parse("(live iptables-save)", sys.iptables_save()?).map_err(Error::Input)?];
    // iptables-nft's own tables are what iptables-save showed; the rest of
    // nft's ruleset (firewalld's, an admin's, amwall's nft table) adds to it.
    // No nft on the host: nothing to add.
    if let Ok(nft) = sys.nft_ruleset() {
        let other = restore::without_iptables_tables(&nft);
        if !other.trim().is_empty() {
            files.push(RulesFile::parse("(live nft list ruleset)", other).map_err(Error::Input)?);
        }
    }
    let sets = sys
        .ipset_save()
        .ok()
        .and_then(|t| crate::netfilter::ipset::parse("(live ipset save)", &t).ok());
    let hr = HostRules::new(files, sets);
    let opts = crate::check::Options {
        open: false,
        redundant: false,
    };
    let r = crate::check::check(plan, &[(host.to_string(), hr)], opts);
    let mut out = Vec::new();
    for f in &r.flows {
        let Some(x) = f
            .result
            .findings
            .iter()
            .find(|x| x.certain && x.host == host)
        else {
            continue;
        };
        let crate::check::Problem::Blocked {
            at,
            chain_path,
            manager,
            ..
        } = &x.problem
        else {
            continue;
        };
        out.push(format!(
            "flow #{} ({} {}, {} {}) is blocked at {at} `{}` in {} ({})",
            f.flow.id,
            f.flow.operation.name(),
            f.flow.who(),
            f.flow.proto,
            f.flow.dport,
            at.text,
            manager,
            chain_path.join(" → ")
        ));
    }
    Ok(out)
}

/// What `apply` did, for the CLI to say.
#[derive(Debug)]
pub struct Applied {
    pub pending: Pending,
    pub notes: Vec<String>,
}

/// Check, snapshot, record, start the watchdog, load, judge. On any error
/// before the load nothing has changed; an error after it (the admin would
/// be locked out, the watchdog died) rolls back at once.
pub fn apply(state: &StateDir, p: &Payload, o: &Options) -> Result<Applied> {
    apply_with(
        &Real::new(state.dir.clone(), Some(o.watchdog_exe.clone())),
        p,
        o,
    )
}

/// What manages this host's firewall, and so which backend `apply` uses
/// when none is given (see [`detect::detect`]).
pub fn detect(state: &StateDir) -> Result<Detected> {
    detect::detect(&state.real())
}

/// [`detect`] on any [`System`].
pub fn detect_with(sys: &dyn System) -> Result<Detected> {
    detect::detect(sys)
}

/// `apply` on any [`System`].
pub fn apply_with(sys: &dyn System, p: &Payload, o: &Options) -> Result<Applied> {
    let _lock = sys.lock()?;
    let mut notes: Vec<String> = recover(sys).into_iter().collect();
    if let Some(pend) = active(sys) {
        return Err(failed(format!(
            "an apply of {}'s rules is still waiting for confirmation in {}{}: \
             `amwall apply --confirm` or `amwall apply --rollback` first",
            pend.host,
            sys.place(),
            if sys.watchdog_alive() {
                ""
            } else {
                " (its watchdog is gone; `--rollback` restores the saved rules itself)"
            }
        )));
    }
    for f in [PENDING, CONFIRMED, ROLLBACK_NOW, RESULT, LOG] {
        sys.remove(f);
    }
    refuse_foreign(sys, p, o)?;
    // 1. The kernel's own dry run: a file it refuses changes nothing. (An
    //    iptables file that names ipsets can only be tried once they exist:
    //    see step 5.)
    if (p.kind == Backend::Nft || p.ipset.is_none()) && !p.rules.trim().is_empty() {
        sys.dry_run(p.kind, &p.rules)?;
    }
    //    The same for the IPv6 file, which may name `family inet6` sets.
    if let Some(r6) = &p.rules6 {
        if p.ipset.is_none() {
            sys.dry_run6(r6)?;
        }
    }
    // 2. Snapshot what the load replaces, on disk before anything changes:
    //    this is also the probe that the state directory takes writes.
    let pend = snapshot(sys, p, o).map_err(|e| {
        failed(format!(
            "cannot keep the previous rules in {}, so nothing was loaded: {e}",
            sys.place()
        ))
    })?;
    // 3.–4. The watchdog, in its own session so it outlives this one, and
    //    the second guard; both before the load, so the load is guarded too.
    if let Err(e) = sys.spawn_watchdog(&pend.id) {
        sys.remove(PENDING);
        sys.remove(RESERVE);
        return Err(failed(format!(
            "could not start the watchdog, nothing was loaded: {e}"
        )));
    }
    match sys.second_guard(pend.deadline) {
        Ok(n) => notes.push(n),
        Err(why) => notes.push(format!(
            "no systemd timer as second guard ({why}); should the watchdog die, \
             the next `amwall apply` (any mode) rolls back once the deadline has passed"
        )),
    }
    // 5. Load: nft -f is one transaction; ipsets first (the rules name them),
    //    then iptables-restore.
    let loaded = match p.kind {
        _ if pend.ufw.is_some() => ufw::load(sys, pend.ufw.as_ref().expect("checked")),
        Backend::Nft if pend.firewalld.is_some() => (|| {
            firewalld::load(sys, pend.firewalld.as_ref().expect("checked"))?;
            if !replaces_ip6_table(&p.rules, pend.nft_table()) {
                sys.nft_restore("ip6", pend.nft_table(), None)?;
            }
            if p.rules.trim().is_empty() {
                sys.nft_restore("ip", pend.nft_table(), None)
            } else {
                sys.nft_load(&p.rules)
            }
        })(),
        Backend::Nft => sys.nft_load(&p.rules),
        Backend::Iptables => (|| {
            if let Some(sets) = &p.ipset {
                sys.ipset_restore(sets)?;
                sys.dry_run(p.kind, &p.rules)?;
                if let Some(r6) = &p.rules6 {
                    sys.dry_run6(r6)?;
                }
            }
            if p.merged.is_empty() {
                sys.iptables_restore(&p.rules)?;
                match &p.rules6 {
                    Some(r6) => sys.ip6tables_restore(r6),
                    None => Ok(()),
                }
            } else {
                // The snapshot just taken is the live state (we hold the lock).
                let live = sys.read("previous.rules").unwrap_or_default();
                sys.iptables_restore_noflush(&merged_load(&p.rules, &p.merged, &live))?;
                match &p.rules6 {
                    Some(r6) => {
                        let live6 = sys.read("previous6.rules").unwrap_or_default();
                        sys.ip6tables_restore_noflush(&merged_load(r6, &p.merged6, &live6))
                    }
                    None => Ok(()),
                }
            }
        })(),
    };
    if let Err(e) = loaded {
        return Err(abort(sys, &pend, "loading failed", e.to_string()));
    }
    judge_live(sys, p, o, &pend, &mut notes)?;
    // 7. Loaded rules with nobody to take them back are not left behind.
    if !sys.watchdog_alive() {
        return Err(abort(
            sys,
            &pend,
            "the watchdog died during the load",
            "nothing would roll back at the deadline".into(),
        ));
    }
    Ok(Applied {
        pending: pend,
        notes,
    })
}

/// Step 0 of `apply`: never remove rules we did not write unless told to:
/// replacing whole tables takes Docker's, fail2ban's and the admin's along.
fn refuse_foreign(sys: &dyn System, p: &Payload, o: &Options) -> Result<()> {
    if let Some(fp) = &p.firewalld {
        firewalld::refuse(sys, fp, &p.host, o.force)?;
    }
    if let Some(up) = &p.ufw {
        return ufw::refuse(sys, up, &p.host);
    }
    if p.kind == Backend::Iptables && p.merged.is_empty() && !o.replace_foreign {
        let mut found = restore::foreign_rules(&sys.iptables_save()?, &tables_of(&p.rules));
        if let Some(r6) = &p.rules6 {
            found.extend(
                restore::foreign_rules(&sys.ip6tables_save()?, &tables_of(r6))
                    .into_iter()
                    .map(|r| format!("ip6 {r}")),
            );
        }
        if !found.is_empty() {
            let shown: Vec<&str> = found.iter().take(8).map(String::as_str).collect();
            return Err(Error::Usage(format!(
                "{}'s iptables tables hold {} rule(s) and chain(s) amwall did not write, which \
                 loading {}.rules would remove:\n  {}{}\nnothing was loaded: `--iptables merged` \
                 loads amwall's chains beside them; `--iptables owned` replaces them anyway",
                p.host,
                found.len(),
                p.host,
                shown.join("\n  "),
                if found.len() > shown.len() {
                    "\n  ..."
                } else {
                    ""
                }
            )));
        }
    }
    Ok(())
}

/// Steps 6 of `apply`, on the live ruleset after the load: would the
/// admin's next login still pass, and do this host's flows pass every
/// table and chain, whoever wrote them? A refusal rolls back.
fn judge_live(
    sys: &dyn System,
    p: &Payload,
    o: &Options,
    pend: &Pending,
    notes: &mut Vec<String>,
) -> Result<()> {
    // 6. Would the admin's next login still pass? Judge the live ruleset
    //    (ours and everything else loaded), as the kernel now has it.
    if let Some(conn) = &o.admin {
        match sys.admin_verdict(p.kind, conn) {
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
                let why = format!(
                    "a new connection like yours ({pkt}) would be {} by these rules \
                     (check `[management] from` in the topology, or `amwall explain`)",
                    match v {
                        Verdict::Mixed => "partly dropped",
                        _ => "dropped",
                    }
                );
                return Err(abort(sys, pend, "refused", why));
            }
            Err(e) => notes.push(format!("could not judge your connection's fate: {e}")),
        }
    }
    // 6b. Do this host's flows pass the whole live ruleset, whoever's
    //     tables and chains are in it?
    if let Some((plan, host)) = o.flows {
        match live_flow_check(sys, plan, host) {
            Ok(blocked) if blocked.is_empty() => {}
            Ok(blocked) if o.force => notes.extend(
                blocked
                    .into_iter()
                    .map(|b| format!("{b}; loaded anyway (--force)")),
            ),
            Ok(blocked) => {
                return Err(abort(
                    sys,
                    pend,
                    "refused",
                    format!(
                        "with these rules loaded, the host still blocks Amanda:\n  {}\n\
                         (change the rule named, or load anyway with --force)",
                        blocked.join("\n  ")
                    ),
                ))
            }
            Err(e) => notes.push(format!(
                "could not check this host's flows on the live ruleset: {e}"
            )),
        }
    }
    Ok(())
}

/// Steps 2 of `apply`: the snapshot files, the reserve and the pending
/// record, all durable. Nothing in the kernel changes here.
fn snapshot(sys: &dyn System, p: &Payload, o: &Options) -> Result<Pending> {
    let mut pend = Pending {
        kind: p.kind,
        host: p.host.clone(),
        deadline: 0,
        tables: vec![],
        sets: vec![],
        had_table: false,
        tables6: vec![],
        had_table6: None,
        merged: p.merged.clone(),
        merged6: p.merged6.clone(),
        boot_id: sys.boot_id(),
        firewalld: None,
        ufw: None,
        id: format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ),
    };
    match p.kind {
        _ if p.ufw.is_some() => {
            pend.ufw = Some(ufw::snapshot(sys, p.ufw.as_ref().expect("checked"))?);
        }
        Backend::Nft => {
            if let Some(fp) = &p.firewalld {
                pend.firewalld = Some(firewalld::snapshot(sys, fp)?);
            }
            let saved = sys.nft_table("ip", pend.nft_table())?;
            pend.had_table = saved.is_some();
            sys.write("previous.nft", saved.as_deref().unwrap_or(""))?;
            // firewalld mode always: a `table ip6 amwall_sport` an earlier
            // apply loaded goes when this one has none.
            if pend.firewalld.is_some() || replaces_ip6_table(&p.rules, pend.nft_table()) {
                let saved = sys.nft_table("ip6", pend.nft_table())?;
                pend.had_table6 = Some(saved.is_some());
                sys.write("previous6.nft", saved.as_deref().unwrap_or(""))?;
            }
        }
        Backend::Iptables => {
            pend.tables = tables_of(&p.rules);
            sys.write("previous.rules", &sys.iptables_save()?)?;
            if let Some(r6) = &p.rules6 {
                pend.tables6 = tables_of(r6);
                sys.write("previous6.rules", &sys.ip6tables_save()?)?;
            }
            if let Some(sets) = &p.ipset {
                let saved = sys.ipset_save()?;
                let existing = set_names(&saved);
                pend.sets = sets_of(sets)
                    .into_iter()
                    .map(|s| {
                        let e = existing.contains(&s);
                        (s, e)
                    })
                    .collect();
                sys.write("previous.ipset", &saved)?;
            }
        }
    }
    sys.write(RESERVE, &" ".repeat(RESERVE_BYTES))?;
    pend.deadline = sys.now() + o.timeout.as_secs().max(1);
    sys.write(
        PENDING,
        &serde_json::to_string_pretty(&pend).expect("plain data"),
    )?;
    Ok(pend)
}

/// Whether an nft script of amwall's replaces `table ip6 amwall` too
/// (`HOST.nft` since the IPv6 policy): the snapshot must then cover it.
fn replaces_ip6_table(rules: &str, table: &str) -> bool {
    let delete = format!("delete table ip6 {table}");
    rules.lines().any(|l| l.trim_end() == delete)
}

/// A failure after the load began: the previous rules back, the outcome
/// recorded (the watchdog sees it and leaves), the error to report.
fn abort(sys: &dyn System, pend: &Pending, what: &str, why: String) -> Error {
    let rb = rollback(sys, pend);
    let (outcome, back) = match &rb {
        Ok(None) => (
            Outcome::RolledBack,
            "the previous rules are back".to_string(),
        ),
        Ok(Some(n)) => (
            Outcome::RolledBack,
            format!("the previous rules are back ({n})"),
        ),
        Err(r) => (Outcome::RollbackFailed, format!("ROLLBACK FAILED: {r}")),
    };
    finish(sys, outcome, &format!("{what}: {why}; {back}\n"));
    failed(format!("{what}, {back}: {why}"))
}

/// Put back what `pend` replaced. Safe to run twice (a rollback interrupted
/// by a crash is simply done again): every step sets a state, none toggles.
fn rollback(sys: &dyn System, pend: &Pending) -> Result<Option<String>> {
    let gone = |f: &str| failed(format!("the snapshot {}/{f} is missing", sys.place()));
    if let Some(up) = &pend.ufw {
        return ufw::rollback(sys, up);
    }
    match pend.kind {
        Backend::Nft => {
            if let Some(fp) = &pend.firewalld {
                firewalld::rollback(sys, fp)?;
            }
            let saved = if pend.had_table {
                Some(
                    sys.read("previous.nft")
                        .ok_or_else(|| gone("previous.nft"))?,
                )
            } else {
                None
            };
            sys.nft_restore("ip", pend.nft_table(), saved.as_deref())?;
            if let Some(had) = pend.had_table6 {
                let saved = if had {
                    Some(
                        sys.read("previous6.nft")
                            .ok_or_else(|| gone("previous6.nft"))?,
                    )
                } else {
                    None
                };
                sys.nft_restore("ip6", pend.nft_table(), saved.as_deref())?;
            }
        }
        Backend::Iptables => {
            let saved = sys
                .read("previous.rules")
                .ok_or_else(|| gone("previous.rules"))?;
            if pend.merged.is_empty() {
                sys.iptables_restore(&iptables_rollback(&saved, &pend.tables))?;
                if !pend.tables6.is_empty() {
                    let saved6 = sys
                        .read("previous6.rules")
                        .ok_or_else(|| gone("previous6.rules"))?;
                    sys.ip6tables_restore(&iptables_rollback(&saved6, &pend.tables6))?;
                }
            } else {
                let text = merged_rollback(&saved, &sys.iptables_save()?, &pend.tables);
                if !text.is_empty() {
                    sys.iptables_restore_noflush(&text)?;
                }
                if !pend.tables6.is_empty() {
                    let saved6 = sys
                        .read("previous6.rules")
                        .ok_or_else(|| gone("previous6.rules"))?;
                    let text = merged_rollback(&saved6, &sys.ip6tables_save()?, &pend.tables6);
                    if !text.is_empty() {
                        sys.ip6tables_restore_noflush(&text)?;
                    }
                }
            }
            if !pend.sets.is_empty() {
                let saved = sys
                    .read("previous.ipset")
                    .ok_or_else(|| gone("previous.ipset"))?;
                let text = ipset_rollback(&saved, &pend.sets);
                if !text.is_empty() {
                    sys.ipset_restore(&text)?;
                }
                let now = set_names(&sys.ipset_save()?);
                for (name, _) in pend.sets.iter().filter(|(n, e)| !*e && now.contains(n)) {
                    sys.ipset_destroy(name)?;
                }
            }
        }
    }
    Ok(None)
}

/// Record how the pending apply ended. Best effort on a full disk: the
/// reserve goes first to make room, and the pending record goes in any case
/// (removing needs no space), so the directory never stays "waiting".
fn finish(sys: &dyn System, outcome: Outcome, log: &str) {
    sys.remove(RESERVE);
    let _ = sys.write(LOG, log);
    let _ = sys.write(
        RESULT,
        &format!("{}\n", serde_json::to_string(&outcome).expect("plain")),
    );
    sys.remove(PENDING);
    sys.remove(CONFIRMED);
    sys.remove(ROLLBACK_NOW);
}

/// What to do with a pending apply, decided from the request files, the
/// deadline, or `force`. Call with the state lock held.
fn settle(sys: &dyn System, force: Option<Outcome>) -> Option<Outcome> {
    let pend = active(sys)?;
    let confirm = match force {
        Some(Outcome::Confirmed) => true,
        Some(_) => false,
        None if sys.read(CONFIRMED).is_some() => true,
        None if sys.read(ROLLBACK_NOW).is_some() || sys.now() >= pend.deadline => false,
        None => return None,
    };
    // firewalld's confirmation writes the permanent files; should that
    // fail, the old ones stay, and the runtime goes back to them too.
    // ufw's the same; a change made to them meanwhile is kept.
    let kept = match (confirm, &pend.firewalld, &pend.ufw) {
        (true, Some(fp), _) => firewalld::keep(sys, fp)
            .map(|_| None)
            .map_err(|e| format!("keeping firewalld's files failed ({e}), so ")),
        (true, _, Some(up)) => {
            ufw::keep(sys, up).map_err(|e| format!("keeping ufw's files failed ({e}), so "))
        }
        _ => Ok(None),
    };
    if confirm {
        if let Ok(note) = &kept {
            let log = match note {
                Some(n) => format!("confirmed; {n}\n"),
                None => "confirmed\n".into(),
            };
            finish(sys, Outcome::Confirmed, &log);
            return Some(Outcome::Confirmed);
        }
    }
    let why = kept.err().unwrap_or_default();
    let o = match rollback(sys, &pend) {
        Ok(note) => {
            let note = note.map_or(String::new(), |n| format!(" ({n})"));
            finish(
                sys,
                Outcome::RolledBack,
                &format!("{why}rolled back{note}\n"),
            );
            Outcome::RolledBack
        }
        Err(e) => {
            finish(
                sys,
                Outcome::RollbackFailed,
                &format!("{why}rollback failed: {e}\n"),
            );
            Outcome::RollbackFailed
        }
    };
    Some(o)
}

/// What every invocation does first, with the state lock held: a pending
/// apply whose watchdog is dead is finished here — rolled back when its
/// deadline has passed (or a rollback was asked for), kept when a
/// confirmation was written in time, dropped when it belongs to an earlier
/// boot. Returns a note when it acted.
fn recover(sys: &dyn System) -> Option<String> {
    let pend = active(sys)?;
    if sys.watchdog_alive() {
        return None;
    }
    if pend.boot_id.is_some() && sys.boot_id().is_some() && pend.boot_id != sys.boot_id() {
        sys.remove(PENDING);
        sys.remove(RESERVE);
        return Some(format!(
            "an apply of {}'s rules from before the last reboot was never confirmed; \
             the reboot already replaced its rules, so it is dropped",
            pend.host
        ));
    }
    Some(match settle(sys, None)? {
        Outcome::Confirmed => format!("the confirmation of {}'s rules is recorded", pend.host),
        Outcome::RolledBack => format!(
            "an apply of {}'s rules was past its deadline and its watchdog was gone: \
             the previous rules are back",
            pend.host
        ),
        Outcome::RollbackFailed => format!(
            "an apply of {}'s rules was past its deadline and its watchdog was gone, \
             and the rollback FAILED: {}",
            pend.host,
            sys.read(LOG).unwrap_or_default().trim()
        ),
    })
}

/// The watchdog: wait for a confirmation or a rollback request until the
/// deadline; roll back unless confirmed. Records the outcome.
pub fn watchdog(state: &StateDir) -> Result<Outcome> {
    let _alive = system::hold_watchdog_lock(&state.dir)?;
    let id = std::env::var(system::APPLY_ID_ENV).ok();
    std::env::remove_var(system::APPLY_ID_ENV);
    watchdog_with(&state.real(), id.as_deref())
}

/// `watchdog` on any [`System`]; the caller holds the liveness lock. With
/// `id`, only the apply of that id is guarded (the one that started us);
/// without (a watchdog started by the systemd timer), whichever is pending.
pub fn watchdog_with(sys: &dyn System, id: Option<&str>) -> Result<Outcome> {
    let pend = active(sys)
        .filter(|p| id.map_or(true, |id| p.id == id))
        .ok_or_else(|| failed(format!("no pending apply in {}", sys.place())))?;
    loop {
        // The apply that started us gave up (and rolled back itself), or
        // someone finished for us.
        if active(sys).as_ref() != Some(&pend) {
            return Ok(outcome(sys).unwrap_or(Outcome::RolledBack));
        }
        let due = sys.read(CONFIRMED).is_some()
            || sys.read(ROLLBACK_NOW).is_some()
            || sys.now() >= pend.deadline;
        if due {
            // Under the lock, so no apply is half way through its load.
            if let Ok(_lock) = sys.lock() {
                if let Some(o) = settle(sys, None) {
                    return Ok(o);
                }
            }
        }
        sys.sleep(Duration::from_millis(100));
    }
}

/// Ask for the pending apply to be kept (`confirm`) or rolled back now. The
/// watchdog does it when it lives; otherwise this does it at once, from the
/// snapshot on disk. A confirmation at or after the deadline is a rollback:
/// the deadline is the promise the admin relies on when locked out.
pub fn request(state: &StateDir, confirm: bool) -> Result<()> {
    request_with(&state.real(), confirm)
}

/// `request` on any [`System`].
pub fn request_with(sys: &dyn System, confirm: bool) -> Result<()> {
    let _lock = sys.lock()?;
    // An overdue apply without watchdog is rolled back first: a confirmation
    // after the deadline is too late, the deadline is the promise.
    let recovered = recover(sys);
    if active(sys).is_none() {
        return Err(failed(format!(
            "no apply is waiting for confirmation in {}{}",
            sys.place(),
            match (recovered, outcome(sys)) {
                (Some(note), _) => format!(": {note}"),
                (None, o) => match o {
                    Some(Outcome::RolledBack) => " (the last one was rolled back)",
                    Some(Outcome::Confirmed) => " (the last one was confirmed)",
                    Some(Outcome::RollbackFailed) => " (the last rollback failed: see result.log)",
                    None => "",
                }
                .to_string(),
            }
        )));
    }
    let late = active(sys).is_some_and(|p| sys.now() >= p.deadline);
    // Too late to confirm: the rollback is due (the watchdog does it, or the
    // wait that follows does, should the watchdog be gone by then).
    let confirm = confirm && !late;
    let want = if confirm {
        Outcome::Confirmed
    } else {
        Outcome::RolledBack
    };
    if !sys.watchdog_alive() {
        settle(sys, Some(want));
        return Ok(());
    }
    if !late {
        sys.write(if confirm { CONFIRMED } else { ROLLBACK_NOW }, "")?;
    }
    Ok(())
}

/// Wait up to `limit` for the outcome. Should the watchdog die meanwhile,
/// its work (a request written, or the deadline) is done here.
pub fn wait_outcome(state: &StateDir, limit: Duration) -> Option<Outcome> {
    wait_outcome_with(&state.real(), limit)
}

/// `wait_outcome` on any [`System`].
pub fn wait_outcome_with(sys: &dyn System, limit: Duration) -> Option<Outcome> {
    let end = sys.now() + limit.as_secs();
    loop {
        if let Some(o) = outcome(sys) {
            return Some(o);
        }
        if active(sys).is_some() && !sys.watchdog_alive() {
            if let Ok(_lock) = sys.lock() {
                let _ = recover(sys);
            }
        }
        if sys.now() >= end {
            return None;
        }
        sys.sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_connection_parses() {
        let c = AdminConn::from_env_value("192.0.2.9 51234 192.0.2.2 22").unwrap();
        assert_eq!(c.port, 22);
        assert_eq!(c.client.to_string(), "192.0.2.9");
        assert!(AdminConn::from_env_value("garbage").is_none());
    }
}
