//! What the lab asks of the kernel, and how it judges the answers.
//!
//! Three questions, in this order:
//! 1. Exposure: from every host to every address of every other host, tcp and
//!    udp, each opened range's edges (lo−1, lo, hi, hi+1), its middle, the edges
//!    of the source ranges, and a spread of common ports, each from an ephemeral
//!    source port and from one port of every source range Amanda uses. Only what
//!    a flow (or the management service) needs may arrive; what a flow needs
//!    must arrive, edges included.
//! 2. Flows: every required flow, with the source port it requires, to the
//!    address Amanda would use (`Path::target`). The responder must see
//!    `Path::last().src` (after NAT) and a source port in the same class; UDP
//!    answers must come back. Data streams that only the conntrack helper opens
//!    are probed after a helper-parsed exchange (UDP request, `CONNECT ...` reply).
//! 3. IPv6 (`ipv6`): the exposure scan again over every host's IPv6 addresses,
//!    judged by what each host's IPv6 policy accepts (`needed6`), and neighbour
//!    discovery on every link.
//!
//! Exposure runs first: the helper's expectations (180 s) from question 2 would
//! otherwise open ports for question 1. Source ports of exposure probes are
//! never among the probed destination ports, so no probe can ever look like the
//! reply of another to conntrack.
//!
//! Each question is three stages, so that only the middle one needs root:
//! **plan** (pure: which probes, from which namespace and source port, to which
//! address and port, and what each expects), **run** (sends them through a
//! [`Prober`], the lab's namespaces in real runs, and retries what failed), and
//! **judge** (pure: observations and expectations → `ProbedFlow`s, `ExposureFinding`s
//! and their prose). `exposure`, `flows` and `ipv6` each hold their three stages.

mod exposure;
mod flows;
mod ipv6;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use serde::Serialize;

use crate::amanda::settings::Auth;
use crate::flows::{Flow, HelperRole};
use crate::lab::map::is_doc;
use crate::lab::netns::Netns;
use crate::lab::probe::{self, Listen, Outcome, Probe, Site, Timing};
use crate::model::{Deployment, HostId};
use crate::netfilter::Backend;
use crate::picture::Mark;
use crate::ports::{PortRange, Proto};
use crate::route::Path;
use crate::view::FlowView;
use crate::Plan;

pub use flows::DUMPERS;
pub use ipv6::{needed6, Ping, PingOutcome, Prober6};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    NotProbed,
}

