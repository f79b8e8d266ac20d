//! What the lab asks of the kernel, and how it judges the answers.
//!
//! Two questions, in this order:
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
//!
//! Exposure runs first: the helper's expectations (180 s) from question 2 would
//! otherwise open ports for question 1. Source ports of exposure probes are
//! never among the probed destination ports, so no probe can ever look like the
//! reply of another to conntrack.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use serde::Serialize;

use crate::amanda::facts::nat_port_class;
use crate::amanda::{Flow, HelperRole};
use crate::lab::map::is_doc;
use crate::lab::netns::Netns;
use crate::lab::probe::{self, Arrival, ClientSide, Listen, Outcome, Probe, Site, Timing};
use crate::model::{Auth, Deployment, HostId, PortRange, Proto};
use crate::route::Path;
use crate::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    NotProbed,
}

/// One required flow as observed.
#[derive(Debug, Clone, Serialize)]
pub struct FlowResult {
    /// 1-based, as in SUMMARY.md and `amwall flows`.
    pub id: usize,
    pub operation: &'static str,
    pub stream: &'static str,
    pub initiator: String,
    pub responder: String,
    /// Routers on the way, with what they do ("fwhost (masquerade)").
    pub via: Vec<String>,
    pub proto: Proto,
    pub dport: PortRange,
    pub sport: Option<PortRange>,
    /// What was sent: "udp :840 → 192.0.2.1:10080".
    pub probe: String,
    /// What the responder saw ("192.0.2.2:840"), if it arrived.
    pub seen: Option<String>,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
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
pub struct Finding {
    pub kind: FindingKind,
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
    pub findings: Vec<Finding>,
    /// Not failures: reachable only as the masquerading router that a needed flow
    /// crosses (see `FindingKind::OnPath`).
    pub on_path: Vec<Finding>,
    /// Not failures: things worth knowing (e.g. what the helper opened on its own).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Iptables,
    Nft,
}

/// Everything one lab run observed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub topology: String,
    pub backend: Mode,
    pub auth: Vec<Auth>,
    pub helper: bool,
    pub networks: Vec<crate::lab::map::NetMap>,
    pub flows: Vec<FlowResult>,
    pub exposure: Exposure,
    pub seconds: f64,
}

impl Report {
    pub fn failed_flows(&self) -> usize {
        self.flows
            .iter()
            .filter(|f| f.status == Status::Fail)
            .count()
    }
    pub fn passed(&self) -> bool {
        self.failed_flows() == 0 && self.exposure.findings.is_empty()
    }
    pub fn flow(&self, id: usize) -> &FlowResult {
        &self.flows[id - 1]
    }
}

