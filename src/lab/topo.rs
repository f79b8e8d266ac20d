//! A deployment built out of network namespaces: one per host, veth pairs per
//! network (a bridge in a dedicated namespace for networks of more than two
//! hosts), addresses and default routes from the model, forwarding on routers,
//! and each host's generated rules loaded with the real tools.
//!
//! IPv6 too: every interface gets its lab IPv6 address (`Mapping::addresses6`,
//! `nodad`, so it is usable at once), routers forward IPv6, a host with a
//! gateway routes `::/0` through it, and a host without one reaches the other
//! networks' /64s through the routers beside it (`routes6`): IPv6 has no NAT
//! to hide a LAN behind, so the routers' IPv6 forward rules are all that
//! keeps the Internet's hosts from the LAN's, and the lab must send them that
//! traffic to see it dropped.
//!
//! Invariants: nothing is created in the caller's namespace (veths are created
//! inside a lab namespace and their peer moved straight into another); every
//! address configured is a documentation address (`map::is_doc`, `is_doc6`), checked before
//! anything is created; every namespace is a `Netns` guard, so dropping a
//! `LabNet` (also on error or panic) removes them all.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::lab::map::{is_doc, is_doc6};
use crate::lab::netns::{veth, Netns};
use crate::model::{Deployment, HostId};

/// The namespaces of one lab run. Host namespaces are indexed by `HostId`.
#[derive(Debug)]
pub struct LabNet {
    pub hosts: Vec<Netns>,
    /// Holds one bridge per network with more than two hosts.
    pub bridges: Option<Netns>,
}

/// A namespace-safe fragment of a host name: lowercase letters, digits, `-`.
fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(20)
        .collect();
    if s.is_empty() {
        "host".into()
    } else {
        s
    }
}

fn err(what: impl Into<String>) -> io::Error {
    io::Error::other(what.into())
}