/// One required flow as observed.
#[derive(Debug, Clone, Serialize)]
pub struct ProbedFlow {
    #[serde(flatten)]
    pub flow: FlowView<'static>,
    /// What was sent: "udp :840 → 192.0.2.1:10080".
    pub probe: String,
    /// What the responder saw ("192.0.2.2:840"), if it arrived.
    pub seen: Option<String>,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExposureKind {
    /// Arrived, but no flow (or management) needs it.
    Unneeded,
    /// A flow needs it, but it did not arrive.
    Blocked,
    /// Arrived at a host other than the one the flow goes to.
    Misrouted,
    /// Not needed, but sent by a masquerading router that a needed flow crosses,
    /// from the address it masquerades that flow to: the responder cannot tell
    /// the two apart, and the router is on the path anyway (it could forge the
    /// flow). Not a rule defect; only the router's own OUTPUT could refuse it.
    OnPath,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExposureFinding {
    pub kind: ExposureKind,
    pub src: String,
    /// "fwhost/eth1 198.51.100.1"
    pub dst: String,
    pub proto: Proto,
    pub sport: u16,
    /// Sorted, merged.
    pub dports: Vec<PortRange>,
    pub arrived_at: Option<String>,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Exposure {
    pub probes: usize,
    pub pairs: usize,
    pub arrived: usize,
    /// Of those that arrived, how many a flow needs.
    pub needed: usize,
    pub unroutable: usize,
    pub dports: Vec<u16>,
    pub findings: Vec<ExposureFinding>,
    /// Not failures: reachable only as the masquerading router that a needed flow
    /// crosses (see `ExposureKind::OnPath`).
    pub on_path: Vec<ExposureFinding>,
    /// Not failures: things worth knowing (e.g. what the helper opened on its own).
    pub notes: Vec<String>,
}

/// What the IPv6 question found (`ipv6`).
#[derive(Debug, Clone, Serialize)]
pub struct Ipv6Exposure {
    pub probes: usize,
    pub pairs: usize,
    pub arrived: usize,
    /// Of those that arrived, how many the responder's IPv6 policy accepts.
    pub needed: usize,
    pub unroutable: usize,
    pub dports: Vec<u16>,
    /// Per host, in host order.
    pub hosts: Vec<Host6>,
    /// What arrived over IPv6 beyond need (or at another host than sent to).
    pub findings: Vec<ExposureFinding>,
    /// One neighbour-discovery ping per host and link.
    pub neighbours: Vec<Neighbour>,
}

impl Ipv6Exposure {
    /// Failed pings: each a finding.
    pub fn failed_neighbours(&self) -> usize {
        self.neighbours
            .iter()
            .filter(|n| n.status == Status::Fail)
            .count()
    }
    pub fn passed(&self) -> bool {
        self.findings.is_empty() && self.failed_neighbours() == 0
    }
}

/// One host over IPv6: its lab addresses and what reached them.
#[derive(Debug, Clone, Serialize)]
pub struct Host6 {
    pub host: String,
    pub addresses: Vec<String>,
    /// Probes that arrived at this host.
    pub arrived: usize,
    /// Of those, what its IPv6 policy accepts.
    pub needed: usize,
    /// Of those, what it does not (each in a finding).
    pub beyond_need: usize,
}

/// A neighbour-discovery ping between two hosts on one link.
#[derive(Debug, Clone, Serialize)]
pub struct Neighbour {
    /// The network's name.
    pub link: String,
    pub src: String,
    /// "lhost 2001:db8:1ab::3"
    pub dst: String,
    pub status: Status,
    pub detail: String,
}

/// Everything one lab run observed.
#[derive(Debug, Clone, Serialize)]
pub struct LabReport {
    pub topology: String,
    pub backend: Backend,
    pub auth: Vec<Auth>,
    pub helper: bool,
    pub networks: Vec<crate::lab::map::NetMap>,
    pub flows: Vec<ProbedFlow>,
    pub exposure: Exposure,
    pub ipv6: Ipv6Exposure,
    pub seconds: f64,
}

impl LabReport {
    pub fn failed_flows(&self) -> usize {
        self.flows
            .iter()
            .filter(|f| f.status == Status::Fail)
            .count()
    }
    pub fn passed(&self) -> bool {
        self.failed_flows() == 0 && self.exposure.findings.is_empty() && self.ipv6.passed()
    }
    pub fn flow(&self, id: usize) -> &ProbedFlow {
        &self.flows[id - 1]
    }
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The verdicts for `lab --svg`. A probe shows that a flow failed, not
    /// where: the responder is marked only when nothing arrived and no router
    /// stands between (the initiator's OUTPUT accepts everything, so the
    /// responder's INPUT is the one place left); otherwise no host is.
    pub fn marks(&self) -> Vec<Mark> {
        self.flows
            .iter()
            .map(|f| match f.status {
                Status::Pass => Mark::Pass,
                Status::NotProbed => Mark::Unknown,
                Status::Fail => Mark::Blocked {
                    host: (f.seen.is_none() && f.flow.via.is_empty())
                        .then(|| f.flow.responder.to_string()),
                },
            })
            .collect()
    }
}

/// The lab's naming of addresses: "fwhost/eth1" (single-interface hosts: "rhost").
pub(crate) fn label(d: &Deployment, a: Ipv4Addr) -> String {
    for h in &d.hosts {
        for i in &h.interfaces {
            if i.address == Some(a) {
                return if h.interfaces.len() > 1 {
                    format!("{}/{}", h.name, i.name)
                } else {
                    h.name.clone()
                };
            }
        }
    }
    a.to_string()
}

fn owner(d: &Deployment, a: Ipv4Addr) -> Option<HostId> {
    d.hosts
        .iter()
        .position(|h| h.interfaces.iter().any(|i| i.address == Some(a)))
}

/// A flow a static probe may use: not helper-only (or over loopback, where `lo` is open).
fn statically_open(f: &Flow, p: &Path) -> bool {
    f.helper != HelperRole::Expected || f.initiator == f.responder || p.hops.len() == 1
}

/// Whether probe `pr` matches flow `f` apart from where it goes: same initiator,
/// protocol, a destination port inside the flow's, and a source port inside the
/// flow's source range when it has one.
fn carries(f: &Flow, pr: &Probe) -> bool {
    f.initiator == pr.from && carries_ports(f, pr)
}

/// `carries` without the initiator (a masquerading router sends for others).
fn carries_ports(f: &Flow, pr: &Probe) -> bool {
    f.proto == pr.proto
        && f.dport.contains(pr.target.port())
        && f.sport
            .map_or(true, |s| pr.sport.is_some_and(|x| s.contains(x)))
}

/// Hands out source ports: inside a range, never one of `avoid` for that
/// namespace and protocol, and never the same (port, target) twice.
#[derive(Debug, Default)]
struct Ports {
    avoid: HashMap<(usize, Proto), BTreeSet<u16>>,
    used: HashSet<(usize, Proto, u16, SocketAddrV4)>,
}

impl Ports {
    fn pick(&mut self, ns: usize, proto: Proto, r: PortRange, to: SocketAddrV4) -> u16 {
        let avoid = self.avoid.get(&(ns, proto));
        for p in r.lo..=r.hi {
            if avoid.is_some_and(|a| a.contains(&p)) {
                continue;
            }
            if self.used.insert((ns, proto, p, to)) {
                return p;
            }
        }
        r.lo
    }
}

/// What the run stages ask of the network: one batch of probes against
/// listeners, one outcome per probe, in order. The lab's namespaces answer for
/// real (`Sites`); tests answer with synthetic observations, so the staging and
/// retries around the sockets are tested without root.
pub trait Prober {
    fn probe(
        &mut self,
        listens: &[Listen],
        probes: &[Probe],
        timing: Timing,
        progress: &mut dyn FnMut(usize),
    ) -> io::Result<Vec<Outcome>>;
}

/// The lab's namespaces, host h's at index h: the real sockets (`probe::run`).
pub struct Sites<'a>(pub Vec<Site<'a>>);

impl Prober for Sites<'_> {
    fn probe(
        &mut self,
        listens: &[Listen],
        probes: &[Probe],
        timing: Timing,
        progress: &mut dyn FnMut(usize),
    ) -> io::Result<Vec<Outcome>> {
        probe::run(&self.0, listens, probes, timing, progress)
    }
}

/// Probe again, alone and with three times the timeout, each of `probes` that
/// `failed` says failed (same index in `outs`); the new outcome replaces it. A
/// busy machine must not fake a finding.
fn retry(
    prober: &mut dyn Prober,
    listens: &[Listen],
    probes: &[Probe],
    outs: &mut [Outcome],
    timing: Timing,
    failed: impl Fn(usize, &Probe, &Outcome) -> bool,
) -> io::Result<()> {
    let again: Vec<usize> = (0..probes.len())
        .filter(|&k| failed(k, &probes[k], &outs[k]))
        .collect();
    if again.is_empty() {
        return Ok(());
    }
    let ps: Vec<Probe> = again.iter().map(|&k| probes[k].clone()).collect();
    let slow = Timing {
        timeout: timing.timeout * 3,
        ..timing
    };
    for (k, o) in again
        .into_iter()
        .zip(prober.probe(listens, &ps, slow, &mut |_| {})?)
    {
        outs[k] = o;
    }
    Ok(())
}

impl Prober6 for Sites<'_> {
    fn probe6(
        &mut self,
        listens: &[Listen],
        probes: &[Probe<SocketAddrV6>],
        timing: Timing,
        progress: &mut dyn FnMut(usize),
    ) -> io::Result<Vec<Outcome<SocketAddrV6>>> {
        probe::run(&self.0, listens, probes, timing, progress)
    }

