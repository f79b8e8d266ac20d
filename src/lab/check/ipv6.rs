//! Question 3, IPv6: what arrives over IPv6 between hosts, and whether
//! neighbour discovery works on every link.
//!
//! Every lab interface has an IPv6 address (`lab::map`), as every real host
//! has IPv6 on its links, and a listener on `::` on every probed port in
//! every namespace stands for the services that listen there. From every host
//! to every IPv6 address of every other host (on its links and through the
//! routers), tcp and udp, on the IPv4 scan's ports and source ports: what
//! arrives must be something the responder's IPv6 policy accepts
//! ([`needed6`]), and nothing else. Then, per link, each host pings the next
//! one's address after every neighbour cache was flushed: the ping needs a
//! neighbour solicitation (ICMPv6 135) answered by an advertisement (136)
//! through both hosts' rules, so a ruleset that drops them fails here.
//!
//! `plan` and `judge` are pure; `run` goes through a [`Prober6`].

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};

use super::exposure::{probe_ports, source_ports};
use super::{ExposureFinding, ExposureKind, Host6, Ipv6Exposure, Neighbour, Status};
use crate::lab::probe::{ClientSide, Listen, Outcome, Probe, Timing};
use crate::model::{Deployment, HostId, NetId};
use crate::policy::{dhcpv6_client_dst, DHCPV6_CLIENT_PORT};
use crate::ports::{PortRange, Proto};
use crate::Plan;

/// Whether a new IPv6 packet from `src` to `dst` (`proto`, `sport` →
/// `dport`) is something `responder` must accept: what its planned IPv6
/// policy (`plan.policies[..].v6`) accepts. The one place the lab decides
/// what IPv6 needs; openings added to `Ipv6Policy` belong here too.
pub fn needed6(
    plan: &Plan,
    responder: HostId,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: Proto,
    sport: u16,
    dport: u16,
) -> bool {
    let Some(hp) = plan.policies.iter().find(|p| p.host == responder) else {
        return false;
    };
    // Amanda's own IPv6 openings (an IPv6-speaking build): the same source
    // and ports the responder's input rule accepts. The interface is not
    // checked: an arrival is judged by who sent it to which port.
    let amanda = hp.v6.rules.iter().any(|r| {
        r.place == crate::policy::Place::Input
            && r.proto == proto
            && r.srcs.contains(&src)
            && r.sport.map_or(true, |s| s.contains(sport))
            && r.dports.iter().any(|d| d.contains(dport))
    });
    let management =
        hp.v6.management.iter().any(|m| {
            m.proto == proto && m.port == dport && m.src.map_or(true, |n| n.contains(&src))
        });
    let dhcpv6 =
        proto == Proto::Udp && dport == DHCPV6_CLIENT_PORT && dhcpv6_client_dst().contains(&dst);
    management || dhcpv6 || amanda
}

/// One neighbour-discovery probe: host `from` pings `target`, host `to`'s
/// address on network `network`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    pub from: HostId,
    pub to: HostId,
    pub network: NetId,
    pub target: Ipv6Addr,
}

/// What a ping saw, and the sender's neighbour entry for the target after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingOutcome {
    /// The echo reply came back.
    Answered,
    /// No reply; the neighbour entry is known (REACHABLE, STALE, ...): the
    /// echo itself was dropped.
    NoEcho(String),
    /// No reply and the neighbour never answered its solicitation (the entry
    /// is FAILED, INCOMPLETE or missing: the state as `ip -6 neigh` says).
    NoNeighbour(String),
    /// The lab itself failed (spawning ping).
    Error(String),
}

/// What the run stage asks of the network for IPv6 (the lab's namespaces in
/// real runs).
pub trait Prober6 {
    fn probe6(
        &mut self,
        listens: &[Listen],
        probes: &[Probe<SocketAddrV6>],
        timing: Timing,
        progress: &mut dyn FnMut(usize),
    ) -> io::Result<Vec<Outcome<SocketAddrV6>>>;
    /// Flush every neighbour cache, then send every ping at once.
    fn ping(&mut self, pings: &[Ping]) -> io::Result<Vec<PingOutcome>>;
}

/// Every IPv6 probe and ping.
#[derive(Debug)]
pub(super) struct Plan6 {
    pub dports: BTreeSet<u16>,
    pub probes: Vec<Probe<SocketAddrV6>>,
    pub listens: Vec<Listen>,
    pub pairs: usize,
    pub pings: Vec<Ping>,
}

