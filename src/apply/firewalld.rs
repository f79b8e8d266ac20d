//! apply's firewalld steps.
//!
//! firewalld creates services, ipsets and policies only in its permanent
//! configuration, and only a reload brings them into the runtime. So
//! "runtime first, permanent only on confirm" is done like this: write
//! amwall's new files, let firewalld check them, reload (the runtime now has
//! them), and put the previous files back at once (the permanent
//! configuration is the old one again). A confirmation writes the new files
//! for good — no reload, the runtime already is that; a rollback reloads the
//! old ones; a reboot, or anyone's reload before the confirmation, comes back
//! to the old ones as well.
//!
//! A reload also drops what was changed in the runtime only (`firewall-cmd`
//! without `--permanent`, fail2ban's firewalld actions): apply refuses to
//! reload over such changes unless forced, so it never removes rules it did
//! not write without being told.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{failed, System};
use crate::diag::{Error, Result};
use crate::render::firewalld::{Kind, MARKER};

/// What firewalld gets: amwall's objects for its configuration directory.
#[derive(Debug, Clone)]
pub struct FirewalldPayload {
    /// firewalld's configuration directory (/etc/firewalld).
    pub config: PathBuf,
    /// `DIR/NAME.xml` and its text, as `Plan::firewalld_install` gives them.
    pub objects: Vec<(String, String)>,
}

/// The pending record's part for firewalld: which of amwall's files were
/// there before and which the apply brings; their texts are state files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewalldPending {
    pub config: PathBuf,
    pub old: Vec<String>,
    pub new: Vec<String>,
}

/// A configuration file is amwall's when it carries the marker plan writes.
fn ours(text: &str) -> bool {
    text.contains(MARKER)
}