    fn ping(&mut self, pings: &[Ping]) -> io::Result<Vec<PingOutcome>> {
        for s in &self.0 {
            s.ns.must(&["ip", "-6", "neigh", "flush", "all"])?;
        }
        // All at once: a ping whose neighbour never answers takes the whole
        // ND timeout (three solicitations a second apart).
        let children: Vec<io::Result<std::process::Child>> = pings
            .iter()
            .map(|p| {
                let target = p.target.to_string();
                self.0[p.from]
                    .ns
                    .command(&["ping", "-6", "-n", "-c", "1", "-W", "4", &target])
                    .spawn()
            })
            .collect();
        let mut out = Vec::with_capacity(pings.len());
        for (p, c) in pings.iter().zip(children) {
            let answered = match c.and_then(|c| c.wait_with_output()) {
                Ok(o) => o.status.success(),
                Err(e) => {
                    out.push(PingOutcome::Error(format!("ping: {e}")));
                    continue;
                }
            };
            if answered {
                out.push(PingOutcome::Answered);
                continue;
            }
            let target = p.target.to_string();
            let o = self.0[p.from]
                .ns
                .must(&["ip", "-6", "neigh", "show", &target])?;
            // "ADDR dev IF lladdr MAC REACHABLE" or "ADDR dev IF FAILED"; the state is the last word.
            let state = o.stdout.split_whitespace().last().unwrap_or("").to_string();
            let known = ["REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"];
            out.push(if known.contains(&state.as_str()) {
                PingOutcome::NoEcho(state)
            } else {
                PingOutcome::NoNeighbour(state)
            });
        }
        Ok(out)
    }
}

