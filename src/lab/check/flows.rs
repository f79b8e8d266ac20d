//! Question 2, flows: every required flow, probed as Amanda would make it.
//!
//! `plan` picks, per flow, the probe (namespace, source port, target) and the
//! listeners; flows only the conntrack helper opens become `Exchange`s (a UDP
//! request whose `CONNECT` reply the helper parses, then the TCP streams it
//! announced). `run` sends the static probes and the requests, then plans and
//! sends the streams of every exchange that was answered (`plan_streams`), each
//! batch with one slower retry of what failed. `judge` turns the outcomes into
//! one `ProbedFlow` per flow, and notes on what the helper opened on its own.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::SocketAddrV4;

use super::{label, retry, statically_open, Ports, ProbedFlow, Prober, Status};
use crate::amanda::facts::nat_port_class;
use crate::amanda::settings::Auth;
use crate::flows::{Flow, HelperRole};
use crate::lab::probe::{ClientSide, Listen, Outcome, Probe, Timing};
use crate::model::{Deployment, HostId};
use crate::ports::{PortRange, Proto};
use crate::route::Path;
use crate::view::FlowView;
use crate::Plan;

/// How many dumpers talk to each client in a helper exchange. Each dumper has its
/// own UDP socket (reserved port), i.e. its own conntrack master, and a client with
/// several disk list entries is usually served by more than one of them within the
/// helper's 180 s expectation timeout.
pub const DUMPERS: usize = 2;

const REQUEST: &str =
    "Amanda 3.5 REQ HANDLE 000-00000001 SEQ 1\nSECURITY USER root\nSERVICE sendbackup\n";

/// One sendbackup exchange the helper must parse: the UDP request (stage 1), the
/// `CONNECT` reply, then a TCP connection to each announced stream (stage 2).
#[derive(Debug)]
pub(super) struct Exchange {
    pub flow: usize,
    /// The UDP control flow it rides on (helper assigned).
    pub control: usize,
    pub reply: String,
    pub streams: Vec<(&'static str, u16)>,
    /// Ports the kernel derives from numbers it cannot parse as ports (more than
    /// five digits: it reads the first five), e.g. bsdudp's `MESG 499999` → 49999.
    pub side_ports: Vec<u16>,
}

/// Stage 1 of the flow probes, and what stage 2 needs to be planned.
#[derive(Debug)]
pub(super) struct FlowPlan {
    pub listens: Vec<Listen>,
    pub exchanges: Vec<Exchange>,
    /// Helper-only flows with no UDP control flow to ride on: not probed.
    pub no_control: Vec<usize>,
    /// (flow, probe) for every statically open flow.
    pub plain: Vec<(usize, Probe)>,
    /// The UDP request of each exchange (same index).
    pub requests: Vec<Probe>,
    /// Source ports handed out so far; stage 2 continues from here.
    ports: Ports,
}

impl FlowPlan {
    /// For the progress display: every probe of both stages if all are answered.
    fn total(&self) -> usize {
        self.plain.len()
            + self
                .exchanges
                .iter()
                .map(|x| 1 + x.streams.len())
                .sum::<usize>()
    }
}

/// Stage 2: the TCP streams of the exchanges that were answered.
#[derive(Debug, Default)]
pub(super) struct StreamPlan {
    /// (exchange, stream name, probe).
    pub streams: Vec<(usize, &'static str, Probe)>,
    /// (exchange, probe) to the ports the helper derives from multiplexed
    /// handles: only reported, never a failure.
    pub side: Vec<(usize, Probe)>,
}

/// Everything the flow probes saw, index by index with the plans.
#[derive(Debug)]
pub(super) struct FlowObservations {
    pub plain: Vec<Outcome>,
    pub requests: Vec<Outcome>,
    /// Which streams were probed depends on which requests were answered.
    pub stage2: StreamPlan,
    pub streams: Vec<Outcome>,
    pub side: Vec<Outcome>,
}

/// Amanda-like payloads for the helper exchange (docs/design.md "The kernel helper"):
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

/// Destination port per flow: the single port, or one in the middle of the range.
fn dport_of(f: &Flow) -> u16 {
    if f.dport.lo == f.dport.hi {
        f.dport.lo
    } else {
        f.dport.lo + (f.dport.hi - f.dport.lo) / 2
    }
}

/// Helper exchanges, DUMPERS per helper-only flow, each announcing its own ports
/// from the top of the client's range as Amanda did in the lab (`CONNECT DATA
/// 50097 ...`). Returns them and the helper-only flows that have no control flow.
fn exchanges(plan: &Plan, exposure_sports: &BTreeSet<u16>) -> (Vec<Exchange>, Vec<usize>) {
    let d = &plan.deployment;
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
    (exchanges, no_control)
}

/// Plan stage 1: listeners for every probe of both stages, source ports kept
/// clear of them and of `exposure_sports`, a probe per static flow and a request
/// per exchange.
pub(super) fn plan(plan: &Plan, exposure_sports: &BTreeSet<u16>) -> FlowPlan {
    let d = &plan.deployment;
    let (exchanges, no_control) = exchanges(plan, exposure_sports);
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
        for port in x
            .streams
            .iter()
            .map(|s| s.1)
            .chain(x.side_ports.iter().copied())
        {
            listens.insert(Listen {
                ns: f.responder,
                proto: Proto::Tcp,
                port,
            });
        }
    }
    let mut ports = Ports::default();
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

