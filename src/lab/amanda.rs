//! Real Amanda in the lab: the topology in network namespaces, one `amandad`
//! per host (under its own xinetd, or behind its own sshd for ssh auth:
//! `lab::ssh`), a vtape server, and amwall's generated
//! rules loaded with the real `iptables-restore` / `nft -f`. Then `amcheck`,
//! `amdump` and `amrecover` run through those rules, and the recovered files
//! are compared with the originals.
//!
//! Isolation (nothing on the machine is changed persistently):
//! - Per-host files live in `/etc/netns/NS/` (`hosts`, `resolv.conf`,
//!   `amandahosts`, `amanda/`), which `ip netns exec` bind-mounts over `/etc`
//!   (docs/design.md "Lab-verified"). Debian's backup user reads `~/.amandahosts`,
//!   a symlink to `/etc/amandahosts`, so that file is per host too.
//! - Every command runs inside the private mount namespace `ip netns exec`
//!   makes, where a small wrapper also bind-mounts per-host directories over
//!   `/var/lib/amanda` (amandates, gnutar-lists), `/var/log/amanda` (debug
//!   logs) and `/tmp/amanda`, mounts a private tmpfs on `/dev/shm` (Amanda's
//!   shared-memory segments), and sets a per-host hostname (`unshare --uts`).
//! - Everything else (data, vtapes, server state, xinetd configs) is in one
//!   per-run temporary directory.
//! - On drop: every process in the lab's namespaces is killed by PID (they were
//!   all started here), the namespaces are deleted, `/etc/netns/NS` and the run
//!   directory removed. Also when a test fails.
//!
//! Names: every namespace's `/etc/hosts` is the same table. A host's first
//! interface is called by the host's name, its others `HOST-IFACE` (FWHost's
//! public address is `fwhost-eth1`). Which name each host's Amanda config must
//! use comes from the plan's paths: the address a flow's initiator connects to
//! (`Path::target`) and the source its responder sees (`Path::last().src`), so
//! RHost's index-server is FWHost's public name and its `.amandahosts` names
//! FWHost's public address, exactly as SUMMARY.md tells an admin.
//!
//! Network safety: `build` refuses any network outside the documentation
//! ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24), and DNS points at
//! 127.0.0.1 inside each namespace, so nothing leaves the lab.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::netns::{veth, Netns, Output};
use super::ssh;
use crate::amanda::settings::{Auth, ClientPort};
use crate::flows::{control_port, Operation};
use crate::model::HostId;
use crate::netfilter::Backend;
use crate::plan::Plan;
use crate::ports::PortRange;

/// The Amanda configuration name on the lab's server.
pub const CONFIG: &str = "lab";
/// Debian's Amanda user (`CLIENT_LOGIN="backup"`, `amadmin x version`).
pub const AMANDA_USER: &str = "backup";
const AMANDAD: &str = "/usr/lib/amanda/amandad";
/// vtape slots: enough for every amdump one lab runs.
const SLOTS: u32 = 12;

/// Time limits: a hung Amanda fails the test instead of hanging it.
const CHECK_LIMIT: Duration = Duration::from_secs(180);
const DUMP_LIMIT: Duration = Duration::from_secs(400);
const RECOVER_LIMIT: Duration = Duration::from_secs(240);

/// How to build the lab.
#[derive(Debug, Clone)]
pub struct Options {
    /// DLEs (directories) per client; more than one makes several dumpers talk
    /// to one client within the conntrack helper's 180 s expectation window.
    pub dles_per_host: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { dles_per_host: 1 }
    }
}

/// Set when a lab of this process created `/etc/netns` (so it may remove it).
static ETC_ROOT_CREATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Everything the real-Amanda lab needs, checked up front. Returns every
/// missing piece at once; callers fail (never skip) on an error.
pub fn preflight() -> io::Result<()> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (network namespaces, bind mounts, privileged ports)".to_string());
    }
    let tools: &[(&str, &str)] = &[
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("unshare", "util-linux"),
        ("mount", "mount"),
        ("hostname", "hostname"),
        ("sysctl", "procps"),
        ("runuser", "util-linux"),
        ("timeout", "coreutils"),
        ("xinetd", "xinetd"),
        ("iptables-restore", "iptables"),
        ("ipset", "ipset"),
        ("nft", "nftables"),
        ("amcheck", "amanda-server"),
        ("amdump", "amanda-server"),
        ("amreport", "amanda-server"),
        ("amrecover", "amanda-client"),
    ];
    for (tool, package) in tools {
        if which(tool).is_none() {
            missing.push(format!("`{tool}` (package {package})"));
        }
    }
    if !Path::new(AMANDAD).exists() {
        missing.push(format!("{AMANDAD} (package amanda-client)"));
    }
    match user_home(AMANDA_USER) {
        None => missing.push(format!("user `{AMANDA_USER}` (created by amanda-common)")),
        Some(home) => {
            // Debian: ~backup/.amandahosts -> /etc/amandahosts, which makes it per namespace.
            let link = home.join(".amandahosts");
            if fs::read_link(&link).ok().as_deref() != Some(Path::new("/etc/amandahosts")) {
                missing.push(format!(
                    "{} as a symlink to /etc/amandahosts (Debian's amanda-common layout)",
                    link.display()
                ));
            }
        }
    }
    // `ip netns exec` bind-mounts /etc/netns/NS/X only over an existing /etc/X.
    for p in [
        "/etc/amanda",
        "/etc/amandahosts",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/var/lib/amanda",
        "/var/log/amanda",
    ] {
        if !Path::new(p).exists() {
            missing.push(format!("{p} (amanda-common / base system)"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(err(format!(
            "the real-Amanda lab needs: {}",
            missing.join("; ")
        )))
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// (uid, gid, home) from /etc/passwd.
fn passwd(user: &str) -> Option<(u32, u32, PathBuf)> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == user)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?, PathBuf::from(f[5]))))?
    })
}

fn user_home(user: &str) -> Option<PathBuf> {
    passwd(user).map(|(_, _, h)| h)
}

/// One host of the lab.
#[derive(Debug)]
struct LabHost {
    name: String,
    ns: Netns,
    /// RUN/HOST: data, lib, log, tmp, restores, xinetd files.
    dir: PathBuf,
    /// The DLEs: small directories of files (`data`, `data-2`, ...).
    dles: Vec<PathBuf>,
    /// How the server's disklist (and amrecover's `sethost`) names this host.
    disklist_name: String,
}

