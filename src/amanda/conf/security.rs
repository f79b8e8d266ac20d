//! Two system files that decide whether Amanda's settings can work at all:
//! Debian's `/etc/amanda-security.conf` (which privileged ports the setuid `ambind`
//! may bind) and the services file (how `client-port "amanda"` resolves).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::source::{Pos, Src};
use super::{Origin, Setting};
use crate::amanda::facts;
use crate::diag::{Error, InputError};
use crate::ports::PortRange;

/// amanda-security.conf(5): `tcp_port_range=LOW,HIGH` and `udp_port_range=LOW,HIGH`
/// limit ambind ("udp port out of range (840 <= N <= 860)",
/// `A:common-src/security-file.c`); "Default: no" — without the line, ambind refuses
/// every privileged bind of that protocol.
#[derive(Debug, Clone, Serialize)]
pub struct SecurityConf {
    pub file: Option<PathBuf>,
    pub tcp_port_range: Option<Setting<PortRange>>,
    pub udp_port_range: Option<Setting<PortRange>>,
}

impl SecurityConf {
    /// What Debian's amanda-common 1:3.5.1-11+deb12u2 installs.
    pub fn debian() -> SecurityConf {
        SecurityConf {
            file: None,
            tcp_port_range: Some(Setting {
                value: facts::DEBIAN_AMBIND_TCP,
                origin: Origin::Default(
                    "Debian's /etc/amanda-security.conf: tcp_port_range=512,1024",
                ),
            }),
            udp_port_range: Some(Setting {
                value: facts::DEBIAN_AMBIND_UDP,
                origin: Origin::Default(
                    "Debian's /etc/amanda-security.conf: udp_port_range=840,860",
                ),
            }),
        }
    }
}

pub fn load_security_conf(path: &Path) -> Result<SecurityConf, Error> {
    let src = Src::read(path)?;
    let mut c = parse(&src)?;
    c.file = Some(path.to_path_buf());
    Ok(c)
}

/// Parse the text of an amanda-security.conf; `name` is used in positions.
pub fn parse_security_conf(name: &str, text: &str) -> Result<SecurityConf, Error> {
    Ok(parse(&Src::new(Path::new(name), text.to_string()))?)
}

fn parse(src: &std::sync::Arc<Src>) -> Result<SecurityConf, InputError> {
    let mut conf = SecurityConf {
        file: None,
        tcp_port_range: None,
        udp_port_range: None,
    };
    let text = &src.text;
    let mut off = 0;
    for line in text.split_inclusive('\n') {
        let start = off;
        off += line.len();
        let l = line.trim_end_matches(['\n', '\r']);
        // "All lines with '#' as the first character are comment lines."
        if l.trim().is_empty() || l.starts_with('#') {
            continue;
        }
        let Some(eq) = l.find('=') else {
            return Err(src
                .loc(start..start + l.len())
                .error("expected NAME=VALUE", "no `=`"));
        };
        let key = l[..eq].trim();
        let value = &l[eq + 1..];
        let slot = match key {
            "tcp_port_range" => &mut conf.tcp_port_range,
            "udp_port_range" => &mut conf.udp_port_range,
            // program paths, restore_by_amanda_user: not about the network
            _ => continue,
        };
        let vloc = src.loc(start + eq + 1..start + l.len());
        let bad = || {
            vloc.error(
                format!("bad {key} `{value}`: expected LOW,HIGH"),
                "not LOW,HIGH",
            )
            .with_help(format!("for example: {key}=840,860"))
        };
        let (lo, hi) = value.split_once(',').ok_or_else(bad)?;
        let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
        if lo > hi {
            return Err(bad());
        }
        if slot.is_none() {
            *slot = Some(Setting {
                value: PortRange::new(lo, hi),
                origin: Origin::File(src.loc(start..start + l.len()).pos()),
            });
        }
    }
    Ok(conf)
}

