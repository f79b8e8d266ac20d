//! The deployment model: hosts, networks, NAT, Amanda roles and settings.
//!
//! Everything downstream (flows, routes, policy) reads only this model, so the
//! topology file and (later) a real Amanda configuration can both feed it.
//! A `Deployment` is validated once, when it is built: later stages may rely on
//! every reference resolving and every address sitting inside its network.

pub mod topology;

pub use topology::Draft;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

use crate::amanda::settings::{AmandaSettings, Auth, Build};
use crate::ports::Proto;

/// Index into `Deployment::hosts`.
pub type HostId = usize;
/// Index into `Deployment::networks`.
pub type NetId = usize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Roles {
    /// Runs amcheck, planner and dumpers, and serves amindexd/amidxtaped.
    pub server: bool,
    /// Runs amandad and is backed up.
    pub client: bool,
    /// Runs amrecover against its server.
    pub recover: bool,
    /// Forwards packets between its networks (ip_forward=1).
    pub router: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    pub name: String,
    pub network: NetId,
    /// The interface's IPv4 address; `None` on an IPv6-only network or for
    /// an IPv6-only host on a dual-stack one. An `Option`, not 0.0.0.0:
    /// an unspecified address in a rule means "any", so a sentinel that
    /// slipped into a rule would open the host to everyone, and every
    /// consumer must decide what an IPv4-less interface means for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// The interface's global IPv6 address on a dual-stack network. Debian's
    /// Amanda never uses it (built `--without-ipv6`), but the host answers on
    /// it, so the IPv6 policy and the lab's exposure scan must know it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Masquerade {
    pub from: NetId,
    pub to: NetId,
}

#[derive(Debug, Clone, Serialize)]
pub struct Network {
    pub name: String,
    /// The link's IPv4 prefix; `None` on an IPv6-only network (only
    /// `cidr6`). An `Option` for the reason `Interface::address` is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Ipv4Net>,
    /// The same link's IPv6 prefix (`cidr6`), when it is dual-stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr6: Option<Ipv6Net>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    pub interfaces: Vec<Interface>,
    pub gateway: Option<HostId>,
    pub roles: Roles,
    /// The Amanda server that backs this host up and serves its recoveries.
    pub server: Option<HostId>,
    pub masquerade: Vec<Masquerade>,
    /// The settings as the server programs see them: for the server its
    /// amanda.conf (amcheck, planner, dumpers bind these ranges); for a client
    /// what the disklist says of it (auth, index, client-port).
    pub amanda: AmandaSettings,
    /// The settings of this host's amanda-client.conf, which amandad,
    /// sendbackup and amrecover read (docs/amanda-protocol.md §2): the range amandad
    /// listens in (also on the server, for recoveries) and amrecover's auth,
    /// client-port and source ranges. Equal to `amanda` unless the admin's
    /// Amanda files set the two apart.
    pub client_conf: AmandaSettings,
    /// What manages this host's firewall, when the topology says
    /// (`firewall = "..."`): plan then writes only what loads there, and
    /// apply checks the host agrees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewall: Option<Manager>,
    /// Where the host is defined, so later stages (routing) can point at it.
    #[serde(skip)]
    pub span: Span,
}

/// Who runs a host's firewall. plan runs anywhere and cannot look, so the
/// topology tells it; each value names the only files that load there
/// without removing someone else's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Manager {
    /// amwall alone: `HOST.rules` / `HOST.nft` as the backends say.
    Amwall,
    /// Other iptables rules too (Docker, fail2ban, the admin's): merged mode.
    Shared,
    Firewalld,
    Ufw,
}

impl Manager {
    pub const ALL: [Manager; 4] = [
        Manager::Amwall,
        Manager::Shared,
        Manager::Firewalld,
        Manager::Ufw,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Manager::Amwall => "amwall",
            Manager::Shared => "shared",
            Manager::Firewalld => "firewalld",
            Manager::Ufw => "ufw",
        }
    }
}

/// Byte range of a definition in the topology file, for diagnostics after loading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// The management service kept open on every host, so no generated ruleset
/// locks its admin out.
#[derive(Debug, Clone, Serialize)]
pub struct Management {
    pub enabled: bool,
    pub proto: Proto,
    pub port: u16,
    /// Source prefixes allowed; empty means "from anywhere".
    pub from: Vec<Ipv4Net>,
    /// IPv6 source prefixes allowed: the `cidr6` of the networks `from`
    /// names and its literal IPv6 prefixes. With `from` empty (anywhere) this
    /// is empty too and means anywhere; with `from` given and no IPv6 in it,
    /// management is not reachable over IPv6 at all (`anywhere6` false).
    pub from6: Vec<Ipv6Net>,
    /// Management over IPv6 from any source (no `from` given).
    pub anywhere6: bool,
    /// Human names of `from` (network names or literal prefixes), for the summary.
    pub from_names: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    /// Where the topology came from, as the user named it.
    pub source_name: String,
    /// The topology text, kept so that errors found after loading still show a caret.
    #[serde(skip)]
    pub source_text: std::sync::Arc<String>,
    pub build: Build,
    /// Whether Amanda itself connects over IPv6: `[amanda] ipv6`, else the
    /// build's default (`facts::speaks_ipv6`).
    pub ipv6: bool,
    pub networks: Vec<Network>,
    pub hosts: Vec<Host>,
    pub management: Management,
    /// The global `[amanda]` settings before per-host overrides (for the summary).
    pub amanda: AmandaSettings,
    /// Per host: which settings the host overrides (keys as in the file), for the summary.
    pub overrides: Vec<Vec<String>>,
    /// What the admin's Amanda files contributed (empty without them).
    pub provenance: AmandaProvenance,
}

