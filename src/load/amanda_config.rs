//! The admin's real Amanda configuration as the Amanda side of a deployment.
//!
//! The server's amanda.conf + disklist say which hosts are clients and with
//! which auth, index and client-port; amanda.conf says the server's port ranges;
//! each client's amanda-client.conf (where given) says its own ranges, and for a
//! host that runs amrecover, its auth and client-port. Addresses stay the
//! topology's business; a host only the disklist names gets its address from a
//! hosts file (`/etc/hosts` format). No DNS.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;

use crate::amanda::conf::{self, AmandaConfig, ClientConf, LintContext, LoadOptions};
use crate::amanda::settings::AmandaSettings;
use crate::diag::{Error, InputError, Result};
use crate::model::topology::Draft;
use crate::model::{AmandaProvenance, AmandaSources, Host, HostId, Interface, Roles, Span};

/// One `/etc/hosts` line: an IPv4 address and the names for it.
#[derive(Debug, Clone)]
pub struct HostsEntry {
    pub addr: Ipv4Addr,
    pub names: Vec<String>,
    /// Byte range of the address in the file, for errors that point at it.
    pub addr_span: std::ops::Range<usize>,
}

/// `/etc/hosts` format: `ADDRESS NAME [ALIAS...]`, `#` comments. IPv6 lines are
/// skipped: Debian's Amanda is built without IPv6.
pub fn parse_hosts(text: &str) -> Vec<HostsEntry> {
    let mut out = Vec::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let here = start;
        start += line.len();
        let l = line.split('#').next().unwrap_or("");
        let mut w = l.split_whitespace();
        let Some(first) = w.next() else { continue };
        let Ok(addr) = Ipv4Addr::from_str(first) else {
            continue;
        };
        let names: Vec<String> = w.map(str::to_string).collect();
        if names.is_empty() {
            continue;
        }
        // `first` is a subslice of `line`: its offset is where it starts.
        let at = here + (first.as_ptr() as usize - line.as_ptr() as usize);
        out.push(HostsEntry {
            addr,
            names,
            addr_span: at..at + first.len(),
        });
    }
    out
}

/// A hosts file read once: its text for carets, and its entries.
struct HostsFile {
    name: String,
    text: std::sync::Arc<String>,
    entries: Vec<HostsEntry>,
    /// Short name → the first entry naming it (see `short`).
    by_short: HashMap<String, usize>,
}

impl HostsFile {
    fn read(path: &Path) -> Result<HostsFile> {
        let text = read_hosts(path)?;
        let entries = parse_hosts(&text);
        let mut by_short = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            for n in &e.names {
                by_short.entry(short(n)).or_insert(i);
            }
        }
        Ok(HostsFile {
            name: path.display().to_string(),
            text: std::sync::Arc::new(text),
            entries,
            by_short,
        })
    }

    /// The first entry with a name whose short name is `host`'s.
    fn find(&self, host: &str) -> Option<&HostsEntry> {
        self.by_short.get(&short(host)).map(|&i| &self.entries[i])
    }

    /// The address `e` gives `host`, refused when no host can have it.
    /// `disklist`: the name came from a disklist line (where `localhost`
    /// usually means the server backing itself up).
    fn usable(&self, e: &HostsEntry, host: &str, disklist: bool) -> Result<()> {
        match crate::model::unusable_address(e.addr) {
            Some((why, help)) => {
                let help = if disklist && e.addr.is_loopback() {
                    format!("{help}; a disklist entry for the server itself (`localhost`) needs no rule: write the server's own name there")
                } else {
                    help.to_string()
                };
                Err(InputError::new(
                    &self.name,
                    &self.text,
                    e.addr_span.clone(),
                    format!("`{host}` would get {}: {why}", e.addr),
                    "not a host address",
                )
                .with_help(help)
                .into())
            }
            None => Ok(()),
        }
    }

    fn err(&self, e: &HostsEntry, msg: String, label: &str, help: &str) -> Error {
        InputError::new(&self.name, &self.text, e.addr_span.clone(), msg, label)
            .with_help(help)
            .into()
    }
}

/// A topology for `plan --amanda-config DIR --hosts FILE --server NAME` without a
/// topology file: every host on one flat network, addresses from the hosts file.
/// Routers and NAT cannot be guessed; the summary says the network is assumed flat.
pub fn flat_topology(server: &str, hosts_file: &Path) -> Result<String> {
    // The name is pasted into TOML and from there into file names: check it first.
    crate::name::host(server)
        .map_err(|why| Error::Usage(format!("--server `{}`: {why}", server.escape_debug())))?;
    let hf = HostsFile::read(hosts_file)?;
    let entry = hf.find(server).ok_or_else(|| {
        Error::Usage(format!(
            "server `{server}` is not in {}",
            hosts_file.display()
        ))
    })?;
    hf.usable(entry, server, false)?;
    let addr = entry.addr;
    Ok(format!(
        "# Generated: no topology given, so every host is assumed on one flat network.\n\
         [[network]]\nname = \"flat\"\ncidr = \"0.0.0.0/0\"\n\n\
         [[host]]\nname = \"{server}\"\nroles = [\"server\"]\n\
         interfaces = [{{ name = \"eth0\", network = \"flat\", address = \"{addr}\" }}]\n"
    ))
}

