//! Packet evaluation through a [`Ruleset`](crate::netfilter::Ruleset): the
//! hooks in kernel order, iptables tables and nft base chains together by
//! priority, user chains, conntrack state, NAT, and a trace of every rule
//! tried. Pure: no I/O, no kernel.
//!
//! The evaluator works on boxes of packets ([`space::Cube`]) rather than
//! single packets, so the same code answers "what happens to this packet"
//! (`explain`), "does this flow pass, for every source port Amanda may use"
//! (`check`) and "what does this ruleset accept at all" (the over-permissive
//! analysis). Matches it cannot decide (rate limits, recent lists, MAC
//! addresses, ipsets without members, text no parser understood) make the
//! result unknown rather than guessed: the evaluation forks and both branches
//! carry the rule as their "taint".
//!
//! Modelling choices (each visible in the trace or the report):
//! - packets are not fragments; NAT keeps a port when the mapping allows it
//!   (no clash with another connection);
//! - `addrtype`: blackhole/unreachable/prohibit routes are assumed absent;
//!   without a topology the host's own addresses are unknown except for the
//!   side the route implies (input: the destination is local);
//! - netdev, bridge and arp tables and ingress/egress hooks are not evaluated
//!   (listed in [`compile::Compiled::skipped`]).

pub mod compile;
pub mod engine;
pub mod index;
pub mod packet;
pub mod space;

use crate::netfilter::ipset::IpSets;
use crate::netfilter::{CtDirection, Hook, Ruleset};

pub use compile::{compile, Compiled, HostInfo, LocalGuess, SetDb, Tri};
pub use engine::{Ct, CtBase, End, Engine, RuleRef, RuleRes, State, Step};
pub use packet::{Packet, Route};
pub use space::{Cube, Iv};

/// The hooks a packet crosses on one host for a route.
pub fn hooks(route: Route) -> &'static [Hook] {
    match route {
        Route::Input => &[Hook::Prerouting, Hook::Input],
        Route::Forward => &[Hook::Prerouting, Hook::Forward, Hook::Postrouting],
        Route::Output => &[Hook::Output, Hook::Postrouting],
    }
}

/// How one part of the evaluated packet box fared.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub state: State,
    /// `None`: passed every hook.
    pub end: Option<End>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.end.is_none()
    }
}

/// Overall verdict over a set of outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    /// Depends on a match or action amwall cannot decide.
    Unknown,
    /// Some packets of the box pass, others are dropped (each part is decided).
    Mixed,
}

/// Combine outcomes: a part forked on an unknown match counts as unknown
/// unless every branch agrees.
pub fn verdict(outcomes: &[Outcome]) -> Verdict {
    let certain_pass = outcomes.iter().any(|o| !o.state.tainted() && o.passed());
    let certain_drop = outcomes
        .iter()
        .any(|o| !o.state.tainted() && !o.passed() && !matches!(o.end, Some(End::Unknown { .. })));
    let unknown = outcomes
        .iter()
        .any(|o| matches!(o.end, Some(End::Unknown { .. }) | Some(End::Loop { .. })));
    let tainted: Vec<&Outcome> = outcomes.iter().filter(|o| o.state.tainted()).collect();
    let t_pass = tainted.iter().any(|o| o.passed());
    let t_drop = tainted.iter().any(|o| !o.passed());
    let t_mixed = t_pass && t_drop;
    if unknown || t_mixed {
        return Verdict::Unknown;
    }
    match (certain_pass || t_pass, certain_drop || t_drop) {
        (true, false) => Verdict::Accept,
        (false, true) => Verdict::Drop,
        (true, true) => Verdict::Mixed,
        (false, false) => Verdict::Drop,
    }
}

/// The state a packet description starts as.
pub fn initial_state(c: &Compiled, p: &Packet, trace: bool) -> State {
    let ifs = &c.ifaces;
    let route = p.route();
    let iif = match (&p.iif, route) {
        (_, Route::Output) => ifs.class_of(""),
        (Some(i), _) => ifs.class_of(i),
        (None, _) => ifs.external(),
    };
    let oif = ifs.class_of("");
    let mut cube = Cube::full(p.v6, iif, oif);
    cube.set(space::SRC, p.src);
    cube.set(space::DST, p.dst);
    cube.set(space::PROTO, Iv::point(p.proto as u128));
    cube.set(space::SPORT, p.sport);
    cube.set(space::DPORT, p.dport);
    if route == Route::Output {
        cube.ifs[space::OIF] = ifs.class_of(p.oif.as_deref().unwrap_or(""));
    }
    let mut ct = Ct::new_conn(p.state.unwrap_or(CtBase::New), p.dir);
    ct.untracked = p.untracked;
    ct.helper = p.helper.clone();
    if ct.base != CtBase::New || p.dir == CtDirection::Reply {
        // A later packet: its connection's NAT is unknown here; none assumed.
        ct.nat_done = [true, true];
    }
    let mut s = State::new(cube, ct, trace);
    s.mark = Some(p.mark);
    s.ctmark = Some(p.ctmark);
    s.tcp_flags = p.tcp_flags;
    s.ttl = p.ttl;
    s.len = p.len;
    s.local_origin = route == Route::Output;
    s
}