/// Who owns which address, for lookups that must not scan every host (10,000-client
/// sites). Built from a `Deployment` when needed, so a clone whose addresses were
/// rewritten (the lab's mapping) can never see a stale index.
#[derive(Debug, Default)]
pub struct AddrIndex {
    owner: std::collections::HashMap<Ipv4Addr, (HostId, NetId)>,
}

impl AddrIndex {
    pub fn new(d: &Deployment) -> Self {
        let mut owner = std::collections::HashMap::with_capacity(d.hosts.len());
        for (h, host) in d.hosts.iter().enumerate() {
            for i in &host.interfaces {
                if let Some(a) = i.address {
                    owner.entry(a).or_insert((h, i.network));
                }
            }
        }
        AddrIndex { owner }
    }
    pub fn owner(&self, a: Ipv4Addr) -> Option<HostId> {
        self.owner.get(&a).map(|(h, _)| *h)
    }
    /// The host that answers ARP for `a` on `net` (only hosts attached there can).
    pub fn owner_on(&self, net: NetId, a: Ipv4Addr) -> Option<HostId> {
        self.owner
            .get(&a)
            .filter(|(_, n)| *n == net)
            .map(|(h, _)| *h)
    }
}

impl Deployment {
    /// Whether Amanda itself may connect over IPv6 here.
    pub fn amanda_speaks_ipv6(&self) -> bool {
        self.ipv6
    }
    /// The IPv6 address of `host`'s interface `name`, when its network is
    /// dual-stack and the topology gives one.
    pub fn address6_of(&self, host: HostId, name: &str) -> Option<Ipv6Addr> {
        self.hosts[host]
            .interfaces
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.address6)
    }
    /// Whether `host`'s interface `name` is on a network with an IPv6 prefix.
    pub fn dual_stack(&self, host: HostId, name: &str) -> bool {
        self.hosts[host]
            .interfaces
            .iter()
            .find(|i| i.name == name)
            .is_some_and(|i| self.networks[i.network].cidr6.is_some())
    }
    /// Whether any interface of `host` has an IPv4 address: without one
    /// Amanda can only reach it over IPv6.
    pub fn has_ipv4(&self, host: HostId) -> bool {
        self.hosts[host]
            .interfaces
            .iter()
            .any(|i| i.address.is_some())
    }
    /// The first IPv4 address of `host`, then its first IPv6 one: what a
    /// report or an inventory calls the host by.
    pub fn first_address(&self, host: HostId) -> Option<std::net::IpAddr> {
        let ifs = &self.hosts[host].interfaces;
        ifs.iter()
            .find_map(|i| i.address.map(std::net::IpAddr::V4))
            .or_else(|| {
                ifs.iter()
                    .find_map(|i| i.address6.map(std::net::IpAddr::V6))
            })
    }
    pub fn host(&self, id: HostId) -> &Host {
        &self.hosts[id]
    }
    pub fn host_by_name(&self, name: &str) -> Option<HostId> {
        self.hosts.iter().position(|h| h.name == name)
    }
    pub fn network(&self, id: NetId) -> &Network {
        &self.networks[id]
    }
    /// The interface of `host` on `net`, if it has one.
    pub fn iface_on(&self, host: HostId, net: NetId) -> Option<&Interface> {
        self.hosts[host]
            .interfaces
            .iter()
            .find(|i| i.network == net)
    }

    /// Replace the auth method everywhere (global and every host), as if the admin
    /// had written it once in `[amanda]`. Used to compare auth modes on one topology.
    /// Switching to ssh also drops `client-port`: there it would mean `ssh -p`, and an
    /// admin moving to ssh keeps sshd on 22.
    pub fn with_auth(&self, auth: Auth) -> Deployment {
        let mut d = self.clone();
        let hosts = d
            .hosts
            .iter_mut()
            .flat_map(|h| [&mut h.amanda, &mut h.client_conf]);
        for s in std::iter::once(&mut d.amanda).chain(hosts) {
            s.auth = auth;
            if auth == Auth::Ssh {
                s.client_port = None;
            }
        }
        d
    }

    /// Same as `with_auth` for `conntrack-helper`.
    pub fn with_helper(&self, helper: bool) -> Deployment {
        let mut d = self.clone();
        d.amanda.conntrack_helper = helper;
        for h in &mut d.hosts {
            h.amanda.conntrack_helper = helper;
            h.client_conf.conntrack_helper = helper;
        }
        d
    }
}

