//! A deployment built out of network namespaces: one per host, veth pairs per
//! network (a bridge in a dedicated namespace for networks of more than two
//! hosts), addresses and default routes from the model, forwarding on routers,
//! and each host's generated rules loaded with the real tools.
//!
//! Invariants: nothing is created in the caller's namespace (veths are created
//! inside a lab namespace and their peer moved straight into another); every
//! address configured is a documentation address (`map::is_doc`), checked before
//! anything is created; every namespace is a `Netns` guard, so dropping a
//! `LabNet` (also on error or panic) removes them all.

use std::io;

use crate::lab::map::is_doc;
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
    /// Build `d` (already mapped onto documentation addresses). `step` is called
    /// with a short description before each namespace is configured.
    pub fn build(d: &Deployment, step: &mut dyn FnMut(&str)) -> io::Result<LabNet> {
        // Safety first: refuse before creating anything.
        for h in &d.hosts {
            for i in &h.interfaces {
                if !is_doc(i.address) || !is_doc(d.networks[i.network].cidr.network()) {
                    return Err(err(format!(
                        "refusing to configure {} on {}: the lab only uses documentation addresses",
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
            for i in &host.interfaces {
                let p = d.networks[i.network].cidr.prefix_len();
                script += &format!("addr add {}/{p} dev {}\n", i.address, i.name);
            }
            if let Some(g) = host.gateway {
                // The gateway's address on the first network both share (route.rs next_hop).
                let via = host
                    .interfaces
                    .iter()
                    .find_map(|i| d.iface_on(g, i.network))
                    .ok_or_else(|| {
                        err(format!(
                            "{}'s gateway {} shares no network with it",
                            host.name, d.hosts[g].name
                        ))
                    })?;
                script += &format!("route add default via {}\n", via.address);
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
                lab.hosts[h].run_in(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))??;
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

/// Load one host's rules into its namespace with the real tools.
pub fn load_iptables(ns: &Netns, ipset: Option<&str>, rules: &str) -> io::Result<()> {
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
    Ok(())
}

pub fn load_nft(ns: &Netns, script: &str) -> io::Result<()> {
    let o = ns.exec(&["nft", "-f", "-"], Some(script))?;
    if !o.ok() {
        return Err(err(format!("nft -f: {}", o.stderr.trim())));
    }
    Ok(())
}
