//! Rules that make no difference, found symbolically per chain:
//! - **shadowed**: earlier rules catch every packet the rule would match, and
//!   at least one of them decides differently (the rule looks like it does
//!   something, and never does);
//! - **redundant**: earlier rules catch all its packets with the same verdict,
//!   or the rules after it (or the chain's policy) decide its packets the
//!   same way anyway — removing it changes nothing;
//! - **never matches**: its own matches contradict each other.
//!
//! Each chain is taken on its own, entered by any packet in any conntrack
//! state with unknown marks, so a rule is only called dead when no caller
//! could make a difference. Undecidable matches never count as covering.

use std::collections::HashMap;

use serde::Serialize;

use super::load::{HostRules, Loc};
use crate::netfilter::{CtDirection, CtState, CtStatus, Family, Hook, Policy};
use crate::sim::compile::{Atom, CAction, CRule, Compiled, StAtom};
use crate::sim::engine::{CtBase, Engine, State};
use crate::sim::index::RuleIndex;
use crate::sim::space::*;
use crate::sim::{compile, Ct, HostInfo, SetDb};

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Shadowed,
    Redundant,
    NeverMatches,
}

#[derive(Clone, Debug, Serialize)]
pub struct Redundancy {
    pub kind: Kind,
    pub rule: Loc,
    /// The rules that catch its packets first, or that decide them the same way after it.
    pub by: Vec<Loc>,
    pub note: String,
}

/// Every conntrack situation a chain can be entered with; marks unknown.
/// Connections differ in whether NAT changed them only when a rule asks
/// (`--ctstate DNAT`, `ct status snat`): then every combination is an entry.
fn entry_states(c: &Compiled) -> Vec<State> {
    let all = c.ifaces.all();
    let nat_combos: &[[bool; 2]] = if asks_nat_bits(c) {
        &[[false, false], [true, false], [false, true], [true, true]]
    } else {
        &[[false, false]]
    };
    let mut out = Vec::new();
    let mut mk = |base: CtBase, dir: CtDirection, untracked: bool| {
        for nat in nat_combos {
            if untracked && *nat != [false, false] {
                continue;
            }
            let mut ct = Ct::new_conn(base, dir);
            ct.seen = true;
            ct.untracked = untracked;
            ct.first = true;
            ct.status = (0, 0xff);
            ct.nat_bits = *nat;
            let mut s = State::new(Cube::full(c.v6, all, all), ct, false);
            s.mark = None;
            s.ctmark = None;
            s.local_origin = true;
            out.push(s);
        }
    };
    mk(CtBase::New, CtDirection::Original, false);
    mk(CtBase::Established, CtDirection::Original, false);
    mk(CtBase::Established, CtDirection::Reply, false);
    mk(CtBase::Related, CtDirection::Original, false);
    mk(CtBase::Related, CtDirection::Reply, false);
    mk(CtBase::Invalid, CtDirection::Original, false);
    mk(CtBase::New, CtDirection::Original, true);
    out
}

/// Does any rule test the connection's NAT bits?
fn asks_nat_bits(c: &Compiled) -> bool {
    fn atom(a: &Atom) -> bool {
        match a {
            Atom::St(StAtom::CtState(v), _) => {
                v.contains(&CtState::Dnat) || v.contains(&CtState::Snat)
            }
            Atom::St(StAtom::CtStatus(v), _) => {
                v.contains(&CtStatus::Dnat) || v.contains(&CtStatus::Snat)
            }
            Atom::And(v) | Atom::Or(v) => v.iter().any(atom),
            _ => false,
        }
    }
    c.chains
        .iter()
        .any(|ch| ch.rules.iter().any(|r| r.atoms.iter().any(atom)))
}

fn terminal(a: &CAction) -> bool {
    matches!(
        a,
        CAction::Accept
            | CAction::Drop
            | CAction::Reject
            | CAction::Return
            | CAction::Goto(_)
            | CAction::Dnat(_)
            | CAction::Snat(_)
            | CAction::Masquerade(_)
            | CAction::Redirect(_)
            | CAction::Netmap { .. }
    )
}

/// Same decision for the packet (actions compared as compiled).
fn same(a: &CAction, b: &CAction) -> bool {
    a == b
}

fn has_unknown(r: &CRule) -> bool {
    fn walk(a: &Atom) -> bool {
        match a {
            Atom::St(crate::sim::compile::StAtom::Unknown(_), _) => true,
            Atom::And(v) | Atom::Or(v) => v.iter().any(walk),
            _ => false,
        }
    }
    r.atoms.iter().any(walk)
}

