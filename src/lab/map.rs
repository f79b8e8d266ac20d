//! The lab never uses a topology's own addresses: every network is mapped onto
//! the documentation ranges (RFC 5737: 192.0.2.0/24, 198.51.100.0/24,
//! 203.0.113.0/24), and the rules are planned again for the mapped copy.
//!
//! Three networks or fewer each get a whole /24 and keep their hosts' last
//! octets where they fit (192.168.2.3 → 192.0.2.3), so the lab reads like the
//! topology. More networks get the smallest aligned block that holds their
//! hosts (first fit, largest first). A network such as the wiki's
//! `internet = 0.0.0.0/0` becomes one small documentation prefix like any other.
//!
//! IPv6: every network gets a /64 of the lab's own block [`LAB6`] (inside
//! RFC 3849's 2001:db8::/32), network n the n-th (`2001:db8:1ab:n::/64`),
//! whether or not the topology gives it a `cidr6`: a real host has IPv6 on
//! every link (link-local at least), and a service listening on `::` answers
//! there, so the lab probes IPv6 on every link. An interface keeps the host
//! part of its `address6` where it fits in 64 bits; one without `address6`
//! takes its mapped IPv4 host part (192.0.2.3 → 2001:db8:1ab::3), else the
//! next free one. Only what the topology says goes into the mapped
//! deployment (its `cidr6` and `address6`, and `[management]`'s IPv6
//! prefixes, mapped as the IPv4 ones are), so the mapped plan's rules are the
//! original's; the lab's own addresses live in `Mapping::addresses6`.
//!
//! An IPv6-only network (no `cidr`) gets no IPv4 block at all, only its
//! /64, and the IPv4 allocation above runs over the other networks alone,
//! so adding one leaves every IPv4 mapping as it was.
//!
//! Invariants: every mapped address and prefix lies inside the three ranges;
//! mapped networks never overlap; host, network and interface order, names and
//! ids are unchanged, so flows and paths of the mapped plan correspond one to
//! one to the original's (checked by `Mapping::new`).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

use crate::model::{Deployment, NetId};
use crate::route::Path;
use crate::Plan;

/// RFC 5737 TEST-NET-1, -2 and -3: the only addresses the lab ever uses.
pub const DOC_RANGES: [Ipv4Net; 3] = [
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 2, 0), 24),
    Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 0), 24),
    Ipv4Net::new_assert(Ipv4Addr::new(203, 0, 113, 0), 24),
];

/// Is `a` inside the documentation ranges?
pub fn is_doc(a: Ipv4Addr) -> bool {
    DOC_RANGES.iter().any(|r| r.contains(&a))
}

/// RFC 3849's IPv6 documentation prefix: the only IPv6 addresses the lab uses.
pub const DOC6: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32);

/// The lab's IPv6 networks: network n is `2001:db8:1ab:n::/64`.
pub const LAB6: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0x1ab, 0, 0, 0, 0, 0), 48);

/// Where management prefixes that cover no lab network go (`2001:db8:1ac:k::/64`):
/// outside [`LAB6`], so no lab host lives there.
const SPARE6: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0x1ac, 0, 0, 0, 0, 0), 48);

/// Is `a` inside 2001:db8::/32?
pub fn is_doc6(a: Ipv6Addr) -> bool {
    DOC6.contains(&a)
}

/// Why a topology cannot be mapped onto the documentation ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError(pub String);

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One network's old and new prefix.
#[derive(Debug, Clone, Serialize)]
pub struct NetMap {
    pub name: String,
    /// None on an IPv6-only network (module doc), both or neither.
    pub original: Option<Ipv4Net>,
    pub mapped: Option<Ipv4Net>,
    /// The topology's `cidr6`; None: the link is IPv4-only in the topology
    /// and `mapped6` is the lab's own.
    pub original6: Option<Ipv6Net>,
    pub mapped6: Ipv6Net,
}

/// The mapped deployment and how it relates to the original.
#[derive(Debug, Clone, Serialize)]
pub struct Mapping {
    pub networks: Vec<NetMap>,
    /// Per host, per interface: (original, mapped) address; None for an
    /// interface without IPv4.
    pub addresses: Vec<Vec<Option<(Ipv4Addr, Ipv4Addr)>>>,
    /// Per host, per interface: (the topology's `address6`, the lab's IPv6
    /// address), every interface having one (module doc).
    pub addresses6: Vec<Vec<(Option<Ipv6Addr>, Ipv6Addr)>>,
}

