//! The whole `plan` pipeline in one value: model → flows → paths → policy, and
//! each host's rules as text. What is written, and how, is `output`'s.
#![forbid(unsafe_code)]

use serde::Serialize;

use crate::diag::{Error, InputError, Result};
use crate::flows::{self, Flow};
use crate::lint::{self, Lint};
use crate::model::{AddrIndex, Deployment};
use crate::policy::{self, HostPolicy};
use crate::render;
use crate::route::{self, Path, Path6, RouteError};

#[derive(Debug, Serialize)]
pub struct Plan {
    #[serde(skip)]
    pub deployment: Deployment,
    pub flows: Vec<Flow>,
    pub paths: Vec<Path>,
    /// Flows with a host that has no IPv4 address at one end, where Amanda
    /// speaks IPv6: routed over IPv6 only (`route::path6`), opened only in
    /// the IPv6 policy, numbered after `flows` (`Rule6::flows`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flows6: Vec<Flow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths6: Vec<Path6>,
    /// Flows with a host that has no IPv4 address at one end, where Amanda
    /// cannot speak IPv6 (Debian's build): nothing is opened for them and
    /// the `no-ipv4` lint says why; kept so SUMMARY.md can list them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<Flow>,
    #[serde(skip)]
    pub policies: Vec<HostPolicy>,
    pub lints: Vec<Lint>,
    #[serde(skip)]
    pub index: AddrIndex,
    /// Per host: where the admins' management traffic arrives or is forwarded
    /// (`route::management`); the policy's management rules and `check`'s
    /// idea of what management needs both come from it.
    #[serde(skip)]
    pub management: Vec<Vec<route::MgmtHop>>,
}

/// The flows by the family they take (see `Plan`'s fields).
struct Routed {
    flows: Vec<Flow>,
    paths: Vec<Path>,
    flows6: Vec<Flow>,
    paths6: Vec<Path6>,
    left_out: Vec<Flow>,
    /// Why flows between hosts with IPv4 went over IPv6 (`ipv4-unroutable`).
    lints: Vec<Lint>,
}

/// Route every flow: over IPv4 where both ends have IPv4 and a way between
/// them; else over IPv6 only where Amanda speaks it (a host without IPv4,
/// or an IPv6-only network between two that have it); else, for a host
/// without IPv4, left out (the `no-ipv4` lint), and an IPv4 route that
/// cannot be is an error as always.
fn route_all(d: &Deployment, index: &AddrIndex) -> Result<Routed> {
    let mut r = Routed {
        flows: Vec::new(),
        paths: Vec::new(),
        flows6: Vec::new(),
        paths6: Vec::new(),
        left_out: Vec::new(),
        lints: Vec::new(),
    };
    let v6 = d.amanda_speaks_ipv6();
    for f in flows::flows(d) {
        if d.has_ipv4(f.initiator) && d.has_ipv4(f.responder) {
            match route::path(d, index, &f) {
                Ok(p) => {
                    r.flows.push(f);
                    r.paths.push(p);
                }
                Err(e) => match route::path6(d, &f).ok().filter(|_| v6) {
                    Some(p6) => {
                        let (i, s) = (&d.hosts[f.initiator].name, &d.hosts[f.responder].name);
                        let message = format!("{} {i} → {s} has no IPv4 route ({}), so it is planned over IPv6 only; an Amanda that resolves the name to an IPv4 address would fail", f.operation.name(), e.message);
                        if !r.lints.iter().any(|l| l.message == message) {
                            r.lints.push(Lint {
                                severity: lint::Severity::Warning,
                                code: "ipv4-unroutable",
                                host: Some(d.hosts[e.host].name.clone()),
                                message,
                            });
                        }
                        r.flows6.push(f);
                        r.paths6.push(p6);
                    }
                    None => return Err(route_error(d, e)),
                },
            }
        } else if v6 {
            r.paths6
                .push(route::path6(d, &f).map_err(|e| route_error(d, e))?);
            r.flows6.push(f);
        } else {
            r.left_out.push(f);
        }
    }
    Ok(r)
}

/// A route that cannot be, pointed at the host it concerns.
fn route_error(d: &Deployment, e: RouteError) -> Error {
    let span = d.hosts[e.host].span;
    InputError::new(
        &d.source_name,
        &d.source_text,
        span.start..span.end,
        e.message,
        "this host",
    )
    .with_help("check `gateway`, the interfaces' networks, and the routers' masquerade")
    .into()
}