/// Apply a non-terminal action to a state that goes on (sweep semantics).
fn go_on(a: &CAction, mut s: State) -> State {
    match a {
        CAction::Mark { value, mask } => {
            s.mark = s
                .mark
                .map(|m| (m & !mask) ^ value)
                .or((*mask == u32::MAX).then_some(*value));
        }
        // A called chain may change marks and conntrack details.
        CAction::Jump(_) | CAction::ConnMark(_) | CAction::Unknown(_) => {
            s.mark = None;
            s.ctmark = None;
        }
        CAction::Notrack => {
            s.ct.untracked = true;
        }
        _ => {}
    }
    s
}

struct Sweep<'a> {
    e: Engine<'a>,
    hook: Hook,
}

impl Sweep<'_> {
    /// Cut a batch by a rule: the matched and maybe-matched parts come out,
    /// the rest stays in `batch` (untouched states are not moved).
    fn cut(&self, r: &CRule, batch: &mut Vec<State>) -> (Vec<State>, Vec<State>) {
        let (mut ys, mut us, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        let (mut y, mut u, mut n) = (Vec::new(), Vec::new(), Vec::new());
        let mut i = 0;
        while i < batch.len() {
            y.clear();
            u.clear();
            n.clear();
            if !self
                .e
                .eval_rule(r, &batch[i], self.hook, &mut y, &mut u, &mut n)
            {
                i += 1;
                continue;
            }
            let s = batch.swap_remove(i);
            let with = |c: Cube| {
                let mut x = s.clone();
                x.cube = c;
                x
            };
            ys.extend(y.drain(..).map(with));
            us.extend(u.drain(..).map(with));
            rest.extend(n.drain(..).map(with));
        }
        batch.append(&mut rest);
        (ys, us)
    }

    /// Whether a rule matches (or may match) any state of the batch.
    fn touches(&self, r: &CRule, batch: &[State]) -> bool {
        let (mut y, mut u, mut n) = (Vec::new(), Vec::new(), Vec::new());
        batch.iter().any(|s| {
            y.clear();
            u.clear();
            n.clear();
            self.e.eval_rule(r, s, self.hook, &mut y, &mut u, &mut n)
        })
    }

    /// Do rules `from..` of chain `id` (or its policy) decide every state in
    /// `batch` with `act`? Returns the deciding rules' indices (`usize::MAX`:
    /// the policy), or None when something else may happen.
    /// `later` are the rules after it whose boxes meet the states' (the
    /// others cannot touch them).
    fn decides_same(
        &self,
        id: usize,
        idx: &RuleIndex,
        later: &[usize],
        act: &CAction,
        batch: Vec<State>,
    ) -> Option<Vec<usize>> {
        let chain = &self.e.c.chains[id];
        let end = chain.base.as_ref().map(|b| match b.policy {
            Policy::Accept => CAction::Accept,
            Policy::Drop => CAction::Drop,
        });
        if !end.as_ref().is_some_and(|p| same(p, act)) && !covered(idx, later, &batch) {
            // Some of its packets meet no later rule and end differently.
            return None;
        }
        let mut batch = batch;
        let mut by = Vec::new();
        for &ri in later {
            let r = &chain.rules[ri];
            if batch.is_empty() {
                return Some(by);
            }
            let (y, u) = self.cut(r, &mut batch);
            if !u.is_empty() {
                return None;
            }
            if !y.is_empty() {
                if r.effects
                    .iter()
                    .any(|e| !matches!(e, CAction::Continue | CAction::Log))
                {
                    return None;
                }
                match &r.action {
                    CAction::Continue | CAction::Log => {}
                    a if same(a, act) => {
                        if !by.contains(&ri) {
                            by.push(ri);
                        }
                        continue;
                    }
                    _ => return None,
                }
                batch.extend(y);
            }
        }
        if batch.is_empty() {
            return Some(by);
        }
        let policy = chain.base.as_ref().map(|b| b.policy)?;
        let p = match policy {
            Policy::Accept => CAction::Accept,
            Policy::Drop => CAction::Drop,
        };
        if same(&p, act) {
            by.push(usize::MAX);
            Some(by)
        } else {
            None
        }
    }
}

/// How the states reaching each rule are found. Both give the same
/// findings; they differ in cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// One batch swept down the chain: every rule cuts what is left. Cheap
    /// when rules overlap a lot; for N disjoint rules what is left is N
    /// pieces (or one piece with N holes), so the sweep grows with N².
    Sweep,
    /// Per rule, only the part of the space inside its box, through only the
    /// earlier rules whose boxes meet it: linear when rules are disjoint.
    Local,
}

