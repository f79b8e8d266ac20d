//! What doctor reads of a host. Files come from under a root directory
//! (`/`, or a copy of a host's files) and go through `input`, like every
//! other read; the live state (ruleset, listening sockets) comes from a few
//! commands. Both go through [`Host`], so the tests hand in a fixture tree
//! and canned command output instead of a machine.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::sshd::{self, KeyLine, SshdConfig};
use crate::amanda::conf::{self, AmandaConfig, ClientConf, LoadOptions, SecurityConf, Services};
use crate::amanda::settings::Auth;
use crate::check::{HostRules, RulesFile};
use crate::diag::{Error, Result};

/// The machine doctor looks at.
pub trait Host {
    /// Where the host's files are.
    fn root(&self) -> &Path;
    /// A command's standard output, or why there is none (missing tool,
    /// failure, or not run because the files are a copy).
    fn run(&self, argv: &[&str]) -> std::result::Result<String, String>;
}

/// This machine. With a root other than `/` the files are a copy of some
/// host's and the commands would describe this one instead: they are not run.
pub struct Live {
    root: PathBuf,
}

impl Live {
    pub fn new(root: impl Into<PathBuf>) -> Live {
        Live { root: root.into() }
    }
}

impl Host for Live {
    fn root(&self) -> &Path {
        &self.root
    }

