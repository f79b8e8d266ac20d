//! Which rules of a chain can touch a box of packets, found without trying
//! every rule. Rulesets of tens of thousands of rules (ban lists, country
//! blocks: one address per rule) are common, and an analysis that tries each
//! rule against each piece of the packet space grows with their square; most
//! of those tries are rules whose addresses or ports lie elsewhere.
//!
//! Each rule gets a bounding box: the hull of its top-level header matches
//! (addresses, protocol, ports, interfaces). A rule whose box misses a cube
//! cannot match any packet of it, so `Engine::eval_rule` would leave the cube
//! untouched: skipping the rule changes nothing. The box only ever
//! over-approximates (a negated or nested match counts as "anything"), so a
//! candidate may still miss; it is then tried as before.

use super::compile::{Atom, CAction, CRule};
use super::space::*;

/// The dimensions indexed: every header dimension.
const INDEXED: [usize; DIMS] = [SRC, DST, PROTO, SPORT, DPORT];

/// The hull of what a rule can match, per dimension and interface set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub iv: [Iv; DIMS],
    pub ifs: [u128; 2],
    /// A match with an empty set: the rule matches nothing at all.
    pub empty: bool,
}

impl Bounds {
    /// The box of a rule compiled for a family (`v6`).
    pub fn of(r: &CRule, v6: bool) -> Bounds {
        let mut b = Bounds {
            iv: std::array::from_fn(|d| Iv::new(0, dim_max(d, v6))),
            ifs: [u128::MAX; 2],
            empty: false,
        };
        for a in &r.atoms {
            match a {
                Atom::Dim { d, set } => {
                    if set.is_empty() {
                        b.empty = true;
                        continue;
                    }
                    match b.iv[*d].meet(&set.hull()) {
                        Some(m) => b.iv[*d] = m,
                        None => b.empty = true,
                    }
                }
                Atom::If { k, mask } => b.ifs[*k] &= *mask,
                _ => {}
            }
        }
        b.empty |= b.ifs.contains(&0);
        b
    }

    /// Whether the box and a cube share a packet (hulls only: "maybe").
    pub fn meets_cube(&self, c: &Cube) -> bool {
        !self.empty
            && (0..DIMS).all(|d| c.iv[d].overlaps(&self.iv[d]))
            && (0..2).all(|k| c.ifs[k] & self.ifs[k] != 0)
    }

    fn meets(&self, o: &Bounds) -> bool {
        !self.empty
            && !o.empty
            && (0..DIMS).all(|d| self.iv[d].meet(&o.iv[d]).is_some())
            && (0..2).all(|k| self.ifs[k] & o.ifs[k] != 0)
    }

    /// The cube `c` cut down to the box (None when they miss).
    pub fn clip(&self, c: &Cube) -> Option<Cube> {
        if self.empty {
            return None;
        }
        let mut out = c.clone();
        for d in 0..DIMS {
            out.iv[d] = c.iv[d].intersect(&IvSet::one(self.iv[d]));
            if out.iv[d].is_empty() {
                return None;
            }
        }
        for k in 0..2 {
            out.ifs[k] &= self.ifs[k];
            if out.ifs[k] == 0 {
                return None;
            }
        }
        Some(out)
    }
}

/// Intervals of one dimension, answering "which overlap [lo, hi]" in time
/// proportional to the answer (plus a logarithm), and counting them in a
/// logarithm.
#[derive(Default)]
struct Axis {
    /// Rules whose hull is the whole dimension, in rule order.
    wide: Vec<usize>,
    /// The others: (lo, hi, rule), by `lo`.
    by_lo: Vec<(u128, u128, usize)>,
    /// Their `hi`s, sorted (for counting).
    his: Vec<u128>,
    /// Max `hi` over each node of an implicit segment tree on `by_lo`.
    max_hi: Vec<u128>,
}

impl Axis {
    fn build(items: Vec<(u128, u128, usize)>, wide: Vec<usize>) -> Axis {
        let mut by_lo = items;
        by_lo.sort_unstable();
        let mut his: Vec<u128> = by_lo.iter().map(|x| x.1).collect();
        his.sort_unstable();
        let n = by_lo.len();
        let mut max_hi = vec![0u128; 2 * n.next_power_of_two().max(1)];
        let base = max_hi.len() / 2;
        for (i, x) in by_lo.iter().enumerate() {
            max_hi[base + i] = x.1;
        }
        for i in (1..base).rev() {
            max_hi[i] = max_hi[2 * i].max(max_hi[2 * i + 1]);
        }
        Axis {
            wide,
            by_lo,
            his,
            max_hi,
        }
    }

    fn count(&self, q: Iv) -> usize {
        let ends_before = self.his.partition_point(|&h| h < q.lo);
        let starts_after = self.by_lo.len() - self.by_lo.partition_point(|x| x.0 <= q.hi);
        self.wide.len() + self.by_lo.len() - ends_before - starts_after
    }