/// `/etc/netns/NS`, removed on drop.
#[derive(Debug)]
struct EtcNetns {
    path: PathBuf,
}

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[derive(Debug)]
struct Daemon {
    child: Child,
    /// The host whose amandad this xinetd serves; `None` for what `spawn`
    /// started (an sshd), which a restart of amandad must leave running.
    xinetd_of: Option<usize>,
}

/// The result of one `amrecover` run.
#[derive(Debug)]
pub struct Recovery {
    pub host: String,
    pub output: Output,
    pub originals: Vec<PathBuf>,
    pub restored: Vec<PathBuf>,
    /// `Ok` when every restored tree equals its original, file by file.
    pub compared: Result<(), String>,
    pub took: Duration,
}

impl Recovery {
    pub fn ok(&self) -> bool {
        self.compared.is_ok()
    }
}

/// amdump's exit status plus amreport's report of that run.
#[derive(Debug)]
pub struct Dump {
    pub output: Output,
    pub report: String,
    pub took: Duration,
}

impl Dump {
    /// amdump exited 0 and the report lists no failed DLE.
    pub fn ok(&self) -> bool {
        self.output.ok() && !self.report.contains("FAILED")
    }
}

/// A built lab. Field order is drop order after `Drop::drop` has killed the
/// processes: namespaces, then `/etc/netns` entries, then the run directory.
#[derive(Debug)]
pub struct AmandaLab {
    daemons: Vec<Daemon>,
    hosts: Vec<LabHost>,
    switch: Netns,
    etc: Vec<EtcNetns>,
    run: tempfile::TempDir,
    plan_hosts: Vec<String>,
    server: usize,
    restores: std::cell::Cell<u32>,
    attached: std::cell::Cell<u32>,
    ruleset_texts: BTreeMap<(usize, &'static str), String>,
    /// The plan's ssh-auth conversations (none without ssh auth).
    logins: Vec<ssh::Login>,
}

impl AmandaLab {
    /// Build the plan's topology in namespaces, configure Amanda on every host
    /// and start the amandads. No rules are loaded yet (see `load_rules`).
    ///
    /// Supports one server and auth bsd, bsdudp, bsdtcp (amandad under xinetd)
    /// and ssh (amandad under each host's own sshd, `lab::ssh`); local has no
    /// network to prove. Refuses addresses outside the documentation ranges.
    pub fn build(plan: &Plan) -> io::Result<AmandaLab> {
        Self::build_with(plan, &Options::default())
    }

