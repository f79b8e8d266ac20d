//! A client's amanda-client.conf: what amandad, sendbackup and amrecover read
//! (docs/amanda-protocol.md §2) — the client's own port ranges, and for amrecover the
//! auth, client-port and which servers it talks to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::parse::{self, Flavor, Param, Stmt};
use super::server::{port_range_setting, range_defaults};
use super::values::{self, PortClass};
use super::{LoadOptions, Origin, Setting, Warning};
use crate::amanda::facts;
use crate::amanda::settings::{AmandaSettings, Auth, Build, ClientPort};
use crate::diag::Error;
use crate::ports::PortRange;

#[derive(Debug, Clone, Serialize)]
pub struct ClientConf {
    pub path: PathBuf,
    pub files: Vec<PathBuf>,
    pub auth: Setting<Auth>,
    pub client_port: Setting<Option<ClientPort>>,
    /// Where amrecover finds amindexd and amidxtaped (`A:recover-src/amrecover.c`).
    pub index_server: Setting<String>,
    pub tape_server: Setting<String>,
    pub amdump_server: Setting<String>,
    pub reserved_udp_port: Setting<PortRange>,
    pub reserved_tcp_port: Setting<PortRange>,
    pub unreserved_tcp_port: Setting<PortRange>,
    /// Top-level parameters as written, including unknown ones.
    pub params: Vec<super::RawParam>,
    pub warnings: Vec<Warning>,
}

impl ClientConf {
    /// Settings of a host that runs amrecover with this file.
    pub fn settings(&self, build: Build) -> AmandaSettings {
        let mut s = facts::defaults(build);
        s.auth = self.auth.value;
        s.client_port = self.client_port.value.clone();
        s.reserved_udp_port = self.reserved_udp_port.value;
        s.reserved_tcp_port = self.reserved_tcp_port.value;
        s.unreserved_tcp_port = self.unreserved_tcp_port.value;
        s
    }
}

/// Read one amanda-client.conf. Includes are relative to its directory, which is
/// Amanda's config_dir for a client (CONFIG_DIR, or CONFIG_DIR/NAME for a named one).
/// Amanda also overlays /etc/amanda/amanda-client.conf under a named one
/// (`config_init_with_global`); pass the file that holds the values you mean.
pub fn load_client_conf(path: &Path, opts: &LoadOptions) -> Result<ClientConf, Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut warnings = Vec::new();
    let doc = parse::parse_file(path, &dir, Flavor::Client, &mut warnings)?;
    let mut global: HashMap<&str, &Param> = HashMap::new();
    for s in &doc.stmts {
        if let Stmt::Param(p) = s {
            global.insert(p.key.as_str(), p);
        }
    }
    let [udp, tcp, unres] = range_defaults(opts.build);
    let string = |key: &str, default: &str, why: &'static str| -> Result<Setting<String>, Error> {
        Ok(match global.get(key) {
            Some(p) => Setting {
                value: values::string(p)?.0,
                origin: Origin::File(values::pos_of(p)),
            },
            None => Setting {
                value: default.to_string(),
                origin: Origin::Default(why),
            },
        })
    };
    const SERVER_DEFAULT: &str =
        "the build's DEFAULT_SERVER (Debian: localhost, amgetconf build.DEFAULT_SERVER)";
    Ok(ClientConf {
        path: path.to_path_buf(),
        files: doc.files(),
        auth: match global.get("auth") {
            Some(p) => Setting {
                value: values::auth(p)?,
                origin: Origin::File(values::pos_of(p)),
            },
            // conffile.c init_defaults: conf_init_str(CNF_AUTH, "bsdtcp");
            // `amgetconf --client` prints bsdtcp for an empty file.
            None => Setting {
                value: Auth::Bsdtcp,
                origin: Origin::Default("conffile.c init_defaults: auth \"bsdtcp\""),
            },
        },
        client_port: match global.get("client-port") {
            Some(p) => Setting {
                value: values::client_port(p)?,
                origin: Origin::File(values::pos_of(p)),
            },
            None => Setting {
                value: None,
                origin: Origin::Default("conffile.c init_defaults: \"\", service \"amanda\""),
            },
        },
        index_server: string("index-server", "localhost", SERVER_DEFAULT)?,
        tape_server: string("tape-server", "localhost", SERVER_DEFAULT)?,
        amdump_server: string("amdump-server", "localhost", SERVER_DEFAULT)?,
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
        params: super::raw_params(&doc.stmts, super::keywords::Section::Client),
        warnings,
    })
}
