//! What `plan` writes: the file list (per host and backend, plus
//! topology.svg and SUMMARY.md) and the one writer of the `--out` directory.
//! Nothing is written until everything has been computed, and
//! `write_outputs` puts the files in place all or nothing, so neither bad input nor a failure while writing leaves a
//! half-written output.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use nix::fcntl::RenameFlags;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};

use crate::diag::{Error, Result};
use crate::model::Manager;
use crate::netfilter::Backend;
use crate::plan::Plan;
use crate::policy::HostPolicy;
use crate::render::{BackendSet, IptablesMode};

impl Plan {
    /// Every output file as (file name, content), in a stable order, with
    /// iptables files for hosts amwall owns.
    pub fn outputs(
        &self,
        backend: BackendSet,
        host: Option<&str>,
    ) -> Result<Vec<(String, String)>> {
        self.outputs_with(backend, IptablesMode::Owned, host)
    }

    /// Every output file, with the iptables files in `mode`: `HOST.rules`
    /// (owned), or `HOST.merged.rules` and its load script `HOST.merged.sh`.
    pub fn outputs_with(
        &self,
        backend: BackendSet,
        mode: IptablesMode,
        host: Option<&str>,
    ) -> Result<Vec<(String, String)>> {
        self.outputs_for(crate::summary::Files::new(backend, mode), backend, host)
    }

    /// Every output file as `plan` writes it: [`Plan::outputs_with`]'s, and
    /// firewalld's and ufw's when `files` asks for them (topology.svg, then SUMMARY.md last).
    pub fn outputs_for(
        &self,
        files: crate::summary::Files,
        backend: BackendSet,
        host: Option<&str>,
    ) -> Result<Vec<(String, String)>> {
        let want = files;
        let mode = files.iptables.unwrap_or(IptablesMode::Owned);
        if let Some(h) = host {
            if self.deployment.host_by_name(h).is_none() {
                return Err(Error::Usage(format!(
                    "no host `{h}` in {}",
                    self.deployment.source_name
                )));
            }
        }
        let hosts: Vec<&HostPolicy> = self
            .policies
            .iter()
            .filter(|hp| host.map_or(true, |h| h == self.deployment.hosts[hp.host].name))
            .collect();
        let mut files = files;
        let declared = |hp: &HostPolicy| self.deployment.hosts[hp.host].firewall;
        files.firewalld |= hosts
            .iter()
            .any(|hp| declared(hp) == Some(Manager::Firewalld));
        files.ufw |= hosts.iter().any(|hp| declared(hp) == Some(Manager::Ufw));
        let per_host = |hp: &&HostPolicy| {
            let name = &self.deployment.hosts[hp.host].name;
            let mut out = Vec::new();
            let (mode, backend) = match declared(hp) {
                None => (mode, backend),
                Some(Manager::Amwall) => (IptablesMode::Owned, backend),
                Some(Manager::Shared) => (IptablesMode::Merged, backend),
                // Only the manager's own files: an nft table beside firewalld
                // cannot open what its zones reject, and HOST.rules would
                // replace ufw's chains.
                Some(Manager::Firewalld) => {
                    out.extend(self.firewalld_outputs(Some(name)));
                    return out;
                }
                Some(Manager::Ufw) => {
                    out.extend(self.ufw_outputs(Some(name)));
                    return out;
                }
            };
            if backend.contains(Backend::Iptables) {
                if let Some(sets) = self.ipset(hp) {
                    out.push((format!("{name}.ipset"), sets));
                }
                match mode {
                    IptablesMode::Owned => {
                        out.push((format!("{name}.rules"), self.iptables(hp)));
                        out.push((format!("{name}.rules6"), self.ip6tables(hp)));
                    }
                    IptablesMode::Merged => {
                        out.push((format!("{name}.merged.rules"), self.iptables_merged(hp)));
                        if let Some(r6) = self.ip6tables_merged(hp) {
                            out.push((format!("{name}.merged.rules6"), r6));
                        }
                        out.push((format!("{name}.merged.sh"), self.iptables_merged_script(hp)));
                    }
                }
            }
            if backend.contains(Backend::Nft) {
                out.push((format!("{name}.nft"), self.nft(hp)));
            }
            if declared(hp).is_none() {
                if want.ufw {
                    out.extend(self.ufw_outputs(Some(name)));
                }
                if want.firewalld {
                    out.extend(self.firewalld_outputs(Some(name)));
                }
            }
            out
        };
        // Hosts are independent: render them on every core, the summary alongside.
        let (files, summary, picture) = std::thread::scope(|s| {
            let summary = s.spawn(|| crate::summary::summary(self, host, files));
            let picture = s.spawn(|| crate::picture::svg(self, None));
            let files = par_map(&hosts, per_host);
            (
                files,
                summary.join().expect("summary rendering does not panic"),
                picture.join().expect("drawing does not panic"),
            )
        });
        let mut out: Vec<(String, String)> = files.into_iter().flatten().collect();
        out.push(("topology.svg".into(), picture));
        out.push(("SUMMARY.md".into(), summary));
        // Host names were validated when loaded; a name that could leave --out
        // here is a bug, and stopping beats writing it.
        for (name, _) in &out {
            assert!(
                crate::name::is_plain_file_name(name),
                "output file name {name:?} would leave the output directory"
            );
        }
        Ok(out)
    }
}

