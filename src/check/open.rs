//! What a ruleset accepts for new connections, computed symbolically: the
//! whole packet space (every source and destination, protocol, port,
//! interface) goes through prerouting and then input or forward, cut by every
//! rule; what comes out accepted, minus what the flows need, is reported per
//! accepting rule as source prefixes × protocol × port ranges — exact (no
//! sampling) and merged.
//!
//! New connections means conntrack state NEW (or UNTRACKED after a NOTRACK),
//! TCP packets with only SYN set, packets that are not fragments, mark 0.
//! Matches amwall cannot decide (rate limits, MAC addresses, ...) fork the
//! evaluation; what is accepted on such a branch is listed as "may accept".

use std::collections::BTreeMap;

use serde::Serialize;

use super::load::{HostRules, Loc};
use super::HostCheck;
use crate::flows::HelperRole;
use crate::model::HostId;
use crate::netfilter::{CtDirection, Hook};
use crate::plan::Plan;
use crate::policy::Place;
use crate::ports::Proto;
use crate::route::HopKind;
use crate::sim::engine::{show, show_set, CtBase, RuleRef, State};
use crate::sim::space::*;
use crate::sim::{compile, Compiled, Ct, Engine, HostInfo, LocalGuess, SetDb};

/// One line of the report: a protocol and ports from some sources.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct OpenLine {
    pub proto: String,
    /// Destination ports (or ICMP types), empty when the protocol has none.
    pub ports: String,
    pub sport: Option<String>,
    pub from: Vec<String>,
    pub to: Option<String>,
    pub iif: Option<String>,
    pub oif: Option<String>,
}

impl std::fmt::Display for OpenLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.proto)?;
        if !self.ports.is_empty() {
            write!(f, " {}", self.ports)?;
        }
        if let Some(s) = &self.sport {
            write!(f, " sport {s}")?;
        }
        let from = if self.from.len() > 6 {
            format!(
                "{} and {} more",
                self.from[..6].join(", "),
                self.from.len() - 6
            )
        } else {
            self.from.join(", ")
        };
        write!(f, " from {from}")?;
        if let Some(t) = &self.to {
            write!(f, " to {t}")?;
        }
        if let Some(i) = &self.iif {
            write!(f, " in {i}")?;
        }
        if let Some(o) = &self.oif {
            write!(f, " out {o}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct OpenGroup {
    /// The rule (or policy) that accepts these packets.
    pub accepted_by: Loc,
    /// False: accepted only on a branch where an undecidable match went one way.
    pub certain: bool,
    pub depends_on: Vec<Loc>,
    pub lines: Vec<OpenLine>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OpenView {
    pub family: &'static str,
    /// `input` (to the host) or `forward` (through it).
    pub view: &'static str,
    pub assumption: Option<String>,
    pub groups: Vec<OpenGroup>,
    /// Boxes of packets before merging into lines (a measure of complexity).
    pub boxes: usize,
}

struct Accepted {
    cube: Cube,
    by: Option<RuleRef>,
    taint: Vec<RuleRef>,
    /// The rule that attached the amanda helper to this connection, if one did.
    helper: Option<RuleRef>,
}

/// The view of the packets that leave with the amanda helper attached, grouped
/// by the rule that attached it. An assignment is an opening of its own: the
/// kernel then accepts, as RELATED, the connections that the replies to those
/// packets announce, so whoever may send them (and answer with a `CONNECT`
/// line) opens ports. `None` when no accepted packet has the helper, which
/// keeps the report of a ruleset without helpers as it was.
#[allow(clippy::too_many_arguments)]
fn helper_view<'a>(
    hr: &HostRules,
    c: &Compiled,
    acc: impl Iterator<Item = &'a Accepted>,
    need: &[Cube],
    family: &'static str,
    all_iif: u128,
    all_oif: u128,
    all_dst: Option<&IvSet>,
) -> Option<OpenView> {
    let with: Vec<Accepted> = acc
        .filter(|a| a.helper.is_some())
        .map(|a| Accepted {
            cube: a.cube.clone(),
            by: a.helper,
            taint: a.taint.clone(),
            helper: a.helper,
        })
        .collect();
    if with.is_empty() {
        return None;
    }
    Some(report(
        hr,
        c,
        with,
        need,
        family,
        HELPER_VIEW,
        Some("packets that get the amanda helper: the kernel accepts, as RELATED, the connections their replies announce (`CONNECT DATA p ...`), so an assignment beyond Amanda's requests is an opening of its own".into()),
        all_iif,
        all_oif,
        all_dst,
    ))
}

/// `OpenView::view` of the helper-assignment view (the report words its groups
/// "helper assigned by" instead of "accepted by").
pub const HELPER_VIEW: &str = "amanda helper";

fn start_state(cube: Cube) -> State {
    let mut s = State::new(
        cube,
        Ct::new_conn(CtBase::New, CtDirection::Original),
        false,
    );
    s.tcp_flags = Some(0x02);
    s.ttl = None;
    s
}

/// Where a state goes after prerouting.
enum Dest {
    Input,
    Forward(u128),
}

type RouteFn<'a> = dyn Fn(State, &mut Vec<(State, Dest)>) + 'a;

/// Run the analysis: prerouting, then the route decision, input or forward
/// (+ postrouting). `route` splits a state by destination.
fn run(
    c: &Compiled,
    info: &HostInfo,
    start: Vec<State>,
    route: &RouteFn,
) -> (Vec<Accepted>, Vec<Accepted>) {
    let mut e = Engine::new(c, info);
    e.keep_stopped = false;
    let (pre, _) = e.run_hook(Hook::Prerouting, start);
    let mut to_in = Vec::new();
    let mut to_fwd = Vec::new();
    let mut routed = Vec::new();
    for s in pre {
        route(s, &mut routed);
    }
    for (s, d) in routed {
        match d {
            Dest::Input => to_in.push(s),
            Dest::Forward(oif) => {
                let mut s = s;
                s.cube.ifs[OIF] = oif;
                to_fwd.push(s);
            }
        }
    }
    let (inp, _) = e.run_hook(Hook::Input, to_in);
    let helper_of = |s: &State| s.ct.helper.as_ref().and(s.ct.helper_by);
    let input: Vec<Accepted> = inp
        .into_iter()
        .map(|s| Accepted {
            helper: helper_of(&s),
            cube: s.cube,
            by: s.accepted_by,
            taint: s.taint,
        })
        .collect();
    let (fwd, _) = e.run_hook(Hook::Forward, to_fwd);
    let mut by = Vec::with_capacity(fwd.len());
    let fwd: Vec<State> = fwd
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            by.push(s.accepted_by);
            s.tag = i as u32;
            s
        })
        .collect();
    let (post, _) = e.run_hook(Hook::Postrouting, fwd);
    let forward = post
        .into_iter()
        .map(|s| Accepted {
            helper: helper_of(&s),
            cube: s.cube,
            by: by[s.tag as usize],
            taint: s.taint,
        })
        .collect();
    (input, forward)
}