impl Plan {
    pub fn build(d: Deployment) -> Result<Plan> {
        if !d.hosts.iter().any(|h| h.roles.client || h.roles.recover) {
            // Rules that only keep management open would look like a plan for
            // Amanda and do nothing for it: almost always a missing role. (No
            // flows alone is fine: with auth "local" everything stays on one host.)
            return Err(InputError::new(
                &d.source_name,
                &d.source_text,
                0..0,
                "no host is backed up or recovers (no role \"client\" or \"recover\"), so there is no Amanda traffic to write rules for",
                "no flows",
            )
            .with_help("give one host roles = [\"server\"] and the hosts it backs up roles = [\"client\"] (or a disklist with amanda-config)")
            .into());
        }
        let index = AddrIndex::new(&d);
        let Routed {
            flows,
            paths,
            flows6,
            paths6,
            left_out,
            lints: route_lints,
        } = route_all(&d, &index)?;
        let management = route::management(&d, &index);
        let policies = policy::compile(&d, &index, &flows, &paths, (&flows6, &paths6), &management);
        let mut lints = lint::lint(&d);
        lints.extend(route_lints);
        Ok(Plan {
            deployment: d,
            flows,
            paths,
            flows6,
            paths6,
            left_out,
            policies,
            lints,
            index,
            management,
        })
    }

    /// The IPv6-only flow behind `Rule6::flows`' index `i`, if it is one.
    pub fn flow6(&self, i: usize) -> Option<(&Flow, &Path6)> {
        let k = i.checked_sub(self.flows.len())?;
        Some((self.flows6.get(k)?, self.paths6.get(k)?))
    }

    /// The comment lines on top of every file. The topology's path is the
    /// admin's (any bytes but NUL, newlines included): it goes through
    /// `name::comment` so it stays one comment line; host names are validated.
    fn header(&self, host: &str, how: &str) -> Vec<String> {
        vec![
            format!(
                "Generated by amwall {} from {} for host {host}.",
                env!("CARGO_PKG_VERSION"),
                crate::name::comment(&self.deployment.source_name)
            ),
            "Do not edit: change the topology and run `amwall plan` again.".into(),
            how.to_string(),
        ]
    }

    pub fn iptables(&self, hp: &HostPolicy) -> String {
        let name = &self.deployment.hosts[hp.host].name;
        render::iptables_text(
            hp,
            &self.header(
                name,
                &format!(
                    "Load: iptables-restore < {} (or install as /etc/iptables/rules.v4)",
                    sh(&format!("{name}.rules"))
                ),
            ),
        )
    }

    /// `HOST.rules6`: the IPv6 deny-incoming policy for ip6tables-restore.
    pub fn ip6tables(&self, hp: &HostPolicy) -> String {
        let name = &self.deployment.hosts[hp.host].name;
        render::ip6tables_text(
            hp,
            &self.header(
                name,
                &format!(
                    "Load: ip6tables-restore < {} (or install as /etc/iptables/rules.v6)",
                    sh(&format!("{name}.rules6"))
                ),
            ),
        )
    }

    /// Merged mode's chains (`HOST.merged.rules`): load them only through
    /// `HOST.merged.sh` or with `--noflush`, since a plain `iptables-restore`
    /// of this file would empty every chain of the tables it names.
    pub fn iptables_merged(&self, hp: &HostPolicy) -> String {
        let name = &self.deployment.hosts[hp.host].name;
        render::iptables_merged_text(
            hp,
            &self.header(
                name,
                &format!(
                    "Load: sh {} (it runs iptables-restore --noflush on this file and adds one jump per chain); never plain iptables-restore, which would empty the tables' other chains",
                    sh(&format!("{name}.merged.sh"))
                ),
            ),
        )
    }

