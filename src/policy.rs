//! Flows + paths → per-host abstract rules: the minimal openings, backend-neutral.
//!
//! Invariants (tested below and in tests/): within a chain no two rules have the
//! same key, none is shadowed by an earlier one, port ranges are merged, and
//! hosts that need the same opening share one address group. The order of
//! everything is a function of the input order only, so output is deterministic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

use crate::flows::{Flow, HelperRole, Operation};
use crate::model::{AddrIndex, Deployment, HostId};
use crate::ports::{merge_ranges, PortRange, Proto};
use crate::route::{Hop6, HopKind, Path, Path6};

/// A group of source addresses that share openings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddrGroup {
    pub name: String,
    pub members: Vec<Ipv4Net>,
    /// Host names of the members where known, for people.
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Addrs {
    Any,
    Net(Ipv4Net),
    /// Index into `HostPolicy::groups`.
    Group(usize),
}

/// Which netfilter hook the rule belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// Filter INPUT: packets for this host.
    Input,
    /// Filter FORWARD: packets this router passes on.
    Forward,
    /// nat PREROUTING: port forwards.
    Dnat,
    /// raw PREROUTING: conntrack helper assignment.
    Helper,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyRule {
    pub place: Place,
    pub in_iface: Option<String>,
    pub out_iface: Option<String>,
    pub src: Addrs,
    /// For forward and port-forward rules: the destination address matched.
    pub dst: Option<Ipv4Addr>,
    pub proto: Proto,
    pub sport: Option<PortRange>,
    /// Sorted, merged, non-empty.
    pub dports: Vec<PortRange>,
    /// Port forward target (Place::Dnat); on a Place::Forward rule, the rule
    /// passes only connections conntrack DNAT'd (to this address).
    pub dnat_to: Option<Ipv4Addr>,
    /// Indexes into the plan's flows that need this rule.
    pub flows: Vec<usize>,
    /// Why the rule exists, short (also the rule comment).
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Masq {
    pub from: Ipv4Net,
    pub out_iface: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostPolicy {
    pub host: HostId,
    pub router: bool,
    pub groups: Vec<AddrGroup>,
    /// In chain order; INPUT starts with the management rules (label "management").
    pub rules: Vec<PolicyRule>,
    pub masquerade: Vec<Masq>,
    /// What the host accepts over IPv6.
    pub v6: Ipv6Policy,
}

/// The IPv6 side of a host's policy: the same deny-incoming shape as IPv4
/// (input and forward drop, `lo` and ESTABLISHED,RELATED accepted), plus what
/// IPv6 itself needs to work ([`ICMPV6_ACCEPTED`], [`DHCPV6_CLIENT_PORT`]) and
/// management from the IPv6 prefixes `[management]` names. No Amanda flow is
/// opened over IPv6: Debian's Amanda is built `--without-ipv6`
/// (docs/design.md), so a host that is not firewalled over IPv6 is open there
/// to anything listening on `::`, and nothing Amanda needs arrives there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ipv6Policy {
    /// Management over IPv6, one rule per source (`src: None`: any source);
    /// empty when management is off or `from` names no IPv6 prefix. On a
    /// router the same rules also forward, since the admins' way to the
    /// hosts behind it crosses it without NAT.
    pub management: Vec<Mgmt6>,
    pub router: bool,
    /// Amanda's flows over IPv6, where the build speaks it
    /// (`facts::speaks_ipv6`) and both ends and every router between them
    /// are on dual-stack networks: the same hosts, interfaces, protocols and
    /// ports as the IPv4 rules, addressed with the hosts' own IPv6
    /// addresses, since no NAT66 is assumed (a port-forwarded IPv4 flow goes
    /// straight to the responder's address over IPv6). The conntrack helper
    /// is not used over IPv6: what it would expect is opened as a range.
    /// Flows to or from a host without IPv4 (`route::path6`) appear only
    /// here, never in the IPv4 rules.
    pub rules: Vec<Rule6>,
}

/// One IPv6 opening, its sources grouped as the IPv4 rules' are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule6 {
    /// `Input` or `Forward`.
    pub place: Place,
    pub in_iface: Option<String>,
    pub out_iface: Option<String>,
    /// Sorted, deduplicated, non-empty.
    pub srcs: Vec<Ipv6Addr>,
    /// For forward rules: the responder's address.
    pub dst: Option<Ipv6Addr>,
    pub proto: Proto,
    pub sport: Option<PortRange>,
    /// Sorted, merged, non-empty.
    pub dports: Vec<PortRange>,
    /// Indexes into the plan's flows that need this rule: `flows`, then
    /// `flows6` (the IPv6-only ones) numbered on after them.
    pub flows: Vec<usize>,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mgmt6 {
    pub src: Option<Ipv6Net>,
    pub proto: Proto,
    pub port: u16,
}

/// ICMPv6 message types a host accepts whatever their source. RFC 4890 section 4.4.1
/// ("Traffic That Must Not Be Dropped", for traffic addressed to the host
/// itself): the errors (destination unreachable, packet too big, time
/// exceeded, parameter problem), echo request and reply, neighbour and router
/// discovery with inverse ND, the multicast listener messages, SEND's
/// certification path messages and multicast router discovery. Time exceeded
/// and parameter problem are taken with every code, which also covers
/// section 4.4.2's "normally should not be dropped" codes. Without neighbour
/// discovery a host cannot even reach its neighbours' IPv6 addresses; without
/// packet-too-big, connections over paths with a smaller MTU hang. The kernel
/// itself discards ND messages whose hop limit is not 255 (RFC 4861 section
/// 7.1), so no hop-limit match is needed here.
pub const ICMPV6_ACCEPTED: &[u8] = &[
    1, 2, 3, 4, // errors
    128, 129, // echo
    130, 131, 132, // multicast listener discovery (143 below: MLDv2 report)
    133, 134, 135, 136, // router and neighbour discovery
    141, 142, // inverse neighbour discovery
    143, // MLDv2 listener report
    148, 149, // SEND certification path
    151, 152, 153, // multicast router discovery
];

/// A DHCPv6 client receives its server's replies on UDP 546 at its own
/// link-local address. Conntrack cannot tie them to the request, which went to
/// a multicast group (ff02::1:2), so without this opening a host whose
/// address comes from DHCPv6 loses it when the lease runs out. The same
/// opening as firewalld's `dhcpv6-client` service (destination fe80::/64),
/// which its default zone carries.
pub const DHCPV6_CLIENT_PORT: u16 = 546;

/// [`DHCPV6_CLIENT_PORT`]'s destination: the link-local prefix.
pub fn dhcpv6_client_dst() -> Ipv6Net {
    "fe80::/64".parse().expect("a valid prefix")
}

impl HostPolicy {
    pub fn in_place(&self, p: Place) -> impl Iterator<Item = &PolicyRule> {
        self.rules.iter().filter(move |r| r.place == p)
    }
    pub fn uses_helper(&self) -> bool {
        self.rules.iter().any(|r| r.place == Place::Helper)
    }
}

/// What one hop of one flow needs, before grouping.
struct Need {
    place: Place,
    in_iface: Option<String>,
    out_iface: Option<String>,
    src: Ipv4Addr,
    dst: Option<Ipv4Addr>,
    proto: Proto,
    sport: Option<PortRange>,
    dport: PortRange,
    dnat_to: Option<Ipv4Addr>,
    flow: usize,
}

/// Every host's policy, in host order.
/// `mgmt[h]`: the management hops at host `h` (`route::management`).
pub fn compile(
    d: &Deployment,
    idx: &AddrIndex,
    flows: &[Flow],
    paths: &[Path],
    v6only: V6Only<'_>,
    mgmt: &[Vec<crate::route::MgmtHop>],
) -> Vec<HostPolicy> {
    let mut needs: Vec<Vec<Need>> = (0..d.hosts.len()).map(|_| Vec::new()).collect();
    let mut v6 = ipv6_rules(d, flows, paths, v6only);
    for (fi, (f, p)) in flows.iter().zip(paths).enumerate() {
        for hop in &p.hops {
            let mut need =
                |place, in_iface: &Option<String>, out_iface: Option<String>, dst, dnat_to| {
                    needs[hop.host].push(Need {
                        place,
                        in_iface: in_iface.clone(),
                        out_iface,
                        src: hop.src,
                        dst,
                        proto: f.proto,
                        sport: f.sport,
                        dport: f.dport,
                        dnat_to,
                        flow: fi,
                    })
                };
            match hop.kind {
                HopKind::Origin | HopKind::Loopback => {}
                HopKind::Destination => {
                    if f.helper != HelperRole::Expected {
                        need(Place::Input, &hop.in_iface, None, None, None);
                    }
                    if f.helper == HelperRole::Assign {
                        need(Place::Helper, &hop.in_iface, None, None, None);
                    }
                }
                HopKind::Forward => {
                    if let Some(to) = hop.dnat_to {
                        need(Place::Dnat, &hop.in_iface, None, Some(hop.dst), Some(to));
                    }
                    if f.helper != HelperRole::Expected {
                        // FORWARD sees the destination after DNAT and the source before
                        // SNAT; `dnat_to` marks the rule as only for port-forwarded packets.
                        let dst = hop.dnat_to.unwrap_or(hop.dst);
                        need(
                            Place::Forward,
                            &hop.in_iface,
                            hop.out_iface.clone(),
                            Some(dst),
                            hop.dnat_to,
                        );
                    }
                    if f.helper == HelperRole::Assign {
                        need(Place::Helper, &hop.in_iface, None, None, None);
                    }
                }
            }
        }
    }
    needs
        .into_iter()
        .enumerate()
        .map(|(h, n)| {
            let mut hp = host_policy(d, idx, flows, h, n, &mgmt[h]);
            hp.v6.rules = std::mem::take(&mut v6[h]);
            hp
        })
        .collect()
}

/// Amanda's openings over IPv6, per host (see [`Ipv6Policy::rules`]): each
/// IPv4 path mirrored with the ends' IPv6 addresses, where the build speaks
/// IPv6 and every interface on the way is on a dual-stack network; then the
/// IPv6-only flows (`v6only`, numbered after `flows`) on their own paths.
fn ipv6_rules(
    d: &Deployment,
    flows: &[Flow],
    paths: &[Path],
    v6only: V6Only<'_>,
) -> Vec<Vec<Rule6>> {
    let mut per_host: Vec<Vec<Rule6>> = vec![Vec::new(); d.hosts.len()];
    if !d.amanda_speaks_ipv6() {
        return per_host;
    }
    /// Rule identity without sources and ports.
    type Key6 = (
        Place,
        Option<String>,
        Option<String>,
        Option<Ipv6Addr>,
        Proto,
        Option<PortRange>,
    );
    /// A key's sources, destination ports and flows so far.
    type Grouped6 = (Key6, BTreeSet<Ipv6Addr>, Vec<PortRange>, Vec<usize>);
    let mirrored = flows
        .iter()
        .zip(paths)
        .enumerate()
        .filter_map(|(fi, (f, p))| Some((fi, f, mirror(d, p)?)));
    let own = (v6only.0.iter().zip(v6only.1).enumerate())
        .map(|(k, (f, p))| (flows.len() + k, f, p.clone()));
    let mut keyed: Vec<Vec<Grouped6>> = vec![Vec::new(); d.hosts.len()];
    for (fi, f, p) in mirrored.chain(own) {
        for hop in &p.hops {
            let key = match hop.kind {
                HopKind::Forward => (
                    Place::Forward,
                    hop.in_iface.clone(),
                    hop.out_iface.clone(),
                    Some(p.target),
                ),
                HopKind::Destination => (Place::Input, hop.in_iface.clone(), None, None),
                HopKind::Origin | HopKind::Loopback => continue,
            };
            let key: Key6 = (key.0, key.1, key.2, key.3, f.proto, f.sport);
            let list = &mut keyed[hop.host];
            let at = match list.iter().position(|(k, ..)| *k == key) {
                Some(at) => at,
                None => {
                    list.push((key, BTreeSet::new(), Vec::new(), Vec::new()));
                    list.len() - 1
                }
            };
            let (_, srcs, dports, fl) = &mut list[at];
            srcs.insert(p.src);
            dports.push(f.dport);
            if !fl.contains(&fi) {
                fl.push(fi);
            }
        }
    }
    let op = |fi: usize| match fi.checked_sub(flows.len()) {
        None => flows[fi].operation.name(),
        Some(k) => v6only.0[k].operation.name(),
    };
    for (h, list) in keyed.into_iter().enumerate() {
        for ((place, in_iface, out_iface, dst, proto, sport), srcs, dports, fl) in list {
            let mut ops: Vec<&str> = Vec::new();
            for &f in &fl {
                if !ops.contains(&op(f)) {
                    ops.push(op(f));
                }
            }
            per_host[h].push(Rule6 {
                place,
                in_iface,
                out_iface,
                srcs: srcs.into_iter().collect(),
                dst,
                proto,
                sport,
                dports: merge_ranges(dports),
                label: format!("amanda {}", ops.join(",")),
                flows: fl,
            });
        }
    }
    per_host
}

/// The IPv6-only flows and their paths (`route::path6`), side by side.
pub type V6Only<'a> = (&'a [Flow], &'a [Path6]);

/// An IPv4 path as IPv6 sees it: the ends' own IPv6 addresses, the same
/// hosts and interfaces, when both ends and every router's two interfaces
/// are dual-stack (no NAT66: a port-forwarded IPv4 flow goes straight to
/// the responder's address).
fn mirror(d: &Deployment, p: &Path) -> Option<Path6> {
    let first = &p.hops[0];
    if first.kind == HopKind::Loopback {
        return None;
    }
    let last = p.last();
    let src = d.address6_of(first.host, first.out_iface.as_deref()?)?;
    let target = d.address6_of(last.host, last.in_iface.as_deref()?)?;
    let routed = p.routers().all(|r| {
        [&r.in_iface, &r.out_iface]
            .iter()
            .all(|i| i.as_deref().is_some_and(|i| d.dual_stack(r.host, i)))
    });
    routed.then(|| Path6 {
        src,
        target,
        hops: p
            .hops
            .iter()
            .map(|h| Hop6 {
                host: h.host,
                kind: h.kind,
                in_iface: h.in_iface.clone(),
                out_iface: h.out_iface.clone(),
            })
            .collect(),
    })
}

fn host_policy(
    d: &Deployment,
    idx: &AddrIndex,
    flows: &[Flow],
    h: HostId,
    needs: Vec<Need>,
    mgmt: &[crate::route::MgmtHop],
) -> HostPolicy {
    let host = &d.hosts[h];
    let mut groups: Vec<AddrGroup> = Vec::new();
    // Management comes first in INPUT.
    let mut all = management_rules(d, mgmt);
    for (key, per_src) in by_key(&needs) {
        all.extend(grouped_rules(d, idx, flows, key, per_src, &mut groups));
    }
    let mut kept = absorb_covered(all, &groups, flows);
    let groups = drop_unused_groups(&mut kept, groups);
    let masquerade = host
        .masquerade
        .iter()
        .filter_map(|m| {
            Some(Masq {
                // Validated: masquerade only between networks with IPv4.
                from: d.networks[m.from].cidr?,
                out_iface: d.iface_on(h, m.to)?.name.clone(),
            })
        })
        .collect();
    HostPolicy {
        host: h,
        router: host.roles.router,
        groups,
        rules: kept,
        masquerade,
        v6: ipv6_policy(d, host.roles.router),
    }
}

/// `[management]` over IPv6. IPv6 has no NAT in amwall's model (NAT66 is not
/// assumed), so every host sees the admins' prefixes as written.
fn ipv6_policy(d: &Deployment, router: bool) -> Ipv6Policy {
    let m = &d.management;
    let rule = |src| Mgmt6 {
        src,
        proto: m.proto,
        port: m.port,
    };
    let management = if !m.enabled {
        vec![]
    } else if m.anywhere6 {
        vec![rule(None)]
    } else {
        m.from6.iter().map(|p| rule(Some(*p))).collect()
    };
    Ipv6Policy {
        management,
        router,
        rules: Vec::new(),
    }
}

/// `[management]` as rules: one per prefix, each as this host sees it (after
/// NAT), and on routers the forwarding the admins' way needs (`route::management`).
fn management_rules(d: &Deployment, mgmt: &[crate::route::MgmtHop]) -> Vec<PolicyRule> {
    let management = d.management.enabled.then(|| PolicyRule {
        place: Place::Input,
        in_iface: None,
        out_iface: None,
        src: Addrs::Any,
        dst: None,
        proto: d.management.proto,
        sport: None,
        dports: vec![PortRange::single(d.management.port)],
        dnat_to: None,
        flows: vec![],
        label: "management".into(),
    });
    let mut mgmt_rules: Vec<PolicyRule> = Vec::new();
    if let Some(m) = &management {
        // One rule per management prefix keeps it readable; a set would also do.
        // Each prefix as this host sees it (after NAT), and on routers the
        // forwarding the admins' way needs (`route::management`).
        if d.management.from.is_empty() {
            mgmt_rules.push(m.clone());
        } else {
            for hop in mgmt {
                let forward = hop.kind == HopKind::Forward;
                mgmt_rules.push(PolicyRule {
                    place: if forward {
                        Place::Forward
                    } else {
                        Place::Input
                    },
                    in_iface: hop.in_iface.clone(),
                    out_iface: hop.out_iface.clone(),
                    src: Addrs::Net(hop.src),
                    dst: hop.dst,
                    ..m.clone()
                });
            }
        }
    }
    mgmt_rules
}

/// A rule's identity without its source and ports.
type Key = (
    Place,
    Option<String>,
    Option<String>,
    Option<Ipv4Addr>,
    Proto,
    Option<PortRange>,
    Option<Ipv4Addr>,
);
/// Per source: the destination ports it needs and the flows that need them.
type PerSource = BTreeMap<Ipv4Addr, (Vec<PortRange>, Vec<usize>)>;

/// The needs by key, keys in the order they first appear.
fn by_key(needs: &[Need]) -> Vec<(Key, PerSource)> {
    let mut pos: HashMap<Key, usize> = HashMap::new();
    let mut out: Vec<(Key, PerSource)> = Vec::new();
    for n in needs {
        let key: Key = (
            n.place,
            n.in_iface.clone(),
            n.out_iface.clone(),
            n.dst,
            n.proto,
            n.sport,
            n.dnat_to,
        );
        let p = *pos.entry(key.clone()).or_insert_with(|| {
            out.push((key, PerSource::new()));
            out.len() - 1
        });
        let e = out[p].1.entry(n.src).or_default();
        e.0.push(n.dport);
        if !e.1.contains(&n.flow) {
            e.1.push(n.flow);
        }
    }
    out
}

/// One key's rules: sources with identical merged ports share a rule, their
/// addresses aggregated exactly, or else a group.
fn grouped_rules(
    d: &Deployment,
    idx: &AddrIndex,
    flows: &[Flow],
    key: Key,
    per_src: PerSource,
    groups: &mut Vec<AddrGroup>,
) -> Vec<PolicyRule> {
    let mut rules = Vec::new();
    let mut by_ports: Vec<(Vec<PortRange>, Vec<Ipv4Addr>, Vec<usize>)> = Vec::new();
    for (src, (ports, fl)) in per_src {
        let merged = merge_ranges(ports);
        match by_ports.iter_mut().find(|(p, _, _)| *p == merged) {
            Some(entry) => {
                entry.1.push(src);
                entry.2.extend(fl);
            }
            None => by_ports.push((merged, vec![src], fl)),
        }
    }
    let (place, in_iface, out_iface, dst, proto, sport, dnat_to) = key;
    for (dports, srcs, mut fl) in by_ports {
        fl.sort_unstable();
        fl.dedup();
        // Exact aggregation: neighbouring addresses that fill a prefix become it
        // (never a wider prefix than the members cover).
        let nets: Vec<Ipv4Net> = srcs
            .iter()
            .map(|a| Ipv4Net::new(*a, 32).expect("/32"))
            .collect();
        let nets = Ipv4Net::aggregate(&nets);
        let src = if nets.len() == 1 {
            Addrs::Net(nets[0])
        } else {
            Addrs::Group(group_for(d, idx, flows, &fl, place, &srcs, nets, groups))
        };
        rules.push(PolicyRule {
            place,
            in_iface: in_iface.clone(),
            out_iface: out_iface.clone(),
            src,
            dst,
            proto,
            sport,
            dports,
            dnat_to,
            label: label(flows, &fl),
            flows: fl,
        });
    }
    rules
}

/// Drops every rule another one covers, crediting its flows to the coverer:
/// all rules of a place have the same verdict, so order among them does not
/// change what passes, and a rule made redundant by a later, wider one is as
/// useless as a shadowed one.
fn absorb_covered(
    mut all: Vec<PolicyRule>,
    groups: &[AddrGroup],
    flows: &[Flow],
) -> Vec<PolicyRule> {
    let n = all.len();
    // coverer[i] = the rule that absorbs rule i (itself when kept). Mutual cover means
    // equal rules: the first one stays.
    let mut coverer: Vec<usize> = (0..n).collect();
    for i in 0..n {
        for j in 0..n {
            if i != j
                && covers(&all[j], &all[i], groups)
                && (j < i || !covers(&all[i], &all[j], groups))
            {
                coverer[i] = j;
                break;
            }
        }
    }
    // Follow chains (a ⊂ b ⊂ c) to the rule that is kept.
    for i in 0..n {
        let mut k = coverer[i];
        while coverer[k] != k {
            k = coverer[k];
        }
        coverer[i] = k;
    }
    let mut absorbed: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        if coverer[i] != i {
            let f = std::mem::take(&mut all[i].flows);
            absorbed[coverer[i]].extend(f);
        }
    }
    let mut kept: Vec<PolicyRule> = Vec::new();
    for (i, mut r) in all.into_iter().enumerate() {
        if coverer[i] == i {
            r.flows.append(&mut absorbed[i]);
            kept.push(r);
        }
    }
    for k in &mut kept {
        k.flows.sort_unstable();
        k.flows.dedup();
        if k.label != "management" {
            k.label = label(flows, &k.flows);
        }
    }
    kept
}