/// The host owning lab IPv6 address `a`.
fn owner6(addr6: &[Vec<Ipv6Addr>], a: Ipv6Addr) -> Option<HostId> {
    addr6.iter().position(|v| v.contains(&a))
}

/// "fwhost/eth1" (single-interface hosts: "rhost"), as `label` for IPv4.
fn label6(d: &Deployment, addr6: &[Vec<Ipv6Addr>], a: Ipv6Addr) -> String {
    for (h, v) in addr6.iter().enumerate() {
        if let Some(k) = v.iter().position(|x| *x == a) {
            let host = &d.hosts[h];
            return if host.interfaces.len() > 1 {
                format!("{}/{}", host.name, host.interfaces[k].name)
            } else {
                host.name.clone()
            };
        }
    }
    a.to_string()
}

/// Plan: the IPv4 scan's ports and source ports, from every host to every
/// lab IPv6 address of every other host (`addr6[h][k]`: host h's interface k);
/// per network, each attached host pings the next one (the last the first),
/// so every host both solicits and answers once per link.
pub(super) fn plan(plan: &Plan, addr6: &[Vec<Ipv6Addr>]) -> Plan6 {
    let d = &plan.deployment;
    let dports = probe_ports(plan);
    let mut probes = Vec::new();
    let mut pairs = 0;
    for x in 0..d.hosts.len() {
        for (y, targets) in addr6.iter().enumerate() {
            if x == y {
                continue;
            }
            for &a in targets {
                pairs += 1;
                for proto in [Proto::Tcp, Proto::Udp] {
                    for sp in source_ports(plan, x, proto, &dports) {
                        for &dp in &dports {
                            probes.push(Probe {
                                from: x,
                                proto,
                                sport: Some(sp),
                                target: SocketAddrV6::new(a, dp, 0, 0),
                                payload: vec![],
                                reply: None,
                            });
                        }
                    }
                }
            }
        }
    }
    let listens = (0..d.hosts.len())
        .flat_map(|ns| {
            dports.iter().flat_map(move |&port| {
                [Proto::Tcp, Proto::Udp]
                    .into_iter()
                    .map(move |proto| Listen { ns, proto, port })
            })
        })
        .collect();
    let mut pings = Vec::new();
    for n in 0..d.networks.len() {
        let on: Vec<(HostId, Ipv6Addr)> = d
            .hosts
            .iter()
            .enumerate()
            .flat_map(|(h, host)| {
                host.interfaces
                    .iter()
                    .zip(&addr6[h])
                    .filter(|(i, _)| i.network == n)
                    .map(move |(_, a)| (h, *a))
            })
            .collect();
        if on.len() < 2 {
            continue;
        }
        for (j, &(from, _)) in on.iter().enumerate() {
            let (to, target) = on[(j + 1) % on.len()];
            pings.push(Ping {
                from,
                to,
                network: n,
                target,
            });
        }
    }
    Plan6 {
        dports,
        probes,
        listens,
        pairs,
        pings,
    }
}