impl Mapping {
    /// Map `d` onto the documentation ranges; returns the mapping and the mapped
    /// deployment (same hosts, ids and names; new prefixes and addresses).
    pub fn new(d: &Deployment) -> Result<(Mapping, Deployment), MapError> {
        let counts: Vec<usize> = (0..d.networks.len())
            .map(|n| {
                d.hosts
                    .iter()
                    .flat_map(|h| &h.interfaces)
                    .filter(|i| i.network == n && i.address.is_some())
                    .count()
            })
            .collect();
        let prefixes = allocate(d, &counts)?;
        let mut m = d.clone();
        let mut addresses = Vec::with_capacity(d.hosts.len());
        for (n, net) in m.networks.iter_mut().enumerate() {
            net.cidr = prefixes[n];
        }
        // Per network: keep the host part where it fits, else the next free one.
        let mut used: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); d.networks.len()];
        let mut chosen: Vec<Vec<Option<Ipv4Addr>>> = d
            .hosts
            .iter()
            .map(|h| vec![None; h.interfaces.len()])
            .collect();
        let size = |p: Ipv4Net| 1u32 << (32 - p.prefix_len());
        for (h, host) in d.hosts.iter().enumerate() {
            for (k, iface) in host.interfaces.iter().enumerate() {
                let (Some(a), Some(old), Some(new)) = (
                    iface.address,
                    d.networks[iface.network].cidr,
                    prefixes[iface.network],
                ) else {
                    continue;
                };
                let off = u32::from(a) - u32::from(old.network());
                if off > 0 && off < size(new) - 1 && used[iface.network].insert(off) {
                    chosen[h][k] = Some(Ipv4Addr::from(u32::from(new.network()) + off));
                }
            }
        }
        for (h, host) in d.hosts.iter().enumerate() {
            for (k, iface) in host.interfaces.iter().enumerate() {
                if chosen[h][k].is_some() || iface.address.is_none() {
                    continue;
                }
                let Some(new) = prefixes[iface.network] else {
                    continue; // validated: no IPv4 address on an IPv6-only network
                };
                let off = (1..size(new) - 1)
                    .find(|o| !used[iface.network].contains(o))
                    .expect("allocate() sized every network for its hosts");
                used[iface.network].insert(off);
                chosen[h][k] = Some(Ipv4Addr::from(u32::from(new.network()) + off));
            }
        }
        for (h, host) in m.hosts.iter_mut().enumerate() {
            let mut pairs = Vec::new();
            for (k, iface) in host.interfaces.iter_mut().enumerate() {
                pairs.push(iface.address.zip(chosen[h][k]));
                iface.address = chosen[h][k];
            }
            addresses.push(pairs);
        }
        m.management.from = map_management(d, &prefixes, &addresses)?;
        let prefixes6 = allocate6(d)?;
        let addresses6 = map_addresses6(d, &prefixes6, &addresses);
        for (n, net) in m.networks.iter_mut().enumerate() {
            net.cidr6 = net.cidr6.map(|_| prefixes6[n]);
        }
        for (host, pairs) in m.hosts.iter_mut().zip(&addresses6) {
            for (iface, (_, new)) in host.interfaces.iter_mut().zip(pairs) {
                iface.address6 = iface.address6.map(|_| *new);
            }
        }
        m.management.from6 = map_management6(d, &prefixes6, &addresses6);
        let mapping = Mapping {
            networks: d
                .networks
                .iter()
                .zip(prefixes.iter().zip(&prefixes6))
                .map(|(n, (p, p6))| NetMap {
                    name: n.name.clone(),
                    original: n.cidr,
                    mapped: *p,
                    original6: n.cidr6,
                    mapped6: *p6,
                })
                .collect(),
            addresses,
            addresses6,
        };
        Ok((mapping, m))
    }

    /// The lab's IPv6 address of each host's interfaces (module doc).
    pub fn lab6(&self) -> Vec<Vec<Ipv6Addr>> {
        self.addresses6
            .iter()
            .map(|v| v.iter().map(|(_, a)| *a).collect())
            .collect()
    }

    /// The original address behind a mapped one, if a host owns it.
    pub fn original_of(&self, mapped: Ipv4Addr) -> Option<Ipv4Addr> {
        self.addresses
            .iter()
            .flatten()
            .flatten()
            .find(|(_, m)| *m == mapped)
            .map(|(o, _)| *o)
    }
}

