//! The Amanda settings that decide which packets flow, as values.
//!
//! They sit below both the defaults in `amanda::facts` and the parsers in
//! `amanda::conf`, and below the deployment model that carries them per host,
//! so none of those needs the others to name an auth mode or a port range.

use std::fmt;

use serde::Serialize;

use crate::ports::PortRange;

/// Amanda's security drivers that exist in Debian's 3.5.1 build (docs/design.md "Debian 3.5.1").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    Bsd,
    Bsdudp,
    Bsdtcp,
    Ssh,
    Local,
}

impl Auth {
    pub const ALL: [Auth; 5] = [
        Auth::Bsd,
        Auth::Bsdudp,
        Auth::Bsdtcp,
        Auth::Ssh,
        Auth::Local,
    ];

    pub fn parse(s: &str) -> Option<Auth> {
        Some(match s {
            "bsd" => Auth::Bsd,
            "bsdudp" => Auth::Bsdudp,
            "bsdtcp" => Auth::Bsdtcp,
            "ssh" => Auth::Ssh,
            "local" => Auth::Local,
            _ => return None,
        })
    }
    pub fn name(&self) -> &'static str {
        match self {
            Auth::Bsd => "bsd",
            Auth::Bsdudp => "bsdudp",
            Auth::Bsdtcp => "bsdtcp",
            Auth::Ssh => "ssh",
            Auth::Local => "local",
        }
    }
    /// bsd and bsdudp talk to amandad over UDP; only they can use the conntrack helper.
    pub fn is_udp(&self) -> bool {
        matches!(self, Auth::Bsd | Auth::Bsdudp)
    }
}

impl fmt::Display for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whose compiled-in defaults and `/etc/amanda-security.conf` we assume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Build {
    /// Debian's 1:3.5.1 packages (the default): ambind limits, no `amanda 10080/udp` in services.
    Debian,
    /// Upstream source with no configure port flags.
    Upstream,
}

/// `client-port` as amanda.conf/amanda-client.conf take it: a number, or a service
/// name that amandad and the server resolve with getservbyname(3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ClientPort {
    Number(u16),
    Service(String),
}

/// The Amanda settings that decide which packets flow. Resolved per host:
/// the `[amanda]` table, then the host's own `[host.amanda]` overrides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AmandaSettings {
    pub auth: Auth,
    pub reserved_udp_port: PortRange,
    pub reserved_tcp_port: PortRange,
    pub unreserved_tcp_port: PortRange,
    /// `None`: the default (service `amanda` for bsd*, no `-p` for ssh).
    pub client_port: Option<ClientPort>,
    pub index: bool,
    pub conntrack_helper: bool,
    pub legacy_recover: bool,
    /// amanda.conf `inparallel`: how many dumpers (each with its own UDP port) run at once.
    pub inparallel: u32,
}