/// Local when the rules' boxes meet few others on average.
fn choose(idx: &RuleIndex, n: usize) -> Mode {
    const SMALL: usize = 64;
    const AVG: usize = 48;
    if n <= SMALL {
        return Mode::Sweep;
    }
    let mut total = 0usize;
    for b in &idx.bounds {
        total += idx.estimate(b);
        if total > AVG * n {
            return Mode::Sweep;
        }
    }
    Mode::Local
}

/// The batch going on after rule `r` cut it into `y` (matched) and `u` (maybe).
fn go_past(r: &CRule, batch: &mut Vec<State>, y: Vec<State>, u: Vec<State>) {
    batch.extend(u);
    if r.effects
        .iter()
        .any(|e| !matches!(e, CAction::Continue | CAction::Log))
    {
        // Statements change the packet: its later fate is unknown here.
        batch.extend(y.into_iter().map(|mut s| {
            s.mark = None;
            s.ctmark = None;
            s
        }));
    } else if !terminal(&r.action) {
        batch.extend(y.into_iter().map(|s| go_on(&r.action, s)));
    }
}

/// Whether the boxes of `rules` could together cover every state's packets.
/// A necessary condition, by volume: when their volumes inside a state's
/// cube add up to less than the cube, some packets meet none of them. It
/// keeps a wide rule (`-i lo -j ACCEPT`) in front of 50,000 narrow ones from
/// sweeping its packets through all of them only to reach the policy.
fn covered(idx: &RuleIndex, rules: &[usize], batch: &[State]) -> bool {
    // Volumes are floats; the margin keeps rounding from ever saying "no"
    // for a cover that is exact.
    const MARGIN: f64 = 1e-9;
    batch.iter().all(|s| {
        let need = s.cube.volume() * (1.0 - MARGIN);
        let mut have = 0.0;
        for &j in rules {
            if let Some(c) = idx.bounds[j].clip(&s.cube) {
                have += c.volume();
                if have >= need {
                    return true;
                }
            }
        }
        have >= need
    })
}