/// Why `a` cannot be a host's address, in the admin's words, with a hint; `None`
/// when it can. These are addresses a careless copy brings in (Debian's
/// `/etc/hosts` maps the machine's own name to 127.0.1.1) and that would
/// otherwise become the source or destination of every rule.
pub fn unusable_address(a: Ipv4Addr) -> Option<(String, &'static str)> {
    let o = a.octets();
    if a.is_loopback() {
        Some((
            format!("{a} is a loopback address: packets to it never leave the machine, so no other host can reach it there"),
            "Debian's /etc/hosts maps the machine's own name to 127.0.1.1; give the address of its network interface (`ip -4 addr`) instead",
        ))
    } else if a.is_unspecified() {
        Some((
            format!("{a} means \"no address\" (INADDR_ANY), not a host"),
            "give the host's real address (`ip -4 addr` on it)",
        ))
    } else if a.is_broadcast() {
        Some((
            format!("{a} is the limited broadcast address, not a host"),
            "give the host's real address (`ip -4 addr` on it)",
        ))
    } else if a.is_multicast() {
        Some((
            format!("{a} is a multicast group address (224.0.0.0/4), not a host"),
            "give the host's real address (`ip -4 addr` on it)",
        ))
    } else if o[0] >= 240 {
        Some((
            format!("{a} is in the reserved block 240.0.0.0/4, which Linux does not route"),
            "give the host's real address (`ip -4 addr` on it)",
        ))
    } else {
        None
    }
}

/// Why an IPv6 address given as a host's global address is none, as
/// `unusable_address` for IPv4. Link-local addresses are refused too: every
/// interface has one of its own, they are not unique beyond the link, and
/// rules for them would need the interface they belong to.
pub fn unusable_address6(a: Ipv6Addr) -> Option<String> {
    let s = a.segments();
    if a.is_loopback() {
        Some(format!(
            "{a} is the loopback address, not a host's address on a network"
        ))
    } else if a.is_unspecified() {
        Some(format!("{a} means \"no address\", not a host"))
    } else if a.is_multicast() {
        Some(format!(
            "{a} is a multicast group address (ff00::/8), not a host"
        ))
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some(format!(
            "{a} is link-local (fe80::/10): every interface has its own, so it names no host beyond the link"
        ))
    } else if a.to_ipv4_mapped().is_some() {
        Some(format!(
            "{a} is an IPv4-mapped address: give the IPv4 address as `address`"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod address_tests {
    use super::*;

    #[test]
    fn nonsense_ipv6_addresses_are_named() {
        for a in ["::1", "::", "ff02::1", "fe80::1", "::ffff:192.0.2.1"] {
            assert!(unusable_address6(a.parse().unwrap()).is_some(), "{a}");
        }
        for a in ["2001:db8::1", "2001:db8:2::3", "fd00::5"] {
            assert!(unusable_address6(a.parse().unwrap()).is_none(), "{a}");
        }
    }

    #[test]
    fn nonsense_addresses_are_named() {
        for a in [
            "127.0.1.1",
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "239.1.2.3",
            "240.0.0.1",
        ] {
            assert!(unusable_address(a.parse().unwrap()).is_some(), "{a}");
        }
        for a in ["192.0.2.1", "10.0.0.1", "1.2.3.4", "198.51.100.255"] {
            assert!(unusable_address(a.parse().unwrap()).is_none(), "{a}");
        }
        assert!(unusable_address("127.0.1.1".parse().unwrap())
            .unwrap()
            .1
            .contains("127.0.1.1"));
    }
}

/// Where the Amanda side comes from. Paths are as given (the topology loader
/// resolves them against the topology file's directory).
#[derive(Debug, Clone, Default)]
pub struct AmandaSources {
    /// The server's config directory (or its amanda.conf).
    pub config: Option<PathBuf>,
    /// Per host: its amanda-client.conf.
    pub client_confs: Vec<(String, PathBuf)>,
    /// `/etc/hosts`-format file for hosts the topology does not list.
    pub hosts_file: Option<PathBuf>,
    /// Debian's `/etc/amanda-security.conf` to lint against (default: Debian's values).
    pub security_conf: Option<PathBuf>,
    /// A services(5) file to resolve `client-port` names against (default: Debian's).
    pub services: Option<PathBuf>,
}

impl AmandaSources {
    pub fn is_empty(&self) -> bool {
        self.config.is_none() && self.client_confs.is_empty()
    }
}

/// What reading the configuration added, for the summary and the lints.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AmandaProvenance {
    /// Every Amanda file read.
    pub files: Vec<String>,
    /// Warnings from the Amanda files, already `file:line:col: message`.
    pub warnings: Vec<(String, String)>,
    /// Hosts that only the disklist and the hosts file named.
    pub added_hosts: Vec<String>,
}