/// Run: every probe once (nothing over IPv6 must arrive, so nothing is
/// retried), then the pings.
pub(super) fn run(
    xp: &Plan6,
    prober: &mut dyn Prober6,
    timing: Timing,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> io::Result<(Vec<Outcome<SocketAddrV6>>, Vec<PingOutcome>)> {
    let total = xp.probes.len();
    let mut done = 0;
    progress("ipv6", 0, total);
    let outcomes = prober.probe6(&xp.listens, &xp.probes, timing, &mut |n| {
        done += n;
        progress("ipv6", done, total);
    })?;
    let pings = prober.ping(&xp.pings)?;
    Ok((outcomes, pings))
}

/// The grouping of findings: (kind, source host, destination, proto, source
/// port, host it arrived at, why); a group collects destination ports.
type Key6 = (
    ExposureKind,
    HostId,
    Ipv6Addr,
    Proto,
    u16,
    Option<HostId>,
    String,
);

/// Judge: count per host, group what arrived beyond need (by everything but
/// the destination port), and turn failed pings into findings.
pub(super) fn judge(
    plan: &Plan,
    addr6: &[Vec<Ipv6Addr>],
    xp: &Plan6,
    outcomes: &[Outcome<SocketAddrV6>],
    pings: &[PingOutcome],
) -> Ipv6Exposure {
    let d = &plan.deployment;
    let mut hosts: Vec<Host6> = d
        .hosts
        .iter()
        .zip(addr6)
        .map(|(h, a)| Host6 {
            host: h.name.clone(),
            addresses: a.iter().map(|a| a.to_string()).collect(),
            arrived: 0,
            needed: 0,
            beyond_need: 0,
        })
        .collect();
    let (mut arrived, mut needed_n, mut unroutable) = (0, 0, 0);
    let mut groups: Vec<(Key6, Vec<u16>)> = Vec::new();
    let no_nd = failed_neighbours(xp, pings);
    for (pr, o) in xp.probes.iter().zip(outcomes) {
        if matches!(o.client, ClientSide::Unreachable(_)) {
            unroutable += 1;
        }
        let dst = *pr.target.ip();
        let sport = pr.sport.expect("IPv6 probes bind a source port");
        if !o.reached() {
            if let Some(k) = blocked(plan, addr6, pr, &no_nd) {
                match groups.iter_mut().find(|(g, _)| *g == k) {
                    Some((_, ports)) => ports.push(pr.target.port()),
                    None => groups.push((k, vec![pr.target.port()])),
                }
            }
            continue;
        }
        arrived += 1;
        let Some(owner) = owner6(addr6, dst) else {
            continue;
        };
        let at = o.arrival.map_or(owner, |a| a.ns);
        // The source the responder saw; a refusal (no arrival) shows none,
        // so the sender's address on the target's link, else its first.
        let src = o.arrival.map_or_else(
            || sender_address(d, addr6, pr.from, owner, dst),
            |a| *a.peer.ip(),
        );
        let dport = pr.target.port();
        hosts[at].arrived += 1;
        let finding = if at != owner {
            Some((
                ExposureKind::Misrouted,
                format!("it was sent to {}", d.hosts[owner].name),
            ))
        } else if needed6(plan, at, src, dst, pr.proto, sport, dport) {
            None
        } else {
            Some((
                ExposureKind::Unneeded,
                format!("no IPv6 rule of {}'s plan accepts it", d.hosts[at].name),
            ))
        };
        match finding {
            None => {
                needed_n += 1;
                hosts[at].needed += 1;
            }
            Some((kind, why)) => {
                hosts[at].beyond_need += 1;
                let k = (
                    kind,
                    pr.from,
                    dst,
                    pr.proto,
                    sport,
                    o.arrival.map(|a| a.ns),
                    why,
                );
                match groups.iter_mut().find(|(g, _)| *g == k) {
                    Some((_, ports)) => ports.push(dport),
                    None => groups.push((k, vec![dport])),
                }
            }
        }
    }
    let findings = groups
        .into_iter()
        .map(
            |((kind, x, a, proto, sport, at, why), ports)| ExposureFinding {
                kind,
                src: d.hosts[x].name.clone(),
                dst: format!("{} {a}", label6(d, addr6, a)),
                proto,
                sport,
                dports: crate::ports::merge_ranges(
                    ports.into_iter().map(PortRange::single).collect(),
                ),
                arrived_at: at.map(|h| d.hosts[h].name.clone()),
                why,
            },
        )
        .collect();
    let neighbours = xp
        .pings
        .iter()
        .zip(pings)
        .map(|(p, o)| neighbour(d, addr6, p, o))
        .collect();
    Ipv6Exposure {
        probes: xp.probes.len(),
        pairs: xp.pairs,
        arrived,
        needed: needed_n,
        unroutable,
        dports: xp.dports.iter().copied().collect(),
        hosts,
        findings,
        neighbours,
    }
}

/// Hosts whose neighbour discovery failed: that finding is the cause of
/// whatever needed probe of theirs then vanished, so it is not repeated.
fn failed_neighbours(xp: &Plan6, pings: &[PingOutcome]) -> BTreeSet<HostId> {
    xp.pings
        .iter()
        .zip(pings)
        .filter(|(_, o)| !matches!(o, PingOutcome::Answered))
        .flat_map(|(p, _)| [p.from, p.to])
        .collect()
}

/// A probe that did not arrive although the plan's IPv6 policy accepts
/// it: the only proof of an IPv6-only flow (`Plan::flows6`), which the
/// IPv4 flow probes cannot carry. Its finding's key, or None.
fn blocked(
    plan: &Plan,
    addr6: &[Vec<Ipv6Addr>],
    pr: &Probe<SocketAddrV6>,
    no_nd: &BTreeSet<HostId>,
) -> Option<Key6> {
    let d = &plan.deployment;
    let dst = *pr.target.ip();
    let owner = owner6(addr6, dst).filter(|o| !no_nd.contains(o) && !no_nd.contains(&pr.from))?;
    let src = sender_address(d, addr6, pr.from, owner, dst);
    let sport = pr.sport?;
    needed6(plan, owner, src, dst, pr.proto, sport, pr.target.port()).then(|| {
        let why = format!(
            "{}'s IPv6 policy accepts it, but it did not arrive",
            d.hosts[owner].name
        );
        (
            ExposureKind::Blocked,
            pr.from,
            dst,
            pr.proto,
            sport,
            None,
            why,
        )
    })
}

/// The address host `from` sends from towards `dst` (of host `to`): its
/// address on a link it shares with `to`'s `dst`, else its first.
fn sender_address(
    d: &Deployment,
    addr6: &[Vec<Ipv6Addr>],
    from: HostId,
    to: HostId,
    dst: Ipv6Addr,
) -> Ipv6Addr {
    let net = d.hosts[to]
        .interfaces
        .iter()
        .zip(&addr6[to])
        .find(|(_, a)| **a == dst)
        .map(|(i, _)| i.network);
    d.hosts[from]
        .interfaces
        .iter()
        .zip(&addr6[from])
        .find(|(i, _)| Some(i.network) == net)
        .or_else(|| d.hosts[from].interfaces.iter().zip(&addr6[from]).next())
        .map(|(_, a)| *a)
        .unwrap_or(Ipv6Addr::UNSPECIFIED)
}

fn neighbour(d: &Deployment, addr6: &[Vec<Ipv6Addr>], p: &Ping, o: &PingOutcome) -> Neighbour {
    let (status, detail) = match o {
        PingOutcome::Answered => (Status::Pass, String::new()),
        PingOutcome::NoNeighbour(state) => (
            Status::Fail,
            format!(
                "neighbour discovery fails: no answer to the neighbour solicitation (neighbour entry {}): ICMPv6 types 135/136 dropped?",
                if state.is_empty() { "missing" } else { state }
            ),
        ),
        PingOutcome::NoEcho(state) => (
            Status::Fail,
            format!("ping fails though the neighbour is known ({state}): ICMPv6 echo (128/129) dropped?"),
        ),
        PingOutcome::Error(e) => (Status::Fail, format!("lab error: {e}")),
    };
    Neighbour {
        link: d.networks[p.network].name.clone(),
        src: d.hosts[p.from].name.clone(),
        dst: format!("{} {}", label6(d, addr6, p.target), p.target),
        status,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{host, silent};
    use super::*;
    use crate::amanda::settings::Auth;
    use crate::lab::probe::Arrival;

    /// The dual-stack wiki: the lan (and its admins) have an IPv6 prefix, the
    /// Internet has none (the lab gives it one of its own).
    pub(crate) fn wiki6() -> (Plan, Vec<Vec<Ipv6Addr>>) {
        let text = include_str!("../../../examples/wiki.toml").replace(
            "cidr = \"192.168.2.0/24\"",
            "cidr = \"192.168.2.0/24\"\ncidr6 = \"2001:db8:2::/64\"",
        );
        let d = crate::load::load_str("wiki6.toml", text)
            .expect("the dual-stack wiki loads")
            .with_auth(Auth::Bsd);
        let lab = crate::lab::Lab::new(d, crate::netfilter::Backend::Nft).expect("it maps");
        let a6 = lab.mapping.lab6();
        (lab.plan, a6)
    }

    fn a6(plan: &Plan, addr6: &[Vec<Ipv6Addr>], name: &str) -> Ipv6Addr {
        let (h, i) = name.split_once('/').unwrap_or((name, ""));
        let hid = host(plan, h);
        let k = plan.deployment.hosts[hid]
            .interfaces
            .iter()
            .position(|x| i.is_empty() || x.name == i)
            .expect("an interface");
        addr6[hid][k]
    }

    #[test]
    fn needed6_is_management_from_the_admins_prefix_and_dhcpv6() {
        let (plan, addr6) = wiki6();
        let lan6 = plan.deployment.networks[0]
            .cidr6
            .expect("lan is dual-stack");
        let (ts, lh, rh) = (
            a6(&plan, &addr6, "tshost"),
            a6(&plan, &addr6, "lhost"),
            a6(&plan, &addr6, "rhost"),
        );
        assert!(lan6.contains(&ts) && lan6.contains(&lh) && !lan6.contains(&rh));
        let t = host(&plan, "tshost");
        assert!(needed6(&plan, t, lh, ts, Proto::Tcp, 45113, 22));
        assert!(
            !needed6(&plan, t, rh, ts, Proto::Tcp, 45113, 22),
            "not from the Internet"
        );
        assert!(!needed6(&plan, t, lh, ts, Proto::Udp, 45113, 22));
        assert!(
            !needed6(&plan, t, lh, ts, Proto::Udp, 840, 10080),
            "no Amanda over IPv6"
        );
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        assert!(needed6(&plan, t, ll, ll, Proto::Udp, 547, 546));
        assert!(
            !needed6(&plan, t, lh, ts, Proto::Udp, 547, 546),
            "only link-local"
        );
    }

    #[test]
    fn plan_probes_every_other_ipv6_address_and_pings_round_each_link() {
        let (plan, addr6) = wiki6();
        let xp = super::plan(&plan, &addr6);
        assert_eq!(xp.pairs, 15, "as IPv4: 3 + 4 + 4 + 4");
        let v4 = super::super::exposure::plan(&plan);
        assert_eq!(xp.probes.len(), v4.probes.len(), "the IPv4 scan's ports");
        assert_eq!(xp.dports, v4.dports);
        for pr in &xp.probes {
            assert!(crate::lab::map::is_doc6(*pr.target.ip()), "{pr:?}");
            assert_ne!(owner6(&addr6, *pr.target.ip()), Some(pr.from));
        }
        let pings: Vec<(String, String)> = xp
            .pings
            .iter()
            .map(|p| {
                (
                    plan.deployment.hosts[p.from].name.clone(),
                    label6(&plan.deployment, &addr6, p.target),
                )
            })
            .collect();
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            pings,
            [
                s("tshost", "fwhost/eth0"),
                s("fwhost", "lhost"),
                s("lhost", "tshost"),
                s("fwhost", "rhost"),
                s("rhost", "fwhost/eth1"),
            ]
        );
    }

    fn arrived6(pr: &Probe<SocketAddrV6>, ns: HostId, src: Ipv6Addr) -> Outcome<SocketAddrV6> {
        Outcome {
            client: match pr.proto {
                Proto::Tcp => ClientSide::Connected,
                Proto::Udp => ClientSide::Replied(vec![]),
            },
            arrival: Some(Arrival {
                ns,
                peer: SocketAddrV6::new(src, pr.sport.unwrap(), 0, 0),
            }),
        }
    }

    /// As the planned rules behave: ssh from the lan's hosts to the lan's
    /// hosts arrives, nothing else.
    fn clean(plan: &Plan, addr6: &[Vec<Ipv6Addr>], xp: &Plan6) -> Vec<Outcome<SocketAddrV6>> {
        let d = &plan.deployment;
        xp.probes
            .iter()
            .map(|pr| {
                let dst = *pr.target.ip();
                let to = owner6(addr6, dst).unwrap();
                let src = sender_address(d, addr6, pr.from, to, dst);
                if needed6(
                    plan,
                    to,
                    src,
                    dst,
                    pr.proto,
                    pr.sport.unwrap(),
                    pr.target.port(),
                ) {
                    arrived6(pr, to, src)
                } else {
                    silent_v6()
                }
            })
            .collect()
    }

    fn silent_v6() -> Outcome<SocketAddrV6> {
        Outcome {
            client: silent().client,
            arrival: None,
        }
    }

    /// A probe the plan's IPv6 policy accepts that does not arrive is a
    /// Blocked finding (the only proof of an IPv6-only flow), unless the
    /// host's neighbour discovery failed, which is then the finding.
    #[test]
    fn judge_a_needed_probe_that_vanished_is_blocked() {
        let (plan, addr6) = wiki6();
        let xp = super::plan(&plan, &addr6);
        let mut outs = clean(&plan, &addr6, &xp);
        let lost = outs.iter().position(|o| o.reached()).unwrap();
        outs[lost] = silent_v6();
        let mut pings = vec![PingOutcome::Answered; xp.pings.len()];
        let e = judge(&plan, &addr6, &xp, &outs, &pings);
        assert!(!e.passed());
        assert_eq!(e.findings.len(), 1, "{:?}", e.findings);
        assert_eq!(e.findings[0].kind, ExposureKind::Blocked);
        assert_eq!(
            e.findings[0].src,
            plan.deployment.hosts[xp.probes[lost].from].name
        );
        let p = xp
            .pings
            .iter()
            .position(|p| p.from == xp.probes[lost].from)
            .unwrap();
        pings[p] = PingOutcome::NoNeighbour("FAILED".into());
        let e = judge(&plan, &addr6, &xp, &outs, &pings);
        assert!(e.findings.is_empty(), "{:?}", e.findings);
    }

    #[test]
    fn judge_a_clean_run_finds_nothing_and_counts_management_as_needed() {
        let (plan, addr6) = wiki6();
        let xp = super::plan(&plan, &addr6);
        let outs = clean(&plan, &addr6, &xp);
        let pings = vec![PingOutcome::Answered; xp.pings.len()];
        let e = judge(&plan, &addr6, &xp, &outs, &pings);
        assert!(e.passed(), "{:?} {:?}", e.findings, e.neighbours);
        assert!(e.arrived > 0, "ssh from the lan arrives");
        assert_eq!(e.needed, e.arrived);
        let ts = &e.hosts[host(&plan, "tshost")];
        // From fwhost/eth0 and lhost: ssh over tcp from each source port.
        assert_eq!((ts.arrived, ts.needed, ts.beyond_need), (4, 4, 0), "{ts:?}");
        // rhost's policy accepts the lan's admins too (no NAT over IPv6);
        // whether fwhost forwards them is the router's rules' business.
        assert_eq!(e.hosts[host(&plan, "rhost")].needed, 4);
        assert_eq!(
            e.hosts[host(&plan, "fwhost")].needed,
            8,
            "both its addresses"
        );
    }

    #[test]
    fn judge_an_extra_opening_and_a_failed_neighbour_are_findings() {
        let (plan, addr6) = wiki6();
        let xp = super::plan(&plan, &addr6);
        let mut outs = clean(&plan, &addr6, &xp);
        let (rh, ts) = (host(&plan, "rhost"), host(&plan, "tshost"));
        let ts6 = a6(&plan, &addr6, "tshost");
        let src = a6(&plan, &addr6, "rhost");
        for (pr, o) in xp.probes.iter().zip(outs.iter_mut()) {
            let to_80 = *pr.target.ip() == ts6 && pr.target.port() == 80;
            if pr.from == rh && to_80 && pr.proto == Proto::Tcp {
                *o = arrived6(pr, ts, src);
            }
        }
        let mut pings = vec![PingOutcome::Answered; xp.pings.len()];
        pings[1] = PingOutcome::NoNeighbour("FAILED".into());
        let e = judge(&plan, &addr6, &xp, &outs, &pings);
        assert!(!e.passed());
        assert_eq!(e.findings.len(), 2, "one per source port: {:?}", e.findings);
        let f = &e.findings[0];
        assert_eq!(f.kind, ExposureKind::Unneeded);
        assert_eq!((f.src.as_str(), f.proto), ("rhost", Proto::Tcp));
        assert_eq!(f.dst, format!("tshost {ts6}"));
        assert_eq!(f.dports, [PortRange::single(80)]);
        assert_eq!(f.why, "no IPv6 rule of tshost's plan accepts it");
        assert_eq!(e.hosts[ts].beyond_need, 2);
        let bad: Vec<&Neighbour> = e
            .neighbours
            .iter()
            .filter(|n| n.status == Status::Fail)
            .collect();
        assert_eq!(bad.len(), 1);
        assert_eq!(
            (bad[0].src.as_str(), bad[0].link.as_str()),
            ("fwhost", "lan")
        );
        assert!(
            bad[0].detail.starts_with("neighbour discovery fails"),
            "{}",
            bad[0].detail
        );
        assert!(bad[0].detail.contains("135/136"));
    }
}
