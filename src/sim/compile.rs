//! The IR made ready for evaluation: chains in one arena with jump targets
//! resolved, each rule's matches turned into atoms over the cube dimensions
//! (negations pushed inward, sets resolved to interval sets), and per hook the
//! base chains in the order the kernel calls them.
//!
//! Compiling depends on what is known about the host: its addresses (for
//! `addrtype LOCAL`, MASQUERADE and REDIRECT) and the interface names that
//! get their own class. A compiled ruleset is for one address family.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::netfilter::ipset::IpSets;
use crate::netfilter::*;
use crate::ports::Proto;

use super::space::*;

/// Three-valued truth: a match amwall cannot decide is `Unknown`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Tri {
    False,
    True,
    Unknown,
}

impl Tri {
    pub fn from(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }
    pub fn and(self, o: Tri) -> Tri {
        match (self, o) {
            (Tri::False, _) | (_, Tri::False) => Tri::False,
            (Tri::True, Tri::True) => Tri::True,
            _ => Tri::Unknown,
        }
    }
    pub fn negate(self) -> Tri {
        match self {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            Tri::Unknown => Tri::Unknown,
        }
    }
}

/// Protocols with ports (tcp, udp, dccp, sctp, udplite): a port match implies one of them.
pub const PORT_PROTOS: [u8; 5] = [6, 17, 33, 132, 136];

pub fn has_ports(proto: u8) -> bool {
    PORT_PROTOS.contains(&proto)
}

pub fn is_icmp(proto: u8) -> bool {
    proto == 1 || proto == 58
}

/// What the evaluation knows about the host the ruleset runs on.
#[derive(Clone, Debug, Default)]
pub struct HostInfo {
    /// Its own addresses; `None` when unknown (a ruleset without a topology).
    pub local: Option<Vec<IpAddr>>,
    /// Directed broadcast addresses of its networks.
    pub broadcast: Vec<IpAddr>,
    /// Interface → primary address, for MASQUERADE and REDIRECT.
    pub iface_addr: Vec<(String, IpAddr)>,
    /// Interface names that must have a class of their own (the host's, the packet's).
    pub ifaces: Vec<String>,
    /// Without `local`: which side of the packet is this host (explain's route,
    /// the analysis' view). `addrtype LOCAL` on the other side is unknown.
    pub guess: LocalGuess,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LocalGuess {
    /// Nothing known: `addrtype LOCAL` is unknown everywhere.
    #[default]
    None,
    /// The destination is this host (input), the source is not.
    Input,
    /// Neither side is this host (forward).
    Forward,
    /// The source is this host (output).
    Output,
}

/// One interface class: the names that no rule can tell apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfClass {
    /// No interface (`""`: the input interface of a locally generated packet).
    None,
    Exact(String),
    /// Names starting with this prefix that are not listed otherwise.
    Prefix(String),
    /// Names no rule mentions.
    Other,
}

/// The interface classes of one compiled ruleset (at most 128).
#[derive(Clone, Debug)]
pub struct Ifaces {
    pub classes: Vec<IfClass>,
    /// Names that did not fit in 128 classes: matches on them are unknown.
    pub overflow: Vec<String>,
}

impl Ifaces {
    fn build(patterns: &[String], extra: &[String]) -> Ifaces {
        let mut exact: Vec<String> = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        for p in patterns.iter().chain(extra) {
            match p.strip_suffix('+') {
                Some(pre) if !pre.is_empty() => prefixes.push(pre.to_string()),
                Some(_) => {}
                None if !p.is_empty() => exact.push(p.clone()),
                None => {}
            }
        }
        // Extra names (host, packet) first so they always get a class.
        let mut seen = std::collections::HashSet::new();
        let mut order: Vec<String> = Vec::new();
        for n in extra.iter().chain(exact.iter()) {
            if !n.is_empty() && !n.ends_with('+') && seen.insert(n.clone()) {
                order.push(n.clone());
            }
        }
        if !seen.contains("lo") {
            order.insert(0, "lo".into());
        }
        prefixes.sort();
        prefixes.dedup();
        let mut classes = vec![IfClass::None];
        let mut overflow = Vec::new();
        let room = 128 - 2 - prefixes.len().min(60);
        for n in order {
            if classes.len() <= room {
                classes.push(IfClass::Exact(n));
            } else {
                overflow.push(n);
            }
        }
        for p in prefixes.into_iter().take(60) {
            classes.push(IfClass::Prefix(p));
        }
        classes.push(IfClass::Other);
        Ifaces { classes, overflow }
    }