    fn run(&self, argv: &[&str]) -> std::result::Result<String, String> {
        if self.root != Path::new("/") {
            return Err(format!(
                "`{}` not run: the files under {} are a copy, the live state would be this machine's",
                argv.join(" "),
                self.root.display()
            ));
        }
        let (prog, args) = argv.split_first().ok_or("no command")?;
        let out = Command::new(prog)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("`{}`: {e}", argv.join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "`{}` failed ({}): {}",
                argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Debian's Amanda user (`CLIENT_LOGIN="backup"`, `amadmin x version`): the
/// owner of the `.amandahosts` amandad reads.
pub const AMANDA_USER: &str = "backup";

/// An inetd or xinetd service that starts amandad.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InetdService {
    /// `xinetd` or `inetd`.
    pub daemon: &'static str,
    pub file: String,
    /// The line of `service NAME` (xinetd) or of the entry (inetd).
    pub line: usize,
    pub name: String,
    /// `tcp` or `udp`.
    pub proto: String,
    /// `port =`, or a numeric service name; otherwise the services file decides.
    pub port: Option<u16>,
    pub args: String,
    /// `-auth=` of the arguments; amandad takes bsdtcp without one
    /// (A:amandad-src/amandad.c: "If no security type specified, use BSDTCP").
    pub auth: Option<Auth>,
    /// Written `-auth=` value amandad has no driver for.
    pub auth_text: Option<String>,
    pub enabled: bool,
}

impl InetdService {
    pub fn auth(&self) -> Auth {
        self.auth.unwrap_or(Auth::Bsdtcp)
    }
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// One line of `.amandahosts`: `host [user [services...]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrustLine {
    pub line: usize,
    pub host: String,
    pub user: Option<String>,
    pub services: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Amandahosts {
    /// The path amandad opens (the user's home + `/.amandahosts`).
    pub path: String,
    /// `None`: the file does not exist.
    pub lines: Option<Vec<TrustLine>>,
    /// The file's owner and permission bits (what amandad checks first).
    pub owner: Option<u32>,
    pub mode: Option<u32>,
    /// The Amanda user's uid in /etc/passwd.
    pub uid: Option<u32>,
}

/// A listening socket from `ss -lnptuH`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub proto: String,
    pub local: String,
    pub port: u16,
    pub process: String,
}

/// Whether the kernel has nf_conntrack_amanda.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Module {
    /// Loaded or built in (`/sys/module/nf_conntrack_amanda`).
    Present,
    /// Listed in `/lib/modules/RELEASE/modules.dep`: loaded on first use.
    Loadable,
    /// The release's module list does not have it.
    Missing,
    /// No module list to look in.
    Unknown,
}

#[derive(Clone, Debug, Serialize)]
pub struct Kernel {
    pub release: Option<String>,
    pub amanda_helper: Module,
    /// `net.netfilter.nf_conntrack_helper` where the kernel still has it (< 6.0).
    pub auto_assign: Option<bool>,
}

/// Everything read, parsed; `unread` says what could not be read and why.
pub struct Gathered {
    pub hostname: Option<String>,
    pub servers: Vec<AmandaConfig>,
    pub client: Option<ClientConf>,
    pub security: Option<SecurityConf>,
    pub services: Option<Services>,
    pub inetd: Vec<InetdService>,
    pub amandahosts: Option<Amandahosts>,
    /// /etc/hosts: address and names.
    pub etc_hosts: Vec<(IpAddr, Vec<String>)>,
    pub listeners: std::result::Result<Vec<Listener>, String>,
    pub rules: std::result::Result<HostRules, String>,
    pub kernel: Kernel,
    /// What sshd reads when Amanda's ssh auth logs in as the Amanda user.
    pub ssh: Option<SshSide>,
}

/// The Amanda user's side of ssh auth on this host.
#[derive(Clone, Debug, Serialize)]
pub struct SshSide {
    /// The login shell sshd runs a key's `command=` through, and its line.
    pub shell: String,
    pub passwd_at: String,
    /// `None`: no /etc/ssh/sshd_config (no OpenSSH server installed).
    pub sshd: Option<SshdConfig>,
    /// The key files sshd reads for the Amanda user, and what they hold
    /// (`None`: the file does not exist).
    pub key_files: Vec<(String, Option<Vec<KeyLine>>)>,
}

/// `abs` (an absolute path on the host) under the root, its symlinks
/// followed as if the root were `/`: Debian's `~backup/.amandahosts` is a
/// link to `/etc/amandahosts`, which in a copy must stay in the copy, and no
/// `..` climbs above the root.
pub fn under(root: &Path, abs: &str) -> PathBuf {
    fn parts(p: &Path) -> Vec<OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some(OsString::from("..")),
                _ => None,
            })
            .collect()
    }
    let at = |done: &[OsString]| -> PathBuf {
        std::iter::once(root.as_os_str())
            .chain(done.iter().map(OsString::as_os_str))
            .collect()
    };
    let mut done: Vec<OsString> = Vec::new();
    let mut todo: VecDeque<OsString> = parts(Path::new(abs)).into();
    // As the kernel's ELOOP: a loop ends, leaving a path that does not resolve.
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            done.pop();
            continue;
        }
        done.push(c);
        let Ok(target) = std::fs::read_link(at(&done)) else {
            continue;
        };
        links += 1;
        if links > 40 {
            break;
        }
        done.pop();
        if target.is_absolute() {
            done.clear();
        }
        for c in parts(&target).into_iter().rev() {
            todo.push_front(c);
        }
    }
    at(&done)
}

/// A file's text if it exists; a file that exists but cannot be read (a
/// FIFO, a device, over the limit) is an error, as for every input.
fn text(root: &Path, abs: &str) -> Result<Option<(String, String)>> {
    let p = under(root, abs);
    if std::fs::symlink_metadata(&p).is_err() {
        return Ok(None);
    }
    let bytes = crate::input::read_bytes(&p)?;
    Ok(Some((
        p.display().to_string(),
        crate::input::utf8_or_latin1(bytes),
    )))
}

fn exists(root: &Path, abs: &str) -> Option<PathBuf> {
    let p = under(root, abs);
    std::fs::metadata(&p).is_ok().then_some(p)
}