impl LabNet {
    /// Build `d` (already mapped onto documentation addresses), with `addr6[h][k]`
    /// on host h's interface k and `net6[n]` network n's IPv6 prefix. `step` is
    /// called with a short description before each namespace is configured.
    pub fn build(
        d: &Deployment,
        net6: &[Ipv6Net],
        addr6: &[Vec<Ipv6Addr>],
        step: &mut dyn FnMut(&str),
    ) -> io::Result<LabNet> {
        // Safety first: refuse before creating anything.
        for (h, a6) in d.hosts.iter().zip(addr6) {
            for (i, a6) in h.interfaces.iter().zip(a6) {
                if !is_doc6(*a6) || !is_doc6(net6[i.network].network()) {
                    return Err(err(format!(
                        "refusing to configure {a6} on {}: the lab only uses documentation addresses",
                        h.name
                    )));
                }
                let v4 = i.address.zip(d.networks[i.network].cidr);
                if v4.is_some_and(|(a, c)| !is_doc(a) || !is_doc(c.network())) {
                    return Err(err(format!(
                        "refusing to configure {:?} on {}: the lab only uses documentation addresses",
                        i.address, h.name
                    )));
                }
                if i.name.len() > 15 || i.name == "lo" || i.name.contains('/') {
                    return Err(err(format!(
                        "interface name `{}` on {} cannot be created (at most 15 characters, not `lo`)",
                        i.name, h.name
                    )));
                }
            }
        }
        let mut hosts = Vec::with_capacity(d.hosts.len());
        for h in &d.hosts {
            step(&format!("namespace for {}", h.name));
            hosts.push(Netns::new(&format!("aml-{}", slug(&h.name)))?);
        }
        let attached = |n: usize| -> Vec<(HostId, usize)> {
            d.hosts
                .iter()
                .enumerate()
                .flat_map(|(h, host)| {
                    host.interfaces
                        .iter()
                        .enumerate()
                        .filter(move |(_, i)| i.network == n)
                        .map(move |(k, _)| (h, k))
                })
                .collect()
        };
        let needs_bridge = (0..d.networks.len()).any(|n| {
            let a = attached(n);
            a.len() > 2 || a.len() == 1
        });
        let bridges = if needs_bridge {
            Some(Netns::new("aml-bridge")?)
        } else {
            None
        };
        let lab = LabNet { hosts, bridges };
        for n in 0..d.networks.len() {
            let a = attached(n);
            step(&format!("network {}", d.networks[n].name));
            match a.len() {
                0 => {}
                2 => {
                    let ((h1, k1), (h2, k2)) = (a[0], a[1]);
                    veth(
                        &lab.hosts[h1],
                        &d.hosts[h1].interfaces[k1].name,
                        &lab.hosts[h2],
                        &d.hosts[h2].interfaces[k2].name,
                    )?;
                }
                _ => {
                    let br = lab.bridges.as_ref().expect("created above");
                    let bname = format!("br{n}");
                    br.must(&["ip", "link", "add", &bname, "type", "bridge"])?;
                    br.must(&["ip", "link", "set", &bname, "up"])?;
                    for (j, (h, k)) in a.iter().enumerate() {
                        let port = format!("n{n}p{j}");
                        veth(br, &port, &lab.hosts[*h], &d.hosts[*h].interfaces[*k].name)?;
                        br.must(&["ip", "link", "set", &port, "master", &bname])?;
                    }
                }
            }
        }
        for (h, host) in d.hosts.iter().enumerate() {
            step(&format!("addresses and routes of {}", host.name));
            let mut script = String::new();
            for (i, a6) in host.interfaces.iter().zip(&addr6[h]) {
                // An IPv6-only interface (or network) gets only its /64.
                if let (Some(a), Some(c)) = (i.address, d.networks[i.network].cidr) {
                    script += &format!("addr add {a}/{} dev {}\n", c.prefix_len(), i.name);
                }
                let p6 = net6[i.network].prefix_len();
                script += &format!("addr add {a6}/{p6} dev {} nodad\n", i.name);
            }
            for (prefix, via) in routes6(d, net6, addr6, h) {
                script += &format!("route add {prefix} via {via}\n");
            }
            // The gateway's IPv4 address on the first network both have IPv4
            // on (route.rs next_hop). Without one (a host without IPv4, or
            // whose gateway routes only its IPv6) no IPv4 default route: its
            // IPv6 routes come from routes6.
            let via = host.gateway.and_then(|g| {
                host.interfaces
                    .iter()
                    .filter(|i| i.address.is_some())
                    .find_map(|i| d.iface_on(g, i.network)?.address)
            });
            if let Some(via) = via {
                script += &format!("route add default via {via}\n");
            }
            lab.hosts[h]
                .exec(&["ip", "-batch", "-"], Some(&script))
                .and_then(|o| {
                    if o.ok() {
                        Ok(())
                    } else {
                        Err(err(format!(
                            "configuring {} ({}): {}",
                            host.name,
                            lab.hosts[h].name(),
                            o.stderr.trim()
                        )))
                    }
                })?;
            if host.roles.router {
                // /proc/sys/net belongs to the namespace of the thread that opens it.
                lab.hosts[h].run_in(|| {
                    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
                    std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")
                })??;
            }
        }
        Ok(lab)
    }

    pub fn ns(&self, h: HostId) -> &Netns {
        &self.hosts[h]
    }

    /// Leave every namespace in place; returns (host name or "bridges", namespace).
    pub fn keep(self, d: &Deployment) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .hosts
            .into_iter()
            .zip(&d.hosts)
            .map(|(ns, h)| (h.name.clone(), ns.keep()))
            .collect();
        if let Some(b) = self.bridges {
            out.push(("(bridges)".into(), b.keep()));
        }
        out
    }
}

