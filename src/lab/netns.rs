//! A network namespace that exists exactly as long as its guard.
//!
//! Names carry a per-process prefix and counter so parallel tests (and parallel
//! runs) never collide. Commands run through `ip netns exec`; closures that need
//! sockets run on a thread that has joined the namespace with setns(2).

use std::fs::File;
use std::io::{self, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Every namespace this process created and still owns, so a Ctrl-C handler can
/// remove them (`remove_all`) even while the thread that owns the guards is busy.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<String>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Delete every namespace this process still owns, and refuse to create more (for
/// a signal handler that then exits: the guards will not run). Creation holds the
/// same lock while it runs `ip netns add`, so a namespace being made when the signal
/// comes is removed too. Returns the names removed.
pub fn remove_all() -> Vec<String> {
    let mut live = live();
    CLOSED.store(true, Ordering::SeqCst);
    let names: Vec<String> = std::mem::take(&mut *live);
    for n in &names {
        let _ = run(Command::new("ip").args(["netns", "del", n]), None);
    }
    names
}

static CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[derive(Debug)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.status == 0
    }
}

#[derive(Debug)]
pub struct Netns {
    name: String,
}

pub(crate) fn run(cmd: &mut Command, stdin: Option<&str>) -> io::Result<Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok(Output {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

impl Netns {
    /// Create `PREFIX-PID-N`. Fails (never skips) when not root or `ip` is missing.
    pub fn new(prefix: &str) -> io::Result<Netns> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        {
            let mut live = live();
            if CLOSED.load(Ordering::SeqCst) {
                return Err(io::Error::other("shutting down: no new namespaces"));
            }
            let out = run(Command::new("ip").args(["netns", "add", &name]), None)?;
            if !out.ok() {
                return Err(io::Error::other(format!(
                    "ip netns add {name}: {}",
                    out.stderr.trim()
                )));
            }
            live.push(name.clone());
        }
        let ns = Netns { name };
        // Loopback is down in a fresh namespace; Amanda and probes need it.
        ns.must(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Give up ownership: the namespace outlives the guard (and the process);
    /// returns its name. `ip netns del NAME` removes it later.
    pub fn keep(self) -> String {
        let name = self.name.clone();
        live().retain(|n| *n != name);
        std::mem::forget(self);
        name
    }

    /// Run a command inside the namespace.
    pub fn exec(&self, argv: &[&str], stdin: Option<&str>) -> io::Result<Output> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(argv);
        run(&mut cmd, stdin)
    }

    /// A command that runs inside the namespace, for callers that start many
    /// at once (`spawn`) instead of one after another.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(argv);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Run a command and turn a non-zero exit into an error carrying its stderr.
    pub fn must(&self, argv: &[&str]) -> io::Result<Output> {
        let out = self.exec(argv, None)?;
        if !out.ok() {
            return Err(io::Error::other(format!(
                "in netns {}: `{}` exited {}: {}",
                self.name,
                argv.join(" "),
                out.status,
                out.stderr.trim()
            )));
        }
        Ok(out)
    }

    /// Run `f` on a fresh thread that has entered this namespace, so sockets it
    /// opens live there. The calling thread's namespace is untouched.
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        let path = format!("/var/run/netns/{}", self.name);
        let file = File::open(&path)?;
        std::thread::spawn(move || -> io::Result<T> {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)?;
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("thread in namespace panicked"))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["netns", "del", &self.name]), None);
        live().retain(|n| *n != self.name);
    }
}

/// Connect two namespaces with a veth pair named `a_if`/`b_if` (≤ 15 characters each).
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> io::Result<()> {
    // Create in `a`, then move the peer into `b`: no interface is ever left in the host namespace.
    a.must(&[
        "ip",
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.must(&["ip", "link", "set", a_if, "up"])?;
    b.must(&["ip", "link", "set", b_if, "up"])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root: CI runs as root, and a missing privilege must fail loudly.
    #[test]
    fn namespace_is_removed_on_drop() {
        let name;
        {
            let ns = Netns::new("amwu").expect("creating a netns needs root and iproute2");
            name = ns.name().to_string();
            let out = ns.must(&["ip", "-o", "link", "show", "lo"]).unwrap();
            assert!(out.stdout.contains("UP"), "{}", out.stdout);
        }
        assert!(!std::path::Path::new(&format!("/var/run/netns/{name}")).exists());
    }
}