impl Plan {
    /// `HOST.ufw.sh` for every host (or `host`), and `HOST.ufw-before.init`
    /// for those with NAT or the helper.
    pub fn ufw_outputs(&self, host: Option<&str>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for hp in &self.policies {
            let name = &self.deployment.hosts[hp.host].name;
            if host.is_some_and(|h| h != name) {
                continue;
            }
            let mut push = |file: String, text: String| {
                assert!(crate::name::is_plain_file_name(&file), "{file:?}");
                out.push((file, text));
            };
            push(format!("{name}.ufw.sh"), self.ufw_script(hp));
            if let Some(init) = self.ufw_before_init(hp) {
                push(format!("{name}.ufw-before.init"), init);
            }
        }
        out
    }
}

impl Plan {
    /// The firewalld files of every host (or `host`): `Plan::firewalld`.
    pub fn firewalld_outputs(&self, host: Option<&str>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for hp in &self.policies {
            let name = &self.deployment.hosts[hp.host].name;
            if host.is_some_and(|h| h != name) {
                continue;
            }
            for (file, text) in self.firewalld(hp) {
                assert!(crate::name::is_plain_file_name(&file), "{file:?}");
                out.push((file, text));
            }
        }
        out
    }
}

/// `f` over `items` on up to as many threads as there are cores, in order.
/// Chunks are contiguous, so the output order is the input order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Small inputs are not worth a thread.
    if cores < 2 || items.len() < 64 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(cores);
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("workers do not panic"))
            .collect()
    })
}

/// Write the files into `dir`, all or nothing: after a failure (full disk, a
/// name too long for the file system, a directory where a file should be, a
/// signal) `dir` holds exactly what it held before — the same files with the same
/// bytes and modes, nothing added, nothing left over — and after success it holds
/// the new files plus whatever else was there (the admin's own files stay).
/// Bad input is caught before this is called and never touches `dir`.
///
/// When `dir` does not exist yet, everything is written in parallel into a
/// sibling staging directory that is renamed into place at the end: one rename
/// instead of one per file, which matters for a 10,000-client plan (20,000
/// files). Parent directories it had to create are removed again on failure.
///
/// Into an existing directory, every file is first written in full to a
/// temporary name beside its target (in parallel); only when all are written is
/// each one swapped in with `renameat2(RENAME_EXCHANGE)` (a file that is new is
/// renamed with `RENAME_NOREPLACE`), which leaves the old file under the
/// temporary name: a failure swaps back what was swapped, success deletes the
/// old files. Why per file and not one exchange of the whole directory: the
/// directory itself stays what the admin made it — a mount point, a symlink to
/// elsewhere (written through, never replaced), its mode, owner and ACLs, the
/// admin's subdirectories and open shells in it — with no special cases. A
/// file system without `renameat2` flags (EINVAL) gets plain renames with the
/// old file moved aside first; the undo is the same. INT, TERM, HUP and QUIT are
/// held back while files are swapped, so Ctrl-C ends the run before or after,
/// not halfway.
///
/// Modes: a replaced file keeps its mode (and, when we may, its owner); a new
/// file gets 0644 whatever the umask (these are rules an admin installs, not
/// secrets), a new directory 0755. No fsync: these are drafts an admin installs,
/// not the live configuration.
pub fn write_outputs(dir: &FsPath, files: &[(String, String)]) -> Result<Vec<PathBuf>> {
    let mut seen = std::collections::HashSet::new();
    for (name, _) in files {
        // Checked here, before anything is written, so the joins below are safe.
        if !crate::name::is_plain_file_name(name) {
            return Err(Error::Usage(format!(
                "output file name {name:?} is not a plain file name; nothing was written"
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::Usage(format!(
                "two output files are both called {name:?}; nothing was written"
            )));
        }
    }
    let written = files.iter().map(|(name, _)| dir.join(name)).collect();
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_fresh(dir, files)?,
        Err(source) => return Err(io_err(dir, source)),
        Ok(m) if m.is_dir() => write_existing(dir, files, true)?,
        // A symlink to a directory: write into the directory it names.
        Ok(m) if m.file_type().is_symlink() => match std::fs::metadata(dir) {
            Ok(t) if t.is_dir() => write_existing(dir, files, true)?,
            Ok(_) => {
                return Err(not_a_dir(
                    dir,
                    "is a symlink to something that is not a directory",
                ))
            }
            Err(_) => return Err(not_a_dir(
                dir,
                "is a symlink to a directory that does not exist; create it or name another --out",
            )),
        },
        Ok(_) => return Err(not_a_dir(dir, "exists and is not a directory")),
    }
    Ok(written)
}

fn io_err(path: &FsPath, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        error: source,
    }
}