fn addr_iv(a: std::net::Ipv4Addr) -> IvSet {
    IvSet::point(u32::from(a) as u128)
}

/// Group, subtract the need, merge into lines.
#[allow(clippy::too_many_arguments)]
fn report(
    hr: &HostRules,
    c: &Compiled,
    acc: Vec<Accepted>,
    need: &[Cube],
    family: &'static str,
    view: &'static str,
    assumption: Option<String>,
    all_iif: u128,
    all_oif: u128,
    all_dst: Option<&IvSet>,
) -> OpenView {
    type GroupKey = (Option<(usize, usize)>, Vec<(usize, usize)>);
    let mut groups: BTreeMap<GroupKey, Vec<Cube>> = BTreeMap::new();
    for a in acc {
        let key = (
            a.by.map(|r| (r.chain, r.rule)),
            a.taint
                .iter()
                .map(|r| (r.chain, r.rule))
                .collect::<Vec<_>>(),
        );
        groups.entry(key).or_default().push(a.cube);
    }
    let mut out = Vec::new();
    let mut boxes = 0;
    for ((by, taint), cubes) in groups {
        let mut rest = subtract(&cubes, need);
        coalesce(&mut rest);
        if rest.is_empty() {
            continue;
        }
        boxes += rest.len();
        let lines = lines(c, &rest, all_iif, all_oif, all_dst);
        let accepted_by = match by {
            Some((ch, r)) => hr.loc(c, ch, r),
            None => Loc {
                file: hr.file_names(),
                line: None,
                text: "(no base chain on the hook: accepted)".into(),
            },
        };
        out.push(OpenGroup {
            accepted_by,
            certain: taint.is_empty(),
            depends_on: taint.iter().map(|&(ch, r)| hr.loc(c, ch, r)).collect(),
            lines,
        });
    }
    out.sort_by(|a, b| {
        (!a.certain, a.accepted_by.file.clone(), a.accepted_by.line).cmp(&(
            !b.certain,
            b.accepted_by.file.clone(),
            b.accepted_by.line,
        ))
    });
    OpenView {
        family,
        view,
        assumption,
        groups: out,
        boxes,
    }
}