/// A hosts file's text. Like Amanda's files it is read by byte-oriented C code
/// (the resolver), so a Latin-1 comment must not stop us: bytes that are not
/// UTF-8 are read as Latin-1 (`input::utf8_or_latin1`). Names themselves are
/// checked where they become hosts.
fn read_hosts(path: &Path) -> Result<String> {
    Ok(crate::input::utf8_or_latin1(crate::input::read_bytes(
        path,
    )?))
}

/// Apply `src` to the hosts being built: the server is the one host with that
/// role; hosts only the disklist names join on the network their hosts-file
/// address is in, with that network's gateway.
pub fn apply(src: &AmandaSources, draft: &mut Draft) -> Result<AmandaProvenance> {
    let server = draft.server();
    let at = draft.config_at();
    let config_err = |m: String| at.error(m);
    let mut prov = AmandaProvenance::default();
    let opts = LoadOptions { build: draft.build };
    let security = match &src.security_conf {
        Some(p) => conf::load_security_conf(p)?,
        None => conf::SecurityConf::debian(),
    };
    let services = match &src.services {
        Some(p) => conf::load_services(p)?,
        None => conf::Services::debian(),
    };
    let ctx = LintContext {
        security: &security,
        services: &services,
    };
    let mut hosts = Hosts::new(draft);

    // Client confs first: the disklist's clients use them for their ranges.
    let mut client_confs: HashMap<HostId, ClientConf> = HashMap::new();
    for (name, path) in &src.client_confs {
        let h = hosts
            .draft
            .hosts
            .iter()
            .position(|h| h.name == *name)
            .ok_or_else(|| config_err(format!("amanda-client-conf for unknown host `{name}`")))?;
        let cc = conf::load_client_conf(path, &opts)?;
        prov.record(
            &cc.files,
            cc.warnings
                .iter()
                .cloned()
                .chain(conf::lint_client(&cc, &ctx)),
        );
        client_confs.insert(h, cc);
    }

    if let Some(dir) = &src.config {
        let cfg = conf::load_server_config(dir, &opts)?;
        let s = server.ok_or_else(|| {
            config_err("an Amanda config needs exactly one host with the role \"server\" (or name it with server = ...)".into())
        })?;
        prov.record(
            &cfg.files,
            cfg.warnings
                .iter()
                .cloned()
                .chain(conf::lint_server(&cfg, &ctx)),
        );
        let hosts_file = match &src.hosts_file {
            Some(p) => Some(HostsFile::read(p)?),
            None => None,
        };
        hosts.server_config(&cfg, s, hosts_file.as_ref(), &client_confs, &mut prov)?;
    }
    hosts.recovering(&client_confs);
    Ok(prov)
}

impl AmandaProvenance {
    fn record(
        &mut self,
        files: &[std::path::PathBuf],
        warnings: impl Iterator<Item = conf::Warning>,
    ) {
        self.files
            .extend(files.iter().map(|f| f.display().to_string()));
        for w in warnings {
            self.warnings
                .push((w.code.to_string(), format!("{}: {}", w.pos, w.message)));
        }
    }
}

/// The draft's hosts with the indexes a 10,000-line disklist needs to stay
/// linear: by short name (see `short`) and by address.
struct Hosts<'d> {
    draft: &'d mut Draft,
    by_short: HashMap<String, HostId>,
    by_addr: HashMap<Ipv4Addr, HostId>,
}

/// `lhost.example.org` and `LHOST` → `lhost`. Amanda compares host names as
/// written, but admins mix short names and FQDNs: a disklist name and a
/// topology or hosts-file name are the same host when their short names agree
/// (ignoring case), and the short name can key an index.
fn short(name: &str) -> String {
    name.split('.').next().unwrap_or(name).to_ascii_lowercase()
}

