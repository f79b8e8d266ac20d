//! The packet space the simulator reasons over: boxes ("cubes") of header
//! values, and regions that cut them.
//!
//! A cube is a product of per-dimension sets — source and destination
//! address (IPv4 in the low 32 bits, IPv6 in all 128), layer-4 protocol,
//! source and destination port, each a union of intervals — and two sets of
//! interface classes (in and out). A concrete packet is a cube of single
//! values; an Amanda flow ("udp sport 840-860 → dport 10080") is a cube too,
//! and the over-permissive analysis starts from the whole space. Each rule
//! cuts a cube into the part it matches and the part it does not; because a
//! dimension may hold a union, "every source but these 500 hosts" stays one
//! cube, which keeps real rulesets (long lists of per-host rules) fast.
//!
//! ICMP has no ports: for protocol 1 and 58 the destination-port dimension
//! holds `type << 8 | code` and the source port is 0.

use std::fmt;

use smallvec::{smallvec, SmallVec};

/// Dimension indices of [`Cube::iv`].
pub const SRC: usize = 0;
pub const DST: usize = 1;
pub const PROTO: usize = 2;
pub const SPORT: usize = 3;
pub const DPORT: usize = 4;
pub const DIMS: usize = 5;

/// Indices of [`Cube::ifs`].
pub const IIF: usize = 0;
pub const OIF: usize = 1;

/// The largest value of each dimension, per address family (`v6`).
pub fn dim_max(d: usize, v6: bool) -> u128 {
    match d {
        SRC | DST if v6 => u128::MAX,
        SRC | DST => u32::MAX as u128,
        PROTO => 255,
        _ => 65535,
    }
}

/// An inclusive interval, never empty (`lo <= hi`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Iv {
    pub lo: u128,
    pub hi: u128,
}

impl Iv {
    pub const fn new(lo: u128, hi: u128) -> Iv {
        Iv { lo, hi }
    }
    pub const fn point(v: u128) -> Iv {
        Iv { lo: v, hi: v }
    }
    pub fn is_point(&self) -> bool {
        self.lo == self.hi
    }
    pub fn contains(&self, v: u128) -> bool {
        self.lo <= v && v <= self.hi
    }
    pub fn covers(&self, o: &Iv) -> bool {
        self.lo <= o.lo && o.hi <= self.hi
    }
    pub fn meet(&self, o: &Iv) -> Option<Iv> {
        let lo = self.lo.max(o.lo);
        let hi = self.hi.min(o.hi);
        (lo <= hi).then_some(Iv { lo, hi })
    }
    pub fn size(&self) -> f64 {
        (self.hi - self.lo) as f64 + 1.0
    }
}

type Ivs = SmallVec<[Iv; 1]>;

/// A sorted list of disjoint, non-adjacent intervals.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, PartialOrd, Ord)]
pub struct IvSet {
    pub ivs: Ivs,
}

impl IvSet {
    pub fn empty() -> IvSet {
        IvSet { ivs: Ivs::new() }
    }
    pub fn full(max: u128) -> IvSet {
        IvSet::one(Iv::new(0, max))
    }
    pub fn one(iv: Iv) -> IvSet {
        IvSet { ivs: smallvec![iv] }
    }
    pub fn point(v: u128) -> IvSet {
        IvSet::one(Iv::point(v))
    }
    /// Normalise any list of intervals (overlapping, unsorted) into a set.
    pub fn from_ivs(mut v: Vec<Iv>) -> IvSet {
        v.sort();
        let mut out: Ivs = Ivs::with_capacity(v.len());
        for iv in v {
            match out.last_mut() {
                Some(last) if last.hi == u128::MAX || iv.lo <= last.hi + 1 => {
                    last.hi = last.hi.max(iv.hi)
                }
                _ => out.push(iv),
            }
        }
        IvSet { ivs: out }
    }
    pub fn is_empty(&self) -> bool {
        self.ivs.is_empty()
    }
    pub fn is_point(&self) -> bool {
        self.ivs.len() == 1 && self.ivs[0].is_point()
    }
    /// The one interval, when the set is one.
    pub fn single(&self) -> Option<Iv> {
        (self.ivs.len() == 1).then(|| self.ivs[0])
    }
    /// The smallest interval holding the set. Panics on an empty set.
    pub fn hull(&self) -> Iv {
        Iv::new(self.ivs[0].lo, self.ivs[self.ivs.len() - 1].hi)
    }
    pub fn lo(&self) -> u128 {
        self.ivs[0].lo
    }
    pub fn size(&self) -> f64 {
        self.ivs.iter().map(Iv::size).sum()
    }
    pub fn contains(&self, v: u128) -> bool {
        let i = self.ivs.partition_point(|iv| iv.hi < v);
        i < self.ivs.len() && self.ivs[i].lo <= v
    }
    /// Whether `iv` lies inside the set (true), outside it (false), or
    /// straddles a border (None).
    pub fn classify(&self, iv: &Iv) -> Option<bool> {
        let i = self.ivs.partition_point(|x| x.hi < iv.lo);
        match self.ivs.get(i) {
            None => Some(false),
            Some(x) if x.lo > iv.hi => Some(false),
            Some(x) if x.covers(iv) => Some(true),
            Some(_) => None,
        }
    }
    /// Whether some value of `iv` is in the set.
    pub fn overlaps(&self, iv: &Iv) -> bool {
        let i = self.ivs.partition_point(|x| x.hi < iv.lo);
        i < self.ivs.len() && self.ivs[i].lo <= iv.hi
    }