/// Host h's IPv6 routes beyond its own links: `::/0` through its gateway
/// when it has one, as its IPv4 default route; else, per network it can
/// reach through routers, that network's prefix through the first router on
/// the way (breadth first, so the fewest routers; module doc).
fn routes6(
    d: &Deployment,
    net6: &[Ipv6Net],
    addr6: &[Vec<Ipv6Addr>],
    h: HostId,
) -> Vec<(String, Ipv6Addr)> {
    let host = &d.hosts[h];
    let on = |r: HostId, n: usize| {
        d.hosts[r]
            .interfaces
            .iter()
            .position(|i| i.network == n)
            .map(|k| addr6[r][k])
    };
    if let Some(g) = host.gateway {
        return host
            .interfaces
            .iter()
            .find_map(|i| on(g, i.network))
            .map(|via| vec![("::/0".to_string(), via)])
            .unwrap_or_default();
    }
    // Per network: the first hop that reaches it (None: not yet reached).
    let mut hop: Vec<Option<Option<Ipv6Addr>>> = vec![None; d.networks.len()];
    let mut queue = VecDeque::new();
    for i in &host.interfaces {
        hop[i.network] = Some(None);
        queue.push_back(i.network);
    }
    let mut out = Vec::new();
    while let Some(n) = queue.pop_front() {
        for (r, router) in d.hosts.iter().enumerate() {
            if r == h || !router.roles.router {
                continue;
            }
            let Some(at) = on(r, n) else { continue };
            let first = hop[n].flatten().unwrap_or(at);
            for i in &router.interfaces {
                if hop[i.network].is_none() {
                    hop[i.network] = Some(Some(first));
                    out.push((net6[i.network].to_string(), first));
                    queue.push_back(i.network);
                }
            }
        }
    }
    out
}

/// Load one host's rules into its namespace with the real tools: the ipsets,
/// the IPv4 rules, and the IPv6 rules (`HOST.rules6`) when there are any.
pub fn load_iptables(
    ns: &Netns,
    ipset: Option<&str>,
    rules: &str,
    rules6: Option<&str>,
) -> io::Result<()> {
    if let Some(sets) = ipset {
        let o = ns.exec(&["ipset", "restore"], Some(sets))?;
        if !o.ok() {
            return Err(err(format!("ipset restore: {}", o.stderr.trim())));
        }
    }
    let o = ns.exec(&["iptables-restore"], Some(rules))?;
    if !o.ok() {
        return Err(err(format!("iptables-restore: {}", o.stderr.trim())));
    }
    if let Some(rules6) = rules6 {
        let o = ns.exec(&["ip6tables-restore"], Some(rules6))?;
        if !o.ok() {
            return Err(err(format!("ip6tables-restore: {}", o.stderr.trim())));
        }
    }
    Ok(())
}

pub fn load_nft(ns: &Netns, script: &str) -> io::Result<()> {
    let o = ns.exec(&["nft", "-f", "-"], Some(script))?;
    if !o.ok() {
        return Err(err(format!("nft -f: {}", o.stderr.trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::map::Mapping;

    /// The wiki: the LAN's hosts route IPv6 through their gateway as they do
    /// IPv4; RHost, with no gateway, reaches the LAN's /64 through FWHost
    /// (no NAT66 hides it); FWHost is on both links and needs no route.
    #[test]
    fn ipv6_routes_follow_gateways_and_otherwise_the_routers() {
        let text = include_str!("../../examples/wiki.toml").to_string();
        let d = crate::load::load_str("wiki.toml", text).unwrap();
        let (map, m) = Mapping::new(&d).unwrap();
        let net6: Vec<Ipv6Net> = map.networks.iter().map(|n| n.mapped6).collect();
        let a6 = map.lab6();
        let routes = |h: &str| -> Vec<String> {
            routes6(&m, &net6, &a6, m.host_by_name(h).unwrap())
                .into_iter()
                .map(|(p, via)| format!("{p} via {via}"))
                .collect()
        };
        assert_eq!(routes("tshost"), ["::/0 via 2001:db8:1ab::1"]);
        assert_eq!(routes("lhost"), ["::/0 via 2001:db8:1ab::1"]);
        assert_eq!(routes("rhost"), ["2001:db8:1ab::/64 via 2001:db8:1ab:1::1"]);
        assert!(routes("fwhost").is_empty());
    }
}