fn not_a_dir(dir: &FsPath, why: &str) -> Error {
    io_err(
        dir,
        std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string()),
    )
}

/// Mode of new output files and directories.
const NEW_FILE_MODE: u32 = 0o644;
const NEW_DIR_MODE: u32 = 0o755;

fn write_fresh(dir: &FsPath, files: &[(String, String)]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The missing ancestors, outermost first, to remove again on failure.
    let mut missing = Vec::new();
    let mut p = parent.as_path();
    while std::fs::symlink_metadata(p).is_err() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => p = q,
            _ => break,
        }
    }
    missing.reverse();
    let mut created: Vec<PathBuf> = Vec::new();
    let undo_parents = |created: &[PathBuf]| {
        for d in created.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    };
    let result = (|| -> Result<()> {
        for d in &missing {
            std::fs::create_dir(d).map_err(|e| io_err(d, e))?;
            created.push(d.clone());
        }
        let staging = tempfile::Builder::new()
            .prefix(".amwall-staging-")
            .tempdir_in(&parent)
            .map_err(|e| io_err(&parent, e))?;
        std::fs::set_permissions(
            staging.path(),
            std::fs::Permissions::from_mode(NEW_DIR_MODE),
        )
        .map_err(|e| io_err(staging.path(), e))?;
        // Into a fresh directory nobody reads yet: in parallel.
        par_map(files, |(name, content)| {
            let p = staging.path().join(name);
            write_new(&p, content.as_bytes(), NEW_FILE_MODE).map_err(|e| io_err(&p, e))
        })
        .into_iter()
        .collect::<Result<Vec<()>>>()?;
        // On failure `staging` is removed when it goes out of scope.
        std::fs::rename(staging.path(), dir).map_err(|e| io_err(dir, e))?;
        let _ = staging.keep();
        Ok(())
    })();
    if result.is_err() {
        undo_parents(&created);
    }
    result
}