    let mut plain: Vec<(usize, Probe)> = Vec::new();
    for (i, (f, p)) in plan.flows.iter().zip(&plan.paths).enumerate() {
        if exchanges.iter().any(|x| x.flow == i) || no_control.contains(&i) {
            continue;
        }
        let target = SocketAddrV4::new(p.target, dport_of(f));
        let sport = f.sport.map(|r| ports.pick(f.initiator, f.proto, r, target));
        plain.push((i, tcp_or_udp(f.initiator, f.proto, sport, target)));
    }
    let mut requests: Vec<Probe> = Vec::new();
    for x in &exchanges {
        let cf = &plan.flows[x.control];
        let target = SocketAddrV4::new(plan.paths[x.control].target, dport_of(cf));
        let sport = cf
            .sport
            .map(|r| ports.pick(cf.initiator, Proto::Udp, r, target));
        requests.push(Probe {
            payload: REQUEST.as_bytes().to_vec(),
            reply: Some(x.reply.clone().into_bytes()),
            ..tcp_or_udp(cf.initiator, Proto::Udp, sport, target)
        });
    }
    FlowPlan {
        listens: listens.into_iter().collect(),
        exchanges,
        no_control,
        plain,
        requests,
        ports,
    }
}

fn tcp_or_udp(from: HostId, proto: Proto, sport: Option<u16>, target: SocketAddrV4) -> Probe {
    Probe {
        from,
        proto,
        sport,
        target,
        payload: vec![],
        reply: None,
    }
}

/// Plan stage 2: for every exchange whose request was answered (`replied`, same
/// index), a TCP probe to each announced stream and, once per (initiator,
/// target), to each port the helper derives on its own.
pub(super) fn plan_streams(
    plan: &Plan,
    exchanges: &[Exchange],
    replied: &[bool],
    ports: &mut Ports,
) -> StreamPlan {
    let mut s = StreamPlan::default();
    for (k, x) in exchanges.iter().enumerate() {
        if !replied[k] {
            continue;
        }
        let f = &plan.flows[x.flow];
        let p = &plan.paths[x.flow];
        let mut to = |port| {
            let target = SocketAddrV4::new(p.target, port);
            let sport = f
                .sport
                .map(|r| ports.pick(f.initiator, Proto::Tcp, r, target));
            tcp_or_udp(f.initiator, Proto::Tcp, sport, target)
        };
        for (name, port) in &x.streams {
            s.streams.push((k, name, to(*port)));
        }
        for port in &x.side_ports {
            let target = SocketAddrV4::new(p.target, *port);
            if s.side
                .iter()
                .any(|(_, q)| q.target == target && q.from == f.initiator)
            {
                continue;
            }
            s.side.push((k, to(*port)));
        }
    }
    s
}

/// Arrived, and the client saw the connection or the answer.
fn flow_ok(pr: &Probe, o: &Outcome) -> bool {
    o.arrival.is_some()
        && match pr.proto {
            Proto::Tcp => o.client == ClientSide::Connected,
            Proto::Udp => matches!(o.client, ClientSide::Replied(_)),
        }
}

/// Run both stages. A static flow's failure is confirmed once more, alone and
/// slower, before it is reported; so is a stream's (the helper's expectations
/// last 180 s). Requests are not repeated: a second REP would be a third dumper.
pub(super) fn run(
    plan: &Plan,
    fp: &mut FlowPlan,
    prober: &mut dyn Prober,
    timing: Timing,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> io::Result<FlowObservations> {
    let flow_timing = Timing {
        timeout: timing.timeout * 2,
        ..timing
    };
    let total = fp.total();
    let failed = |_: usize, pr: &Probe, o: &Outcome| !flow_ok(pr, o);
    progress("flows", 0, total);
    let stage1: Vec<Probe> = fp
        .plain
        .iter()
        .map(|(_, p)| p.clone())
        .chain(fp.requests.iter().cloned())
        .collect();
    let mut out1 = prober.probe(&fp.listens, &stage1, flow_timing, &mut |_| {})?;
    let n = fp.plain.len();
    retry(
        prober,
        &fp.listens,
        &stage1[..n],
        &mut out1[..n],
        timing,
        failed,
    )?;
    let requests = out1.split_off(n);
    progress("flows", stage1.len(), total);

    let replied: Vec<bool> = requests
        .iter()
        .map(|o| matches!(o.client, ClientSide::Replied(_)))
        .collect();
    let stage2 = plan_streams(plan, &fp.exchanges, &replied, &mut fp.ports);
    let probes2: Vec<Probe> = stage2
        .streams
        .iter()
        .map(|s| s.2.clone())
        .chain(stage2.side.iter().map(|s| s.1.clone()))
        .collect();
    let mut out2 = if probes2.is_empty() {
        vec![]
    } else {
        prober.probe(&fp.listens, &probes2, flow_timing, &mut |_| {})?
    };
    let m = stage2.streams.len();
    retry(
        prober,
        &fp.listens,
        &probes2[..m],
        &mut out2[..m],
        timing,
        failed,
    )?;
    let side = out2.split_off(m);
    progress("flows", total, total);
    Ok(FlowObservations {
        plain: out1,
        requests,
        stage2,
        streams: out2,
        side,
    })
}

/// Judge: one result per flow, in flow order, and the notes on what the helper
/// let through on its own.
pub(super) fn judge(
    plan: &Plan,
    fp: &FlowPlan,
    obs: &FlowObservations,
) -> (Vec<ProbedFlow>, Vec<String>) {
    let d = &plan.deployment;
    let mut results: Vec<Option<ProbedFlow>> = vec![None; plan.flows.len()];
    for &i in &fp.no_control {
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
    for ((i, pr), o) in fp.plain.iter().zip(&obs.plain) {
        let (status, seen, detail) = judge_probe(d, &plan.flows[*i], &plan.paths[*i], pr, o);
        results[*i] = Some(row(plan, *i, probe_text(d, pr), seen, status, detail));
    }
    for (i, result) in results.iter_mut().enumerate() {
        let mine: Vec<usize> = (0..fp.exchanges.len())
            .filter(|&k| fp.exchanges[k].flow == i)
            .collect();
        if !mine.is_empty() {
            *result = Some(judge_exchanges(plan, fp, obs, i, &mine));
        }
    }
    let mut notes = Vec::new();
    for ((k, pr), o) in obs.stage2.side.iter().zip(&obs.side) {
        if o.reached() {
            let x = &fp.exchanges[*k];
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
    let results = results
        .into_iter()
        .map(|r| r.expect("every flow judged"))
        .collect();
    (results, notes)
}

/// Flow `i`, carried by the exchanges `mine`: PASS when every dumper's request
/// was answered and every stream it announced passed.
fn judge_exchanges(
    plan: &Plan,
    fp: &FlowPlan,
    obs: &FlowObservations,
    i: usize,
    mine: &[usize],
) -> ProbedFlow {
    let d = &plan.deployment;
    let f = &plan.flows[i];
    let p = &plan.paths[i];
    let mut parts = Vec::new();
    let mut ok = true;
    let mut seen = None;
    for (n, &k) in mine.iter().enumerate() {
        let x = &fp.exchanges[k];
        let req = &fp.requests[k];
        let answer = &obs.requests[k];
        let who = format!("dumper {} (udp :{})", n + 1, req.sport.unwrap_or(0));
        let (st, _, det) = judge_probe(d, &plan.flows[x.control], p, req, answer);
        if st != Status::Pass {
            ok = false;
            let why = if n > 0 && !x.side_ports.is_empty() && answer.arrival.is_some() {
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
        for ((kk, name, pr2), o2) in obs.stage2.streams.iter().zip(&obs.streams) {
            if *kk != k {
                continue;
            }
            let (st2, seen2, det2) = judge_probe(d, f, p, pr2, o2);
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
    let first = &fp.requests[mine[0]];
    let sport = obs
        .stage2
        .streams
        .iter()
        .find(|s| s.0 == mine[0])
        .and_then(|s| s.2.sport)
        .map(|s| format!(":{s}"))
        .unwrap_or_default();
    row(
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
    )
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
fn judge_probe(
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
) -> ProbedFlow {
    ProbedFlow {
        flow: FlowView::new(&plan.deployment, i, &plan.flows[i], &plan.paths[i]).into_owned(),
        probe,
        seen,
        status,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{addr, arrived, host, silent, wiki};
    use super::*;
    use crate::lab::probe::Arrival;

    /// nf_conntrack_amanda copies at most 5 characters of each number
    /// (net/netfilter/nf_conntrack_amanda.c, `pbuf[sizeof("65535")]`): bsdudp's
    /// multiplexed handles 499999.. become port 49999 (docs/design.md, lab finding).
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

    /// Exposure's source ports in the wiki (see exposure's tests).
    fn exposure_sports() -> BTreeSet<u16> {
        let sports = super::super::exposure::plan(&wiki(Auth::Bsd, false)).sports;
        let want = [
            856, 857, 858, 859, 45113, 45114, 45115, 45116, 50096, 50097, 50098, 50099,
        ];
        assert_eq!(sports, want.into());
        sports
    }

    /// Without the helper every flow is one static probe: to the middle of its
    /// range, from the lowest free port of its source range, each (port, target)
    /// once, never a listener's port nor one of exposure's.
    #[test]
    fn plan_without_helper_is_one_probe_per_flow() {
        let plan = wiki(Auth::Bsd, false);
        let fp = super::plan(&plan, &exposure_sports());
        assert!(fp.exchanges.is_empty() && fp.requests.is_empty() && fp.no_control.is_empty());
        assert_eq!(fp.plain.len(), 24);
        assert!(fp.plain.iter().enumerate().all(|(k, (i, _))| k == *i));
        let at = |i: usize| {
            let pr = &fp.plain[i - 1].1;
            (pr.from, pr.proto, pr.sport, pr.target)
        };
        let (ts, fw, rh) = (
            host(&plan, "tshost"),
            host(&plan, "fwhost"),
            host(&plan, "rhost"),
        );
        let to = |h: &str, p| SocketAddrV4::new(addr(&plan, h), p);
        // #1-#3: three requests to tshost's own amandad, three source ports.
        assert_eq!(at(1), (ts, Proto::Udp, Some(840), to("tshost", 10080)));
        assert_eq!(at(2).2, Some(841));
        assert_eq!(at(3).2, Some(842));
        // #4: tcp data streams, mid-range, lowest source port.
        assert_eq!(at(4), (ts, Proto::Tcp, Some(50000), to("tshost", 50050)));
        // #5: another target, so 840 again.
        assert_eq!(at(5), (ts, Proto::Udp, Some(840), to("fwhost/eth0", 10080)));
        // #13: to rhost's own address (masqueraded on the way).
        assert_eq!(at(13), (ts, Proto::Udp, Some(840), to("rhost", 10080)));
        // #23: rhost's amrecover goes to fwhost's public address (port forward).
        assert_eq!(
            at(23),
            (rh, Proto::Udp, Some(840), to("fwhost/eth1", 10080))
        );
        assert_eq!(at(19).0, fw);
        for (_, pr) in &fp.plain {
            assert!(pr.payload.is_empty() && pr.reply.is_none());
            let sp = pr.sport.unwrap();
            assert!(!exposure_sports().contains(&sp));
            assert!(!fp
                .listens
                .iter()
                .any(|l| l.ns == pr.from && l.proto == pr.proto && l.port == sp));
        }
        // A listener on each responder's probed port.
        assert!(fp.listens.contains(&Listen {
            ns: rh,
            proto: Proto::Udp,
            port: 10080
        }));
        assert!(fp.listens.contains(&Listen {
            ns: ts,
            proto: Proto::Tcp,
            port: 50050
        }));
    }

    /// With the helper, the data streams to other hosts are exchanges: two
    /// dumpers each, announcing ports from the top of the range down, clear of
    /// exposure's source ports (50096-50099 here).
    #[test]
    fn plan_with_helper_makes_two_exchanges_per_helper_flow() {
        let plan = wiki(Auth::Bsd, true);
        let fp = super::plan(&plan, &exposure_sports());
        let helper_only: Vec<usize> = plan
            .flows
            .iter()
            .zip(&plan.paths)
            .enumerate()
            .filter(|(_, (f, p))| !statically_open(f, p))
            .map(|(i, _)| i)
            .collect();
        assert!(!helper_only.is_empty());
        assert_eq!(fp.exchanges.len(), DUMPERS * helper_only.len());
        assert_eq!(fp.plain.len() + helper_only.len(), plan.flows.len());
        let first = &fp.exchanges[0];
        let f = &plan.flows[first.flow];
        assert_eq!(plan.flows[first.control].helper, HelperRole::Assign);
        let ports: Vec<u16> = first.streams.iter().map(|s| s.1).collect();
        let second: Vec<u16> = fp.exchanges[1].streams.iter().map(|s| s.1).collect();
        assert_eq!(fp.exchanges[1].flow, first.flow);
        assert_eq!(ports[0], 50092, "{ports:?}");
        assert!(
            second.iter().all(|p| p < &ports[0]),
            "{second:?} below {ports:?}"
        );
        for x in &fp.exchanges {
            assert!(x.streams.iter().all(|s| !exposure_sports().contains(&s.1)));
        }
        let req = &fp.requests[0];
        assert_eq!((req.from, req.proto), (f.initiator, Proto::Udp));
        assert_eq!(req.payload, REQUEST.as_bytes());
        assert_eq!(req.reply.as_deref(), Some(first.reply.as_bytes()));
        // Stage 2 only for answered exchanges.
        let mut replied = vec![false; fp.exchanges.len()];
        replied[1] = true;
        let mut ports2 = Ports::default();
        let s = plan_streams(&plan, &fp.exchanges, &replied, &mut ports2);
        assert_eq!(s.streams.len(), fp.exchanges[1].streams.len());
        assert!(s
            .streams
            .iter()
            .all(|(k, _, p)| *k == 1 && p.proto == Proto::Tcp));
        assert!(s.side.is_empty());
    }

    /// The observations a working lab would make for the plan: each probe
    /// arrives at its flow's responder, from the address the plan says.
    fn all_pass(plan: &Plan, fp: &FlowPlan) -> FlowObservations {
        let ok = |i: usize, pr: &Probe| {
            let peer = SocketAddrV4::new(plan.paths[i].last().src, pr.sport.unwrap_or(40000));
            arrived(pr, plan.flows[i].responder, peer)
        };
        let replied = vec![true; fp.exchanges.len()];
        let stage2 = plan_streams(plan, &fp.exchanges, &replied, &mut Ports::default());
        FlowObservations {
            plain: fp.plain.iter().map(|(i, p)| ok(*i, p)).collect(),
            requests: fp
                .exchanges
                .iter()
                .zip(&fp.requests)
                .map(|(x, p)| ok(x.control, p))
                .collect(),
            streams: stage2
                .streams
                .iter()
                .map(|(k, _, p)| ok(fp.exchanges[*k].flow, p))
                .collect(),
            side: stage2.side.iter().map(|_| silent()).collect(),
            stage2,
        }
    }

    #[test]
    fn judge_passes_what_arrived_as_planned() {
        let plan = wiki(Auth::Bsd, false);
        let fp = super::plan(&plan, &exposure_sports());
        let (r, notes) = judge(&plan, &fp, &all_pass(&plan, &fp));
        assert!(notes.is_empty());
        assert!(r.iter().all(|f| f.status == Status::Pass), "{r:?}");
        let f = &r[12];
        assert_eq!(
            (f.flow.id, &*f.flow.initiator, &*f.flow.responder),
            (13, "tshost", "rhost")
        );
        assert_eq!(f.flow.via, ["fwhost (masquerade)"]);
        assert_eq!(f.probe, "udp :840 → rhost:10080");
        assert_eq!(f.seen.as_deref(), Some("fwhost/eth1:840"));
        assert_eq!(r[22].flow.via, ["fwhost (port forward)"]);
        assert_eq!(r[22].probe, "udp :840 → fwhost/eth1:10080");
    }

    /// Each way a static flow fails, in the words the report uses.
    #[test]
    fn judge_blocked_misrouted_and_mistranslated_flows() {
        let plan = wiki(Auth::Bsd, false);
        let fp = super::plan(&plan, &exposure_sports());
        let mut obs = all_pass(&plan, &fp);
        let (ts, lh) = (host(&plan, "tshost"), host(&plan, "lhost"));
        obs.plain[0] = silent(); // #1
        obs.plain[8].arrival.as_mut().unwrap().ns = host(&plan, "rhost"); // #9 tshost → lhost
        obs.plain[12].arrival.as_mut().unwrap().peer =
            SocketAddrV4::new(addr(&plan, "tshost"), 840); // #13 not masqueraded
        obs.plain[14].arrival.as_mut().unwrap().peer =
            SocketAddrV4::new(addr(&plan, "fwhost/eth1"), 40000); // #15 left its class
        obs.plain[16].arrival.as_mut().unwrap().peer =
            SocketAddrV4::new(addr(&plan, "tshost"), 700); // #17 same class
        obs.plain[10].client = ClientSide::Silent; // #11 udp: no answer came back
        obs.plain[11].client = ClientSide::Refused; // #12 tcp
        let _ = (ts, lh);
        let (r, _) = judge(&plan, &fp, &obs);
        let why = |id: usize| (r[id - 1].status, r[id - 1].detail.as_str());
        assert_eq!(
            why(1),
            (Status::Fail, "nothing arrived (dropped on the way)")
        );
        assert_eq!(r[0].seen, None);
        assert_eq!(why(9), (Status::Fail, "arrived at rhost instead of lhost"));
        assert_eq!(
            why(13),
            (
                Status::Fail,
                "the responder saw 192.0.2.2 but the plan says fwhost/eth1"
            )
        );
        assert_eq!(r[12].seen.as_deref(), Some("tshost:840"));
        assert_eq!(
            why(15),
            (
                Status::Fail,
                "source port 842 arrived as 40000: it left its class 600-1023"
            )
        );
        assert_eq!(
            why(17),
            (Status::Pass, "source port 843 became 700 (same class)")
        );
        assert_eq!(
            why(11),
            (
                Status::Fail,
                "arrived, but the answer did not come back (ESTABLISHED blocked?)"
            )
        );
        assert_eq!(
            why(12),
            (Status::Fail, "arrived, but the client saw Refused")
        );
        assert_eq!(r.iter().filter(|f| f.status == Status::Fail).count(), 6);
    }

    /// The helper rows: every dumper's streams on success; a failed stream and a
    /// dumper whose REP never came back make the flow fail, each said where.
    #[test]
    fn judge_helper_exchanges() {
        let plan = wiki(Auth::Bsd, true);
        let fp = super::plan(&plan, &exposure_sports());
        let obs = all_pass(&plan, &fp);
        let (r, _) = judge(&plan, &fp, &obs);
        assert!(r.iter().all(|f| f.status == Status::Pass), "{r:?}");
        let x = &fp.exchanges[0];
        let row = &r[x.flow];
        let d1 = fp.requests[0].sport.unwrap();
        let d2 = fp.requests[1].sport.unwrap();
        let s1: Vec<String> = x.streams.iter().map(|(n, p)| format!("{n} {p}")).collect();
        let s2: Vec<String> = fp.exchanges[1]
            .streams
            .iter()
            .map(|(n, p)| format!("{n} {p}"))
            .collect();
        assert_eq!(
            row.detail,
            format!(
                "RELATED via the helper, 2 dumpers: dumper 1 (udp :{d1}): {}; dumper 2 (udp :{d2}): {}",
                s1.join(", "),
                s2.join(", ")
            )
        );
        assert!(row.probe.ends_with(":…") && row.probe.contains("→ CONNECT; tcp :"));

        let mut bad = all_pass(&plan, &fp);
        bad.streams[1] = silent();
        bad.requests[1] = Outcome {
            client: ClientSide::Silent,
            arrival: Some(Arrival {
                ns: plan.flows[x.control].responder,
                peer: SocketAddrV4::new(plan.paths[x.control].last().src, d2),
            }),
        };
        let (r, _) = judge(&plan, &fp, &bad);
        let row = &r[x.flow];
        assert_eq!(row.status, Status::Fail);
        assert!(
            row.detail.contains(&format!(
                "{} FAILED (nothing arrived (dropped on the way))",
                s1[1]
            )),
            "{}",
            row.detail
        );
        assert!(row.detail.contains(&format!(
            "dumper 2 (udp :{d2}): no CONNECT reply (arrived, but the answer did not come back (ESTABLISHED blocked?))"
        )), "{}", row.detail);
    }

    /// bsdudp: the helper turns `MESG 499999` into port 49999; that it opened is
    /// a note, and the second dumper's dropped REP is explained. (amwall now plans
    /// bsdudp statically, so the plan is bsd's with the helper flows made bsdudp:
    /// what the lab judged when it found this.)
    #[test]
    fn judge_bsdudp_side_ports_and_the_second_dumper() {
        let mut plan = wiki(Auth::Bsd, true);
        for f in &mut plan.flows {
            if f.helper == HelperRole::Expected {
                f.auth = Auth::Bsdudp;
            }
        }
        let fp = super::plan(&plan, &exposure_sports());
        let x = &fp.exchanges[0];
        assert_eq!(x.side_ports, [49999]);
        let mut obs = all_pass(&plan, &fp);
        // One side probe per (initiator, target): the second dumper's is the same.
        let firsts = obs.stage2.side.iter().filter(|(k, _)| *k == 0).count();
        assert_eq!(firsts, 1);
        assert!(obs.stage2.side.iter().all(|(k, _)| k % 2 == 0));
        let pr = obs.stage2.side[0].1.clone();
        obs.side[0] = arrived(
            &pr,
            plan.flows[x.flow].responder,
            SocketAddrV4::new(addr(&plan, "tshost"), 1),
        );
        let req = fp.requests[1].clone();
        obs.requests[1] = arrived(
            &req,
            plan.flows[x.control].responder,
            SocketAddrV4::new(addr(&plan, "tshost"), req.sport.unwrap()),
        );
        obs.requests[1].client = ClientSide::Silent;
        let (r, notes) = judge(&plan, &fp, &obs);
        assert_eq!(notes.len(), 1);
        let to = label(&plan.deployment, *pr.target.ip());
        assert_eq!(
            notes[0],
            format!(
                "flow #{}: the conntrack helper also let tshost reach {to} tcp 49999 (RELATED, for 180 s): it reads the multiplexed handle in `{}` as a port",
                x.flow + 1,
                x.reply.lines().nth(1).unwrap()
            )
        );
        let row = &r[x.flow];
        assert_eq!(row.status, Status::Fail);
        assert!(row.detail.contains("no CONNECT reply (the request arrived but the REP never came back: its `CONNECT` makes the helper expect port 49999 again"), "{}", row.detail);
    }

    /// A prober that answers from a function and records what it was asked.
    struct Fake<F> {
        answer: F,
        batches: Vec<(usize, std::time::Duration)>,
    }

    impl<F: FnMut(&Probe) -> Outcome> Prober for Fake<F> {
        fn probe(
            &mut self,
            _: &[Listen],
            probes: &[Probe],
            timing: Timing,
            progress: &mut dyn FnMut(usize),
        ) -> io::Result<Vec<Outcome>> {
            self.batches.push((probes.len(), timing.timeout));
            progress(probes.len());
            Ok(probes.iter().map(&mut self.answer).collect())
        }
    }

    /// Run: a flow that fails once is retried alone with three times the
    /// timeout and passes; exchanges whose request got no answer get no
    /// stage 2, and requests are never repeated.
    #[test]
    fn run_retries_failures_once_and_stages_the_streams() {
        use std::time::Duration;
        let plan = wiki(Auth::Bsd, true);
        let mut fp = super::plan(&plan, &exposure_sports());
        let target13 = fp.plain.iter().find(|(i, _)| *i == 12).unwrap().1.target;
        let first_req = fp.requests[0].clone();
        let mut seen13 = 0;
        let mut fake = Fake {
            answer: |pr: &Probe| {
                let (i, f) = plan
                    .flows
                    .iter()
                    .enumerate()
                    .find(|(i, f)| {
                        f.initiator == pr.from
                            && f.proto == pr.proto
                            && plan.paths[*i].target == *pr.target.ip()
                            && (f.dport.contains(pr.target.port()))
                    })
                    .expect("a flow");
                if pr.target == target13 && pr.proto == Proto::Udp && pr.payload.is_empty() {
                    seen13 += 1;
                    if seen13 == 1 {
                        return silent();
                    }
                }
                if pr.payload == first_req.payload
                    && pr.sport == first_req.sport
                    && pr.target == first_req.target
                {
                    return silent();
                }
                let peer = SocketAddrV4::new(plan.paths[i].last().src, pr.sport.unwrap_or(40000));
                arrived(pr, f.responder, peer)
            },
            batches: vec![],
        };
        let t = Timing {
            timeout: Duration::from_millis(100),
            resend: Duration::from_millis(10),
        };
        let mut steps = vec![];
        let obs = super::run(&plan, &mut fp, &mut fake, t, &mut |w, d, n| {
            steps.push((w.to_string(), d, n))
        })
        .unwrap();
        let n1 = fp.plain.len() + fp.requests.len();
        let streams: usize = fp.exchanges[1..].iter().map(|x| x.streams.len()).sum();
        assert_eq!(
            fake.batches,
            [
                (n1, Duration::from_millis(200)),
                (1, Duration::from_millis(300)),
                (streams, Duration::from_millis(200)),
            ]
        );
        assert_eq!(obs.stage2.streams.len(), streams);
        assert!(obs.stage2.streams.iter().all(|(k, ..)| *k != 0));
        let total = fp.total();
        assert_eq!(
            steps,
            [
                ("flows".into(), 0, total),
                ("flows".into(), n1, total),
                ("flows".into(), total, total)
            ]
        );
        let (r, _) = judge(&plan, &fp, &obs);
        assert_eq!(r[12].status, Status::Pass);
        let x0 = &fp.exchanges[0];
        assert_eq!(r[x0.flow].status, Status::Fail);
        assert!(
            r[x0.flow].detail.contains("dumper 1 (udp :"),
            "{}",
            r[x0.flow].detail
        );
        assert_eq!(r.iter().filter(|f| f.status == Status::Fail).count(), 1);
    }
}