/// Groups whose only rules were absorbed are not emitted: the rest renumbered.
fn drop_unused_groups(kept: &mut [PolicyRule], groups: Vec<AddrGroup>) -> Vec<AddrGroup> {
    let mut used = vec![false; groups.len()];
    for k in kept.iter() {
        if let Addrs::Group(g) = k.src {
            used[g] = true;
        }
    }
    let mut renumber = vec![usize::MAX; groups.len()];
    let mut live = Vec::new();
    for (i, g) in groups.into_iter().enumerate() {
        if used[i] {
            renumber[i] = live.len();
            live.push(g);
        }
    }
    for k in kept.iter_mut() {
        if let Addrs::Group(g) = &mut k.src {
            *g = renumber[*g];
        }
    }
    live
}

/// Name and register (or reuse) a group for `srcs`. Names say who is in it.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn group_for(
    d: &Deployment,
    idx: &AddrIndex,
    flows: &[Flow],
    fl: &[usize],
    place: Place,
    srcs: &[Ipv4Addr],
    members: Vec<Ipv4Net>,
    groups: &mut Vec<AddrGroup>,
) -> usize {
    if let Some(i) = groups.iter().position(|g| g.members == members) {
        return i;
    }
    let recover = fl.iter().all(|&f| {
        matches!(
            flows[f].operation,
            Operation::Recover | Operation::LegacyRecover
        )
    });
    let backup = fl.iter().all(|&f| {
        !matches!(
            flows[f].operation,
            Operation::Recover | Operation::LegacyRecover
        )
    });
    let who = match (recover, backup) {
        (true, _) => "amrecover_hosts",
        (_, true) => "amanda_servers",
        _ => "amanda_peers",
    };
    let prefix = match place {
        Place::Input => "in",
        Place::Forward => "fwd",
        Place::Dnat => "dnat",
        Place::Helper => "helper",
    };
    let name = group_name(prefix, who, |n| groups.iter().any(|g| g.name == n));
    let labels = srcs
        .iter()
        .map(|a| {
            idx.owner(*a)
                .map_or_else(|| a.to_string(), |h| d.hosts[h].name.clone())
        })
        .collect();
    groups.push(AddrGroup {
        name,
        members,
        labels,
    });
    groups.len() - 1
}

