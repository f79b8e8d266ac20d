//! The topology file (TOML) → a validated `Deployment`.
//!
//! Parsing keeps `toml::Spanned` positions for everything a user can get wrong,
//! so each error points at the exact value with a caret. Validation happens
//! here, once; the rest of the pipeline trusts the model.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::Deserialize;
use toml::Spanned;

use super::*;
use crate::amanda::facts;
use crate::amanda::settings::{AmandaSettings, Auth, Build, ClientPort};
use crate::diag::{Error, InputError, Result};
use crate::ports::{PortRange, Proto};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTopology {
    amanda: Option<Spanned<RawAmanda>>,
    management: Option<Spanned<RawManagement>>,
    #[serde(default)]
    network: Vec<Spanned<RawNetwork>>,
    #[serde(default)]
    host: Vec<Spanned<RawHost>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAmanda {
    build: Option<Spanned<String>>,
    /// Whether this Amanda build speaks IPv6 (`amadmin x version`'s
    /// CONFIGURE_ARGS: `--without-ipv6` means no); the build's default otherwise.
    ipv6: Option<Spanned<bool>>,
    auth: Option<Spanned<String>>,
    reserved_udp_port: Option<Spanned<Vec<i64>>>,
    reserved_tcp_port: Option<Spanned<Vec<i64>>>,
    unreserved_tcp_port: Option<Spanned<Vec<i64>>>,
    client_port: Option<Spanned<RawClientPort>>,
    index: Option<bool>,
    conntrack_helper: Option<bool>,
    legacy_recover: Option<bool>,
    inparallel: Option<Spanned<i64>>,
    // Global only: where the Amanda side comes from.
    amanda_config: Option<Spanned<String>>,
    hosts_file: Option<Spanned<String>>,
    security_conf: Option<Spanned<String>>,
    services_file: Option<Spanned<String>>,
}

/// `expecting`: serde's own message for an untagged enum names the Rust type.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "`client-port` is a port number (client-port = 10080) or a service name (client-port = \"amanda\")"
)]
enum RawClientPort {
    Number(i64),
    Service(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawManagement {
    enabled: Option<bool>,
    proto: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    from: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawNetwork {
    name: Spanned<String>,
    /// The link's IPv4 prefix; absent on an IPv6-only network.
    cidr: Option<Spanned<String>>,
    /// The link's IPv6 prefix: the same link's on a dual-stack network,
    /// the only one on an IPv6-only network.
    cidr6: Option<Spanned<String>>,
    /// Default gateway for hosts on this network that only a hosts file names.
    gateway: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawHost {
    name: Spanned<String>,
    #[serde(default)]
    roles: Vec<Spanned<String>>,
    #[serde(default)]
    interfaces: Vec<Spanned<RawInterface>>,
    gateway: Option<Spanned<String>>,
    server: Option<Spanned<String>>,
    #[serde(default)]
    masquerade: Vec<Spanned<RawMasquerade>>,
    amanda: Option<Spanned<RawAmanda>>,
    amanda_client_conf: Option<Spanned<String>>,
    firewall: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawInterface {
    name: Spanned<String>,
    network: Spanned<String>,
    /// Absent for an interface that speaks only IPv6 (then `address6` is required).
    address: Option<Spanned<String>>,
    address6: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMasquerade {
    from: Spanned<String>,
    to: Spanned<String>,
}

/// A topology validated up to the point where the admin's Amanda files join
/// in. The loading layer (`crate::load`) reads those files, applies them to
/// `hosts` between `parse` and `finish`, and so `model` never reads Amanda's
/// files itself: the checks that need every host (servers, management) run in
/// `finish`, after hosts only a disklist named have been added.
pub struct Draft {
    cx: Cx,
    raw: RawTopology,
    pub build: Build,
    /// Whether Amanda speaks IPv6 (`[amanda] ipv6`, else the build's default).
    ipv6: bool,
    /// The `[amanda]` settings over the build's defaults.
    pub global: AmandaSettings,
    pub networks: Vec<Network>,
    net_ids: HashMap<String, NetId>,
    pub hosts: Vec<Host>,
    /// Per host: the settings its `[host.amanda]` table set (they win over the Amanda files).
    pub overrides: Vec<Vec<String>>,
    /// Per network: the gateway for hosts added on it (`[[network]] gateway`).
    pub network_gateway: Vec<Option<HostId>>,
    /// Where `amanda-config` is written, for errors about the config as a whole.
    config_span: std::ops::Range<usize>,
}

impl Draft {
    /// Parse and validate topology text; `name` is what errors call the file,
    /// and paths in the text are relative to its directory.
    pub fn parse(name: &str, text: String) -> Result<Draft> {
        let text = Arc::new(text);
        let base = match Path::new(name).parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let cx = Cx {
            name: name.to_string(),
            text,
            base,
        };
        let raw: RawTopology = toml::from_str(&cx.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            cx.err(span, e.message().to_string(), "here")
        })?;
        let (build, ipv6, global) = cx.amanda_defaults(&raw)?;
        let (networks, net_ids) = cx.networks(&raw)?;
        let host_ids = cx.host_names(&raw)?;
        let mut hosts = Vec::new();
        let mut overrides = Vec::new();
        let mut addr_owner = HashMap::new();
        for (hid, sh) in raw.host.iter().enumerate() {
            let ids = Ids {
                nets: &net_ids,
                hosts: &host_ids,
            };
            let (host, over) = cx.host(hid, sh, &global, &networks, ids, &mut addr_owner)?;
            hosts.push(host);
            overrides.push(over);
        }
        cx.check_gateways(&raw, &hosts)?;
        let network_gateway = cx.network_gateways(&raw, &hosts, &networks, &host_ids)?;
        let config_span = raw
            .amanda
            .as_ref()
            .and_then(|a| a.get_ref().amanda_config.as_ref())
            .map(span_of)
            .unwrap_or(0..0);
        Ok(Draft {
            cx,
            raw,
            build,
            ipv6,
            global,
            networks,
            net_ids,
            hosts,
            overrides,
            network_gateway,
            config_span,
        })
    }

    /// The Amanda files to read: the CLI's (`extra`) over the topology's own
    /// keys, whose paths are relative to the topology's directory.
    pub fn amanda_sources(&self, extra: &AmandaSources) -> Result<AmandaSources> {
        let (cx, raw, hosts) = (&self.cx, &self.raw, &self.hosts);
        let raw_amanda = raw.amanda.as_ref().map(|a| a.get_ref());
        let mut sources = extra.clone();
        if let Some(a) = raw_amanda {
            let path = |v: &Spanned<String>| cx.base.join(v.get_ref());
            if sources.config.is_none() {
                sources.config = a.amanda_config.as_ref().map(path);
            }
            if sources.hosts_file.is_none() {
                sources.hosts_file = a.hosts_file.as_ref().map(path);
            }
            if sources.security_conf.is_none() {
                sources.security_conf = a.security_conf.as_ref().map(path);
            }
            if sources.services.is_none() {
                sources.services = a.services_file.as_ref().map(path);
            }
        }
        for (hid, sh) in raw.host.iter().enumerate() {
            if let Some(c) = &sh.get_ref().amanda_client_conf {
                if !sources
                    .client_confs
                    .iter()
                    .any(|(n, _)| *n == hosts[hid].name)
                {
                    sources
                        .client_confs
                        .push((hosts[hid].name.clone(), cx.base.join(c.get_ref())));
                }
            }
        }
        // A hosts file only places the disklist's hosts: without an Amanda
        // config nothing reads it, and saying nothing would hide a typo.
        if sources.hosts_file.is_some() && sources.config.is_none() {
            let from_file = raw_amanda
                .and_then(|a| a.hosts_file.as_ref())
                .filter(|_| extra.hosts_file.is_none());
            let msg = "a hosts file is given but no Amanda config: it only gives addresses to hosts the disklist names, so it would be ignored";
            let help =
                "add amanda-config = \"DIR\" (or --amanda-config DIR), or remove the hosts file";
            return Err(match from_file {
                Some(k) => cx.err_help(span_of(k), msg, "nothing reads this", help),
                None => Error::Usage(format!("--hosts: {msg}; {help}")),
            });
        }
        // A hosts file named in the topology that cannot be opened: say so at
        // the key, not as a bare path later.
        if let (Some(k), None) = (
            raw_amanda.and_then(|a| a.hosts_file.as_ref()),
            &extra.hosts_file,
        ) {
            let p = cx.base.join(k.get_ref());
            if let Err(e) = std::fs::metadata(&p) {
                return Err(cx.err_help(
                    span_of(k),
                    format!("hosts file {}: {e}", p.display()),
                    "cannot be read",
                    "the path is relative to the topology file's directory",
                ));
            }
        }
        Ok(sources)
    }

    /// The one server, if there is exactly one: the host whose amanda.conf it is.
    pub fn server(&self) -> Option<HostId> {
        let mut servers = (0..self.hosts.len()).filter(|&i| self.hosts[i].roles.server);
        match (servers.next(), servers.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// Where errors about the Amanda config as a whole point: the topology's
    /// `amanda-config` key (or the file's start when the CLI named the config).
    pub fn config_at(&self) -> ConfigAt {
        ConfigAt {
            name: self.cx.name.clone(),
            text: Arc::clone(&self.cx.text),
            span: self.config_span.clone(),
        }
    }

    /// The checks that need every host, then the deployment.
    pub fn finish(self, provenance: AmandaProvenance) -> Result<Deployment> {
        let Draft {
            cx,
            raw,
            build,
            ipv6,
            global,
            networks,
            net_ids,
            mut hosts,
            overrides,
            ..
        } = self;
        cx.assign_servers(&raw, &mut hosts)?;
        let management = cx.management(&raw, &networks, &net_ids)?;
        Ok(Deployment {
            source_name: cx.name.clone(),
            source_text: Arc::clone(&cx.text),
            build,
            ipv6,
            networks,
            hosts,
            management,
            amanda: global,
            overrides,
            provenance,
        })
    }
}

/// See `Draft::config_at`; owned, so errors can be made while the hosts are borrowed.
#[derive(Clone)]
pub struct ConfigAt {
    name: String,
    text: Arc<String>,
    span: std::ops::Range<usize>,
}

impl ConfigAt {
    pub fn error(&self, msg: String) -> Error {
        InputError::new(&self.name, &self.text, self.span.clone(), msg, "here").into()
    }
}

/// The name → index maps a host's references resolve through.
#[derive(Clone, Copy)]
struct Ids<'a> {
    nets: &'a HashMap<String, NetId>,
    hosts: &'a HashMap<String, HostId>,
}

struct Cx {
    name: String,
    text: Arc<String>,
    /// Directory that relative paths in the topology are relative to.
    base: std::path::PathBuf,
}

fn span_of<T>(s: &Spanned<T>) -> std::ops::Range<usize> {
    s.span()
}

impl Cx {
    fn err(
        &self,
        span: std::ops::Range<usize>,
        msg: impl Into<String>,
        label: impl Into<String>,
    ) -> Error {
        InputError::new(&self.name, &self.text, span, msg, label).into()
    }

    fn err_help(
        &self,
        span: std::ops::Range<usize>,
        msg: impl Into<String>,
        label: impl Into<String>,
        help: impl Into<String>,
    ) -> Error {
        InputError::new(&self.name, &self.text, span, msg, label)
            .with_help(help)
            .into()
    }

    fn range(
        &self,
        v: &Spanned<Vec<i64>>,
        key: &str,
        privileged: Option<bool>,
    ) -> Result<PortRange> {
        let vals = v.get_ref();
        if vals.len() != 2 {
            return Err(self.err(
                span_of(v),
                format!(
                    "`{key}` must be two ports [low, high], got {} values",
                    vals.len()
                ),
                "expected [low, high]",
            ));
        }
        let (lo, hi) = (vals[0], vals[1]);
        for p in [lo, hi] {
            if !(1..=65535).contains(&p) {
                return Err(self.err(
                    span_of(v),
                    format!("`{key}`: port {p} is outside 1-65535"),
                    "port out of range",
                ));
            }
        }
        if lo > hi {
            return Err(self.err(
                span_of(v),
                format!("`{key}` is reversed: {lo} > {hi}"),
                "expected [low, high] with low <= high",
            ));
        }
        let r = PortRange::new(lo as u16, hi as u16);
        // conffile.c validates reserved ports in 1-1023 and unreserved in 1024-65535.
        match privileged {
            Some(true) if !r.is_privileged() => Err(self.err_help(
                span_of(v),
                format!("`{key}` {lo}-{hi} reaches 1024 or above; reserved ports must be below 1024"),
                "not a reserved (privileged) range",
                "Amanda only accepts 1-1023 here (common-src/conffile.c); clients reject control requests from ports >= 1024 (\"port N not secure\")",
            )),
            Some(false) if lo < 1024 => Err(self.err_help(
                span_of(v),
                format!("`{key}` {lo}-{hi} starts below 1024; unreserved ports must be 1024-65535"),
                "privileged port in an unreserved range",
                "Amanda only accepts 1024-65535 here (common-src/conffile.c)",
            )),
            _ => Ok(r),
        }
    }

    /// Apply `raw` on top of `base`.
    fn settings(
        &self,
        base: &AmandaSettings,
        raw: &RawAmanda,
        overridden: &mut Vec<String>,
    ) -> Result<AmandaSettings> {
        let mut s = base.clone();
        if let Some(a) = &raw.auth {
            s.auth = Auth::parse(a.get_ref()).ok_or_else(|| {
                self.err_help(
                    span_of(a),
                    format!("unknown auth `{}`", a.get_ref()),
                    "expected bsd, bsdudp, bsdtcp, ssh or local",
                    "Debian's Amanda 3.5.1 is built with bsd, bsdudp, bsdtcp, ssh and local only (no krb5, no rsh)",
                )
            })?;
            overridden.push("auth".into());
        }
        if let Some(v) = &raw.reserved_udp_port {
            s.reserved_udp_port = self.range(v, "reserved-udp-port", Some(true))?;
            overridden.push("reserved-udp-port".into());
        }
        if let Some(v) = &raw.reserved_tcp_port {
            s.reserved_tcp_port = self.range(v, "reserved-tcp-port", Some(true))?;
            overridden.push("reserved-tcp-port".into());
        }
        if let Some(v) = &raw.unreserved_tcp_port {
            s.unreserved_tcp_port = self.range(v, "unreserved-tcp-port", Some(false))?;
            overridden.push("unreserved-tcp-port".into());
        }
        if let Some(cp) = &raw.client_port {
            s.client_port = Some(match cp.get_ref() {
                RawClientPort::Number(n) if (1..=65535).contains(n) => {
                    ClientPort::Number(*n as u16)
                }
                RawClientPort::Number(n) => {
                    return Err(self.err(
                        span_of(cp),
                        format!("`client-port` {n} is outside 1-65535"),
                        "port out of range",
                    ))
                }
                RawClientPort::Service(name) => match name.parse::<u16>() {
                    // amanda.conf writes client-port "10080" as a string: that is numeric.
                    Ok(n) if n > 0 => ClientPort::Number(n),
                    _ if facts::service_port(name).is_some() => ClientPort::Service(name.clone()),
                    _ => {
                        return Err(self.err_help(
                            span_of(cp),
                            format!(
                                "`client-port` names service `{name}`, which amwall does not know"
                            ),
                            "unknown service",
                            "write the port number, e.g. client-port = 10080",
                        ))
                    }
                },
            });
            overridden.push("client-port".into());
        }
        if let Some(b) = raw.index {
            s.index = b;
            overridden.push("index".into());
        }
        if let Some(b) = raw.conntrack_helper {
            s.conntrack_helper = b;
            overridden.push("conntrack-helper".into());
        }
        if let Some(b) = raw.legacy_recover {
            s.legacy_recover = b;
            overridden.push("legacy-recover".into());
        }
        if let Some(n) = &raw.inparallel {
            let v = *n.get_ref();
            if !(1..=1000).contains(&v) {
                return Err(self.err(
                    span_of(n),
                    format!("`inparallel` {v} is outside 1-1000"),
                    "expected 1-1000",
                ));
            }
            s.inparallel = v as u32;
            overridden.push("inparallel".into());
        }
        Ok(s)
    }

    /// `[amanda]`: the build and the settings every host starts from.
    fn amanda_defaults(&self, raw: &RawTopology) -> Result<(Build, bool, AmandaSettings)> {
        let raw_amanda = raw.amanda.as_ref().map(|a| a.get_ref());
        let build = match raw_amanda.and_then(|a| a.build.as_ref()) {
            None => Build::Debian,
            Some(b) => match b.get_ref().as_str() {
                "debian" => Build::Debian,
                "upstream" => Build::Upstream,
                other => {
                    return Err(self.err(
                        span_of(b),
                        format!("unknown build `{other}`"),
                        "expected \"debian\" or \"upstream\"",
                    ))
                }
            },
        };
        let defaults = facts::defaults(build);
        let mut global_over = Vec::new();
        let global = match raw_amanda {
            Some(a) => self.settings(&defaults, a, &mut global_over)?,
            None => defaults,
        };
        let ipv6 = match raw_amanda.and_then(|a| a.ipv6.as_ref()) {
            None => facts::speaks_ipv6(build),
            Some(v) if *v.get_ref() && build == Build::Debian => {
                return Err(self.err_help(
                    span_of(v),
                    "Debian's Amanda packages are built --without-ipv6, so `ipv6 = true` contradicts build = \"debian\"",
                    "not with this build",
                    "for your own build, set build = \"upstream\" (and its port ranges); `amadmin x version` shows --without-ipv6 in CONFIGURE_ARGS when a build has no IPv6",
                ));
            }
            Some(v) => *v.get_ref(),
        };
        Ok((build, ipv6, global))
    }

    /// `[[network]]`: unique names and prefixes.
    fn networks(&self, raw: &RawTopology) -> Result<(Vec<Network>, HashMap<String, NetId>)> {
        let mut networks = Vec::new();
        let mut net_ids: HashMap<String, NetId> = HashMap::new();
        for n in &raw.network {
            let n = n.get_ref();
            let name = n.name.get_ref().clone();
            if let Err(why) = crate::name::network(&name) {
                return Err(self.err(
                    span_of(&n.name),
                    format!("network name `{}`: {why}", name.escape_debug()),
                    "not a usable network name",
                ));
            }
            if net_ids.insert(name.clone(), networks.len()).is_some() {
                return Err(self.err(
                    span_of(&n.name),
                    format!("duplicate network name `{name}`"),
                    "defined twice",
                ));
            }
            let cidr = match &n.cidr {
                None => None,
                Some(c) => Some(self.cidr(c, &name, &networks)?),
            };
            if n.cidr.is_none() && n.cidr6.is_none() {
                return Err(self.err_help(
                    span_of(&n.name),
                    format!("network `{name}` has neither `cidr` nor `cidr6`"),
                    "no prefix",
                    "give its IPv4 prefix (cidr = \"192.0.2.0/24\"), its IPv6 prefix (cidr6 = \"2001:db8::/64\") or both",
                ));
            }
            let cidr6 = match &n.cidr6 {
                None => None,
                Some(c6) => {
                    let net = parse_net6(c6.get_ref()).ok_or_else(|| {
                        self.err_help(
                            span_of(c6),
                            format!("`{}` is not an IPv6 network", c6.get_ref()),
                            "expected a prefix like 2001:db8:2::/64",
                            "the link's IPv6 prefix, host bits zero (`ip -6 route` on a host there shows it)",
                        )
                    })?;
                    if let Some(other) = networks.iter().find(|o| o.cidr6 == Some(net)) {
                        return Err(self.err(
                            span_of(c6),
                            format!("networks `{}` and `{name}` are both {net}", other.name),
                            "same prefix twice",
                        ));
                    }
                    Some(net)
                }
            };
            networks.push(Network { name, cidr, cidr6 });
        }
        Ok((networks, net_ids))
    }

    /// A network's `cidr`: an IPv4 prefix no other network has.
    fn cidr(&self, c: &Spanned<String>, name: &str, networks: &[Network]) -> Result<Ipv4Net> {
        let cidr = parse_net(c.get_ref()).ok_or_else(|| {
            self.err(
                span_of(c),
                format!("`{}` is not an IPv4 network", c.get_ref()),
                "expected a prefix like 192.0.2.0/24",
            )
        })?;
        if let Some(other) = networks.iter().find(|o| o.cidr == Some(cidr)) {
            return Err(self.err_help(
                span_of(c),
                format!("networks `{}` and `{name}` are both {cidr}", other.name),
                "same prefix twice",
                "one wire is one [[network]]: give its hosts one network, or correct the prefix",
            ));
        }
        Ok(cidr)
    }

    /// A `network = "..."` reference.
    fn net_ref(&self, net_ids: &HashMap<String, NetId>, s: &Spanned<String>) -> Result<NetId> {
        net_ids.get(s.get_ref()).copied().ok_or_else(|| {
            let mut known: Vec<_> = net_ids.keys().cloned().collect();
            known.sort();
            self.err_help(
                span_of(s),
                format!("unknown network `{}`", s.get_ref()),
                "not defined in any [[network]]",
                format!("known networks: {}", known.join(", ")),
            )
        })
    }

    /// First pass over `[[host]]`: names, unique ignoring case, so that
    /// references may point forward.
    fn host_names(&self, raw: &RawTopology) -> Result<HashMap<String, HostId>> {
        if raw.host.is_empty() {
            return Err(self.err_help(
                0..0,
                "the topology has no [[host]]: there is nothing to write rules for",
                "no hosts",
                "describe each machine as [[host]] with name, roles and interfaces (see examples/wiki.toml)",
            ));
        }
        let mut host_ids: HashMap<String, HostId> = HashMap::new();
        let mut host_keys: HashMap<String, HostId> = HashMap::new();
        for (i, h) in raw.host.iter().enumerate() {
            let name = h.get_ref().name.get_ref();
            if let Err(why) = crate::name::host(name) {
                return Err(self.err_help(
                    span_of(&h.get_ref().name),
                    format!("host name `{}`: {why}", name.escape_debug()),
                    "used in file names, rule comments and commands",
                    "write the host's name as DNS knows it, e.g. \"lhost\" or \"lhost.example.org\"",
                ));
            }
            if let Some(prev) = host_keys.insert(crate::name::host_key(name), i) {
                return Err(self.err(
                    span_of(&h.get_ref().name),
                    format!(
                        "duplicate host name `{name}` (host names ignore case: `{}` is the same host)",
                        raw.host[prev].get_ref().name.get_ref()
                    ),
                    "defined twice",
                ));
            }
            host_ids.insert(name.clone(), i);
        }
        Ok(host_ids)
    }

    /// A `gateway`/`server = "..."` reference.
    fn host_ref(&self, host_ids: &HashMap<String, HostId>, s: &Spanned<String>) -> Result<HostId> {
        host_ids.get(s.get_ref()).copied().ok_or_else(|| {
            self.err(
                span_of(s),
                format!("unknown host `{}`", s.get_ref()),
                "not defined in any [[host]]",
            )
        })
    }

    /// Second pass: one `[[host]]`, with the settings its `[host.amanda]` set.
    #[allow(clippy::too_many_arguments)] // the loader's state so far, each used
    fn host(
        &self,
        hid: HostId,
        sh: &Spanned<RawHost>,
        global: &AmandaSettings,
        networks: &[Network],
        ids: Ids<'_>,
        addr_owner: &mut HashMap<std::net::IpAddr, std::ops::Range<usize>>,
    ) -> Result<(Host, Vec<String>)> {
        let h = sh.get_ref();
        let mut roles = Roles::default();
        for r in &h.roles {
            match r.get_ref().as_str() {
                "server" => roles.server = true,
                "client" => roles.client = true,
                "recover" => roles.recover = true,
                "router" => roles.router = true,
                other => {
                    return Err(self.err(
                        span_of(r),
                        format!("unknown role `{other}`"),
                        "expected server, client, recover or router",
                    ))
                }
            }
        }
        if h.interfaces.is_empty() {
            return Err(self.err(
                span_of(&h.name),
                format!("host `{}` has no interfaces", h.name.get_ref()),
                "add interfaces = [{ name, network, address }]",
            ));
        }
        let interfaces = self.interfaces(h, networks, ids.nets, addr_owner)?;
        let gateway = match &h.gateway {
            Some(g) => {
                let gid = self.host_ref(ids.hosts, g)?;
                if gid == hid {
                    return Err(self.err(
                        span_of(g),
                        "a host cannot be its own gateway",
                        "names this host",
                    ));
                }
                Some(gid)
            }
            None => None,
        };
        let masquerade = self.masquerade(h, &interfaces, networks, ids.nets)?;
        if !masquerade.is_empty() {
            // Masquerading means forwarding; saying "router" again would add nothing.
            roles.router = true;
        }
        if roles.router && interfaces.len() < 2 {
            return Err(self.err(
                span_of(&h.name),
                format!(
                    "router `{}` needs interfaces on at least two networks",
                    h.name.get_ref()
                ),
                "only one interface",
            ));
        }
        let mut over = Vec::new();
        let amanda = match &h.amanda {
            Some(a) => {
                let a_ref = a.get_ref();
                if let Some(b) = &a_ref.ipv6 {
                    return Err(self.err(
                        span_of(b),
                        "`ipv6` is a global setting",
                        "move it to [amanda]",
                    ));
                }
                for (key, v) in [
                    ("build", &a_ref.build),
                    ("amanda-config", &a_ref.amanda_config),
                    ("hosts-file", &a_ref.hosts_file),
                    ("security-conf", &a_ref.security_conf),
                    ("services-file", &a_ref.services_file),
                ] {
                    if let Some(b) = v {
                        return Err(self.err(
                            span_of(b),
                            format!("`{key}` is a global setting"),
                            "move it to [amanda]",
                        ));
                    }
                }
                self.settings(global, a.get_ref(), &mut over)?
            }
            None => global.clone(),
        };
        let server = match &h.server {
            Some(s) => Some(self.host_ref(ids.hosts, s)?),
            None => None,
        };
        let firewall = match &h.firewall {
            Some(f) => Some(
                Manager::ALL
                    .into_iter()
                    .find(|m| m.name() == f.get_ref())
                    .ok_or_else(|| {
                        self.err_help(
                            span_of(f),
                            format!("unknown firewall manager `{}`", f.get_ref().escape_debug()),
                            "not a manager amwall knows",
                            "one of: amwall, shared (other iptables rules too), firewalld, ufw",
                        )
                    })?,
            ),
            None => None,
        };
        Ok((
            Host {
                firewall,
                name: h.name.get_ref().clone(),
                interfaces,
                gateway,
                roles,
                server,
                masquerade,
                client_conf: amanda.clone(),
                amanda,
                span: Span {
                    start: span_of(&h.name).start,
                    end: span_of(&h.name).end,
                },
            },
            over,
        ))
    }

    /// A host's interfaces: kernel-usable names, one per network, host
    /// addresses inside their network and used once in the whole topology.
    fn interfaces(
        &self,
        h: &RawHost,
        networks: &[Network],
        net_ids: &HashMap<String, NetId>,
        addr_owner: &mut HashMap<std::net::IpAddr, std::ops::Range<usize>>,
    ) -> Result<Vec<Interface>> {
        let mut interfaces: Vec<Interface> = Vec::new();
        for si in &h.interfaces {
            let i = si.get_ref();
            if interfaces.iter().any(|x| &x.name == i.name.get_ref()) {
                return Err(self.err(
                    span_of(&i.name),
                    format!("duplicate interface `{}`", i.name.get_ref()),
                    "defined twice",
                ));
            }
            if let Err(why) = crate::name::interface(i.name.get_ref()) {
                let wildcard = i.name.get_ref().contains(['+', '*']);
                return Err(self.err_help(
                    span_of(&i.name),
                    format!(
                        "`{}` is not an interface name amwall can use: {why}",
                        i.name.get_ref().escape_debug()
                    ),
                    "not a Linux interface name",
                    if wildcard {
                        crate::name::WILDCARD_HELP.to_string()
                    } else {
                        "the name as `ip link` shows it: 1-15 printable ASCII characters, no space, `/`, `:`, quotes or backslash".to_string()
                    },
                ));
            }
            let network = self.net_ref(net_ids, &i.network)?;
            let address = match &i.address {
                Some(a) => Some(self.address(h, a, &networks[network], addr_owner)?),
                None => None,
            };
            if interfaces.iter().any(|x| x.network == network) {
                return Err(self.err(
                    span_of(&i.network),
                    format!(
                        "host `{}` has two interfaces on network `{}`",
                        h.name.get_ref(),
                        i.network.get_ref()
                    ),
                    "one interface per network",
                ));
            }
            let address6 = match &i.address6 {
                None => None,
                Some(a6) => Some(self.address6(a6, &networks[network], addr_owner)?),
            };
            if address.is_none() && address6.is_none() {
                let net = &networks[network];
                return Err(self.err_help(
                    span_of(si),
                    format!(
                        "interface `{}` of `{}` has no address",
                        i.name.get_ref(),
                        h.name.get_ref()
                    ),
                    "neither address nor address6",
                    match (net.cidr, net.cidr6) {
                        (Some(c), Some(c6)) => format!(
                            "give its IPv4 `address` in {c}, its `address6` in {c6}, or both"
                        ),
                        (None, Some(c6)) => format!(
                            "network `{}` is IPv6-only: give its `address6` in {c6}",
                            net.name
                        ),
                        _ => format!("give its `address` in network `{}`", net.name),
                    },
                ));
            }
            interfaces.push(Interface {
                name: i.name.get_ref().clone(),
                network,
                address,
                address6,
            });
        }
        Ok(interfaces)
    }

    /// An interface's IPv4 `address`: a host address inside its network's
    /// `cidr` (which an IPv6-only network does not have), used once in the
    /// whole topology.
    fn address(
        &self,
        h: &RawHost,
        a: &Spanned<String>,
        net: &Network,
        addr_owner: &mut HashMap<std::net::IpAddr, std::ops::Range<usize>>,
    ) -> Result<Ipv4Addr> {
        let address = Ipv4Addr::from_str(a.get_ref()).map_err(|_| {
            self.err(
                span_of(a),
                format!("`{}` is not an IPv4 address", a.get_ref()),
                "expected an address like 192.0.2.10",
            )
        })?;
        if let Some((why, help)) = unusable_address(address) {
            return Err(self.err_help(
                span_of(a),
                format!("`{}`: {why}", h.name.get_ref()),
                "not a host address",
                help,
            ));
        }
        let Some(cidr) = net.cidr else {
            return Err(self.err_help(
                span_of(a),
                format!(
                    "network `{}` is IPv6-only (no `cidr`), so an interface on it has no IPv4 address",
                    net.name
                ),
                "IPv4 address on an IPv6-only network",
                "leave `address` out and give `address6`, or give the network its IPv4 prefix (cidr = \"192.0.2.0/24\")",
            ));
        };
        if let Some(what) = edge_address(cidr, address) {
            return Err(self.err_help(
                span_of(a),
                format!(
                    "address {address} is the {what} of network `{}` ({cidr}), not a host's address",
                    net.name
                ),
                format!("{what} of {cidr}"),
                "hosts use the addresses between the network and the broadcast address",
            ));
        }
        if !cidr.contains(&address) {
            return Err(self.err(
                span_of(a),
                format!(
                    "address {address} is not a host address in network `{}` ({cidr})",
                    net.name
                ),
                format!("outside {cidr}"),
            ));
        }
        self.claim(addr_owner, address.into(), a)?;
        Ok(address)
    }

    /// Record `address` as `a`'s: every address, of either family, is used
    /// once in the whole topology.
    fn claim(
        &self,
        addr_owner: &mut HashMap<std::net::IpAddr, std::ops::Range<usize>>,
        address: std::net::IpAddr,
        a: &Spanned<String>,
    ) -> Result<()> {
        match addr_owner.insert(address, span_of(a)) {
            Some(prev) => {
                let (l, _) = crate::diag::line_col(&self.text, prev.start);
                Err(self.err(
                    span_of(a),
                    format!("address {address} is already used (line {l})"),
                    "duplicate address",
                ))
            }
            None => Ok(()),
        }
    }

    /// An interface's `address6`: a global host address inside its
    /// network's `cidr6`, used once in the whole topology.
    fn address6(
        &self,
        a6: &Spanned<String>,
        net: &Network,
        addr_owner: &mut HashMap<std::net::IpAddr, std::ops::Range<usize>>,
    ) -> Result<std::net::Ipv6Addr> {
        let address = std::net::Ipv6Addr::from_str(a6.get_ref()).map_err(|_| {
            self.err(
                span_of(a6),
                format!("`{}` is not an IPv6 address", a6.get_ref()),
                "expected an address like 2001:db8::10",
            )
        })?;
        if let Some(why) = crate::model::unusable_address6(address) {
            return Err(self.err_help(
                span_of(a6),
                why,
                "not a host's global address",
                "give the interface's global address (`ip -6 addr show scope global` on it)",
            ));
        }
        let Some(cidr6) = net.cidr6 else {
            return Err(self.err_help(
                span_of(a6),
                format!("network `{}` has no IPv6 prefix", net.name),
                "no cidr6 on this network",
                format!(
                    "give [[network]] `{}` its prefix: cidr6 = \"2001:db8::/64\"",
                    net.name
                ),
            ));
        };
        if !cidr6.contains(&address) {
            return Err(self.err(
                span_of(a6),
                format!(
                    "address {address} is not in network `{}` ({cidr6})",
                    net.name
                ),
                format!("outside {cidr6}"),
            ));
        }
        self.claim(addr_owner, address.into(), a6)?;
        Ok(address)
    }

    /// `masquerade = [{ from, to }]`: both networks on this host, and distinct.
    fn masquerade(
        &self,
        h: &RawHost,
        interfaces: &[Interface],
        networks: &[Network],
        net_ids: &HashMap<String, NetId>,
    ) -> Result<Vec<Masquerade>> {
        let mut masquerade = Vec::new();
        for sm in &h.masquerade {
            let m = sm.get_ref();
            let (from, to) = (
                self.net_ref(net_ids, &m.from)?,
                self.net_ref(net_ids, &m.to)?,
            );
            for (which, n) in [(&m.from, from), (&m.to, to)] {
                if !interfaces.iter().any(|i| i.network == n) {
                    return Err(self.err(
                        span_of(which),
                        format!(
                            "host `{}` has no interface on network `{}`",
                            h.name.get_ref(),
                            which.get_ref()
                        ),
                        "masquerade needs an interface on both networks",
                    ));
                }
            }
            if from == to {
                return Err(self.err(
                    span_of(sm),
                    "masquerade from a network to itself",
                    "from and to are the same",
                ));
            }
            // Masquerade is IPv4 NAT: it needs IPv4 on both sides and the
            // router's own IPv4 address to rewrite to. NAT66 is not modelled.
            for (which, n) in [(&m.from, from), (&m.to, to)] {
                let addressed = interfaces
                    .iter()
                    .any(|i| i.network == n && i.address.is_some());
                if networks[n].cidr.is_none() || !addressed {
                    return Err(self.err_help(
                        span_of(which),
                        format!(
                            "masquerade over `{}`, where `{}` has no IPv4: amwall does not support NAT66",
                            which.get_ref(),
                            h.name.get_ref()
                        ),
                        "no IPv4 here",
                        "masquerade rewrites IPv4 sources only; IPv6 hosts are addressed end to end (route them, no NAT), so masquerade only between networks where this router has an IPv4 address",
                    ));
                }
            }
            masquerade.push(Masquerade { from, to });
        }
        Ok(masquerade)
    }

    /// Gateways must be reachable on a shared network and must forward.
    fn check_gateways(&self, raw: &RawTopology, hosts: &[Host]) -> Result<()> {
        for (hid, sh) in raw.host.iter().enumerate() {
            if let (Some(g), Some(gs)) = (hosts[hid].gateway, &sh.get_ref().gateway) {
                let shared = hosts[hid]
                    .interfaces
                    .iter()
                    .any(|i| hosts[g].interfaces.iter().any(|j| j.network == i.network));
                if !shared {
                    return Err(self.err(
                        span_of(gs),
                        format!(
                            "gateway `{}` shares no network with `{}`",
                            hosts[g].name, hosts[hid].name
                        ),
                        "not on a directly connected network",
                    ));
                }
                if let Some(why) = family_gap(&hosts[hid], &hosts[g]) {
                    return Err(self.err_help(
                        span_of(gs),
                        format!(
                            "gateway `{}` cannot carry `{}`'s {why}",
                            hosts[g].name, hosts[hid].name
                        ),
                        "wrong address family",
                        "a gateway needs an address of the host's family on a network they share: give it `address6` there (or `address` for IPv4)",
                    ));
                }
                if !hosts[g].roles.router {
                    return Err(self.err_help(
                        span_of(gs),
                        format!("gateway `{}` does not forward packets", hosts[g].name),
                        "not a router",
                        format!(
                            "give `{}` the role \"router\" (or a masquerade)",
                            hosts[g].name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `[[network]] gateway`: the default gateway for hosts only a hosts file names.
    fn network_gateways(
        &self,
        raw: &RawTopology,
        hosts: &[Host],
        networks: &[Network],
        host_ids: &HashMap<String, HostId>,
    ) -> Result<Vec<Option<HostId>>> {
        let mut network_gateway: Vec<Option<HostId>> = vec![None; networks.len()];
        for (n, rn) in raw.network.iter().enumerate() {
            if let Some(g) = &rn.get_ref().gateway {
                let gid = self.host_ref(host_ids, g)?;
                if d_iface_on(hosts, gid, n).is_none() || !hosts[gid].roles.router {
                    return Err(self.err(
                        span_of(g),
                        format!(
                            "`{}` is not a router on network `{}`",
                            hosts[gid].name, networks[n].name
                        ),
                        "not a gateway here",
                    ));
                }
                network_gateway[n] = Some(gid);
            }
        }
        Ok(network_gateway)
    }

    /// Every client and recovering host needs exactly one server.
    fn assign_servers(&self, raw: &RawTopology, hosts: &mut [Host]) -> Result<()> {
        let server_spans: Vec<(HostId, std::ops::Range<usize>)> = raw
            .host
            .iter()
            .enumerate()
            .filter_map(|(hid, h)| h.get_ref().server.as_ref().map(|s| (hid, span_of(s))))
            .collect();
        let servers: Vec<HostId> = (0..hosts.len())
            .filter(|&i| hosts[i].roles.server)
            .collect();
        for (hid, sh) in raw.host.iter().enumerate() {
            let needs = hosts[hid].roles.client || hosts[hid].roles.recover;
            if let Some(s) = hosts[hid].server {
                if !hosts[s].roles.server {
                    let span = server_spans
                        .iter()
                        .find(|(h, _)| *h == hid)
                        .map(|(_, s)| s.clone())
                        .unwrap_or(0..0);
                    return Err(self.err(
                        span,
                        format!("`{}` is not an Amanda server", hosts[s].name),
                        "missing role \"server\"",
                    ));
                }
                continue;
            }
            if !needs {
                continue;
            }
            match servers.as_slice() {
                [only] => hosts[hid].server = Some(*only),
                [] => {
                    return Err(self.err(
                        span_of(&sh.get_ref().name),
                        format!(
                            "`{}` is an Amanda client but no host has the role \"server\"",
                            hosts[hid].name
                        ),
                        "no server to back it up",
                    ))
                }
                _ => {
                    return Err(self.err_help(
                        span_of(&sh.get_ref().name),
                        format!(
                            "`{}` needs a server, and there are several",
                            hosts[hid].name
                        ),
                        "which server?",
                        "add server = \"NAME\" to this host",
                    ))
                }
            }
        }
        Ok(())
    }

    /// `[management]`: who may reach every host, and on which port.
    fn management(
        &self,
        raw: &RawTopology,
        networks: &[Network],
        net_ids: &HashMap<String, NetId>,
    ) -> Result<Management> {
        let mgmt = raw.management.as_ref().map(|m| m.get_ref());
        let proto = match mgmt.and_then(|m| m.proto.as_ref()) {
            None => Proto::Tcp,
            Some(p) => match p.get_ref().as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                o => {
                    return Err(self.err(
                        span_of(p),
                        format!("unknown protocol `{o}`"),
                        "expected tcp or udp",
                    ))
                }
            },
        };
        let port = match mgmt.and_then(|m| m.port.as_ref()) {
            None => 22,
            Some(p) if (1..=65535).contains(p.get_ref()) => *p.get_ref() as u16,
            Some(p) => {
                return Err(self.err(
                    span_of(p),
                    format!("port {} is outside 1-65535", p.get_ref()),
                    "port out of range",
                ))
            }
        };
        let mut from = Vec::new();
        let mut from6 = Vec::new();
        let mut from_names = Vec::new();
        let enabled = mgmt.and_then(|m| m.enabled).unwrap_or(true);
        if let Some(f) = mgmt.and_then(|m| m.from.as_ref()) {
            if f.get_ref().is_empty() && enabled {
                return Err(self.err_help(
                    span_of(f),
                    "`[management] from = []` names no network, which would leave management open from anywhere",
                    "empty list",
                    "name the admins' networks (from = [\"lan\"] or a prefix like \"192.0.2.0/24\"); leave `from` out to keep it open from anywhere (warned), or set enabled = false",
                ));
            }
        }
        for f in mgmt
            .and_then(|m| m.from.as_ref())
            .map(|f| f.get_ref())
            .into_iter()
            .flatten()
        {
            if let Some(&n) = net_ids.get(f.get_ref()) {
                from.extend(networks[n].cidr);
                from6.extend(networks[n].cidr6);
            } else if let Some(p) = parse_net(f.get_ref()) {
                from.push(p);
            } else if let Some(p) = parse_net6(f.get_ref()) {
                from6.push(p);
            } else {
                return Err(self.err(
                    span_of(f),
                    format!(
                        "`{}` is neither a network name nor an IPv4 or IPv6 prefix",
                        f.get_ref()
                    ),
                    "expected a [[network]] name or a prefix like 192.0.2.0/24 or 2001:db8::/48",
                ));
            }
            from_names.push(f.get_ref().clone());
        }
        if let Some(f) = mgmt.and_then(|m| m.from.as_ref()) {
            if from.is_empty() && enabled {
                // An empty IPv4 list means "from anywhere" downstream; an
                // IPv6-only list must not turn into that.
                return Err(self.err_help(
                    span_of(f),
                    "`[management] from` names only IPv6 prefixes, so management over IPv4 would have no source",
                    "no IPv4 source",
                    "add the admins' IPv4 network or prefix too (amwall always keeps management open over IPv4 from somewhere), or set enabled = false",
                ));
            }
        }
        let anywhere6 = enabled && mgmt.and_then(|m| m.from.as_ref()).is_none();
        Ok(Management {
            enabled,
            proto,
            port,
            from,
            from6,
            anywhere6,
            from_names,
        })
    }
}

/// An IPv6 prefix like `2001:db8::/48`; a bare address means /128. Host
/// bits must be zero, as for IPv4.
fn parse_net6(s: &str) -> Option<ipnet::Ipv6Net> {
    if let Ok(n) = ipnet::Ipv6Net::from_str(s) {
        return (n.trunc() == n).then_some(n);
    }
    std::net::Ipv6Addr::from_str(s)
        .ok()
        .map(|a| ipnet::Ipv6Net::new(a, 128).expect("/128 is valid"))
}

/// A prefix like `192.0.2.0/24`; a bare address means /32. Host bits must be zero,
/// as a typo there usually means the wrong network.
fn parse_net(s: &str) -> Option<Ipv4Net> {
    if let Ok(n) = Ipv4Net::from_str(s) {
        return (n.trunc() == n).then_some(n);
    }
    Ipv4Addr::from_str(s)
        .ok()
        .map(|a| Ipv4Net::new(a, 32).expect("/32 is valid"))
}

/// "network address" / "broadcast address" when `a` is one of `cidr`'s two
/// reserved ends (a /31 and a /32 have none, RFC 3021).
pub fn edge_address(cidr: Ipv4Net, a: Ipv4Addr) -> Option<&'static str> {
    if cidr.prefix_len() >= 31 || !cidr.contains(&a) {
        None
    } else if a == cidr.network() {
        Some("network address")
    } else if a == cidr.broadcast() {
        Some("broadcast address")
    } else {
        None
    }
}

/// Why gateway `g` cannot route any of `h`'s traffic: a host without IPv4
/// needs the gateway's IPv6 address on a network both have IPv6 on, one
/// without IPv6 its IPv4 address on one both have IPv4 on, and a dual-stack
/// host either (the gateway then routes that family; the other stays on
/// the host's own links, as IPv6 did before IPv6-only hosts existed).
fn family_gap(h: &Host, g: &Host) -> Option<&'static str> {
    let shared = |f: fn(&Interface) -> bool| {
        h.interfaces
            .iter()
            .filter(|i| f(i))
            .any(|i| g.interfaces.iter().any(|j| j.network == i.network && f(j)))
    };
    let v4 = h.interfaces.iter().any(|i| i.address.is_some());
    let v6 = h.interfaces.iter().any(|i| i.address6.is_some());
    let (by4, by6) = (
        v4 && shared(|i| i.address.is_some()),
        v6 && shared(|i| i.address6.is_some()),
    );
    match (by4 || by6, v4) {
        (true, _) => None,
        (false, true) => {
            Some("IPv4 traffic: they share no network where both have an IPv4 address")
        }
        (false, false) => Some(
            "IPv6 traffic (it has no IPv4): they share no network where both have an IPv6 address",
        ),
    }
}

fn d_iface_on(hosts: &[Host], h: HostId, net: NetId) -> Option<&Interface> {
    hosts[h].interfaces.iter().find(|i| i.network == net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_str;

    const BASE: &str = r#"
[[network]]
name = "lan"
cidr = "192.0.2.0/24"

[[host]]
name = "ts"
roles = ["server", "client"]
interfaces = [{ name = "eth0", network = "lan", address = "192.0.2.2" }]
"#;

    fn err_of(extra: &str) -> InputError {
        match load_str("t.toml", format!("{BASE}{extra}")) {
            Err(Error::Input(e)) => *e,
            Err(e) => panic!("unexpected error kind: {e}"),
            Ok(_) => panic!("accepted bad input: {extra}"),
        }
    }

    /// `[amanda] ipv6`: the build's default unless said; Debian's build
    /// cannot speak IPv6; a per-host value is refused.
    #[test]
    fn amanda_ipv6_follows_the_build_unless_said() {
        let with = |amanda: &str| load_str("t.toml", format!("[amanda]\n{amanda}\n{BASE}"));
        assert!(!with("").unwrap().amanda_speaks_ipv6());
        assert!(with("build = \"upstream\"").unwrap().amanda_speaks_ipv6());
        assert!(!with("build = \"upstream\"\nipv6 = false")
            .unwrap()
            .amanda_speaks_ipv6());
        assert!(!with("ipv6 = false").unwrap().amanda_speaks_ipv6());
        let Err(Error::Input(e)) = with("ipv6 = true") else {
            panic!("ipv6 = true with Debian's build must be refused")
        };
        assert!(e.message.contains("--without-ipv6"), "{}", e.message);
        assert_eq!((e.line, e.column), (2, 8));
        let e = err_of("[host.amanda]\nipv6 = true\n");
        assert!(e.message.contains("global setting"), "{}", e.message);
    }

    /// Dual-stack keys: each bad value refused at its own line and column.
    #[test]
    fn ipv6_keys_are_checked_where_they_are_written() {
        const V6: &str = r#"
[[network]]
name = "lan"
cidr = "192.0.2.0/24"
cidr6 = "2001:db8:2::/64"

[[network]]
name = "adm"
cidr = "198.51.100.0/24"

[[host]]
name = "ts"
roles = ["server", "client"]
interfaces = [{ name = "eth0", network = "lan", address = "192.0.2.2", address6 = "2001:db8:2::2" }]
"#;
        let d = load_str("t.toml", V6.to_string()).unwrap();
        assert_eq!(
            d.hosts[0].interfaces[0].address6,
            Some("2001:db8:2::2".parse().unwrap())
        );
        assert!(d.management.anywhere6);
        let with_mgmt = |from: &str| format!("[management]\nfrom = {from}\n{V6}");
        let d = load_str("t.toml", with_mgmt(r#"["lan", "2001:db8:99::/48"]"#)).unwrap();
        assert!(!d.management.anywhere6);
        assert_eq!(
            d.management.from6,
            [
                "2001:db8:2::/64".parse().unwrap(),
                "2001:db8:99::/48".parse().unwrap()
            ]
        );
        let d = load_str("t.toml", with_mgmt(r#"["adm"]"#)).unwrap();
        assert!(d.management.from6.is_empty() && !d.management.anywhere6);
        // `at`: the value the error must point at.
        let bad = |from: &str, to: &str, at: &str, want: &str| {
            let text = V6.replace(from, to);
            let e = match load_str("t.toml", text.clone()) {
                Err(Error::Input(e)) => *e,
                other => panic!("accepted `{to}`: {:?}", other.map(|_| ())),
            };
            assert!(e.message.contains(want), "{}", e.message);
            let (line, col) = crate::diag::line_col(&text, text.find(at).unwrap());
            assert_eq!((e.line, e.column), (line, col), "{}", e.message);
        };
        let a6 = r#""2001:db8:2::2""#;
        bad(
            r#""2001:db8:2::/64""#,
            r#""2001:db8:2::1/64""#,
            r#""2001:db8:2::1/64""#,
            "not an IPv6 network",
        );
        bad(
            a6,
            r#""2001:db8:3::2""#,
            r#""2001:db8:3::2""#,
            "not in network `lan`",
        );
        bad(a6, r#""fe80::2""#, r#""fe80::2""#, "link-local");
        bad(
            a6,
            r#""192.0.2.9""#,
            r#""192.0.2.9""#,
            "not an IPv6 address",
        );
        bad(r#"cidr6 = "2001:db8:2::/64""#, "", a6, "has no IPv6 prefix");
        let e = match load_str("t.toml", with_mgmt(r#"["2001:db8:99::/48"]"#)) {
            Err(Error::Input(e)) => *e,
            other => panic!("accepted: {:?}", other.map(|_| ())),
        };
        assert!(e.message.contains("only IPv6 prefixes"), "{}", e.message);
    }

    /// IPv6-only networks and interfaces: loaded without any IPv4 (no
    /// sentinel address), and every mistake refused at its line and column.
    #[test]
    fn ipv6_only_networks_and_hosts() {
        const V6ONLY: &str = r#"
[[network]]
name = "lan"
cidr = "192.0.2.0/24"
cidr6 = "2001:db8:2::/64"

[[network]]
name = "v6"
cidr6 = "2001:db8:6::/64"

[[host]]
name = "ts"
roles = ["server", "client"]
interfaces = [{ name = "eth0", network = "lan", address = "192.0.2.2", address6 = "2001:db8:2::2" }]

[[host]]
name = "fw"
roles = ["router"]
interfaces = [
  { name = "eth0", network = "lan", address = "192.0.2.1", address6 = "2001:db8:2::1" },
  { name = "eth1", network = "v6", address6 = "2001:db8:6::1" },
]

[[host]]
name = "c6"
roles = ["client"]
interfaces = [{ name = "eth0", network = "v6", address6 = "2001:db8:6::5" }]
gateway = "fw"
"#;
        let d = load_str("t.toml", V6ONLY.to_string()).unwrap();
        assert_eq!(d.networks[1].cidr, None);
        let c6 = d.host_by_name("c6").unwrap();
        assert_eq!(d.hosts[c6].interfaces[0].address, None);
        assert!(!d.has_ipv4(c6) && d.has_ipv4(0));
        assert_eq!(d.first_address(c6), Some("2001:db8:6::5".parse().unwrap()));
        // `at`: the text the error must point at (its first occurrence
        // after `after`).
        let bad = |from: &str, to: &str, after: &str, at: &str, want: &str| {
            let text = V6ONLY.replacen(from, to, 1);
            let e = match load_str("t.toml", text.clone()) {
                Err(Error::Input(e)) => *e,
                other => panic!("accepted `{to}`: {:?}", other.map(|_| ())),
            };
            assert!(e.message.contains(want), "{}", e.message);
            let base = text.find(after).unwrap();
            let pos = base + text[base..].find(at).unwrap();
            let (line, col) = crate::diag::line_col(&text, pos);
            assert_eq!((e.line, e.column), (line, col), "{}", e.message);
        };
        // An IPv4 address on the IPv6-only network.
        bad(
            r#"network = "v6", address6 = "2001:db8:6::5""#,
            r#"network = "v6", address = "198.51.100.5", address6 = "2001:db8:6::5""#,
            "name = \"c6\"",
            r#""198.51.100.5""#,
            "IPv6-only",
        );
        // A network with neither prefix: at its name.
        bad(
            "cidr6 = \"2001:db8:6::/64\"\n",
            "",
            "name = \"v6\"",
            "\"v6\"",
            "neither `cidr` nor `cidr6`",
        );
        // An interface with no address at all: at the interface.
        bad(
            r#"{ name = "eth0", network = "v6", address6 = "2001:db8:6::5" }"#,
            r#"{ name = "eth0", network = "v6" }"#,
            "name = \"c6\"",
            r#"{ name = "eth0", network = "v6" }"#,
            "has no address",
        );
        // An IPv4-only host's interface without `address` on an IPv4-only network.
        bad(
            "cidr6 = \"2001:db8:2::/64\"\n",
            "",
            "name = \"lan\"",
            "\"2001:db8:2::2\"",
            "has no IPv6 prefix",
        );
        // A gateway that cannot carry the IPv6-only host's traffic.
        let gap = V6ONLY
            .replace(
                r#"{ name = "eth0", network = "lan", address = "192.0.2.1", address6 = "2001:db8:2::1" }"#,
                r#"{ name = "eth0", network = "lan", address = "192.0.2.1" }"#,
            )
            .replace(
                r#"{ name = "eth0", network = "v6", address6 = "2001:db8:6::5" }"#,
                r#"{ name = "eth0", network = "lan", address6 = "2001:db8:2::5" }"#,
            );
        bad(
            V6ONLY,
            &gap,
            "name = \"c6\"",
            "\"fw\"",
            "gateway `fw` cannot carry `c6`'s IPv6 traffic",
        );
        // Masquerade onto the IPv6-only network: no NAT66.
        bad(
            r#"roles = ["router"]"#,
            "roles = [\"router\"]\nmasquerade = [{ from = \"lan\", to = \"v6\" }]",
            "name = \"fw\"",
            r#""v6" }]"#,
            "NAT66",
        );
    }

    #[test]
    fn base_loads_with_debian_defaults() {
        let d = load_str("t.toml", BASE.to_string()).unwrap();
        let s = &d.hosts[0].amanda;
        assert_eq!(s.reserved_udp_port, PortRange::new(840, 860));
        assert_eq!(s.reserved_tcp_port, PortRange::new(512, 1023));
        assert_eq!(s.unreserved_tcp_port, PortRange::new(50000, 50100));
        assert_eq!(s.auth, Auth::Bsdtcp);
        assert_eq!(d.hosts[0].server, Some(0));
    }

    #[test]
    fn unknown_network_points_at_the_name() {
        let e = err_of(
            "[[host]]\nname = \"c\"\nroles = [\"client\"]\ninterfaces = [{ name = \"eth0\", network = \"lann\", address = \"192.0.2.3\" }]\n",
        );
        assert!(
            e.message.contains("unknown network `lann`"),
            "{}",
            e.message
        );
        let line = BASE.lines().count() + 4;
        assert_eq!(e.line, line);
        assert_eq!(e.column, 42, "the opening quote of \"lann\"");
    }

    #[test]
    fn address_outside_network() {
        let e = err_of(
            "[[host]]\nname = \"c\"\nroles = [\"client\"]\ninterfaces = [{ name = \"eth0\", network = \"lan\", address = \"198.51.100.3\" }]\n",
        );
        assert!(
            e.message.contains("not a host address in network `lan`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn duplicate_host() {
        let e = err_of("[[host]]\nname = \"ts\"\ninterfaces = [{ name = \"eth0\", network = \"lan\", address = \"192.0.2.3\" }]\n");
        assert!(e.message.contains("duplicate host name `ts`"));
    }

    #[test]
    fn names_are_checked_where_they_are_written() {
        let e = err_of("[[host]]\nname = \"TS\"\ninterfaces = [{ name = \"eth0\", network = \"lan\", address = \"192.0.2.3\" }]\n");
        assert!(
            e.message.contains("host names ignore case"),
            "{}",
            e.message
        );
        let e = err_of("[[host]]\nname = \"c\"\nroles = [\"client\"]\ninterfaces = [{ name = \"eth+\", network = \"lan\", address = \"192.0.2.3\" }]\n");
        assert!(e.message.contains("wildcards"), "{}", e.message);
        assert_eq!(
            (e.line, e.column),
            (BASE.lines().count() + 4, 24),
            "the opening quote"
        );
        let e = err_of("[[network]]\nname = \"a b\"\ncidr = \"198.51.100.0/24\"\n");
        assert!(e.message.contains("network name"), "{}", e.message);
    }

    #[test]
    fn nonsense_is_refused() {
        let e = err_of("[management]\nfrom = []\n");
        assert!(e.message.contains("from = []"), "{}", e.message);
        let e = err_of("[[network]]\nname = \"lan2\"\ncidr = \"192.0.2.0/24\"\n");
        assert!(
            e.message.contains("`lan` and `lan2` are both"),
            "{}",
            e.message
        );
        let e = err_of("[[host]]\nname = \"c\"\nroles = [\"client\"]\ninterfaces = [{ name = \"eth0\", network = \"lan\", address = \"192.0.2.255\" }]\n");
        assert!(e.message.contains("broadcast address"), "{}", e.message);
        // A /31 has no network or broadcast address (RFC 3021).
        let p2p = "[[network]]\nname = \"p2p\"\ncidr = \"198.51.100.0/31\"\n[[host]]\nname = \"c\"\nroles = [\"client\"]\ninterfaces = [{ name = \"eth0\", network = \"p2p\", address = \"198.51.100.0\" }]\n";
        load_str("t.toml", format!("{BASE}{p2p}")).unwrap();
    }

    #[test]
    fn reversed_and_out_of_range_ranges() {
        let e = err_of("[amanda]\nunreserved-tcp-port = [50100, 50000]\n");
        assert!(e.message.contains("reversed"), "{}", e.message);
        let e = err_of("[amanda]\nunreserved-tcp-port = [50000, 70000]\n");
        assert!(e.message.contains("outside 1-65535"), "{}", e.message);
        let e = err_of("[amanda]\nreserved-udp-port = [840, 1100]\n");
        assert!(
            e.message.contains("reserved ports must be below 1024"),
            "{}",
            e.message
        );
        let e = err_of("[amanda]\nunreserved-tcp-port = [800, 900]\n");
        assert!(
            e.message.contains("unreserved ports must be 1024-65535"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unknown_key_is_an_error_with_position() {
        let e = err_of("[amanda]\nauht = \"bsd\"\n");
        assert!(e.message.contains("auht"), "{}", e.message);
        assert_eq!(e.line, BASE.lines().count() + 2);
    }

    #[test]
    fn per_host_override_wins() {
        let d = load_str(
            "t.toml",
            format!("{BASE}[[host]]\nname = \"c\"\nroles = [\"client\"]\ninterfaces = [{{ name = \"eth0\", network = \"lan\", address = \"192.0.2.3\" }}]\namanda = {{ auth = \"bsd\", client-port = \"10080\" }}\n"),
        )
        .unwrap();
        assert_eq!(d.hosts[1].amanda.auth, Auth::Bsd);
        assert_eq!(
            d.hosts[1].amanda.client_port,
            Some(ClientPort::Number(10080))
        );
        assert_eq!(d.hosts[0].amanda.auth, Auth::Bsdtcp);
        assert_eq!(
            d.overrides[1],
            vec!["auth".to_string(), "client-port".to_string()]
        );
    }
}