/// Management prefixes: a network's own prefix becomes its mapped prefix; any other
/// prefix becomes the mapped networks and host addresses it covers; a prefix that
/// covers nothing in the topology gets a spare block of its own (nothing in the lab
/// lives there, which is the truth: no modelled host may manage from it).
fn map_management(
    d: &Deployment,
    prefixes: &[Option<Ipv4Net>],
    addresses: &[Vec<Option<(Ipv4Addr, Ipv4Addr)>>],
) -> Result<Vec<Ipv4Net>, MapError> {
    let mut out: Vec<Ipv4Net> = Vec::new();
    let push = |n: Ipv4Net, out: &mut Vec<Ipv4Net>| {
        if !out.contains(&n) {
            out.push(n)
        }
    };
    for p in &d.management.from {
        if let Some(new) = d
            .networks
            .iter()
            .position(|n| n.cidr == Some(*p))
            .and_then(|n| prefixes[n])
        {
            push(new, &mut out);
            continue;
        }
        let before = out.len();
        let covered_nets: Vec<NetId> = (0..d.networks.len())
            .filter(|&n| d.networks[n].cidr.is_some_and(|c| p.contains(&c)))
            .collect();
        for &n in &covered_nets {
            push(
                prefixes[n].expect("a network with a cidr has a lab block"),
                &mut out,
            );
        }
        for (h, host) in d.hosts.iter().enumerate() {
            for (k, iface) in host.interfaces.iter().enumerate() {
                if let Some((old, new)) = addresses[h][k] {
                    if p.contains(&old) && !covered_nets.contains(&iface.network) {
                        push(Ipv4Net::new_assert(new, 32), &mut out);
                    }
                }
            }
        }
        if out.len() == before {
            let used: Vec<Ipv4Net> = prefixes.iter().flatten().copied().collect();
            let spare = spare_block(&used, &out).ok_or_else(|| {
                MapError(format!(
                    "no documentation block left for the management prefix {p}"
                ))
            })?;
            push(spare, &mut out);
        }
    }
    Ok(out)
}

/// Network n's lab prefix: the n-th /64 of [`LAB6`]; more networks than
/// that block has /64s (65,536) cannot be mapped.
fn allocate6(d: &Deployment) -> Result<Vec<Ipv6Net>, MapError> {
    let n = d.networks.len();
    if n > 1 << 16 {
        return Err(MapError(format!(
            "the lab gives every network a /64 of {LAB6} (65536 of them); {n} networks do not fit"
        )));
    }
    let base = u128::from(LAB6.network());
    Ok((0..n)
        .map(|i| Ipv6Net::new_assert(Ipv6Addr::from(base + ((i as u128) << 64)), 64))
        .collect())
}

/// Every interface's lab IPv6 address: the host part of its `address6` where
/// that fits in 64 bits and is free, else its mapped IPv4 host part, else the
/// next free one (module doc).
fn map_addresses6(
    d: &Deployment,
    prefixes6: &[Ipv6Net],
    addresses: &[Vec<Option<(Ipv4Addr, Ipv4Addr)>>],
) -> Vec<Vec<(Option<Ipv6Addr>, Ipv6Addr)>> {
    let mut used: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); d.networks.len()];
    let mut chosen: Vec<Vec<Option<u64>>> = d
        .hosts
        .iter()
        .map(|h| vec![None; h.interfaces.len()])
        .collect();
    // The topology's own host parts first, so they keep theirs.
    for (h, host) in d.hosts.iter().enumerate() {
        for (k, iface) in host.interfaces.iter().enumerate() {
            let net = iface.network;
            let (Some(a), Some(p)) = (iface.address6, d.networks[net].cidr6) else {
                continue;
            };
            let off = u128::from(a) - u128::from(p.network());
            if let Ok(off) = u64::try_from(off) {
                if off > 0 && used[net].insert(off) {
                    chosen[h][k] = Some(off);
                }
            }
        }
    }
    for (h, host) in d.hosts.iter().enumerate() {
        for (k, iface) in host.interfaces.iter().enumerate() {
            if chosen[h][k].is_some() {
                continue;
            }
            let net = iface.network;
            let v4_off = addresses[h][k].map_or(0, |(_, v4)| u64::from(u32::from(v4) & 0xff));
            let off = if v4_off > 0 && !used[net].contains(&v4_off) {
                v4_off
            } else {
                (1u64..)
                    .find(|o| !used[net].contains(o))
                    .expect("a /64 has room")
            };
            used[net].insert(off);
            chosen[h][k] = Some(off);
        }
    }
    d.hosts
        .iter()
        .zip(chosen)
        .map(|(host, offs)| {
            host.interfaces
                .iter()
                .zip(offs)
                .map(|(iface, off)| {
                    let base = u128::from(prefixes6[iface.network].network());
                    let off = off.expect("every interface was given an IPv6 address");
                    (iface.address6, Ipv6Addr::from(base + u128::from(off)))
                })
                .collect()
        })
        .collect()
}