    /// The load script of merged mode: sets, then amwall's chains beside the
    /// host's (`--noflush`), then the jumps into them, each added only if
    /// missing. Running it again replaces amwall's chains and nothing else.
    pub fn iptables_merged_script(&self, hp: &HostPolicy) -> String {
        use std::fmt::Write;
        let name = &self.deployment.hosts[hp.host].name;
        let mut o = String::from("#!/bin/sh\n");
        for h in self.header(
            name,
            "Adds amwall's chains (AMWALL-*) beside this host's own iptables rules; other chains and their rules are not touched.",
        ) {
            writeln!(o, "# {}", crate::name::comment(&h)).unwrap();
        }
        o.push_str("set -e\ncd \"$(dirname \"$0\")\"\n");
        if self.ipset(hp).is_some() {
            writeln!(o, "ipset restore < {}", sh(&format!("{name}.ipset"))).unwrap();
        }
        writeln!(
            o,
            "iptables-restore -w --noflush < {}",
            sh(&format!("{name}.merged.rules"))
        )
        .unwrap();
        for c in render::merged_entry_commands(&render::iptables_merged(hp).1) {
            writeln!(o, "{c}").unwrap();
        }
        if let Some((_, jumps)) = render::ip6tables_merged(hp) {
            writeln!(
                o,
                "ip6tables-restore -w --noflush < {}",
                sh(&format!("{name}.merged.rules6"))
            )
            .unwrap();
            for c in render::merged_entry_commands6(&jumps) {
                writeln!(o, "{c}").unwrap();
            }
        }
        o
    }

    /// Merged mode's IPv6 chains (`HOST.merged.rules6`), where Amanda runs
    /// over IPv6 to or through this host; loaded by `HOST.merged.sh` with
    /// `--noflush`, like `HOST.merged.rules`.
    pub fn ip6tables_merged(&self, hp: &HostPolicy) -> Option<String> {
        let name = &self.deployment.hosts[hp.host].name;
        render::ip6tables_merged_text(
            hp,
            &self.header(
                name,
                &format!(
                    "Load: sh {} (it runs ip6tables-restore --noflush on this file and adds one jump per chain); never plain ip6tables-restore, which would empty the filter table's other chains",
                    sh(&format!("{name}.merged.sh"))
                ),
            ),
        )
    }

    /// `HOST.ufw.sh`: ufw commands for a host whose firewall ufw manages;
    /// for a host with NAT or the helper it first installs
    /// `HOST.ufw-before.init` as ufw's before.init, and reloads ufw at the end.
    pub fn ufw_script(&self, hp: &HostPolicy) -> String {
        use std::fmt::Write;
        let name = &self.deployment.hosts[hp.host].name;
        let mut o = String::from("#!/bin/sh\n");
        for h in self.header(
            name,
            "Load: sh HOST.ufw.sh as root on a host where ufw is enabled; it only adds rules (ufw skips one it already has), and leaves every other ufw rule, the default policies and ssh access as they are.",
        ) {
            writeln!(o, "# {}", crate::name::comment(&h.replace("HOST", name))).unwrap();
        }
        o.push_str("set -e\n");
        if render::ufw_needs_ipv6(hp) {
            o.push_str(
                "# Amanda speaks IPv6 here: ufw adds the IPv6 rules below only with IPV6=yes\n\
                 # in /etc/default/ufw (Debian's default); without it, it refuses them.\n\
                 if ! grep -qx 'IPV6=yes' /etc/default/ufw; then\n\
                 \x20   echo \"/etc/default/ufw does not say IPV6=yes: set it and run ufw reload, then run this again; nothing was changed\" >&2\n\
                 \x20   exit 1\n\
                 fi\n",
            );
        }
        let init = render::ufw_before_init(hp).is_some();
        if init {
            let file = sh(&format!("{name}.ufw-before.init"));
            write!(
                o,
                "# NAT and the amanda helper: ufw has no command for them, so they go into\n\
                 # ufw's before.init hook, which ufw runs with start and stop around its rules.\n\
                 # Replaced only when it is ufw's own file (as the package ships it in\n\
                 # /usr/share/ufw) or amwall's.\n\
                 cd \"$(dirname \"$0\")\"\n\
                 f=/etc/ufw/before.init\n\
                 if [ -e \"$f\" ] && ! grep -q '{marker}' \"$f\" && ! cmp -s \"$f\" /usr/share/ufw/before.init; then\n\
                 \x20   echo \"$f is not ufw's own nor amwall's: add what {file} does to it by hand; nothing was changed\" >&2\n\
                 \x20   exit 1\n\
                 fi\n\
                 install -m 0755 {file} \"$f.amwall-new\"\n\
                 mv -f \"$f.amwall-new\" \"$f\"\n",
                marker = render::UFW_MARKER,
            )
            .unwrap();
        }
        let cmds = render::ufw_commands(hp);
        if cmds.is_empty() {
            o.push_str(
                "# Nothing to open: everything this host needs is a reply or stays on lo.\n",
            );
        }
        for c in cmds {
            writeln!(o, "{c}").unwrap();
        }
        if init {
            o.push_str("# ufw runs before.init stop, then start: amwall's nat and raw chains are (re)loaded.\nufw reload\n");
        }
        o
    }