/// The names in a directory, sorted (a missing directory has none).
fn dir_names(root: &Path, abs: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(under(root, abs))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn gather(host: &dyn Host) -> Result<Gathered> {
    let root = host.root();
    let opts = LoadOptions::default();
    let mut servers = Vec::new();
    for name in dir_names(root, "/etc/amanda") {
        let conf = format!("/etc/amanda/{name}/amanda.conf");
        // An amanda.conf that is no regular file is refused like every input.
        let p = under(root, &conf);
        if std::fs::symlink_metadata(&p).is_ok() {
            if p.is_dir() {
                // load_server_config would take a directory for the config's;
                // `input` refuses it by name.
                crate::input::read_bytes(&p)?;
            }
            servers.push(conf::load_server_config(&p, &opts)?);
        }
    }
    let client = match exists(root, "/etc/amanda/amanda-client.conf") {
        Some(p) => Some(conf::load_client_conf(&p, &opts)?),
        None => None,
    };
    let security = match exists(root, "/etc/amanda-security.conf") {
        Some(p) => Some(conf::load_security_conf(&p)?),
        None => None,
    };
    let services = match exists(root, "/etc/services") {
        Some(p) => Some(conf::load_services(&p)?),
        None => None,
    };
    let mut inetd = Vec::new();
    if let Some((file, t)) = text(root, "/etc/xinetd.conf")? {
        inetd.extend(parse_xinetd(&file, &t));
    }
    // xinetd's includedir skips names with a dot or ending in `~` (xinetd.conf(5)).
    for name in dir_names(root, "/etc/xinetd.d") {
        if name.contains('.') || name.ends_with('~') {
            continue;
        }
        if let Some((file, t)) = text(root, &format!("/etc/xinetd.d/{name}"))? {
            inetd.extend(parse_xinetd(&file, &t));
        }
    }
    if let Some((file, t)) = text(root, "/etc/inetd.conf")? {
        inetd.extend(parse_inetd(&file, &t));
    }
    let amandahosts = match text(root, "/etc/passwd")? {
        Some((_, t)) => home_of(&t, AMANDA_USER)
            .map(|(uid, home)| {
                let abs = format!("{}/.amandahosts", home.trim_end_matches('/'));
                let read = text(root, &abs)?;
                // amandad opens the file through the link, as `under` does.
                let meta = std::fs::metadata(under(root, &abs)).ok();
                Ok::<_, Error>(Amandahosts {
                    path: abs,
                    lines: read.map(|(_, t)| parse_amandahosts(&t)),
                    owner: meta.as_ref().map(|m| m.uid()),
                    mode: meta.as_ref().map(|m| m.mode() & 0o7777),
                    uid,
                })
            })
            .transpose()?,
        None => None,
    };
    let etc_hosts = text(root, "/etc/hosts")?
        .map(|(_, t)| parse_hosts(&t))
        .unwrap_or_default();
    let hostname = text(root, "/etc/hostname")?
        .map(|(_, t)| t.trim().to_string())
        .filter(|h| !h.is_empty());
    let listeners = host.run(&["ss", "-lnptuH"]).map(|t| parse_ss(&t));
    Ok(Gathered {
        hostname,
        servers,
        client,
        security,
        services,
        inetd,
        amandahosts,
        etc_hosts,
        listeners,
        rules: live_rules(host),
        kernel: kernel(root)?,
        ssh: ssh_side(root)?,
    })
}

/// The Amanda user's shell and key files, and sshd's settings (its
/// `Include`s read where they stand, `*` in their last component).
fn ssh_side(root: &Path) -> Result<Option<SshSide>> {
    let Some((file, passwd)) = text(root, "/etc/passwd")? else {
        return Ok(None);
    };
    let Some((n, fields)) = passwd.lines().enumerate().find_map(|(n, l)| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() == 7 && f[0] == AMANDA_USER).then(|| (n + 1, f))
    }) else {
        return Ok(None);
    };
    let (home, shell) = (fields[5].to_string(), fields[6].to_string());
    let sshd = match text(root, "/etc/ssh/sshd_config")? {
        None => None,
        Some((_, t)) => {
            let mut c = SshdConfig::default();
            let mut failed: Option<Error> = None;
            let mut include = |pattern: &str| -> Vec<String> {
                let abs = if pattern.starts_with('/') {
                    pattern.to_string()
                } else {
                    format!("/etc/ssh/{pattern}")
                };
                let (dir, last) = abs.rsplit_once('/').unwrap_or(("/", &abs));
                let names: Vec<String> = if last.contains(['*', '?']) {
                    dir_names(root, dir)
                        .into_iter()
                        .filter(|n| sshd::glob(last, n))
                        .collect()
                } else {
                    vec![last.to_string()]
                };
                let mut texts = Vec::new();
                for n in names {
                    match text(root, &format!("{dir}/{n}")) {
                        Ok(Some((_, t))) => texts.push(t),
                        Ok(None) => {}
                        Err(e) => failed = failed.take().or(Some(e)),
                    }
                }
                texts
            };
            sshd::parse_sshd_config(&t, &mut c, &mut sshd::Seen::default(), &mut include, 0);
            if let Some(e) = failed {
                return Err(e);
            }
            Some(c)
        }
    };
    let mut key_files = Vec::new();
    if let Some(c) = &sshd {
        for path in c.key_files(AMANDA_USER, &home) {
            let lines = text(root, &path)?.map(|(_, t)| sshd::parse_authorized_keys(&t));
            key_files.push((path, lines));
        }
    }
    Ok(Some(SshSide {
        shell,
        passwd_at: format!("{file}:{n}"),
        sshd,
        key_files,
    }))
}

