//! Evaluation of packet states through compiled hooks and chains.
//!
//! A [`State`] is a cube of packets that share everything else: NAT so far,
//! marks, conntrack state, helper, TCP flags. Chains are evaluated on a batch
//! of states rule by rule; a rule cuts each state into the part it matches,
//! the part it may match (an undecidable atom) and the rest. A part that may
//! match forks: one copy takes the rule's action, one goes on, both
//! "tainted" with the rule, so the result says "unknown" instead of guessing.
//!
//! Kernel facts this follows (net/netfilter, nf_nat_core.c, nf_conntrack_core.c):
//! - every base chain on a hook must accept; a drop anywhere is final;
//! - conntrack looks packets up at priority -200 on prerouting and output, so
//!   earlier chains (raw) see no conntrack entry: `ct state` is INVALID there
//!   (UNTRACKED after NOTRACK);
//! - the NAT core runs at -100 (prerouting, output) and +100 (input,
//!   postrouting); it calls the nat chains by priority only for the first
//!   packet of a connection until one sets up a mapping, and rewrites every
//!   later packet and every reply with the same mapping.

use std::collections::BTreeMap;

use super::compile::*;
use super::index::Run;
use super::space::*;
use crate::netfilter::{ConnMarkOp, CtDirection, CtState, CtStatus, CtTuple, Hook};

/// What conntrack says about the packet once it has looked it up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtBase {
    New,
    Established,
    Related,
    Invalid,
}

/// A connection's tuples (original src, dst, sport, dport; reply src, dst,
/// sport, dport), when known from an earlier packet.
pub type Tuples = Box<[IvSet; 8]>;

static NO_SET: Option<IvSet> = None;
static NO_PENDING: Option<Rewrite> = None;

/// Header values rewritten by NAT so far, per dimension; boxed because most
/// states have none (a state is copied at every cut).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Xf(Option<Box<[Option<IvSet>; DIMS]>>);

impl std::ops::Index<usize> for Xf {
    type Output = Option<IvSet>;
    fn index(&self, d: usize) -> &Option<IvSet> {
        match &self.0 {
            Some(b) => &b[d],
            None => &NO_SET,
        }
    }
}

impl std::ops::IndexMut<usize> for Xf {
    fn index_mut(&mut self, d: usize) -> &mut Option<IvSet> {
        &mut self.0.get_or_insert_with(Default::default)[d]
    }
}

/// NAT the connection applies to later packets at the destination and the
/// source slot: (address, port).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Pending(Option<Box<[Option<Rewrite>; 2]>>);

/// A rewrite of (address, port); `None` keeps that part.
pub type Rewrite = (Option<IvSet>, Option<IvSet>);

impl std::ops::Index<usize> for Pending {
    type Output = Option<Rewrite>;
    fn index(&self, m: usize) -> &Self::Output {
        match &self.0 {
            Some(b) => &b[m],
            None => &NO_PENDING,
        }
    }
}