/// `[management]`'s IPv6 prefixes, as `map_management` maps the IPv4 ones:
/// a network's `cidr6` becomes its lab /64; a prefix covering networks or
/// addresses becomes theirs; one covering nothing, a spare /64 outside the
/// lab's networks.
fn map_management6(
    d: &Deployment,
    prefixes6: &[Ipv6Net],
    addresses6: &[Vec<(Option<Ipv6Addr>, Ipv6Addr)>],
) -> Vec<Ipv6Net> {
    let mut out: Vec<Ipv6Net> = Vec::new();
    let push = |n: Ipv6Net, out: &mut Vec<Ipv6Net>| {
        if !out.contains(&n) {
            out.push(n)
        }
    };
    let mut spare = 0u128;
    for p in &d.management.from6 {
        let before = out.len();
        let covered: Vec<NetId> = (0..d.networks.len())
            .filter(|&n| d.networks[n].cidr6.is_some_and(|c| p.contains(&c)))
            .collect();
        for &n in &covered {
            push(prefixes6[n], &mut out);
        }
        for (h, host) in d.hosts.iter().enumerate() {
            for (k, iface) in host.interfaces.iter().enumerate() {
                if let (Some(a), false) = (iface.address6, covered.contains(&iface.network)) {
                    if p.contains(&a) {
                        push(Ipv6Net::new_assert(addresses6[h][k].1, 128), &mut out);
                    }
                }
            }
        }
        if out.len() == before {
            let base = u128::from(SPARE6.network()) + (spare << 64);
            spare += 1;
            push(Ipv6Net::new_assert(Ipv6Addr::from(base), 64), &mut out);
        }
    }
    out
}