/// Whether `rel` is `DIR/NAME.xml` with a kind's DIR and a NAME firewalld
/// could load: only such names are read, written or kept in state files.
pub(super) fn valid_rel(rel: &str) -> bool {
    let Some((dir, file)) = rel.split_once('/') else {
        return false;
    };
    let Some(stem) = file.strip_suffix(".xml") else {
        return false;
    };
    Kind::from_dir(dir).is_some()
        && !stem.is_empty()
        && stem.len() <= 64
        && stem.starts_with(|c: char| c.is_ascii_alphanumeric())
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The state file holding `rel`'s text as it was (`old`) or as applied (`new`).
fn state_name(age: &str, rel: &str) -> String {
    format!("firewalld.{age}.{}", rel.replace('/', "."))
}

/// Step 0: firewalld runs, no file of ours would overwrite one we did not
/// write, and (unless forced) the runtime holds nothing the reload would drop.
pub(super) fn refuse(
    sys: &dyn System,
    fp: &FirewalldPayload,
    host: &str,
    force: bool,
) -> Result<()> {
    if let Err(e) = sys.firewall_cmd(&["--state"]) {
        return Err(failed(format!(
            "firewalld is not running here ({e}); nothing was loaded: start it, or \
             install {host}'s files with {host}.firewalld.sh (firewalld reads them when it starts)"
        )));
    }
    let files = sys.fw_files(&fp.config)?;
    let foreign: Vec<String> = fp
        .objects
        .iter()
        .filter(|(rel, _)| files.get(rel).is_some_and(|t| !ours(t)))
        .map(|(rel, _)| fp.config.join(rel).display().to_string())
        .collect();
    if !foreign.is_empty() {
        return Err(failed(format!(
            "{} exist(s) and amwall did not write it; nothing was loaded (rename the \
             admin's object, or remove it if amwall's replaces it)",
            foreign.join(", ")
        )));
    }
    if !force {
        if let Some(d) = runtime_drift(sys)? {
            return Err(failed(format!(
                "firewalld's runtime differs from its permanent configuration ({d}); the \
                 reload that loads amwall's objects would drop that: make it permanent \
                 (`firewall-cmd --runtime-to-permanent`) or load anyway with --force; nothing was loaded"
            )));
        }
    }
    Ok(())
}

/// The listings whose runtime and permanent forms must agree before a reload.
const LISTINGS: [&[&str]; 3] = [
    &["--list-all-zones"],
    &["--list-all-policies"],
    &["--direct", "--get-all-rules"],
];

/// The first difference between firewalld's runtime and permanent
/// configuration that a reload would lose, if any. Interface bindings are
/// left out (NetworkManager binds interfaces at runtime and a reload keeps
/// them), and so are the "(active)" and "(default)" marks on zone names.
fn runtime_drift(sys: &dyn System) -> Result<Option<String>> {
    fn norm(text: &str) -> Vec<String> {
        text.lines()
            .map(|l| l.replace(" (active)", "").replace(" (default)", ""))
            .filter(|l| !l.trim_start().starts_with("interfaces:"))
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }
    for args in LISTINGS {
        let runtime = norm(&sys.firewall_cmd(args)?);
        let permanent = norm(&sys.firewall_cmd(&[&["--permanent"], args].concat())?);
        if runtime != permanent {
            let only = runtime
                .iter()
                .find(|l| !permanent.contains(l))
                .map(|l| format!("runtime only: `{}`", l.trim()))
                .or_else(|| {
                    permanent
                        .iter()
                        .find(|l| !runtime.contains(l))
                        .map(|l| format!("permanent only: `{}`", l.trim()))
                })
                .unwrap_or_else(|| "the order differs".into());
            return Ok(Some(format!("firewall-cmd {}: {only}", args.join(" "))));
        }
    }
    Ok(None)
}

/// Step 2: amwall's files as they are and as they will be, in the state
/// directory before anything changes.
pub(super) fn snapshot(sys: &dyn System, fp: &FirewalldPayload) -> Result<FirewalldPending> {
    let files = sys.fw_files(&fp.config)?;
    let mut old = Vec::new();
    for (rel, text) in files.iter().filter(|(r, t)| valid_rel(r) && ours(t)) {
        sys.write(&state_name("old", rel), text)?;
        old.push(rel.clone());
    }
    let mut new = Vec::new();
    for (rel, text) in &fp.objects {
        if !valid_rel(rel) {
            return Err(failed(format!("not a firewalld object file: `{rel}`")));
        }
        sys.write(&state_name("new", rel), text)?;
        new.push(rel.clone());
    }
    Ok(FirewalldPending {
        config: fp.config.clone(),
        old,
        new,
    })
}

/// Make amwall's files in the permanent configuration the `age` ones: every
/// file of ours (old or new) goes, then those of `age` are written. Setting
/// a state, so running it twice is harmless.
fn permanent(sys: &dyn System, fp: &FirewalldPending, age: &str) -> Result<()> {
    let place = |rel: &str| fp.config.join(rel);
    for rel in fp.old.iter().chain(&fp.new) {
        let now = sys.fw_files(&fp.config)?;
        if now.get(rel).is_some_and(|t| ours(t)) {
            sys.fw_put(&place(rel), None)?;
        }
    }
    let list = if age == "new" { &fp.new } else { &fp.old };
    for rel in list {
        let text = sys.read(&state_name(age, rel)).ok_or_else(|| {
            failed(format!(
                "the snapshot {}/{} is missing",
                sys.place(),
                state_name(age, rel)
            ))
        })?;
        sys.fw_put(&place(rel), Some(&text))?;
    }
    Ok(())
}

/// Step 5 for firewalld: new files, firewalld's check, reload, old files
/// back in the permanent configuration. An error leaves the caller to roll back.
pub(super) fn load(sys: &dyn System, fp: &FirewalldPending) -> Result<()> {
    permanent(sys, fp, "new")?;
    sys.fw_check(&fp.config)?;
    sys.firewall_cmd(&["--reload"])?;
    permanent(sys, fp, "old")
}

/// The rollback's firewalld part: the old files, reloaded.
pub(super) fn rollback(sys: &dyn System, fp: &FirewalldPending) -> Result<()> {
    permanent(sys, fp, "old")?;
    sys.firewall_cmd(&["--reload"]).map(|_| ())
}

/// A confirmation: the new files for good. The runtime already has them.
pub(super) fn keep(sys: &dyn System, fp: &FirewalldPending) -> Result<()> {
    permanent(sys, fp, "new")
}

/// firewalld's files in `config`: the `*.xml` of its services/, ipsets/ and
/// policies/ with names it could load, as `DIR/NAME.xml` → text. Other names
/// are not ours and are never touched.
pub(super) fn read_config(config: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for k in Kind::ALL {
        let dir = config.join(k.dir());
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(Error::Io { path: dir, error }),
        };
        for e in entries {
            let e = e.map_err(|error| Error::Io {
                path: dir.clone(),
                error,
            })?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let rel = format!("{}/{name}", k.dir());
            if !valid_rel(&rel) || !e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            // Bounded like every input; a file too large to read is not ours.
            let text = crate::input::read_text(&e.path()).unwrap_or_default();
            out.insert(rel, text);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loadable_object_names_are_handled() {
        assert!(valid_rel("services/amwall-amanda.xml"));
        assert!(valid_rel("ipsets/amw_lan.xml"));
        assert!(valid_rel("policies/amwall-input.xml"));
        for bad in [
            "zones/public.xml",
            "services/../zones/public.xml",
            "services/.xml",
            "services/-x.xml",
            "services/a b.xml",
            "services/x.conf",
            "policies",
            "services/x/y.xml",
        ] {
            assert!(!valid_rel(bad), "{bad}");
        }
    }
}