impl From<[Option<Rewrite>; 2]> for Pending {
    fn from(v: [Option<Rewrite>; 2]) -> Pending {
        if v.iter().all(Option::is_none) {
            Pending(None)
        } else {
            Pending(Some(Box::new(v)))
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ct {
    /// Conntrack has looked the packet up (after priority -200).
    pub seen: bool,
    /// NOTRACK ran before the lookup.
    pub untracked: bool,
    /// The state conntrack gives the packet.
    pub base: CtBase,
    pub dir: CtDirection,
    /// First packet of the connection on this host (unconfirmed).
    pub first: bool,
    pub helper: Option<String>,
    /// The rule that assigned `helper`: check names it when an expected
    /// connection passes as RELATED because of it.
    pub helper_by: Option<RuleRef>,
    /// Destination / source mapping set up for this connection on this host.
    pub nat_done: [bool; 2],
    /// Whether a mapping changed the destination / source (ct state DNAT/SNAT).
    pub nat_bits: [bool; 2],
    /// For packets after the first: what the NAT core rewrites at the
    /// destination slot and the source slot (address, port).
    pub pending: Pending,
    pub tuples: Option<Tuples>,
    /// Status bits known set (EXPECTED 1, SEEN_REPLY 2, ASSURED 4, CONFIRMED 8)
    /// and bits whose value is unknown.
    pub status: (u8, u8),
}

pub const ST_EXPECTED: u8 = 1;
pub const ST_SEEN_REPLY: u8 = 2;
pub const ST_ASSURED: u8 = 4;
pub const ST_CONFIRMED: u8 = 8;

impl Ct {
    pub fn new_conn(base: CtBase, dir: CtDirection) -> Ct {
        let first = matches!(base, CtBase::New | CtBase::Related) && dir == CtDirection::Original;
        let status = match (base, dir) {
            (CtBase::New, _) => (0, 0),
            (CtBase::Related, _) if first => (ST_EXPECTED, 0),
            (_, CtDirection::Reply) => (ST_SEEN_REPLY | ST_CONFIRMED, ST_ASSURED | ST_EXPECTED),
            _ => (ST_CONFIRMED, ST_SEEN_REPLY | ST_ASSURED | ST_EXPECTED),
        };
        Ct {
            seen: false,
            untracked: false,
            base,
            dir,
            first,
            helper: None,
            helper_by: None,
            nat_done: [false; 2],
            nat_bits: [false; 2],
            pending: Pending::default(),
            tuples: None,
            status,
        }
    }

    /// The state a `ct state` match sees.
    pub fn state(&self) -> CtState {
        if self.untracked {
            CtState::Untracked
        } else if !self.seen {
            CtState::Invalid
        } else {
            match self.base {
                CtBase::New => CtState::New,
                CtBase::Established => CtState::Established,
                CtBase::Related => CtState::Related,
                CtBase::Invalid => CtState::Invalid,
            }
        }
    }

    fn has_entry(&self) -> bool {
        self.seen && !self.untracked && self.base != CtBase::Invalid
    }
}

/// Why a state's evaluation is not certain: the rule whose match could not be decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleRef {
    pub chain: usize,
    pub rule: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleRes {
    NoMatch,
    Match,
    /// Undecidable; this branch assumes it matched.
    AssumedMatch,
    /// Undecidable; this branch assumes it did not.
    AssumedNoMatch,
    /// Undecidable, but the rule changes nothing (LOG, counter).
    UnknownHarmless,
    /// Matches part of the packets described; the rule changes nothing.
    PartMatch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Hook(Hook),
    /// A chain is entered: as a base chain, through a jump, or a goto.
    Enter {
        chain: usize,
        how: &'static str,
    },
    Rule {
        chain: usize,
        rule: usize,
        res: RuleRes,
    },
    /// The end of a chain: the policy of a base chain, or back to the caller.
    End {
        chain: usize,
        policy: Option<bool>,
    },
    Note(String),
}

#[derive(Clone, Debug)]
pub struct State {
    pub cube: Cube,
    /// Header values after this host's NAT so far (src, dst, proto unused, sport, dport).
    pub xf: Xf,
    pub mark: Option<u32>,
    pub ctmark: Option<u32>,
    pub ct: Ct,
    pub tcp_flags: Option<u8>,
    pub ttl: Option<u8>,
    pub len: Option<u16>,
    /// Generated on this host (owner matches are possible).
    pub local_origin: bool,
    /// Undecidable rules this branch took a side on.
    pub taint: Vec<RuleRef>,
    pub trace: Option<Vec<Step>>,
    /// The rule (or policy: `rule == usize::MAX`) that last accepted it.
    pub accepted_by: Option<RuleRef>,
    /// Free for the caller (check maps states back to flows' histories).
    pub tag: u32,
}

impl State {
    pub fn new(cube: Cube, ct: Ct, trace: bool) -> State {
        State {
            cube,
            xf: Default::default(),
            mark: Some(0),
            ctmark: Some(0),
            ct,
            tcp_flags: None,
            ttl: None,
            len: None,
            local_origin: false,
            taint: Vec::new(),
            trace: trace.then(Vec::new),
            accepted_by: None,
            tag: 0,
        }
    }

    /// The value of dimension `d` after NAT so far.
    pub fn eff(&self, d: usize) -> &IvSet {
        self.xf[d].as_ref().unwrap_or(&self.cube.iv[d])
    }

    /// The packet as it leaves: NAT applied.
    pub fn effective_cube(&self) -> Cube {
        let mut c = self.cube.clone();
        for d in 0..DIMS {
            if let Some(x) = &self.xf[d] {
                c.iv[d] = x.clone();
            }
        }
        c
    }

    fn with(&self, c: Cube) -> State {
        State {
            cube: c,
            xf: self.xf.clone(),
            mark: self.mark,
            ctmark: self.ctmark,
            ct: self.ct.clone(),
            tcp_flags: self.tcp_flags,
            ttl: self.ttl,
            len: self.len,
            local_origin: self.local_origin,
            taint: self.taint.clone(),
            trace: self.trace.clone(),
            accepted_by: self.accepted_by,
            tag: self.tag,
        }
    }

    pub fn step(&mut self, s: impl FnOnce() -> Step) {
        if let Some(t) = &mut self.trace {
            t.push(s());
        }
    }

    pub fn tainted(&self) -> bool {
        !self.taint.is_empty()
    }
}

/// How evaluation of a state ended before passing a hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Accepted by a chain (the hook goes on).
    Accept,
    /// A nat chain set up a mapping.
    Nat,
    /// `rule: None` is the chain's policy.
    Drop {
        chain: usize,
        rule: Option<usize>,
    },
    Reject {
        chain: usize,
        rule: usize,
    },
    /// An action amwall cannot evaluate (NFQUEUE, an unknown target).
    Unknown {
        chain: usize,
        rule: usize,
        what: String,
    },
    /// Jumps nested deeper than the kernel allows.
    Loop {
        chain: usize,
    },
}

impl End {
    pub fn is_pass(&self) -> bool {
        matches!(self, End::Accept | End::Nat)
    }
}

/// The kernel refuses rulesets that nest deeper (XT_MAX_JUMPS-ish bound).
const MAX_DEPTH: usize = 64;

/// Batches larger than this are merged when they have doubled.
const COALESCE_AT: usize = 200;

/// Buffers `eval_rule` fills, kept across rules.
#[derive(Default)]
struct Scratch {
    y: Vec<Cube>,
    u: Vec<Cube>,
    n: Vec<Cube>,
}

/// Merge states that differ only in their packets (and in which undecidable
/// rules they depend on: those lists are united, so a merged state is as
/// uncertain as its parts). Traced states are left alone.
pub fn coalesce_states(batch: &mut Vec<State>) {
    use std::collections::HashMap;
    use std::hash::{Hash, Hasher};
    if batch.len() < 2 || batch.iter().any(|s| s.trace.is_some()) {
        return;
    }
    // Everything but the cube and the taint list, hashed without copying;
    // equal hashes are compared exactly. foldhash as in `space::coalesce`.
    let seed = foldhash::fast::RandomState::default();
    let hash = |s: &State| {
        use std::hash::BuildHasher;
        let mut h = seed.build_hasher();
        s.xf.hash(&mut h);
        (s.mark, s.ctmark, s.tcp_flags, s.ttl, s.len).hash(&mut h);
        (s.local_origin, s.tainted(), s.accepted_by, s.tag).hash(&mut h);
        s.ct.hash(&mut h);
        h.finish()
    };
    fn same(a: &State, b: &State) -> bool {
        a.xf == b.xf
            && (a.mark, a.ctmark, a.tcp_flags, a.ttl, a.len)
                == (b.mark, b.ctmark, b.tcp_flags, b.ttl, b.len)
            && (a.local_origin, a.tainted(), a.accepted_by, a.tag)
                == (b.local_origin, b.tainted(), b.accepted_by, b.tag)
            && a.ct == b.ct
    }
    let mut groups: HashMap<u64, Vec<usize>, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(batch.len(), seed.clone());
    let mut out: Vec<(State, Vec<Cube>)> = Vec::new();
    for mut s in batch.drain(..) {
        let slot = groups.entry(hash(&s)).or_default();
        match slot.iter().copied().find(|&i| same(&out[i].0, &s)) {
            Some(i) => {
                let (g, cubes) = &mut out[i];
                for t in &s.taint {
                    if g.taint.len() < 8 && !g.taint.contains(t) {
                        g.taint.push(*t);
                    }
                }
                cubes.push(std::mem::replace(&mut s.cube, Cube::full(false, 0, 0)));
            }
            None => {
                slot.push(out.len());
                let c = std::mem::replace(&mut s.cube, Cube::full(false, 0, 0));
                out.push((s, vec![c]));
            }
        }
    }
    for (mut g, mut cubes) in out {
        if cubes.len() > 1 {
            coalesce(&mut cubes);
        }
        let last = cubes.pop().expect("one cube at least");
        for c in cubes {
            batch.push(g.with(c));
        }
        g.cube = last;
        batch.push(g);
    }
}

pub struct Engine<'a> {
    pub c: &'a Compiled,
    pub host: &'a HostInfo,
    /// Whether dropped and rejected states are returned. The over-permissive
    /// analysis wants only what is accepted; for a large ruleset most of
    /// the space's pieces are dropped ones, and keeping them costs most of
    /// its memory and much of its time.
    pub keep_stopped: bool,
}

enum TupleEval {
    Tri(Tri),
    /// Compare the cube's own dimension (pre-NAT).
    Raw(usize),
    /// Compare the dimension after NAT so far.
    Eff(usize),
}

impl<'a> Engine<'a> {
    pub fn new(c: &'a Compiled, host: &'a HostInfo) -> Engine<'a> {
        Engine {
            c,
            host,
            keep_stopped: true,
        }
    }