/// A services(5) file, for what `client-port` names resolve to.
#[derive(Debug, Clone, Serialize)]
pub struct Services {
    pub file: Option<PathBuf>,
    entries: Vec<ServiceEntry>,
}

#[derive(Debug, Clone, Serialize)]
struct ServiceEntry {
    names: Vec<String>,
    port: u16,
    proto: String,
    pos: Option<Pos>,
}

impl Services {
    /// The Amanda entries of Debian's netbase 6.4 `/etc/services`: `amanda 10080/tcp`
    /// and no `amanda 10080/udp` (netbase 5.8 removed it; docs/design.md "Debian 3.5.1").
    pub fn debian() -> Services {
        let e = |n: &str, port| ServiceEntry {
            names: vec![n.to_string()],
            port,
            proto: "tcp".into(),
            pos: None,
        };
        Services {
            file: None,
            entries: vec![
                e("amanda", facts::AMANDA_PORT),
                e("kamanda", 10081),
                e("amandaidx", facts::AMANDAIDX_PORT),
                e("amidxtape", facts::AMIDXTAPE_PORT),
                e("ssh", facts::SSH_PORT),
            ],
        }
    }

    /// getservbyname(3): a name or alias, for one protocol.
    pub fn lookup(&self, name: &str, proto: &str) -> Option<u16> {
        self.entries
            .iter()
            .find(|e| e.proto == proto && e.names.iter().any(|n| n == name))
            .map(|e| e.port)
    }
}

pub fn load_services(path: &Path) -> Result<Services, Error> {
    let src = Src::read(path)?;
    let mut s = parse_services_src(&src);
    s.file = Some(path.to_path_buf());
    Ok(s)
}

/// Lines that do not look like `name port/proto` are skipped, as the C library does.
pub fn parse_services(name: &str, text: &str) -> Services {
    parse_services_src(&Src::new(Path::new(name), text.to_string()))
}

fn parse_services_src(src: &std::sync::Arc<Src>) -> Services {
    let mut entries = Vec::new();
    let mut off = 0;
    for line in src.text.split_inclusive('\n') {
        let start = off;
        off += line.len();
        let l = line.split('#').next().unwrap_or("");
        let mut words = l.split_whitespace();
        let (Some(name), Some(pp)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((port, proto)) = pp.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let mut names = vec![name.to_string()];
        names.extend(words.map(str::to_string));
        entries.push(ServiceEntry {
            names,
            port,
            proto: proto.to_string(),
            pos: Some(src.loc(start..start + 1).pos()),
        });
    }
    Services {
        file: None,
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_security_conf_as_shipped() {
        let c = parse_security_conf(
            "s",
            "# comment\nruntar:gnutar_path=/bin/tar\n#restore_by_amanda_user=no\ntcp_port_range=512,1024\nudp_port_range=840,860\n",
        )
        .unwrap();
        assert_eq!(c.tcp_port_range.unwrap().value, PortRange::new(512, 1024));
        let u = c.udp_port_range.unwrap();
        assert_eq!(u.value, PortRange::new(840, 860));
        assert_eq!(u.pos().unwrap().to_string(), "s:5:1");
    }

    #[test]
    fn bad_security_range() {
        let e = parse_security_conf("s", "udp_port_range=860\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "s:1:16: bad udp_port_range `860`: expected LOW,HIGH"
        );
    }

    #[test]
    fn services_lookup_by_proto_and_alias() {
        let s = parse_services(
            "svc",
            "amanda\t\t10080/tcp\t\t\t# amanda backup services\nfoo 7/udp bar\n",
        );
        assert_eq!(s.lookup("amanda", "tcp"), Some(10080));
        assert_eq!(s.lookup("amanda", "udp"), None);
        assert_eq!(s.lookup("bar", "udp"), Some(7));
        assert_eq!(Services::debian().lookup("amanda", "udp"), None);
    }
}