    fn collect(&self, q: Iv, out: &mut Vec<usize>) {
        out.extend_from_slice(&self.wide);
        // Only the first `end` start at or before q.hi; of those, descend
        // where some interval reaches q.lo.
        let end = self.by_lo.partition_point(|x| x.0 <= q.hi);
        if end == 0 {
            return;
        }
        let base = self.max_hi.len() / 2;
        let mut stack = vec![(1usize, 0usize, base)];
        while let Some((node, lo, len)) = stack.pop() {
            if lo >= end || self.max_hi[node] < q.lo {
                continue;
            }
            if len == 1 {
                out.push(self.by_lo[lo].2);
                continue;
            }
            let half = len / 2;
            stack.push((2 * node + 1, lo + half, half));
            stack.push((2 * node, lo, half));
        }
    }
}

/// A chain's rules by their boxes.
pub struct RuleIndex {
    pub bounds: Vec<Bounds>,
    axes: Vec<Axis>,
}

impl RuleIndex {
    pub fn new(rules: &[CRule], v6: bool) -> RuleIndex {
        let bounds: Vec<Bounds> = rules.iter().map(|r| Bounds::of(r, v6)).collect();
        let axes = INDEXED
            .iter()
            .map(|&d| {
                let full = Iv::new(0, dim_max(d, v6));
                let (mut items, mut wide) = (Vec::new(), Vec::new());
                for (i, b) in bounds.iter().enumerate() {
                    if b.empty {
                        continue;
                    }
                    if b.iv[d] == full {
                        wide.push(i);
                    } else {
                        items.push((b.iv[d].lo, b.iv[d].hi, i));
                    }
                }
                Axis::build(items, wide)
            })
            .collect();
        RuleIndex { bounds, axes }
    }

    /// How many rules the best axis would offer for `q` (an upper bound of
    /// `candidates(q, ..).len()`).
    pub fn estimate(&self, q: &Bounds) -> usize {
        if q.empty {
            return 0;
        }
        (0..INDEXED.len())
            .map(|a| self.axes[a].count(q.iv[INDEXED[a]]))
            .min()
            .unwrap_or(0)
    }

    /// The rules in `range` whose boxes meet `q`, in rule order.
    pub fn candidates(&self, q: &Bounds, range: std::ops::Range<usize>) -> Vec<usize> {
        if q.empty || range.is_empty() {
            return Vec::new();
        }
        let best = (0..INDEXED.len())
            .min_by_key(|&a| self.axes[a].count(q.iv[INDEXED[a]]))
            .expect("axes");
        let mut out = Vec::new();
        self.axes[best].collect(q.iv[INDEXED[best]], &mut out);
        out.retain(|&i| range.contains(&i) && self.bounds[i].meets(q));
        out.sort_unstable();
        out
    }

    /// The box of a whole cube (its hulls), to ask which rules may touch it.
    pub fn cube_bounds(c: &Cube) -> Bounds {
        Bounds {
            iv: std::array::from_fn(|d| {
                if c.iv[d].is_empty() {
                    Iv::new(0, 0)
                } else {
                    c.iv[d].hull()
                }
            }),
            ifs: c.ifs,
            empty: c.iv.iter().any(IvSet::is_empty) || c.ifs.contains(&0),
        }
    }
}

/// Consecutive rules of a chain split into groups by dimension `d`: each
/// group is consecutive rules matching only inside the group's interval of
/// `d`, and the groups' intervals are pairwise disjoint. Ban lists,
/// per-address allow lists and per-address MAC checks are such runs. A packet
/// meets the rules of at most one group, and nothing in a run rewrites `d`
/// (NAT is left out), so each state of a batch need only go through the
/// groups its interval meets, and what none holds passes the run in one
/// piece, instead of every state trying every rule (which grows with the
/// square of the run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub start: usize,
    /// One past the last rule.
    pub end: usize,
    pub d: usize,
    /// By interval.
    pub groups: Vec<Group>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub iv: Iv,
    pub rules: std::ops::Range<usize>,
}

impl Run {
    /// The groups whose intervals meet `hull`, by interval.
    pub fn meeting(&self, hull: Iv) -> &[Group] {
        let a = self.groups.partition_point(|g| g.iv.hi < hull.lo);
        let b = self.groups.partition_point(|g| g.iv.lo <= hull.hi);
        &self.groups[a..b.max(a)]
    }
}

/// Runs of fewer groups are cut rule by rule: the batch of states is small
/// anyway.
pub const MIN_RUN: usize = 16;

fn is_nat(a: &CAction) -> bool {
    matches!(
        a,
        CAction::Dnat(_)
            | CAction::Snat(_)
            | CAction::Masquerade(_)
            | CAction::Redirect(_)
            | CAction::Netmap { .. }
    )
}

/// The rule's interval on `d` when it can be in a run: no NAT, and a
/// top-level match on `d`.
fn run_iv(r: &CRule, d: usize) -> Option<Iv> {
    if is_nat(&r.action) || r.effects.iter().any(is_nat) {
        return None;
    }
    let mut hull: Option<Iv> = None;
    for a in &r.atoms {
        if let Atom::Dim { d: ad, set } = a {
            if *ad == d {
                if set.is_empty() {
                    return None;
                }
                let h = set.hull();
                hull = Some(match hull {
                    None => h,
                    Some(x) => x.meet(&h)?,
                });
            }
        }
    }
    hull
}

