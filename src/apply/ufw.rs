//! apply's ufw steps.
//!
//! ufw changes its files and its running chains together: `ufw allow`
//! writes /etc/ufw/user.rules (and user6.rules) and inserts the rule live.
//! So "running first, configuration only on confirm" is done as for
//! firewalld: install amwall's before.init hook when it changes (NAT and
//! the amanda helper, which ufw has no command for), run amwall's `ufw`
//! commands, reload when the hook changed (ufw then runs the hook's `stop`
//! and `start`), keep the files ufw wrote as the applied ones, and put the
//! previous files back at once. The chains keep the new rules; what a boot
//! or anyone's `ufw reload` loads is the previous configuration until the
//! admin confirms. A confirmation writes the applied files (no reload: the
//! chains already are that); a rollback runs the applied hook's `stop`
//! (the previous hook, ufw's own, knows nothing of amwall's chains), puts
//! the previous files back and reloads.
//!
//! A `ufw` command the admin runs while the apply waits writes into the
//! previous files. A confirmation then does not overwrite them: amwall's
//! commands run once more on top (ufw skips a rule it has) and ufw reloads,
//! so the admin's change and amwall's rules both stay. A rollback restores
//! the snapshot, and so undoes such a change too (it is logged).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{failed, System};
use crate::diag::{Error, Result};
use crate::render::UFW_MARKER;

/// ufw's files an apply changes, and so keeps: its rules for IPv4 and IPv6
/// (what `ufw allow` writes) and the hook ufw runs around them.
pub const FILES: [&str; 3] = ["user.rules", "user6.rules", "before.init"];
const HOOK: &str = "before.init";
/// Where Debian's package keeps ufw's own before.init: /etc/ufw's copy is
/// made from it by the package's postinst, so byte-equal means untouched.
pub const STOCK_HOOK: &str = "/usr/share/ufw/before.init";
/// ufw's configuration directory; ufw itself knows no other.
pub const CONFIG: &str = "/etc/ufw";

/// One of ufw's files: its text and its permission bits (the hook runs
/// only when executable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UfwFile {
    pub text: String,
    pub mode: u32,
}

/// What ufw gets.
#[derive(Debug, Clone)]
pub struct UfwPayload {
    pub config: PathBuf,
    /// The arguments of each `ufw` command (`render::ufw_argv`).
    pub commands: Vec<Vec<String>>,
    /// amwall's before.init hook, when the host needs NAT or the helper.
    pub hook: Option<String>,
    /// ufw's own before.init as the package ships it, when found.
    pub stock: Option<String>,
}

/// The pending record's part for ufw. The files' texts are state files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UfwPending {
    pub config: PathBuf,
    pub commands: Vec<Vec<String>>,
    /// The files there were before, with their modes.
    pub old: Vec<(String, u32)>,
    /// The hook as the load makes it: `None` unchanged, `Some(None)` removed.
    pub hook: Option<Option<UfwFile>>,
    /// The amwall hook on disk once the load is done, whose `stop` takes
    /// amwall's nat and raw chains out again.
    pub stop_hook: Option<String>,
}

fn ours(text: &str) -> bool {
    text.contains(UFW_MARKER)
}

fn state_name(age: &str, file: &str) -> String {
    format!("ufw.{age}.{file}")
}

/// The state file listing the files as the load left them; written last,
/// so its presence says the load finished.
const LOADED: &str = "ufw.loaded.json";

