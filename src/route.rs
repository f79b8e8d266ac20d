//! Which hosts and netfilter hooks a flow crosses, and what NAT does to it.
//!
//! Routing follows what the kernel would do with the model's tables: a directly
//! connected network first, else the host's gateway. A destination that cannot
//! be reached that way (a private LAN behind a masquerading router, seen from
//! outside) is reached through a port forward (DNAT) on that router, the way
//! the lab showed amrecover working from RHost.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use serde::Serialize;

use crate::flows::Flow;
use crate::model::{AddrIndex, Deployment, HostId, NetId};

mod six;
pub use six::{path6, Hop6, Path6};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HopKind {
    /// The initiator's own OUTPUT (amwall accepts all output).
    Origin,
    /// A router: PREROUTING (DNAT), FORWARD, POSTROUTING (SNAT).
    Forward,
    /// The responder's INPUT.
    Destination,
    /// Initiator and responder are one host: the flow stays on `lo`.
    Loopback,
}

/// One host on a flow's way, with the packet as it arrives there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    pub host: HostId,
    pub kind: HopKind,
    pub in_iface: Option<String>,
    pub out_iface: Option<String>,
    /// Source and destination as the packet arrives (before this hop's NAT).
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Port forward applied here (PREROUTING).
    pub dnat_to: Option<Ipv4Addr>,
    /// Masquerade applied here (POSTROUTING): the new source address.
    pub snat_to: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Path {
    /// The address the initiator connects to (what Amanda's config must name).
    pub target: Ipv4Addr,
    pub hops: Vec<Hop>,
}