/// Run the three questions in the lab's namespaces. `hosts[h]` is host h's
/// namespace, `addr6[h][k]` the lab IPv6 address of host h's interface k.
pub fn run(
    plan: &Plan,
    addr6: &[Vec<Ipv6Addr>],
    hosts: &[&Netns],
    timing: Timing,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> io::Result<(Vec<ProbedFlow>, Exposure, Ipv6Exposure)> {
    // Network safety: every address we will ever send to is a documentation address.
    for h in &plan.deployment.hosts {
        for a in h.interfaces.iter().filter_map(|i| i.address) {
            assert!(is_doc(a), "lab address {a} is not a documentation address");
        }
    }
    for a in addr6.iter().flatten() {
        assert!(
            crate::lab::map::is_doc6(*a),
            "lab address {a} is not a documentation address"
        );
    }
    let mut sites = Sites(
        hosts
            .iter()
            .zip(&plan.deployment.hosts)
            .zip(addr6)
            .map(|((ns, h), a6)| Site {
                ns,
                addrs: h.interfaces.iter().filter_map(|i| i.address).collect(),
                addrs6: a6.clone(),
            })
            .collect(),
    );
    let (flows, exposure) = run_with(plan, &mut sites, timing, progress)?;
    let xp6 = ipv6::plan(plan, addr6);
    let (seen6, pings) = ipv6::run(&xp6, &mut sites, timing, progress)?;
    let ipv6 = ipv6::judge(plan, addr6, &xp6, &seen6, &pings);
    Ok((flows, exposure, ipv6))
}

/// Both questions through any `Prober`: plan, run, judge each, exposure first
/// (see the module doc).
pub fn run_with(
    plan: &Plan,
    prober: &mut dyn Prober,
    timing: Timing,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> io::Result<(Vec<ProbedFlow>, Exposure)> {
    let xp = exposure::plan(plan);
    let seen = exposure::run(&xp, prober, timing, progress)?;
    let mut exposure = exposure::judge(plan, &xp, &seen);
    let mut fp = flows::plan(plan, &xp.sports);
    let obs = flows::run(plan, &mut fp, prober, timing, progress)?;
    let (flows, notes) = flows::judge(plan, &fp, &obs);
    exposure.notes.extend(notes);
    Ok((flows, exposure))
}

/// Short default timing: everything is local, blocked probes cost the timeout once.
pub fn default_timing() -> Timing {
    Timing {
        timeout: Duration::from_millis(800),
        resend: Duration::from_millis(200),
    }
}

/// What the stages' unit tests share: the wiki example mapped and planned as
/// `Lab::new` does, and synthetic observations.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::lab::probe::{Arrival, ClientSide};

    pub fn wiki(auth: Auth, helper: bool) -> Plan {
        let text = include_str!("../../../examples/wiki.toml").to_string();
        let d = crate::load::load_str("examples/wiki.toml", text)
            .expect("the wiki example loads")
            .with_auth(auth)
            .with_helper(helper);
        let lab = crate::lab::Lab::new(d, Backend::Iptables).expect("the wiki example maps");
        lab.plan
    }

    pub fn host(plan: &Plan, name: &str) -> HostId {
        plan.deployment.host_by_name(name).expect("a wiki host")
    }

    pub fn addr(plan: &Plan, name: &str) -> Ipv4Addr {
        let (h, i) = name.split_once('/').unwrap_or((name, ""));
        let host = &plan.deployment.hosts[host(plan, h)];
        host.interfaces
            .iter()
            .find(|x| i.is_empty() || x.name == i)
            .expect("an interface")
            .address
            .expect("an IPv4 address")
    }

    pub fn silent() -> Outcome {
        Outcome {
            client: ClientSide::Silent,
            arrival: None,
        }
    }

    pub fn refused() -> Outcome {
        Outcome {
            client: ClientSide::Refused,
            arrival: None,
        }
    }

    /// Arrived at namespace `ns`, seen from `peer`, answered as a working path answers.
    pub fn arrived(pr: &Probe, ns: HostId, peer: SocketAddrV4) -> Outcome {
        Outcome {
            client: match pr.proto {
                Proto::Tcp => ClientSide::Connected,
                Proto::Udp => ClientSide::Replied(pr.reply.clone().unwrap_or_default()),
            },
            arrival: Some(Arrival { ns, peer }),
        }
    }
}