    pub fn all(&self) -> u128 {
        if self.classes.len() == 128 {
            u128::MAX
        } else {
            (1u128 << self.classes.len()) - 1
        }
    }

    /// The class of a concrete name ("" = no interface).
    pub fn class_of(&self, name: &str) -> u128 {
        if name.is_empty() {
            return 1;
        }
        let mut best: Option<(usize, usize)> = None;
        for (i, c) in self.classes.iter().enumerate() {
            match c {
                IfClass::Exact(n) if n == name => return 1 << i,
                IfClass::Prefix(p)
                    if name.starts_with(p.as_str()) && best.map_or(true, |(_, l)| p.len() > l) =>
                {
                    best = Some((i, p.len()));
                }
                _ => {}
            }
        }
        match best {
            Some((i, _)) => 1 << i,
            None => 1 << (self.classes.len() - 1),
        }
    }

    /// Classes a pattern (`eth0`, `eth+`) matches; `None` if it names an
    /// interface that did not get a class (then the match is unknown).
    pub fn matching(&self, pat: &str) -> Option<u128> {
        if self.overflow.iter().any(|o| o == pat) {
            return None;
        }
        let mut m = 0u128;
        match pat.strip_suffix('+') {
            Some(pre) => {
                for (i, c) in self.classes.iter().enumerate() {
                    let hit = match c {
                        IfClass::None => pre.is_empty(),
                        IfClass::Exact(n) => n.starts_with(pre),
                        IfClass::Prefix(p) => p.starts_with(pre),
                        IfClass::Other => pre.is_empty(),
                    };
                    if hit {
                        m |= 1 << i;
                    }
                }
                if !pre.is_empty() && self.overflow.iter().any(|o| o.starts_with(pre)) {
                    return None;
                }
            }
            None => {
                for (i, c) in self.classes.iter().enumerate() {
                    if matches!(c, IfClass::Exact(n) if n == pat)
                        || (pat.is_empty() && *c == IfClass::None)
                    {
                        m |= 1 << i;
                    }
                }
            }
        }
        Some(m)
    }

    /// Every real interface except `lo` (where unsolicited packets arrive).
    pub fn external(&self) -> u128 {
        let lo = self.class_of("lo");
        self.all() & !1 & !lo
    }

    /// A readable description of a class set.
    pub fn describe(&self, mask: u128) -> String {
        let mut names = Vec::new();
        for (i, c) in self.classes.iter().enumerate() {
            if mask & (1 << i) != 0 {
                names.push(match c {
                    IfClass::None => "(none)".to_string(),
                    IfClass::Exact(n) => n.clone(),
                    IfClass::Prefix(p) => format!("{p}+ (other)"),
                    IfClass::Other => "any other".to_string(),
                });
            }
        }
        names.join(",")
    }
}

/// A condition that depends on the packet's state rather than its header box.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StAtom {
    CtState(Vec<CtState>),
    CtStatus(Vec<CtStatus>),
    CtDir(CtDirection),
    Mark {
        value: u32,
        mask: u32,
    },
    ConnMark {
        value: u32,
        mask: u32,
    },
    TcpFlags {
        mask: u8,
        set: u8,
    },
    Ttl(Cmp, u8),
    Length(u16, u16),
    /// `-m owner`: locally generated packets only.
    Owner,
    /// Never decidable here; the text says why.
    Unknown(String),
}

/// A conntrack tuple field compared with a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TupleAtom {
    pub tuple: CtTuple,
    /// `SRC`/`DST` for addresses, `SPORT`/`DPORT` for ports (of that tuple).
    pub port: bool,
    pub set: IvSet,
}

/// A match in negation normal form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Atom {
    Const(Tri),
    /// The header value (after NAT so far) is in the set.
    Dim {
        d: usize,
        set: IvSet,
    },
    If {
        k: usize,
        mask: u128,
    },
    St(StAtom, bool),
    /// Negation complements the set (a packet without conntrack entry makes
    /// the atom unknown either way).
    Tuple(TupleAtom),
    And(Vec<Atom>),
    Or(Vec<Atom>),
}