/// The lab's naming of addresses: "fwhost/eth1" (single-interface hosts: "rhost").
pub(crate) fn label(d: &Deployment, a: Ipv4Addr) -> String {
    for h in &d.hosts {
        for i in &h.interfaces {
            if i.address == a {
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
        .position(|h| h.interfaces.iter().any(|i| i.address == a))
}

/// Hands out source ports: inside a range, never one of `avoid` for that
/// namespace and protocol, and never the same (port, target) twice.
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

/// Host `k`'s ephemeral-looking source port, not in `p`.
fn ephemeral(k: usize, p: &BTreeSet<u16>) -> u16 {
    (45113u16..)
        .filter(|x| !p.contains(x))
        .nth(k % 1000)
        .expect("free port")
}

/// Host `k`'s source port inside `r`: counted down from the top, never in `p`, so
/// exposure's source ports stay off the probed set, and hosts differ (two hosts'
/// probes must not meet as one conntrack tuple behind a masquerading router).
fn pick_off(k: usize, r: PortRange, p: &BTreeSet<u16>) -> u16 {
    let free: Vec<u16> = (r.lo..=r.hi).rev().filter(|x| !p.contains(x)).collect();
    if free.is_empty() {
        r.hi
    } else {
        free[k % free.len()]
    }
}

fn sport_ok(flow_sport: Option<PortRange>, sent: Option<u16>, seen: u16) -> Result<String, String> {
    match (flow_sport, sent) {
        (Some(_), Some(s)) if s == seen => Ok(String::new()),
        (Some(_), Some(s)) if nat_port_class(s).contains(seen) => {
            Ok(format!("source port {s} became {seen} (same class)"))
        }
        (Some(_), Some(s)) => Err(format!(
            "source port {s} arrived as {seen}: it left its class {}",
            nat_port_class(s)
        )),
        _ => Ok(String::new()),
    }
}

/// Amanda-like payloads for the helper exchange (DESIGN.md "The kernel helper"):
/// the REP that sendbackup sends since 3.4 (`A:client-src/sendbackup.c`), with
/// the ports to connect to, and which of them are real TCP listeners.
fn connect_reply(auth: Auth, index: bool, base: u16) -> (String, Vec<(&'static str, u16)>) {
    let head = "Amanda 3.5 REP HANDLE 000-00000001 SEQ 1\n";
    match auth {
        Auth::Bsdudp => {
            // bsdudp: only DATA is a listener; the others are multiplexed handles
            // (`A:common-src/security-util.c` tcp1_stream_server; lab: MESG 499999 ...).
            let rest = if index {
                "MESG 499999 INDEX 499998 STATE 499997"
            } else {
                "MESG 499999 INDEX -1 STATE 499998"
            };
            (
                format!("{head}CONNECT DATA {base} {rest}\n"),
                vec![("DATA", base)],
            )
        }
        _ => {
            let mut streams = vec![("DATA", base), ("MESG", base + 1)];
            let line = if index {
                streams.push(("INDEX", base + 2));
                streams.push(("STATE", base + 3));
                format!(
                    "CONNECT DATA {} MESG {} INDEX {} STATE {}",
                    base,
                    base + 1,
                    base + 2,
                    base + 3
                )
            } else {
                streams.push(("STATE", base + 2));
                format!(
                    "CONNECT DATA {} MESG {} INDEX -1 STATE {}",
                    base,
                    base + 1,
                    base + 2
                )
            };
            (format!("{head}{line}\n"), streams)
        }
    }
}

const REQUEST: &str =
    "Amanda 3.5 REQ HANDLE 000-00000001 SEQ 1\nSECURITY USER root\nSERVICE sendbackup\n";

/// Run both questions. `hosts[h]` is host h's namespace.
pub fn run(
    plan: &Plan,
    hosts: &[&Netns],
    timing: Timing,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> std::io::Result<(Vec<FlowResult>, Exposure)> {
    // Network safety: every address we will ever send to is a documentation address.
    for h in &plan.deployment.hosts {
        for i in &h.interfaces {
            assert!(
                is_doc(i.address),
                "lab address {} is not a documentation address",
                i.address
            );
        }
    }
    let sites: Vec<Site> = hosts
        .iter()
        .zip(&plan.deployment.hosts)
        .map(|(ns, h)| Site {
            ns,
            addrs: h.interfaces.iter().map(|i| i.address).collect(),
        })
        .collect();
    let (mut exposure, sports) = exposure(plan, &sites, timing, progress)?;
    let (flows, notes) = flows(plan, &sites, &sports, timing, progress)?;
    exposure.notes.extend(notes);
    Ok((flows, exposure))
}

/// The ports every pair is probed on.
fn probe_ports(plan: &Plan) -> BTreeSet<u16> {
    let mut p = BTreeSet::new();
    let edges = |r: PortRange, p: &mut BTreeSet<u16>| {
        p.insert(r.lo);
        p.insert(r.hi);
        if r.lo > 1 {
            p.insert(r.lo - 1);
        }
        if r.hi < u16::MAX {
            p.insert(r.hi + 1);
        }
        if r.count() > 2 {
            p.insert(r.lo + (r.hi - r.lo) / 2);
        }
    };
    for f in &plan.flows {
        edges(f.dport, &mut p);
        if let Some(s) = f.sport {
            edges(s, &mut p);
        }
    }
    let m = &plan.deployment.management;
    if m.enabled {
        edges(PortRange::single(m.port), &mut p);
    }
    // A spread of well-known and high ports.
    for x in [
        1u16, 7, 25, 53, 80, 111, 123, 443, 514, 631, 873, 2049, 3306, 5432, 8080, 10000, 20000,
        32768, 40000, 49152, 60000, 65535,
    ] {
        p.insert(x);
    }
    p
}

/// A flow a static probe may use: not helper-only (or over loopback, where `lo` is open).
fn statically_open(f: &Flow, p: &Path) -> bool {
    f.helper != HelperRole::Expected || f.initiator == f.responder || p.hops.len() == 1
}

/// Returns the exposure and every source port it used (the flow probes keep clear
/// of them, see the module doc).
fn exposure(
    plan: &Plan,
    hosts: &[Site<'_>],
    timing: Timing,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> std::io::Result<(Exposure, BTreeSet<u16>)> {
    let d = &plan.deployment;
    let dports = probe_ports(plan);
    // Source ports per host and protocol: one ephemeral, one inside each source range in use.
    let sports_of = |x: usize, proto: Proto| -> BTreeSet<u16> {
        let mut v = BTreeSet::from([ephemeral(x, &dports)]);
        for f in plan.flows.iter().filter(|f| f.proto == proto) {
            if let Some(r) = f.sport {
                v.insert(pick_off(x, r, &dports));
            }
        }
        v
    };
    let mut all_sports = BTreeSet::new();
    let mut probes = Vec::new();
    let mut meta: Vec<(HostId, Ipv4Addr)> = Vec::new();
    let mut pairs = 0;
    for x in 0..d.hosts.len() {
        for (y, host) in d.hosts.iter().enumerate() {
            if x == y {
                continue;
            }
            for iface in &host.interfaces {
                pairs += 1;
                for proto in [Proto::Tcp, Proto::Udp] {
                    let sports = sports_of(x, proto);
                    all_sports.extend(sports.iter().copied());
                    for &sp in &sports {
                        for &dp in &dports {
                            probes.push(Probe {
                                from: x,
                                proto,
                                sport: Some(sp),
                                target: SocketAddrV4::new(iface.address, dp),
                                payload: vec![],
                                reply: None,
                            });
                            meta.push((x, iface.address));
                        }
                    }
                }
            }
        }
    }
    let listens: Vec<Listen> = (0..d.hosts.len())
        .flat_map(|ns| {
            dports.iter().flat_map(move |&port| {
                [Proto::Tcp, Proto::Udp]
                    .into_iter()
                    .map(move |proto| Listen { ns, proto, port })
            })
        })
        .collect();
    let total = probes.len();
    let mut done = 0;
    progress("exposure", 0, total);
    let mut outcomes = probe::run(hosts, &listens, &probes, timing, &mut |n| {
        done += n;
        progress("exposure", done, total);
    })?;

    // What must arrive (a flow's own target), and what may (needed somewhere).
    let expected = |pr: &Probe| -> Option<HostId> {
        plan.flows
            .iter()
            .zip(&plan.paths)
            .filter(|(f, p)| statically_open(f, p))
            .find(|(f, p)| {
                f.initiator == pr.from
                    && p.target == *pr.target.ip()
                    && f.proto == pr.proto
                    && f.dport.contains(pr.target.port())
                    && f.sport
                        .map_or(true, |s| pr.sport.is_some_and(|x| s.contains(x)))
            })
            .map(|(f, _)| f.responder)
    };
    // Retry what must arrive but did not, alone and with more time, before calling it blocked.
    let retry: Vec<usize> = (0..probes.len())
        .filter(|&i| expected(&probes[i]).is_some() && !outcomes[i].reached())
        .collect();
    if !retry.is_empty() {
        let again: Vec<Probe> = retry.iter().map(|&i| probes[i].clone()).collect();
        let slow = Timing {
            timeout: timing.timeout * 3,
            ..timing
        };
        let res = probe::run(hosts, &listens, &again, slow, &mut |_| {})?;
        for (k, o) in retry.into_iter().zip(res) {
            outcomes[k] = o;
        }
    }

    let m = &d.management;
    let needed = |pr: &Probe, at: Option<Arrival>| -> bool {
        let at_host = at.map(|a| a.ns).or_else(|| owner(d, *pr.target.ip()));
        let by_flow = plan
            .flows
            .iter()
            .zip(&plan.paths)
            .filter(|(f, p)| statically_open(f, p))
            .any(|(f, _)| {
                f.initiator == pr.from
                    && Some(f.responder) == at_host
                    && f.proto == pr.proto
                    && f.dport.contains(pr.target.port())
                    && f.sport
                        .map_or(true, |s| pr.sport.is_some_and(|x| s.contains(x)))
            });
        let by_mgmt = m.enabled
            && pr.proto == m.proto
            && pr.target.port() == m.port
            && at_host == owner(d, *pr.target.ip())
            && match at {
                Some(a) => {
                    m.from.is_empty()
                        // Where the admins arrive, after routing and NAT (as planned).
                        || plan.management[a.ns].iter().any(|x| {
                            x.kind == crate::route::HopKind::Destination
                                && x.src.contains(a.peer.ip())
                        })
                }
                None => true,
            };
        by_flow || by_mgmt
    };

    // A needed flow that `pr`'s sender masquerades, arriving where `pr` arrived
    // from the same address.
    let on_path = |pr: &Probe, at: Option<Arrival>| -> Option<usize> {
        let a = at?;
        plan.flows
            .iter()
            .zip(&plan.paths)
            .enumerate()
            .filter(|(_, (f, p))| statically_open(f, p))
            .find(|(_, (f, p))| {
                f.responder == a.ns
                    && f.proto == pr.proto
                    && f.dport.contains(pr.target.port())
                    && f.sport
                        .map_or(true, |s| pr.sport.is_some_and(|x| s.contains(x)))
                    && p.routers()
                        .any(|h| h.host == pr.from && h.snat_to == Some(*a.peer.ip()))
            })
            .map(|(i, _)| i)
    };
    let mut arrived = 0;
    let mut needed_n = 0;
    let mut unroutable = 0;
    // (kind, src, dst addr, proto, sport, at, why) → dports
    type Key = (
        FindingKind,
        HostId,
        Ipv4Addr,
        Proto,
        u16,
        Option<HostId>,
        String,
    );
    let mut groups: Vec<(Key, Vec<u16>)> = Vec::new();
    let mut add = |k: Key, port: u16| match groups.iter_mut().find(|(g, _)| *g == k) {
        Some((_, v)) => v.push(port),
        None => groups.push((k, vec![port])),
    };
    for (i, (pr, o)) in probes.iter().zip(&outcomes).enumerate() {
        let (x, a) = meta[i];
        let sp = pr.sport.expect("exposure probes bind a source port");
        if matches!(o.client, ClientSide::Unreachable(_)) {
            unroutable += 1;
        }
        let want = expected(pr);
        if o.reached() {
            arrived += 1;
            let at = o.arrival.map(|a| a.ns);
            if needed(pr, o.arrival) {
                needed_n += 1;
                if let (Some(w), Some(h)) = (want, at) {
                    if w != h {
                        add(
                            (
                                FindingKind::Misrouted,
                                x,
                                a,
                                pr.proto,
                                sp,
                                at,
                                format!("the flow goes to {}", d.hosts[w].name),
                            ),
                            pr.target.port(),
                        );
                    }
                }
            } else if let Some(f) = on_path(pr, o.arrival) {
                add(
                    (
                        FindingKind::OnPath,
                        x,
                        a,
                        pr.proto,
                        sp,
                        at,
                        format!(
                            "{} must accept flow #{} ({} → {}) from this router's address",
                            at.map_or("the responder".to_string(), |h| d.hosts[h].name.clone()),
                            f + 1,
                            d.hosts[plan.flows[f].initiator].name,
                            d.hosts[plan.flows[f].responder].name
                        ),
                    ),
                    pr.target.port(),
                );
            } else {
                add(
                    (
                        FindingKind::Unneeded,
                        x,
                        a,
                        pr.proto,
                        sp,
                        at,
                        "no flow needs it".into(),
                    ),
                    pr.target.port(),
                );
            }
        } else if let Some(w) = want {
            let why = match &o.client {
                ClientSide::Unreachable(e) => e.clone(),
                ClientSide::Error(e) => format!("lab error: {e}"),
                _ => format!("a flow to {} needs it", d.hosts[w].name),
            };
            add(
                (FindingKind::Blocked, x, a, pr.proto, sp, None, why),
                pr.target.port(),
            );
        }
    }
    let (on_path_groups, groups): (Vec<_>, Vec<_>) = groups
        .into_iter()
        .partition(|((k, ..), _)| *k == FindingKind::OnPath);
    let finding = |((kind, x, a, proto, sport, at, why), ports): (Key, Vec<u16>)| Finding {
        kind,
        src: d.hosts[x].name.clone(),
        dst: format!("{} {a}", label(d, a)),
        proto,
        sport,
        dports: crate::policy::merge_ranges(ports.into_iter().map(PortRange::single).collect()),
        arrived_at: at.map(|h| d.hosts[h].name.clone()),
        why,
    };
    let findings = groups.into_iter().map(finding).collect();
    let on_path = on_path_groups.into_iter().map(finding).collect();
    Ok((
        Exposure {
            probes: probes.len(),
            pairs,
            arrived,
            needed: needed_n,
            unroutable,
            dports: dports.into_iter().collect(),
            findings,
            on_path,
            notes: vec![],
        },
        all_sports,
    ))
}

/// How many dumpers talk to each client in a helper exchange. Each dumper has its
/// own UDP socket (reserved port), i.e. its own conntrack master, and a client with
/// several disk list entries is usually served by more than one of them within the
/// helper's 180 s expectation timeout.
pub const DUMPERS: usize = 2;

/// One sendbackup exchange the helper must parse: the UDP request (stage 1), the
/// `CONNECT` reply, then a TCP connection to each announced stream (stage 2).
struct Exchange {
    flow: usize,
    /// The UDP control flow it rides on (helper assigned).
    control: usize,
    reply: String,
    streams: Vec<(&'static str, u16)>,
    /// Ports the kernel derives from numbers it cannot parse as ports (more than
    /// five digits: it reads the first five), e.g. bsdudp's `MESG 499999` → 49999.
    side_ports: Vec<u16>,
}

/// The first five digits of every number of more than five digits in a
/// `CONNECT` line: what nf_conntrack_amanda's parser (5 characters, simple_strtoul)
/// turns into an expected port.
fn truncated_ports(reply: &str) -> Vec<u16> {
    let line = reply
        .lines()
        .find(|l| l.starts_with("CONNECT "))
        .unwrap_or("");
    let mut v: Vec<u16> = line
        .split_whitespace()
        .filter(|w| w.len() > 5 && w.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|w| w[..5].parse().ok())
        .filter(|&p| p != 0)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn flows(
    plan: &Plan,
    hosts: &[Site<'_>],
    exposure_sports: &BTreeSet<u16>,
    timing: Timing,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> std::io::Result<(Vec<FlowResult>, Vec<String>)> {
    let d = &plan.deployment;
    let flow_timing = Timing {
        timeout: timing.timeout * 2,
        ..timing
    };
    // Destination port per flow: the single port, or one in the middle of the range.
    let dport_of = |f: &Flow| -> u16 {
        if f.dport.lo == f.dport.hi {
            f.dport.lo
        } else {
            f.dport.lo + (f.dport.hi - f.dport.lo) / 2
        }
    };

    // Helper exchanges, DUMPERS per flow, each announcing its own ports from the top
    // of the client's range as Amanda did in the lab (`CONNECT DATA 50097 ...`).
    let mut exchanges: Vec<Exchange> = Vec::new();
    let mut next_top: HashMap<HostId, u16> = HashMap::new();
    let mut no_control: Vec<usize> = Vec::new();
    for (i, (f, p)) in plan.flows.iter().zip(&plan.paths).enumerate() {
        if statically_open(f, p) {
            continue;
        }
        let control = plan.flows.iter().position(|c| {
            c.initiator == f.initiator
                && c.responder == f.responder
                && c.helper == HelperRole::Assign
                && c.proto == Proto::Udp
        });
        let Some(control) = control else {
            no_control.push(i);
            continue;
        };
        let index = d.hosts[f.responder].amanda.index;
        for _ in 0..DUMPERS {
            let top = next_top.entry(f.responder).or_insert(f.dport.hi);
            // Never a port exposure used as a source port: that conntrack entry's
            // reply direction would be this connection (see the module doc).
            while *top > f.dport.lo
                && (top.saturating_sub(3)..=*top).any(|q| exposure_sports.contains(&q))
            {
                *top -= 1;
            }
            let base = top.saturating_sub(3).max(f.dport.lo);
            *top = base.saturating_sub(1);
            let (reply, streams) = connect_reply(f.auth, index, base);
            let side_ports = truncated_ports(&reply);
            exchanges.push(Exchange {
                flow: i,
                control,
                reply,
                streams,
                side_ports,
            });
        }
    }

    // Listeners, and source ports kept clear of them.
    let mut listens: BTreeSet<Listen> = BTreeSet::new();
    for (i, f) in plan.flows.iter().enumerate() {
        if !exchanges.iter().any(|x| x.flow == i) {
            listens.insert(Listen {
                ns: f.responder,
                proto: f.proto,
                port: dport_of(f),
            });
        }
    }
    for x in &exchanges {
        let cf = &plan.flows[x.control];
        let f = &plan.flows[x.flow];
        listens.insert(Listen {
            ns: cf.responder,
            proto: Proto::Udp,
            port: dport_of(cf),
        });
        for (_, port) in x.streams.iter() {
            listens.insert(Listen {
                ns: f.responder,
                proto: Proto::Tcp,
                port: *port,
            });
        }
        for port in &x.side_ports {
            listens.insert(Listen {
                ns: f.responder,
                proto: Proto::Tcp,
                port: *port,
            });
        }
    }
    let mut ports = Ports {
        avoid: HashMap::new(),
        used: HashSet::new(),
    };
    for l in &listens {
        ports
            .avoid
            .entry((l.ns, l.proto))
            .or_default()
            .insert(l.port);
    }
    for ns in 0..d.hosts.len() {
        for proto in [Proto::Tcp, Proto::Udp] {
            ports
                .avoid
                .entry((ns, proto))
                .or_default()
                .extend(exposure_sports);
        }
    }
    let listens: Vec<Listen> = listens.into_iter().collect();

    // Stage 1: every static flow, and the UDP half of every exchange.
    let mut plain: Vec<(usize, Probe)> = Vec::new();
    for (i, (f, p)) in plan.flows.iter().zip(&plan.paths).enumerate() {
        if exchanges.iter().any(|x| x.flow == i) || no_control.contains(&i) {
            continue;
        }
        let target = SocketAddrV4::new(p.target, dport_of(f));
        let sport = f.sport.map(|r| ports.pick(f.initiator, f.proto, r, target));
        plain.push((
            i,
            Probe {
                from: f.initiator,
                proto: f.proto,
                sport,
                target,
                payload: vec![],
                reply: None,
            },
        ));
    }
    let mut requests: Vec<Probe> = Vec::new();
    for x in &exchanges {
        let cf = &plan.flows[x.control];
        let target = SocketAddrV4::new(plan.paths[x.control].target, dport_of(cf));
        let sport = cf
            .sport
            .map(|r| ports.pick(cf.initiator, Proto::Udp, r, target));
        requests.push(Probe {
            from: cf.initiator,
            proto: Proto::Udp,
            sport,
            target,
            payload: REQUEST.as_bytes().to_vec(),
            reply: Some(x.reply.clone().into_bytes()),
        });
    }
    let total = plain.len() + exchanges.iter().map(|x| 1 + x.streams.len()).sum::<usize>();
    progress("flows", 0, total);
    let stage1: Vec<Probe> = plain
        .iter()
        .map(|(_, p)| p.clone())
        .chain(requests.iter().cloned())
        .collect();
    let mut out1 = probe::run(hosts, &listens, &stage1, flow_timing, &mut |_| {})?;
    // A static flow's failure is confirmed once more, alone and slower, before it is
    // reported. (Exchanges are not repeated: a second REP would be a third dumper.)
    retry_failed(hosts, &listens, &stage1[..plain.len()], &mut out1, timing)?;
    let (out_plain, out_req) = out1.split_at(plain.len());
    progress("flows", stage1.len(), total);

    // Stage 2: the TCP streams of every exchange whose reply came back, then the
    // ports the helper opened by mis-parsing (only reported).
    let mut stage2: Vec<(usize, &'static str, Probe)> = Vec::new();
    let mut side: Vec<(usize, Probe)> = Vec::new();
    for (k, x) in exchanges.iter().enumerate() {
        if !matches!(out_req[k].client, ClientSide::Replied(_)) {
            continue;
        }
        let f = &plan.flows[x.flow];
        let p = &plan.paths[x.flow];
        for (name, port) in &x.streams {
            let target = SocketAddrV4::new(p.target, *port);
            let sport = f
                .sport
                .map(|r| ports.pick(f.initiator, Proto::Tcp, r, target));
            stage2.push((
                k,
                name,
                Probe {
                    from: f.initiator,
                    proto: Proto::Tcp,
                    sport,
                    target,
                    payload: vec![],
                    reply: None,
                },
            ));
        }
        for port in &x.side_ports {
            let target = SocketAddrV4::new(p.target, *port);
            if side
                .iter()
                .any(|(_, s)| s.target == target && s.from == f.initiator)
            {
                continue;
            }
            let sport = f
                .sport
                .map(|r| ports.pick(f.initiator, Proto::Tcp, r, target));
            side.push((
                k,
                Probe {
                    from: f.initiator,
                    proto: Proto::Tcp,
                    sport,
                    target,
                    payload: vec![],
                    reply: None,
                },
            ));
        }
    }
    let probes2: Vec<Probe> = stage2
        .iter()
        .map(|s| s.2.clone())
        .chain(side.iter().map(|s| s.1.clone()))
        .collect();
    let mut out2 = if probes2.is_empty() {
        vec![]
    } else {
        probe::run(hosts, &listens, &probes2, flow_timing, &mut |_| {})?
    };
    // The helper's expectations last 180 s: a stream that failed is tried once more,
    // slower, before it is reported (a busy machine must not fake a finding).
    retry_failed(hosts, &listens, &probes2[..stage2.len()], &mut out2, timing)?;
    let (out_streams, out_side) = out2.split_at(stage2.len());
    progress("flows", total, total);

    // Judge.
    let mut results: Vec<Option<FlowResult>> = vec![None; plan.flows.len()];
    for &i in &no_control {
        results[i] = Some(row(
            plan,
            i,
            "-".into(),
            None,
            Status::NotProbed,
            "needs a helper exchange, but no UDP control flow with the helper assigned leads there"
                .into(),
        ));
    }
    for ((i, pr), o) in plain.iter().zip(out_plain) {
        let (status, seen, detail) = judge(d, &plan.flows[*i], &plan.paths[*i], pr, o);
        results[*i] = Some(row(plan, *i, probe_text(d, pr), seen, status, detail));
    }
    for (i, result) in results.iter_mut().enumerate() {
        let mine: Vec<usize> = (0..exchanges.len())
            .filter(|&k| exchanges[k].flow == i)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let f = &plan.flows[i];
        let p = &plan.paths[i];
        let mut parts = Vec::new();
        let mut ok = true;
        let mut seen = None;
        for (n, &k) in mine.iter().enumerate() {
            let x = &exchanges[k];
            let req = &requests[k];
            let who = format!("dumper {} (udp :{})", n + 1, req.sport.unwrap_or(0));
            let (st, _, det) = judge(d, &plan.flows[x.control], p, req, &out_req[k]);
            if st != Status::Pass {
                ok = false;
                let why = if n > 0 && !x.side_ports.is_empty() && out_req[k].arrival.is_some() {
                    format!(
                        "the request arrived but the REP never came back: its `CONNECT` makes the helper expect port {} again, which an earlier dumper's exchange (another conntrack master) already expects, so the kernel drops the REP (amandad's sendto fails with EPERM); nf_conntrack_amanda reads at most 5 digits, so the multiplexed handles 4999xx all become port 49999",
                        x.side_ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                    )
                } else {
                    det
                };
                parts.push(format!("{who}: no CONNECT reply ({why})"));
                continue;
            }
            let mut streams = Vec::new();
            for ((kk, name, pr2), o2) in stage2.iter().zip(out_streams) {
                if *kk != k {
                    continue;
                }
                let (st2, seen2, det2) = judge(d, f, p, pr2, o2);
                if seen.is_none() {
                    seen = seen2;
                }
                if st2 == Status::Pass {
                    streams.push(format!("{name} {}", pr2.target.port()));
                } else {
                    ok = false;
                    streams.push(format!("{name} {} FAILED ({det2})", pr2.target.port()));
                }
            }
            parts.push(format!("{who}: {}", streams.join(", ")));
        }
        let first = &requests[mine[0]];
        let sport = stage2
            .iter()
            .find(|s| s.0 == mine[0])
            .and_then(|s| s.2.sport)
            .map(|s| format!(":{s}"))
            .unwrap_or_default();
        *result = Some(row(
            plan,
            i,
            format!(
                "{} → CONNECT; tcp {sport} → {}:…",
                probe_text(d, first),
                label(d, p.target)
            ),
            seen,
            if ok { Status::Pass } else { Status::Fail },
            format!(
                "RELATED via the helper, {} dumpers: {}",
                mine.len(),
                parts.join("; ")
            ),
        ));
    }
    let mut notes = Vec::new();
    for ((k, pr), o) in side.iter().zip(out_side) {
        if o.reached() {
            let x = &exchanges[*k];
            let f = &plan.flows[x.flow];
            notes.push(format!(
                "flow #{}: the conntrack helper also let {} reach {} tcp {} (RELATED, for 180 s): it reads the multiplexed handle in `{}` as a port",
                x.flow + 1,
                d.hosts[f.initiator].name,
                label(d, *pr.target.ip()),
                pr.target.port(),
                x.reply.lines().find(|l| l.starts_with("CONNECT")).unwrap_or("")
            ));
        }
    }
    Ok((
        results
            .into_iter()
            .map(|r| r.expect("every flow judged"))
            .collect(),
        notes,
    ))
}

/// Probe again, alone and with three times the timeout, each of `probes`
/// whose outcome (same index in `outs`) failed; the new outcome replaces it.
fn retry_failed(
    hosts: &[Site<'_>],
    listens: &[Listen],
    probes: &[Probe],
    outs: &mut [Outcome],
    timing: Timing,
) -> std::io::Result<()> {
    let again: Vec<usize> = (0..probes.len())
        .filter(|&k| !flow_ok(&probes[k], &outs[k]))
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
        .zip(probe::run(hosts, listens, &ps, slow, &mut |_| {})?)
    {
        outs[k] = o;
    }
    Ok(())
}

fn flow_ok(pr: &Probe, o: &Outcome) -> bool {
    o.arrival.is_some()
        && match pr.proto {
            Proto::Tcp => o.client == ClientSide::Connected,
            Proto::Udp => matches!(o.client, ClientSide::Replied(_)),
        }
}

fn probe_text(d: &Deployment, pr: &Probe) -> String {
    let sp = pr
        .sport
        .map(|s| format!(":{s}"))
        .unwrap_or_else(|| ":*".into());
    format!(
        "{} {sp} → {}:{}",
        pr.proto,
        label(d, *pr.target.ip()),
        pr.target.port()
    )
}

/// PASS when it arrived at the responder, from the address the plan says it sees,
/// with the source port still in its class, and (UDP) the answer came back.
fn judge(
    d: &Deployment,
    f: &Flow,
    p: &Path,
    pr: &Probe,
    o: &Outcome,
) -> (Status, Option<String>, String) {
    let seen = o
        .arrival
        .map(|a| format!("{}:{}", label(d, *a.peer.ip()), a.peer.port()));
    let Some(a) = o.arrival else {
        let why = match &o.client {
            ClientSide::Silent => "nothing arrived (dropped on the way)".to_string(),
            ClientSide::Refused => "refused: it reached a host where nothing listens".to_string(),
            ClientSide::Unreachable(e) => e.clone(),
            ClientSide::Error(e) => format!("lab error: {e}"),
            ClientSide::Connected | ClientSide::Replied(_) => {
                "answered, but the listener never saw it".to_string()
            }
        };
        return (Status::Fail, None, why);
    };
    let mut notes = Vec::new();
    if a.ns != f.responder {
        return (
            Status::Fail,
            seen,
            format!(
                "arrived at {} instead of {}",
                d.hosts[a.ns].name, d.hosts[f.responder].name
            ),
        );
    }
    let want = p.last().src;
    if *a.peer.ip() != want {
        return (
            Status::Fail,
            seen,
            format!(
                "the responder saw {} but the plan says {}",
                a.peer.ip(),
                label(d, want)
            ),
        );
    }
    match sport_ok(f.sport, pr.sport, a.peer.port()) {
        Ok(n) if !n.is_empty() => notes.push(n),
        Ok(_) => {}
        Err(e) => return (Status::Fail, seen, e),
    }
    match (&pr.proto, &o.client) {
        (Proto::Udp, ClientSide::Replied(r)) => {
            if let Some(want) = &pr.reply {
                if r != want {
                    return (Status::Fail, seen, "a different answer came back".into());
                }
            }
        }
        (Proto::Udp, _) => {
            return (
                Status::Fail,
                seen,
                "arrived, but the answer did not come back (ESTABLISHED blocked?)".into(),
            )
        }
        (Proto::Tcp, ClientSide::Connected) => {}
        (Proto::Tcp, c) => {
            return (
                Status::Fail,
                seen,
                format!("arrived, but the client saw {c:?}"),
            )
        }
    }
    (Status::Pass, seen, notes.join("; "))
}

fn row(
    plan: &Plan,
    i: usize,
    probe: String,
    seen: Option<String>,
    status: Status,
    detail: String,
) -> FlowResult {
    let d = &plan.deployment;
    let f = &plan.flows[i];
    let p = &plan.paths[i];
    let via = p
        .routers()
        .map(|h| {
            let mut what = Vec::new();
            if h.dnat_to.is_some() {
                what.push("port forward");
            }
            if h.snat_to.is_some() {
                what.push("masquerade");
            }
            if what.is_empty() {
                d.hosts[h.host].name.clone()
            } else {
                format!("{} ({})", d.hosts[h.host].name, what.join(", "))
            }
        })
        .collect();
    FlowResult {
        id: i + 1,
        operation: f.operation.name(),
        stream: f.stream,
        initiator: d.hosts[f.initiator].name.clone(),
        responder: d.hosts[f.responder].name.clone(),
        via,
        proto: f.proto,
        dport: f.dport,
        sport: f.sport,
        probe,
        seen,
        status,
        detail,
    }
}

/// Short default timing: everything is local, blocked probes cost the timeout once.
pub fn default_timing() -> Timing {
    Timing {
        timeout: Duration::from_millis(800),
        resend: Duration::from_millis(200),
    }
}

impl Report {
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Mode::Iptables => "iptables",
            Mode::Nft => "nft",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nf_conntrack_amanda copies at most 5 characters of each number
    /// (net/netfilter/nf_conntrack_amanda.c, `pbuf[sizeof("65535")]`): bsdudp's
    /// multiplexed handles 499999.. become port 49999 (DESIGN.md, lab finding).
    #[test]
    fn the_helper_reads_bsdudp_handles_as_port_49999() {
        let (reply, streams) = connect_reply(Auth::Bsdudp, true, 50097);
        assert_eq!(streams, vec![("DATA", 50097)]);
        assert!(reply.contains("CONNECT DATA 50097 MESG 499999 INDEX 499998 STATE 499997\n"));
        assert_eq!(truncated_ports(&reply), vec![49999]);
        let (reply, streams) = connect_reply(Auth::Bsd, true, 50097);
        assert_eq!(streams.len(), 4);
        assert!(truncated_ports(&reply).is_empty());
    }

    /// `A:client-src/sendbackup.c` (3.4+): `CONNECT DATA p MESG p INDEX p|-1 STATE p`.
    #[test]
    fn bsd_reply_without_index_says_minus_one() {
        let (reply, streams) = connect_reply(Auth::Bsd, false, 50000);
        assert!(reply.contains("CONNECT DATA 50000 MESG 50001 INDEX -1 STATE 50002\n"));
        let names: Vec<_> = streams.iter().map(|s| s.0).collect();
        assert_eq!(names, ["DATA", "MESG", "STATE"]);
    }

    /// nf_nat_l4proto_unique_tuple keeps a remapped port in its class; leaving the
    /// class (privileged → unprivileged) is what makes a client say "port N not secure".
    #[test]
    fn source_port_class_is_checked() {
        let r = Some(PortRange::new(840, 860));
        assert_eq!(sport_ok(r, Some(845), 845), Ok(String::new()));
        assert!(sport_ok(r, Some(845), 700).unwrap().contains("same class"));
        assert!(sport_ok(r, Some(845), 40000).is_err());
        assert_eq!(sport_ok(None, None, 40000), Ok(String::new()));
    }

    #[test]
    fn exposure_source_ports_stay_off_the_probed_ports_and_differ_per_host() {
        let p: BTreeSet<u16> = [840, 850, 859, 860, 861].into();
        let r = PortRange::new(840, 860);
        let picks: Vec<u16> = (0..4).map(|k| pick_off(k, r, &p)).collect();
        assert_eq!(picks, [858, 857, 856, 855]);
        assert!(!p.contains(&ephemeral(0, &p)));
        assert_ne!(ephemeral(0, &p), ephemeral(1, &p));
    }
}