/// Run states through a route's hooks; a forwarded packet gets its out
/// interface after prerouting (the routing decision).
pub fn run_route(e: &Engine, route: Route, oif: Option<&str>, states: Vec<State>) -> Vec<Outcome> {
    let mut live = states;
    let mut out = Vec::new();
    for &h in hooks(route) {
        if h == Hook::Forward {
            let m = e.c.ifaces.class_of(oif.unwrap_or(""));
            for s in &mut live {
                s.cube.ifs[space::OIF] = m;
            }
        }
        let (pass, stop) = e.run_hook(h, live);
        out.extend(stop.into_iter().map(|(state, end)| Outcome {
            state,
            end: Some(end),
        }));
        live = pass;
    }
    out.extend(live.into_iter().map(|state| Outcome { state, end: None }));
    out
}

/// One packet description through one ruleset, with traces.
pub struct Explained {
    pub compiled: Compiled,
    pub packet: Packet,
    pub outcomes: Vec<Outcome>,
    pub verdict: Verdict,
}

pub fn explain(rs: &Ruleset, ipsets: Option<&IpSets>, p: &Packet) -> Explained {
    let route = p.route();
    let host = HostInfo {
        local: None,
        broadcast: vec![],
        iface_addr: vec![],
        ifaces: p.iif.iter().chain(p.oif.iter()).cloned().collect(),
        guess: match route {
            Route::Input => LocalGuess::Input,
            Route::Forward => LocalGuess::Forward,
            Route::Output => LocalGuess::Output,
        },
    };
    let compiled = compile(rs, &SetDb { ipsets }, &host, p.v6);
    let e = Engine::new(&compiled, &host);
    let s = initial_state(&compiled, p, true);
    let outcomes = run_route(&e, route, p.oif.as_deref(), vec![s]);
    let v = verdict(&outcomes);
    Explained {
        compiled,
        packet: p.clone(),
        outcomes,
        verdict: v,
    }
}

/// The tuples and NAT of the connection a first packet opened on this host,
/// from its final state: what later packets and replies are matched against.
fn conn_of(first: &State, dir: CtDirection) -> Ct {
    use space::*;
    let orig = &first.cube;
    let fin = first.effective_cube();
    let o = |d: usize| orig.iv[d].clone();
    let f = |d: usize| fin.iv[d].clone();
    let mut ct = Ct::new_conn(CtBase::Established, dir);
    ct.nat_done = [true, true];
    ct.nat_bits = first.ct.nat_bits;
    ct.helper = first.ct.helper.clone();
    let (dnat, snat) = (first.ct.nat_bits[0], first.ct.nat_bits[1]);
    ct.pending = if dir == CtDirection::Reply {
        // The SNAT is undone at the destination slot, the DNAT at the source slot.
        [
            snat.then(|| (Some(o(SRC)), Some(o(SPORT)))),
            dnat.then(|| (Some(o(DST)), Some(o(DPORT)))),
        ]
        .into()
    } else {
        [
            dnat.then(|| (Some(f(DST)), Some(f(DPORT)))),
            snat.then(|| (Some(f(SRC)), Some(f(SPORT)))),
        ]
        .into()
    };
    ct.tuples = Some(Box::new([
        o(SRC),
        o(DST),
        o(SPORT),
        o(DPORT),
        f(DST),
        f(SRC),
        f(DPORT),
        f(SPORT),
    ]));
    ct
}

/// The first reply to the connection whose first packet passed this host
/// ending as `first`: ESTABLISHED, reply direction, addressed to what the
/// first packet became, with the connection's NAT undone where the kernel
/// undoes it (destination at prerouting/output, source at input/postrouting).
/// TCP replies carry SYN+ACK, an ICMP echo request gets an echo reply.
/// Interfaces are left for the caller to set.
pub fn reply_of(first: &State, trace: bool) -> State {
    use space::*;
    let fin = first.effective_cube();
    let mut c = first.cube.clone();
    c.iv[SRC] = fin.iv[DST].clone();
    c.iv[DST] = fin.iv[SRC].clone();
    c.iv[SPORT] = fin.iv[DPORT].clone();
    c.iv[DPORT] = fin.iv[SPORT].clone();
    let proto = c.iv[PROTO].lo() as u8;
    if compile::is_icmp(proto) {
        // Echo request (8 / 128) → echo reply (0 / 129).
        let ty = fin.iv[DPORT].lo() >> 8;
        let reply = match ty {
            8 => 0,
            128 => 129,
            t => t,
        };
        c.iv[DPORT] = IvSet::point(reply << 8);
        c.iv[SPORT] = IvSet::point(0);
    }
    let mut s = State::new(c, conn_of(first, CtDirection::Reply), trace);
    s.ctmark = first.ctmark;
    s.tcp_flags = first.tcp_flags.map(|_| 0x12);
    s
}

/// A later packet of the same connection in the original direction, as it
/// arrives where `first` arrived: ESTABLISHED once conntrack has seen a
/// reply (`answered`); otherwise still NEW for UDP and ICMP (the entry exists,
/// with its NAT, but has seen no reply), and INVALID for a TCP ACK that
/// answers no SYN-ACK.
pub fn later_of(first: &State, answered: bool, trace: bool) -> State {
    let mut ct = conn_of(first, CtDirection::Original);
    if !answered {
        let tcp = first.cube.iv[space::PROTO] == space::IvSet::point(6);
        ct.base = if tcp { CtBase::Invalid } else { CtBase::New };
        ct.status = (engine::ST_CONFIRMED, 0);
    }
    let mut s = State::new(first.cube.clone(), ct, trace);
    s.ctmark = first.ctmark;
    s.tcp_flags = first.tcp_flags.map(|_| 0x10);
    s.local_origin = first.local_origin;
    s
}
