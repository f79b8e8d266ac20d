//! Question 1, exposure: what arrives between hosts, needed or not.
//!
//! `plan` lists every probe and what it must or may do, `run` sends them (and
//! retries what must arrive but did not), `judge` turns the outcomes into the
//! counts and grouped findings of `Exposure`.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::{carries, carries_ports, label, owner, retry, statically_open, Prober};
use super::{Exposure, ExposureFinding, ExposureKind};
use crate::lab::probe::{Arrival, ClientSide, Listen, Outcome, Probe, Timing};
use crate::model::HostId;
use crate::ports::{PortRange, Proto};
use crate::Plan;

/// Every exposure probe, with what each must do.
#[derive(Debug)]
pub(super) struct ExposurePlan {
    /// The destination ports every (host, address) pair is probed on.
    pub dports: BTreeSet<u16>,
    pub probes: Vec<Probe>,
    /// Per probe (same index): the responder of the flow that needs it to
    /// arrive, if one does.
    pub expected: Vec<Option<HostId>>,
    /// A listener on every probed port, in every namespace.
    pub listens: Vec<Listen>,
    /// (host, address of another host) pairs.
    pub pairs: usize,
    /// Every source port used; the flow probes keep clear of them (module doc).
    pub sports: BTreeSet<u16>,
}