fn lines(
    c: &Compiled,
    cubes: &[Cube],
    all_iif: u128,
    all_oif: u128,
    all_dst: Option<&IvSet>,
) -> Vec<OpenLine> {
    let v6 = c.v6;
    let bits = if v6 { 128 } else { 32 };
    // Key everything but the source; collect the sources.
    type Key = (IvSet, u128, u128, IvSet, IvSet, IvSet);
    let mut by_key: BTreeMap<Key, Vec<Iv>> = BTreeMap::new();
    for cube in cubes {
        let key = (
            cube.iv[PROTO].clone(),
            cube.ifs[IIF],
            cube.ifs[OIF],
            cube.iv[DPORT].clone(),
            cube.iv[SPORT].clone(),
            cube.iv[DST].clone(),
        );
        by_key
            .entry(key)
            .or_default()
            .extend(cube.iv[SRC].ivs.iter().copied());
    }
    let mut out: Vec<OpenLine> = Vec::new();
    for ((proto_set, iif, oif, dport, sport, dst), srcs) in by_key {
        let one = proto_set.is_point();
        let p = proto_set.lo() as u8;
        let proto = if one {
            crate::netfilter::names::proto_name(p)
        } else if proto_set == IvSet::full(255) {
            "any protocol".into()
        } else {
            format!("protocols {proto_set}")
        };
        let ported = one && compile::has_ports(p);
        let ports = if ported {
            if dport == IvSet::full(65535) {
                "any port".into()
            } else {
                format!("dport {dport}")
            }
        } else if one && compile::is_icmp(p) && dport != IvSet::full(0xffff) {
            super::icmp_text(&dport)
        } else {
            String::new()
        };
        let sport = (ported && sport != IvSet::full(65535)).then(|| sport.to_string());
        let set = IvSet::from_ivs(srcs);
        let from: Vec<String> = if set == IvSet::full(dim_max(SRC, v6)) {
            vec!["any".into()]
        } else {
            set.ivs
                .iter()
                .flat_map(|iv| prefixes(*iv, bits))
                .map(|(a, l)| {
                    let iv = if l == bits {
                        Iv::point(a)
                    } else {
                        Iv::new(a, a | ((1u128 << (bits - l)) - 1))
                    };
                    show(iv, v6)
                })
                .collect()
        };
        let to = match all_dst {
            Some(all) if dst == *all => None,
            _ if dst == IvSet::full(dim_max(DST, v6)) => None,
            _ => Some(show_set(&dst, v6)),
        };
        let iif = (iif != all_iif).then(|| c.ifaces.describe(iif));
        let oif = (oif != all_oif && oif != c.ifaces.class_of("")).then(|| c.ifaces.describe(oif));
        out.push(OpenLine {
            proto,
            ports,
            sport,
            from,
            to,
            iif,
            oif,
        });
    }
    out
}

/// Routes of a topology host: (destination prefix, interface), longest first,
/// then the default route through the gateway.
fn routes(plan: &Plan, h: HostId) -> Vec<(Iv, String)> {
    let d = &plan.deployment;
    let host = &d.hosts[h];
    let mut v: Vec<(u8, Iv, String)> = host
        .interfaces
        .iter()
        .filter_map(|i| Some((i, d.networks[i.network].cidr?)))
        .map(|(i, n)| {
            (
                n.prefix_len(),
                Iv::new(
                    u32::from(n.network()) as u128,
                    u32::from(n.broadcast()) as u128,
                ),
                i.name.clone(),
            )
        })
        .collect();
    if let Some(g) = host.gateway {
        if let Some(i) = host
            .interfaces
            .iter()
            .find(|i| d.iface_on(g, i.network).is_some())
        {
            v.push((0, Iv::new(0, u32::MAX as u128), i.name.clone()));
        }
    }
    v.sort_by_key(|x| std::cmp::Reverse(x.0));
    v.into_iter().map(|(_, iv, n)| (iv, n)).collect()
}

