//! SUMMARY.md: per host the ports it must open and why, then every flow with the
//! hops it crosses, then what Amanda's own configuration must say for NAT.

use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::amanda::settings::{Build, ClientPort};
use crate::flows::{control_port, Operation};
use crate::model::{Deployment, HostId};
use crate::netfilter::Backend;
use crate::plan::Plan;
use crate::policy::{Addrs, HostPolicy, Place, PolicyRule};
use crate::render::{BackendSet, IptablesMode};
use crate::view::{self, FlowView};

/// "fwhost (192.168.2.1)" or the bare address when no host owns it.
fn who(plan: &Plan, a: Ipv4Addr) -> String {
    match plan.index.owner(a) {
        Some(h) => format!("{} ({a})", plan.deployment.hosts[h].name),
        None => a.to_string(),
    }
}

fn ports(v: &[crate::ports::PortRange]) -> String {
    v.iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn src_text(plan: &Plan, hp: &HostPolicy, r: &PolicyRule) -> String {
    let d = &plan.deployment;
    match &r.src {
        Addrs::Any => "any".into(),
        Addrs::Net(n) if n.prefix_len() == 32 => who(plan, n.addr()),
        Addrs::Net(n) => d
            .networks
            .iter()
            .find(|x| x.cidr == Some(*n))
            .map_or_else(|| n.to_string(), |x| format!("{} ({n})", x.name)),
        Addrs::Group(g) => {
            let g = &hp.groups[*g];
            format!("set `{}`: {}", g.name, g.labels.join(", "))
        }
    }
}

fn roles(d: &Deployment, h: HostId) -> String {
    let r = d.hosts[h].roles;
    let mut v = Vec::new();
    for (on, n) in [
        (r.server, "server"),
        (r.client, "client"),
        (r.recover, "amrecover"),
        (r.router, "router"),
    ] {
        if on {
            v.push(n);
        }
    }
    if v.is_empty() {
        "no Amanda role".into()
    } else {
        v.join(", ")
    }
}

fn flow_refs(v: &[usize]) -> String {
    v.iter()
        .map(|f| format!("#{}", f + 1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which rule files the summary describes.
#[derive(Debug, Clone, Copy)]
pub struct Files {
    /// iptables files, and how they meet the host's rules.
    pub iptables: Option<IptablesMode>,
    pub nft: bool,
    /// `--firewalld`'s and `--ufw`'s files are written too.
    pub firewalld: bool,
    pub ufw: bool,
}

impl Files {
    pub fn new(backend: BackendSet, mode: IptablesMode) -> Files {
        Files {
            iptables: backend.contains(Backend::Iptables).then_some(mode),
            nft: backend.contains(Backend::Nft),
            firewalld: false,
            ufw: false,
        }
    }
}

/// The whole SUMMARY.md. With `only`, the per-host sections cover that host.
pub fn summary(plan: &Plan, only: Option<&str>, files: Files) -> String {
    let mut views = view::all(plan);
    views.extend(view::all6(plan));
    let mut o = String::new();
    header(plan, files, &mut o);
    warnings(plan, &mut o);
    required_ports(plan, only, &mut o);
    flows(&views, &mut o);
    left_out(plan, &mut o);
    let recover_left_out = plan
        .left_out
        .iter()
        .any(|f| matches!(f.operation, Operation::Recover | Operation::LegacyRecover));
    recovery(&views, recover_left_out, &mut o);
    amanda_config(plan, &mut o);
    o
}

/// The flows `plan` did not open because a host has no IPv4 and Amanda
/// cannot speak IPv6 (the `no-ipv4` warning says why); nothing when none.
fn left_out(plan: &Plan, o: &mut String) {
    if plan.left_out.is_empty() {
        return;
    }
    let d = &plan.deployment;
    writeln!(
        o,
        "## Left out
"
    )
    .unwrap();
    writeln!(o, "Amanda here does not speak IPv6, so it cannot reach a host without an IPv4 address: these flows are not in the plan and nothing is opened for them on any host (see the `no-ipv4` warnings).
").unwrap();
    for f in &plan.left_out {
        writeln!(
            o,
            "- {} {} → {} {} {} ({})",
            f.operation.name(),
            d.hosts[f.initiator].name,
            d.hosts[f.responder].name,
            f.proto,
            f.dport,
            f.stream
        )
        .unwrap();
    }
    writeln!(o).unwrap();
}

/// The title, the Amanda settings the flows follow, what every host's
/// ruleset does besides, and where the Amanda side was read from.
/// The IPv6 sentence: the same deny-incoming shape (`policy::Ipv6Policy`),
/// and whether the admins can still come in over IPv6.
fn ipv6_text(d: &Deployment) -> String {
    let m = &d.management;
    let mgmt6 = if !m.enabled {
        String::new()
    } else if m.anywhere6 {
        format!(", and {}/{} from anywhere (management)", m.proto, m.port)
    } else if m.from6.is_empty() {
        format!("; management ({}/{}) is **not** open over IPv6, since `[management] from` names no IPv6 prefix: admins who reach the hosts over IPv6 give their network a `cidr6` or add an IPv6 prefix to `from`", m.proto, m.port)
    } else {
        let from: Vec<String> = m.from6.iter().map(|p| p.to_string()).collect();
        format!(
            ", and {}/{} from {} (management)",
            m.proto,
            m.port,
            from.join(", ")
        )
    };
    let amanda6 = if d.amanda_speaks_ipv6() {
        "An Amanda built from upstream source speaks IPv6 where the build host had it, so each of its flows between hosts with IPv6 addresses on dual-stack networks is opened over IPv6 too (rows marked IPv6 below): the same ports, the hosts' own IPv6 addresses, no NAT66 (a port-forwarded IPv4 flow reaches the responder's own address), and no conntrack helper (what it would expect is opened as a range)."
    } else {
        "No Amanda flow is opened over IPv6: Debian's Amanda is built `--without-ipv6`."
    };
    format!("IPv6 (`HOST.rules6` for ip6tables-restore, `table ip6 amwall` in `HOST.nft`): INPUT and FORWARD drop the same way, after `lo` and ESTABLISHED,RELATED; accepted are only the ICMPv6 that IPv6 needs to work (RFC 4890: errors, echo, neighbour and router discovery, multicast listener messages) and DHCPv6 replies to the link-local address{mgmt6}. {amanda6} `amwall apply` loads both families and rolls both back.")
}

/// The paragraphs on firewalld's and ufw's files, when `plan` writes them.
fn managers(files: Files, v6_flows: bool, o: &mut String) {
    if files.firewalld {
        writeln!(
            o,
            "firewalld (`sh HOST.firewalld.sh` installs the `HOST.firewalld-*.xml` files, checks them with `firewall-offline-cmd --check-config` and reloads): a service with Amanda's ports (and the `amanda` helper where the plan uses it), ipsets for large groups, and the policies `amwall-input` and `amwall-forward` at priority -1, before the zones, with one rich rule per source and port range, plus port forwards and masquerade on routers; the zones, their services and the admin's rich rules stay. firewalld cannot tie a source port to a destination port, so `HOST.firewalld-sport.nft` (`table ip amwall_sport`) only drops Amanda's ports from the wrong source ports (drops add up across tables); load it at boot beside firewalld. `amwall apply --backend firewalld` loads them runtime first.\n"
        )
        .unwrap();
    }
    if files.ufw {
        writeln!(
            o,
            "ufw (`sh HOST.ufw.sh` where ufw is enabled): `ufw allow` and `ufw route allow` for each opening, source ports included; ufw's default policies, its other rules and ssh access stay, and a rule ufw has is skipped. ufw has no command for NAT or a conntrack helper: hosts that need them also get `HOST.ufw-before.init`, which the script installs as ufw's before.init hook (only over ufw's own or amwall's) so amwall's nat and raw chains come and go with ufw's rules. `amwall apply --backend ufw` runs the same, and writes ufw's files for good only once confirmed.\n"
        )
        .unwrap();
    }

    if v6_flows && (files.firewalld || files.ufw || files.iptables == Some(IptablesMode::Merged)) {
        let mut how = Vec::new();
        if files.iptables == Some(IptablesMode::Merged) {
            how.push("merged iptables in `HOST.merged.rules6` (ip6tables chains `AMWALL-*`, loaded by `HOST.merged.sh`)");
        }
        if files.firewalld {
            how.push("firewalld with rich rules of family ipv6 in the same policies (a rich rule with an address names one family) and `table ip6 amwall_sport` beside `table ip amwall_sport` for the source ports");
        }
        if files.ufw {
            how.push("ufw with the same `ufw allow`/`ufw route allow` commands for the IPv6 addresses, which need `IPV6=yes` in /etc/default/ufw (Debian's default; `HOST.ufw.sh` and `amwall apply` refuse without it)");
        }
        writeln!(
            o,
            "**IPv6 and the other managers:** this Amanda speaks IPv6, so the managers' files open its IPv6 rows below too: {}. `amwall apply` loads and rolls back both families with each of them.\n",
            how.join("; "),
        )
        .unwrap();
    }
}

fn header(plan: &Plan, files: Files, o: &mut String) {
    let d = &plan.deployment;
    let a = &d.amanda;
    writeln!(
        o,
        "# amwall plan for `{}`\n",
        crate::name::comment(&d.source_name)
    )
    .unwrap();
    writeln!(
        o,
        "The picture: [topology.svg](topology.svg) (hosts, networks, routers, every flow as a numbered arrow).\n"
    )
    .unwrap();
    let build = match d.build {
        Build::Debian => "Debian's Amanda 3.5.1 packages",
        Build::Upstream => "upstream Amanda built without port options",
    };
    let cp = match &a.client_port {
        Some(ClientPort::Number(n)) => n.to_string(),
        Some(ClientPort::Service(s)) => format!("service `{s}`"),
        None => format!("default ({})", control_port(a.auth, &None)),
    };
    writeln!(
        o,
        "Amanda: auth **{}**, client-port {cp}, reserved-udp-port {}, reserved-tcp-port {}, unreserved-tcp-port {}, index {}, conntrack helper {}, legacy recovery {} (defaults of {build}).",
        a.auth,
        a.reserved_udp_port,
        a.reserved_tcp_port,
        a.unreserved_tcp_port,
        if a.index { "yes" } else { "no" },
        if a.conntrack_helper { "on" } else { "off" },
        if a.legacy_recover { "on" } else { "off" },
    )
    .unwrap();
    for (h, over) in d.overrides.iter().enumerate() {
        if !over.is_empty() {
            let s = &d.hosts[h].amanda;
            writeln!(o, "- `{}` overrides {}: auth {}, reserved-udp-port {}, reserved-tcp-port {}, unreserved-tcp-port {}.", d.hosts[h].name, over.join(", "), s.auth, s.reserved_udp_port, s.reserved_tcp_port, s.unreserved_tcp_port).unwrap();
        }
    }
    writeln!(o).unwrap();
    let mgmt = if !d.management.enabled {
        "no management service is kept open".to_string()
    } else if d.management.from_names.is_empty() {
        format!(
            "{}/{} stays open from anywhere (management)",
            d.management.proto, d.management.port
        )
    } else {
        format!(
            "{}/{} stays open from {} (management)",
            d.management.proto,
            d.management.port,
            d.management.from_names.join(", ")
        )
    };
    let v6 = ipv6_text(d);
    let v6_flows = plan.policies.iter().any(|hp| !hp.v6.rules.is_empty());
    if files.iptables == Some(IptablesMode::Merged) {
        writeln!(
            o,
            "Every host (iptables, merged: `HOST.merged.rules`, loaded by `sh HOST.merged.sh`): amwall's rules live in chains of their own, `AMWALL-INPUT` (and on routers `AMWALL-FORWARD`, with `AMWALL-PREROUTING`/`AMWALL-POSTROUTING` in nat and raw where NAT or the helper need them), each entered by one jump inserted at the top of its built-in chain. They accept ESTABLISHED,RELATED, `lo` and the openings listed below, and return everything else to the host's own rules, which keep deciding it: no policy is changed, nothing is dropped, and management access is left to the host's rules. Running the script again replaces only amwall's chains and never adds a second jump; Docker's, fail2ban's and the admin's chains are not touched. A ban that must stop a connection amwall accepts has to sit before amwall's jump (fail2ban inserts its jumps at the top when it starts). {}\n",
            if v6_flows {
                "Where Amanda's flows run over IPv6, `HOST.merged.rules6` holds their openings in ip6tables chains `AMWALL-INPUT` (and on routers `AMWALL-FORWARD`) of the same kind, loaded by the same script (`ip6tables-restore --noflush`, one jump each); ICMPv6, DHCPv6 and management over IPv6 stay as the host's own rules have them."
            } else {
                "Merged mode writes no ip6tables rules: IPv6 stays as the host's own rules have it."
            }
        )
        .unwrap();
    } else {
        writeln!(
            o,
            "Every host: INPUT and FORWARD drop what is not listed below; OUTPUT accepts everything; `lo` and ESTABLISHED,RELATED are accepted first; {mgmt}. {v6}\n"
        )
        .unwrap();
    }
    if files.nft {
        writeln!(
            o,
            "nft (`HOST.nft`): loading replaces only `table ip amwall` and `table ip6 amwall`; other tables stay as they are. nftables runs every base chain of a hook, so a packet this table accepts is still dropped by a drop or reject in another table (firewalld's, an admin's `inet filter`), and this table's drop policy drops what another table accepts: on a host where something else manages nftables, that manager must accept Amanda's flows too (`amwall check` on `nft list ruleset` names the rule that blocks).\n"
        )
        .unwrap();
    }
    let declared: Vec<String> = d
        .hosts
        .iter()
        .filter_map(|h| {
            let how = match h.firewall? {
                crate::model::Manager::Amwall => "amwall alone: `HOST.rules` or `HOST.nft`",
                crate::model::Manager::Shared => {
                    "shared: iptables merged (`sh HOST.merged.sh`) or `HOST.nft`"
                }
                crate::model::Manager::Firewalld => "firewalld: `sh HOST.firewalld.sh` only",
                crate::model::Manager::Ufw => {
                    "ufw: `sh HOST.ufw.sh` or `amwall apply --backend ufw` only"
                }
            };
            Some(format!("`{}` ({how})", h.name))
        })
        .collect();
    if !declared.is_empty() {
        writeln!(
            o,
            "Hosts whose firewall manager the topology names (`firewall = ...`) get only the files that load there without removing another manager's rules, whatever the options say: {}. `amwall apply` without `--backend` refuses when the host disagrees.\n",
            declared.join(", ")
        )
        .unwrap();
    }
    managers(files, v6_flows, o);
    let prov = &d.provenance;
    if !prov.files.is_empty() {
        writeln!(o, "The line above is the topology's default; each client's auth, index and client-port come from its disklist entries, the server's ranges from amanda.conf, and a host's ranges from its amanda-client.conf where given (the flows show what each host uses).").unwrap();
        writeln!(
            o,
            "Amanda side read from: {}.",
            prov.files
                .iter()
                .map(|f| format!("`{}`", crate::name::comment(f)))
                .collect::<Vec<_>>()
                .join(", ")
        )
        .unwrap();
        if !prov.added_hosts.is_empty() {
            writeln!(
                o,
                "Hosts only the disklist names (addresses from the hosts file): {}.",
                prov.added_hosts.join(", ")
            )
            .unwrap();
        }
        writeln!(o).unwrap();
    }
}

fn warnings(plan: &Plan, o: &mut String) {
    let prov = &plan.deployment.provenance;
    if !plan.lints.is_empty() || !prov.warnings.is_empty() {
        writeln!(o, "## Warnings\n").unwrap();
        for (code, w) in &prov.warnings {
            // Paths and words from the admin's files: one list item each.
            writeln!(o, "- **{code}** {}", crate::name::comment(w)).unwrap();
        }
        for l in &plan.lints {
            let host = l
                .host
                .as_deref()
                .map(|h| format!("`{h}`: "))
                .unwrap_or_default();
            writeln!(o, "- **{}** {host}{}", l.code, l.message).unwrap();
        }
        writeln!(o).unwrap();
    }
}

/// Per host: the openings it needs, each with the flows it serves.
fn required_ports(plan: &Plan, only: Option<&str>, o: &mut String) {
    let d = &plan.deployment;
    writeln!(o, "## Required ports\n").unwrap();
    for hp in &plan.policies {
        let host = &d.hosts[hp.host];
        if only.is_some_and(|n| n != host.name) {
            continue;
        }
        writeln!(o, "### {} ({})\n", host.name, roles(d, hp.host)).unwrap();
        let notes = management_notes(plan, hp);
        if !notes.is_empty() {
            writeln!(o, "{}\n", notes.join("\n")).unwrap();
        }
        let flow_rules: Vec<&PolicyRule> = hp
            .rules
            .iter()
            .filter(|r| r.label != "management")
            .collect();
        if flow_rules.is_empty() && hp.masquerade.is_empty() && hp.v6.rules.is_empty() {
            writeln!(o, "No Amanda opening: everything this host needs is a reply (ESTABLISHED) or stays on `lo`.\n").unwrap();
            continue;
        }
        writeln!(
            o,
            "| where | proto | dst port | src port | from | to | for flows |"
        )
        .unwrap();
        writeln!(o, "| --- | --- | --- | --- | --- | --- | --- |").unwrap();
        for r in &flow_rules {
            let (where_, to) = place_cells(plan, r);
            let sport = r.sport.map_or("any".to_string(), |s| s.to_string());
            writeln!(
                o,
                "| {where_} | {} | {} | {sport} | {} | {to} | {} |",
                r.proto,
                ports(&r.dports),
                src_text(plan, hp, r),
                flow_refs(&r.flows)
            )
            .unwrap();
        }
        for m in &hp.masquerade {
            writeln!(
                o,
                "| masquerade out {} | any | any | any | {} | (source rewritten to this host) | |",
                m.out_iface, m.from
            )
            .unwrap();
        }
        for r in &hp.v6.rules {
            let (where_, to) = rule6_cells(plan, r);
            let from: Vec<String> = r.srcs.iter().map(|a| who6(plan, *a)).collect();
            writeln!(
                o,
                "| {where_} | {} | {} | {} | {} | {to} | {} |",
                r.proto,
                ports(&r.dports),
                r.sport.map_or("any".to_string(), |s| s.to_string()),
                from.join(", "),
                flow_refs(&r.flows)
            )
            .unwrap();
        }
        writeln!(o).unwrap();
    }
}

/// An IPv6 address with the host it belongs to.
fn who6(plan: &Plan, a: std::net::Ipv6Addr) -> String {
    let d = &plan.deployment;
    d.hosts
        .iter()
        .find(|h| h.interfaces.iter().any(|i| i.address6 == Some(a)))
        .map_or_else(|| a.to_string(), |h| format!("{} ({a})", h.name))
}

/// An IPv6 rule's "where" and "to" cells.
fn rule6_cells(plan: &Plan, r: &crate::policy::Rule6) -> (String, String) {
    let on = |i: &Option<String>| i.as_deref().unwrap_or("*").to_string();
    match r.place {
        Place::Forward => (
            format!("IPv6 forward {}→{}", on(&r.in_iface), on(&r.out_iface)),
            r.dst.map_or("any".into(), |a| who6(plan, a)),
        ),
        _ => (
            format!(
                "IPv6 input{}",
                r.in_iface
                    .as_ref()
                    .map(|i| format!(" on {i}"))
                    .unwrap_or_default()
            ),
            "this host".to_string(),
        ),
    }
}

/// Management as routing and NAT make it arrive here (`route::management`):
/// worth saying where it is not simply the `from` prefixes.
fn management_notes(plan: &Plan, hp: &HostPolicy) -> Vec<String> {
    let d = &plan.deployment;
    let mut notes = Vec::new();
    for r in hp.rules.iter().filter(|r| r.label == "management") {
        let Addrs::Net(src) = r.src else { continue };
        match r.place {
            Place::Input if !d.management.from.contains(&src) => notes.push(format!(
                "- Management ({}/{}) from {} arrives here as {} (NAT on the way).",
                d.management.proto,
                d.management.port,
                d.management.from_names.join(", "),
                if src.prefix_len() == 32 {
                    src.addr().to_string()
                } else {
                    src.to_string()
                }
            )),
            Place::Forward => notes.push(format!(
                "- Forwards management ({}/{}) from {src} to {} ({}→{}).",
                d.management.proto,
                d.management.port,
                who(plan, r.dst.expect("forward rules name a destination")),
                r.in_iface.as_deref().unwrap_or("*"),
                r.out_iface.as_deref().unwrap_or("*"),
            )),
            _ => {}
        }
    }
    notes
}

/// A rule's "where" and "to" cells.
fn place_cells(plan: &Plan, r: &PolicyRule) -> (String, String) {
    match r.place {
        Place::Input => (
            format!(
                "input{}",
                r.in_iface
                    .as_ref()
                    .map(|i| format!(" on {i}"))
                    .unwrap_or_default()
            ),
            "this host".to_string(),
        ),
        Place::Forward => (
            format!(
                "forward {}→{}{}",
                r.in_iface.as_deref().unwrap_or("*"),
                r.out_iface.as_deref().unwrap_or("*"),
                if r.dnat_to.is_some() {
                    " (port-forwarded only)"
                } else {
                    ""
                }
            ),
            who(plan, r.dst.expect("forward rules name a destination")),
        ),
        Place::Dnat => (
            format!("port forward on {}", r.in_iface.as_deref().unwrap_or("*")),
            format!(
                "{} → {}",
                r.dst.expect("dnat has dst"),
                who(plan, r.dnat_to.expect("dnat has target"))
            ),
        ),
        Place::Helper => (
            format!(
                "helper (raw prerouting{})",
                r.in_iface
                    .as_ref()
                    .map(|i| format!(" on {i}"))
                    .unwrap_or_default()
            ),
            "assign `amanda` conntrack helper".to_string(),
        ),
    }
}

fn flows(views: &[FlowView], o: &mut String) {
    writeln!(o, "## Flows\n").unwrap();
    writeln!(
        o,
        "Initiator → responder; replies are ESTABLISHED and need no rule.\n"
    )
    .unwrap();
    writeln!(o, "| # | operation | auth | initiator → responder | proto | dst port | src port | stream | path | why |").unwrap();
    writeln!(
        o,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    .unwrap();
    for f in views {
        writeln!(
            o,
            "| {} | {} | {} | {} → {} | {} | {} | {} | {}{} | {} | {} |",
            f.id,
            f.operation.name(),
            f.auth,
            f.initiator,
            f.responder,
            f.proto,
            f.dport,
            f.sport_cell(),
            f.stream,
            f.helper_note(),
            f.path,
            f.why
        )
        .unwrap();
    }
    writeln!(o).unwrap();
}

/// Recovery: the recipe left it blank.
/// `left_out`: a recovering host's flows were left out (it has no IPv4).
fn recovery(views: &[FlowView], left_out: bool, o: &mut String) {
    writeln!(o, "## Recovery traffic\n").unwrap();
    let rec: Vec<&FlowView> = views
        .iter()
        .filter(|f| matches!(f.operation, Operation::Recover | Operation::LegacyRecover))
        .collect();
    if rec.is_empty() && left_out {
        writeln!(
            o,
            "No recovery flows in the plan: the recovering hosts' are left out (above).\n"
        )
        .unwrap();
        return;
    }
    if rec.is_empty() {
        writeln!(o, "No host has the role \"recover\": no recovery flows.\n").unwrap();
        return;
    }
    writeln!(o, "amrecover runs on the recovering host and connects to the server; nothing connects back to it, so recovering hosts need no inbound rule. The server (and every router on the way) must accept:\n").unwrap();
    for f in rec {
        let sport = f
            .sport
            .map_or("any source port".to_string(), |s| format!("source {s}"));
        writeln!(
            o,
            "- #{}: {} → {} {} {} ({sport}), {}: {}",
            f.id, f.initiator, f.responder, f.proto, f.dport, f.stream, f.path
        )
        .unwrap();
    }
    writeln!(o).unwrap();
}

/// What Amanda's own config must say, where NAT changes who sees whom.
fn amanda_config(plan: &Plan, o: &mut String) {
    let d = &plan.deployment;
    let mut notes: Vec<String> = Vec::new();
    for (f, p) in plan.flows.iter().zip(&plan.paths) {
        let last = p.last();
        let (ini, res) = (&d.hosts[f.initiator].name, &d.hosts[f.responder].name);
        if let Some(r) = p.routers().find(|h| h.snat_to.is_some()) {
            let n = format!(
                "`{res}` sees `{ini}` as {} (masqueraded by `{}`): `{res}`'s `.amandahosts` must name the host name that {} resolves to (for Debian's `backup` user: `NAME backup amdump`), and its amandad must accept requests from that address.",
                last.src, d.hosts[r.host].name, last.src
            );
            if f.operation == crate::flows::Operation::Check && !notes.contains(&n) {
                notes.push(n);
            }
        }
        if let Some(r) = p.routers().find(|h| h.dnat_to.is_some()) {
            let n = format!(
                "`{ini}` reaches `{res}` through `{}`'s port forward: `{ini}`'s amanda-client.conf must set `index-server` and `tape-server` to {} (`{}`'s public address); `{res}` sees `{ini}`'s real address {}, so its `.amandahosts` names `{ini}`: `{ini} root amindexd amidxtaped`.",
                d.hosts[r.host].name, p.target, d.hosts[r.host].name, last.src
            );
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
    }
    writeln!(o, "## What Amanda's configuration must say\n").unwrap();
    let no_nat = notes.is_empty();
    ssh_notes(plan, &mut notes);
    if no_nat {
        let gap = if notes.is_empty() { "" } else { "\n" };
        writeln!(
            o,
            "No NAT on any flow: hosts see each other's real addresses.{gap}"
        )
        .unwrap();
    }
    for n in notes {
        writeln!(o, "- {n}").unwrap();
    }
    if plan.deployment.hosts.iter().any(|h| {
        (h.roles.client && h.amanda.auth.is_udp())
            || (h.roles.recover && h.client_conf.auth.is_udp())
    }) {
        writeln!(o, "- bsd/bsdudp: each amandad host needs an inetd/xinetd UDP service for amandad (Debian only registers bsdtcp), and `client-port \"10080\"` numerically in the dumptypes and amanda-client.conf.").unwrap();
    }
}

/// ssh auth: what each end's OpenSSH must hold for the plan's paths, set up as
/// amanda-auth(7) says and proven by tests/amanda_ssh.rs. NAT decides the
/// `from=` of a key (the address the answerer sees) and, behind a port
/// forward, whose host key the caller must know under the router's address.
fn ssh_notes(plan: &Plan, notes: &mut Vec<String>) {
    use std::collections::{BTreeMap, BTreeSet};
    let d = &plan.deployment;
    let amandad = crate::amanda::facts::amandad_path(d.build);
    // (answerer, caller, amrecover?) → the addresses the answerer sees the caller as.
    let mut keys: BTreeMap<(HostId, HostId, bool), BTreeSet<Ipv4Addr>> = BTreeMap::new();
    let mut forwarded: BTreeSet<(HostId, HostId, Ipv4Addr, u16, HostId)> = BTreeSet::new();
    let mut answerers: BTreeSet<HostId> = BTreeSet::new();
    for (f, p) in plan.flows.iter().zip(&plan.paths) {
        if f.auth != crate::amanda::settings::Auth::Ssh || f.operation == Operation::LegacyRecover {
            continue;
        }
        answerers.insert(f.responder);
        keys.entry((f.responder, f.initiator, f.operation == Operation::Recover))
            .or_default()
            .insert(p.last().src);
        if let Some(r) = p.routers().find(|h| h.dnat_to.is_some()) {
            forwarded.insert((f.initiator, f.responder, p.target, f.dport.lo, r.host));
        }
    }
    let name = |h: HostId| &d.hosts[h].name;
    let options = "no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty";
    // The server's amdump key: one line per address the answerers see it as.
    let mut amdump: BTreeMap<(HostId, Ipv4Addr), Vec<String>> = BTreeMap::new();
    // Each amrecover host's root key on the server, with the address it arrives from.
    let mut amrecover: BTreeMap<HostId, Vec<String>> = BTreeMap::new();
    for ((res, ini, recover), from) in &keys {
        for a in from {
            if *recover {
                amrecover
                    .entry(*res)
                    .or_default()
                    .push(format!("`{}` {a}", name(*ini)));
            } else {
                amdump
                    .entry((*ini, *a))
                    .or_default()
                    .push(format!("`{}`", name(*res)));
            }
        }
    }
    for ((server, a), on) in &amdump {
        notes.push(format!(
            "ssh: on {}, `~backup/.ssh/authorized_keys` holds `{}`'s amdump key (the dumptype's `ssh-keys`) as `from=\"{a}\",{options},command=\"{amandad} -auth=ssh amdump\" KEY` ({a} is how they see `{}`).",
            on.join(", "),
            name(*server),
            name(*server),
        ));
    }
    for (server, from) in &amrecover {
        notes.push(format!(
            "ssh: on `{}`, `~backup/.ssh/authorized_keys` holds each amrecover host's root key (its amanda-client.conf `ssh-keys`) as `from=\"ADDRESS\",{options},command=\"{amandad} -auth=ssh amindexd amidxtaped\" KEY`, ADDRESS being how `{}` sees it: {}.",
            name(*server),
            name(*server),
            from.join(", "),
        ));
    }
    for (ini, res, target, port, router) in &forwarded {
        let at = if *port == crate::amanda::facts::SSH_PORT {
            target.to_string()
        } else {
            format!("[{target}]:{port}")
        };
        notes.push(format!(
            "ssh: `{}` reaches `{}` at {at} through `{}`'s port forward, so the host key `{}` must know for {at} is `{}`'s, not `{}`'s (Amanda runs ssh with BatchMode=yes, which refuses an unknown or changed host key).",
            name(*ini), name(*res), name(*router), name(*ini), name(*res), name(*router)
        ));
    }
    if !answerers.is_empty() {
        let list: Vec<String> = answerers
            .iter()
            .map(|&h| format!("`{}`", name(h)))
            .collect();
        let mut n = format!(
            "ssh: each caller must already know each answerer's host key under the name it dials (amanda-auth(7): make each connection once by hand, as the same user); no inetd/xinetd service is needed, sshd answers on {}.",
            list.join(", ")
        );
        if d.build == Build::Debian {
            write!(
                n,
                " Debian's `backup` user logs in with `{}`, through which sshd would run amandad: `usermod -s /bin/sh backup` on {}.",
                crate::amanda::facts::DEBIAN_BACKUP_SHELL,
                list.join(", ")
            )
            .unwrap();
        }
        notes.push(n);
    }
}

/// What `plan` prints on a terminal: per host its openings as an aligned
/// table no wider than `width` (the long "from" column is cut to fit), and
/// where the files went. SUMMARY.md keeps everything else; this is what an
/// admin reads first.
pub fn brief(plan: &Plan, only: Option<&str>, width: usize, out: &str, files: usize) -> String {
    let d = &plan.deployment;
    let mut o = String::new();
    writeln!(
        o,
        "amwall plan for {}: {} hosts, {} flows (auth {}).",
        crate::name::comment(&d.source_name),
        d.hosts.len(),
        plan.flows.len(),
        d.amanda.auth
    )
    .unwrap();
    for hp in &plan.policies {
        let host = &d.hosts[hp.host];
        if only.is_some_and(|n| n != host.name) {
            continue;
        }
        writeln!(o, "\n{} ({})", host.name, roles(d, hp.host)).unwrap();
        let rules: Vec<&PolicyRule> = hp.rules.iter().collect();
        if rules.iter().all(|r| r.label == "management") && hp.masquerade.is_empty() {
            writeln!(o, "  no Amanda opening: replies and `lo` only").unwrap();
            continue;
        }
        let mut rows = vec![["where", "proto", "dst port", "src port", "flows", "from"]
            .map(String::from)
            .to_vec()];
        for r in rules {
            let (place, _) = place_cells(plan, r);
            rows.push(vec![
                place,
                r.proto.to_string(),
                ports(&r.dports),
                r.sport.map_or("any".into(), |s| s.to_string()),
                if r.label == "management" {
                    "management".into()
                } else {
                    flow_refs(&r.flows)
                },
                src_text(plan, hp, r).replace('`', ""),
            ]);
        }
        for m in &hp.masquerade {
            rows.push(vec![
                format!("masquerade out {}", m.out_iface),
                "any".into(),
                "any".into(),
                "any".into(),
                String::new(),
                m.from.to_string(),
            ]);
        }
        for line in crate::table::render(crate::table::Layout { indent: 2, gap: 2 }, &rows).lines()
        {
            writeln!(o, "{}", cut(line, width)).unwrap();
        }
    }
    writeln!(
        o,
        "\n{files} files in {out}; every flow, its path and what Amanda's config must say: {out}/SUMMARY.md"
    )
    .unwrap();
    o.lines().map(|l| cut(l, width) + "\n").collect()
}

/// `line` cut to `width` characters, with an ellipsis when cut.
fn cut(line: &str, width: usize) -> String {
    if line.chars().count() <= width || width < 2 {
        return line.to_string();
    }
    let mut s: String = line.chars().take(width - 1).collect();
    s.push('…');
    s
}
