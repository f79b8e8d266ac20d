//! IPv6-only paths: flows to or from a host that has no IPv4 address, where
//! the Amanda build speaks IPv6. The kernel's rules are the same as for
//! IPv4 (a connected prefix first, else the gateway), but there is no NAT:
//! amwall does not model NAT66 (the model refuses masquerade without IPv4),
//! so every hop sees the ends' own global addresses and a responder behind
//! a router is reached at its own address, never through a port forward.

use std::net::Ipv6Addr;

use serde::Serialize;

use super::{HopKind, RouteError};
use crate::flows::Flow;
use crate::model::{Deployment, HostId, NetId};

/// One host on an IPv6-only flow's way; the addresses never change on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop6 {
    pub host: HostId,
    pub kind: HopKind,
    pub in_iface: Option<String>,
    pub out_iface: Option<String>,
}

/// An IPv6-only flow's route: the initiator's source address, the
/// responder's address it connects to, and the hosts between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Path6 {
    pub src: Ipv6Addr,
    pub target: Ipv6Addr,
    pub hops: Vec<Hop6>,
}

impl Path6 {
    pub fn routers(&self) -> impl Iterator<Item = &Hop6> {
        self.hops.iter().filter(|h| h.kind == HopKind::Forward)
    }
}

/// Where an IPv6 packet for `dst` leaves `from`: (interface index, next
/// host, network). Only interfaces with a global IPv6 address route it.
fn next_hop6(
    d: &Deployment,
    from: HostId,
    dst: Ipv6Addr,
) -> Option<(usize, Option<HostId>, NetId)> {
    let h = &d.hosts[from];
    let v6 = |i: &crate::model::Interface| i.address6.is_some();
    for (k, i) in h.interfaces.iter().enumerate().filter(|(_, i)| v6(i)) {
        if d.networks[i.network]
            .cidr6
            .is_some_and(|c| c.contains(&dst))
        {
            let owner = (0..d.hosts.len()).find(|&o| {
                d.iface_on(o, i.network)
                    .is_some_and(|j| j.address6 == Some(dst))
            });
            return Some((k, owner, i.network));
        }
    }
    let g = h.gateway?;
    h.interfaces
        .iter()
        .enumerate()
        .filter(|(_, i)| v6(i))
        .find(|(_, i)| d.iface_on(g, i.network).is_some_and(v6))
        .map(|(k, i)| (k, Some(g), i.network))
}

/// The hops from `from` (source address `src`) to whoever owns `dst`.
fn walk6(d: &Deployment, from: HostId, dst: Ipv6Addr) -> Result<(Ipv6Addr, Vec<Hop6>), String> {
    let (k, mut next, mut net) = next_hop6(d, from, dst)
        .ok_or_else(|| format!("`{}` has no IPv6 route to {dst}", d.hosts[from].name))?;
    let out = &d.hosts[from].interfaces[k];
    let src = out
        .address6
        .expect("next_hop6 only picks interfaces with IPv6");
    let mut hops = vec![Hop6 {
        host: from,
        kind: HopKind::Origin,
        in_iface: None,
        out_iface: Some(out.name.clone()),
    }];
    loop {
        let here =
            next.ok_or_else(|| format!("no host has {dst} on network `{}`", d.networks[net].name))?;
        let in_iface = d.iface_on(here, net).map(|i| i.name.clone());
        if d.hosts[here]
            .interfaces
            .iter()
            .any(|i| i.address6 == Some(dst))
        {
            hops.push(Hop6 {
                host: here,
                kind: HopKind::Destination,
                in_iface,
                out_iface: None,
            });
            return Ok((src, hops));
        }
        if !d.hosts[here].roles.router {
            return Err(format!(
                "the IPv6 path toward {dst} reaches `{}`, which does not forward packets",
                d.hosts[here].name
            ));
        }
        let (k, nx, nnet) = next_hop6(d, here, dst)
            .ok_or_else(|| format!("router `{}` has no IPv6 route to {dst}", d.hosts[here].name))?;
        hops.push(Hop6 {
            host: here,
            kind: HopKind::Forward,
            in_iface,
            out_iface: Some(d.hosts[here].interfaces[k].name.clone()),
        });
        (next, net) = (nx, nnet);
        if hops.len() > d.hosts.len() + 2 {
            return Err(format!("IPv6 routing loop toward {dst}"));
        }
    }
}

/// The IPv6-only route of `flow`: to the responder's IPv6 address on a
/// network both share, else its others in order; the replies must come
/// back through the same routers (stateful rules see both ways), else an
/// error naming the host.
pub fn path6(d: &Deployment, flow: &Flow) -> Result<Path6, RouteError> {
    let (i, r) = (flow.initiator, flow.responder);
    let ifs = &d.hosts[r].interfaces;
    if i == r {
        // Stays on `lo`, which every policy accepts.
        if let Some(a) = ifs.iter().find_map(|x| x.address6) {
            let hop = Hop6 {
                host: i,
                kind: HopKind::Loopback,
                in_iface: Some("lo".into()),
                out_iface: Some("lo".into()),
            };
            return Ok(Path6 {
                src: a,
                target: a,
                hops: vec![hop],
            });
        }
    }
    let shared = ifs.iter().filter(|x| d.iface_on(i, x.network).is_some());
    let others = ifs.iter().filter(|x| d.iface_on(i, x.network).is_none());
    let mut first_err = None;
    for target in shared.chain(others).filter_map(|x| x.address6) {
        match walk6(d, i, target) {
            Ok((src, hops)) if hops.last().map(|h| h.host) == Some(r) => {
                let there: Vec<HostId> = hops.iter().map(|h| h.host).collect();
                let back = walk6(d, r, src)
                    .map(|(_, b)| b.iter().rev().map(|h| h.host).collect::<Vec<_>>());
                if back.as_ref() != Ok(&there) {
                    return Err(RouteError {
                        host: r,
                        message: format!(
                            "replies from `{}` over IPv6 cannot return the way `{}`'s packets came",
                            d.hosts[r].name, d.hosts[i].name
                        ),
                    });
                }
                return Ok(Path6 { src, target, hops });
            }
            Ok(_) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(RouteError {
        host: i,
        message: format!(
            "no IPv6 route from `{}` to `{}` ({}); with no IPv4 at one end, the flow can only go over IPv6, which amwall routes without NAT66",
            d.hosts[i].name,
            d.hosts[r].name,
            first_err.unwrap_or_else(|| format!("`{}` has no IPv6 address", d.hosts[r].name))
        ),
    })
}