    /// `HOST.ufw-before.init`: ufw's before.init hook with amwall's nat and
    /// raw chains (`render::ufw_before_init`): `start` loads them beside
    /// ufw's (`--noflush`) and adds each jump once; `stop` takes the jumps
    /// and chains out again, so ufw's reload and disable leave nothing behind.
    pub fn ufw_before_init(&self, hp: &HostPolicy) -> Option<String> {
        use std::fmt::Write;
        let (_, jumps) = render::ufw_before_init(hp)?;
        let name = &self.deployment.hosts[hp.host].name;
        let header = self.header(
            name,
            "Install as /etc/ufw/before.init (HOST.ufw.sh does): ufw runs it with start before loading its rules and with stop after removing them.",
        );
        let rules = render::ufw_before_init_text(hp, &[])?;
        let mut o = String::from("#!/bin/sh\n");
        for h in &header {
            writeln!(o, "# {}", crate::name::comment(&h.replace("HOST", name))).unwrap();
        }
        writeln!(o, "# {}", render::UFW_MARKER).unwrap();
        o.push_str(
            "set -e\ncase \"$1\" in\nstart)\n    iptables-restore -w --noflush <<'AMWALL_RULES'\n",
        );
        o.push_str(&rules);
        o.push_str("AMWALL_RULES\n");
        for c in render::merged_entry_commands(&jumps) {
            writeln!(o, "    {c}").unwrap();
        }
        o.push_str("    ;;\nstop|flush-all)\n");
        for c in render::merged_exit_commands(&jumps) {
            writeln!(o, "    {c}").unwrap();
        }
        o.push_str("    ;;\nstatus)\n");
        for j in &jumps {
            writeln!(
                o,
                "    iptables -w -t {} -S {} 2>/dev/null || :",
                j.table, j.chain
            )
            .unwrap();
        }
        o.push_str("    ;;\n*)\n    echo \"usage: $0 {start|stop|flush-all|status}\" >&2\n    exit 1\n    ;;\nesac\n");
        Some(o)
    }

    /// The firewalld files of a host: each configuration object as
    /// `HOST.firewalld-KIND-NAME.xml`, the drop-only table for the source
    /// ports as `HOST.firewalld-sport.nft`, and `HOST.firewalld.sh`, which
    /// installs them, has firewalld check them, and reloads.
    /// What firewalld gets for `hp`, as `plan --firewalld` writes it and
    /// `apply --backend firewalld` installs it.
    pub fn firewalld_install(&self, hp: &HostPolicy) -> FirewalldInstall {
        let name = &self.deployment.hosts[hp.host].name;
        let load = format!(
            "Load: sh {} (installs amwall's firewalld files, checks them with firewall-offline-cmd, reloads firewalld)",
            sh(&format!("{name}.firewalld.sh"))
        );
        let objects = render::firewalld::config(hp, &self.header(name, &load))
            .into_iter()
            .map(|o| (format!("{}/{}.xml", o.kind.dir(), o.name), o.xml))
            .collect();
        let table = render::firewalld::SPORT_TABLE;
        let tables = if render::firewalld::sport_has_ip6(hp) {
            format!("table ip {table} and table ip6 {table}, which firewalld's reload leaves alone")
        } else {
            format!("table ip {table}, which firewalld's reload leaves alone")
        };
        let sport = render::firewalld_sport_text(
            hp,
            &self.header(
                name,
                &format!("Loaded by {name}.firewalld.sh; replaces only {tables}. Load it at boot too (include it from the nftables service's configuration)."),
            ),
        );
        FirewalldInstall { objects, sport }
    }