/// A new file with exactly `mode` (not filtered by the umask).
fn write_new(path: &FsPath, content: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(content)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// What an output file replaces.
enum Target {
    New,
    /// A regular file: its mode and owner go to the new one.
    File {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A symlink: replaced by the file (never written through).
    Link,
}

/// How a staged file was put in place, to undo it.
enum Done {
    /// `tmp` now holds the old file.
    Exchanged,
    /// The target did not exist.
    Created,
    /// Without `renameat2` flags: the old file was moved to `aside`.
    Moved { aside: PathBuf },
}

fn write_existing(dir: &FsPath, files: &[(String, String)], exchange: bool) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // 1. Look before writing anything: a directory (or device...) where a file
    //    should be stops the run here.
    let mut targets = Vec::with_capacity(files.len());
    for (name, _) in files {
        let path = dir.join(name);
        let t = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Target::New,
            Err(e) => return Err(io_err(&path, e)),
            Ok(m) if m.file_type().is_file() => Target::File {
                mode: m.mode() & 0o777,
                uid: m.uid(),
                gid: m.gid(),
            },
            Ok(m) if m.file_type().is_symlink() => Target::Link,
            Ok(m) => {
                let what = if m.is_dir() {
                    "a directory"
                } else {
                    "not a regular file"
                };
                return Err(not_a_dir(
                    &path,
                    &format!(
                        "is {what} where amwall writes {name}; move it away (nothing was written)"
                    ),
                ));
            }
        };
        targets.push(t);
    }
    // 2. Every file in full under a temporary name beside its target, in
    //    parallel. A failure drops the `TempPath`s, which deletes them.
    let mut staged: Vec<Option<tempfile::TempPath>> = par_map(
        &files.iter().zip(&targets).collect::<Vec<_>>(),
        |((name, content), target)| {
            let target_path = dir.join(name);
            let mut tmp = tempfile::Builder::new()
                .prefix(".amwall-new-")
                .tempfile_in(dir)
                .map_err(|e| io_err(dir, e))?;
            let w = (|| {
                tmp.write_all(content.as_bytes())?;
                let f = tmp.as_file();
                match target {
                    Target::File { mode, uid, gid } => {
                        f.set_permissions(std::fs::Permissions::from_mode(*mode))?;
                        // Keep the owner when we may (as root); else it is ours.
                        let _ = std::os::unix::fs::fchown(f, Some(*uid), Some(*gid));
                    }
                    Target::New | Target::Link => {
                        f.set_permissions(std::fs::Permissions::from_mode(NEW_FILE_MODE))?
                    }
                }
                Ok(())
            })();
            w.map_err(|e| io_err(&target_path, e))?;
            Ok(Some(tmp.into_temp_path()))
        },
    )
    .into_iter()
    .collect::<Result<Vec<_>>>()?;

    // 3. Swap them in; on any failure swap back what was swapped.
    let _held = HoldSignals::new();
    let mut done: Vec<Done> = Vec::with_capacity(files.len());
    let mut failure = None;
    for (i, ((name, _), target)) in files.iter().zip(&targets).enumerate() {
        let dest = dir.join(name);
        let tmp = staged[i].as_deref().expect("staged above");
        match put(tmp, &dest, target, exchange) {
            Ok(d) => done.push(d),
            Err(e) => {
                failure = Some(io_err(&dest, e));
                break;
            }
        }
    }
    let Some(failure) = failure else {
        // Success: the temporary names now hold the old files (or nothing);
        // dropping `staged` deletes them.
        for d in &done {
            if let Done::Moved { aside } = d {
                let _ = std::fs::remove_file(aside);
            }
        }
        return Ok(());
    };
    let mut stuck = Vec::new();
    for (i, d) in done.iter().enumerate().rev() {
        let dest = dir.join(&files[i].0);
        let tmp = staged[i].as_deref().expect("staged above");
        let undone = match d {
            Done::Exchanged => rename2(tmp, &dest, RenameFlags::RENAME_EXCHANGE),
            Done::Created => std::fs::remove_file(&dest),
            Done::Moved { aside } => std::fs::rename(aside, &dest),
        };
        if let Err(e) = undone {
            // Keep the previous version where it is, under its temporary name.
            let kept = staged[i].take().map(|t| t.keep());
            let at = match (d, kept) {
                (Done::Created, _) => "none, it is new".to_string(),
                (Done::Moved { aside }, _) => aside.display().to_string(),
                (_, Some(Ok(p))) => p.display().to_string(),
                _ => "?".into(),
            };
            stuck.push(format!(
                "{} (previous version at {at}): {e}",
                dest.display()
            ));
        }
    }
    if stuck.is_empty() {
        Err(failure)
    } else {
        Err(Error::Usage(format!(
            "{failure}; and putting back the previous files failed for: {}",
            stuck.join(", ")
        )))
    }
}

/// `renameat2(2)`: EXCHANGE keeps the old file under the temporary name so a
/// failure can swap it back; NOREPLACE never clobbers a file that appeared meanwhile.
fn rename2(from: &FsPath, to: &FsPath, flags: RenameFlags) -> std::io::Result<()> {
    nix::fcntl::renameat2(None, from, None, to, flags).map_err(std::io::Error::from)
}

fn unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EINVAL) | Some(nix::libc::ENOSYS) | Some(nix::libc::EOPNOTSUPP)
    )
}