    fn st_atom(&self, a: &StAtom, s: &State, hook: Hook) -> Tri {
        match a {
            StAtom::CtState(v) => {
                let cur = s.ct.state();
                let mut hit = v.contains(&cur);
                if s.ct.has_entry() {
                    hit |= v.contains(&CtState::Dnat) && s.ct.nat_bits[0];
                    hit |= v.contains(&CtState::Snat) && s.ct.nat_bits[1];
                }
                Tri::from(hit)
            }
            StAtom::CtStatus(v) => {
                if !s.ct.has_entry() {
                    return Tri::Unknown;
                }
                let mut known = 0u8;
                let mut unk = false;
                for st in v {
                    let bit = match st {
                        CtStatus::None => 0,
                        CtStatus::Expected => ST_EXPECTED,
                        CtStatus::SeenReply => ST_SEEN_REPLY,
                        CtStatus::Assured => ST_ASSURED,
                        CtStatus::Confirmed => ST_CONFIRMED,
                        // The bits `--ctstate DNAT`/`SNAT` test: always known here.
                        CtStatus::Dnat | CtStatus::Snat => {
                            if s.ct.nat_bits[usize::from(*st == CtStatus::Snat)] {
                                return Tri::True;
                            }
                            continue;
                        }
                    };
                    known |= bit & s.ct.status.0;
                    unk |= bit & s.ct.status.1 != 0;
                }
                if known != 0 {
                    Tri::True
                } else if unk {
                    Tri::Unknown
                } else {
                    Tri::False
                }
            }
            StAtom::CtDir(d) => {
                if !s.ct.has_entry() {
                    Tri::False
                } else {
                    Tri::from(*d == s.ct.dir)
                }
            }
            StAtom::Mark { value, mask } => match s.mark {
                Some(m) => Tri::from(m & mask == *value),
                None => Tri::Unknown,
            },
            StAtom::ConnMark { value, mask } => {
                if !s.ct.has_entry() {
                    return Tri::False;
                }
                match s.ctmark {
                    Some(m) => Tri::from(m & mask == *value),
                    None => Tri::Unknown,
                }
            }
            StAtom::TcpFlags { mask, set } => match s.tcp_flags {
                Some(f) => Tri::from(f & mask == *set),
                None => Tri::Unknown,
            },
            StAtom::Ttl(cmp, v) => match s.ttl {
                Some(t) => Tri::from(match cmp {
                    crate::netfilter::Cmp::Eq => t == *v,
                    crate::netfilter::Cmp::Lt => t < *v,
                    crate::netfilter::Cmp::Gt => t > *v,
                }),
                None => Tri::Unknown,
            },
            StAtom::Length(a, b) => match s.len {
                Some(l) => Tri::from(*a <= l && l <= *b),
                None => Tri::Unknown,
            },
            StAtom::Owner => {
                if s.local_origin && matches!(hook, Hook::Output | Hook::Postrouting) {
                    Tri::Unknown
                } else {
                    Tri::False
                }
            }
            StAtom::Unknown(_) => Tri::Unknown,
        }
    }

    fn tuple(&self, a: &TupleAtom, s: &State) -> TupleEval {
        if !s.ct.has_entry() {
            return TupleEval::Tri(Tri::Unknown);
        }
        let (idx, d) = match (a.tuple, a.port) {
            (CtTuple::OrigSrc, false) => (0, SRC),
            (CtTuple::OrigDst, false) => (1, DST),
            (CtTuple::OrigSrc, true) => (2, SPORT),
            (CtTuple::OrigDst, true) => (3, DPORT),
            (CtTuple::ReplSrc, false) => (4, DST),
            (CtTuple::ReplDst, false) => (5, SRC),
            (CtTuple::ReplSrc, true) => (6, DPORT),
            (CtTuple::ReplDst, true) => (7, SPORT),
        };
        if let Some(t) = &s.ct.tuples {
            return TupleEval::Tri(match a.set.relation(&t[idx]) {
                Some(b) => Tri::from(b),
                None => Tri::Unknown,
            });
        }
        if s.ct.dir != CtDirection::Original {
            return TupleEval::Tri(Tri::Unknown);
        }
        if idx < 4 {
            TupleEval::Raw(d)
        } else {
            TupleEval::Eff(d)
        }
    }

    fn classify_ov(set: &IvSet, iv: &IvSet) -> Tri {
        match set.relation(iv) {
            Some(b) => Tri::from(b),
            None => Tri::Unknown,
        }
    }