/// The packets a topology host must accept as new connections.
/// What may reach host `h` for new connections: (input, forward, the packets
/// that may get the amanda helper — the sendbackup requests whose REP announces
/// the data streams, wherever they enter or cross `h`).
fn needed(plan: &Plan, h: HostId, c: &Compiled) -> (Vec<Cube>, Vec<Cube>, Vec<Cube>) {
    let d = &plan.deployment;
    let (mut input, mut forward, mut helper) = (Vec::new(), Vec::new(), Vec::new());
    for (f, p) in plan.flows.iter().zip(&plan.paths) {
        if f.helper == HelperRole::Expected {
            continue;
        }
        for hop in p.hops.iter().filter(|x| x.host == h) {
            let mut cube = Cube::full(false, 0, 0);
            cube.iv[SRC] = addr_iv(hop.src);
            cube.iv[DST] = addr_iv(hop.dst);
            cube.set(PROTO, Iv::point(if f.proto == Proto::Tcp { 6 } else { 17 }));
            cube.set(
                SPORT,
                f.sport
                    .map_or(Iv::new(0, 65535), |r| Iv::new(r.lo as u128, r.hi as u128)),
            );
            cube.set(DPORT, Iv::new(f.dport.lo as u128, f.dport.hi as u128));
            cube.ifs[IIF] = c.ifaces.class_of(hop.in_iface.as_deref().unwrap_or(""));
            match hop.kind {
                HopKind::Destination => {
                    // Amanda's services listen on every address of the host,
                    // so a request to another of its addresses is the same need.
                    cube.set(DST, Iv::new(0, u32::MAX as u128));
                    cube.ifs[OIF] = c.ifaces.all();
                    if f.announces_streams() {
                        helper.push(cube.clone());
                    }
                    input.push(cube);
                }
                HopKind::Forward => {
                    cube.ifs[OIF] = c.ifaces.class_of(hop.out_iface.as_deref().unwrap_or(""));
                    if f.announces_streams() {
                        helper.push(cube.clone());
                    }
                    forward.push(cube);
                }
                _ => {}
            }
        }
    }
    let m = &d.management;
    if m.enabled {
        let net_iv = |n: ipnet::Ipv4Net| {
            Iv::new(
                u32::from(n.network()) as u128,
                u32::from(n.broadcast()) as u128,
            )
        };
        // The admins' way as the policy planned it (through routers and NAT).
        let hops: Vec<crate::route::MgmtHop> = if m.from.is_empty() {
            vec![crate::route::MgmtHop {
                host: h,
                kind: HopKind::Destination,
                in_iface: None,
                out_iface: None,
                src: ipnet::Ipv4Net::default(),
                dst: None,
            }]
        } else {
            plan.management[h].clone()
        };
        for hop in hops {
            let mut cube = Cube::full(false, c.ifaces.all(), c.ifaces.all());
            cube.set(SRC, net_iv(hop.src));
            cube.set(PROTO, Iv::point(if m.proto == Proto::Tcp { 6 } else { 17 }));
            cube.set(DPORT, Iv::point(m.port as u128));
            if hop.kind == HopKind::Forward {
                cube.iv[DST] = addr_iv(hop.dst.expect("forward hops name the host"));
                cube.ifs[IIF] = c.ifaces.class_of(hop.in_iface.as_deref().unwrap_or(""));
                cube.ifs[OIF] = c.ifaces.class_of(hop.out_iface.as_deref().unwrap_or(""));
                forward.push(cube);
            } else {
                input.push(cube);
            }
        }
    }
    (input, forward, helper)
}

