//! Each Amanda flow along its path, through every host's ruleset: the first
//! packet hop by hop (NAT as the rulesets do it, compared with what the
//! topology says), the reply back (ESTABLISHED, reply direction, NAT undone),
//! and the initiator's later packets (ESTABLISHED, original direction).
//!
//! A flow is a box of packets (every source port Amanda may use, every port
//! of a data range), so a rule that blocks part of a range shows up as such.

use std::collections::HashMap;

use serde::Serialize;

use super::load::Loc;
use super::messages::{self, PacketKind};
use super::{chain_path, cube_text, end_loc, HostCheck};
use crate::flows::{helper_cover, HelperCover};
use crate::flows::{Flow, HelperRole};
use crate::model::HostId;
use crate::netfilter::{CtDirection, Hook};
use crate::plan::Plan;
use crate::ports::Proto;
use crate::route::{Hop, HopKind, Path};
use crate::sim::engine::{CtBase, End, RuleRef, State, Step};
use crate::sim::space::*;
use crate::sim::{Ct, Engine};

/// `ports::EPHEMERAL` as an interval, for flows with any source port.
pub const EPHEMERAL: Iv = Iv::new(
    crate::ports::EPHEMERAL.lo as u128,
    crate::ports::EPHEMERAL.hi as u128,
);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Blocked,
    Unknown,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Problem {
    /// A rule or policy drops (or rejects) the packets.
    Blocked {
        at: Loc,
        chain_path: Vec<String>,
        /// Whose rule it is, by the names the managers give their chains
        /// and tables (`manager`).
        manager: String,
        /// Set when the verdict rests on matches amwall cannot decide.
        depends_on: Vec<Loc>,
    },
    /// An action amwall cannot evaluate.
    Unknown { at: Option<Loc>, what: String },
    /// NAT or routing differs from the topology.
    Nat { message: String },
    /// The request's privileged source port becomes unprivileged.
    SourcePort { port: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub packet: PacketKind,
    pub host: String,
    pub hook: Option<&'static str>,
    /// The packets concerned, as that host saw them.
    pub packets: String,
    /// Whether only part of the flow's packets are concerned.
    pub partial: bool,
    pub problem: Problem,
    /// Certain (no undecidable match on the way).
    pub certain: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct FlowVerdict {
    pub id: usize,
    pub status: Status,
    pub findings: Vec<Finding>,
    /// The message Amanda prints, for the first certain finding.
    pub amanda: Option<String>,
    pub notes: Vec<String>,
}

/// What a host did to a flow's first packet: kept for its replies.
#[derive(Clone, Debug)]
struct Conn {
    hop: usize,
    orig: [IvSet; 4],
    fin: [IvSet; 4],
    nat_bits: [bool; 2],
    helper: Option<String>,
    ctmark: Option<u32>,
}

/// Per host on a master (helper-assigning) flow's path: whether the helper
/// was attached, and the connection's NAT (a RELATED connection follows it).
#[derive(Clone, Debug, Default)]
pub struct MasterInfo {
    pub helper: bool,
    /// Attached to some of the request's packets but not all (a rule that
    /// names only some sources or source ports).
    pub partly: bool,
    /// The rule that assigned it (the first branch's, when several did).
    pub by: Option<RuleRef>,
    pub snat: Option<IvSet>,
    pub dnat: Option<IvSet>,
}

pub struct Walker<'a> {
    pub plan: &'a Plan,
    pub hosts: &'a HashMap<HostId, HostCheck<'a>>,
    /// (initiator, responder) → host → helper info, from the Backup control flow.
    pub masters: HashMap<(HostId, HostId), HashMap<HostId, MasterInfo>>,
}

/// The flow's first packet as the initiator sends it: every source port it
/// may use (Linux's ephemeral range when Amanda binds none).
fn first_cube(flow: &Flow, path: &Path) -> Cube {
    let proto_n: u128 = if flow.proto == Proto::Tcp { 6 } else { 17 };
    let mut full = Cube::full(false, 0, 0);
    full.iv[SRC] = v4(path.hops[0].src);
    full.iv[DST] = v4(path.hops[0].dst);
    full.set(PROTO, Iv::point(proto_n));
    full.set(
        SPORT,
        flow.sport
            .map_or(EPHEMERAL, |r| Iv::new(r.lo as u128, r.hi as u128)),
    );
    full.set(DPORT, Iv::new(flow.dport.lo as u128, flow.dport.hi as u128));
    full
}

fn dims4(c: &Cube) -> [IvSet; 4] {
    [
        c.iv[SRC].clone(),
        c.iv[DST].clone(),
        c.iv[SPORT].clone(),
        c.iv[DPORT].clone(),
    ]
}

fn v4(a: std::net::Ipv4Addr) -> IvSet {
    IvSet::point(u32::from(a) as u128)
}

/// A packet the topology did not expect here, and why.
type Rejected = Box<(State, Problem)>;

/// A finding with whether it is certain.
type Settled = (State, Option<Hook>, Problem, bool);

impl HopOut {
    /// A drop on a branch that assumed an undecidable match is still certain
    /// for the packets no branch lets through (nor leaves undecided): those
    /// are dropped whichever way the match goes. Splits such findings into
    /// that certain part and the rest.
    fn settle(self) -> (Vec<State>, Vec<Settled>) {
        let mut open: Vec<Cube> = self.passed.iter().map(|s| s.cube.clone()).collect();
        open.extend(
            self.findings
                .iter()
                .filter(|(_, _, p)| matches!(p, Problem::Unknown { .. }))
                .map(|(s, _, _)| s.cube.clone()),
        );
        let mut out = Vec::new();
        for (s, h, p) in self.findings {
            if !s.tainted() || !matches!(p, Problem::Blocked { .. }) {
                let certain = !s.tainted() && !matches!(p, Problem::Unknown { .. });
                out.push((s, h, p, certain));
                continue;
            }
            let mut sure = subtract(std::slice::from_ref(&s.cube), &open);
            coalesce(&mut sure);
            let mut maybe = subtract(std::slice::from_ref(&s.cube), &sure);
            coalesce(&mut maybe);
            for c in sure {
                let mut x = s.clone();
                x.cube = c;
                out.push((x, h, p.clone(), true));
            }
            for c in maybe {
                let mut x = s.clone();
                x.cube = c;
                out.push((x, h, p.clone(), false));
            }
        }
        (self.passed, out)
    }
}

struct HopOut {
    passed: Vec<State>,
    findings: Vec<(State, Option<Hook>, Problem)>,
}

impl<'a> Walker<'a> {
    fn name(&self, h: HostId) -> &str {
        &self.plan.deployment.hosts[h].name
    }

    /// What the helper does for an announced stream at `host`, in the words
    /// the report shows beside the verdict; `None` where there is nothing to
    /// say (no rules given for the host, or a static plan and no helper).
    fn helper_note(
        &self,
        flow: &Flow,
        host: HostId,
        master: Option<&MasterInfo>,
        cover: Option<HelperCover>,
    ) -> Option<String> {
        let hc = self.hosts.get(&host)?;
        let name = self.name(host);
        let at = |m: &MasterInfo| {
            m.by.map(|r| format!(" at {}", hc.rules.loc(&hc.compiled, r.chain, r.rule)))
                .unwrap_or_default()
        };
        if let Some(m) = master.filter(|m| !m.helper && m.partly) {
            return Some(format!(
                "{name}: the amanda helper is assigned{} to only some of the request's packets (sources or source ports): for the others this connection is NEW",
                at(m)
            ));
        }
        let assigned = master.filter(|m| m.helper);
        Some(match (assigned, cover) {
            (Some(m), Some(HelperCover::NotState)) => format!(
                "{name}: the amanda helper is assigned{}, but with `index no` it stops at `INDEX -1` and never expects STATE: that connection is NEW",
                at(m)
            ),
            (Some(m), Some(HelperCover::OneDumper)) => format!(
                "{name}: RELATED: the amanda helper assigned{} expects this connection; with bsdudp a second dumper to this client within 180 s clashes with that expectation and the kernel drops the client's REP (\"timeout waiting for REP\")",
                at(m)
            ),
            (Some(m), _) => format!(
                "{name}: RELATED: the amanda helper assigned{} expects this connection",
                at(m)
            ),
            (None, _) if flow.helper == HelperRole::Expected => format!(
                "{name}: the plan relies on the amanda helper, but no rule here assigns it to the sendbackup request, so this connection is NEW"
            ),
            (None, _) => return None,
        })
    }

    fn is_local(&self, h: HostId, iv: &IvSet) -> bool {
        let hull = iv.hull();
        self.plan.deployment.hosts[h]
            .interfaces
            .iter()
            .any(|i| i.address.is_some_and(|a| v4(a) == *iv))
            || (hull.lo >> 24 == 127 && hull.hi >> 24 == 127)
    }

    /// Run `hooks` on one host; interfaces are set before each hook from `ifs`.
    fn hooks(
        &self,
        hc: &HostCheck,
        hooks: &[(Hook, &str, &str)],
        states: Vec<State>,
        out: &mut HopOut,
        after: &dyn Fn(Hook, State) -> Result<State, Rejected>,
    ) -> Vec<State> {
        let e = Engine::new(&hc.compiled, &hc.info);
        let mut live = states;
        for &(h, iif, oif) in hooks {
            let (ci, co) = (
                hc.compiled.ifaces.class_of(iif),
                hc.compiled.ifaces.class_of(oif),
            );
            for s in &mut live {
                s.cube.ifs = [ci, co];
            }
            let (pass, stop) = e.run_hook(h, live);
            for (s, end) in stop {
                let p = match &end {
                    End::Unknown { what, .. } => Problem::Unknown {
                        at: end_loc(hc.rules, &hc.compiled, &end),
                        what: what.clone(),
                    },
                    End::Loop { .. } => Problem::Unknown {
                        at: None,
                        what: "jumps nested too deep".into(),
                    },
                    _ => {
                        let at = end_loc(hc.rules, &hc.compiled, &end).expect("drops have a place");
                        let chain_path = chain_path(&hc.compiled, &s);
                        Problem::Blocked {
                            manager: super::manager::of(&at.file, &chain_path),
                            at,
                            chain_path,
                            depends_on: s
                                .taint
                                .iter()
                                .map(|r| hc.rules.loc(&hc.compiled, r.chain, r.rule))
                                .collect(),
                        }
                    }
                };
                out.findings.push((s, Some(h), p));
            }
            live = Vec::new();
            for s in pass {
                match after(h, s) {
                    Ok(s) => live.push(s),
                    Err(b) => {
                        let (s, p) = *b;
                        out.findings.push((s, Some(h), p))
                    }
                }
            }
        }
        live
    }

    /// A host without a ruleset: everything passes; the first packet gets the
    /// topology's NAT, later packets and replies their connection's.
    fn no_rules(&self, hop: &Hop, states: Vec<State>) -> HopOut {
        let mut out = HopOut {
            passed: Vec::new(),
            findings: Vec::new(),
        };
        for mut s in states {
            if s.ct.first && s.ct.base == CtBase::New {
                if let Some(d) = hop.dnat_to {
                    s.xf[DST] = Some(v4(d));
                    s.ct.nat_bits[0] = true;
                }
                if let Some(a) = hop.snat_to {
                    s.xf[SRC] = Some(v4(a));
                    s.ct.nat_bits[1] = true;
                }
            } else {
                for (m, (ad, pd)) in [(DST, DPORT), (SRC, SPORT)].into_iter().enumerate() {
                    if let Some((a, p)) = s.ct.pending[m].clone() {
                        if let Some(a) = a {
                            s.xf[ad] = Some(a);
                        }
                        if let Some(p) = p {
                            s.xf[pd] = Some(p);
                        }
                    }
                }
            }
            out.passed.push(s);
        }
        out
    }

    /// The original direction through one hop. `next`: who receives it.
    fn hop_forward(&self, hop: &Hop, next: &str, states: Vec<State>) -> HopOut {
        let Some(hc) = self.hosts.get(&hop.host) else {
            return self.no_rules(hop, states);
        };
        let mut out = HopOut {
            passed: Vec::new(),
            findings: Vec::new(),
        };
        let host = hop.host;
        let iin = hop.in_iface.as_deref().unwrap_or("");
        let iout = hop.out_iface.as_deref().unwrap_or("");
        let expect_dst = v4(hop.dnat_to.unwrap_or(hop.dst));
        let arrival_src = v4(hop.src);
        let show = |iv: &IvSet| crate::sim::engine::show_set(iv, false);
        let check_dst = |h: Hook, s: State| -> Result<State, Rejected> {
            if h != Hook::Prerouting {
                return Ok(s);
            }
            let got = s.eff(DST).clone();
            if got == expect_dst {
                return Ok(s);
            }
            let message = if self.is_local(host, &got) {
                format!(
                    "{} delivers it to itself ({}): its ruleset has no port forward (DNAT) to {}",
                    self.name(host),
                    show(&got),
                    show(&expect_dst)
                )
            } else {
                format!(
                    "{} sends it to {}, not to {} as the topology says",
                    self.name(host),
                    show(&got),
                    show(&expect_dst)
                )
            };
            Err(Box::new((s, Problem::Nat { message })))
        };
        match hop.kind {
            HopKind::Origin => {
                out.passed = self.hooks(
                    hc,
                    &[(Hook::Output, "", iout), (Hook::Postrouting, "", iout)],
                    states,
                    &mut out,
                    &|_, s| Ok(s),
                );
            }
            HopKind::Destination => {
                out.passed = self.hooks(
                    hc,
                    &[(Hook::Prerouting, iin, ""), (Hook::Input, iin, "")],
                    states,
                    &mut out,
                    &|h, s| {
                        if h == Hook::Prerouting && !self.is_local(host, s.eff(DST)) {
                            let got = s.eff(DST).clone();
                            let message = format!(
                                "{} rewrites the destination to {}: not delivered to itself",
                                self.name(host),
                                show(&got)
                            );
                            return Err(Box::new((s, Problem::Nat { message })));
                        }
                        Ok(s)
                    },
                );
            }
            HopKind::Forward => {
                let snat = hop.snat_to.map(v4);
                let check = |h: Hook, mut s: State| -> Result<State, Rejected> {
                    if h != Hook::Postrouting {
                        return check_dst(h, s);
                    }
                    let got = s.eff(SRC).clone();
                    let want = snat.clone().unwrap_or_else(|| arrival_src.clone());
                    if got == want {
                        return Ok(s);
                    }
                    if snat.is_some() {
                        let message = format!(
                            "{} does not masquerade it: {next} sees source {}, which it cannot answer (the topology masquerades to {})",
                            self.name(host),
                            show(&got),
                            show(&want)
                        );
                        return Err(Box::new((s, Problem::Nat { message })));
                    }
                    s.step(|| {
                        Step::Note(format!(
                            "the source becomes {} here (the topology has no NAT on this hop)",
                            show(&got)
                        ))
                    });
                    Ok(s)
                };
                out.passed = self.hooks(
                    hc,
                    &[
                        (Hook::Prerouting, iin, ""),
                        (Hook::Forward, iin, iout),
                        (Hook::Postrouting, iin, iout),
                    ],
                    states,
                    &mut out,
                    &check,
                );
            }
            HopKind::Loopback => {
                let mid = self.hooks(
                    hc,
                    &[(Hook::Output, "", "lo"), (Hook::Postrouting, "", "lo")],
                    states,
                    &mut out,
                    &|_, s| Ok(s),
                );
                let mid = mid
                    .into_iter()
                    .map(|mut s| {
                        // nf_nat: both mappings were set up on the way out.
                        s.ct.nat_done = [true, true];
                        s
                    })
                    .collect();
                out.passed = self.hooks(
                    hc,
                    &[(Hook::Prerouting, "lo", ""), (Hook::Input, "lo", "")],
                    mid,
                    &mut out,
                    &|_, s| Ok(s),
                );
            }
        }
        out
    }

    /// The reply direction through one hop of the original path.
    fn hop_back(&self, hop: &Hop, states: Vec<State>) -> HopOut {
        let Some(hc) = self.hosts.get(&hop.host) else {
            return self.no_rules(hop, states);
        };
        let mut out = HopOut {
            passed: Vec::new(),
            findings: Vec::new(),
        };
        let iin = hop.in_iface.as_deref().unwrap_or("");
        let iout = hop.out_iface.as_deref().unwrap_or("");
        let ok = |_: Hook, s: State| -> Result<State, Rejected> { Ok(s) };
        out.passed = match hop.kind {
            HopKind::Destination => self.hooks(
                hc,
                &[(Hook::Output, "", iin), (Hook::Postrouting, "", iin)],
                states,
                &mut out,
                &ok,
            ),
            HopKind::Forward => self.hooks(
                hc,
                &[
                    (Hook::Prerouting, iout, ""),
                    (Hook::Forward, iout, iin),
                    (Hook::Postrouting, iout, iin),
                ],
                states,
                &mut out,
                &ok,
            ),
            HopKind::Origin => self.hooks(
                hc,
                &[(Hook::Prerouting, iout, ""), (Hook::Input, iout, "")],
                states,
                &mut out,
                &ok,
            ),
            HopKind::Loopback => {
                let mid = self.hooks(
                    hc,
                    &[(Hook::Output, "", "lo"), (Hook::Postrouting, "", "lo")],
                    states,
                    &mut out,
                    &ok,
                );
                self.hooks(
                    hc,
                    &[(Hook::Prerouting, "lo", ""), (Hook::Input, "lo", "")],
                    mid,
                    &mut out,
                    &ok,
                )
            }
        };
        out
    }

    fn new_state(&self, cube: Cube, ct: Ct, proto: Proto, flags: u8, ttl: u8) -> State {
        let mut s = State::new(cube, ct, true);
        if proto == Proto::Tcp {
            s.tcp_flags = Some(flags);
        }
        s.ttl = Some(ttl);
        s
    }

    #[allow(clippy::too_many_arguments)]
    fn finding(
        &self,
        host: HostId,
        kind: PacketKind,
        full: &Cube,
        s: &State,
        hook: Option<Hook>,
        problem: Problem,
        certain: bool,
    ) -> Finding {
        let c = &s.cube;
        let (sp, dp) = if kind == PacketKind::Reply {
            (&c.iv[DPORT], &c.iv[SPORT])
        } else {
            (&c.iv[SPORT], &c.iv[DPORT])
        };
        let partial = !full.iv[SPORT].minus(sp).is_empty() || !full.iv[DPORT].minus(dp).is_empty();
        let packets = match self.hosts.get(&host) {
            Some(hc) => cube_text(c, &hc.compiled, true),
            None => String::new(),
        };
        Finding {
            packet: kind,
            host: self.name(host).to_string(),
            hook: hook.map(|h| h.name()),
            packets,
            partial,
            problem,
            certain,
        }
    }

    /// A later packet's (or reply's) connection on one host, from its first packet.
    fn conn_ct(conn: &Conn, dir: CtDirection) -> Ct {
        let mut ct = Ct::new_conn(CtBase::Established, dir);
        ct.nat_done = [true, true];
        let o = |i: usize| conn.orig[i].clone();
        let f = |i: usize| conn.fin[i].clone();
        ct.pending = if dir == CtDirection::Reply {
            // Undo this host's SNAT at the destination slot, its DNAT at the source slot.
            [
                conn.nat_bits[1].then(|| (Some(o(0)), Some(o(2)))),
                conn.nat_bits[0].then(|| (Some(o(1)), Some(o(3)))),
            ]
            .into()
        } else {
            [
                conn.nat_bits[0].then(|| (Some(f(1)), Some(f(3)))),
                conn.nat_bits[1].then(|| (Some(f(0)), Some(f(2)))),
            ]
            .into()
        };
        ct.nat_bits = conn.nat_bits;
        ct.helper = conn.helper.clone();
        ct.tuples = Some(Box::new([o(0), o(1), o(2), o(3), f(1), f(0), f(3), f(2)]));
        ct
    }

    /// Walk flow `fi` of the plan: its first packet hop by hop, then for
    /// every way it reached the responder the reply and the later packets,
    /// each at every host with that host's connection.
    pub fn walk(&mut self, fi: usize) -> FlowVerdict {
        let flow = &self.plan.flows[fi];
        let path = &self.plan.paths[fi];
        let full = first_cube(flow, path);
        let mut findings: Vec<Finding> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        let arrived = self.first_packet(flow, path, &full, &mut findings, &mut notes);
        self.source_port(flow, path, &full, &arrived, &mut findings);
        for h in arrived.iter().map(|(_, h)| h) {
            let unanswered = self.replies(flow, path, &full, h, &mut findings);
            self.later_packets(flow, path, &full, h, &unanswered, &mut findings);
        }
        self.verdict(fi, findings, notes)
    }

    /// Hop by hop, the first packet; each state that passes keeps its history
    /// of connections (what each host did to it). Returns the packets that
    /// reached the responder with their histories.
    fn first_packet(
        &mut self,
        flow: &Flow,
        path: &Path,
        full: &Cube,
        findings: &mut Vec<Finding>,
        notes: &mut Vec<String>,
    ) -> Vec<(Cube, Vec<Conn>)> {
        let plan = self.plan;
        // The kernel follows the ruleset, not the topology: the streams a REP
        // announces are expected wherever a rule assigned the helper to the
        // request, whether or not the plan relies on it.
        let master = if flow.announced() {
            self.masters.get(&(flow.initiator, flow.responder)).cloned()
        } else {
            None
        };
        let cover = helper_cover(
            flow.auth,
            plan.deployment.hosts[flow.responder].amanda.index,
        );
        let assign = flow.announces_streams();
        let mut master_info: HashMap<HostId, MasterInfo> = HashMap::new();
        let d = &plan.deployment;
        let next_name = |i: usize| -> String {
            path.hops
                .get(i + 1)
                .map(|h| d.hosts[h.host].name.clone())
                .unwrap_or_default()
        };

        let mut hists: Vec<Vec<Conn>> = vec![Vec::new()];
        let mut cur: Vec<(Cube, u32)> = vec![(full.clone(), 0)];
        let mut routers = 0u8;
        for (hi, hop) in path.hops.iter().enumerate() {
            let here = master.as_ref().and_then(|m| m.get(&hop.host));
            let assigned = here.filter(|m| m.helper);
            let related = assigned.filter(|_| cover != Some(HelperCover::NotState));
            // Only where the connection enters: its initiator's own
            // outgoing packet needs no helper.
            let enters = matches!(hop.kind, HopKind::Forward | HopKind::Destination);
            if let Some(note) = self
                .helper_note(flow, hop.host, here, cover)
                .filter(|_| enters)
            {
                notes.push(note);
            }
            let mut states = Vec::new();
            for (cube, tag) in &cur {
                let base = if related.is_some() {
                    CtBase::Related
                } else {
                    CtBase::New
                };
                let mut ct = Ct::new_conn(base, CtDirection::Original);
                if let Some(m) = related.filter(|m| m.dnat.is_some() || m.snat.is_some()) {
                    // nf_nat_follow_master: the expected connection of a NATed
                    // master gets the master's NAT (and skips the nat chains);
                    // otherwise its first packet walks them like a NEW one.
                    ct.nat_done = [true, true];
                    ct.pending = [
                        m.dnat.clone().map(|a| (Some(a), None)),
                        m.snat.clone().map(|a| (Some(a), None)),
                    ]
                    .into();
                }
                let mut s = self.new_state(cube.clone(), ct, flow.proto, 0x02, 64 - routers);
                s.local_origin = matches!(hop.kind, HopKind::Origin | HopKind::Loopback);
                s.tag = *tag;
                states.push(s);
            }
            let (passed, found) = self.hop_forward(hop, &next_name(hi), states).settle();
            for (s, hook, p, certain) in found {
                findings.push(self.finding(
                    hop.host,
                    PacketKind::First,
                    full,
                    &s,
                    hook,
                    p,
                    certain,
                ));
            }
            let mut next = Vec::new();
            for s in passed {
                let mut h = hists[s.tag as usize].clone();
                let conn = Conn {
                    hop: hi,
                    orig: dims4(&s.cube),
                    fin: dims4(&s.effective_cube()),
                    nat_bits: s.ct.nat_bits,
                    helper: s.ct.helper.clone(),
                    ctmark: s.ctmark,
                };
                if assign {
                    let mi = master_info.entry(hop.host).or_insert(MasterInfo {
                        helper: true,
                        ..Default::default()
                    });
                    let has = s.ct.helper.as_deref() == Some("amanda");
                    mi.partly |= has;
                    mi.helper &= has;
                    if has {
                        mi.by = mi.by.or(s.ct.helper_by);
                    }
                    if s.ct.nat_bits[0] {
                        mi.dnat = Some(conn.fin[1].clone());
                    }
                    if s.ct.nat_bits[1] {
                        mi.snat = Some(conn.fin[0].clone());
                    }
                }
                h.push(conn);
                hists.push(h);
                let mut c = s.effective_cube();
                c.ifs = [0, 0];
                next.push((c, (hists.len() - 1) as u32));
            }
            cur = next;
            if hop.kind == HopKind::Forward {
                routers += 1;
            }
        }
        if assign {
            self.masters
                .insert((flow.initiator, flow.responder), master_info);
        }
        cur.into_iter()
            .map(|(c, t)| (c, hists[t as usize].clone()))
            .collect()
    }

    /// The responder checks the request's source port (docs/design.md: "port N not secure").
    fn source_port(
        &self,
        flow: &Flow,
        path: &Path,
        full: &Cube,
        arrived: &[(Cube, Vec<Conn>)],
        findings: &mut Vec<Finding>,
    ) {
        if flow.sport.is_some_and(|r| r.is_privileged()) {
            let last = path.last().host;
            for (c, _) in arrived {
                if c.iv[SPORT].hull().hi >= 1024 {
                    let s = State::new(
                        c.clone(),
                        Ct::new_conn(CtBase::New, CtDirection::Original),
                        false,
                    );
                    findings.push(self.finding(
                        last,
                        PacketKind::First,
                        full,
                        &s,
                        None,
                        Problem::SourcePort {
                            port: c.iv[SPORT].to_string(),
                        },
                        true,
                    ));
                }
            }
        }
    }

    /// The reply at each host of one history, from the responder back: what
    /// the host sent, turned around, with its connection. Returns the hops
    /// where NOTRACK keeps the reply from its connection: there the
    /// initiator's next packets are not ESTABLISHED.
    fn replies(
        &self,
        flow: &Flow,
        path: &Path,
        full: &Cube,
        h: &[Conn],
        findings: &mut Vec<Finding>,
    ) -> Vec<usize> {
        let mut unanswered: Vec<usize> = Vec::new();
        for conn in h.iter().rev() {
            let hop = &path.hops[conn.hop];
            let mut r = full.clone();
            r.iv[SRC] = conn.fin[1].clone();
            r.iv[DST] = conn.fin[0].clone();
            r.iv[SPORT] = conn.fin[3].clone();
            r.iv[DPORT] = conn.fin[2].clone();
            let mut s = self.new_state(
                r,
                Self::conn_ct(conn, CtDirection::Reply),
                flow.proto,
                0x12,
                64,
            );
            s.ctmark = conn.ctmark;
            s.local_origin = matches!(hop.kind, HopKind::Destination | HopKind::Loopback);
            let (passed, found) = self.hop_back(hop, vec![s]).settle();
            if passed
                .iter()
                .chain(found.iter().map(|f| &f.0))
                .any(|s| s.ct.untracked)
            {
                unanswered.push(conn.hop);
            }
            for (s, hook, p, certain) in found {
                findings.push(self.finding(
                    hop.host,
                    PacketKind::Reply,
                    full,
                    &s,
                    hook,
                    p,
                    certain,
                ));
            }
        }
        unanswered
    }

    /// The initiator's later packets at each host of one history.
    fn later_packets(
        &self,
        flow: &Flow,
        path: &Path,
        full: &Cube,
        h: &[Conn],
        unanswered: &[usize],
        findings: &mut Vec<Finding>,
    ) {
        let d = &self.plan.deployment;
        let next_name = |i: usize| -> String {
            path.hops
                .get(i + 1)
                .map(|h| d.hosts[h.host].name.clone())
                .unwrap_or_default()
        };
        for conn in h.iter() {
            let hop = &path.hops[conn.hop];
            let mut c = full.clone();
            c.iv[SRC] = conn.orig[0].clone();
            c.iv[DST] = conn.orig[1].clone();
            c.iv[SPORT] = conn.orig[2].clone();
            c.iv[DPORT] = conn.orig[3].clone();
            let mut ct = Self::conn_ct(conn, CtDirection::Original);
            if unanswered.contains(&conn.hop) {
                // Conntrack saw no reply: UDP stays NEW, a TCP ACK is INVALID.
                ct.base = if flow.proto == Proto::Tcp {
                    CtBase::Invalid
                } else {
                    CtBase::New
                };
                ct.status = (crate::sim::engine::ST_CONFIRMED, 0);
            }
            let mut s = self.new_state(c, ct, flow.proto, 0x10, 64);
            s.ctmark = conn.ctmark;
            s.local_origin = matches!(hop.kind, HopKind::Origin | HopKind::Loopback);
            let (_, found) = self
                .hop_forward(hop, &next_name(conn.hop), vec![s])
                .settle();
            for (s, hook, p, certain) in found {
                // A NAT mismatch shows with the first packet already.
                if !matches!(p, Problem::Nat { .. }) {
                    findings.push(self.finding(
                        hop.host,
                        PacketKind::Later,
                        full,
                        &s,
                        hook,
                        p,
                        certain,
                    ));
                }
            }
        }
    }

    /// Pass, blocked or undecided, and the message Amanda prints.
    fn verdict(&self, fi: usize, findings: Vec<Finding>, notes: Vec<String>) -> FlowVerdict {
        let flow = &self.plan.flows[fi];
        let path = &self.plan.paths[fi];
        let status = if findings.iter().any(|f| f.certain) {
            Status::Blocked
        } else if findings.is_empty() {
            Status::Pass
        } else {
            Status::Unknown
        };
        let target = if path.target == path.last().dst {
            self.name(flow.responder).to_string()
        } else {
            format!("{} ({})", self.name(flow.responder), path.target)
        };
        let amanda = findings
            .iter()
            .filter(|f| f.certain)
            .min_by_key(|f| f.packet)
            .map(|f| match &f.problem {
                Problem::SourcePort { port } => messages::not_secure(
                    port.split('-')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(1024),
                ),
                _ => messages::blocked(flow, f.packet, &target, flow.dport.lo),
            });
        FlowVerdict {
            id: fi + 1,
            status,
            findings: merge(findings),
            amanda,
            notes,
        }
    }
}

/// Findings that differ only in the packets concerned become one.
fn merge(v: Vec<Finding>) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for f in v {
        let key = |x: &Finding| {
            (
                x.packet,
                x.host.clone(),
                x.hook,
                serde_json::to_string(&x.problem).unwrap_or_default(),
                x.certain,
            )
        };
        if let Some(o) = out.iter_mut().find(|o| key(o) == key(&f)) {
            if !o.packets.split("; ").any(|p| p == f.packets) {
                o.packets.push_str("; ");
                o.packets.push_str(&f.packets);
            }
            o.partial &= f.partial;
            continue;
        }
        out.push(f);
    }
    out.sort_by_key(|f| (!f.certain, f.packet));
    out
}