/// `PREFIX_WHO`, then `PREFIX_WHO_2`, ... until `taken` says no. ipset names
/// are global per host and at most 31 characters with `render`'s `amw_`
/// prefix: past that the short form `PREFIX_N` keeps every name distinct and
/// within the limit.
fn group_name(prefix: &str, who: &str, taken: impl Fn(&str) -> bool) -> String {
    let base = format!("{prefix}_{who}");
    let mut name = base.clone();
    let mut n = 2u64;
    while taken(&name) {
        name = format!("{base}_{n}");
        if name.len() > crate::name::IPSET_NAME_MAX - "amw_".len() {
            name = format!("{prefix}_{n}");
        }
        n += 1;
    }
    name
}

fn label(flows: &[Flow], fl: &[usize]) -> String {
    let mut ops: Vec<&str> = Vec::new();
    for &f in fl {
        let n = flows[f].operation.name();
        if !ops.contains(&n) {
            ops.push(n);
        }
    }
    format!("amanda {}", ops.join(","))
}

fn addrs_cover(a: &Addrs, b: &Addrs, groups: &[AddrGroup]) -> bool {
    let nets = |x: &Addrs| -> Option<Vec<Ipv4Net>> {
        match x {
            Addrs::Any => None,
            Addrs::Net(n) => Some(vec![*n]),
            Addrs::Group(g) => Some(groups[*g].members.clone()),
        }
    };
    if a == b {
        return true;
    }
    match (nets(a), nets(b)) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(an), Some(bn)) => {
            // Look up each of b's prefixes by all its supernets: 33 hash probes per
            // member instead of a scan of a's members (groups can hold 10,000 hosts).
            let set: std::collections::HashSet<Ipv4Net> = an.into_iter().collect();
            bn.iter().all(|m| {
                (0..=m.prefix_len()).any(|len| {
                    set.contains(&Ipv4Net::new(m.addr(), len).expect("len <= 32").trunc())
                })
            })
        }
    }
}

