//! `plan --format json`: the whole plan for automation (CI pipelines, an
//! Ansible export) to read instead of scraping SUMMARY.md. Host and network
//! ids are resolved to names, address groups to their members, and the shape
//! is fixed by `docs/plan.schema.json` (a test validates every example
//! against it), so a consumer can rely on it.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::amanda::settings::AmandaSettings;
use crate::lint::Lint;
use crate::plan::Plan;
use crate::policy::{Addrs, Place};
use crate::ports::{PortRange, Proto};
use crate::view::{self, FlowJson};

/// Bumped when a field changes meaning or goes away (adding one does not).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct PlanJson<'a> {
    pub schema_version: u32,
    pub amwall_version: &'static str,
    pub source: &'a str,
    /// Whether Amanda itself connects over IPv6 (`[amanda] ipv6`, or the build's default).
    pub amanda_ipv6: bool,
    pub networks: Vec<NetworkJson<'a>>,
    pub hosts: Vec<HostJson<'a>>,
    pub flows: Vec<FlowJson<'a>>,
    pub policies: Vec<PolicyJson<'a>>,
    pub lints: &'a [Lint],
    /// Flows with a host that has no IPv4 where Amanda cannot speak IPv6:
    /// not in `flows`, nothing opened (`Plan::left_out`; the `no-ipv4`
    /// lint says why). Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOutJson<'a>>,
    /// Warnings about the admin's Amanda files.
    pub warnings: Vec<WarningJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct LeftOutJson<'a> {
    pub operation: &'static str,
    pub initiator: &'a str,
    pub responder: &'a str,
    pub proto: crate::ports::Proto,
    pub dport: crate::ports::PortRange,
}

#[derive(Debug, Serialize)]
pub struct WarningJson<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

#[derive(Debug, Serialize)]
pub struct NetworkJson<'a> {
    pub name: &'a str,
    /// Absent on an IPv6-only network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Ipv4Net>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr6: Option<ipnet::Ipv6Net>,
}

#[derive(Debug, Serialize)]
pub struct HostJson<'a> {
    pub name: &'a str,
    /// "server", "client", "recover", "router".
    pub roles: Vec<&'static str>,
    pub interfaces: Vec<InterfaceJson<'a>>,
    pub gateway: Option<&'a str>,
    /// The Amanda server that backs this host up.
    pub server: Option<&'a str>,
    /// Networks this router masquerades, and towards which network.
    pub masquerade: Vec<MasqueradeJson<'a>>,
    /// As the server's programs see this host (amanda.conf, disklist).
    pub amanda: &'a AmandaSettings,
    /// Its own amanda-client.conf (amandad, sendbackup, amrecover).
    pub client_conf: &'a AmandaSettings,
}

#[derive(Debug, Serialize)]
pub struct InterfaceJson<'a> {
    pub name: &'a str,
    pub network: &'a str,
    /// Absent for an interface without IPv4 (an IPv6-only host or network).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address6: Option<std::net::Ipv6Addr>,
}

#[derive(Debug, Serialize)]
pub struct MasqueradeJson<'a> {
    pub from: &'a str,
    pub to: &'a str,
}

/// One host's rules as the policy layer has them, before any backend.
#[derive(Debug, Serialize)]
pub struct PolicyJson<'a> {
    pub host: &'a str,
    pub rules: Vec<RuleJson<'a>>,
    pub groups: Vec<GroupJson<'a>>,
    pub masquerade: Vec<MasqJson<'a>>,
    pub ipv6: Ipv6Json<'a>,
}

/// The host's IPv6 policy (`policy::Ipv6Policy`): management, and
/// Amanda's IPv6 openings where the build speaks IPv6.
#[derive(Debug, Serialize)]
pub struct Ipv6Json<'a> {
    pub management: &'a [crate::policy::Mgmt6],
    /// Whether management is also forwarded (a router).
    pub forwards_management: bool,
    pub rules: Vec<Rule6Json<'a>>,
}

#[derive(Debug, Serialize)]
pub struct Rule6Json<'a> {
    pub place: Place,
    pub in_iface: Option<&'a str>,
    pub out_iface: Option<&'a str>,
    pub srcs: &'a [std::net::Ipv6Addr],
    pub dst: Option<std::net::Ipv6Addr>,
    pub proto: Proto,
    pub sport: Option<PortRange>,
    pub dports: &'a [PortRange],
    /// 1-based flow ids, as in `flows`.
    pub flows: Vec<usize>,
    pub label: &'a str,
}

#[derive(Debug, Serialize)]
pub struct RuleJson<'a> {
    pub place: Place,
    pub in_iface: Option<&'a str>,
    pub out_iface: Option<&'a str>,
    /// Where from: `{"any": true}`, `{"net": CIDR}` or `{"group": NAME}`.
    pub src: SrcJson<'a>,
    pub dst: Option<Ipv4Addr>,
    pub proto: Proto,
    pub sport: Option<PortRange>,
    pub dports: &'a [PortRange],
    pub dnat_to: Option<Ipv4Addr>,
    /// 1-based flow ids, as in `flows`.
    pub flows: Vec<usize>,
    pub label: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SrcJson<'a> {
    Any(bool),
    Net(Ipv4Net),
    Group(&'a str),
}