/// A free /30 inside the documentation ranges, outside every used prefix.
fn spare_block(used_nets: &[Ipv4Net], used_more: &[Ipv4Net]) -> Option<Ipv4Net> {
    for r in DOC_RANGES {
        for b in r.subnets(30).ok()? {
            if !used_nets.iter().chain(used_more).any(|u| overlaps(*u, b)) {
                return Some(b);
            }
        }
    }
    None
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A prefix per network with IPv4 inside the documentation ranges (None
/// for an IPv6-only network), or why they cannot fit.
fn allocate(d: &Deployment, counts: &[usize]) -> Result<Vec<Option<Ipv4Net>>, MapError> {
    let v4: Vec<NetId> = (0..d.networks.len())
        .filter(|&i| d.networks[i].cidr.is_some())
        .collect();
    let mut all = vec![None; d.networks.len()];
    let nets: Vec<&crate::model::Network> = v4.iter().map(|&i| &d.networks[i]).collect();
    let counts4: Vec<usize> = v4.iter().map(|&i| counts[i]).collect();
    for (p, &i) in allocate4(&nets, &counts4)?.into_iter().zip(&v4) {
        all[i] = Some(p);
    }
    Ok(all)
}

/// `allocate` over networks that all have IPv4.
fn allocate4(nets: &[&crate::model::Network], counts: &[usize]) -> Result<Vec<Ipv4Net>, MapError> {
    let n = nets.len();
    // Smallest prefix with room for the hosts plus network and broadcast address.
    let need = |c: usize| -> u8 {
        let mut len = 30u8;
        while len > 0 && (1usize << (32 - len)) < c + 2 {
            len -= 1;
        }
        len
    };
    let too_big: Vec<String> = nets
        .iter()
        .zip(counts)
        .filter(|(_, &c)| need(c) < 24)
        .map(|(net, c)| format!("`{}` has {c} interfaces", net.name))
        .collect();
    if !too_big.is_empty() {
        return Err(MapError(format!(
            "the lab maps every network onto one of the documentation ranges {}, {} and {} (each a /24, at most 254 hosts); {} does not fit",
            DOC_RANGES[0], DOC_RANGES[1], DOC_RANGES[2],
            too_big.join(", ")
        )));
    }
    if n <= DOC_RANGES.len() {
        return Ok(DOC_RANGES[..n].to_vec());
    }
    // Largest first, then file order; first fit in aligned blocks.
    let mut order: Vec<NetId> = (0..n).collect();
    order.sort_by_key(|&i| (need(counts[i]), i));
    let mut out: Vec<Option<Ipv4Net>> = vec![None; n];
    let mut used: Vec<Ipv4Net> = Vec::new();
    for i in order {
        let len = need(counts[i]);
        let block = DOC_RANGES.iter().find_map(|r| {
            r.subnets(len)
                .ok()?
                .find(|b| !used.iter().any(|u| overlaps(*u, *b)))
        });
        match block {
            Some(b) => {
                used.push(b);
                out[i] = Some(b);
            }
            None => {
                let total: usize = counts.iter().map(|&c| 1usize << (32 - need(c))).sum();
                return Err(MapError(format!(
                    "the lab maps every network onto the documentation ranges {}, {} and {} (768 addresses); these {n} networks need {total} addresses in aligned blocks, which do not fit (network `{}` found no free /{len})",
                    DOC_RANGES[0], DOC_RANGES[1], DOC_RANGES[2], nets[i].name
                )));
            }
        }
    }
    Ok(out.into_iter().map(|p| p.expect("all allocated")).collect())
}

/// The mapped plan must route every flow as the original does: same hosts, same
/// kinds of hop, NAT at the same places. Anything else means the mapping changed
/// the topology's meaning (e.g. overlapping original prefixes that routed by
/// accident), and the lab would prove the wrong thing.
pub fn same_shape(original: &Plan, mapped: &Plan) -> Result<(), MapError> {
    if original.flows.len() != mapped.flows.len() {
        return Err(MapError(format!(
            "the mapped topology has {} flows, the original {}",
            mapped.flows.len(),
            original.flows.len()
        )));
    }
    let shape = |p: &Path| -> Vec<(usize, String, bool, bool)> {
        p.hops
            .iter()
            .map(|h| {
                (
                    h.host,
                    format!("{:?}", h.kind),
                    h.dnat_to.is_some(),
                    h.snat_to.is_some(),
                )
            })
            .collect()
    };
    for (i, (a, b)) in original.paths.iter().zip(&mapped.paths).enumerate() {
        if shape(a) != shape(b) {
            let d = &original.deployment;
            let names = |p: &Path| {
                p.hops
                    .iter()
                    .map(|h| d.hosts[h.host].name.as_str())
                    .collect::<Vec<_>>()
                    .join(" → ")
            };
            return Err(MapError(format!(
                "flow {} routes differently once mapped to documentation addresses ({} instead of {}); do networks overlap in the topology?",
                i + 1,
                names(b),
                names(a)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_str;

    const WIKI: &str = include_str!("../../examples/wiki.toml");

    #[test]
    fn wiki_maps_to_documentation_ranges_keeping_last_octets() {
        let d = load_str("wiki.toml", WIKI.to_string()).unwrap();
        let (map, m) = Mapping::new(&d).unwrap();
        assert_eq!(m.networks[0].cidr.unwrap().to_string(), "192.0.2.0/24");
        // The wiki's `internet = 0.0.0.0/0` becomes a small documentation prefix.
        assert_eq!(m.networks[1].cidr.unwrap().to_string(), "198.51.100.0/24");
        let addr = |h: &str, i: usize| {
            m.hosts[m.host_by_name(h).unwrap()].interfaces[i]
                .address
                .unwrap()
        };
        assert_eq!(addr("tshost", 0).to_string(), "192.0.2.2");
        assert_eq!(addr("fwhost", 0).to_string(), "192.0.2.1");
        assert_eq!(addr("lhost", 0).to_string(), "192.0.2.3");
        for h in &m.hosts {
            for i in &h.interfaces {
                assert!(is_doc(i.address.unwrap()), "{} {:?}", h.name, i.address);
            }
        }
        assert_eq!(m.management.from, vec![m.networks[0].cidr.unwrap()]);
        assert_eq!(
            map.original_of(addr("rhost", 0)).unwrap().to_string(),
            "2.3.4.5"
        );
        let orig = Plan::build(d).unwrap();
        let mapped = Plan::build(m).unwrap();
        same_shape(&orig, &mapped).unwrap();
    }

    /// The wiki has no IPv6: every link still gets a lab /64 and every
    /// interface an address there, but the mapped deployment stays IPv4-only,
    /// so its rules are the original's.
    #[test]
    fn every_link_gets_a_lab_ipv6_prefix_but_the_plan_only_the_topologys() {
        let d = load_str("wiki.toml", WIKI.to_string()).unwrap();
        let (map, m) = Mapping::new(&d).unwrap();
        let nets: Vec<String> = map.networks.iter().map(|n| n.mapped6.to_string()).collect();
        assert_eq!(nets, ["2001:db8:1ab::/64", "2001:db8:1ab:1::/64"]);
        assert!(map.networks.iter().all(|n| n.original6.is_none()));
        assert!(m.networks.iter().all(|n| n.cidr6.is_none()));
        assert!(m
            .hosts
            .iter()
            .flat_map(|h| &h.interfaces)
            .all(|i| i.address6.is_none()));
        let lab6 = map.lab6();
        let fw = m.host_by_name("fwhost").unwrap();
        // The mapped IPv4 host part: 192.0.2.1 → ::1, 198.51.100.1 → :1::1.
        assert_eq!(lab6[fw][0].to_string(), "2001:db8:1ab::1");
        assert_eq!(lab6[fw][1].to_string(), "2001:db8:1ab:1::1");
        assert!(lab6.iter().flatten().all(|a| is_doc6(*a)));
        assert!(m.management.from6.is_empty() && !m.management.anywhere6);
    }

    /// The dual-stack lan example: prefixes onto the lab's /64s, host parts
    /// kept, `[management] from`'s IPv6 prefix mapped with its network.
    #[test]
    fn a_dual_stack_topology_keeps_its_ipv6_host_parts() {
        let d = load_str(
            "lan.toml",
            include_str!("../../examples/lan.toml").to_string(),
        )
        .unwrap();
        let (map, m) = Mapping::new(&d).unwrap();
        assert_eq!(
            m.networks[0].cidr6.unwrap().to_string(),
            "2001:db8:1ab::/64"
        );
        assert_eq!(
            m.networks[1].cidr6.unwrap().to_string(),
            "2001:db8:1ab:1::/64"
        );
        let db = m.host_by_name("db").unwrap();
        assert_eq!(
            m.hosts[db].interfaces[0].address6.unwrap().to_string(),
            "2001:db8:1ab::30"
        );
        assert_eq!(
            map.addresses6[db][0].0.unwrap().to_string(),
            "2001:db8:20::30"
        );
        assert_eq!(
            map.lab6()[db][0],
            m.hosts[db].interfaces[0].address6.unwrap()
        );
        let from6: Vec<String> = m.management.from6.iter().map(|p| p.to_string()).collect();
        assert_eq!(from6, ["2001:db8:1ab:1::/64"]);
        let orig = Plan::build(d).unwrap();
        let mapped = Plan::build(m).unwrap();
        same_shape(&orig, &mapped).unwrap();
    }

    /// An interface without `address6` on a dual-stack link takes a free host
    /// part; a management prefix covering nothing gets a spare /64 outside
    /// the lab's networks.
    #[test]
    fn ipv6_host_parts_never_collide_and_stray_prefixes_get_a_spare_block() {
        let t = "[management]\nfrom = [\"l\", \"2001:db8:77::/64\"]\n\
                 [[network]]\nname = \"l\"\ncidr = \"10.0.0.0/24\"\ncidr6 = \"2001:db8:5::/64\"\n\
                 [[host]]\nname = \"s\"\nroles = [\"server\"]\ninterfaces = [{ name = \"eth0\", network = \"l\", address = \"10.0.0.1\", address6 = \"2001:db8:5::2\" }]\n\
                 [[host]]\nname = \"c\"\nroles = [\"client\"]\nserver = \"s\"\ninterfaces = [{ name = \"eth0\", network = \"l\", address = \"10.0.0.2\" }]\n";
        let d = load_str("t.toml", t.to_string()).unwrap();
        let (map, m) = Mapping::new(&d).unwrap();
        let lab6 = map.lab6();
        assert_eq!(
            lab6[0][0].to_string(),
            "2001:db8:1ab::2",
            "its own host part"
        );
        assert_eq!(
            lab6[1][0].to_string(),
            "2001:db8:1ab::1",
            "::2 is taken: the next free"
        );
        assert_eq!(m.hosts[1].interfaces[0].address6, None);
        let from6: Vec<String> = m.management.from6.iter().map(|p| p.to_string()).collect();
        assert_eq!(from6, ["2001:db8:1ab::/64", "2001:db8:1ac::/64"]);
    }

    /// 2001:db8:1ab::/48 has 65,536 /64s: one network more does not fit.
    #[test]
    fn more_networks_than_lab_ipv6_prefixes_are_refused() {
        let mut d = load_str("wiki.toml", WIKI.to_string()).unwrap();
        let net = d.networks[0].clone();
        d.networks.resize(1 << 16, net);
        let p = allocate6(&d).unwrap();
        assert_eq!(p[(1 << 16) - 1].to_string(), "2001:db8:1ab:ffff::/64");
        d.networks.push(d.networks[0].clone());
        let e = allocate6(&d).unwrap_err();
        assert!(e.0.contains("65537 networks do not fit"), "{e}");
    }

    fn many(nets: usize, hosts_per_net: usize) -> String {
        let mut t = String::from("[amanda]\nauth = \"bsdtcp\"\n");
        for n in 0..nets {
            t += &format!("[[network]]\nname = \"n{n}\"\ncidr = \"10.{n}.0.0/16\"\n");
        }
        t += "[[host]]\nname = \"s\"\nroles = [\"server\"]\ninterfaces = [{ name = \"eth0\", network = \"n0\", address = \"10.0.0.1\" }]\n";
        for n in 0..nets {
            for k in 0..hosts_per_net {
                if n == 0 && k == 0 {
                    continue;
                }
                t += &format!("[[host]]\nname = \"h{n}x{k}\"\nroles = [\"client\"]\nserver = \"s\"\ninterfaces = [{{ name = \"eth0\", network = \"n{n}\", address = \"10.{n}.{}.{}\" }}]\n", k / 200, k % 200 + 1);
            }
        }
        t
    }

    #[test]
    fn more_networks_than_ranges_are_split_into_small_blocks() {
        let d = load_str("t.toml", many(7, 3)).unwrap();
        let (_, m) = Mapping::new(&d).unwrap();
        let nets: Vec<Ipv4Net> = m.networks.iter().map(|n| n.cidr.unwrap()).collect();
        for (i, a) in nets.iter().enumerate() {
            assert!(DOC_RANGES.iter().any(|r| r.contains(a)), "{a}");
            assert_eq!(a.prefix_len(), 29, "3 hosts need a /29 (5 addresses)");
            for b in &nets[i + 1..] {
                assert!(!overlaps(*a, *b), "{a} overlaps {b}");
            }
        }
        for h in &m.hosts {
            for i in &h.interfaces {
                assert!(m.networks[i.network]
                    .cidr
                    .unwrap()
                    .contains(&i.address.unwrap()));
            }
        }
    }

    #[test]
    fn a_network_larger_than_a_range_is_refused() {
        let d = load_str("t.toml", many(1, 300)).unwrap();
        let e = Mapping::new(&d).unwrap_err();
        assert!(e.0.contains("`n0` has 300 interfaces"), "{e}");
    }

    #[test]
    fn too_many_mid_sized_networks_are_refused() {
        // 4 networks of 100 hosts need four /25s... which fit (3 /24 = 6 /25); 7 do not.
        let d = load_str("t.toml", many(7, 100)).unwrap();
        let e = Mapping::new(&d).unwrap_err();
        assert!(e.0.contains("do not fit"), "{e}");
        let d = load_str("t.toml", many(4, 100)).unwrap();
        assert!(Mapping::new(&d).is_ok());
    }
}