    // Long: the lab's set-up steps in the order they must run (namespaces, configs, mounts,
    // daemons), each undone by the guard it returns; cutting them apart would pass that
    // half-built state around
    pub fn build_with(plan: &Plan, opts: &Options) -> io::Result<AmandaLab> {
        preflight()?;
        let d = &plan.deployment;
        for n in &d.networks {
            // Debian's Amanda, which this lab runs, is built --without-ipv6.
            let Some(cidr) = n.cidr else {
                return Err(err(format!(
                    "network `{}` is IPv6-only; the real-Amanda lab runs Debian's Amanda, which is built --without-ipv6 and cannot use it",
                    n.name
                )));
            };
            if !crate::lab::map::DOC_RANGES
                .iter()
                .any(|doc| doc.contains(&cidr))
            {
                return Err(err(format!(
                    "network `{}` ({cidr}) is outside the documentation ranges; the lab only uses 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24",
                    n.name
                )));
            }
        }
        if let Some(h) = d
            .hosts
            .iter()
            .find(|h| h.interfaces.iter().any(|i| i.address.is_none()))
        {
            return Err(err(format!(
                "`{}` has an interface without IPv4; the real-Amanda lab runs Debian's Amanda, which is built --without-ipv6",
                h.name
            )));
        }
        let servers: Vec<HostId> = (0..d.hosts.len())
            .filter(|&h| d.hosts[h].roles.server)
            .collect();
        let [server] = servers[..] else {
            return Err(err(format!(
                "the Amanda lab needs exactly one server, the topology has {}",
                servers.len()
            )));
        };
        for h in &d.hosts {
            for auth in [h.amanda.auth, h.client_conf.auth] {
                if auth == Auth::Local {
                    return Err(err(format!(
                        "host `{}`: auth local needs no network, so the Amanda lab has nothing to prove for it (bsd, bsdudp, bsdtcp, ssh)",
                        h.name
                    )));
                }
            }
            for i in &h.interfaces {
                if i.name.len() > 15 {
                    return Err(err(format!("interface name `{}` is too long", i.name)));
                }
            }
        }

        let run = tempfile::Builder::new()
            .prefix("amwall-amanda-")
            .tempdir()?;
        // The backup user must reach the data, vtapes and state below it.
        fs::set_permissions(run.path(), fs::Permissions::from_mode(0o755))?;
        let (uid, gid, _) = passwd(AMANDA_USER).ok_or_else(|| err("no backup user"))?;
        let own = |p: &Path, mode: u32| -> io::Result<()> {
            chown(p, Some(uid), Some(gid))?;
            fs::set_permissions(p, fs::Permissions::from_mode(mode))
        };

        let switch = Netns::new("amwa-sw")?;
        let mut hosts = Vec::new();
        for h in &d.hosts {
            let ns = Netns::new(&format!("amwa-{}", short(&h.name)))?;
            let dir = crate::name::out_path(run.path(), &h.name);
            hosts.push(LabHost {
                name: h.name.clone(),
                ns,
                dles: (1..=opts.dles_per_host.max(1))
                    .map(|i| {
                        dir.join(if i == 1 {
                            "data".to_string()
                        } else {
                            format!("data-{i}")
                        })
                    })
                    .collect(),
                dir,
                disklist_name: String::new(),
            });
        }
        let etc_root = Path::new("/etc/netns");
        if !etc_root.exists() {
            fs::create_dir_all(etc_root)?;
            ETC_ROOT_CREATED.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let mut lab = AmandaLab {
            daemons: Vec::new(),
            etc: hosts
                .iter()
                .map(|h| EtcNetns {
                    path: etc_root.join(h.ns.name()),
                })
                .collect(),
            hosts,
            switch,
            run,
            plan_hosts: d.hosts.iter().map(|h| h.name.clone()).collect(),
            server,
            restores: std::cell::Cell::new(0),
            attached: std::cell::Cell::new(0),
            ruleset_texts: BTreeMap::new(),
            logins: Vec::new(),
        };

        // Rulesets, rendered once.
        for hp in &plan.policies {
            lab.ruleset_texts
                .insert((hp.host, "iptables"), plan.iptables(hp));
            lab.ruleset_texts.insert((hp.host, "nft"), plan.nft(hp));
            if let Some(s) = plan.ipset(hp) {
                lab.ruleset_texts.insert((hp.host, "ipset"), s);
            }
        }

        lab.wire(plan)?;

        // Names, as every namespace's /etc/hosts has them.
        let mut names: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        let mut hosts_file = String::from("127.0.0.1\tlocalhost\n");
        for h in &d.hosts {
            for (i, iface) in h.interfaces.iter().enumerate() {
                let Some(address) = iface.address else {
                    continue; // refused above
                };
                let name = if i == 0 {
                    h.name.clone()
                } else {
                    format!("{}-{}", h.name, iface.name)
                };
                writeln!(hosts_file, "{address}\t{name}").unwrap();
                names.entry(address).or_insert(name);
            }
        }
        let name_of = |a: Ipv4Addr| -> io::Result<String> {
            names
                .get(&a)
                .cloned()
                .ok_or_else(|| err(format!("no host owns {a}")))
        };

        // Who must trust whom, and which name each host uses for its server,
        // from the plan's paths (what SUMMARY.md's "What Amanda's configuration
        // must say" tells an admin).
        let mut amandahosts: Vec<BTreeSet<String>> = vec![BTreeSet::new(); d.hosts.len()];
        let mut server_name: Vec<Option<String>> = vec![None; d.hosts.len()];
        for (f, p) in plan.flows.iter().zip(&plan.paths) {
            let seen_as = name_of(p.last().src)?;
            let target = name_of(p.target)?;
            match f.operation {
                Operation::Check | Operation::Estimate | Operation::Backup => {
                    amandahosts[f.responder].insert(format!("{seen_as} {AMANDA_USER} amdump"));
                    lab.hosts[f.responder].disklist_name = target;
                }
                Operation::Recover => {
                    amandahosts[f.responder].insert(format!("{seen_as} root amindexd amidxtaped"));
                    server_name[f.initiator] = Some(target);
                }
                Operation::LegacyRecover => {}
            }
        }

        // ssh auth: who dials whom under which name, seen as which address.
        let mut logins = Vec::new();
        for (f, p) in plan.flows.iter().zip(&plan.paths) {
            if f.auth != Auth::Ssh {
                continue;
            }
            let Some(caller) = ssh::Caller::of(f.operation) else {
                continue;
            };
            logins.push(ssh::Login {
                caller,
                initiator: f.initiator,
                responder: f.responder,
                target_name: name_of(p.target)?,
                target: p.target,
                port: f.dport.lo,
                seen_as: p.last().src,
            });
        }
        logins.sort();
        logins.dedup();

        // Per-host directories and /etc/netns files.
        for (id, h) in d.hosts.iter().enumerate() {
            let lh = &lab.hosts[id];
            for sub in ["lib", "lib/gnutar-lists", "log", "tmp"] {
                let p = lh.dir.join(sub);
                fs::create_dir_all(&p)?;
                own(&p, 0o770)?;
            }
            fs::set_permissions(&lh.dir, fs::Permissions::from_mode(0o755))?;
            let amandates = lh.dir.join("lib/amandates");
            fs::write(&amandates, "")?;
            own(&amandates, 0o640)?;
            for (i, dle) in lh.dles.iter().enumerate() {
                write_data(dle, &format!("{} {}", h.name, i + 1))?;
            }

            let etc = &lab.etc[id].path;
            fs::create_dir_all(etc.join("amanda"))?;
            fs::write(etc.join("hosts"), &hosts_file)?;
            // Unknown names go to 127.0.0.1 inside the namespace, never out.
            fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n")?;
            let mut trust = String::new();
            for l in &amandahosts[id] {
                writeln!(trust, "{l}").unwrap();
            }
            fs::write(etc.join("amandahosts"), trust)?;
            own(&etc.join("amandahosts"), 0o600)?;

            let a = &h.client_conf;
            let srv = server_name[id]
                .clone()
                .unwrap_or_else(|| lab.hosts[server].name.clone());
            // amrecover talks to the server's amandad: auth and client-port are
            // read from this file (A:recover-src/amrecover.c).
            let mut conf = String::new();
            writeln!(conf, "conf \"{CONFIG}\"").unwrap();
            writeln!(conf, "index-server \"{srv}\"").unwrap();
            writeln!(conf, "tape-server \"{srv}\"").unwrap();
            writeln!(conf, "auth \"{}\"", a.auth).unwrap();
            if let Some(cp) = client_port_conf(&a.client_port) {
                writeln!(conf, "client-port {cp}").unwrap();
            }
            if a.auth == Auth::Ssh {
                // amanda-auth(7): amrecover's own key, and the user it logs in as.
                let key = lh.dir.join("ssh").join(ssh::Caller::Amrecover.key_name());
                writeln!(conf, "ssh-keys \"{}\"", key.display()).unwrap();
                writeln!(conf, "client-username \"{AMANDA_USER}\"").unwrap();
            }
            write_ranges(
                &mut conf,
                a.reserved_udp_port,
                a.reserved_tcp_port,
                a.unreserved_tcp_port,
            );
            fs::write(etc.join("amanda/amanda-client.conf"), conf)?;

            // xinetd: one amandad service on the port the plan assumes.
            fs::write(
                lh.dir.join("xinetd.conf"),
                xinetd_conf(&lh.dir, a.auth, &a.client_port),
            )?;
        }

        if !logins.is_empty() {
            lab.set_up_ssh(&logins)?;
        }
        lab.logins = logins;
        lab.configure_server(plan)?;
        for id in 0..lab.hosts.len() {
            lab.start_amandad(plan, id)?;
        }
        Ok(lab)
    }

    /// Namespaces, veths, one bridge per network in the switch namespace,
    /// addresses, default routes via gateways, forwarding on routers.
    fn wire(&self, plan: &Plan) -> io::Result<()> {
        let d = &plan.deployment;
        for (n, _) in d.networks.iter().enumerate() {
            let br = format!("br{n}");
            self.switch
                .must(&["ip", "link", "add", &br, "type", "bridge"])?;
            self.switch.must(&["ip", "link", "set", &br, "up"])?;
        }
        for (h, host) in d.hosts.iter().enumerate() {
            let ns = &self.hosts[h].ns;
            for iface in &host.interfaces {
                let port = format!("h{h}n{}", iface.network);
                veth(ns, &iface.name, &self.switch, &port)?;
                self.switch.must(&[
                    "ip",
                    "link",
                    "set",
                    &port,
                    "master",
                    &format!("br{}", iface.network),
                ])?;
                let (Some(a), Some(net)) = (iface.address, d.networks[iface.network].cidr) else {
                    return Err(err(format!(
                        "`{}` has an interface without IPv4",
                        host.name
                    )));
                };
                let cidr = format!("{a}/{}", net.prefix_len());
                ns.must(&["ip", "addr", "add", &cidr, "dev", &iface.name])?;
            }
            if let Some(g) = host.gateway {
                let via = host
                    .interfaces
                    .iter()
                    .find_map(|i| d.iface_on(g, i.network)?.address)
                    .ok_or_else(|| {
                        err(format!(
                            "`{}` shares no network with its gateway",
                            host.name
                        ))
                    })?;
                ns.must(&["ip", "route", "add", "default", "via", &via.to_string()])?;
            }
            if host.roles.router {
                ns.must(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            }
            // A blocked connect then fails in ~7 s instead of ~2 min, so the
            // negative controls stay quick. Nothing is lost in the lab otherwise.
            ns.must(&["sysctl", "-qw", "net.ipv4.tcp_syn_retries=2"])?;
        }
        Ok(())
    }

    fn configure_server(&self, plan: &Plan) -> io::Result<()> {
        let d = &plan.deployment;
        let (uid, gid, _) = passwd(AMANDA_USER).ok_or_else(|| err("no backup user"))?;
        let s = &d.hosts[self.server].amanda;
        let root = self.run.path().join("server");
        let vtapes = root.join("vtapes");
        let state = root.join("state");
        for p in ["curinfo", "index", "log"] {
            fs::create_dir_all(state.join(p))?;
        }
        for n in 1..=SLOTS {
            fs::create_dir_all(vtapes.join(format!("slot{n}")))?;
        }
        chown_tree(&root, uid, gid)?;

        let mut c = String::new();
        writeln!(
            c,
            "org \"amwall-lab\"\nmailto \"\"\ndumpuser \"{AMANDA_USER}\""
        )
        .unwrap();
        writeln!(c, "inparallel {}", s.inparallel.max(1)).unwrap();
        c.push_str("dumpcycle 0\nrunspercycle 1\nruntapes 1\n");
        writeln!(c, "tapecycle {}", SLOTS - 2).unwrap();
        c.push_str("define tapetype vtape {\n  length 64 mbytes\n}\ntapetype \"vtape\"\n");
        writeln!(c, "tpchanger \"chg-disk:{}\"", vtapes.display()).unwrap();
        c.push_str("autolabel \"lab-%%\" empty\nlabelstr \"^lab-[0-9][0-9]*$\"\n");
        writeln!(c, "tapelist \"{}\"", state.join("tapelist").display()).unwrap();
        writeln!(c, "infofile \"{}\"", state.join("curinfo").display()).unwrap();
        writeln!(c, "logdir \"{}\"", state.join("log").display()).unwrap();
        writeln!(c, "indexdir \"{}\"", state.join("index").display()).unwrap();
        c.push_str("ctimeout 30\netimeout 120\ndtimeout 180\n");
        write_ranges(
            &mut c,
            s.reserved_udp_port,
            s.reserved_tcp_port,
            s.unreserved_tcp_port,
        );
        let mut disklist = String::new();
        for (h, host) in d.hosts.iter().enumerate() {
            if !host.roles.client {
                continue;
            }
            let a = &host.amanda;
            // One dumptype per client: its auth and client-port decide the conversation.
            writeln!(c, "define dumptype lab-{} {{", host.name).unwrap();
            // One try per dump: a retried failure would still show as FAILED, and a
            // blocked flow fails the same way twice (the negative controls stay short).
            c.push_str("  program \"GNUTAR\"\n  compress none\n  estimate calcsize\n  record yes\n  retry-dump 1\n");
            writeln!(c, "  index {}", if a.index { "yes" } else { "no" }).unwrap();
            writeln!(c, "  auth \"{}\"", a.auth).unwrap();
            if let Some(cp) = client_port_conf(&a.client_port) {
                writeln!(c, "  client-port {cp}").unwrap();
            }
            if a.auth == Auth::Ssh {
                let key = self.hosts[self.server]
                    .dir
                    .join("ssh")
                    .join(ssh::Caller::Amdump.key_name());
                writeln!(c, "  ssh-keys \"{}\"", key.display()).unwrap();
            }
            c.push_str("}\n");
            let lh = &self.hosts[h];
            for dle in &lh.dles {
                writeln!(
                    disklist,
                    "{} {} lab-{}",
                    lh.disklist_name,
                    dle.display(),
                    host.name
                )
                .unwrap();
            }
        }
        let dir = self.etc[self.server].path.join("amanda").join(CONFIG);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("amanda.conf"), c)?;
        fs::write(dir.join("disklist"), disklist)?;
        chown_tree(&self.etc[self.server].path.join("amanda"), uid, gid)?;
        // amanda-client.conf on other hosts: readable by backup.
        for e in &self.etc {
            chown_tree(&e.path.join("amanda"), uid, gid)?;
        }
        Ok(())
    }

    /// amandad the way the host's auth reaches it: xinetd for bsd, bsdudp and
    /// bsdtcp; sshd where an ssh-auth conversation answers here.
    fn start_amandad(&mut self, plan: &Plan, id: usize) -> io::Result<()> {
        let a = &plan.deployment.hosts[id].amanda;
        if a.auth != Auth::Ssh {
            let client_port = a.client_port.clone();
            self.start_xinetd(id, a.auth, &client_port)?;
        }
        let ports = ssh::listen_ports(&self.logins, id);
        if !ports.is_empty() {
            self.start_sshd(id, &ports)?;
        }
        Ok(())
    }

    /// Start `id`'s xinetd on its `xinetd.conf` and wait until it listens
    /// where `auth` and `client_port` say.
    fn start_xinetd(
        &mut self,
        id: usize,
        auth: Auth,
        client_port: &Option<ClientPort>,
    ) -> io::Result<()> {
        let h = &self.hosts[id];
        let conf = h.dir.join("xinetd.conf");
        let argv: Vec<String> = ["xinetd", "-dontfork", "-f"]
            .iter()
            .map(|s| s.to_string())
            .chain([conf.display().to_string()])
            .collect();
        let out = fs::File::create(h.dir.join("xinetd.out"))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", h.ns.name()])
            .args(self.wrapper(id))
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd.spawn()?;
        self.daemons.push(Daemon {
            child,
            xinetd_of: Some(id),
        });
        // Wait until it listens.
        let port = control_port(auth, client_port);
        let flag = if auth == Auth::Bsdtcp {
            "-Hlnt"
        } else {
            "-Hlnu"
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let o = self.hosts[id].ns.must(&["ss", flag])?;
            if o.stdout.contains(&format!(":{port} ")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "xinetd on {} does not listen on {port} after 10 s: {}",
                    self.hosts[id].name,
                    fs::read_to_string(self.hosts[id].dir.join("xinetd.out")).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Keys, `authorized_keys`, `known_hosts`, ssh and sshd configs and the
    /// backup user's shell for ssh auth, all in the hosts' `/etc/netns/NS`
    /// and run directories (`lab::ssh` says why each is as it is).
    fn set_up_ssh(&self, logins: &[ssh::Login]) -> io::Result<()> {
        let mut missing = Vec::new();
        for tool in ["ssh", "sshd", "ssh-keygen"] {
            if which(tool).is_none() {
                missing.push(tool);
            }
        }
        if !missing.is_empty() {
            return Err(err(format!(
                "ssh auth in the Amanda lab needs {} (packages openssh-client, openssh-server)",
                missing.join(", ")
            )));
        }
        let (uid, gid, _) = passwd(AMANDA_USER).ok_or_else(|| err("no backup user"))?;
        let keygen = |path: &Path, comment: &str| -> io::Result<String> {
            let o = super::netns::run(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                    .arg(path),
                None,
            )?;
            if !o.ok() {
                return Err(err(format!("ssh-keygen {}: {}", path.display(), o.stderr)));
            }
            fs::read_to_string(path.with_extension("pub"))
        };
        let mut host_keys = Vec::new();
        for (id, h) in self.hosts.iter().enumerate() {
            let etc_ssh = self.etc[id].path.join("ssh");
            fs::create_dir_all(etc_ssh.join("authorized_keys"))?;
            host_keys.push(keygen(
                &etc_ssh.join("ssh_host_ed25519_key"),
                &format!("amwall-lab-{}", h.name),
            )?);
        }
        let mut user_keys = BTreeMap::new();
        for l in logins {
            if user_keys.contains_key(&(l.initiator, l.caller)) {
                continue;
            }
            let dir = self.hosts[l.initiator].dir.join("ssh");
            fs::create_dir_all(&dir)?;
            let key = dir.join(l.caller.key_name());
            let public = keygen(
                &key,
                &format!(
                    "amwall-lab-{}-{}",
                    self.hosts[l.initiator].name,
                    l.caller.key_name()
                ),
            )?;
            if l.caller == ssh::Caller::Amdump {
                // The dumper runs ssh as the Amanda user, who must own its key.
                chown(&key, Some(uid), Some(gid))?;
            }
            user_keys.insert((l.initiator, l.caller), public);
        }
        let passwd_text = fs::read_to_string("/etc/passwd")?;
        for id in 0..self.hosts.len() {
            let etc = &self.etc[id].path;
            fs::write(etc.join("ssh/ssh_config"), ssh::ssh_config())?;
            fs::write(
                etc.join("ssh/ssh_known_hosts"),
                ssh::known_hosts(logins, id, |r| host_keys[r].clone()),
            )?;
            let ports = ssh::listen_ports(logins, id);
            if ports.is_empty() {
                continue;
            }
            fs::write(
                etc.join("ssh/sshd_config"),
                ssh::sshd_config(&ports, AMANDA_USER),
            )?;
            fs::write(
                etc.join("ssh/authorized_keys").join(AMANDA_USER),
                ssh::authorized_keys(logins, id, AMANDAD, |i, c| {
                    user_keys.get(&(i, c)).cloned().unwrap_or_default()
                }),
            )?;
            fs::write(
                etc.join("passwd"),
                ssh::with_shell(&passwd_text, AMANDA_USER, "/bin/sh"),
            )?;
        }
        Ok(())
    }

    /// Start `id`'s sshd (its own /run for the privilege-separation directory)
    /// and wait until it listens on every port in `ports`.
    fn start_sshd(&mut self, id: usize, ports: &[u16]) -> io::Result<()> {
        let script = "mount -t tmpfs -o mode=755 amwall-run /run && mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config";
        let name = self.hosts[id].name.clone();
        let log = self.hosts[id].dir.join("sshd.log");
        self.spawn(&name, &["sh", "-c", script], &log)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let o = self.hosts[id].ns.must(&["ss", "-Hlnt"])?;
            if ports.iter().all(|p| o.stdout.contains(&format!(":{p} "))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "sshd on {name} does not listen on {ports:?} after 10 s: {}",
                    fs::read_to_string(&log).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The argv prefix that gives a command this host's hostname and its own
    /// /var/lib/amanda, /var/log/amanda, /tmp/amanda and /dev/shm (inside the private
    /// mount namespace `ip netns exec` created; nothing propagates back).
    fn wrapper(&self, id: usize) -> Vec<String> {
        let h = &self.hosts[id];
        // /dev/shm: the driver, dumpers and taper share memory segments named
        // by PID there; a private tmpfs keeps a killed amdump's segments from
        // outliving the lab.
        let script = "hostname \"$1\" && mount --bind \"$2\" /var/lib/amanda && mount --bind \"$3\" /var/log/amanda && { [ ! -d /tmp/amanda ] || mount --bind \"$4\" /tmp/amanda; } && mount -t tmpfs -o mode=1777,size=64m amwall-shm /dev/shm && shift 4 && exec \"$@\"";
        vec![
            "unshare".into(),
            "--uts".into(),
            "sh".into(),
            "-c".into(),
            script.into(),
            "sh".into(),
            h.name.clone(),
            h.dir.join("lib").display().to_string(),
            h.dir.join("log").display().to_string(),
            h.dir.join("tmp").display().to_string(),
        ]
    }

    fn host_id(&self, host: &str) -> io::Result<usize> {
        self.plan_hosts
            .iter()
            .position(|h| h == host)
            .ok_or_else(|| err(format!("no host `{host}` in the lab")))
    }

    /// Run `argv` on `host` (as `user`, or root), with a time limit.
    pub fn run(
        &self,
        host: &str,
        user: Option<&str>,
        argv: &[&str],
        stdin: Option<&str>,
        limit: Duration,
    ) -> io::Result<Output> {
        let id = self.host_id(host)?;
        let secs = limit.as_secs().to_string();
        let mut full: Vec<String> = vec!["timeout".into(), "-k".into(), "10".into(), secs];
        full.extend(self.wrapper(id));
        if let Some(u) = user {
            full.extend(["runuser", "-u", u, "--"].map(String::from));
        }
        full.extend(argv.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        self.hosts[id].ns.exec(&refs, stdin)
    }

    pub fn server(&self) -> &str {
        &self.hosts[self.server].name
    }

    pub fn namespace(&self, host: &str) -> io::Result<&Netns> {
        Ok(&self.hosts[self.host_id(host)?].ns)
    }

    /// `host`'s `/etc/netns/NS`: what `ip netns exec` (and so every
    /// command the lab runs there) sees over `/etc`.
    pub fn etc_dir(&self, host: &str) -> io::Result<&Path> {
        Ok(&self.etc[self.host_id(host)?].path)
    }

    /// The xinetd configuration `host`'s amandad runs under.
    pub fn xinetd_conf(&self, host: &str) -> io::Result<PathBuf> {
        Ok(self.hosts[self.host_id(host)?].dir.join("xinetd.conf"))
    }

    /// What `host`'s sshd logged (ssh auth): each key accepted and the
    /// address it came from.
    pub fn sshd_log(&self, host: &str) -> io::Result<String> {
        fs::read_to_string(self.hosts[self.host_id(host)?].dir.join("sshd.log"))
    }

    /// A planted fault: restart `host`'s xinetd serving amandad with `auth`
    /// (its protocol and port) instead of the planned one.
    pub fn serve_amandad(&mut self, plan: &Plan, host: &str, auth: Auth) -> io::Result<()> {
        let id = self.host_id(host)?;
        let client_port = plan.deployment.hosts[id].amanda.client_port.clone();
        let mut kept = Vec::new();
        for mut d in std::mem::take(&mut self.daemons) {
            if d.xinetd_of != Some(id) {
                kept.push(d);
                continue;
            }
            signal(d.child.id() as i32, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && !matches!(d.child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
        self.daemons = kept;
        let dir = self.hosts[id].dir.clone();
        fs::write(
            dir.join("xinetd.conf"),
            xinetd_conf(&dir, auth, &client_port),
        )?;
        self.start_xinetd(id, auth, &client_port)
    }

    /// The generated ruleset for `host` in `backend` (for the iptables backend,
    /// the `iptables-restore` text; its ipsets are loaded by `load`).
    pub fn ruleset(&self, host: &str, backend: Backend) -> io::Result<String> {
        let id = self.host_id(host)?;
        self.ruleset_texts
            .get(&(id, backend.name()))
            .cloned()
            .ok_or_else(|| err(format!("no {} ruleset for `{host}`", backend.name())))
    }

    /// Replace `host`'s whole ruleset with `text` (a `HOST.rules` or `HOST.nft` text).
    pub fn load(&self, host: &str, backend: Backend, text: &str) -> io::Result<()> {
        let id = self.host_id(host)?;
        let ns = &self.hosts[id].ns;
        ns.must(&["nft", "flush", "ruleset"])?;
        let _ = ns.exec(&["ipset", "destroy"], None);
        let fail = |what: &str, o: Output| {
            err(format!(
                "{host}: {what} failed ({}): {}\n{text}",
                o.status,
                o.stderr.trim()
            ))
        };
        match backend {
            Backend::Iptables => {
                if let Some(sets) = self.ruleset_texts.get(&(id, "ipset")) {
                    let o = ns.exec(&["ipset", "restore"], Some(sets))?;
                    if !o.ok() {
                        return Err(fail("ipset restore", o));
                    }
                }
                let o = ns.exec(&["iptables-restore"], Some(text))?;
                if !o.ok() {
                    return Err(fail("iptables-restore", o));
                }
            }
            Backend::Nft => {
                let o = ns.exec(&["nft", "-f", "-"], Some(text))?;
                if !o.ok() {
                    return Err(fail("nft -f", o));
                }
            }
        }
        Ok(())
    }

    /// Load every host's generated rules; `edit(host, text)` may change a text
    /// first (negative controls). Routers get their masquerade from these rules.
    pub fn load_rules_with(
        &self,
        backend: Backend,
        edit: impl Fn(&str, String) -> String,
    ) -> io::Result<()> {
        for h in &self.plan_hosts {
            let text = edit(h, self.ruleset(h, backend)?);
            self.load(h, backend, &text)?;
        }
        Ok(())
    }

    pub fn load_rules(&self, backend: Backend) -> io::Result<()> {
        self.load_rules_with(backend, |_, t| t)
    }

    /// `amcheck lab` on the server, as the Amanda user.
    pub fn amcheck(&self) -> io::Result<Output> {
        self.run(
            self.server(),
            Some(AMANDA_USER),
            &["amcheck", CONFIG],
            None,
            CHECK_LIMIT,
        )
    }

    /// `amdump lab`, then `amreport lab` for what it did.
    pub fn amdump(&self) -> io::Result<Dump> {
        let start = Instant::now();
        let output = self.run(
            self.server(),
            Some(AMANDA_USER),
            &["amdump", CONFIG],
            None,
            DUMP_LIMIT,
        )?;
        let took = start.elapsed();
        let rep = self.run(
            self.server(),
            Some(AMANDA_USER),
            &["amreport", CONFIG],
            None,
            Duration::from_secs(60),
        )?;
        Ok(Dump {
            output,
            report: rep.stdout + &rep.stderr,
            took,
        })
    }

    /// The directories (DLEs) `host` backs up.
    pub fn dles(&self, host: &str) -> io::Result<&[PathBuf]> {
        Ok(&self.hosts[self.host_id(host)?].dles)
    }

    /// Recover every DLE of `host` on `host` with `amrecover` (one session
    /// per DLE: extract reads its prompts' answers through its own buffer, so a
    /// second `setdisk` in the same piped script is lost), driven by a script
    /// on stdin, each into a fresh directory, and compare them with the originals.
    pub fn amrecover(&self, host: &str) -> io::Result<Recovery> {
        let id = self.host_id(host)?;
        let lh = &self.hosts[id];
        let n = self.restores.get() + 1;
        self.restores.set(n);
        let restored: Vec<PathBuf> = (1..=lh.dles.len())
            .map(|i| lh.dir.join(format!("restore-{n}-{i}")))
            .collect();
        let start = Instant::now();
        let mut output = Output {
            status: 0,
            stdout: String::new(),
            stderr: String::new(),
        };
        for (dle, to) in lh.dles.iter().zip(&restored) {
            fs::create_dir_all(to)?;
            // extract asks "Load tape ... Continue [?/Y/n/s/d]?" and "Continue [?/Y/n]?".
            let script = format!(
                "sethost {}\nsetdisk {}\nlcd {}\nadd .\nextract\nY\nY\nquit\n",
                lh.disklist_name,
                dle.display(),
                to.display()
            );
            let o = self.run(
                host,
                None,
                &["amrecover", CONFIG],
                Some(&script),
                RECOVER_LIMIT,
            )?;
            if output.status == 0 {
                output.status = o.status;
            }
            output.stdout.push_str(&o.stdout);
            output.stderr.push_str(&o.stderr);
        }
        let took = start.elapsed();
        let problems: Vec<String> = lh
            .dles
            .iter()
            .zip(&restored)
            .filter_map(|(a, b)| compare_trees(a, b).err())
            .collect();
        Ok(Recovery {
            host: host.to_string(),
            output,
            originals: lh.dles.clone(),
            restored,
            compared: if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            },
            took,
        })
    }

    /// The tails of every Amanda debug log and xinetd log, per host: what to
    /// print when something failed.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for h in &self.hosts {
            let mut files = Vec::new();
            collect_files(&h.dir.join("log"), &mut files);
            files.push(h.dir.join("xinetd.log"));
            files.push(h.dir.join("xinetd.out"));
            files.push(h.dir.join("sshd.log"));
            files.sort();
            for f in files {
                let Ok(text) = fs::read_to_string(&f) else {
                    continue;
                };
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(25)..];
                writeln!(out, "==== {} {} ====", h.name, f.display()).unwrap();
                for l in tail {
                    writeln!(out, "{l}").unwrap();
                }
            }
        }
        out
    }

    /// `iptables-save -c` in `host`'s namespace: every rule with its
    /// `[packets:bytes]`, to see which generated rules real Amanda traffic hit.
    pub fn iptables_counters(&self, host: &str) -> io::Result<String> {
        Ok(self.namespace(host)?.must(&["iptables-save", "-c"])?.stdout)
    }

    /// Every address-to-name line the lab's namespaces resolve with.
    pub fn hosts_file(&self) -> String {
        fs::read_to_string(self.etc[0].path.join("hosts")).unwrap_or_default()
    }

    /// Start `argv` on `host` as a daemon of the lab (its hostname and Amanda
    /// mounts, as `run` gives a command), output to `log`; stopped by PID when
    /// the lab is dropped. Used to run an sshd per host (`tests/ansible.rs`),
    /// so what arrives over SSH sees the host as Amanda does.
    pub fn spawn(&mut self, host: &str, argv: &[&str], log: &Path) -> io::Result<u32> {
        let id = self.host_id(host)?;
        let out = fs::File::create(log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", self.hosts[id].ns.name()])
            .args(self.wrapper(id))
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let pid = child.id();
        self.daemons.push(Daemon {
            child,
            xinetd_of: None,
        });
        Ok(pid)
    }

    /// A new namespace on `network` at `address` (a machine of the admins',
    /// e.g. an Ansible control node), with `gateway` as its default route. Its
    /// guard is the caller's; drop it before the lab.
    pub fn attach(
        &self,
        plan: &Plan,
        network: &str,
        address: Ipv4Addr,
        gateway: Option<Ipv4Addr>,
    ) -> io::Result<Netns> {
        let d = &plan.deployment;
        let n = d
            .networks
            .iter()
            .position(|n| n.name == network)
            .ok_or_else(|| err(format!("no network `{network}`")))?;
        let cidr = d.networks[n]
            .cidr
            .ok_or_else(|| err(format!("network `{network}` is IPv6-only")))?;
        if !cidr.contains(&address)
            || d.hosts
                .iter()
                .any(|h| h.interfaces.iter().any(|i| i.address == Some(address)))
        {
            return Err(err(format!("{address} is not a free address of {cidr}")));
        }
        let ns = Netns::new("amwa-ctl")?;
        let port = format!("c{}n{n}", self.attached.get());
        self.attached.set(self.attached.get() + 1);
        veth(&ns, "eth0", &self.switch, &port)?;
        self.switch
            .must(&["ip", "link", "set", &port, "master", &format!("br{n}")])?;
        ns.must(&[
            "ip",
            "addr",
            "add",
            &format!("{address}/{}", cidr.prefix_len()),
            "dev",
            "eth0",
        ])?;
        if let Some(g) = gateway {
            ns.must(&["ip", "route", "add", "default", "via", &g.to_string()])?;
        }
        ns.must(&["sysctl", "-qw", "net.ipv4.tcp_syn_retries=2"])?;
        Ok(ns)
    }

    /// A host's `.amandahosts` and `amanda-client.conf`, for reports.
    pub fn amanda_files(&self, host: &str) -> io::Result<(String, String)> {
        let e = &self.etc[self.host_id(host)?].path;
        Ok((
            fs::read_to_string(e.join("amandahosts"))?,
            fs::read_to_string(e.join("amanda/amanda-client.conf"))?,
        ))
    }
}

impl Drop for AmandaLab {
    fn drop(&mut self) {
        // xinetd first (so it starts nothing new), by the PID we spawned.
        for d in &mut self.daemons {
            signal(d.child.id() as i32, Signal::SIGTERM);
        }
        for d in &mut self.daemons {
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = d.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
        // Then whatever is left in the lab's namespaces (amandads, a timed-out
        // amdump's children): every one of them was started by this lab.
        let all: Vec<&Netns> = self
            .hosts
            .iter()
            .map(|h| &h.ns)
            .chain([&self.switch])
            .collect();
        for round in 0..50 {
            let mut left = 0;
            for ns in &all {
                let Ok(o) = Command::new("ip")
                    .args(["netns", "pids", ns.name()])
                    .output()
                else {
                    continue;
                };
                for pid in String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    left += 1;
                    signal(
                        pid,
                        if round < 5 {
                            Signal::SIGTERM
                        } else {
                            Signal::SIGKILL
                        },
                    );
                }
            }
            if left == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Fields drop next: namespaces, /etc/netns/NS, the run directory.
        // `/etc/netns` itself, if this process created it: removed once the
        // last lab's entry is gone (remove_dir fails while others are inside).
        if ETC_ROOT_CREATED.load(std::sync::atomic::Ordering::SeqCst) {
            drop(std::mem::take(&mut self.etc));
            let _ = fs::remove_dir(Path::new("/etc/netns"));
        }
    }
}

/// kill(2) on a PID this lab started (or one inside its namespaces); never 0, 1
/// or a negative PID (a process group or everything).
fn signal(pid: i32, sig: Signal) {
    if pid > 1 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// `tshost` → `tshost`, long names shortened so `PREFIX-PID-N` stays readable.
fn short(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect()
}

fn client_port_conf(cp: &Option<ClientPort>) -> Option<String> {
    match cp {
        // Debian has no `amanda 10080/udp` in /etc/services: write the number.
        Some(ClientPort::Number(n)) => Some(format!("\"{n}\"")),
        Some(ClientPort::Service(s)) => Some(format!("\"{s}\"")),
        None => None,
    }
}

fn write_ranges(c: &mut String, udp: PortRange, tcp: PortRange, unres: PortRange) {
    writeln!(c, "reserved-udp-port {},{}", udp.lo, udp.hi).unwrap();
    writeln!(c, "reserved-tcp-port {},{}", tcp.lo, tcp.hi).unwrap();
    writeln!(c, "unreserved-tcp-port {},{}", unres.lo, unres.hi).unwrap();
}

fn chown_tree(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    chown(p, Some(uid), Some(gid))?;
    if p.is_dir() {
        for e in fs::read_dir(p)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn collect_files(p: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(p) else { return };
    for e in rd.flatten() {
        let path = e.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A small DLE: text files, an empty file, a subdirectory and 48 KiB of
/// pseudo-random bytes, all derived from the host name (reproducible).
fn write_data(dir: &Path, host: &str) -> io::Result<()> {
    fs::create_dir_all(dir.join("sub"))?;
    fs::write(
        dir.join("hello.txt"),
        format!("amwall lab: files of {host}\n"),
    )?;
    fs::write(dir.join("empty"), "")?;
    let numbers: String = (0..500).map(|i| format!("{host} {i}\n")).collect();
    fs::write(dir.join("sub/numbers.txt"), numbers)?;
    let mut x: u64 = host.bytes().fold(0x9e37_79b9_7f4a_7c15, |a, b| {
        (a ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let blob: Vec<u8> = (0..48 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(dir.join("sub/blob.bin"), blob)?;
    Ok(())
}

/// xinetd's configuration for one amandad service speaking `auth` on the
/// port `client_port` gives, logging into `dir`.
fn xinetd_conf(dir: &Path, auth: Auth, client_port: &Option<ClientPort>) -> String {
    let port = control_port(auth, client_port);
    let (socket, proto, wait) = match auth {
        Auth::Bsdtcp => ("stream", "tcp", "no"),
        _ => ("dgram", "udp", "yes"),
    };
    format!(
        "defaults\n{{\n\tlog_type = FILE {log}\n\tlog_on_success = PID HOST EXIT DURATION\n\tlog_on_failure = HOST\n\tinstances = UNLIMITED\n\tcps = 1000 1\n}}\n\
         service amwall-amanda\n{{\n\ttype = UNLISTED\n\tflags = IPv4\n\tsocket_type = {socket}\n\tprotocol = {proto}\n\tport = {port}\n\twait = {wait}\n\tuser = {AMANDA_USER}\n\tgroup = {AMANDA_USER}\n\tgroups = yes\n\tserver = {AMANDAD}\n\tserver_args = -auth={auth} amdump amindexd amidxtaped\n}}\n",
        log = dir.join("xinetd.log").display(),
    )
}

/// Compare two directory trees: the same relative paths, the same kinds, the
/// same file contents. Returns the first differences found.
pub fn compare_trees(a: &Path, b: &Path) -> Result<(), String> {
    fn walk(root: &Path, p: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) -> io::Result<()> {
        for e in fs::read_dir(p)? {
            let path = e?.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let md = fs::symlink_metadata(&path)?;
            if md.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out)?;
            } else {
                out.insert(rel, Some(fs::read(&path)?));
            }
        }
        Ok(())
    }
    let (mut ta, mut tb) = (BTreeMap::new(), BTreeMap::new());
    walk(a, a, &mut ta).map_err(|e| format!("{}: {e}", a.display()))?;
    walk(b, b, &mut tb).map_err(|e| format!("{}: {e}", b.display()))?;
    let mut diffs = Vec::new();
    for (p, va) in &ta {
        match tb.get(p) {
            None => diffs.push(format!("missing {}", p.display())),
            Some(vb) if vb != va => diffs.push(format!("differs {}", p.display())),
            _ => {}
        }
    }
    for p in tb.keys().filter(|p| !ta.contains_key(*p)) {
        diffs.push(format!("extra {}", p.display()));
    }
    if ta.is_empty() {
        diffs.push(format!("{} is empty", a.display()));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} vs {}: {}",
            a.display(),
            b.display(),
            diffs.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_compare_by_content() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write_data(a.path(), "x").unwrap();
        write_data(b.path(), "x").unwrap();
        assert_eq!(compare_trees(a.path(), b.path()), Ok(()));
        fs::write(b.path().join("sub/numbers.txt"), "changed").unwrap();
        fs::write(b.path().join("more"), "").unwrap();
        let e = compare_trees(a.path(), b.path()).unwrap_err();
        assert!(
            e.contains("differs sub/numbers.txt") && e.contains("extra more"),
            "{e}"
        );
    }
}
