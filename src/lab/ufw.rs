//! A real ufw inside one namespace with configuration of its own. `ip netns
//! exec NS` bind-mounts `/etc/netns/NS/X` over `/etc/X`, so ufw there reads
//! and writes copies of `/etc/ufw` and `/etc/default` and never the
//! machine's. ufw keeps no daemon: its rules are the namespace's iptables
//! rules and go with it.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::netns::{Netns, Output};

/// ufw's private configuration in one namespace, removed on drop (the
/// directories this guard created, nothing else).
pub struct Ufw {
    ns: String,
    /// `/etc/netns/NS`.
    etc: PathBuf,
    made: Vec<PathBuf>,
}

impl Ufw {
    /// Copy the machine's ufw configuration into `ns`'s `/etc/netns` entry,
    /// prove that `ns` sees the copy (a missing copy would let ufw change
    /// the machine's own files), and `ufw --force enable` there.
    pub fn enable(ns: &Netns) -> io::Result<Ufw> {
        let etc = PathBuf::from("/etc/netns").join(ns.name());
        let mut made = Vec::new();
        if !etc.exists() {
            std::fs::create_dir_all(&etc)?;
            made.push(etc.clone());
        }
        let mut ufw = Ufw {
            ns: ns.name().to_string(),
            etc: etc.clone(),
            made: vec![],
        };
        for d in ["ufw", "default"] {
            let to = etc.join(d);
            if to.exists() {
                return Err(io::Error::other(format!(
                    "{} exists already: not ours to overwrite",
                    to.display()
                )));
            }
            let ok = Command::new("cp")
                .args(["-a", &format!("/etc/{d}")])
                .arg(&to)
                .status()?
                .success();
            ufw.made.push(to);
            if !ok {
                return Err(io::Error::other(format!(
                    "copying /etc/{d} (is ufw installed?)"
                )));
            }
        }
        ufw.made.extend(made);
        let mine = std::fs::metadata(etc.join("ufw"))?.ino().to_string();
        let seen = ns.must(&["stat", "-c", "%i", "/etc/ufw"])?.stdout;
        if seen.trim() != mine {
            return Err(io::Error::other(format!(
                "netns {} does not see its own /etc/ufw (inode {} not {mine}); ufw not run",
                ns.name(),
                seen.trim()
            )));
        }
        let o = ufw.run(&["--force", "enable"])?;
        if !o.ok() {
            return Err(io::Error::other(format!(
                "ufw enable: {}{}",
                o.stdout, o.stderr
            )));
        }
        Ok(ufw)
    }

    /// The namespace's `/etc/ufw`, as seen from outside.
    pub fn config(&self) -> PathBuf {
        self.etc.join("ufw")
    }

    /// `ufw ARGS` in the namespace.
    pub fn run(&self, args: &[&str]) -> io::Result<Output> {
        let mut argv = vec!["ufw"];
        argv.extend(args);
        self.exec(&argv)
    }

    /// Any command in the namespace, where /etc/ufw is the private copy.
    pub fn exec(&self, argv: &[&str]) -> io::Result<Output> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).args(argv);
        super::netns::run(&mut cmd, None)
    }

    /// Write `files` into `dir` and run the one named `*.ufw.sh` with `sh`.
    pub fn install(&self, files: &[(String, String)], dir: &Path) -> io::Result<Output> {
        let mut script = None;
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::write(&p, text)?;
            if name.ends_with(".ufw.sh") {
                script = Some(p);
            }
        }
        let script = script.ok_or_else(|| io::Error::other("no *.ufw.sh among the files"))?;
        let script = script.to_str().ok_or_else(|| io::Error::other("path"))?;
        self.exec(&["sh", script])
    }
}

impl Drop for Ufw {
    fn drop(&mut self) {
        for d in &self.made {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