/// How the hook changes, or why it must not: an admin's own before.init is
/// never replaced. `None`: unchanged.
fn hook_change(
    now: &BTreeMap<String, UfwFile>,
    up: &UfwPayload,
) -> Result<Option<Option<UfwFile>>> {
    let cur = now.get(HOOK);
    let is_ours = cur.is_some_and(|f| ours(&f.text));
    let stock = |f: &UfwFile| up.stock.as_deref() == Some(f.text.as_str());
    match &up.hook {
        Some(text) => {
            if cur.is_some_and(|f| !ours(&f.text) && !stock(f)) {
                return Err(failed(format!(
                    "{} is not ufw's own (as {STOCK_HOOK}) nor amwall's, and this host needs \
                     amwall's hook there for NAT or the amanda helper; nothing was loaded: add \
                     what `amwall plan --ufw`'s HOST.ufw-before.init does to it by hand",
                    up.config.join(HOOK).display()
                )));
            }
            let want = UfwFile {
                text: text.clone(),
                mode: 0o755,
            };
            Ok((cur != Some(&want)).then_some(Some(want)))
        }
        // amwall's hook from an earlier apply goes: ufw's own comes back.
        None if is_ours => Ok(Some(up.stock.as_ref().map(|t| UfwFile {
            text: t.clone(),
            mode: 0o640,
        }))),
        None => Ok(None),
    }
}

/// Step 0: ufw is active, and the hook would replace nothing of the admin's.
pub(super) fn refuse(sys: &dyn System, up: &UfwPayload, host: &str) -> Result<()> {
    let status = sys.ufw(&["status"]).map_err(|e| {
        failed(format!(
            "cannot ask ufw whether it is active ({e}); nothing was loaded"
        ))
    })?;
    if !status.lines().any(|l| l.trim() == "Status: active") {
        return Err(failed(format!(
            "ufw is not active here (`ufw status`: {}); nothing was loaded: enable ufw \
             (`ufw enable`, with the admin's own ssh rule first), then apply again, or run \
             {host}.ufw.sh once it is",
            status.lines().next().unwrap_or("").trim()
        )));
    }
    ipv6_enabled(up)?;
    hook_change(&sys.ufw_files(&up.config)?, up).map(|_| ())
}

/// ufw refuses every IPv6 rule ("Adding IPv6 rule failed: IPv6 not
/// enabled", ufw's backend_iptables.py) unless its defaults file, beside
/// its configuration directory (/etc/default/ufw), says `IPV6=yes`: when
/// amwall's commands include IPv6 ones, that is asked before anything is
/// loaded rather than found halfway through the commands.
fn ipv6_enabled(up: &UfwPayload) -> Result<()> {
    let v6 = up
        .commands
        .iter()
        .any(|c| c.iter().any(|w| w.parse::<std::net::Ipv6Addr>().is_ok()));
    let Some(etc) = up.config.parent().filter(|_| v6) else {
        return Ok(());
    };
    let defaults = etc.join("default").join("ufw");
    let text = crate::input::read_text(&defaults)?;
    if ipv6_said(&text) {
        return Ok(());
    }
    Err(failed(format!(
        "{} does not say IPV6=yes, and Amanda's flows to or through this host run over IPv6 \
         too; nothing was loaded: set IPV6=yes there, run `ufw reload`, then apply again",
        defaults.display()
    )))
}

/// Whether ufw's defaults file enables IPv6: the last `IPV6=` line decides,
/// as the shell that sources it would, quotes allowed.
fn ipv6_said(defaults: &str) -> bool {
    defaults
        .lines()
        .filter_map(|l| l.trim().strip_prefix("IPV6="))
        .next_back()
        .is_some_and(|v| v.trim().trim_matches(|c| c == '"' || c == '\'') == "yes")
}

/// Step 2: ufw's files as they are, in the state directory before anything
/// changes.
pub(super) fn snapshot(sys: &dyn System, up: &UfwPayload) -> Result<UfwPending> {
    let now = sys.ufw_files(&up.config)?;
    let hook = hook_change(&now, up)?;
    let mut old = Vec::new();
    for (name, f) in &now {
        sys.write(&state_name("old", name), &f.text)?;
        old.push((name.clone(), f.mode));
    }
    let stop_hook = match &hook {
        Some(Some(f)) => Some(&f.text),
        Some(None) => None,
        None => now.get(HOOK).map(|f| &f.text),
    }
    .filter(|t| ours(t))
    .cloned();
    Ok(UfwPending {
        config: up.config.clone(),
        commands: up.commands.clone(),
        old,
        hook,
        stop_hook,
    })
}