/// A topology host: IPv4 with its addresses and routes; IPv6 (which the
/// topology never needs) as for a lone ruleset.
pub fn analyze_host(plan: &Plan, h: HostId, hr: &HostRules, hc: &HostCheck) -> Vec<OpenView> {
    let d = &plan.deployment;
    let host = &d.hosts[h];
    let c = &hc.compiled;
    let mut iif = 0u128;
    for i in &host.interfaces {
        iif |= c.ifaces.class_of(&i.name);
    }
    let local = IvSet::from_ivs(
        host.interfaces
            .iter()
            .filter_map(|i| Some(Iv::point(u32::from(i.address?) as u128)))
            .collect(),
    );
    let routes: Vec<(IvSet, u128)> = routes(plan, h)
        .into_iter()
        .map(|(iv, n)| (IvSet::one(iv), c.ifaces.class_of(&n)))
        .collect();
    let router = host.roles.router;
    let route = |s: State, out: &mut Vec<(State, Dest)>| {
        let mut parts = Vec::new();
        match &s.xf[DST] {
            Some(ov) => match local.relation(ov) {
                Some(true) => return out.push((s, Dest::Input)),
                _ => parts.push(s),
            },
            None => {
                let (mut yes, mut no) = (Vec::new(), Vec::new());
                split_dim(s.cube.clone(), DST, &local, &mut yes, &mut no);
                for c in yes {
                    let mut x = s.clone();
                    x.cube = c;
                    out.push((x, Dest::Input));
                }
                for c in no {
                    let mut x = s.clone();
                    x.cube = c;
                    parts.push(x);
                }
            }
        }
        if !router {
            return;
        }
        for s in parts {
            let mut rest = vec![s];
            for (set, oif) in &routes {
                let mut next = Vec::new();
                for s in rest {
                    match &s.xf[DST] {
                        Some(ov) => {
                            if set.relation(ov) == Some(true) {
                                out.push((s, Dest::Forward(*oif)));
                            } else {
                                next.push(s);
                            }
                        }
                        None => {
                            let (mut yes, mut no) = (Vec::new(), Vec::new());
                            split_dim(s.cube.clone(), DST, set, &mut yes, &mut no);
                            for c in yes {
                                let mut x = s.clone();
                                x.cube = c;
                                out.push((x, Dest::Forward(*oif)));
                            }
                            for c in no {
                                let mut x = s.clone();
                                x.cube = c;
                                next.push(x);
                            }
                        }
                    }
                }
                rest = next;
            }
        }
    };
    let start = vec![start_state(Cube::full(false, iif, c.ifaces.class_of("")))];
    let (inp, fwd) = run(c, &hc.info, start, &route);
    let (need_in, need_fwd, need_helper) = needed(plan, h, c);
    let all_dst = local.clone();
    let helper = helper_view(
        hr,
        c,
        inp.iter().chain(&fwd),
        &need_helper,
        "IPv4",
        iif,
        c.ifaces.all(),
        None,
    );
    let mut views = vec![report(
        hr,
        c,
        inp,
        &need_in,
        "IPv4",
        "input",
        None,
        iif,
        c.ifaces.all(),
        Some(&all_dst),
    )];
    if router {
        views.push(report(
            hr, c, fwd, &need_fwd, "IPv4", "forward", None, iif, iif, None,
        ));
    }
    views.extend(helper);
    if hr.has_family(true) {
        let need6 = |c: &Compiled, input: bool| needed6(plan, h, c, input);
        views.extend(analyze_family(
            hr,
            true,
            "over IPv6, what IPv6 itself needs (RFC 4890's ICMPv6, the DHCPv6 client), management and Amanda's IPv6 openings count as needed; the topology's IPv6 addresses are not used",
            Some(&need6),
        ));
    }
    views
}

/// What a topology host must accept over IPv6 as new connections (`input`)
/// or forward: the same things `policy::Ipv6Policy` opens — what IPv6 itself
/// needs, management from the IPv6 prefixes `[management] from` names (also
/// forwarded by routers), and Amanda's flows where the build speaks IPv6.
fn needed6(plan: &Plan, h: HostId, c: &Compiled, input: bool) -> Vec<Cube> {
    use crate::policy::{dhcpv6_client_dst, DHCPV6_CLIENT_PORT, ICMPV6_ACCEPTED};
    let net6 = |n: ipnet::Ipv6Net| Iv::new(u128::from(n.network()), u128::from(n.broadcast()));
    let any = || Cube::full(true, c.ifaces.all(), c.ifaces.all());
    let mut out = Vec::new();
    let v6 = plan.policies.iter().find(|p| p.host == h).map(|p| &p.v6);
    let place = if input { Place::Input } else { Place::Forward };
    for r in v6
        .into_iter()
        .flat_map(|v| &v.rules)
        .filter(|r| r.place == place)
    {
        for &src in &r.srcs {
            for dport in &r.dports {
                let mut cube = any();
                cube.set(SRC, Iv::point(u128::from(src)));
                if let Some(dst) = r.dst {
                    cube.set(DST, Iv::point(u128::from(dst)));
                }
                cube.set(PROTO, Iv::point(if r.proto == Proto::Tcp { 6 } else { 17 }));
                if let Some(sp) = r.sport {
                    cube.set(SPORT, Iv::new(sp.lo as u128, sp.hi as u128));
                }
                cube.set(DPORT, Iv::new(dport.lo as u128, dport.hi as u128));
                if let Some(i) = &r.in_iface {
                    cube.ifs[IIF] = c.ifaces.class_of(i);
                }
                if let Some(o) = &r.out_iface {
                    cube.ifs[OIF] = c.ifaces.class_of(o);
                }
                out.push(cube);
            }
        }
    }
    // Management: accepted on every host, forwarded by routers.
    for m in v6
        .into_iter()
        .filter(|v| input || v.router)
        .flat_map(|v| &v.management)
    {
        let mut cube = any();
        if let Some(src) = m.src {
            cube.set(SRC, net6(src));
        }
        cube.set(PROTO, Iv::point(if m.proto == Proto::Tcp { 6 } else { 17 }));
        cube.set(DPORT, Iv::point(m.port as u128));
        out.push(cube);
    }
    if !input {
        return out;
    }
    for &t in ICMPV6_ACCEPTED {
        let mut cube = any();
        cube.set(PROTO, Iv::point(58));
        let t = (t as u128) << 8;
        cube.set(DPORT, Iv::new(t, t | 0xff));
        out.push(cube);
    }
    let mut dhcp = any();
    dhcp.set(DST, net6(dhcpv6_client_dst()));
    dhcp.set(PROTO, Iv::point(17));
    dhcp.set(DPORT, Iv::point(DHCPV6_CLIENT_PORT as u128));
    out.push(dhcp);
    out
}