    pub fn firewalld(&self, hp: &HostPolicy) -> Vec<(String, String)> {
        use std::fmt::Write;
        let name = &self.deployment.hosts[hp.host].name;
        let install = self.firewalld_install(hp);
        let mut files = Vec::new();
        // (file here, path under the configuration directory)
        let mut installs = Vec::new();
        for (rel, xml) in &install.objects {
            let (dir, obj) = rel.split_once('/').expect("DIR/NAME.xml");
            let kind = render::firewalld::Kind::from_dir(dir).expect("a kind's dir");
            let file = format!("{name}.firewalld-{}-{obj}", kind.word());
            installs.push((file.clone(), rel.clone()));
            files.push((file, xml.clone()));
        }
        let sport_file = format!("{name}.firewalld-sport.nft");
        let table = render::firewalld::SPORT_TABLE;
        let sport = install.sport;
        let has_sport = sport.is_some();
        if let Some(text) = sport {
            files.push((sport_file.clone(), text));
        }
        let mut o = String::from("#!/bin/sh\n");
        for h in self.header(
            name,
            "Installs amwall's services, ipsets and policies into firewalld's configuration (FIREWALLD_CONFIG, default /etc/firewalld) beside the admin's zones and files, which it never changes; replaces the files an earlier amwall plan installed; restores them if firewalld refuses the new ones.",
        ) {
            writeln!(o, "# {}", crate::name::comment(&h)).unwrap();
        }
        let marker = render::firewalld::MARKER;
        let targets: Vec<String> = installs.iter().map(|(_, t)| sh(t)).collect();
        writeln!(o, "set -eu\ncd \"$(dirname \"$0\")\"\nconf=${{FIREWALLD_CONFIG:-/etc/firewalld}}\nold=$(mktemp -d)\ntrap 'rm -rf \"$old\"' EXIT").unwrap();
        writeln!(
            o,
            "# A file of the same name that amwall did not write stops the run."
        )
        .unwrap();
        writeln!(o, "for f in {}; do", targets.join(" ")).unwrap();
        writeln!(
            o,
            "  if [ -e \"$conf/$f\" ] && ! grep -q '{marker}' \"$conf/$f\"; then"
        )
        .unwrap();
        writeln!(o, "    echo \"$0: $conf/$f exists and amwall did not write it; nothing was changed\" >&2; exit 1").unwrap();
        writeln!(o, "  fi\ndone").unwrap();
        writeln!(
            o,
            "# amwall's files from an earlier plan go aside, to come back if the check fails."
        )
        .unwrap();
        writeln!(o, "for d in services ipsets policies; do\n  mkdir -p \"$old/$d\" \"$conf/$d\"\n  for f in \"$conf/$d\"/*.xml; do\n    if [ -e \"$f\" ] && grep -q '{marker}' \"$f\"; then mv \"$f\" \"$old/$d/\"; fi\n  done\ndone").unwrap();
        writeln!(o, "undo() {{").unwrap();
        for t in &targets {
            writeln!(o, "  rm -f \"$conf\"/{t}").unwrap();
        }
        writeln!(o, "  for d in services ipsets policies; do\n    for f in \"$old/$d\"/*.xml; do if [ -e \"$f\" ]; then mv \"$f\" \"$conf/$d/\"; fi; done\n  done\n}}").unwrap();
        for (file, t) in &installs {
            writeln!(
                o,
                "cp {} \"$conf\"/{}\nchmod 0644 \"$conf\"/{}",
                sh(file),
                sh(t),
                sh(t)
            )
            .unwrap();
        }
        writeln!(o, "# firewalld's own check; a warning counts as an error.").unwrap();
        writeln!(o, "if ! out=$(firewall-offline-cmd --system-config \"$conf\" --check-config 2>&1) || printf '%s\\n' \"$out\" | grep -qi warning; then").unwrap();
        writeln!(o, "  undo\n  printf '%s\\n' \"$out\" >&2\n  echo \"$0: firewalld refused the new files; the previous ones are back\" >&2\n  exit 1\nfi").unwrap();
        writeln!(o, "if firewall-cmd --state >/dev/null 2>&1; then\n  if ! firewall-cmd --reload; then\n    undo\n    firewall-cmd --reload || true\n    echo \"$0: firewalld failed to load the new files; the previous ones are back\" >&2\n    exit 1\n  fi\nelse\n  echo \"$0: firewalld is not running; it loads the files when it starts\" >&2\nfi").unwrap();
        if has_sport {
            writeln!(o, "nft -f {}", sh(&sport_file)).unwrap();
        } else {
            writeln!(o, "nft delete table ip {table} 2>/dev/null || true").unwrap();
        }
        // An IPv6 table an earlier plan loaded goes when this one has none.
        let sport6 = render::firewalld::sport_has_ip6(hp);
        if self.deployment.amanda_speaks_ipv6() && !sport6 {
            writeln!(o, "nft delete table ip6 {table} 2>/dev/null || true").unwrap();
        }
        files.push((format!("{name}.firewalld.sh"), o));
        files
    }