/// The live ruleset as `apply` reads it: iptables-save, the rest of nft's
/// ruleset, the ipsets. The nft text listing rather than `nft -j`: the
/// admin can find FILE:LINE of the listing in `nft -a list ruleset`, while
/// the JSON is one line.
fn live_rules(host: &dyn Host) -> std::result::Result<HostRules, String> {
    let mut files = Vec::new();
    let mut why = Vec::new();
    match host.run(&["iptables-save"]) {
        Ok(t) if !t.trim().is_empty() => files.push(
            RulesFile::parse("(live iptables-save)", t)
                .map_err(|e| format!("iptables-save: {e}"))?,
        ),
        Ok(_) => {}
        Err(e) => why.push(e),
    }
    match host.run(&["nft", "list", "ruleset"]) {
        Ok(t) => {
            let other = crate::apply::without_iptables_tables(&t);
            if !other.trim().is_empty() {
                files.push(
                    RulesFile::parse("(live nft list ruleset)", other)
                        .map_err(|e| format!("nft list ruleset: {e}"))?,
                );
            }
        }
        Err(e) => why.push(e),
    }
    if why.len() == 2 {
        return Err(why.join("; "));
    }
    let sets = host
        .run(&["ipset", "save"])
        .ok()
        .and_then(|t| crate::netfilter::ipset::parse("(live ipset save)", &t).ok());
    Ok(HostRules::new(files, sets))
}

fn kernel(root: &Path) -> Result<Kernel> {
    let release = text(root, "/proc/sys/kernel/osrelease")?.map(|(_, t)| t.trim().to_string());
    let amanda_helper = if exists(root, "/sys/module/nf_conntrack_amanda").is_some() {
        Module::Present
    } else {
        let lists = release.as_ref().map(|r| {
            [
                format!("/lib/modules/{r}/modules.dep"),
                format!("/lib/modules/{r}/modules.builtin"),
            ]
        });
        let mut seen = None;
        for f in lists.iter().flatten() {
            if let Some((_, t)) = text(root, f)? {
                let has = t.contains("nf_conntrack_amanda.ko");
                seen = Some(seen.unwrap_or(false) || has);
            }
        }
        match seen {
            Some(true) => Module::Loadable,
            Some(false) => Module::Missing,
            None => Module::Unknown,
        }
    };
    let auto_assign =
        text(root, "/proc/sys/net/netfilter/nf_conntrack_helper")?.map(|(_, t)| t.trim() == "1");
    Ok(Kernel {
        release,
        amanda_helper,
        auto_assign,
    })
}

/// The user's uid and home directory.
fn home_of(passwd: &str, user: &str) -> Option<(Option<u32>, String)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[0] == user).then(|| (f[2].parse().ok(), f[5].to_string()))
    })
}

fn is_amandad(server: &str) -> bool {
    server.rsplit('/').next() == Some("amandad")
}