fn argv(c: &[String]) -> Vec<&str> {
    c.iter().map(String::as_str).collect()
}

/// Make ufw's files the `age` ones ("old": the snapshot; "new": as the load
/// left them). Setting a state, so running it twice is harmless.
fn set_files(sys: &dyn System, p: &UfwPending, age: &str) -> Result<()> {
    let list: Vec<(String, u32)> = if age == "old" {
        p.old.clone()
    } else {
        let l = sys
            .read(LOADED)
            .ok_or_else(|| failed("the load of ufw's rules did not finish"))?;
        serde_json::from_str(&l).map_err(|e| failed(format!("{}/{LOADED}: {e}", sys.place())))?
    };
    let now = sys.ufw_files(&p.config)?;
    for name in FILES {
        let path = p.config.join(name);
        match list.iter().find(|(n, _)| n == name) {
            Some((_, mode)) => {
                let text = sys.read(&state_name(age, name)).ok_or_else(|| {
                    failed(format!(
                        "the snapshot {}/{} is missing",
                        sys.place(),
                        state_name(age, name)
                    ))
                })?;
                let want = UfwFile { text, mode: *mode };
                if now.get(name) != Some(&want) {
                    sys.ufw_put(&path, Some(&want))?;
                }
            }
            None if now.contains_key(name) => sys.ufw_put(&path, None)?,
            None => {}
        }
    }
    Ok(())
}

/// Step 5 for ufw: the hook, the commands, a reload when the hook changed,
/// the applied files kept, the previous ones back on disk. An error leaves
/// the caller to roll back.
pub(super) fn load(sys: &dyn System, p: &UfwPending) -> Result<()> {
    if let Some(h) = &p.hook {
        sys.ufw_put(&p.config.join(HOOK), h.as_ref())?;
    }
    for c in &p.commands {
        sys.ufw(&argv(c))?;
    }
    if p.hook.is_some() {
        sys.ufw(&["reload"])?;
    }
    let after = sys.ufw_files(&p.config)?;
    let mut list = Vec::new();
    for (name, f) in &after {
        sys.write(&state_name("new", name), &f.text)?;
        list.push((name.clone(), f.mode));
    }
    sys.write(LOADED, &serde_json::to_string(&list).expect("plain data"))?;
    set_files(sys, p, "old")
}

/// The rollback's ufw part: amwall's chains out, the previous files back,
/// reloaded. Returns what was undone beyond amwall's own load.
pub(super) fn rollback(sys: &dyn System, p: &UfwPending) -> Result<Option<String>> {
    let changed = changed_meanwhile(sys, p)?;
    if let Some(h) = &p.stop_hook {
        sys.ufw_hook(h, "stop")?;
    }
    set_files(sys, p, "old")?;
    sys.ufw(&["reload"])?;
    Ok(changed
        .map(|c| format!("ufw's {c} changed while the apply waited; the snapshot undoes that too")))
}

/// Which of ufw's files differ from the snapshot while an apply waits (the
/// load put the snapshot back): someone ran ufw meanwhile.
fn changed_meanwhile(sys: &dyn System, p: &UfwPending) -> Result<Option<String>> {
    if sys.read(LOADED).is_none() {
        return Ok(None);
    }
    let now = sys.ufw_files(&p.config)?;
    let mut changed = Vec::new();
    for name in FILES {
        let was = p
            .old
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|_| sys.read(&state_name("old", name)));
        if now.get(name).map(|f| &f.text) != was.as_ref() {
            changed.push(name);
        }
    }
    Ok((!changed.is_empty()).then(|| changed.join(", ")))
}

