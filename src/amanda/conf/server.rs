//! The server side: amanda.conf (server parameters and definitions) and the
//! disklist (which clients, with which dumptype).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::disklist::{self, dle_settings, DiskEntry};
use super::keywords::Kind;
use super::parse::{self, Flavor, Param, Stmt};
use super::source::Pos;
use super::values::{self, Defs, PortClass};
use super::{LoadOptions, Origin, Setting, Warning};
use crate::amanda::facts;
use crate::amanda::settings::{AmandaSettings, Auth, Build, ClientPort};
use crate::diag::Error;
use crate::ports::PortRange;

/// What amwall needs from a server's Amanda configuration.
#[derive(Debug, Clone, Serialize)]
pub struct AmandaConfig {
    pub config_dir: PathBuf,
    /// Every file read: amanda.conf, its includes, the disklist and its includes.
    pub files: Vec<PathBuf>,
    pub server: ServerSettings,
    /// One per host in the disklist, in the order the hosts first appear.
    pub clients: Vec<ClientEntry>,
    /// Every `define`d name (and Amanda's predefined dumptypes), in order.
    pub definitions: Vec<Definition>,
    /// What every dumptype (defined or predefined) resolves to.
    pub dumptypes: Vec<DumptypeSettings>,
    /// amanda.conf's top-level parameters as written, including unknown ones.
    pub params: Vec<super::RawParam>,
    pub warnings: Vec<Warning>,
    /// The text of every file in `files`, as parsed.
    #[serde(skip)]
    pub texts: super::Texts,
}

/// A dumptype after inheritance, with Amanda's defaults filled in.
#[derive(Debug, Clone, Serialize)]
pub struct DumptypeSettings {
    pub name: String,
    /// None for Amanda's predefined dumptypes.
    pub pos: Option<Pos>,
    pub auth: Setting<Auth>,
    pub index: Setting<bool>,
    pub client_port: Setting<Option<ClientPort>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Definition {
    pub kind: Kind,
    pub name: String,
    /// None for Amanda's predefined dumptypes.
    pub pos: Option<Pos>,
}

/// The amanda.conf parameters that decide the server's packets
/// (amcheck, planner and dumpers read amanda.conf: docs/amanda-protocol.md §2).
#[derive(Debug, Clone, Serialize)]
pub struct ServerSettings {
    pub reserved_udp_port: Setting<PortRange>,
    pub reserved_tcp_port: Setting<PortRange>,
    pub unreserved_tcp_port: Setting<PortRange>,
    pub inparallel: Setting<u32>,
}

/// A backup client: a host named in the disklist.
#[derive(Debug, Clone, Serialize)]
pub struct ClientEntry {
    pub host: String,
    /// Its first disklist entry.
    pub pos: Pos,
    pub disks: Vec<DiskEntry>,
    /// The auth Amanda uses for the whole host. amcheck and the planner call
    /// `security_getdriver(hostp->disks->auth)` (`A:server-src/amcheck.c`,
    /// `A:server-src/planner.c`), and `parse_diskline` puts each new entry at the head
    /// of `host->disks`, so the host's *last* disklist entry decides. Lint
    /// `mixed-auth` flags hosts whose entries disagree.
    pub auth: Setting<Auth>,
    /// From the same entry as `auth`.
    pub client_port: Setting<Option<ClientPort>>,
    /// False if any entry has `index no`: that dump replies `INDEX -1`, which is
    /// what matters to the conntrack helper (docs/design.md, helper limits).
    pub index: Setting<bool>,
}

impl ClientEntry {
    /// This host's settings in the topology model, from its dumptype and, when given,
    /// its amanda-client.conf (amandad and sendbackup read that: docs/amanda-protocol.md §2).
    /// Without one, the client's ranges are the build's defaults.
    pub fn settings(
        &self,
        client_conf: Option<&super::ClientConf>,
        build: Build,
    ) -> AmandaSettings {
        let mut s = facts::defaults(build);
        s.auth = self.auth.value;
        s.client_port = self.client_port.value.clone();
        s.index = self.index.value;
        if let Some(c) = client_conf {
            s.reserved_udp_port = c.reserved_udp_port.value;
            s.reserved_tcp_port = c.reserved_tcp_port.value;
            s.unreserved_tcp_port = c.unreserved_tcp_port.value;
        }
        s
    }
}

impl AmandaConfig {
    pub fn client(&self, host: &str) -> Option<&ClientEntry> {
        self.clients.iter().find(|c| c.host == host)
    }