impl<'d> Hosts<'d> {
    fn new(draft: &'d mut Draft) -> Hosts<'d> {
        let mut h = Hosts {
            draft,
            by_short: HashMap::new(),
            by_addr: HashMap::new(),
        };
        for id in 0..h.draft.hosts.len() {
            h.index(id);
        }
        h
    }

    /// First host wins, as a search in host order would find it.
    fn index(&mut self, id: HostId) {
        let host = &self.draft.hosts[id];
        self.by_short.entry(short(&host.name)).or_insert(id);
        for a in host.interfaces.iter().filter_map(|i| i.address) {
            self.by_addr.entry(a).or_insert(id);
        }
    }

    /// The first host with `name`'s short name.
    fn find(&self, name: &str) -> Option<HostId> {
        self.by_short.get(&short(name)).copied()
    }

    /// The server: amanda.conf's ranges and inparallel (what amcheck, planner and
    /// dumpers bind), unless the host overrides them in the topology; then every
    /// disklist host becomes its client, added from the hosts file if the
    /// topology does not have it.
    fn server_config(
        &mut self,
        cfg: &AmandaConfig,
        s: HostId,
        hosts_file: Option<&HostsFile>,
        client_confs: &HashMap<HostId, ClientConf>,
        prov: &mut AmandaProvenance,
    ) -> Result<()> {
        let build = self.draft.build;
        let ss = cfg.server_settings(build);
        merge(
            &mut self.draft.hosts[s].amanda,
            &ss,
            &self.draft.overrides[s],
            &[
                "reserved-udp-port",
                "reserved-tcp-port",
                "unreserved-tcp-port",
                "inparallel",
            ],
        );
        for c in &cfg.clients {
            // The disklist's name becomes a file name and a rule comment.
            if let Err(why) = crate::name::host(&c.host) {
                return Err(pos_error(
                    &cfg.texts,
                    &c.pos,
                    format!("disklist host `{}`: {why}", c.host.escape_debug()),
                    "not a host name",
                    "the first word of a disklist line is the client's host name as DNS knows it",
                ));
            }
            let h = match self.find(&c.host) {
                Some(h) => h,
                None => self.add(cfg, c, hosts_file, prov)?,
            };
            self.client(h, s, c, client_confs.get(&h));
        }
        // A topology client the disklist does not name is not backed up.
        let named: std::collections::HashSet<String> =
            cfg.clients.iter().map(|c| short(&c.host)).collect();
        for h in self
            .draft
            .hosts
            .iter()
            .filter(|h| h.roles.client && h.server == Some(s))
        {
            if !named.contains(&short(&h.name)) {
                prov.warnings.push((
                    "not-in-disklist".into(),
                    format!("`{}` has the role \"client\" in the topology, but the disklist has no entry for it", h.name),
                ));
            }
        }
        Ok(())
    }

    /// Host `h` as a client of `s`: auth, index and client-port from its
    /// disklist entries (the server's view); the range its amandad listens in
    /// from its amanda-client.conf when we have it.
    fn client(&mut self, h: HostId, s: HostId, c: &conf::ClientEntry, cc: Option<&ClientConf>) {
        let build = self.draft.build;
        let host = &mut self.draft.hosts[h];
        host.roles.client = true;
        if host.server.is_none() {
            host.server = Some(s);
        }
        let cs = c.settings(cc, build);
        let over = &self.draft.overrides[h];
        merge(
            &mut host.amanda,
            &cs,
            over,
            &["auth", "index", "client-port"],
        );
        if cc.is_some() {
            merge(
                &mut host.client_conf,
                &cs,
                over,
                &[
                    "reserved-udp-port",
                    "reserved-tcp-port",
                    "unreserved-tcp-port",
                ],
            );
        }
    }

    /// A host only the disklist names, placed by the hosts file on the most
    /// specific network that holds its address.
    fn add(
        &mut self,
        cfg: &AmandaConfig,
        c: &conf::ClientEntry,
        hosts_file: Option<&HostsFile>,
        prov: &mut AmandaProvenance,
    ) -> Result<HostId> {
        let entry = hosts_file.and_then(|f| Some((f, f.find(&c.host)?)));
        let Some((hf, entry)) = entry else {
            return Err(pos_error(
                &cfg.texts,
                &c.pos,
                format!("disklist host `{}` is not in the topology{}", c.host, if hosts_file.is_some() { " nor in the hosts file" } else { "" }),
                "unknown host",
                "add it as a [[host]] in the topology, or give a hosts file (hosts-file = \"...\" or --hosts FILE)",
            ));
        };
        hf.usable(entry, &c.host, true)?;
        let networks = &self.draft.networks;
        // A hosts file gives IPv4 addresses: only networks with a `cidr` hold them.
        let net = (0..networks.len())
            .filter_map(|n| Some((n, networks[n].cidr?)))
            .filter(|(_, c)| c.contains(&entry.addr))
            .max_by_key(|(_, c)| c.prefix_len())
            .ok_or_else(|| {
                pos_error(
                    &cfg.texts,
                    &c.pos,
                    format!(
                        "`{}` is {} (hosts file), which is in no network of the topology",
                        c.host, entry.addr
                    ),
                    "no network for this host",
                    "add a [[network]] that contains it",
                )
            })?;
        let (net, cidr) = net;
        if let Some(what) = crate::model::topology::edge_address(cidr, entry.addr) {
            return Err(hf.err(
                entry,
                format!(
                    "`{}` would get {}, the {what} of network `{}` ({cidr})",
                    c.host, entry.addr, networks[net].name
                ),
                "not a host address",
                "give the client its real address",
            ));
        }
        if let Some(&o) = self.by_addr.get(&entry.addr) {
            return Err(hf.err(
                entry,
                format!(
                    "`{}` would get {}, which is already `{}`'s address",
                    c.host, entry.addr, self.draft.hosts[o].name
                ),
                "duplicate address",
                "two hosts cannot share an address; correct the hosts file or the topology",
            ));
        }
        // Not the server's amanda.conf ranges: a host only the
        // disklist names has the topology's [amanda] settings.
        let mut amanda = self.draft.global.clone();
        amanda.legacy_recover = false;
        self.draft.hosts.push(Host {
            name: c.host.clone(),
            interfaces: vec![Interface {
                name: "eth0".into(),
                network: net,
                address: Some(entry.addr),
                address6: None,
            }],
            gateway: self.draft.network_gateway[net],
            roles: Roles::default(),
            server: None,
            masquerade: vec![],
            client_conf: amanda.clone(),
            amanda,
            firewall: None,
            span: Span::default(),
        });
        self.draft.overrides.push(Vec::new());
        prov.added_hosts.push(c.host.clone());
        let id = self.draft.hosts.len() - 1;
        self.index(id);
        Ok(id)
    }

    /// Hosts that run amrecover: auth, client-port and ranges from their client conf.
    fn recovering(&mut self, client_confs: &HashMap<HostId, ClientConf>) {
        let build = self.draft.build;
        for (h, cc) in client_confs {
            let host = &mut self.draft.hosts[*h];
            if host.roles.recover {
                let rs = cc.settings(build);
                merge(
                    &mut host.client_conf,
                    &rs,
                    &self.draft.overrides[*h],
                    &[
                        "auth",
                        "client-port",
                        "reserved-udp-port",
                        "reserved-tcp-port",
                        "unreserved-tcp-port",
                    ],
                );
            }
        }
    }
}

/// Copy `keys` from `from` into `to`, except those the topology overrides for this host.
fn merge(to: &mut AmandaSettings, from: &AmandaSettings, overridden: &[String], keys: &[&str]) {
    for k in keys {
        if overridden.iter().any(|o| o == k) {
            continue;
        }
        match *k {
            "auth" => to.auth = from.auth,
            "index" => to.index = from.index,
            "client-port" => to.client_port = from.client_port.clone(),
            "reserved-udp-port" => to.reserved_udp_port = from.reserved_udp_port,
            "reserved-tcp-port" => to.reserved_tcp_port = from.reserved_tcp_port,
            "unreserved-tcp-port" => to.unreserved_tcp_port = from.unreserved_tcp_port,
            "inparallel" => to.inparallel = from.inparallel,
            other => unreachable!("unknown setting key {other}"),
        }
    }
}

/// An error at a position in an Amanda file, with a caret into the text that was
/// parsed (not the file read again: it may have changed, or not be readable).
fn pos_error(texts: &conf::Texts, pos: &conf::Pos, msg: String, label: &str, help: &str) -> Error {
    let text = texts.get(&pos.file).unwrap_or_default();
    let line_start = text
        .split_inclusive('\n')
        .take(pos.line.saturating_sub(1))
        .map(str::len)
        .sum::<usize>()
        .min(text.len());
    // Columns count characters, not bytes.
    let offset = text[line_start..]
        .char_indices()
        .nth(pos.column.saturating_sub(1))
        .map_or(text.len(), |(i, _)| line_start + i);
    let end = text[offset..]
        .find(char::is_whitespace)
        .map_or(text.len(), |e| offset + e);
    InputError::new(&pos.file, &text, offset..end, msg, label)
        .with_help(help)
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_lines() {
        let h = parse_hosts("# c\n192.0.2.3 lhost lhost.example.org\n::1 localhost\n\n198.51.100.5\trhost # remote\n");
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].names, ["lhost", "lhost.example.org"]);
        assert_eq!(h[1].addr, Ipv4Addr::new(198, 51, 100, 5));
    }

    #[test]
    fn short_names_match_fqdns() {
        assert_eq!(short("lhost.example.org"), short("lhost"));
        assert_eq!(short("LHOST"), short("lhost"));
        assert_ne!(short("lhost2"), short("lhost"));
    }
}