#[cfg(test)]
thread_local! {
    /// Tests: make the swap of the file with this index fail, as a full
    /// directory block or a vanished mount would.
    static FAIL_PUT_AT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    static PUTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Put the staged file `tmp` at `dest`.
fn put(tmp: &FsPath, dest: &FsPath, target: &Target, exchange: bool) -> std::io::Result<Done> {
    #[cfg(test)]
    {
        let n = PUTS.with(|p| p.replace(p.get() + 1));
        if FAIL_PUT_AT.with(|f| f.get()) == Some(n) {
            return Err(std::io::Error::from_raw_os_error(nix::libc::ENOSPC));
        }
    }
    match target {
        Target::New => {
            if exchange {
                match rename2(tmp, dest, RenameFlags::RENAME_NOREPLACE) {
                    Err(e) if unsupported(&e) => {}
                    r => return r.map(|()| Done::Created),
                }
            }
            if std::fs::symlink_metadata(dest).is_ok() {
                return Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists));
            }
            std::fs::rename(tmp, dest).map(|()| Done::Created)
        }
        Target::File { .. } | Target::Link => {
            if exchange {
                match rename2(tmp, dest, RenameFlags::RENAME_EXCHANGE) {
                    Err(e) if unsupported(&e) => {}
                    Err(e) => return Err(e),
                    Ok(()) => {
                        // A directory swapped in since we looked must not be
                        // left under a temporary name: swap back, fail.
                        if std::fs::symlink_metadata(tmp).is_ok_and(|m| m.is_dir()) {
                            rename2(tmp, dest, RenameFlags::RENAME_EXCHANGE)?;
                            return Err(std::io::Error::from_raw_os_error(nix::libc::EISDIR));
                        }
                        return Ok(Done::Exchanged);
                    }
                }
            }
            let mut aside = tmp.as_os_str().to_owned();
            aside.push(".old");
            let aside = PathBuf::from(aside);
            std::fs::rename(dest, &aside)?;
            if let Err(e) = std::fs::rename(tmp, dest) {
                let _ = std::fs::rename(&aside, dest);
                return Err(e);
            }
            Ok(Done::Moved { aside })
        }
    }
}

/// Holds back the signals that end a run (INT, TERM, HUP, QUIT) while it lives;
/// one that arrived meanwhile is delivered when it drops.
struct HoldSignals(Option<SigSet>);

impl HoldSignals {
    fn new() -> HoldSignals {
        let mut set = SigSet::empty();
        for s in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
        ] {
            set.add(s);
        }
        let mut old = SigSet::empty();
        match pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old)) {
            Ok(()) => HoldSignals(Some(old)),
            Err(_) => HoldSignals(None),
        }
    }
}

impl Drop for HoldSignals {
    fn drop(&mut self) {
        if let Some(old) = self.0 {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    /// Everything in `dir` (hidden files too), one level down into directories:
    /// name → (mode, bytes); directories as (mode, their listing).
    fn snapshot(dir: &FsPath) -> BTreeMap<String, (u32, Vec<u8>)> {
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let name = e.file_name().into_string().unwrap();
            let body = if m.is_dir() {
                format!("{:?}", snapshot(&e.path())).into_bytes()
            } else {
                std::fs::read(e.path()).unwrap()
            };
            out.insert(name, (m.permissions().mode() & 0o7777, body));
        }
        out
    }

    fn mode(p: &FsPath) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// An --out the admin has used before: an old summary (0640), an old
    /// host file (0600), a file and a directory of the admin's own.
    fn used_out() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let w = |name: &str, text: &str, mode: u32| {
            std::fs::write(d.path().join(name), text).unwrap();
            std::fs::set_permissions(d.path().join(name), std::fs::Permissions::from_mode(mode))
                .unwrap();
        };
        w("SUMMARY.md", "old summary\n", 0o640);
        w("a.rules", "old a\n", 0o600);
        w("notes.txt", "the admin's\n", 0o600);
        std::fs::create_dir(d.path().join("keep")).unwrap();
        std::fs::write(d.path().join("keep/x"), "x").unwrap();
        d
    }

    fn outputs(extra: &[&str]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = ["a.rules", "b.rules", "b.nft"]
            .iter()
            .chain(extra)
            .map(|n| (n.to_string(), format!("new {n}\n")))
            .collect();
        v.push(("SUMMARY.md".into(), "new summary\n".into()));
        v
    }