    /// (yes, maybe) regions of an atom for a state.
    fn regions<'b>(&self, a: &'b Atom, s: &State, hook: Hook) -> (Region<'b>, Region<'b>) {
        fn of_tri<'c>(t: Tri) -> (Region<'c>, Region<'c>) {
            match t {
                Tri::True => (Region::All, Region::All),
                Tri::False => (Region::Nothing, Region::Nothing),
                Tri::Unknown => (Region::Nothing, Region::All),
            }
        }
        match a {
            Atom::Const(t) => of_tri(*t),
            Atom::Dim { d, set } => match &s.xf[*d] {
                Some(ov) => of_tri(Self::classify_ov(set, ov)),
                None => (Region::Dim(*d, set), Region::Dim(*d, set)),
            },
            Atom::If { k, mask } => (Region::If(*k, *mask), Region::If(*k, *mask)),
            Atom::St(x, neg) => {
                let t = self.st_atom(x, s, hook);
                of_tri(if *neg { t.negate() } else { t })
            }
            Atom::Tuple(t) => match self.tuple(t, s) {
                TupleEval::Tri(t) => of_tri(t),
                TupleEval::Raw(d) => (Region::Dim(d, &t.set), Region::Dim(d, &t.set)),
                TupleEval::Eff(d) => match &s.xf[d] {
                    Some(ov) => of_tri(Self::classify_ov(&t.set, ov)),
                    None => (Region::Dim(d, &t.set), Region::Dim(d, &t.set)),
                },
            },
            Atom::And(v) => {
                let (mut ys, mut ms) = (Vec::new(), Vec::new());
                for x in v {
                    let (y, m) = self.regions(x, s, hook);
                    if matches!(m, Region::Nothing) {
                        return (Region::Nothing, Region::Nothing);
                    }
                    if !matches!(y, Region::All) {
                        ys.push(y);
                    }
                    if !matches!(m, Region::All) {
                        ms.push(m);
                    }
                }
                let y = if ys.is_empty() {
                    Region::All
                } else {
                    Region::And(ys)
                };
                let m = if ms.is_empty() {
                    Region::All
                } else {
                    Region::And(ms)
                };
                (y, m)
            }
            Atom::Or(v) => {
                let (mut ys, mut ms) = (Vec::new(), Vec::new());
                for x in v {
                    let (y, m) = self.regions(x, s, hook);
                    if matches!(y, Region::All) {
                        return (Region::All, Region::All);
                    }
                    if !matches!(y, Region::Nothing) {
                        ys.push(y);
                    }
                    if !matches!(m, Region::Nothing) {
                        ms.push(m);
                    }
                }
                let y = if ys.is_empty() {
                    Region::Nothing
                } else {
                    Region::Or(ys)
                };
                let m = if ms.is_empty() {
                    Region::Nothing
                } else {
                    Region::Or(ms)
                };
                (y, m)
            }
        }
    }

    /// Cut a state's cube by a rule: matched, undecidable, not matched.
    /// Returns false (and leaves the vectors empty) when nothing matches.
    pub fn eval_rule(
        &self,
        r: &CRule,
        s: &State,
        hook: Hook,
        y: &mut Vec<Cube>,
        u: &mut Vec<Cube>,
        n: &mut Vec<Cube>,
    ) -> bool {
        let cube = &s.cube;
        let mut tri = Tri::True;
        // Header conditions that cut the cube, after a quick pass that settles
        // most rules without splitting anything.
        let mut cuts: [(usize, Option<&IvSet>, u128); 12] = [(0, None, 0); 12];
        let mut ncuts = 0usize;
        let mut complex: Vec<&Atom> = Vec::new();
        for a in &r.atoms {
            match a {
                Atom::Const(t) => tri = tri.and(*t),
                Atom::Dim { d, set } => match set.relation(s.eff(*d)) {
                    Some(true) => {}
                    Some(false) => return false,
                    None if s.xf[*d].is_some() => tri = tri.and(Tri::Unknown),
                    None if ncuts < cuts.len() => {
                        cuts[ncuts] = (*d, Some(set), 0);
                        ncuts += 1;
                    }
                    None => complex.push(a),
                },
                Atom::If { k, mask } => {
                    let have = cube.ifs[*k];
                    if have & mask == 0 {
                        return false;
                    }
                    if have & !mask != 0 {
                        if ncuts < cuts.len() {
                            cuts[ncuts] = (*k, None, *mask);
                            ncuts += 1;
                        } else {
                            complex.push(a);
                        }
                    }
                }
                Atom::St(x, neg) => {
                    let t = self.st_atom(x, s, hook);
                    tri = tri.and(if *neg { t.negate() } else { t });
                }
                Atom::Tuple(t) => match self.tuple(t, s) {
                    TupleEval::Tri(v) => tri = tri.and(v),
                    TupleEval::Raw(d) => match t.set.relation(&cube.iv[d]) {
                        Some(true) => {}
                        Some(false) => return false,
                        None => complex.push(a),
                    },
                    TupleEval::Eff(_) => complex.push(a),
                },
                Atom::And(_) | Atom::Or(_) => complex.push(a),
            }
            if tri == Tri::False {
                return false;
            }
        }
        let mut cur = vec![cube.clone()];
        for &(d, set, mask) in &cuts[..ncuts] {
            let mut next = Vec::with_capacity(cur.len() + 1);
            for c in cur {
                match set {
                    Some(set) => split_dim(c, d, set, &mut next, n),
                    None => split_if(c, d, mask, &mut next, n),
                }
            }
            cur = next;
        }
        let mut unk: Vec<Cube> = Vec::new();
        for a in complex {
            let (yes, maybe) = self.regions(a, s, hook);
            let mut ny = Vec::new();
            let mut rest = Vec::new();
            for c in cur {
                split(c, &yes, &mut ny, &mut rest);
            }
            for c in rest {
                split(c, &maybe, &mut unk, n);
            }
            let mut nu = Vec::new();
            for c in unk {
                split(c, &maybe, &mut nu, n);
            }
            unk = nu;
            cur = ny;
        }
        if tri == Tri::Unknown {
            unk.append(&mut cur);
        }
        y.extend(cur);
        u.extend(unk);
        !(y.is_empty() && u.is_empty())
    }

    /// Evaluate a batch through a chain; states that leave it (RETURN, the
    /// end, a goto's return) come back, the others are pushed to `out`.
    pub fn eval_chain(
        &self,
        id: usize,
        hook: Hook,
        batch: Vec<State>,
        depth: usize,
        out: &mut Vec<(State, End)>,
    ) -> Vec<State> {
        let chain = &self.c.chains[id];
        let mut batch = batch;
        let mut returned: Vec<State> = Vec::new();
        let mut scratch = Scratch::default();
        let mut last_size = batch.len();
        let (mut skip_to, mut run_at) = (0, 0);
        for ri in 0..chain.rules.len() {
            if batch.is_empty() {
                break;
            }
            if ri < skip_to {
                continue;
            }
            while chain.runs.get(run_at).is_some_and(|x| x.start < ri) {
                run_at += 1;
            }
            // A run cuts the batch at once; traces want every rule's step, and
            // a rewritten dimension is compared after NAT, so those go rule
            // by rule.
            if let Some(run) = chain.runs.get(run_at).filter(|x| {
                x.start == ri
                    && batch
                        .iter()
                        .all(|s| s.trace.is_none() && s.xf[x.d].is_none())
            }) {
                batch = self.eval_run(id, run, hook, batch, depth, out, &mut returned);
                if batch.len() > COALESCE_AT && batch.len() > 2 * last_size {
                    coalesce_states(&mut batch);
                    last_size = batch.len();
                }
                skip_to = run.end;
                continue;
            }
            self.eval_one(
                id,
                ri,
                hook,
                depth,
                &mut batch,
                &mut returned,
                out,
                &mut scratch,
                &mut last_size,
            );
        }
        for mut s in batch {
            if depth > 0 {
                s.step(|| Step::End {
                    chain: id,
                    policy: None,
                });
            }
            returned.push(s);
        }
        returned
    }

    /// One rule of chain `id` over the batch: what it decides goes to `out`
    /// (or `returned`, or into the chain it calls), the rest stays in `batch`.
    // Long: one arm per rule action in the kernel's order of evaluation (verdicts, jumps,
    // returns, marks, NAT, helpers); keeping them together keeps that order checkable
    // against nf_tables/ip_tables
    #[allow(clippy::too_many_arguments)]
    fn eval_one(
        &self,
        id: usize,
        ri: usize,
        hook: Hook,
        depth: usize,
        batch: &mut Vec<State>,
        returned: &mut Vec<State>,
        out: &mut Vec<(State, End)>,
        sc: &mut Scratch,
        last_size: &mut usize,
    ) {
        let r = &self.c.chains[id].rules[ri];
        let Scratch { y, u, n } = sc;
        let here = RuleRef {
            chain: id,
            rule: ri,
        };
        let mut next: Vec<State> = Vec::new();
        let mut hit: Vec<State> = Vec::new();
        if !r.action.matters() && r.effects.iter().all(|e| !e.matters()) {
            // Counting and logging rules change nothing: never cut a state for them.
            for mut s in std::mem::take(batch) {
                if s.trace.is_some() {
                    y.clear();
                    u.clear();
                    n.clear();
                    let any = self.eval_rule(r, &s, hook, y, u, n);
                    let res = if !any {
                        RuleRes::NoMatch
                    } else if n.is_empty() && u.is_empty() {
                        RuleRes::Match
                    } else if n.is_empty() && y.is_empty() {
                        RuleRes::UnknownHarmless
                    } else {
                        RuleRes::PartMatch
                    };
                    s.step(|| Step::Rule {
                        chain: id,
                        rule: ri,
                        res,
                    });
                }
                next.push(s);
            }
            *batch = next;
            return;
        }
        // States the rule does not touch stay where they are.
        let mut i = 0;
        while i < batch.len() {
            y.clear();
            u.clear();
            n.clear();
            if !self.eval_rule(r, &batch[i], hook, y, u, n) {
                batch[i].step(|| Step::Rule {
                    chain: id,
                    rule: ri,
                    res: RuleRes::NoMatch,
                });
                i += 1;
                continue;
            }
            let mut s = batch.swap_remove(i);
            let harmless = !r.action.matters() && r.effects.iter().all(|e| !e.matters());
            for c in n.drain(..) {
                let mut x = s.with(c);
                x.step(|| Step::Rule {
                    chain: id,
                    rule: ri,
                    res: RuleRes::NoMatch,
                });
                next.push(x);
            }
            for c in u.drain(..) {
                if harmless {
                    let mut x = s.with(c);
                    x.step(|| Step::Rule {
                        chain: id,
                        rule: ri,
                        res: RuleRes::UnknownHarmless,
                    });
                    next.push(x);
                    continue;
                }
                let mut a = s.with(c);
                if a.taint.len() < 8 {
                    a.taint.push(here);
                }
                let mut b = a.clone();
                a.step(|| Step::Rule {
                    chain: id,
                    rule: ri,
                    res: RuleRes::AssumedMatch,
                });
                b.step(|| Step::Rule {
                    chain: id,
                    rule: ri,
                    res: RuleRes::AssumedNoMatch,
                });
                hit.push(a);
                next.push(b);
            }
            // The matched part keeps `s` itself when it is the whole cube.
            let mut ys = y.drain(..);
            if let Some(first) = ys.next() {
                for c in ys {
                    let mut x = s.with(c);
                    x.step(|| Step::Rule {
                        chain: id,
                        rule: ri,
                        res: RuleRes::Match,
                    });
                    hit.push(x);
                }
                s.cube = first;
                s.step(|| Step::Rule {
                    chain: id,
                    rule: ri,
                    res: RuleRes::Match,
                });
                hit.push(s);
            }
        }
        batch.append(&mut next);
        if batch.len() > COALESCE_AT && batch.len() > 2 * *last_size {
            coalesce_states(batch);
            *last_size = batch.len();
        }
        if hit.is_empty() {
            return;
        }
        let mut hit2 = Vec::with_capacity(hit.len());
        for s in hit {
            let mut v = vec![s];
            for e in &r.effects {
                let mut w = Vec::new();
                for s in v {
                    self.effect(e, s, hook, &mut w, out, id, ri);
                }
                v = w;
            }
            hit2.extend(v);
        }
        let hit = hit2;
        match &r.action {
            CAction::Accept => out.extend(hit.into_iter().map(|mut s| {
                s.accepted_by = Some(here);
                (s, End::Accept)
            })),
            CAction::Drop if !self.keep_stopped => {}
            CAction::Drop => out.extend(hit.into_iter().map(|s| {
                (
                    s,
                    End::Drop {
                        chain: id,
                        rule: Some(ri),
                    },
                )
            })),
            CAction::Reject if !self.keep_stopped => {}
            CAction::Reject => out.extend(hit.into_iter().map(|s| {
                (
                    s,
                    End::Reject {
                        chain: id,
                        rule: ri,
                    },
                )
            })),
            CAction::Return => {
                for mut s in hit {
                    s.step(|| Step::End {
                        chain: id,
                        policy: None,
                    });
                    returned.push(s);
                }
            }
            CAction::Jump(t) | CAction::Goto(t) => {
                if depth >= MAX_DEPTH {
                    out.extend(hit.into_iter().map(|s| (s, End::Loop { chain: *t })));
                    return;
                }
                let goto = matches!(r.action, CAction::Goto(_));
                let mut hit = hit;
                for s in &mut hit {
                    s.step(|| Step::Enter {
                        chain: *t,
                        how: if goto { "goto" } else { "jump" },
                    });
                }
                let back = self.eval_chain(*t, hook, hit, depth + 1, out);
                if goto {
                    returned.extend(back);
                } else {
                    for mut s in back {
                        s.step(|| Step::Enter {
                            chain: id,
                            how: "back in",
                        });
                        batch.push(s);
                    }
                }
                if batch.len() > COALESCE_AT && batch.len() > 2 * *last_size {
                    coalesce_states(batch);
                    *last_size = batch.len();
                }
            }
            other => {
                let mut w = Vec::new();
                for s in hit {
                    self.effect(other, s, hook, &mut w, out, id, ri);
                }
                if matches!(
                    other,
                    CAction::Dnat(_)
                        | CAction::Snat(_)
                        | CAction::Masquerade(_)
                        | CAction::Redirect(_)
                        | CAction::Netmap { .. }
                ) {
                    out.extend(w.into_iter().map(|s| (s, End::Nat)));
                } else {
                    batch.extend(w);
                }
            }
        }
    }

    /// A run (`index::Run`) over a batch without traces: each state goes
    /// through only the groups whose intervals meet its own, rule by rule
    /// within a group, and what no group holds goes on in one piece. What
    /// the rules decide comes out in rule order, as rule-by-rule evaluation
    /// of the whole batch gives it.
    #[allow(clippy::too_many_arguments)]
    fn eval_run(
        &self,
        id: usize,
        run: &Run,
        hook: Hook,
        batch: Vec<State>,
        depth: usize,
        out: &mut Vec<(State, End)>,
        returned: &mut Vec<State>,
    ) -> Vec<State> {
        let d = run.d;
        let mut next = Vec::with_capacity(batch.len());
        // Per rule: (decided, returned).
        type Decided = (Vec<(State, End)>, Vec<State>);
        let mut per: BTreeMap<usize, Decided> = BTreeMap::new();
        let mut sc = Scratch::default();
        for mut s in batch {
            let groups = if s.cube.iv[d].is_empty() {
                &[][..]
            } else {
                run.meeting(s.cube.iv[d].hull())
            };
            let mut cut = Vec::new();
            for g in groups {
                let clip = s.cube.iv[d].clip(g.iv);
                if clip.is_empty() {
                    continue;
                }
                cut.push(g.iv);
                let mut c = s.cube.clone();
                c.iv[d] = clip;
                let mut local = vec![s.with(c)];
                let mut size = 1;
                for ri in g.rules.clone() {
                    if local.is_empty() {
                        break;
                    }
                    let (o, ret) = per.entry(ri).or_default();
                    self.eval_one(id, ri, hook, depth, &mut local, ret, o, &mut sc, &mut size);
                }
                next.append(&mut local);
            }
            if cut.is_empty() {
                next.push(s);
                continue;
            }
            let rest = s.cube.iv[d].minus(&IvSet::from_ivs(cut));
            if !rest.is_empty() {
                s.cube.iv[d] = rest;
                next.push(s);
            }
        }
        for (o, ret) in per.into_values() {
            out.extend(o);
            returned.extend(ret);
        }
        next
    }

    /// Apply a non-verdict action; the state(s) that go on are pushed to `w`.
    #[allow(clippy::too_many_arguments)]
    fn effect(
        &self,
        a: &CAction,
        mut s: State,
        hook: Hook,
        w: &mut Vec<State>,
        out: &mut Vec<(State, End)>,
        chain: usize,
        rule: usize,
    ) {
        match a {
            CAction::Continue | CAction::Log => w.push(s),
            CAction::Mark { value, mask } => {
                s.mark = match s.mark {
                    Some(m) => Some((m & !mask) ^ value),
                    None if *mask == u32::MAX => Some(*value),
                    None => None,
                };
                w.push(s);
            }
            CAction::ConnMark(op) => {
                if s.ct.has_entry() {
                    match *op {
                        ConnMarkOp::Set { value, mask } => {
                            s.ctmark = s.ctmark.map(|m| (m & !mask) ^ value);
                        }
                        ConnMarkOp::Save { nfmask, ctmask } => {
                            s.ctmark = match (s.ctmark, s.mark) {
                                (Some(c), Some(m)) => Some((c & !ctmask) ^ (m & nfmask)),
                                _ => None,
                            };
                        }
                        ConnMarkOp::Restore { nfmask, ctmask } => {
                            s.mark = match (s.ctmark, s.mark) {
                                (Some(c), Some(m)) => Some((m & !nfmask) ^ (c & ctmask)),
                                _ => None,
                            };
                        }
                    }
                }
                w.push(s);
            }
            CAction::Notrack => {
                if !s.ct.seen {
                    s.ct.untracked = true;
                    s.step(|| Step::Note("NOTRACK: conntrack will skip this packet".into()));
                } else {
                    s.step(|| Step::Note("NOTRACK after the conntrack lookup: no effect".into()));
                }
                w.push(s);
            }
            CAction::Helper { helper, proto, nft } => {
                let ok_time = if *nft {
                    s.ct.has_entry() && s.ct.first
                } else {
                    !s.ct.seen && !s.ct.untracked && s.ct.first
                };
                let ok_proto = proto.map_or(true, |p| s.cube.iv[PROTO] == IvSet::point(p as u128));
                if ok_time && ok_proto && s.ct.helper.is_none() {
                    s.ct.helper = Some(helper.clone());
                    s.ct.helper_by = Some(RuleRef { chain, rule });
                    s.step(|| Step::Note(format!("conntrack helper {helper} assigned")));
                } else {
                    let why = if !ok_proto {
                        "protocol differs"
                    } else if s.ct.helper.is_some() {
                        "one is assigned already"
                    } else if *nft && !s.ct.seen {
                        "no conntrack entry yet: the chain runs before priority -200"
                    } else {
                        "not the first packet of a connection"
                    };
                    s.step(|| {
                        Step::Note(format!("conntrack helper {helper} not assigned ({why})"))
                    });
                }
                w.push(s);
            }
            CAction::Dnat(_)
            | CAction::Snat(_)
            | CAction::Masquerade(_)
            | CAction::Redirect(_)
            | CAction::Netmap { .. } => self.nat(a, s, hook, w, out, chain, rule),
            CAction::Unknown(what) => out.push((
                s,
                End::Unknown {
                    chain,
                    rule,
                    what: what.clone(),
                },
            )),
            CAction::Accept => out.push((s, End::Accept)),
            CAction::Drop => out.push((
                s,
                End::Drop {
                    chain,
                    rule: Some(rule),
                },
            )),
            CAction::Reject => out.push((s, End::Reject { chain, rule })),
            CAction::Return | CAction::Jump(_) | CAction::Goto(_) => out.push((
                s,
                End::Unknown {
                    chain,
                    rule,
                    what: "a jump among a rule's statements".into(),
                },
            )),
        }
    }

    /// The primary address of the single interface in an interface class set.
    fn iface_addr(&self, mask: u128) -> Option<u128> {
        if mask.count_ones() != 1 {
            return None;
        }
        let i = mask.trailing_zeros() as usize;
        let IfClass::Exact(name) = self.c.ifaces.classes.get(i)? else {
            return None;
        };
        self.host
            .iface_addr
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, a)| addr_value(*a, self.c.v6))
    }

    #[allow(clippy::too_many_arguments)]
    // Long: the NAT core's steps in the kernel's order (existing mapping, then rules, then
    // the implicit null binding), on one packet box
    fn nat(
        &self,
        a: &CAction,
        mut s: State,
        hook: Hook,
        w: &mut Vec<State>,
        out: &mut Vec<(State, End)>,
        chain: usize,
        rule: usize,
    ) {
        let v6 = self.c.v6;
        let dst_hook = matches!(hook, Hook::Prerouting | Hook::Output);
        let unknown_addr = IvSet::full(dim_max(SRC, v6));
        let (is_dst, addr, to) = match a {
            CAction::Dnat(t) => (true, t.addrs.map(IvSet::one), t),
            CAction::Redirect(t) => {
                let addr = if hook == Hook::Output {
                    IvSet::point(if v6 { 1 } else { 0x7f00_0001 })
                } else {
                    self.iface_addr(s.cube.ifs[IIF])
                        .map(IvSet::point)
                        .unwrap_or_else(|| unknown_addr.clone())
                };
                (true, Some(addr), t)
            }
            CAction::Snat(t) => (false, t.addrs.map(IvSet::one), t),
            CAction::Masquerade(t) => (
                false,
                Some(
                    self.iface_addr(s.cube.ifs[OIF])
                        .map(IvSet::point)
                        .unwrap_or_else(|| unknown_addr.clone()),
                ),
                t,
            ),
            CAction::Netmap { net, bits } => {
                let d = if dst_hook { DST } else { SRC };
                let cur = s.eff(d).hull();
                let host_mask: u128 = if *bits >= 128 {
                    u128::MAX
                } else {
                    (1u128 << bits) - 1
                };
                let mapped =
                    if cur.lo & !host_mask == cur.hi & !host_mask && s.eff(d).single().is_some() {
                        IvSet::one(Iv::new(
                            net.lo | (cur.lo & host_mask),
                            net.lo | (cur.hi & host_mask),
                        ))
                    } else {
                        unknown_addr
                    };
                let txt = show_set(&mapped, v6);
                s.xf[d] = Some(mapped);
                s.ct.nat_bits[if dst_hook { 0 } else { 1 }] = true;
                s.step(|| Step::Note(format!("NETMAP: {} now {txt}", dname(d))));
                w.push(s);
                return;
            }
            _ => unreachable!("nat() is called for NAT actions"),
        };
        if is_dst != dst_hook {
            out.push((
                s,
                End::Unknown {
                    chain,
                    rule,
                    what: format!(
                        "{} NAT in the {} hook",
                        if is_dst { "destination" } else { "source" },
                        hook.name()
                    ),
                },
            ));
            return;
        }
        let (ad, pd) = if is_dst { (DST, DPORT) } else { (SRC, SPORT) };
        if let Some(x) = addr {
            s.xf[ad] = Some(x);
        }
        s.ct.nat_bits[if is_dst { 0 } else { 1 }] = true;
        // Ports: only for protocols with ports (nf_nat_l4proto_unique_tuple).
        let proto = &s.cube.iv[PROTO];
        let ported = proto.is_point() && PORT_PROTOS.contains(&(proto.lo() as u8));
        let mut states = vec![s];
        if ported {
            let cur = states[0].eff(pd).clone();
            match to.ports {
                Some(range) if to.random => states[0].xf[pd] = Some(IvSet::one(range)),
                Some(range) => {
                    // Kept when inside the range (no clash assumed); else the
                    // first port for DNAT, a random one of the range for SNAT.
                    let moved = IvSet::one(if is_dst { Iv::point(range.lo) } else { range });
                    let rset = IvSet::one(range);
                    match rset.relation(&cur) {
                        Some(true) => {}
                        Some(false) => states[0].xf[pd] = Some(moved),
                        None => {
                            let s0 = states.pop().expect("one state");
                            if s0.xf[pd].is_some() {
                                let mut x = s0;
                                x.xf[pd] = Some(cur.union(&moved));
                                states.push(x);
                            } else {
                                let (mut inn, mut outside) = (Vec::new(), Vec::new());
                                split_dim(s0.cube.clone(), pd, &rset, &mut inn, &mut outside);
                                for c in inn {
                                    states.push(s0.with(c));
                                }
                                for c in outside {
                                    let mut x = s0.with(c);
                                    x.xf[pd] = Some(moved.clone());
                                    states.push(x);
                                }
                            }
                        }
                    }
                }
                None if to.random && !is_dst => {
                    // RANDOM_ALL without a range: a random port of the same class.
                    let classes = [
                        (0, 0, 0, 0),
                        (1, 511, 1, 511),
                        (512, 1023, 600, 1023),
                        (1024, 65535, 1024, 65535),
                    ];
                    let s0 = states.pop().expect("one state");
                    for (a, b, ta, tb) in classes {
                        let part = cur.intersect(&IvSet::one(Iv::new(a, b)));
                        if part.is_empty() {
                            continue;
                        }
                        let mut x = s0.with(s0.cube.clone());
                        if s0.xf[pd].is_none() {
                            x.cube.iv[pd] = part;
                        }
                        x.xf[pd] = Some(IvSet::one(Iv::new(ta, tb)));
                        states.push(x);
                    }
                }
                None => {}
            }
        }
        for mut s in states {
            let what = if is_dst { "DNAT" } else { "SNAT" };
            let av = show_set(s.eff(ad), v6);
            let pv = s.eff(pd).to_string();
            s.step(|| {
                Step::Note(format!(
                    "{what}: {} now {av}{}",
                    if is_dst { "destination" } else { "source" },
                    if ported {
                        format!(" port {pv}")
                    } else {
                        String::new()
                    }
                ))
            });
            w.push(s);
        }
    }

    /// Run one hook on a batch: the states that pass, and those stopped with why.
    // Long: one hook's base chains in priority order with conntrack and NAT between them,
    // as nf_hook_slow runs them
    pub fn run_hook(&self, hook: Hook, states: Vec<State>) -> (Vec<State>, Vec<(State, End)>) {
        let mut live = states;
        let mut stopped = Vec::new();
        for s in &mut live {
            s.step(|| Step::Hook(hook));
        }
        let Some(hi) = hook_index(hook) else {
            return (live, stopped);
        };
        for slot in &self.c.slots[hi] {
            if live.is_empty() {
                break;
            }
            match slot {
                Slot::Conntrack => {
                    for s in &mut live {
                        if !s.ct.untracked && !s.ct.seen {
                            s.ct.seen = true;
                            let st = s.ct.state();
                            s.step(|| Step::Note(format!("conntrack: state {}", ct_name(st))));
                        }
                    }
                }
                Slot::Chain(id) => {
                    for s in &mut live {
                        s.step(|| Step::Enter {
                            chain: *id,
                            how: "base chain",
                        });
                    }
                    let mut out = Vec::new();
                    let back = self.eval_chain(*id, hook, std::mem::take(&mut live), 0, &mut out);
                    let accept = self.c.chains[*id]
                        .base
                        .as_ref()
                        .map_or(true, |b| b.policy == crate::netfilter::Policy::Accept);
                    for mut s in back {
                        s.step(|| Step::End {
                            chain: *id,
                            policy: Some(accept),
                        });
                        if accept {
                            s.accepted_by = Some(RuleRef {
                                chain: *id,
                                rule: usize::MAX,
                            });
                            live.push(s);
                        } else if self.keep_stopped {
                            stopped.push((
                                s,
                                End::Drop {
                                    chain: *id,
                                    rule: None,
                                },
                            ));
                        }
                    }
                    for (s, e) in out {
                        if e.is_pass() {
                            live.push(s);
                        } else {
                            stopped.push((s, e));
                        }
                    }
                }
                Slot::Nat { dst, chains } => {
                    let m = if *dst { 0 } else { 1 };
                    let mut run = Vec::new();
                    let mut done = Vec::new();
                    for mut s in live.drain(..) {
                        // The nat chains see a connection's first packet —
                        // also an expected (RELATED) one, unless the expectation
                        // brought its mapping along (nf_nat_follow_master,
                        // only when the master was NATed: nf_conntrack_amanda.c).
                        let fresh = s.ct.has_entry()
                            && (s.ct.base == CtBase::New
                                || (s.ct.base == CtBase::Related && s.ct.first))
                            && s.ct.dir == CtDirection::Original
                            && !s.ct.nat_done[m];
                        if fresh {
                            run.push(s);
                            continue;
                        }
                        // Only a packet conntrack associated with its
                        // connection gets the connection's NAT (not one
                        // NOTRACK took out of conntrack).
                        if let Some((addr, port)) =
                            s.ct.has_entry().then(|| s.ct.pending[m].clone()).flatten()
                        {
                            let (ad, pd) = if *dst { (DST, DPORT) } else { (SRC, SPORT) };
                            if let Some(a) = addr {
                                s.xf[ad] = Some(a);
                            }
                            if let Some(p) = port {
                                s.xf[pd] = Some(p);
                            }
                            let av = show_set(s.eff(ad), self.c.v6);
                            s.step(|| {
                                Step::Note(format!(
                                    "NAT of the connection: {} now {av}",
                                    if *dst { "destination" } else { "source" },
                                ))
                            });
                        }
                        done.push(s);
                    }
                    for &cid in chains {
                        if run.is_empty() {
                            break;
                        }
                        for s in &mut run {
                            s.step(|| Step::Enter {
                                chain: cid,
                                how: "base chain (nat)",
                            });
                        }
                        let mut out = Vec::new();
                        let back =
                            self.eval_chain(cid, hook, std::mem::take(&mut run), 0, &mut out);
                        let accept = self.c.chains[cid]
                            .base
                            .as_ref()
                            .map_or(true, |b| b.policy == crate::netfilter::Policy::Accept);
                        for mut s in back {
                            s.step(|| Step::End {
                                chain: cid,
                                policy: Some(accept),
                            });
                            if accept {
                                run.push(s);
                            } else if self.keep_stopped {
                                stopped.push((
                                    s,
                                    End::Drop {
                                        chain: cid,
                                        rule: None,
                                    },
                                ));
                            }
                        }
                        for (mut s, e) in out {
                            match e {
                                End::Accept => run.push(s),
                                End::Nat => {
                                    s.ct.nat_done[m] = true;
                                    done.push(s);
                                }
                                e => stopped.push((s, e)),
                            }
                        }
                    }
                    for mut s in run {
                        s.ct.nat_done[m] = true;
                        done.push(s);
                    }
                    live = done;
                }
            }
        }
        (live, stopped)
    }
}