#[derive(Debug, Serialize)]
pub struct GroupJson<'a> {
    pub name: &'a str,
    pub members: &'a [Ipv4Net],
    pub labels: &'a [String],
}

#[derive(Debug, Serialize)]
pub struct MasqJson<'a> {
    pub from: Ipv4Net,
    pub out_iface: &'a str,
}

/// The plan as `plan --format json` prints it.
pub fn plan_json(plan: &Plan) -> PlanJson<'_> {
    let d = &plan.deployment;
    let host_name = |h: usize| d.hosts[h].name.as_str();
    let net_name = |n: usize| d.networks[n].name.as_str();
    PlanJson {
        schema_version: SCHEMA_VERSION,
        amwall_version: env!("CARGO_PKG_VERSION"),
        source: &d.source_name,
        amanda_ipv6: d.amanda_speaks_ipv6(),
        networks: d
            .networks
            .iter()
            .map(|n| NetworkJson {
                name: &n.name,
                cidr: n.cidr,
                cidr6: n.cidr6,
            })
            .collect(),
        hosts: d
            .hosts
            .iter()
            .map(|h| HostJson {
                name: &h.name,
                roles: [
                    (h.roles.server, "server"),
                    (h.roles.client, "client"),
                    (h.roles.recover, "recover"),
                    (h.roles.router, "router"),
                ]
                .into_iter()
                .filter_map(|(on, n)| on.then_some(n))
                .collect(),
                interfaces: h
                    .interfaces
                    .iter()
                    .map(|i| InterfaceJson {
                        name: &i.name,
                        network: net_name(i.network),
                        address: i.address,
                        address6: i.address6,
                    })
                    .collect(),
                gateway: h.gateway.map(host_name),
                server: h.server.map(host_name),
                masquerade: h
                    .masquerade
                    .iter()
                    .map(|m| MasqueradeJson {
                        from: net_name(m.from),
                        to: net_name(m.to),
                    })
                    .collect(),
                amanda: &h.amanda,
                client_conf: &h.client_conf,
            })
            .collect(),
        flows: view::all_json(plan),
        policies: plan
            .policies
            .iter()
            .map(|hp| PolicyJson {
                host: host_name(hp.host),
                rules: hp
                    .rules
                    .iter()
                    .map(|r| RuleJson {
                        place: r.place,
                        in_iface: r.in_iface.as_deref(),
                        out_iface: r.out_iface.as_deref(),
                        src: match &r.src {
                            Addrs::Any => SrcJson::Any(true),
                            Addrs::Net(n) => SrcJson::Net(*n),
                            Addrs::Group(g) => SrcJson::Group(&hp.groups[*g].name),
                        },
                        dst: r.dst,
                        proto: r.proto,
                        sport: r.sport,
                        dports: &r.dports,
                        dnat_to: r.dnat_to,
                        flows: r.flows.iter().map(|f| f + 1).collect(),
                        label: &r.label,
                    })
                    .collect(),
                groups: hp
                    .groups
                    .iter()
                    .map(|g| GroupJson {
                        name: &g.name,
                        members: &g.members,
                        labels: &g.labels,
                    })
                    .collect(),
                ipv6: Ipv6Json {
                    management: &hp.v6.management,
                    forwards_management: hp.v6.router,
                    rules: hp
                        .v6
                        .rules
                        .iter()
                        .map(|r| Rule6Json {
                            place: r.place,
                            in_iface: r.in_iface.as_deref(),
                            out_iface: r.out_iface.as_deref(),
                            srcs: &r.srcs,
                            dst: r.dst,
                            proto: r.proto,
                            sport: r.sport,
                            dports: &r.dports,
                            flows: r.flows.iter().map(|f| f + 1).collect(),
                            label: &r.label,
                        })
                        .collect(),
                },
                masquerade: hp
                    .masquerade
                    .iter()
                    .map(|m| MasqJson {
                        from: m.from,
                        out_iface: &m.out_iface,
                    })
                    .collect(),
            })
            .collect(),
        lints: &plan.lints,
        left_out: plan
            .left_out
            .iter()
            .map(|f| LeftOutJson {
                operation: f.operation.name(),
                initiator: host_name(f.initiator),
                responder: host_name(f.responder),
                proto: f.proto,
                dport: f.dport,
            })
            .collect(),
        warnings: d
            .provenance
            .warnings
            .iter()
            .map(|(code, message)| WarningJson { code, message })
            .collect(),
    }
}

/// `plan_json` as pretty JSON.
pub fn plan_json_text(plan: &Plan) -> String {
    serde_json::to_string_pretty(&plan_json(plan)).expect("JSON of plain data")
}