    /// The server host's settings in the topology model: amanda.conf's ranges and
    /// inparallel. Auth is the one most clients use (the server's own auth only
    /// matters for its clients' conversations, which the clients' entries carry).
    pub fn server_settings(&self, build: Build) -> AmandaSettings {
        let mut s = facts::defaults(build);
        s.reserved_udp_port = self.server.reserved_udp_port.value;
        s.reserved_tcp_port = self.server.reserved_tcp_port.value;
        s.unreserved_tcp_port = self.server.unreserved_tcp_port.value;
        s.inparallel = self.server.inparallel.value;
        let mut counts: Vec<(Auth, usize)> = Vec::new();
        for c in &self.clients {
            match counts.iter_mut().find(|(a, _)| *a == c.auth.value) {
                Some((_, n)) => *n += 1,
                None => counts.push((c.auth.value, 1)),
            }
        }
        if let Some((a, _)) = counts.iter().max_by_key(|(_, n)| *n) {
            s.auth = *a;
        }
        s
    }
}

/// A port-range setting of amanda.conf or amanda-client.conf (both read
/// them the same way): the file's value where it has one, else the build's
/// default with where that comes from.
pub(crate) fn port_range_setting(
    global: &HashMap<&str, &Param>,
    key: &str,
    class: PortClass,
    (value, why): (PortRange, &'static str),
) -> Result<Setting<PortRange>, Error> {
    Ok(match global.get(key) {
        Some(p) => Setting {
            value: values::port_range(p, class)?,
            origin: Origin::File(values::pos_of(p)),
        },
        None => Setting {
            value,
            origin: Origin::Default(why),
        },
    })
}

/// Defaults of the build, each with where it comes from.
pub(crate) fn range_defaults(build: Build) -> [(PortRange, &'static str); 3] {
    let d = facts::defaults(build);
    match build {
        Build::Debian => [
            (
                d.reserved_udp_port,
                "Debian's build: --with-udpportrange=840,860",
            ),
            (
                d.reserved_tcp_port,
                "Debian's build: no --with-low-tcpportrange, so conffile.c's 512,1023",
            ),
            (
                d.unreserved_tcp_port,
                "Debian's build: --with-tcpportrange=50000,50100",
            ),
        ],
        Build::Upstream => [
            (d.reserved_udp_port, "conffile.c init_defaults: 512,1023"),
            (d.reserved_tcp_port, "conffile.c init_defaults: 512,1023"),
            (
                d.unreserved_tcp_port,
                "conffile.c init_defaults: 1024,65535",
            ),
        ],
    }
}

/// Read a server configuration: `path` is the configuration directory (as in
/// /etc/amanda/DailySet1) or its amanda.conf. The disklist is amanda.conf's
/// `diskfile` (default "disklist"), relative to the directory.
pub fn load_server_config(path: &Path, opts: &LoadOptions) -> Result<AmandaConfig, Error> {
    let (dir, conf) = if path.is_dir() {
        (path.to_path_buf(), path.join("amanda.conf"))
    } else {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        (dir, path.to_path_buf())
    };
    let mut warnings = Vec::new();
    let doc = parse::parse_file(&conf, &dir, Flavor::Server, &mut warnings)?;
    let mut srcs = doc.srcs.clone();

    // Top-level parameters: a later line overrides an earlier one (amgetconf prints 4
    // for `inparallel 3` then `inparallel 4`).
    let mut global: HashMap<&str, &Param> = HashMap::new();
    let mut defs = Defs::with_builtins();
    let define_list: Vec<&parse::Definition> = doc
        .stmts
        .iter()
        .filter_map(|s| match s {
            Stmt::Define(d) => Some(d),
            Stmt::Param(_) => None,
        })
        .collect();
    let mut seen_defs = 0;
    for s in &doc.stmts {
        match s {
            Stmt::Param(p) => {
                global.insert(p.key.as_str(), p);
            }
            Stmt::Define(d) => {
                seen_defs += 1;
                defs.define(d, &define_list[seen_defs..])?;
            }
        }
    }

    let [udp, tcp, unres] = range_defaults(opts.build);
    let server = ServerSettings {
        reserved_udp_port: port_range_setting(
            &global,
            "reserved-udp-port",
            PortClass::Reserved,
            udp,
        )?,
        reserved_tcp_port: port_range_setting(
            &global,
            "reserved-tcp-port",
            PortClass::Reserved,
            tcp,
        )?,
        unreserved_tcp_port: port_range_setting(
            &global,
            "unreserved-tcp-port",
            PortClass::Unreserved,
            unres,
        )?,
        inparallel: match global.get("inparallel") {
            Some(p) => Setting {
                value: values::inparallel(p)?,
                origin: Origin::File(values::pos_of(p)),
            },
            None => Setting {
                value: 10,
                origin: Origin::Default("conffile.c init_defaults: inparallel 10"),
            },
        },
    };

    let diskfile = match global.get("diskfile") {
        Some(p) => values::string(p)?.0,
        None => "disklist".to_string(),
    };
    let diskfile = if Path::new(&diskfile).is_absolute() {
        PathBuf::from(diskfile)
    } else {
        dir.join(diskfile)
    };
    let disks = disklist::read(&diskfile, &dir, &defs, &mut warnings, &mut srcs)?;
    let clients = group(disks);

    // A dumptype no entry uses may hold what amwall cannot model (auth "krb5"):
    // that is worth a warning, not a failure.
    let mut dumptypes = Vec::new();
    for d in defs.by_kind.get(&Kind::Dumptype).into_iter().flatten() {
        match dle_settings(&d.resolved) {
            Ok((auth, index, client_port)) => dumptypes.push(DumptypeSettings {
                name: d.name.clone(),
                pos: d.loc.as_ref().map(|l| l.pos()),
                auth,
                index,
                client_port,
            }),
            Err(e) => warnings.push(Warning {
                code: "unusable-dumptype",
                pos: Pos {
                    file: e.file.as_str().into(),
                    line: e.line,
                    column: e.column,
                },
                message: format!("dumptype `{}`: {}", d.name, e.message),
            }),
        }
    }

    let mut definitions = Vec::new();
    for (kind, list) in &defs.by_kind {
        for d in list {
            definitions.push(Definition {
                kind: *kind,
                name: d.name.clone(),
                pos: d.loc.as_ref().map(|l| l.pos()),
            });
        }
    }
    Ok(AmandaConfig {
        config_dir: dir,
        files: srcs.iter().map(|s| s.path.clone()).collect(),
        texts: super::Texts::of(&srcs),
        server,
        clients,
        definitions,
        dumptypes,
        params: super::raw_params(&doc.stmts, super::keywords::Section::Server),
        warnings,
    })
}

fn group(disks: Vec<DiskEntry>) -> Vec<ClientEntry> {
    let mut clients: Vec<ClientEntry> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for d in disks {
        match at.get(&d.host.value).map(|&i| &mut clients[i]) {
            Some(c) => {
                c.auth = d.auth.clone();
                c.client_port = d.client_port.clone();
                if c.index.value && !d.index.value {
                    c.index = d.index.clone();
                }
                c.disks.push(d);
            }
            None => {
                at.insert(d.host.value.clone(), clients.len());
                clients.push(ClientEntry {
                    host: d.host.value.clone(),
                    pos: d.host.pos.clone(),
                    auth: d.auth.clone(),
                    client_port: d.client_port.clone(),
                    index: d.index.clone(),
                    disks: vec![d],
                })
            }
        }
    }
    clients
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(amanda_conf: &str, disklist: &str) -> Result<AmandaConfig, Error> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("amanda.conf"), amanda_conf).unwrap();
        std::fs::write(dir.path().join("disklist"), disklist).unwrap();
        load_server_config(dir.path(), &LoadOptions::default())
    }

    /// amcheck/planner use `hostp->disks->auth`, the host's last disklist entry.
    #[test]
    fn a_host_talks_with_its_last_entrys_auth() {
        let c = config(
            "define dumptype u {\n  auth \"bsdudp\"\n  index no\n}\n",
            "h /a u\nh /b bsdtcp-auth\n",
        )
        .unwrap();
        assert_eq!(c.clients.len(), 1);
        assert_eq!(c.clients[0].auth.value, Auth::Bsdtcp);
        assert!(!c.clients[0].index.value, "one entry has index no");
    }

    /// conffile.c init_dumptype_defaults (and amgetconf on an empty dumptype):
    /// auth BSDTCP, index yes, client-port "".
    #[test]
    fn dumptype_defaults() {
        let c = config("define dumptype e {\n  comment \"\"\n}\n", "h / e\n").unwrap();
        let h = &c.clients[0];
        assert_eq!(h.auth.value, Auth::Bsdtcp);
        assert!(h.index.value);
        assert_eq!(h.client_port.value, None);
        assert!(matches!(h.auth.origin, Origin::Default(_)));
        assert_eq!(c.server.inparallel.value, 10);
        assert_eq!(c.server.reserved_udp_port.value, PortRange::new(840, 860));
    }

    /// A dumptype nobody uses may carry an auth amwall does not model.
    #[test]
    fn unused_krb5_dumptype_is_a_warning() {
        let c = config("define dumptype k {\n  auth \"krb5\"\n}\n", "").unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(c.warnings[0].code, "unusable-dumptype");
        assert_eq!(c.warnings[0].pos.line, 2);
        let e = config("define dumptype k {\n  auth \"krb5\"\n}\n", "h / k\n").unwrap_err();
        assert!(
            e.to_string().ends_with(":2:8: unknown auth \"krb5\""),
            "{e}"
        );
    }

    #[test]
    fn a_device_needs_a_dumptype_after_it() {
        let e = config("", "h /a /dev/sda1\n").unwrap_err();
        assert!(
            e.to_string()
                .ends_with("disklist:1:6: unknown dumptype `/dev/sda1`"),
            "{e}"
        );
    }
}