pub fn ct_name(s: CtState) -> &'static str {
    match s {
        CtState::Invalid => "INVALID",
        CtState::Established => "ESTABLISHED",
        CtState::Related => "RELATED",
        CtState::New => "NEW",
        CtState::Untracked => "UNTRACKED",
        CtState::Snat => "SNAT",
        CtState::Dnat => "DNAT",
    }
}

fn dname(d: usize) -> &'static str {
    match d {
        SRC => "source",
        DST => "destination",
        _ => "port",
    }
}

/// An address set as text.
pub fn show_set(s: &IvSet, v6: bool) -> String {
    if s.is_empty() {
        return "(none)".into();
    }
    s.ivs
        .iter()
        .map(|iv| show(*iv, v6))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An address interval as text.
pub fn show(iv: Iv, v6: bool) -> String {
    let one = |x: u128| {
        if v6 {
            std::net::Ipv6Addr::from(x).to_string()
        } else {
            std::net::Ipv4Addr::from(x as u32).to_string()
        }
    };
    if iv.lo == iv.hi {
        one(iv.lo)
    } else if iv.lo == 0 && iv.hi == dim_max(SRC, v6) {
        "(unknown address)".into()
    } else {
        let bits = if v6 { 128 } else { 32 };
        let p = prefixes(iv, bits);
        if p.len() == 1 {
            format!("{}/{}", one(p[0].0), p[0].1)
        } else {
            format!("{}-{}", one(iv.lo), one(iv.hi))
        }
    }
}