/// Whether `iv` meets an interval of `taken` (disjoint, keyed by `lo`): only
/// the nearest one starting at or below `iv.hi` can.
fn meets_any(taken: &std::collections::BTreeMap<u128, u128>, iv: Iv) -> bool {
    taken
        .range(..=iv.hi)
        .next_back()
        .is_some_and(|(_, &hi)| hi >= iv.lo)
}

/// The run starting at rule `i` along `d`, however short.
fn run_from(rules: &[CRule], i: usize, d: usize) -> Run {
    let mut taken = std::collections::BTreeMap::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut j = i;
    while let Some(iv) = rules.get(j).and_then(|r| run_iv(r, d)) {
        match groups.last_mut() {
            // Overlapping the group before it: the group grows, as long as
            // it stays clear of the others.
            Some(g) if g.iv.meet(&iv).is_some() => {
                let grown = Iv::new(g.iv.lo.min(iv.lo), g.iv.hi.max(iv.hi));
                if meets_any(&taken, grown) {
                    break;
                }
                g.iv = grown;
                g.rules.end = j + 1;
            }
            _ => {
                if meets_any(&taken, iv) {
                    break;
                }
                if let Some(g) = groups.last() {
                    taken.insert(g.iv.lo, g.iv.hi);
                }
                groups.push(Group {
                    iv,
                    rules: j..j + 1,
                });
            }
        }
        j += 1;
    }
    groups.sort_unstable_by_key(|g| g.iv.lo);
    Run {
        start: i,
        end: j,
        d,
        groups,
    }
}

/// The chain's runs of at least [`MIN_RUN`] groups, greedily from the front:
/// at each rule the dimension giving the longest run wins.
pub fn runs(rules: &[CRule]) -> Vec<Run> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rules.len() {
        let best = [SRC, DST, SPORT, DPORT, PROTO]
            .into_iter()
            .map(|d| run_from(rules, i, d))
            .filter(|r| r.groups.len() >= MIN_RUN)
            .max_by_key(|r| (r.end, std::cmp::Reverse(r.d)));
        match best {
            Some(run) => {
                i = run.end;
                out.push(run);
            }
            None => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(atoms: Vec<Atom>) -> CRule {
        CRule {
            atoms,
            action: CAction::Accept,
            effects: vec![],
            line: None,
        }
    }

    fn src(lo: u128, hi: u128) -> Atom {
        Atom::Dim {
            d: SRC,
            set: IvSet::one(Iv::new(lo, hi)),
        }
    }

    /// The index answers exactly what trying every box answers, in rule order.
    #[test]
    fn candidates_are_the_boxes_that_meet() {
        let mut rules = Vec::new();
        for i in 0..300u128 {
            let a = (i * 7919) % 1000;
            rules.push(rule(vec![
                src(a, a + (i % 5) * 3),
                Atom::Dim {
                    d: DPORT,
                    set: IvSet::point((i % 40) + 1),
                },
            ]));
            if i % 50 == 0 {
                rules.push(rule(vec![]));
                rules.push(rule(vec![Atom::If { k: IIF, mask: 2 }]));
            }
        }
        let idx = RuleIndex::new(&rules, false);
        let queries = [
            (Iv::new(0, 999), Iv::new(0, 65535)),
            (Iv::new(10, 12), Iv::new(0, 65535)),
            (Iv::new(500, 500), Iv::new(3, 3)),
            (Iv::new(2000, 3000), Iv::new(0, 65535)),
            (Iv::new(0, u32::MAX as u128), Iv::new(7, 9)),
        ];
        for (s, p) in queries {
            let mut q = Bounds::of(&rule(vec![]), false);
            q.iv[SRC] = s;
            q.iv[DPORT] = p;
            for range in [0..rules.len(), 10..200, 150..151] {
                let want: Vec<usize> = range.clone().filter(|&i| idx.bounds[i].meets(&q)).collect();
                assert_eq!(idx.candidates(&q, range.clone()), want, "{s:?} {p:?}");
                assert!(idx.estimate(&q) >= want.len());
            }
        }
    }

    /// A box that misses a cube means the rule cannot touch it.
    #[test]
    fn a_missed_box_is_an_untouched_cube() {
        let b = Bounds::of(&rule(vec![src(5, 9), Atom::If { k: OIF, mask: 4 }]), false);
        let mut c = Cube::full(false, 7, 7);
        assert!(b.meets_cube(&c));
        c.iv[SRC] = IvSet::from_ivs(vec![Iv::new(0, 4), Iv::new(10, 20)]);
        assert!(b.clip(&c).is_none());
        let mut c = Cube::full(false, 7, 3);
        assert!(!b.meets_cube(&c));
        c.ifs[OIF] = 4;
        assert_eq!(b.clip(&c).unwrap().iv[SRC], IvSet::one(Iv::new(5, 9)));
        assert!(Bounds::of(&rule(vec![src(1, 2), src(3, 4)]), false).empty);
    }
}