/// Findings for one compiled family, keyed by (table, chain position, rule).
fn family(
    hr: &HostRules,
    c: &Compiled,
    info: &HostInfo,
    force: Option<Mode>,
) -> HashMap<(usize, usize, usize), Redundancy> {
    let mut out = HashMap::new();
    for (id, chain) in c.chains.iter().enumerate() {
        let hook = chain.base.as_ref().map_or(Hook::Forward, |b| b.hook);
        let sw = Sweep {
            e: Engine::new(c, info),
            hook,
        };
        let idx = RuleIndex::new(&chain.rules, c.v6);
        let mode = force.unwrap_or_else(|| choose(&idx, chain.rules.len()));
        let entry = entry_states(c);
        let mut batch = entry.clone();
        let mut last_size = batch.len();
        // Rules dead in this chain, and "the later rules do the same" findings
        // with the rules they rely on: a finding that relies on a dead rule is
        // dropped (of two duplicates only the second is reported).
        let mut dead = vec![false; chain.rules.len()];
        let mut later: Vec<(usize, Vec<usize>)> = Vec::new();
        for (ri, r) in chain.rules.iter().enumerate() {
            let key = (chain.table, chain.pos, ri);
            let bounds = &idx.bounds[ri];
            let earlier = idx.candidates(bounds, 0..ri);
            let (y, u) = match mode {
                Mode::Sweep => sw.cut(r, &mut batch),
                Mode::Local => {
                    let mut local: Vec<State> = entry
                        .iter()
                        .filter_map(|s| {
                            bounds.clip(&s.cube).map(|cube| {
                                let mut x = s.clone();
                                x.cube = cube;
                                x
                            })
                        })
                        .collect();
                    let mut size = local.len();
                    for &j in &earlier {
                        if local.is_empty() {
                            break;
                        }
                        let rj = &chain.rules[j];
                        let (y, u) = sw.cut(rj, &mut local);
                        go_past(rj, &mut local, y, u);
                        if local.len() > 64 && local.len() > 2 * size {
                            coalesce_states(&mut local);
                            size = local.len();
                        }
                    }
                    sw.cut(r, &mut local)
                }
            };
            if y.is_empty() && u.is_empty() {
                dead[ri] = true;
                // Dead here: why?
                let (my, mu) = sw.cut(r, &mut entry.clone());
                if my.is_empty() && mu.is_empty() {
                    out.insert(
                        key,
                        Redundancy {
                            kind: Kind::NeverMatches,
                            rule: hr.loc(c, id, ri),
                            by: vec![],
                            note: "its matches exclude each other".into(),
                        },
                    );
                } else if !has_unknown(r) {
                    let mut covers = Vec::new();
                    let mut differ = false;
                    let mine: Vec<State> = my.into_iter().chain(mu).collect();
                    // Rules whose boxes miss its own cannot touch its packets.
                    for &j in &earlier {
                        let rj = &chain.rules[j];
                        if !terminal(&rj.action) {
                            continue;
                        }
                        if !sw.touches(rj, &mine) {
                            continue;
                        }
                        differ |= !same(&rj.action, &r.action);
                        if covers.len() < 3 {
                            covers.push(hr.loc(c, id, j));
                        }
                    }
                    let shadowed = differ && terminal(&r.action);
                    out.insert(
                        key,
                        Redundancy {
                            kind: if shadowed { Kind::Shadowed } else { Kind::Redundant },
                            rule: hr.loc(c, id, ri),
                            note: if shadowed {
                                "earlier rules catch every packet it matches, and decide differently".into()
                            } else {
                                "earlier rules catch every packet it matches".into()
                            },
                            by: covers,
                        },
                    );
                }
            } else if u.is_empty()
                && matches!(r.action, CAction::Accept | CAction::Drop | CAction::Reject)
                && r.effects.is_empty()
                && !has_unknown(r)
            {
                let after = idx.candidates(bounds, ri + 1..chain.rules.len());
                if let Some(by) = sw.decides_same(id, &idx, &after, &r.action, y.clone()) {
                    if !by.is_empty() {
                        later.push((ri, by.clone()));
                        out.insert(
                            key,
                            Redundancy {
                                kind: Kind::Redundant,
                                rule: hr.loc(c, id, ri),
                                by: by
                                    .iter()
                                    .take(3)
                                    .map(|&j| hr.loc(c, id, j))
                                    .collect(),
                                note: if by == [usize::MAX] {
                                    "without it, the chain's policy decides its packets the same way".into()
                                } else {
                                    "without it, the rules after it decide its packets the same way".into()
                                },
                            },
                        );
                    }
                }
            }
            if mode == Mode::Sweep {
                // The batch going on.
                go_past(r, &mut batch, y, u);
                if batch.len() > 64 && batch.len() > 2 * last_size {
                    coalesce_states(&mut batch);
                    last_size = batch.len();
                }
            }
        }
        for (ri, by) in later {
            if by.iter().any(|&j| j != usize::MAX && dead[j]) {
                out.remove(&(chain.table, chain.pos, ri));
            }
        }
    }
    out
}

/// Merge states that differ only in their cube.
fn coalesce_states(batch: &mut Vec<State>) {
    let mut groups: Vec<(State, Vec<Cube>)> = Vec::new();
    for s in batch.drain(..) {
        match groups.iter_mut().find(|(g, _)| {
            g.ct == s.ct
                && g.mark == s.mark
                && g.ctmark == s.ctmark
                && g.xf == s.xf
                && g.tcp_flags == s.tcp_flags
        }) {
            Some((_, v)) => v.push(s.cube),
            None => {
                let c = s.cube.clone();
                groups.push((s, vec![c]));
            }
        }
    }
    for (g, mut cubes) in groups {
        coalesce(&mut cubes);
        for c in cubes {
            let mut x = g.clone();
            x.cube = c;
            batch.push(x);
        }
    }
}

/// Redundant, shadowed and contradictory rules of a host's ruleset.
pub fn find(hr: &HostRules) -> Vec<Redundancy> {
    let sets = SetDb {
        ipsets: hr.ipsets.as_ref(),
    };
    let info = HostInfo::default();
    let mut per: Vec<HashMap<(usize, usize, usize), Redundancy>> = Vec::new();
    let mut fams = Vec::new();
    for v6 in [false, true] {
        if hr.has_family(v6) {
            let c = compile(&hr.ruleset, &sets, &info, v6);
            per.push(family(hr, &c, &info, None));
            fams.push(v6);
        }
    }
    // A rule of an inet table must be dead for both families.
    let mut out: Vec<Redundancy> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, m) in per.iter().enumerate() {
        for (key, r) in m {
            let t = &hr.ruleset.tables[key.0];
            if t.family == Family::Inet
                && per
                    .iter()
                    .enumerate()
                    .any(|(j, o)| j != i && !o.contains_key(key))
            {
                continue;
            }
            if seen.insert(*key) {
                out.push(r.clone());
            }
        }
    }
    let _ = fams;
    out.sort_by_key(|a| (a.rule.file.clone(), a.rule.line));
    out
}