impl Path {
    /// The packet as the responder sees it.
    pub fn last(&self) -> &Hop {
        self.hops.last().expect("a path has at least one hop")
    }
    pub fn routers(&self) -> impl Iterator<Item = &Hop> {
        self.hops.iter().filter(|h| h.kind == HopKind::Forward)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    /// The host whose definition the error should point at.
    pub host: HostId,
    pub message: String,
}

/// Where a packet for `dst` leaves `from`: (out interface index, next host if any owns
/// the next address on the wire).
fn next_hop(
    d: &Deployment,
    idx: &AddrIndex,
    from: HostId,
    dst: Ipv4Addr,
) -> Option<(usize, Option<HostId>, NetId)> {
    let h = &d.hosts[from];
    // Only interfaces with an IPv4 address route IPv4 (an IPv6-only
    // interface has no source address to send from).
    for (i, iface) in h.interfaces.iter().enumerate() {
        if iface.address.is_some()
            && d.networks[iface.network]
                .cidr
                .is_some_and(|c| c.contains(&dst))
        {
            let owner = idx.owner_on(iface.network, dst);
            return Some((i, owner, iface.network));
        }
    }
    let g = h.gateway?;
    for (i, iface) in h.interfaces.iter().enumerate() {
        if iface.address.is_some()
            && d.iface_on(g, iface.network)
                .is_some_and(|j| j.address.is_some())
        {
            return Some((i, Some(g), iface.network));
        }
    }
    None
}

/// Nobody on `net` answers for `dst`. When `dst` belongs to another network
/// inside `net`'s prefix, the cause is the overlap (the kernel's connected
/// route sends it onto `net`'s wire), so say so, naming both.
fn no_owner(d: &Deployment, net: NetId, dst: Ipv4Addr) -> String {
    let outer = &d.networks[net];
    match d
        .networks
        .iter()
        .filter_map(|n| Some((n, n.cidr?, outer.cidr?)))
        .filter(|(n, c, o)| n.name != outer.name && c.contains(&dst) && o.contains(c))
        .max_by_key(|(_, c, _)| c.prefix_len())
    {
        Some((inner, c, o)) if c.prefix_len() > o.prefix_len() => format!(
            "networks `{}` ({}) and `{}` ({}) overlap: {dst} is on `{}`, but a host on `{}` sends it out on `{}`'s wire, where no host has it; make the networks disjoint, or give the host a gateway and no interface on `{}`",
            outer.name, o, inner.name, c, inner.name, outer.name, outer.name, outer.name
        ),
        _ => format!("no host owns {dst} on network `{}`", outer.name),
    }
}

/// Walk from `from` toward `dst` as the kernel would. Returns hops after the origin,
/// or why it fails. `dnat`: a port forward to apply at a given router.
fn walk(
    d: &Deployment,
    idx: &AddrIndex,
    from: HostId,
    mut src: Ipv4Addr,
    dst: Ipv4Addr,
    dnat: Option<(HostId, Ipv4Addr)>,
) -> Result<(Hop, Vec<Hop>), String> {
    let (oi, next, net) = next_hop(d, idx, from, dst)
        .ok_or_else(|| format!("`{}` has no route to {dst}", d.hosts[from].name))?;
    let out_iface = &d.hosts[from].interfaces[oi];
    if src.is_unspecified() {
        src = out_iface.address.ok_or_else(|| {
            format!(
                "`{}` has no IPv4 address on {}",
                d.hosts[from].name, out_iface.name
            )
        })?;
    }
    let origin = Hop {
        host: from,
        kind: HopKind::Origin,
        in_iface: None,
        out_iface: Some(out_iface.name.clone()),
        src,
        dst,
        dnat_to: None,
        snat_to: None,
    };
    let hops = onward(d, idx, next, net, src, dst, dnat)?;
    Ok((origin, hops))
}

/// The hops after a packet from `src` to `dst` was put on network `net` for
/// `next` (the host that owns the next address on the wire, if any).
fn onward(
    d: &Deployment,
    idx: &AddrIndex,
    mut next: Option<HostId>,
    mut net: NetId,
    mut src: Ipv4Addr,
    mut dst: Ipv4Addr,
    dnat: Option<(HostId, Ipv4Addr)>,
) -> Result<Vec<Hop>, String> {
    let mut hops = Vec::new();
    loop {
        let here = next.ok_or_else(|| no_owner(d, net, dst))?;
        let in_iface = d.iface_on(here, net).map(|i| i.name.clone());
        let arrive_src = src;
        let arrive_dst = dst;
        let mut dnat_to = None;
        if let Some((r, to)) = dnat {
            if r == here
                && d.hosts[here]
                    .interfaces
                    .iter()
                    .any(|i| i.address == Some(dst))
            {
                dnat_to = Some(to);
                dst = to;
            }
        }
        if dnat_to.is_none()
            && d.hosts[here]
                .interfaces
                .iter()
                .any(|i| i.address == Some(dst))
        {
            hops.push(Hop {
                host: here,
                kind: HopKind::Destination,
                in_iface,
                out_iface: None,
                src: arrive_src,
                dst: arrive_dst,
                dnat_to: None,
                snat_to: None,
            });
            return Ok(hops);
        }
        if !d.hosts[here].roles.router {
            return Err(format!(
                "the path toward {dst} reaches `{}`, which does not forward packets",
                d.hosts[here].name
            ));
        }
        let (oi, nx, nnet) = next_hop(d, idx, here, dst)
            .ok_or_else(|| format!("router `{}` has no route to {dst}", d.hosts[here].name))?;
        let out = &d.hosts[here].interfaces[oi];
        // Masquerade: source inside `from`, leaving on the `to` network.
        let snat_to = d.hosts[here]
            .masquerade
            .iter()
            .find(|m| {
                m.to == out.network && d.networks[m.from].cidr.is_some_and(|c| c.contains(&src))
            })
            .and(out.address);
        hops.push(Hop {
            host: here,
            kind: HopKind::Forward,
            in_iface,
            out_iface: Some(out.name.clone()),
            src: arrive_src,
            dst: arrive_dst,
            dnat_to,
            snat_to,
        });
        if let Some(s) = snat_to {
            src = s;
        }
        next = nx;
        net = nnet;
        if hops.len() > 2 * d.hosts.len() + 2 {
            return Err(format!("routing loop toward {dst}"));
        }
    }
}

/// The route of one flow: direct if the responder is routable from the initiator,
/// else through a port forward on a masquerading router in front of the responder.
pub fn path(d: &Deployment, idx: &AddrIndex, flow: &Flow) -> Result<Path, RouteError> {
    let (i, r) = (flow.initiator, flow.responder);
    if i == r {
        let a = d.hosts[i]
            .interfaces
            .iter()
            .find_map(|x| x.address)
            .ok_or_else(|| RouteError {
                host: i,
                message: format!("`{}` has no IPv4 address", d.hosts[i].name),
            })?;
        return Ok(Path {
            target: a,
            hops: vec![Hop {
                host: i,
                kind: HopKind::Loopback,
                in_iface: Some("lo".into()),
                out_iface: Some("lo".into()),
                src: a,
                dst: a,
                dnat_to: None,
                snat_to: None,
            }],
        });
    }
    // Prefer an address on a network both share, then the responder's others in order.
    let mut candidates: Vec<Ipv4Addr> = Vec::new();
    for iface in &d.hosts[r].interfaces {
        if let (Some(a), Some(_)) = (iface.address, d.iface_on(i, iface.network)) {
            candidates.push(a);
        }
    }
    for a in d.hosts[r].interfaces.iter().filter_map(|x| x.address) {
        if !candidates.contains(&a) {
            candidates.push(a);
        }
    }
    let mut first_err = None;
    for addr in &candidates {
        match walk(d, idx, i, Ipv4Addr::UNSPECIFIED, *addr, None) {
            Ok((origin, hops)) if hops.last().map(|h| h.host) == Some(r) => {
                let mut all = vec![origin];
                all.extend(hops);
                let p = Path {
                    target: *addr,
                    hops: all,
                };
                check_reply(d, idx, &p).map_err(|m| RouteError {
                    host: r,
                    message: m,
                })?;
                return Ok(p);
            }
            Ok(_) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    // Port forward: a masquerading router whose inside reaches the responder and
    // whose outside address the initiator reaches.
    for (g, gw) in d
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.masquerade.is_empty())
    {
        if g == i || g == r {
            continue;
        }
        for m in &gw.masquerade {
            let Some(outside) = d.iface_on(g, m.to).and_then(|o| o.address) else {
                continue;
            };
            let ifs = &d.hosts[r].interfaces;
            let Some(inside_addr) = ifs
                .iter()
                .find(|x| x.network == m.from)
                .and_then(|x| x.address)
                .or_else(|| ifs.iter().find_map(|x| x.address))
            else {
                continue;
            };
            if let Ok((origin, hops)) = walk(
                d,
                idx,
                i,
                Ipv4Addr::UNSPECIFIED,
                outside,
                Some((g, inside_addr)),
            ) {
                if hops.last().map(|h| h.host) == Some(r)
                    && hops.iter().any(|h| h.host == g && h.dnat_to.is_some())
                {
                    let mut all = vec![origin];
                    all.extend(hops);
                    let p = Path {
                        target: outside,
                        hops: all,
                    };
                    check_reply(d, idx, &p).map_err(|m| RouteError {
                        host: r,
                        message: m,
                    })?;
                    return Ok(p);
                }
            }
        }
    }
    Err(RouteError {
        host: i,
        message: format!(
            "no route from `{}` to `{}` ({}), and no masquerading router offers a port forward",
            d.hosts[i].name,
            d.hosts[r].name,
            first_err.unwrap_or_else(|| "unreachable".into())
        ),
    })
}

/// One place where the management service must let the admins in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct MgmtHop {
    pub host: HostId,
    /// `Forward` (a router on the admins' way) or `Destination` (the managed host).
    pub kind: HopKind,
    /// Forward hops only: a Destination rule names no interface, as before.
    pub in_iface: Option<String>,
    pub out_iface: Option<String>,
    /// The admins' addresses as this hop sees them: the `from` prefix, or the
    /// masquerading router's address once NAT rewrote the source.
    pub src: Ipv4Net,
    /// Forward hops: the managed host's address.
    pub dst: Option<Ipv4Addr>,
}

/// Every hop of the admins' way from each `[management] from` prefix to every
/// host, per host (index = `HostId`), so management follows routing and NAT
/// like an Amanda flow: a host behind a masquerading router sees the admins
/// of the LAN as the router's outer address, and the routers between must
/// forward them.
///
/// The admins are machines amwall does not know, so a prefix inside a
/// topology network is sent the way that network's hosts send: to the
/// gateways its (non-router) hosts use, or, when none says, to each router on
/// it. A prefix inside no network, a host on the admins' own network, or a
/// host the admins cannot reach that way keeps the prefix as it is (what
/// amwall did before: the rule is no worse than the admin's own `from`).
/// Empty `from` (open from anywhere) needs no hops: the rule accepts any source.
pub fn management(d: &Deployment, idx: &AddrIndex) -> Vec<Vec<MgmtHop>> {
    let mut out: Vec<Vec<MgmtHop>> = vec![Vec::new(); d.hosts.len()];
    if !d.management.enabled {
        return out;
    }
    // Hop lists of routers grow with the hosts behind them: dedup by hash.
    let mut seen: std::collections::HashSet<MgmtHop> = std::collections::HashSet::new();
    let mut push = |m: MgmtHop, out: &mut Vec<Vec<MgmtHop>>| {
        if seen.insert(m.clone()) {
            out[m.host].push(m);
        }
    };
    for &p in &d.management.from {
        // The most specific network the admins' prefix lies in, and the
        // routers its hosts send through (once per prefix, not per host).
        let net = (0..d.networks.len())
            .filter(|&n| {
                d.networks[n]
                    .cidr
                    .is_some_and(|c| c.prefix_len() <= p.prefix_len() && c.contains(&p.network()))
            })
            .max_by_key(|&n| d.networks[n].cidr.map(|c| c.prefix_len()))
            .filter(|_| p.prefix_len() > 0);
        let gateways: Vec<HostId> = match net {
            None => Vec::new(),
            Some(net) => {
                let on_net = |x: &crate::model::Host| x.interfaces.iter().any(|i| i.network == net);
                let mut g: Vec<HostId> = d
                    .hosts
                    .iter()
                    .filter(|x| !x.roles.router && on_net(x))
                    .filter_map(|x| x.gateway)
                    .filter(|&g| d.iface_on(g, net).is_some())
                    .collect();
                if g.is_empty() {
                    g = (0..d.hosts.len())
                        .filter(|&r| d.hosts[r].roles.router && d.iface_on(r, net).is_some())
                        .collect();
                }
                g.sort_unstable();
                g.dedup();
                g
            }
        };
        let src = p.network();
        let seen_as = |a: Ipv4Addr| {
            if a == src {
                p
            } else {
                Ipv4Net::new(a, 32).expect("/32")
            }
        };
        for (h, host) in d.hosts.iter().enumerate() {
            let direct = MgmtHop {
                host: h,
                kind: HopKind::Destination,
                in_iface: None,
                out_iface: None,
                src: p,
                dst: None,
            };
            let Some(net) = net.filter(|&n| d.iface_on(h, n).is_none()) else {
                push(direct, &mut out);
                continue;
            };
            let mut found = false;
            for &g in gateways.iter().filter(|&&g| g != h) {
                for dst in host.interfaces.iter().filter_map(|i| i.address) {
                    // The admin puts the packet on its own wire: on-link when the
                    // network holds `dst`, else to its gateway.
                    let next = if d.networks[net].cidr.is_some_and(|c| c.contains(&dst)) {
                        idx.owner_on(net, dst)
                    } else {
                        Some(g)
                    };
                    let Ok(hops) = onward(d, idx, next, net, src, dst, None) else {
                        continue;
                    };
                    if hops.last().map(|x| (x.host, x.kind)) != Some((h, HopKind::Destination)) {
                        continue;
                    }
                    for hop in hops {
                        let m = match hop.kind {
                            HopKind::Forward => MgmtHop {
                                host: hop.host,
                                kind: HopKind::Forward,
                                in_iface: hop.in_iface,
                                out_iface: hop.out_iface,
                                src: seen_as(hop.src),
                                dst: Some(hop.dst),
                            },
                            _ => MgmtHop {
                                src: seen_as(hop.src),
                                ..direct.clone()
                            },
                        };
                        push(m, &mut out);
                    }
                    found = true;
                    break;
                }
            }
            if !found {
                push(direct, &mut out);
            }
        }
    }
    out
}

/// Replies must come back through the same routers: conntrack (and any NAT) lives
/// there, and a router that sees only replies would drop them as not ESTABLISHED.
fn check_reply(d: &Deployment, idx: &AddrIndex, p: &Path) -> Result<(), String> {
    let forward: Vec<HostId> = p.hops.iter().map(|h| h.host).collect();
    let mut expected: Vec<HostId> = forward.clone();
    expected.reverse();
    let last = p.last();
    // The reply leaves the responder addressed to the source it saw; each router
    // undoes its own SNAT, so after it the reply heads for the pre-NAT source.
    let mut seen = vec![last.host];
    let mut from = last.host;
    let mut dst = last.src;
    loop {
        let (_, pos_hops) = walk(d, idx, from, Ipv4Addr::UNSPECIFIED, dst, None).map_err(|e| {
            format!(
                "replies from `{}` cannot return: {e}",
                d.hosts[last.host].name
            )
        })?;
        for h in &pos_hops {
            seen.push(h.host);
        }
        let end = pos_hops.last().expect("walk ends at a destination").host;
        if end == p.hops[0].host {
            break;
        }
        // `end` owns `dst`: it must be the router that masqueraded; continue to the original source.
        match p
            .hops
            .iter()
            .find(|h| h.host == end && h.snat_to == Some(dst))
        {
            Some(h) => {
                from = end;
                dst = h.src;
            }
            None => {
                return Err(format!(
                    "replies from `{}` end at `{}`",
                    d.hosts[last.host].name, d.hosts[end].name
                ))
            }
        }
    }
    seen.dedup();
    if seen != expected {
        let names = |v: &[HostId]| {
            v.iter()
                .map(|&h| d.hosts[h].name.as_str())
                .collect::<Vec<_>>()
                .join(" → ")
        };
        return Err(format!(
            "asymmetric route: requests go {} but replies go {}; stateful firewalls on the way would drop them (check the gateways)",
            names(&forward),
            names(&seen)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::{flows, Operation};
    use crate::load::load_str;

    const WIKI: &str = include_str!("../examples/wiki.toml");

    fn wiki() -> Deployment {
        load_str("wiki.toml", WIKI.to_string()).unwrap()
    }

    /// docs/design.md lab: RHost always saw FWHost's public address (masquerade).
    #[test]
    fn server_to_remote_client_is_masqueraded() {
        let d = wiki();
        let fs = flows(&d);
        let rh = d.host_by_name("rhost").unwrap();
        let f = fs
            .iter()
            .find(|f| f.responder == rh && f.operation == Operation::Check)
            .unwrap();
        let p = path(&d, &AddrIndex::new(&d), f).unwrap();
        let names: Vec<_> = p
            .hops
            .iter()
            .map(|h| d.hosts[h.host].name.as_str())
            .collect();
        assert_eq!(names, ["tshost", "fwhost", "rhost"]);
        assert_eq!(p.last().src.to_string(), "1.2.3.4");
        assert_eq!(p.hops[1].snat_to.unwrap().to_string(), "1.2.3.4");
    }

    /// The wiki's admins on the LAN reach RHost as FWHost's 1.2.3.4, after
    /// FWHost forwarded them; the LAN's own hosts see the LAN prefix.
    #[test]
    fn management_follows_the_masquerade() {
        let d = wiki();
        let m = management(&d, &AddrIndex::new(&d));
        let lan: Ipv4Net = "192.168.2.0/24".parse().unwrap();
        let at = |h: &str| -> Vec<&MgmtHop> { m[d.host_by_name(h).unwrap()].iter().collect() };
        for h in ["tshost", "lhost"] {
            assert_eq!(at(h).len(), 1, "{h}: {m:?}");
            assert_eq!((at(h)[0].kind, at(h)[0].src), (HopKind::Destination, lan));
        }
        let rhost = at("rhost");
        assert_eq!(rhost.len(), 1, "{m:?}");
        assert_eq!(rhost[0].src.to_string(), "1.2.3.4/32");
        let fw = at("fwhost");
        assert!(fw
            .iter()
            .any(|x| x.kind == HopKind::Destination && x.src == lan));
        let fwd: Vec<_> = fw.iter().filter(|x| x.kind == HopKind::Forward).collect();
        assert_eq!(fwd.len(), 1, "{m:?}");
        assert_eq!(
            (
                fwd[0].in_iface.as_deref(),
                fwd[0].out_iface.as_deref(),
                fwd[0].src,
                fwd[0].dst
            ),
            (
                Some("eth0"),
                Some("eth1"),
                lan,
                Some(Ipv4Addr::new(2, 3, 4, 5))
            )
        );
    }

    /// A prefix outside every network (and "anywhere") stays as written.
    #[test]
    fn management_prefix_outside_the_topology_is_kept() {
        let text = WIKI
            .replace("from = [\"lan\"]", "from = [\"10.9.0.0/16\"]")
            .replace("cidr = \"0.0.0.0/0\"", "cidr = \"1.0.0.0/8\"");
        let text = text.replace("address = \"2.3.4.5\"", "address = \"1.3.4.5\"");
        let d = load_str("w.toml", text).unwrap();
        let m = management(&d, &AddrIndex::new(&d));
        assert!(m.iter().all(|v| v.len() == 1), "{m:?}");
        assert!(
            m.iter()
                .flatten()
                .all(|x| x.kind == HopKind::Destination && x.src.to_string() == "10.9.0.0/16"),
            "{m:?}"
        );
    }

    /// docs/design.md lab: amrecover on RHost reaches TSHost through a DNAT on FWHost; TSHost
    /// sees RHost's real address.
    #[test]
    fn remote_recovery_goes_through_a_port_forward() {
        let d = wiki();
        let fs = flows(&d);
        let rh = d.host_by_name("rhost").unwrap();
        let f = fs
            .iter()
            .find(|f| f.initiator == rh && f.operation == Operation::Recover)
            .unwrap();
        let p = path(&d, &AddrIndex::new(&d), f).unwrap();
        assert_eq!(p.target.to_string(), "1.2.3.4");
        assert_eq!(p.hops[1].dnat_to.unwrap().to_string(), "192.168.2.2");
        assert_eq!(p.last().src.to_string(), "2.3.4.5");
        assert_eq!(p.hops[1].in_iface.as_deref(), Some("eth1"));
    }

    #[test]
    fn lan_flows_are_direct() {
        let d = wiki();
        let fs = flows(&d);
        let lh = d.host_by_name("lhost").unwrap();
        let f = fs.iter().find(|f| f.responder == lh).unwrap();
        let p = path(&d, &AddrIndex::new(&d), f).unwrap();
        assert_eq!(p.hops.len(), 2);
        assert_eq!(p.last().src.to_string(), "192.168.2.2");
    }
}