impl Atom {
    fn negate(self, ifs: u128, v6: bool) -> Atom {
        match self {
            Atom::Const(t) => Atom::Const(t.negate()),
            Atom::Dim { d, set } => Atom::Dim {
                d,
                set: set.complement(dim_max(d, v6)),
            },
            Atom::If { k, mask } => Atom::If {
                k,
                mask: !mask & ifs,
            },
            Atom::St(a, n) => Atom::St(a, !n),
            Atom::Tuple(mut a) => {
                let max = if a.port { 65535 } else { dim_max(SRC, v6) };
                a.set = a.set.complement(max);
                Atom::Tuple(a)
            }
            Atom::And(v) => Atom::Or(v.into_iter().map(|a| a.negate(ifs, v6)).collect()),
            Atom::Or(v) => Atom::And(v.into_iter().map(|a| a.negate(ifs, v6)).collect()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatTo {
    pub addrs: Option<Iv>,
    pub ports: Option<Iv>,
    pub random: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CAction {
    Accept,
    Drop,
    Reject,
    Return,
    Jump(usize),
    Goto(usize),
    Continue,
    Log,
    Mark {
        value: u32,
        mask: u32,
    },
    ConnMark(ConnMarkOp),
    Dnat(NatTo),
    Snat(NatTo),
    /// Source = the out interface's address.
    Masquerade(NatTo),
    /// Destination = the in interface's address (127.0.0.1 in output).
    Redirect(NatTo),
    /// Map a prefix 1:1 (destination in prerouting/output, source otherwise).
    Netmap {
        net: Iv,
        bits: u32,
    },
    Notrack,
    /// The kernel helper's name (`amanda`) and, for an nft object, its protocol.
    Helper {
        helper: String,
        proto: Option<u8>,
        nft: bool,
    },
    Unknown(String),
}

impl CAction {
    /// Whether the action can change the packet's fate or state (an unknown
    /// match in front of it forks the evaluation).
    pub fn matters(&self) -> bool {
        !matches!(self, CAction::Continue | CAction::Log)
    }
}

#[derive(Clone, Debug)]
pub struct CRule {
    /// The top-level conjunction.
    pub atoms: Vec<Atom>,
    pub action: CAction,
    pub effects: Vec<CAction>,
    pub line: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct CChain {
    /// Index into the ruleset's tables.
    pub table: usize,
    /// Index in its table's `chains`.
    pub pos: usize,
    pub name: String,
    pub base: Option<BaseChain>,
    pub rules: Vec<CRule>,
    /// Its runs of rules no packet meets twice, by position.
    pub runs: Vec<super::index::Run>,
}

/// What runs at one position of a hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    Chain(usize),
    /// Connection tracking looks the packet up (priority -200).
    Conntrack,
    /// The NAT core: nat chains in priority order until one sets up a
    /// mapping; `dst` at prerouting/output, source at input/postrouting.
    Nat {
        dst: bool,
        chains: Vec<usize>,
    },
}

pub const HOOKS: [Hook; 5] = [
    Hook::Prerouting,
    Hook::Input,
    Hook::Forward,
    Hook::Output,
    Hook::Postrouting,
];

pub fn hook_index(h: Hook) -> Option<usize> {
    HOOKS.iter().position(|x| *x == h)
}

/// One ruleset compiled for one family and host.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub v6: bool,
    pub chains: Vec<CChain>,
    pub slots: [Vec<Slot>; 5],
    pub ifaces: Ifaces,
    /// Tables whose chains are not simulated (bridge, arp, netdev, ingress
    /// hooks), as notes.
    pub skipped: Vec<String>,
    /// Table families and names, by table index.
    pub tables: Vec<(Family, String)>,
}

impl Compiled {
    pub fn chain_label(&self, id: usize) -> String {
        let c = &self.chains[id];
        let (fam, t) = &self.tables[c.table];
        format!("{} {} {}", fam.name(), t, c.name)
    }
}

/// Sets a rule may name: the table's own (nft), then `ipset save` members.
pub struct SetDb<'a> {
    pub ipsets: Option<&'a IpSets>,
}

struct Cx<'a> {
    v6: bool,
    ifaces: &'a Ifaces,
    table: &'a Table,
    sets: &'a SetDb<'a>,
    host: &'a HostInfo,
    /// The rule has an explicit protocol match (so port matches need not imply one).
    has_proto: bool,
}

fn ip_value(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// A single address as an interval value, if it is of the family.
pub fn addr_value(a: IpAddr, v6: bool) -> Option<u128> {
    (a.is_ipv6() == v6).then(|| ip_value(a))
}

fn port_set(v: &[crate::ports::PortRange]) -> IvSet {
    IvSet::from_ivs(
        v.iter()
            .map(|r| Iv::new(r.lo as u128, r.hi as u128))
            .collect(),
    )
}

fn dim(d: usize, set: IvSet) -> Atom {
    Atom::Dim { d, set }
}

fn unknown(why: impl Into<String>) -> Atom {
    Atom::St(StAtom::Unknown(why.into()), false)
}

/// Address types of the family's space.
fn addr_type_set(t: AddrType, cx: &Cx, dir: Dir) -> Option<IvSet> {
    let v6 = cx.v6;
    let max = dim_max(SRC, v6);
    let multicast = if v6 {
        IvSet::one(Iv::new(0xff << 120, u128::MAX))
    } else {
        IvSet::one(Iv::new(0xe000_0000, 0xefff_ffff))
    };
    let broadcast = if v6 {
        IvSet::empty()
    } else {
        let mut v = vec![Iv::point(0xffff_ffff), Iv::new(0, 0x00ff_ffff)];
        for b in &cx.host.broadcast {
            if let Some(x) = addr_value(*b, false) {
                v.push(Iv::point(x));
            }
        }
        IvSet::from_ivs(v)
    };
    let special = multicast.union(&broadcast);
    let local: Option<IvSet> = match &cx.host.local {
        Some(addrs) => {
            let mut v: Vec<Iv> = addrs
                .iter()
                .filter_map(|a| addr_value(*a, v6))
                .map(Iv::point)
                .collect();
            if v6 {
                v.push(Iv::point(1));
            } else {
                v.push(Iv::new(0x7f00_0000, 0x7fff_ffff));
            }
            Some(IvSet::from_ivs(v))
        }
        None => match (cx.host.guess, dir) {
            (LocalGuess::Input, Dir::Dst) | (LocalGuess::Output, Dir::Src) => {
                Some(special.complement(max))
            }
            (LocalGuess::Input, Dir::Src)
            | (LocalGuess::Output, Dir::Dst)
            | (LocalGuess::Forward, _) => Some(IvSet::empty()),
            (LocalGuess::None, _) => None,
        },
    };
    Some(match t {
        AddrType::Multicast => multicast,
        AddrType::Broadcast => broadcast,
        AddrType::Local => local?,
        AddrType::Unicast => special.union(&local?).complement(max),
        // Route types amwall does not model (blackhole, unreachable, ...):
        // assumed absent from the host's routing table.
        _ => IvSet::empty(),
    })
}

// Long: one arm per Match variant, exhaustive so a new match cannot be silently ignored by
// the simulator
fn compile_match(m: &Match, cx: &Cx) -> Atom {
    let v6 = cx.v6;
    match m {
        Match::Not(inner) => compile_match(inner, cx).negate(cx.ifaces.all(), v6),
        Match::InIface(p) | Match::OutIface(p) => {
            let k = if matches!(m, Match::InIface(_)) {
                IIF
            } else {
                OIF
            };
            match cx.ifaces.matching(p) {
                Some(mask) => Atom::If { k, mask },
                None => unknown(format!("interface {p}: too many interface names")),
            }
        }
        Match::Src(a) | Match::Dst(a) => {
            let d = if matches!(m, Match::Src(_)) { SRC } else { DST };
            addr_atom(a, d, cx)
        }
        Match::Proto(p) => dim(
            PROTO,
            IvSet::one(Iv::point(match p {
                Proto::Tcp => 6,
                Proto::Udp => 17,
            })),
        ),
        Match::ProtoNum(n) => dim(PROTO, IvSet::one(Iv::point(*n as u128))),
        Match::SPort(v) | Match::DPort(v) => {
            let d = if matches!(m, Match::SPort(_)) {
                SPORT
            } else {
                DPORT
            };
            let a = dim(d, port_set(v));
            if cx.has_proto {
                a
            } else {
                Atom::And(vec![port_proto(), a])
            }
        }
        Match::Port(v) => {
            let s = port_set(v);
            let either = Atom::Or(vec![dim(SPORT, s.clone()), dim(DPORT, s)]);
            if cx.has_proto {
                either
            } else {
                Atom::And(vec![port_proto(), either])
            }
        }
        Match::CtState(v) => Atom::St(StAtom::CtState(v.clone()), false),
        Match::Fragment => Atom::Const(Tri::False),
        Match::TcpFlags { mask, set } => Atom::And(vec![
            dim(PROTO, IvSet::one(Iv::point(6))),
            Atom::St(
                StAtom::TcpFlags {
                    mask: *mask,
                    set: *set,
                },
                false,
            ),
        ]),
        Match::Icmp(t) | Match::Icmp6(t) => {
            let want6 = matches!(m, Match::Icmp6(_));
            let proto = if want6 { 58 } else { 1 };
            let tc = match (t.ty, t.code) {
                (None, _) => Iv::new(0, 0xffff),
                (Some(ty), None) => Iv::new((ty as u128) << 8, ((ty as u128) << 8) | 0xff),
                (Some(ty), Some(c)) => Iv::point(((ty as u128) << 8) | c as u128),
            };
            Atom::And(vec![
                dim(PROTO, IvSet::one(Iv::point(proto))),
                dim(DPORT, IvSet::one(tc)),
            ])
        }
        Match::CtProto(n) => dim(PROTO, IvSet::one(Iv::point(*n as u128))),
        Match::CtAddr(t, a) => match addr_set(a, cx) {
            Ok(set) => Atom::Tuple(TupleAtom {
                tuple: *t,
                port: false,
                set,
            }),
            Err(a) => a,
        },
        Match::CtPort(t, r) => Atom::Tuple(TupleAtom {
            tuple: *t,
            port: true,
            set: IvSet::one(Iv::new(r.lo as u128, r.hi as u128)),
        }),
        Match::CtStatus(v) => Atom::St(StAtom::CtStatus(v.clone()), false),
        Match::CtDirection(d) => Atom::St(StAtom::CtDir(*d), false),
        Match::Mark { value, mask } => Atom::St(
            StAtom::Mark {
                value: *value,
                mask: *mask,
            },
            false,
        ),
        Match::ConnMark { value, mask } => Atom::St(
            StAtom::ConnMark {
                value: *value,
                mask: *mask,
            },
            false,
        ),
        Match::AddrType { dir, types, .. } => {
            let d = if *dir == Dir::Src { SRC } else { DST };
            let mut acc = IvSet::empty();
            for t in types {
                match addr_type_set(*t, cx, *dir) {
                    Some(s) => acc = acc.union(&s),
                    None => {
                        return unknown(
                            "addrtype LOCAL: the host's addresses are unknown (give a topology)",
                        )
                    }
                }
            }
            dim(d, acc)
        }
        Match::IpSet { name, .. } => unknown(format!(
            "ipset {name} looked up with several dimensions: not simulated"
        )),
        Match::MacSrc(_) => unknown("source MAC address: not known to amwall"),
        Match::PktType(t) => {
            let mc = addr_type_set(AddrType::Multicast, cx, Dir::Dst).expect("static");
            let bc = addr_type_set(AddrType::Broadcast, cx, Dir::Dst).expect("static");
            dim(
                DST,
                match t {
                    PktType::Multicast => mc,
                    PktType::Broadcast => bc,
                    PktType::Unicast => mc.union(&bc).complement(dim_max(DST, v6)),
                },
            )
        }
        Match::Owner(_) => Atom::St(StAtom::Owner, false),
        Match::Ttl(c, v) => Atom::St(StAtom::Ttl(*c, *v), false),
        Match::Length(a, b) => Atom::St(StAtom::Length(*a, *b), false),
        Match::RpFilter(_) => unknown("rpfilter: depends on the routing table"),
        Match::Stateful { module, .. } => unknown(format!(
            "{module}: depends on state the kernel keeps (rates, recent lists)"
        )),
        Match::AnyOf(alts) => Atom::Or(
            alts.iter()
                .map(|conj| {
                    let sub = Cx {
                        has_proto: cx.has_proto || conj.iter().any(is_proto),
                        ..*cx
                    };
                    Atom::And(conj.iter().map(|m| compile_match(m, &sub)).collect())
                })
                .collect(),
        ),
        Match::IpVersion(v) => Atom::Const(Tri::from((*v == 6) == v6)),
        Match::Unknown { text } => unknown(format!("not understood: {text}")),
    }
}

fn port_proto() -> Atom {
    dim(
        PROTO,
        IvSet::from_ivs(PORT_PROTOS.iter().map(|&p| Iv::point(p as u128)).collect()),
    )
}

fn is_proto(m: &Match) -> bool {
    matches!(m, Match::Proto(_) | Match::ProtoNum(_))
}

/// An address (or set) as an interval set of the family; `Err` with the atom
/// to use instead (false for the other family, unknown for a missing set).
fn addr_set(a: &Addr, cx: &Cx) -> Result<IvSet, Atom> {
    let v6 = cx.v6;
    match a {
        Addr::Net(n) if !v6 => Ok(IvSet::one(Iv::new(
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128,
        ))),
        Addr::Net6(n) if v6 => Ok(IvSet::one(Iv::new(
            u128::from(n.network()),
            u128::from(n.broadcast()),
        ))),
        Addr::Range(x, y) if x.is_ipv6() == v6 => {
            let (x, y) = (ip_value(*x), ip_value(*y));
            Ok(if x <= y {
                IvSet::one(Iv::new(x, y))
            } else {
                IvSet::empty()
            })
        }
        Addr::Set(name) => {
            let elems = cx
                .table
                .sets
                .iter()
                .find(|s| &s.name == name)
                .or_else(|| cx.sets.ipsets.and_then(|i| i.set(name)));
            match elems {
                Some(s) if s.v6 != v6 => Err(Atom::Const(Tri::False)),
                Some(s) if v6 => Ok(IvSet::from_ivs(
                    s.elements6
                        .iter()
                        .map(|n| Iv::new(u128::from(n.network()), u128::from(n.broadcast())))
                        .collect(),
                )),
                Some(s) => Ok(IvSet::from_ivs(
                    s.elements
                        .iter()
                        .map(|n| {
                            Iv::new(
                                u32::from(n.network()) as u128,
                                u32::from(n.broadcast()) as u128,
                            )
                        })
                        .collect(),
                )),
                None => Err(unknown(format!(
                    "set {name}: members unknown (give them with --ipset FILE from `ipset save`)"
                ))),
            }
        }
        _ => Err(Atom::Const(Tri::False)),
    }
}

fn addr_atom(a: &Addr, d: usize, cx: &Cx) -> Atom {
    match addr_set(a, cx) {
        Ok(set) => dim(d, set),
        Err(atom) => atom,
    }
}

/// Flatten nested conjunctions into the rule's top level.
fn flatten(a: Atom, out: &mut Vec<Atom>) {
    match a {
        Atom::And(v) => v.into_iter().for_each(|x| flatten(x, out)),
        Atom::Const(Tri::True) => {}
        a => out.push(a),
    }
}

fn nat_to(spec: &NatSpec, v6: bool) -> NatTo {
    NatTo {
        addrs: spec
            .addrs
            .and_then(|(a, b)| Some(Iv::new(addr_value(a, v6)?, addr_value(b, v6)?))),
        ports: spec.ports.map(|p| Iv::new(p.lo as u128, p.hi as u128)),
        random: spec
            .flags
            .iter()
            .any(|f| matches!(f, NatFlag::Random | NatFlag::RandomFully)),
    }
}

fn compile_action(a: &Action, table: &Table, index: &HashMap<&str, usize>, v6: bool) -> CAction {
    let plain = NatTo {
        addrs: None,
        ports: None,
        random: false,
    };
    match a {
        Action::Accept => CAction::Accept,
        Action::Drop => CAction::Drop,
        Action::Reject(_) => CAction::Reject,
        Action::Return => CAction::Return,
        Action::Jump(c) | Action::Goto(c) => match index.get(c.as_str()) {
            Some(&id) if matches!(a, Action::Jump(_)) => CAction::Jump(id),
            Some(&id) => CAction::Goto(id),
            None => CAction::Unknown(format!("jump to missing chain {c}")),
        },
        Action::Continue => CAction::Continue,
        Action::Log { .. } => CAction::Log,
        Action::Mark { value, mask } => CAction::Mark {
            value: *value,
            mask: *mask,
        },
        Action::ConnMark(op) => CAction::ConnMark(*op),
        Action::Dnat(addr) => match addr_value(IpAddr::V4(*addr), v6) {
            Some(x) => CAction::Dnat(NatTo {
                addrs: Some(Iv::point(x)),
                ..plain
            }),
            None => CAction::Unknown("IPv4 DNAT in an IPv6 evaluation".into()),
        },
        Action::DnatTo(s) => CAction::Dnat(nat_to(s, v6)),
        Action::Snat(s) => CAction::Snat(nat_to(s, v6)),
        Action::Masquerade => CAction::Masquerade(plain),
        Action::MasqueradeTo(s) => CAction::Masquerade(nat_to(s, v6)),
        Action::Redirect(s) => CAction::Redirect(nat_to(s, v6)),
        Action::Netmap(addr) => match addr {
            Addr::Net(n) if !v6 => CAction::Netmap {
                net: Iv::new(
                    u32::from(n.network()) as u128,
                    u32::from(n.broadcast()) as u128,
                ),
                bits: 32 - n.prefix_len() as u32,
            },
            Addr::Net6(n) if v6 => CAction::Netmap {
                net: Iv::new(u128::from(n.network()), u128::from(n.broadcast())),
                bits: 128 - n.prefix_len() as u32,
            },
            _ => CAction::Unknown(format!("NETMAP to {addr}")),
        },
        Action::Notrack => CAction::Notrack,
        Action::CtHelper(name) => match table.ct_helpers.iter().find(|h| &h.name == name) {
            Some(h) => CAction::Helper {
                helper: h.helper.clone(),
                proto: Some(match h.proto {
                    Proto::Tcp => 6,
                    Proto::Udp => 17,
                }),
                nft: true,
            },
            None => CAction::Helper {
                helper: name.clone(),
                proto: None,
                nft: table.family != Family::Ip && table.family != Family::Ip6
                    || !IPTABLES_TABLES.contains(&table.name.as_str()),
            },
        },
        Action::Passthrough { .. } => CAction::Continue,
        Action::Unknown { text } => CAction::Unknown(text.clone()),
    }
}

/// Every interface pattern the ruleset names.
fn iface_patterns(rs: &Ruleset) -> Vec<String> {
    fn walk(m: &Match, out: &mut Vec<String>) {
        match m {
            Match::InIface(p) | Match::OutIface(p) => out.push(p.clone()),
            Match::Not(x) => walk(x, out),
            Match::AnyOf(alts) => alts.iter().flatten().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for r in rs.rules() {
        for m in &r.matches {
            walk(m, &mut out);
        }
    }
    out
}

/// The NAT core's priorities (nf_nat_ipv4_ops): destination NAT before
/// filtering on the way in and out, source NAT after.
fn nat_priority(h: Hook) -> i32 {
    match h {
        Hook::Prerouting | Hook::Output => priority::DSTNAT,
        _ => priority::SRCNAT,
    }
}

/// nf_conntrack registers at -200 (NF_IP_PRI_CONNTRACK) on prerouting and output.
pub const CONNTRACK_PRIORITY: i32 = -200;

/// Compile `rs` for one family (`v6`) on a host.
pub fn compile(rs: &Ruleset, sets: &SetDb, host: &HostInfo, v6: bool) -> Compiled {
    let ifaces = Ifaces::build(&iface_patterns(rs), &host.ifaces);
    let mut chains: Vec<CChain> = Vec::new();
    let mut skipped = Vec::new();
    let mut tables = Vec::new();
    // First pass: ids for every chain of every simulated table.
    let mut ids: Vec<HashMap<&str, usize>> = Vec::new();
    let mut next = 0usize;
    for t in &rs.tables {
        let mut m = HashMap::new();
        let included = match t.family {
            Family::Ip => !v6,
            Family::Ip6 => v6,
            Family::Inet => true,
            _ => false,
        };
        if included {
            for c in &t.chains {
                m.insert(c.name.as_str(), next);
                next += 1;
            }
        } else if (t.family == Family::Ip6) != v6 && matches!(t.family, Family::Ip | Family::Ip6) {
            // The other IP family: simply not this evaluation.
        } else if !matches!(t.family, Family::Ip | Family::Ip6 | Family::Inet) {
            skipped.push(format!(
                "table {} {}: {} tables are not simulated (layer 2 / device hooks)",
                t.family.name(),
                t.name,
                t.family.name()
            ));
        }
        ids.push(m);
        tables.push((t.family, t.name.clone()));
    }
    for (ti, t) in rs.tables.iter().enumerate() {
        if ids[ti].is_empty() {
            continue;
        }
        for (pos, c) in t.chains.iter().enumerate() {
            let mut rules = Vec::with_capacity(c.rules.len());
            for r in &c.rules {
                let cx = Cx {
                    v6,
                    ifaces: &ifaces,
                    table: t,
                    sets,
                    host,
                    has_proto: r.matches.iter().any(is_proto),
                };
                let mut atoms = Vec::with_capacity(r.matches.len());
                for m in &r.matches {
                    flatten(compile_match(m, &cx), &mut atoms);
                }
                rules.push(CRule {
                    atoms,
                    action: compile_action(&r.action, t, &ids[ti], v6),
                    effects: r
                        .effects
                        .iter()
                        .map(|e| compile_action(e, t, &ids[ti], v6))
                        .collect(),
                    line: r.origin.map(|o| o.line),
                });
            }
            chains.push(CChain {
                table: ti,
                pos,
                name: c.name.clone(),
                base: c.base.clone(),
                runs: super::index::runs(&rules),
                rules,
            });
        }
    }
    // Slots per hook, in kernel order. The first nat chain of a family makes
    // the NAT core register on all four hooks (nf_nat_register_fn), so
    // replies and later packets are rewritten even where no nat chain is.
    let any_nat = chains
        .iter()
        .any(|c| c.base.as_ref().is_some_and(|b| b.kind == ChainType::Nat));
    let mut slots: [Vec<Slot>; 5] = Default::default();
    for (hi, hook) in HOOKS.iter().enumerate() {
        // (priority, tie-break, slot)
        let mut items: Vec<(i32, usize, Slot)> = Vec::new();
        let mut nat: Vec<(i32, usize)> = Vec::new();
        for (id, c) in chains.iter().enumerate() {
            let Some(b) = &c.base else { continue };
            if b.hook != *hook {
                continue;
            }
            if b.kind == ChainType::Nat {
                nat.push((b.priority, id));
            } else {
                items.push((b.priority, 2 + id, Slot::Chain(id)));
            }
        }
        if !nat.is_empty() || any_nat && *hook != Hook::Forward {
            nat.sort();
            items.push((
                nat_priority(*hook),
                1,
                Slot::Nat {
                    dst: matches!(hook, Hook::Prerouting | Hook::Output),
                    chains: nat.into_iter().map(|(_, id)| id).collect(),
                },
            ));
        }
        if matches!(hook, Hook::Prerouting | Hook::Output) {
            items.push((CONNTRACK_PRIORITY, 0, Slot::Conntrack));
        }
        items.sort_by_key(|(p, t, _)| (*p, *t));
        slots[hi] = items.into_iter().map(|(_, _, s)| s).collect();
    }
    for (ti, t) in rs.tables.iter().enumerate() {
        if ids[ti].is_empty() {
            continue;
        }
        for c in &t.chains {
            if let Some(b) = &c.base {
                if matches!(b.hook, Hook::Ingress | Hook::Egress) {
                    skipped.push(format!(
                        "{} {} {}: {} hook is bound to a device and not simulated",
                        t.family.name(),
                        t.name,
                        c.name,
                        b.hook.name()
                    ));
                }
            }
        }
    }
    Compiled {
        v6,
        chains,
        slots,
        ifaces,
        skipped,
        tables,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_classes_separate_what_rules_separate() {
        let ifs = Ifaces::build(
            &["eth0".into(), "eth+".into(), "eth1+".into(), "ppp0".into()],
            &["wlan0".into()],
        );
        let c = |n: &str| ifs.class_of(n);
        assert_ne!(c("eth0"), c("eth2"));
        assert_ne!(c("eth2"), c("eth1.5"));
        assert_eq!(c("eth3"), c("eth9"));
        assert_eq!(c("xyz"), c("abc"));
        let eth = ifs.matching("eth+").unwrap();
        assert!(eth & c("eth0") != 0 && eth & c("eth1.5") != 0 && eth & c("eth7") != 0);
        assert_eq!(eth & c("ppp0"), 0);
        assert_eq!(eth & c("abc"), 0);
        let eth1 = ifs.matching("eth1+").unwrap();
        assert_eq!(eth1 & c("eth7"), 0);
        assert_eq!(
            ifs.matching("+").unwrap() & 1,
            1,
            "`-i +` matches no interface too"
        );
        assert_eq!(ifs.matching("eth0").unwrap(), c("eth0"));
        assert_eq!(ifs.matching("nothere").unwrap(), 0);
    }

    #[test]
    fn tri_logic() {
        assert_eq!(Tri::True.and(Tri::Unknown), Tri::Unknown);
        assert_eq!(Tri::False.and(Tri::Unknown), Tri::False);
        assert_eq!(Tri::Unknown.negate(), Tri::Unknown);
    }
}