/// A ruleset without a topology: per family present, what reaches the host
/// (every destination taken as its own) and what it forwards.
pub fn analyze_lone(hr: &HostRules) -> Vec<OpenView> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        if hr.has_family(v6) {
            out.extend(analyze_family(hr, v6, "", None));
        }
    }
    out
}

/// What a view counts as needed, from the view's compiled ruleset.
type NeedFn<'a> = dyn Fn(&Compiled, bool) -> Vec<Cube> + Sync + 'a;

/// `need`: what the input view counts as needed (a topology host's IPv6);
/// without it, everything accepted is reported.
fn analyze_family(hr: &HostRules, v6: bool, why: &str, need: Option<&NeedFn<'_>>) -> Vec<OpenView> {
    let family = if v6 { "IPv6" } else { "IPv4" };
    let sets = SetDb {
        ipsets: hr.ipsets.as_ref(),
    };
    // One view: its report, and (input view) the helper-assignment view.
    let one = |guess: LocalGuess, view: &'static str| {
        let mut helpers = Vec::new();
        let info = HostInfo {
            guess,
            ..HostInfo::default()
        };
        let c = compile(&hr.ruleset, &sets, &info, v6);
        let ext = c.ifaces.external();
        let input_view = guess == LocalGuess::Input;
        let route = |s: State, out: &mut Vec<(State, Dest)>| {
            // Without a topology: in the input view every destination is the
            // host's own unless NAT moved it; in the forward view none is.
            let moved = s.ct.nat_bits[0];
            if input_view && !moved {
                out.push((s, Dest::Input));
            } else if !input_view && !moved || input_view && moved {
                out.push((s, Dest::Forward(ext)));
            }
        };
        let start = vec![start_state(Cube::full(v6, ext, c.ifaces.class_of("")))];
        let (inp, fwd) = run(&c, &info, start, &route);
        let mut assumption = String::from(if input_view {
            "no topology: every destination address is taken as this host's own"
        } else {
            "no topology: if this host forwards, to any destination on any interface"
        });
        if !why.is_empty() {
            // A topology host: the assumption is about addresses, not a lack
            // of topology.
            let rest = assumption.trim_start_matches("no topology: ");
            assumption = format!("{why}; {rest}");
        }
        if input_view {
            let all = inp.iter().chain(&fwd);
            helpers.extend(helper_view(hr, &c, all, &[], family, ext, ext, None));
        }
        let acc = if input_view {
            let mut v = inp;
            // Port forwards found in the input view are forwarded packets.
            v.extend(fwd);
            v
        } else {
            fwd
        };
        let needed = need.map_or_else(Vec::new, |f| f(&c, input_view));
        let r = report(
            hr,
            &c,
            acc,
            &needed,
            family,
            view,
            Some(assumption),
            ext,
            ext,
            None,
        );
        (r, helpers)
    };
    // The two views share nothing: at once (`super::both`).
    let ((input, mut helpers), (forward, _)) = super::both(
        || one(LocalGuess::Input, "input"),
        || one(LocalGuess::Forward, "forward"),
    );
    let mut out = vec![input, forward];
    out.append(&mut helpers);
    out
}