fn auth_of(args: &str) -> (Option<Auth>, Option<String>) {
    for w in args.split_whitespace() {
        if let Some(a) = w.strip_prefix("-auth=") {
            return (Auth::parse(&a.to_ascii_lowercase()), Some(a.to_string()));
        }
    }
    (None, None)
}

/// xinetd's `service NAME { key = value ... }` blocks (xinetd.conf(5)); only
/// those that start amandad.
pub fn parse_xinetd(file: &str, text: &str) -> Vec<InetdService> {
    let mut out = Vec::new();
    // The open block: its line, its name, its assignments.
    type Block = (usize, String, Vec<(String, String)>);
    let mut cur: Option<Block> = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.split('#').next().unwrap_or("").trim();
        if let Some(name) = l.strip_prefix("service ").or(l.strip_prefix("service\t")) {
            cur = Some((i + 1, name.trim().to_string(), Vec::new()));
            continue;
        }
        if l == "}" {
            if let Some((line, name, kv)) = cur.take() {
                if let Some(s) = xinetd_service(file, line, name, &kv) {
                    out.push(s);
                }
            }
            continue;
        }
        if let (Some((_, _, kv)), Some((k, v))) = (cur.as_mut(), l.split_once('=')) {
            let k = k.trim().trim_end_matches(['+', '-']).trim();
            kv.push((k.to_string(), v.trim().to_string()));
        }
    }
    out
}

fn xinetd_service(
    file: &str,
    line: usize,
    name: String,
    kv: &[(String, String)],
) -> Option<InetdService> {
    let get = |k: &str| {
        kv.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if !is_amandad(get("server")?) {
        return None;
    }
    let args = kv
        .iter()
        .filter(|(k, _)| k == "server_args")
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let proto = match (get("protocol"), get("socket_type")) {
        (Some(p), _) => p.to_string(),
        (None, Some("dgram")) => "udp".into(),
        _ => "tcp".into(),
    };
    let (auth, auth_text) = auth_of(&args);
    Some(InetdService {
        daemon: "xinetd",
        file: file.to_string(),
        line,
        port: get("port")
            .and_then(|p| p.parse().ok())
            .or(name.parse().ok()),
        name,
        proto,
        args,
        auth,
        auth_text,
        enabled: get("disable") != Some("yes"),
    })
}

/// inetd.conf(5) lines `service socktype proto wait user server args...`;
/// Debian's update-inetd disables an entry by prefixing `#<off>#`.
pub fn parse_inetd(file: &str, text: &str) -> Vec<InetdService> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let (enabled, l) = match raw.trim_start().strip_prefix("#<off>#") {
            Some(rest) => (false, rest),
            None if raw.trim_start().starts_with('#') => continue,
            None => (true, raw),
        };
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 6 || !is_amandad(w[5]) {
            continue;
        }
        // argv[0] first, then amandad's own arguments.
        let args = w.get(7..).unwrap_or_default().join(" ");
        let (auth, auth_text) = auth_of(&args);
        let name = w[0].rsplit(':').next().unwrap_or(w[0]).to_string();
        out.push(InetdService {
            daemon: "inetd",
            file: file.to_string(),
            line: i + 1,
            port: name.parse().ok(),
            name,
            proto: w[2].trim_end_matches(['4', '6']).to_string(),
            args,
            auth,
            auth_text,
            enabled,
        });
    }
    out
}

pub fn parse_amandahosts(text: &str) -> Vec<TrustLine> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let mut w = l.split('#').next().unwrap_or("").split_whitespace();
            let host = w.next()?.to_string();
            Some(TrustLine {
                line: i + 1,
                host,
                user: w.next().map(str::to_string),
                services: w.map(str::to_string).collect(),
            })
        })
        .collect()
}

pub fn parse_hosts(text: &str) -> Vec<(IpAddr, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split('#').next().unwrap_or("").split_whitespace();
            let addr = w.next()?.parse().ok()?;
            Some((addr, w.map(str::to_string).collect()))
        })
        .collect()
}