    /// The ipsets `HOST.rules` matches, to load first (`ipset restore < HOST.ipset`).
    pub fn ipset(&self, hp: &HostPolicy) -> Option<String> {
        let name = &self.deployment.hosts[hp.host].name;
        let before = if render::ipset6_needed(hp) {
            format!("{name}.rules and {name}.rules6")
        } else {
            format!("{name}.rules")
        };
        render::ipset_text(
            hp,
            &self.header(name, &format!("Load before {before}: ipset restore < {} (netfilter-persistent loads it at boot with ipset-persistent)", sh(&format!("{name}.ipset")))),
        )
    }

    pub fn nft(&self, hp: &HostPolicy) -> String {
        let name = &self.deployment.hosts[hp.host].name;
        render::nft_text(hp, &self.header(name, &format!("Load: nft -f {} (or include it from /etc/nftables.conf); replaces only table ip amwall and table ip6 amwall", sh(&format!("{name}.nft")))))
    }
}

/// One host's firewalld objects and source-port table.
#[derive(Debug, Clone)]
pub struct FirewalldInstall {
    /// `DIR/NAME.xml` under firewalld's configuration directory, and the file.
    pub objects: Vec<(String, String)>,
    /// `table ip amwall_sport` (nft), when some rule restricts source ports.
    pub sport: Option<String>,
}

/// A file name as the shell word the "Load:" hints print.
fn sh(file: &str) -> String {
    crate::name::shell_word(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_str;

    const UPSTREAM: &str = include_str!("../tests/fixtures/v6only/upstream.toml");

    /// C6Host given an IPv4 address on a network nobody routes to: an
    /// IPv6-speaking build takes IPv6 (with `ipv4-unroutable` saying so);
    /// an IPv4-only Amanda cannot, and the route error stands.
    #[test]
    fn no_ipv4_route_between_ipv4_hosts_goes_over_ipv6_where_amanda_can() {
        let island = UPSTREAM
            .replace(
                r#"{ name = "eth0", network = "v6lan", address6 = "2001:db8:6::5" }"#,
                r#"{ name = "eth0", network = "v6lan", address6 = "2001:db8:6::5" }, { name = "eth1", network = "island", address = "198.51.100.5" }"#,
            )
            .replace(
                "[[network]]\nname = \"v6lan\"",
                "[[network]]\nname = \"island\"\ncidr = \"198.51.100.0/24\"\n\n[[network]]\nname = \"v6lan\"",
            );
        assert_ne!(island, UPSTREAM);
        let plan = Plan::build(load_str("t.toml", island.clone()).unwrap()).unwrap();
        let c6 = plan.deployment.host_by_name("c6host").unwrap();
        assert!(plan.deployment.has_ipv4(c6));
        assert_eq!(plan.flows6.len(), 4, "{:?}", plan.flows6);
        assert!(plan.lints.iter().any(|l| l.code == "ipv4-unroutable"));
        let debian = island.replace("build = \"upstream\"", "build = \"debian\"");
        let Err(Error::Input(e)) = Plan::build(load_str("t.toml", debian).unwrap()) else {
            panic!("an IPv4-only Amanda has no way to c6host")
        };
        assert!(e.message.contains("no route"), "{}", e.message);
        // Without the island, no such warning: C6Host simply has no IPv4.
        let plan = Plan::build(load_str("t.toml", UPSTREAM.to_string()).unwrap()).unwrap();
        assert!(!plan.lints.iter().any(|l| l.code == "ipv4-unroutable"));
    }
}