/// The ports every pair is probed on.
pub(super) fn probe_ports(plan: &Plan) -> BTreeSet<u16> {
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

/// The responder of the statically open flow that `pr` is: from its host, to
/// the address Amanda uses, on the flow's ports. That one must arrive.
fn expected(plan: &Plan, pr: &Probe) -> Option<HostId> {
    plan.flows
        .iter()
        .zip(&plan.paths)
        .filter(|(f, p)| statically_open(f, p))
        .find(|(f, p)| p.target == *pr.target.ip() && carries(f, pr))
        .map(|(f, _)| f.responder)
}

/// Host x's source ports for `proto`: one ephemeral, one inside each source
/// range in use, all off `dports`.
pub(super) fn source_ports(
    plan: &Plan,
    x: HostId,
    proto: Proto,
    dports: &BTreeSet<u16>,
) -> BTreeSet<u16> {
    let mut v = BTreeSet::from([ephemeral(x, dports)]);
    for f in plan.flows.iter().filter(|f| f.proto == proto) {
        if let Some(r) = f.sport {
            v.insert(pick_off(x, r, dports));
        }
    }
    v
}

/// Plan: from every host to every address of every other host, both protocols,
/// every source port of `source_ports` × every port of `probe_ports`.
pub(super) fn plan(plan: &Plan) -> ExposurePlan {
    let d = &plan.deployment;
    let dports = probe_ports(plan);
    let sports_of = |x: usize, proto: Proto| source_ports(plan, x, proto, &dports);
    let mut sports = BTreeSet::new();
    let mut probes = Vec::new();
    let mut pairs = 0;
    for x in 0..d.hosts.len() {
        for (y, host) in d.hosts.iter().enumerate() {
            if x == y {
                continue;
            }
            // IPv4 exposure: an interface without IPv4 is scanned by the IPv6 check.
            for address in host.interfaces.iter().filter_map(|i| i.address) {
                pairs += 1;
                for proto in [Proto::Tcp, Proto::Udp] {
                    let mine = sports_of(x, proto);
                    sports.extend(mine.iter().copied());
                    for &sp in &mine {
                        for &dp in &dports {
                            probes.push(Probe {
                                from: x,
                                proto,
                                sport: Some(sp),
                                target: SocketAddrV4::new(address, dp),
                                payload: vec![],
                                reply: None,
                            });
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
    let expected = probes.iter().map(|pr| expected(plan, pr)).collect();
    ExposurePlan {
        dports,
        probes,
        expected,
        listens,
        pairs,
        sports,
    }
}

/// Run: every probe once; what must arrive but did not, once more, alone and
/// with more time, before it is called blocked.
pub(super) fn run(
    xp: &ExposurePlan,
    prober: &mut dyn Prober,
    timing: Timing,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> io::Result<Vec<Outcome>> {
    let total = xp.probes.len();
    let mut done = 0;
    progress("exposure", 0, total);
    let mut outcomes = prober.probe(&xp.listens, &xp.probes, timing, &mut |n| {
        done += n;
        progress("exposure", done, total);
    })?;
    retry(
        prober,
        &xp.listens,
        &xp.probes,
        &mut outcomes,
        timing,
        |k, _, o| xp.expected[k].is_some() && !o.reached(),
    )?;
    Ok(outcomes)
}

/// The grouping of findings: (kind, source host, destination address, proto,
/// source port, host it arrived at, why); a group collects destination ports.
type Key = (
    ExposureKind,
    HostId,
    Ipv4Addr,
    Proto,
    u16,
    Option<HostId>,
    String,
);

/// Whether an arrival of `pr` at `at` (or, not arrived, at the target's owner)
/// is something a flow or the management service needs.
fn needed(plan: &Plan, pr: &Probe, at: Option<Arrival>) -> bool {
    let d = &plan.deployment;
    let at_host = at.map(|a| a.ns).or_else(|| owner(d, *pr.target.ip()));
    let by_flow = plan
        .flows
        .iter()
        .zip(&plan.paths)
        .filter(|(f, p)| statically_open(f, p))
        .any(|(f, _)| Some(f.responder) == at_host && carries(f, pr));
    let m = &d.management;
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
}

/// A needed flow that `pr`'s sender masquerades, arriving where `pr` arrived
/// from the same address (`ExposureKind::OnPath`).
fn on_path(plan: &Plan, pr: &Probe, at: Option<Arrival>) -> Option<usize> {
    let a = at?;
    plan.flows
        .iter()
        .zip(&plan.paths)
        .enumerate()
        .filter(|(_, (f, p))| statically_open(f, p))
        .find(|(_, (f, p))| {
            f.responder == a.ns
                && carries_ports(f, pr)
                && p.routers()
                    .any(|h| h.host == pr.from && h.snat_to == Some(*a.peer.ip()))
        })
        .map(|(i, _)| i)
}

/// What one outcome says: did it reach a stack, was that needed, and the group
/// it is a finding in (None: as it should be).
struct Verdict {
    reached: bool,
    needed: bool,
    finding: Option<Key>,
}

fn verdict(plan: &Plan, pr: &Probe, want: Option<HostId>, o: &Outcome) -> Verdict {
    let d = &plan.deployment;
    let (x, a) = (pr.from, *pr.target.ip());
    let sp = pr.sport.expect("exposure probes bind a source port");
    let key = |kind, at, why| Some((kind, x, a, pr.proto, sp, at, why));
    if !o.reached() {
        let finding = want.and_then(|w| {
            let why = match &o.client {
                ClientSide::Unreachable(e) => e.clone(),
                ClientSide::Error(e) => format!("lab error: {e}"),
                _ => format!("a flow to {} needs it", d.hosts[w].name),
            };
            key(ExposureKind::Blocked, None, why)
        });
        return Verdict {
            reached: false,
            needed: false,
            finding,
        };
    }
    let at = o.arrival.map(|a| a.ns);
    let needed = needed(plan, pr, o.arrival);
    let finding = if needed {
        match (want, at) {
            (Some(w), Some(h)) if w != h => key(
                ExposureKind::Misrouted,
                at,
                format!("the flow goes to {}", d.hosts[w].name),
            ),
            _ => None,
        }
    } else if let Some(f) = on_path(plan, pr, o.arrival) {
        key(
            ExposureKind::OnPath,
            at,
            format!(
                "{} must accept flow #{} ({} → {}) from this router's address",
                at.map_or("the responder".to_string(), |h| d.hosts[h].name.clone()),
                f + 1,
                d.hosts[plan.flows[f].initiator].name,
                d.hosts[plan.flows[f].responder].name
            ),
        )
    } else {
        key(ExposureKind::Unneeded, at, "no flow needs it".into())
    };
    Verdict {
        reached: true,
        needed,
        finding,
    }
}

/// Judge: count, and group the findings by everything but the destination port
/// (in order of first appearance), on-path ones apart.
pub(super) fn judge(plan: &Plan, xp: &ExposurePlan, outcomes: &[Outcome]) -> Exposure {
    let d = &plan.deployment;
    let (mut arrived, mut needed_n, mut unroutable) = (0, 0, 0);
    let mut groups: Vec<(Key, Vec<u16>)> = Vec::new();
    for ((pr, o), &want) in xp.probes.iter().zip(outcomes).zip(&xp.expected) {
        if matches!(o.client, ClientSide::Unreachable(_)) {
            unroutable += 1;
        }
        let v = verdict(plan, pr, want, o);
        arrived += usize::from(v.reached);
        needed_n += usize::from(v.needed);
        if let Some(k) = v.finding {
            let port = pr.target.port();
            match groups.iter_mut().find(|(g, _)| *g == k) {
                Some((_, ports)) => ports.push(port),
                None => groups.push((k, vec![port])),
            }
        }
    }
    let (on_path_groups, groups): (Vec<_>, Vec<_>) = groups
        .into_iter()
        .partition(|((k, ..), _)| *k == ExposureKind::OnPath);
    let finding = |((kind, x, a, proto, sport, at, why), ports): (Key, Vec<u16>)| ExposureFinding {
        kind,
        src: d.hosts[x].name.clone(),
        dst: format!("{} {a}", label(d, a)),
        proto,
        sport,
        dports: crate::ports::merge_ranges(ports.into_iter().map(PortRange::single).collect()),
        arrived_at: at.map(|h| d.hosts[h].name.clone()),
        why,
    };
    Exposure {
        probes: xp.probes.len(),
        pairs: xp.pairs,
        arrived,
        needed: needed_n,
        unroutable,
        dports: xp.dports.iter().copied().collect(),
        findings: groups.into_iter().map(finding).collect(),
        on_path: on_path_groups.into_iter().map(finding).collect(),
        notes: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{addr, arrived, host, refused, silent, wiki};
    use super::*;
    use crate::amanda::settings::Auth;

    #[test]
    fn exposure_source_ports_stay_off_the_probed_ports_and_differ_per_host() {
        let p: BTreeSet<u16> = [840, 850, 859, 860, 861].into();
        let r = PortRange::new(840, 860);
        let picks: Vec<u16> = (0..4).map(|k| pick_off(k, r, &p)).collect();
        assert_eq!(picks, [858, 857, 856, 855]);
        assert!(!p.contains(&ephemeral(0, &p)));
        assert_ne!(ephemeral(0, &p), ephemeral(1, &p));
    }

    /// The wiki (bsd): 4 hosts, fwhost with two addresses; ranges 840-860 (udp
    /// source), 10080, 50000-50100 (tcp, both ends), ssh 22.
    #[test]
    fn plan_probes_every_other_address_on_range_edges_from_each_source_class() {
        let plan = wiki(Auth::Bsd, false);
        let xp = super::plan(&plan);
        // Every host × every address of the others: 3 + 4 + 4 + 4.
        assert_eq!(xp.pairs, 15);
        for p in [
            839, 840, 850, 860, 861, 10079, 10080, 10081, 49999, 50000, 50050, 50100, 50101, 21,
            22, 23, 1, 65535,
        ] {
            assert!(xp.dports.contains(&p), "{p} is probed");
        }
        assert!(!xp.dports.contains(&10082));
        let ts = host(&plan, "tshost");
        let mut sp_ts_udp: Vec<u16> = xp
            .probes
            .iter()
            .filter(|p| p.from == ts && p.proto == Proto::Udp)
            .filter_map(|p| p.sport)
            .collect();
        sp_ts_udp.sort_unstable();
        sp_ts_udp.dedup();
        // One ephemeral port, one in 840-860 counted down from the top (off the
        // probed 860), nothing from the TCP range.
        assert_eq!(sp_ts_udp, [859, 45113]);
        for pr in &xp.probes {
            let sp = pr
                .sport
                .expect("every exposure probe binds its source port");
            assert!(!xp.dports.contains(&sp), "{pr:?}");
            assert!(crate::lab::map::is_doc(*pr.target.ip()), "{pr:?}");
            assert_ne!(
                owner(&plan.deployment, *pr.target.ip()),
                Some(pr.from),
                "never to itself"
            );
        }
        // per host: (other addresses) × Σ over protocols of its source ports, × ports.
        let n = xp.dports.len();
        let per_host_sports = 2 /* udp */ + 2 /* tcp: ephemeral, 50000-50100 */;
        assert_eq!(xp.probes.len(), 15 * per_host_sports * n);
        assert_eq!(xp.listens.len(), 4 * 2 * n);
        assert_eq!(xp.expected.len(), xp.probes.len());
    }

    /// What must arrive: tshost's request to rhost (masqueraded on the way) goes
    /// to rhost; rhost's amrecover to fwhost's public address is the port forward
    /// to tshost; an ephemeral source port is no Amanda flow.
    #[test]
    fn plan_expects_the_responder_behind_nat() {
        let plan = wiki(Auth::Bsd, false);
        let xp = super::plan(&plan);
        let find = |from: &str, to: &str, proto, sport, dport| {
            let i = xp
                .probes
                .iter()
                .position(|p| {
                    p.from == host(&plan, from)
                        && p.target == SocketAddrV4::new(addr(&plan, to), dport)
                        && p.proto == proto
                        && p.sport == Some(sport)
                })
                .unwrap_or_else(|| panic!("probe {from} → {to}:{dport} from {sport}"));
            xp.expected[i]
        };
        let (ts, rh) = (host(&plan, "tshost"), host(&plan, "rhost"));
        assert_eq!(find("tshost", "rhost", Proto::Udp, 859, 10080), Some(rh));
        assert_eq!(
            find("rhost", "fwhost/eth1", Proto::Udp, 856, 10080),
            Some(ts)
        );
        assert_eq!(find("tshost", "rhost", Proto::Udp, 45113, 10080), None);
        assert_eq!(find("tshost", "rhost", Proto::Udp, 859, 10081), None);
        // Not from rhost to tshost's own (unreachable, private) address either.
        assert_eq!(find("rhost", "tshost", Proto::Udp, 856, 10080), None);
    }

    /// Everything as planned: what must arrive arrives at its responder, as the
    /// responder sees it after NAT; the rest vanishes. No findings.
    fn clean(plan: &Plan, xp: &ExposurePlan) -> Vec<Outcome> {
        xp.probes
            .iter()
            .zip(&xp.expected)
            .map(|(pr, w)| match w {
                Some(h) => {
                    let f = plan
                        .flows
                        .iter()
                        .zip(&plan.paths)
                        .find(|(f, p)| p.target == *pr.target.ip() && carries(f, pr))
                        .expect("the expected flow");
                    arrived(pr, *h, SocketAddrV4::new(f.1.last().src, pr.sport.unwrap()))
                }
                None => silent(),
            })
            .collect()
    }

    #[test]
    fn judge_a_clean_run_finds_nothing() {
        let plan = wiki(Auth::Bsd, false);
        let xp = super::plan(&plan);
        let outs = clean(&plan, &xp);
        let e = judge(&plan, &xp, &outs);
        assert!(e.findings.is_empty(), "{:?}", e.findings);
        assert!(e.on_path.is_empty());
        assert_eq!(e.arrived, xp.expected.iter().flatten().count());
        assert_eq!(e.needed, e.arrived);
        assert_eq!((e.probes, e.pairs, e.unroutable), (xp.probes.len(), 15, 0));
    }

    fn index(
        xp: &ExposurePlan,
        plan: &Plan,
        from: &str,
        to: &str,
        proto: Proto,
        sp: u16,
    ) -> Vec<usize> {
        (0..xp.probes.len())
            .filter(|&i| {
                let p = &xp.probes[i];
                p.from == host(plan, from)
                    && *p.target.ip() == addr(plan, to)
                    && p.proto == proto
                    && p.sport == Some(sp)
            })
            .collect()
    }

    /// A needed probe that vanished is Blocked, once per group, with every port
    /// in the group merged into ranges; a refusal counts as arrived (a stack
    /// answered), but not as a finding when it is expected.
    #[test]
    fn judge_blocked_ports_merge_into_one_finding() {
        let plan = wiki(Auth::Bsd, false);
        let xp = super::plan(&plan);
        let mut outs = clean(&plan, &xp);
        let ix = index(&xp, &plan, "tshost", "lhost", Proto::Tcp, 50099);
        let mut blocked = vec![];
        for &i in &ix {
            if xp.expected[i].is_some() {
                outs[i] = silent();
                blocked.push(xp.probes[i].target.port());
            }
        }
        assert_eq!(blocked, [50000, 50050, 50100]);
        let e = judge(&plan, &xp, &outs);
        assert_eq!(e.findings.len(), 1, "{:?}", e.findings);
        let f = &e.findings[0];
        assert_eq!(f.kind, ExposureKind::Blocked);
        assert_eq!(
            (f.src.as_str(), f.dst.as_str()),
            ("tshost", "lhost 192.0.2.3")
        );
        assert_eq!(
            (f.proto, f.sport, f.arrived_at.as_deref()),
            (Proto::Tcp, 50099, None)
        );
        let ports: Vec<String> = f.dports.iter().map(|r| r.to_string()).collect();
        assert_eq!(ports, ["50000", "50050", "50100"]);
        assert_eq!(f.why, "a flow to lhost needs it");
        // Unroutable says so instead.
        let i = ix
            .iter()
            .copied()
            .find(|&i| xp.expected[i].is_some())
            .unwrap();
        outs[i].client = ClientSide::Unreachable("no route".into());
        let e = judge(&plan, &xp, &outs);
        assert_eq!(e.unroutable, 1);
        assert!(e.findings.iter().any(|f| f.why == "no route"));
        // A refusal where nothing is needed: arrived, and not needed.
        let mut outs = clean(&plan, &xp);
        let j = index(&xp, &plan, "tshost", "lhost", Proto::Tcp, 45113)[0];
        outs[j] = refused();
        let e = judge(&plan, &xp, &outs);
        assert_eq!(e.findings.len(), 1);
        assert_eq!(e.findings[0].kind, ExposureKind::Unneeded);
        assert_eq!(e.findings[0].why, "no flow needs it");
        assert_eq!(e.findings[0].arrived_at, None);
    }

    /// tshost's request for lhost arrives at rhost on a port a tshost → rhost flow
    /// uses: needed there, but the flow goes to lhost.
    #[test]
    fn judge_misrouted_arrival() {
        let plan = wiki(Auth::Bsd, false);
        let xp = super::plan(&plan);
        let mut outs = clean(&plan, &xp);
        let i = index(&xp, &plan, "tshost", "lhost", Proto::Udp, 859)
            .into_iter()
            .find(|&i| xp.probes[i].target.port() == 10080)
            .unwrap();
        let peer = SocketAddrV4::new(addr(&plan, "fwhost/eth1"), 859);
        outs[i] = arrived(&xp.probes[i], host(&plan, "rhost"), peer);
        let e = judge(&plan, &xp, &outs);
        assert_eq!(e.findings.len(), 1, "{:?}", e.findings);
        let f = &e.findings[0];
        assert_eq!(f.kind, ExposureKind::Misrouted);
        assert_eq!(f.arrived_at.as_deref(), Some("rhost"));
        assert_eq!(f.why, "the flow goes to lhost");
        assert_eq!(f.dports, [PortRange::single(10080)]);
    }

    /// Unneeded: lhost reaches rhost's amandad from a reserved port: no flow
    /// from lhost goes there.
    #[test]
    fn judge_unneeded_arrival() {
        let plan = wiki(Auth::Bsd, false);
        let xp = super::plan(&plan);
        let mut outs = clean(&plan, &xp);
        let lh = index(&xp, &plan, "lhost", "rhost", Proto::Udp, 857);
        let i = lh
            .iter()
            .copied()
            .find(|&i| xp.probes[i].target.port() == 10080)
            .unwrap();
        assert_eq!(xp.expected[i], None);
        let peer = SocketAddrV4::new(addr(&plan, "fwhost/eth1"), 857);
        outs[i] = arrived(&xp.probes[i], host(&plan, "rhost"), peer);
        let e = judge(&plan, &xp, &outs);
        assert_eq!(e.findings.len(), 1, "{:?}", e.findings);
        let f = &e.findings[0];
        assert_eq!(f.kind, ExposureKind::Unneeded);
        assert_eq!(
            (f.src.as_str(), f.dst.as_str(), f.sport),
            ("lhost", "rhost 198.51.100.2", 857)
        );
        assert_eq!(f.arrived_at.as_deref(), Some("rhost"));
        assert_eq!(e.arrived, outs.iter().filter(|o| o.reached()).count());
        assert_eq!(e.needed + 1, e.arrived);
    }

    /// fwhost itself reaching rhost's amandad from a reserved port looks, to
    /// rhost, exactly like tshost's masqueraded request: on-path, not a finding.
    #[test]
    fn judge_masquerading_router_is_on_path() {
        let plan = wiki(Auth::Bsd, false);
        let xp = super::plan(&plan);
        let mut outs = clean(&plan, &xp);
        let fw = index(&xp, &plan, "fwhost", "rhost", Proto::Udp, 858);
        let i = fw
            .iter()
            .copied()
            .find(|&i| xp.probes[i].target.port() == 10080)
            .unwrap();
        let peer = SocketAddrV4::new(addr(&plan, "fwhost/eth1"), 858);
        outs[i] = arrived(&xp.probes[i], host(&plan, "rhost"), peer);
        let e = judge(&plan, &xp, &outs);
        assert!(e.findings.is_empty(), "{:?}", e.findings);
        assert_eq!(e.on_path.len(), 1);
        let f = &e.on_path[0];
        assert_eq!(f.kind, ExposureKind::OnPath);
        assert_eq!(
            f.why,
            "rhost must accept flow #13 (tshost → rhost) from this router's address"
        );
        // From its LAN address the masquerade does not explain it.
        let peer = SocketAddrV4::new(addr(&plan, "fwhost/eth0"), 858);
        outs[i] = arrived(&xp.probes[i], host(&plan, "rhost"), peer);
        let e = judge(&plan, &xp, &outs);
        assert_eq!(e.findings.len(), 1);
        assert_eq!(e.findings[0].kind, ExposureKind::Unneeded);
    }
}