/// Does `a` (earlier) accept everything `b` accepts? Then `b` is shadowed.
pub fn covers(a: &PolicyRule, b: &PolicyRule, groups: &[AddrGroup]) -> bool {
    let opt_cover = |x: &Option<String>, y: &Option<String>| x.is_none() || x == y;
    a.place == b.place
        // A forward rule for any packet covers one for port-forwarded packets only.
        && (a.dnat_to == b.dnat_to || (a.place == Place::Forward && a.dnat_to.is_none()))
        && a.proto == b.proto
        && opt_cover(&a.in_iface, &b.in_iface)
        && opt_cover(&a.out_iface, &b.out_iface)
        && (a.dst.is_none() || a.dst == b.dst)
        && addrs_cover(&a.src, &b.src, groups)
        && match (a.sport, b.sport) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(x), Some(y)) => x.covers(&y),
        }
        && b.dports
            .iter()
            .all(|p| a.dports.iter().any(|q| q.covers(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However many groups a host gets, their set names stay within ipset's
    /// 31 characters, and past the long form's limit the short one is used.
    #[test]
    fn group_names_fit_ipset() {
        for k in [0usize, 1, 9_997, 9_998, 9_999, 10_000, 1_234_567] {
            let calls = std::cell::Cell::new(0usize);
            let n = group_name("helper", "amrecover_hosts", |_| {
                calls.set(calls.get() + 1);
                calls.get() <= k
            });
            let set = format!("amw_{n}");
            assert!(crate::name::set_name(&set).is_ok(), "{k}: {set}");
            // The k-th candidate: numbering starts at 2 after the bare base.
            let want = match k {
                0 => "helper_amrecover_hosts".to_string(),
                k if k + 1 < 10_000 => format!("helper_amrecover_hosts_{}", k + 1),
                k => format!("helper_{}", k + 1),
            };
            assert_eq!(n, want);
        }
    }
}