/// A confirmation: the applied files for good; the chains already have
/// them. When someone changed ufw's files while the apply waited, their
/// change stays and amwall's commands go on top of it.
pub(super) fn keep(sys: &dyn System, p: &UfwPending) -> Result<Option<String>> {
    if sys.read(LOADED).is_none() {
        return Err(failed("the load of ufw's rules did not finish"));
    }
    let Some(changed) = changed_meanwhile(sys, p)? else {
        return set_files(sys, p, "new").map(|_| None);
    };
    let hook_untouched = !changed.contains(HOOK);
    if let (Some(h), true) = (&p.hook, hook_untouched) {
        sys.ufw_put(&p.config.join(HOOK), h.as_ref())?;
    }
    for c in &p.commands {
        sys.ufw(&argv(c))?;
    }
    sys.ufw(&["reload"])?;
    Ok(Some(format!(
        "ufw's {changed} changed while the apply waited: kept, with amwall's rules added to it"
    )))
}

/// ufw's files of [`FILES`] under `config` that exist, bounded like every
/// input.
pub(super) fn read_config(config: &Path) -> Result<BTreeMap<String, UfwFile>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    for name in FILES {
        let path = config.join(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(Error::Io { path, error }),
        };
        if !meta.is_file() {
            return Err(failed(format!(
                "{} is not a plain file; amwall changes only plain files there",
                path.display()
            )));
        }
        let text = crate::input::read_text(&path)?;
        out.insert(
            name.to_string(),
            UfwFile {
                text,
                mode: meta.permissions().mode() & 0o7777,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(hook: Option<&str>) -> UfwPayload {
        UfwPayload {
            config: CONFIG.into(),
            commands: vec![],
            hook: hook.map(str::to_string),
            stock: Some("stock\n".into()),
        }
    }

    fn files(hook: Option<&str>, mode: u32) -> BTreeMap<String, UfwFile> {
        hook.map(|t| {
            (
                HOOK.to_string(),
                UfwFile {
                    text: t.into(),
                    mode,
                },
            )
        })
        .into_iter()
        .collect()
    }

    #[test]
    fn ipv6_is_enabled_only_by_the_last_ipv6_yes() {
        assert!(super::ipv6_said("# x\nIPV6=yes\n"));
        assert!(super::ipv6_said("IPV6=\"yes\"\n"));
        assert!(!super::ipv6_said("IPV6=yes\nIPV6=no\n"));
        assert!(!super::ipv6_said("#IPV6=yes\n"));
        assert!(!super::ipv6_said(""));
    }

    #[test]
    fn the_hook_replaces_only_ufws_own_or_amwalls() {
        let ours = format!("# {UFW_MARKER}\nnew\n");
        let want = Some(Some(UfwFile {
            text: ours.clone(),
            mode: 0o755,
        }));
        let p = payload(Some(&ours));
        assert_eq!(
            hook_change(&files(Some("stock\n"), 0o640), &p).unwrap(),
            want
        );
        assert_eq!(hook_change(&files(None, 0), &p).unwrap(), want);
        let older = format!("# {UFW_MARKER}\nold\n");
        assert_eq!(hook_change(&files(Some(&older), 0o755), &p).unwrap(), want);
        assert_eq!(hook_change(&files(Some(&ours), 0o755), &p).unwrap(), None);
        let e = hook_change(&files(Some("#!/bin/sh\nadmin\n"), 0o755), &p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nor amwall's") && e.contains("nothing was loaded"),
            "{e}"
        );
        // No hook needed: an admin's stays, amwall's earlier one goes.
        let none = payload(None);
        assert_eq!(
            hook_change(&files(Some("#!/bin/sh\nadmin\n"), 0o755), &none).unwrap(),
            None
        );
        assert_eq!(
            hook_change(&files(Some(&older), 0o755), &none).unwrap(),
            Some(Some(UfwFile {
                text: "stock\n".into(),
                mode: 0o640
            }))
        );
    }
}