    #[test]
    fn into_a_used_directory_modes_follow_the_old_file_or_0644() {
        let d = used_out();
        let before = snapshot(d.path());
        write_outputs(d.path(), &outputs(&[])).unwrap();
        let after = snapshot(d.path());
        assert_eq!(after["SUMMARY.md"], (0o640, b"new summary\n".to_vec()));
        assert_eq!(after["a.rules"], (0o600, b"new a.rules\n".to_vec()));
        assert_eq!(after["b.rules"].0, 0o644);
        assert_eq!(after["b.nft"].0, 0o644);
        for kept in ["notes.txt", "keep"] {
            assert_eq!(after[kept], before[kept]);
        }
        assert_eq!(after.len(), 6, "no leftovers: {:?}", after.keys());
    }

    /// A failure while swapping files in, after some were swapped: everything
    /// is put back, byte for byte and mode for mode, with and without
    /// RENAME_EXCHANGE.
    #[test]
    fn a_failure_midway_leaves_a_used_directory_as_it_was() {
        for exchange in [true, false] {
            for fail_at in 0..4 {
                let d = used_out();
                let before = snapshot(d.path());
                PUTS.with(|p| p.set(0));
                FAIL_PUT_AT.with(|f| f.set(Some(fail_at)));
                let r = write_existing(d.path(), &outputs(&[]), exchange);
                FAIL_PUT_AT.with(|f| f.set(None));
                let e = r.unwrap_err().to_string();
                assert!(e.contains("No space left"), "{e}");
                assert_eq!(
                    snapshot(d.path()),
                    before,
                    "exchange {exchange}, failing at {fail_at}"
                );
            }
        }
    }

    #[test]
    fn a_name_too_long_or_a_directory_in_the_way_changes_nothing() {
        let long = format!("{}.rules", "h".repeat(300));
        for extra in [long.as_str(), "keep"] {
            let d = used_out();
            let before = snapshot(d.path());
            let e = write_outputs(d.path(), &outputs(&[extra]))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("too long") || e.contains("is a directory"),
                "{e}"
            );
            assert_eq!(snapshot(d.path()), before, "{extra}");
        }
        // Into a directory that does not exist yet, below parents that do not
        // either: nothing is left, not even the parents or a staging directory.
        let top = tempfile::tempdir().unwrap();
        let e = write_outputs(&top.path().join("p/q/out"), &outputs(&[long.as_str()]));
        assert!(e.unwrap_err().to_string().contains("too long"));
        assert!(
            snapshot(top.path()).is_empty(),
            "{:?}",
            snapshot(top.path())
        );
    }

    #[test]
    fn a_fresh_directory_gets_0755_and_its_files_0644() {
        let top = tempfile::tempdir().unwrap();
        let out = top.path().join("p/out");
        write_outputs(&out, &outputs(&[])).unwrap();
        assert_eq!(mode(&out), 0o755);
        for (n, _) in outputs(&[]) {
            assert_eq!(mode(&out.join(&n)), 0o644, "{n}");
        }
        assert_eq!(snapshot(top.path()).len(), 1, "no staging directory left");
    }

    #[test]
    fn names_that_are_not_plain_file_names_are_refused_before_writing() {
        let top = tempfile::tempdir().unwrap();
        for bad in ["../x.rules", "/abs.rules", "a/b.rules", "..", ".", ""] {
            let e = write_outputs(&top.path().join("out"), &[(bad.to_string(), "x".into())]);
            assert!(e.is_err(), "{bad:?}");
        }
        let dup = vec![
            ("a".to_string(), "1".to_string()),
            ("a".to_string(), "2".to_string()),
        ];
        assert!(write_outputs(&top.path().join("out"), &dup).is_err());
        assert!(snapshot(top.path()).is_empty());
    }

    #[test]
    fn a_symlinked_out_is_written_through_and_stays_a_symlink() {
        let top = tempfile::tempdir().unwrap();
        std::fs::create_dir(top.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", top.path().join("out")).unwrap();
        write_outputs(&top.path().join("out"), &outputs(&[])).unwrap();
        assert!(std::fs::symlink_metadata(top.path().join("out"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(snapshot(&top.path().join("real")).len(), 4);
    }

    /// Across threads the output keeps the input order, for any length.
    #[test]
    fn par_map_keeps_order() {
        for n in [0usize, 1, 63, 64, 65, 1000, 1001] {
            let v: Vec<usize> = (0..n).collect();
            assert_eq!(
                par_map(&v, |x| x * 3),
                v.iter().map(|x| x * 3).collect::<Vec<_>>()
            );
        }
    }
}