/// `ss -lnptuH`: `udp UNCONN 0 0 0.0.0.0:10080 0.0.0.0:* users:(("xinetd",...))`.
pub fn parse_ss(text: &str) -> Vec<Listener> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let local = *w.get(4)?;
            let port = local.rsplit(':').next()?.parse().ok()?;
            Some(Listener {
                proto: w[0].to_string(),
                local: local.to_string(),
                port,
                process: w.get(6..).unwrap_or_default().join(" "),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's /etc/xinetd.d/amanda (amanda-common 1:3.5.1-11+deb12u2).
    const DEBIAN_XINETD: &str = "# default: on\n#\nservice amanda\n{\n\tdisable\t\t= no\n\tflags\t\t= IPv4\n\tsocket_type\t= stream\n\tprotocol\t= tcp\n\twait\t\t= no\n\tuser\t\t= backup\n\tgroup\t\t= disk\n\tgroups\t\t= yes\n\tserver\t\t= /usr/lib/amanda/amandad\n\tserver_args\t= -auth=bsdtcp amdump amindexd amidxtaped senddiscover\n}\n";

    #[test]
    fn debian_xinetd_serves_bsdtcp_on_tcp() {
        let s = parse_xinetd("/etc/xinetd.d/amanda", DEBIAN_XINETD);
        assert_eq!(s.len(), 1);
        assert_eq!(
            (
                s[0].proto.as_str(),
                s[0].auth(),
                s[0].line,
                s[0].enabled,
                s[0].port
            ),
            ("tcp", Auth::Bsdtcp, 3, true, None)
        );
    }

    #[test]
    fn inetd_lines_and_disabled_entries() {
        let t = "#<off># amanda stream tcp nowait backup /usr/lib/amanda/amandad amandad -auth=bsdtcp amdump\n10080 dgram udp wait backup /usr/lib/amanda/amandad amandad -auth=bsd amdump\nftp stream tcp nowait root /usr/sbin/ftpd ftpd\n";
        let s = parse_inetd("/etc/inetd.conf", t);
        assert_eq!(s.len(), 2);
        assert!(!s[0].enabled);
        assert_eq!(
            (s[1].proto.as_str(), s[1].port, s[1].auth()),
            ("udp", Some(10080), Auth::Bsd)
        );
    }

    #[test]
    fn no_auth_argument_means_bsdtcp() {
        let s = parse_inetd(
            "f",
            "amanda stream tcp nowait backup /usr/lib/amanda/amandad amandad amdump\n",
        );
        assert_eq!((s[0].auth, s[0].auth()), (None, Auth::Bsdtcp));
    }

    #[test]
    fn ss_lines() {
        let l = parse_ss("udp UNCONN 0 0 0.0.0.0:10080 0.0.0.0:* users:((\"xinetd\",pid=7,fd=5))\ntcp LISTEN 0 64 [::]:22 [::]:*\n");
        assert_eq!((l[0].proto.as_str(), l[0].port), ("udp", 10080));
        assert!(l[0].process.contains("xinetd"));
        assert_eq!(l[1].port, 22);
    }

    #[test]
    fn dot_dot_stops_at_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../../dev/zero", d.path().join("etc/inetd.conf"))
            .unwrap();
        assert_eq!(
            under(d.path(), "/etc/inetd.conf"),
            d.path().join("dev/zero")
        );
        std::os::unix::fs::symlink("loop", d.path().join("etc/loop")).unwrap();
        assert_eq!(under(d.path(), "/etc/loop"), d.path().join("etc/loop"));
    }

    #[test]
    fn symlinks_stay_under_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::create_dir_all(d.path().join("var/backups")).unwrap();
        std::fs::write(d.path().join("etc/amandahosts"), "x\n").unwrap();
        std::os::unix::fs::symlink(
            "/etc/amandahosts",
            d.path().join("var/backups/.amandahosts"),
        )
        .unwrap();
        assert_eq!(
            under(d.path(), "/var/backups/.amandahosts"),
            d.path().join("etc/amandahosts")
        );
    }
}