    /// Whether `o` lies inside this set (true), outside it (false), or both
    /// (None). Logarithmic in the larger set for the common shapes.
    pub fn relation(&self, o: &IvSet) -> Option<bool> {
        if o.ivs.len() == 1 {
            return self.classify(&o.ivs[0]);
        }
        if self.ivs.is_empty() || o.ivs.is_empty() {
            return Some(false);
        }
        let overlap = if self.ivs.len() <= o.ivs.len() {
            self.ivs.iter().any(|r| o.overlaps(r))
        } else {
            o.ivs.iter().any(|c| self.overlaps(c))
        };
        if !overlap {
            return Some(false);
        }
        let hull = o.hull();
        if self.ivs.len() == 1 {
            return self.ivs[0].covers(&hull).then_some(true);
        }
        if !self.hull().covers(&hull) {
            return None;
        }
        o.ivs
            .iter()
            .all(|c| self.classify(c) == Some(true))
            .then_some(true)
    }
    pub fn complement(&self, max: u128) -> IvSet {
        let mut out = Ivs::with_capacity(self.ivs.len() + 1);
        let mut next = 0u128;
        let mut done = false;
        for iv in &self.ivs {
            if iv.lo > next {
                out.push(Iv::new(next, iv.lo - 1));
            }
            if iv.hi >= max {
                done = true;
                break;
            }
            next = iv.hi + 1;
        }
        if !done && next <= max {
            out.push(Iv::new(next, max));
        }
        IvSet { ivs: out }
    }
    pub fn union(&self, o: &IvSet) -> IvSet {
        let mut v: Vec<Iv> = self.ivs.to_vec();
        v.extend_from_slice(&o.ivs);
        IvSet::from_ivs(v)
    }
    pub fn intersect(&self, o: &IvSet) -> IvSet {
        let mut out = Ivs::new();
        let (mut i, mut j) = (0, 0);
        while i < self.ivs.len() && j < o.ivs.len() {
            if let Some(m) = self.ivs[i].meet(&o.ivs[j]) {
                out.push(m);
            }
            if self.ivs[i].hi < o.ivs[j].hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        IvSet { ivs: out }
    }
    /// The part inside one interval; logarithmic in the set plus the part's
    /// size (`intersect` walks the whole set).
    pub fn clip(&self, iv: Iv) -> IvSet {
        let a = self.ivs.partition_point(|x| x.hi < iv.lo);
        let b = self.ivs.partition_point(|x| x.lo <= iv.hi);
        let mut out: Ivs = self.ivs[a..b.max(a)].iter().copied().collect();
        if let Some(f) = out.first_mut() {
            f.lo = f.lo.max(iv.lo);
        }
        if let Some(l) = out.last_mut() {
            l.hi = l.hi.min(iv.hi);
        }
        IvSet { ivs: out }
    }
    pub fn minus(&self, o: &IvSet) -> IvSet {
        let mut out = Ivs::new();
        let mut j = 0;
        for iv in &self.ivs {
            let mut lo = iv.lo;
            let mut alive = true;
            while j < o.ivs.len() && o.ivs[j].hi < lo {
                j += 1;
            }
            let mut k = j;
            while alive && k < o.ivs.len() && o.ivs[k].lo <= iv.hi {
                let cut = o.ivs[k];
                if cut.lo > lo {
                    out.push(Iv::new(lo, cut.lo - 1));
                }
                if cut.hi >= iv.hi {
                    alive = false;
                } else {
                    lo = cut.hi + 1;
                }
                k += 1;
            }
            if alive {
                out.push(Iv::new(lo, iv.hi));
            }
        }
        IvSet { ivs: out }
    }
}

/// A box of packets: a product of per-dimension sets. `ifs` are bit sets over
/// the interface classes of the evaluation (see [`crate::sim::compile::Ifaces`]).
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Cube {
    pub iv: [IvSet; DIMS],
    pub ifs: [u128; 2],
}

impl Cube {
    /// Every packet of a family on the given interface classes.
    pub fn full(v6: bool, iif: u128, oif: u128) -> Cube {
        Cube {
            iv: std::array::from_fn(|d| IvSet::full(dim_max(d, v6))),
            ifs: [iif, oif],
        }
    }
    pub fn is_point(&self) -> bool {
        self.iv.iter().all(IvSet::is_point) && self.ifs.iter().all(|m| m.count_ones() == 1)
    }
    pub fn set(&mut self, d: usize, iv: Iv) {
        self.iv[d] = IvSet::one(iv);
    }
    pub fn meet(&self, o: &Cube) -> Option<Cube> {
        let mut out = self.clone();
        for d in 0..DIMS {
            out.iv[d] = self.iv[d].intersect(&o.iv[d]);
            if out.iv[d].is_empty() {
                return None;
            }
        }
        for k in 0..2 {
            out.ifs[k] = self.ifs[k] & o.ifs[k];
            if out.ifs[k] == 0 {
                return None;
            }
        }
        Some(out)
    }
    /// `self − o` as disjoint cubes (at most one per dimension).
    pub fn minus(&self, o: &Cube, out: &mut Vec<Cube>) {
        let Some(m) = self.meet(o) else {
            out.push(self.clone());
            return;
        };
        let mut rest = self.clone();
        for d in 0..DIMS {
            let left = rest.iv[d].minus(&m.iv[d]);
            if !left.is_empty() {
                let mut c = rest.clone();
                c.iv[d] = left;
                out.push(c);
            }
            rest.iv[d] = m.iv[d].clone();
        }
        for k in 0..2 {
            let left = rest.ifs[k] & !m.ifs[k];
            if left != 0 {
                let mut c = rest.clone();
                c.ifs[k] = left;
                out.push(c);
            }
            rest.ifs[k] = m.ifs[k];
        }
    }
    /// Number of packets (as a float), for "how much" comparisons.
    pub fn volume(&self) -> f64 {
        let mut v = 1f64;
        for d in 0..DIMS {
            v *= self.iv[d].size();
        }
        v * f64::from(self.ifs[0].count_ones()) * f64::from(self.ifs[1].count_ones())
    }
}

/// A condition on the cube dimensions, borrowed from compiled rules.
#[derive(Clone, Debug)]
pub enum Region<'a> {
    All,
    Nothing,
    Dim(usize, &'a IvSet),
    If(usize, u128),
    And(Vec<Region<'a>>),
    Or(Vec<Region<'a>>),
    Not(Box<Region<'a>>),
}

/// Cut `c` into the parts inside `r` (`yes`) and outside (`no`); the parts are disjoint.
pub fn split(c: Cube, r: &Region, yes: &mut Vec<Cube>, no: &mut Vec<Cube>) {
    match r {
        Region::All => yes.push(c),
        Region::Nothing => no.push(c),
        Region::Dim(d, set) => split_dim(c, *d, set, yes, no),
        Region::If(k, mask) => split_if(c, *k, *mask, yes, no),
        Region::And(v) => {
            let mut cur = vec![c];
            for r in v {
                let mut next = Vec::with_capacity(cur.len());
                for x in cur {
                    split(x, r, &mut next, no);
                }
                if next.is_empty() {
                    return;
                }
                cur = next;
            }
            yes.extend(cur);
        }
        Region::Or(v) => {
            let mut rest = vec![c];
            for r in v {
                let mut next = Vec::with_capacity(rest.len());
                for x in rest {
                    split(x, r, yes, &mut next);
                }
                if next.is_empty() {
                    return;
                }
                rest = next;
            }
            no.extend(rest);
        }
        Region::Not(r) => split(c, r, no, yes),
    }
}

pub fn split_if(c: Cube, k: usize, mask: u128, yes: &mut Vec<Cube>, no: &mut Vec<Cube>) {
    let a = c.ifs[k] & mask;
    let b = c.ifs[k] & !mask;
    match (a != 0, b != 0) {
        (true, false) => yes.push(c),
        (false, true) => no.push(c),
        (true, true) => {
            let mut x = c.clone();
            x.ifs[k] = a;
            yes.push(x);
            let mut x = c;
            x.ifs[k] = b;
            no.push(x);
        }
        (false, false) => {}
    }
}

pub fn split_dim(c: Cube, d: usize, set: &IvSet, yes: &mut Vec<Cube>, no: &mut Vec<Cube>) {
    match set.relation(&c.iv[d]) {
        Some(true) => yes.push(c),
        Some(false) => no.push(c),
        None => {
            let inside = c.iv[d].intersect(set);
            let outside = c.iv[d].minus(set);
            let mut x = c.clone();
            x.iv[d] = inside;
            yes.push(x);
            let mut x = c;
            x.iv[d] = outside;
            no.push(x);
        }
    }
}

/// Merge cubes that agree on every dimension but one (uniting that one),
/// until nothing merges; the union is unchanged.
pub fn coalesce(cubes: &mut Vec<Cube>) {
    if cubes.len() < 2 {
        return;
    }
    // Two rounds catch nearly everything; more rarely pay for themselves.
    for _ in 0..2 {
        let before = cubes.len();
        for d in 0..DIMS + 2 {
            merge_along(cubes, d);
        }
        if cubes.len() == before {
            break;
        }
    }
}

fn merge_along(cubes: &mut Vec<Cube>, d: usize) {
    use std::collections::HashMap;
    use std::hash::{BuildHasher, Hash, Hasher};
    // Hash every dimension but `d`; equal hashes are checked exactly, so the
    // hash decides speed, never the answer. foldhash, seeded per run: SipHash
    // was a fifth of the over-permissive analysis, and the cubes come from
    // the rulesets read, so an unseeded hash could be made to collide.
    let seed = foldhash::fast::RandomState::default();
    let hash = |c: &Cube| {
        let mut h = seed.build_hasher();
        for (i, x) in c.iv.iter().enumerate() {
            if i != d {
                x.hash(&mut h);
            }
        }
        for k in 0..2 {
            if DIMS + k != d {
                c.ifs[k].hash(&mut h);
            }
        }
        h.finish()
    };
    let same = |a: &Cube, b: &Cube| {
        (0..DIMS).all(|i| i == d || a.iv[i] == b.iv[i])
            && (0..2).all(|k| DIMS + k == d || a.ifs[k] == b.ifs[k])
    };
    // Find the merges by reference first: most passes merge nothing, and
    // then no cube (hundreds of bytes each) is moved at all.
    let mut index: HashMap<u64, Vec<usize>> = HashMap::with_capacity(cubes.len());
    let mut into: Vec<(usize, usize)> = Vec::new();
    for (j, c) in cubes.iter().enumerate() {
        let slot = index.entry(hash(c)).or_default();
        match slot.iter().copied().find(|&i| same(&cubes[i], c)) {
            Some(i) => into.push((i, j)),
            None => slot.push(j),
        }
    }
    if into.is_empty() {
        return;
    }
    let mut gone = vec![false; cubes.len()];
    for (i, j) in into {
        // `i` is never merged away itself (it was first in its slot), and
        // merging along `d` leaves the other dimensions, so it stays equal
        // to the rest of its slot.
        if d < DIMS {
            let u = cubes[i].iv[d].union(&cubes[j].iv[d]);
            cubes[i].iv[d] = u;
        } else {
            let x = cubes[j].ifs[d - DIMS];
            cubes[i].ifs[d - DIMS] |= x;
        }
        gone[j] = true;
    }
    let mut k = 0;
    cubes.retain(|_| {
        k += 1;
        !gone[k - 1]
    });
}

/// `a − b` for unions of cubes.
pub fn subtract(a: &[Cube], b: &[Cube]) -> Vec<Cube> {
    let mut cur: Vec<Cube> = a.to_vec();
    for sub in b {
        let mut next = Vec::with_capacity(cur.len());
        for c in &cur {
            c.minus(sub, &mut next);
        }
        cur = next;
        if cur.is_empty() {
            break;
        }
    }
    cur
}

/// The exact CIDR prefixes covering an interval (`bits` = 32 or 128).
pub fn prefixes(iv: Iv, bits: u32) -> Vec<(u128, u32)> {
    let mut out = Vec::new();
    let mut lo = iv.lo;
    loop {
        // The largest aligned block starting at lo that fits.
        let mut size_log = if lo == 0 {
            bits
        } else {
            lo.trailing_zeros().min(bits)
        };
        loop {
            let last = if size_log >= 128 {
                u128::MAX
            } else {
                lo + ((1u128 << size_log) - 1)
            };
            if last <= iv.hi {
                out.push((lo, bits - size_log));
                if last == iv.hi {
                    return out;
                }
                lo = last + 1;
                break;
            }
            size_log -= 1;
        }
    }
}

impl fmt::Display for Iv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl fmt::Display for IvSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, iv) in self.ivs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{iv}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[(u128, u128)]) -> IvSet {
        IvSet::from_ivs(v.iter().map(|&(a, b)| Iv::new(a, b)).collect())
    }

    #[test]
    fn sets_normalise_and_complement() {
        let s = set(&[(5, 9), (1, 2), (3, 4), (20, 20)]);
        assert_eq!(s.ivs.to_vec(), vec![Iv::new(1, 9), Iv::new(20, 20)]);
        let c = s.complement(30);
        assert_eq!(
            c.ivs.to_vec(),
            vec![Iv::new(0, 0), Iv::new(10, 19), Iv::new(21, 30)]
        );
        assert_eq!(c.complement(30), s);
        assert_eq!(IvSet::full(7).complement(7), IvSet::empty());
        assert_eq!(s.classify(&Iv::new(2, 3)), Some(true));
        assert_eq!(s.classify(&Iv::new(10, 19)), Some(false));
        assert_eq!(s.classify(&Iv::new(8, 12)), None);
        assert_eq!(s.minus(&set(&[(3, 5), (20, 25)])), set(&[(1, 2), (6, 9)]));
        assert_eq!(s.minus(&set(&[(0, 100)])), IvSet::empty());
        assert_eq!(s.union(&c), IvSet::full(30));
        assert_eq!(
            s.intersect(&set(&[(2, 6), (18, 22)])),
            set(&[(2, 6), (20, 20)])
        );
        assert_eq!(s.relation(&set(&[(1, 1), (20, 20)])), Some(true));
        assert_eq!(s.relation(&set(&[(10, 11), (25, 26)])), Some(false));
        assert_eq!(s.relation(&set(&[(1, 1), (25, 26)])), None);
    }

    #[test]
    fn split_partitions_exactly() {
        let c = Cube::full(false, 0b11, 0b1);
        let s = set(&[(22, 22), (80, 90)]);
        let (mut y, mut n) = (vec![], vec![]);
        split_dim(c.clone(), DPORT, &s, &mut y, &mut n);
        assert_eq!((y.len(), n.len()), (1, 1), "a union stays one cube");
        let vol = |v: &[Cube]| v.iter().map(Cube::volume).sum::<f64>();
        assert_eq!(vol(&y) + vol(&n), c.volume());
        let (mut y2, mut n2) = (vec![], vec![]);
        let r = Region::Not(Box::new(Region::Or(vec![
            Region::Dim(DPORT, &s),
            Region::If(IIF, 0b1),
        ])));
        split(c.clone(), &r, &mut y2, &mut n2);
        assert_eq!(vol(&y2) + vol(&n2), c.volume());
        assert!(y2
            .iter()
            .all(|x| x.ifs[IIF] == 0b10 && s.relation(&x.iv[DPORT]) == Some(false)));
    }

    #[test]
    fn coalesce_restores_the_box() {
        let c = Cube::full(false, 0b111, 0b1);
        let s = set(&[(22, 22), (80, 90)]);
        let (mut y, mut n) = (vec![], vec![]);
        split_dim(c.clone(), DPORT, &s, &mut y, &mut n);
        let mut more = vec![];
        for x in y.into_iter().chain(n) {
            split_if(x, IIF, 0b10, &mut more, &mut vec![]);
        }
        let mut rest = vec![];
        split_if(c.clone(), IIF, !0b10, &mut rest, &mut vec![]);
        more.extend(rest);
        coalesce(&mut more);
        assert_eq!(more, vec![c]);
    }

    #[test]
    fn minus_and_prefixes() {
        let a = Cube::full(false, 1, 1);
        let mut b = a.clone();
        b.set(SRC, Iv::new(10, 20));
        b.set(DPORT, Iv::point(22));
        let rest = subtract(std::slice::from_ref(&a), std::slice::from_ref(&b));
        let vol: f64 = rest.iter().map(Cube::volume).sum();
        assert_eq!(vol + b.volume(), a.volume());
        assert_eq!(
            prefixes(Iv::new(0xc0000200, 0xc00002ff), 32),
            vec![(0xc0000200, 24)]
        );
        assert_eq!(prefixes(Iv::new(1, 6), 32).len(), 4);
        assert_eq!(prefixes(Iv::new(0, u32::MAX as u128), 32), vec![(0, 0)]);
        assert_eq!(prefixes(Iv::new(0, u128::MAX), 128), vec![(0, 0)]);
    }
}
