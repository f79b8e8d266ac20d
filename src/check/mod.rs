//! `amwall check` and `amwall explain`: existing rulesets against the flows
//! Amanda needs. Per flow PASS, BLOCKED (host, FILE:LINE, the rule, the chain
//! path, the message Amanda prints) or UNKNOWN; per host what the ruleset
//! accepts for new connections beyond the flows' need; redundant and
//! shadowed rules. Pure: reading files is `load`'s job, printing the CLI's.

pub mod explain;
pub mod flows;
pub mod load;
pub mod manager;
pub mod messages;
pub mod open;
pub mod redundant;
pub mod report;

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::model::{Deployment, HostId};
use crate::plan::Plan;
use crate::sim::engine::{show_set, End, State, Step};
use crate::sim::space::*;
use crate::sim::{compile, Compiled, HostInfo, LocalGuess, SetDb};
use crate::view::FlowView;

pub use flows::{Finding, FlowVerdict, Problem, Status};
pub use load::{HostRules, Loc, RulesFile};

/// A host's rules compiled for the check, with what the topology says about it.
pub struct HostCheck<'a> {
    pub rules: &'a HostRules,
    pub info: HostInfo,
    pub compiled: Compiled,
}

/// What the topology says about a host, for the evaluation.
pub fn host_info(d: &Deployment, h: HostId) -> HostInfo {
    let host = &d.hosts[h];
    let mut broadcast = Vec::new();
    // `check` judges IPv4 rulesets: an IPv6-only interface adds nothing here.
    for net in host
        .interfaces
        .iter()
        .filter_map(|i| d.networks[i.network].cidr)
    {
        if net.prefix_len() > 0 && net.prefix_len() < 31 {
            broadcast.push(IpAddr::V4(net.broadcast()));
        }
    }
    HostInfo {
        local: Some(
            host.interfaces
                .iter()
                .filter_map(|i| i.address.map(IpAddr::V4))
                .collect(),
        ),
        broadcast,
        iface_addr: host
            .interfaces
            .iter()
            .filter_map(|i| Some((i.name.clone(), IpAddr::V4(i.address?))))
            .collect(),
        ifaces: host.interfaces.iter().map(|i| i.name.clone()).collect(),
        guess: LocalGuess::None,
    }
}

/// A readable description of a box of packets.
pub fn cube_text(c: &Cube, comp: &Compiled, ifaces: bool) -> String {
    let v6 = comp.v6;
    let addr = |set: &IvSet| {
        if *set == IvSet::full(dim_max(SRC, v6)) {
            "any".to_string()
        } else {
            show_set(set, v6)
        }
    };
    let proto = &c.iv[PROTO];
    let mut s = if proto.is_point() {
        crate::netfilter::names::proto_name(proto.lo() as u8)
    } else if *proto == IvSet::full(255) {
        "any protocol".into()
    } else {
        format!("protocols {proto}")
    };
    let p = proto.lo() as u8;
    let ported = proto.is_point() && compile::has_ports(p);
    let port = |set: &IvSet| {
        if *set == IvSet::full(65535) {
            String::new()
        } else {
            format!(":{set}")
        }
    };
    s.push(' ');
    s.push_str(&addr(&c.iv[SRC]));
    if ported {
        s.push_str(&port(&c.iv[SPORT]));
    }
    s.push_str(" -> ");
    s.push_str(&addr(&c.iv[DST]));
    if ported {
        s.push_str(&port(&c.iv[DPORT]));
    }
    if proto.is_point() && compile::is_icmp(p) && c.iv[DPORT] != IvSet::full(0xffff) {
        s.push(' ');
        s.push_str(&icmp_text(&c.iv[DPORT]));
    }
    if ifaces {
        let none = comp.ifaces.class_of("");
        for (k, word) in [(IIF, "in"), (OIF, "out")] {
            let m = c.ifs[k];
            if m == none || m == 0 {
                continue;
            }
            if m == comp.ifaces.external() {
                s.push_str(&format!(" {word} any"));
            } else {
                s.push_str(&format!(" {word} {}", comp.ifaces.describe(m)));
            }
        }
    }
    s
}

/// ICMP types and codes (`type << 8 | code`) as text.
pub fn icmp_text(set: &IvSet) -> String {
    let parts: Vec<String> = set
        .ivs
        .iter()
        .map(|iv| {
            let (lo, hi) = (iv.lo, iv.hi);
            if lo & 0xff == 0 && hi & 0xff == 0xff {
                if lo >> 8 == hi >> 8 {
                    format!("{}", lo >> 8)
                } else {
                    format!("{}-{}", lo >> 8, hi >> 8)
                }
            } else if lo == hi {
                format!("{}/{}", lo >> 8, lo & 0xff)
            } else {
                format!("{}/{}-{}/{}", lo >> 8, lo & 0xff, hi >> 8, hi & 0xff)
            }
        })
        .collect();
    format!("type {}", parts.join(","))
}

/// The chains a state was in when it stopped (base chain first).
pub fn chain_path(c: &Compiled, s: &State) -> Vec<String> {
    let mut stack: Vec<usize> = Vec::new();
    for st in s.trace.iter().flatten() {
        match st {
            Step::Hook(_) => stack.clear(),
            Step::Enter { chain, how } => match *how {
                "base chain" | "base chain (nat)" => stack = vec![*chain],
                "back in" => {}
                _ => stack.push(*chain),
            },
            Step::End { policy: None, .. } => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack
        .into_iter()
        .map(|id| {
            let ch = &c.chains[id];
            if ch.base.is_some() {
                format!("{} {}", c.tables[ch.table].1, ch.name)
            } else {
                ch.name.clone()
            }
        })
        .collect()
}

/// Where an evaluation ended.
pub fn end_loc(hr: &HostRules, c: &Compiled, e: &End) -> Option<Loc> {
    match e {
        End::Drop { chain, rule } => Some(hr.loc(c, *chain, rule.unwrap_or(usize::MAX))),
        End::Reject { chain, rule } | End::Unknown { chain, rule, .. } => {
            Some(hr.loc(c, *chain, *rule))
        }
        _ => None,
    }
}

/// Per host: its files, warnings, and the analyses of its ruleset.
#[derive(Debug, Serialize)]
pub struct HostReport {
    pub host: String,
    pub files: Vec<String>,
    pub formats: Vec<&'static str>,
    pub rules: usize,
    pub unknown_matches: usize,
    pub warnings: Vec<String>,
    pub open: Vec<open::OpenView>,
    pub redundant: Vec<redundant::Redundancy>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub topology: Option<String>,
    pub options: Options,
    pub flows: Vec<FlowReport>,
    pub hosts: Vec<HostReport>,
    pub warnings: Vec<String>,
}

/// One flow with its verdict, as reported.
#[derive(Debug, Serialize)]
pub struct FlowReport {
    #[serde(flatten)]
    pub flow: FlowView<'static>,
    pub result: FlowVerdict,
}

impl Report {
    pub fn blocked(&self) -> usize {
        self.flows
            .iter()
            .filter(|f| f.result.status == Status::Blocked)
            .count()
    }
    pub fn unknown(&self) -> usize {
        self.flows
            .iter()
            .filter(|f| f.result.status == Status::Unknown)
            .count()
    }
}

/// Options of the analyses.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Options {
    pub open: bool,
    pub redundant: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            open: true,
            redundant: true,
        }
    }
}

/// Check every flow of `plan` against the hosts' rules (host name → rules).
/// Two independent analyses at once: the over-permissive one and the
/// redundancy search share nothing, and on the 2-core machines backup
/// servers often are, a large ruleset's check then takes the longer of the
/// two instead of their sum. A panic in either is passed on as it was.
pub fn both<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    std::thread::scope(|s| {
        let hb = s.spawn(b);
        let ra = a();
        let rb = hb.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (ra, rb)
    })
}

/// A host's over-permissive analysis (`open`, with or without a topology)
/// and its redundancy search, as `opts` asks, at once.
fn analyses(
    opts: Options,
    hr: &HostRules,
    open: impl FnOnce() -> Vec<open::OpenView> + Send,
) -> (Vec<open::OpenView>, Vec<redundant::Redundancy>) {
    both(
        || if opts.open { open() } else { Vec::new() },
        || {
            if opts.redundant {
                redundant::find(hr)
            } else {
                Vec::new()
            }
        },
    )
}

pub fn check(plan: &Plan, rules: &[(String, HostRules)], opts: Options) -> Report {
    check_with(plan, rules, opts, &|_| {})
}

/// Where a long `check` is, for a progress display: blocklist-sized
/// rulesets take seconds, mostly in one host's analyses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage<'a> {
    /// Compiling a host's ruleset for the simulator.
    Compiling(&'a str),
    /// `done` of `total` flows walked.
    Flows { done: usize, total: usize },
    /// A host's over-permissive analysis and redundancy search.
    Analysing(&'a str),
}

/// [`check`], telling `progress` where it is.
pub fn check_with(
    plan: &Plan,
    rules: &[(String, HostRules)],
    opts: Options,
    progress: &(dyn Fn(Stage) + Sync),
) -> Report {
    let d = &plan.deployment;
    let mut warnings = Vec::new();
    let mut by_id: HashMap<HostId, HostCheck> = HashMap::new();
    for (name, hr) in rules {
        let Some(h) = d.host_by_name(name) else {
            warnings.push(format!(
                "--rules {name}=...: no host `{name}` in the topology; ignored"
            ));
            continue;
        };
        if !hr.has_family(false) {
            warnings.push(format!(
                "{name}: {} has no IPv4 tables: Amanda's (IPv4) packets pass it unfiltered",
                hr.file_names()
            ));
        }
        progress(Stage::Compiling(name));
        let info = host_info(d, h);
        let compiled = compile(
            &hr.ruleset,
            &SetDb {
                ipsets: hr.ipsets.as_ref(),
            },
            &info,
            false,
        );
        by_id.insert(
            h,
            HostCheck {
                rules: hr,
                info,
                compiled,
            },
        );
    }
    for (h, host) in d.hosts.iter().enumerate() {
        let on_path = plan
            .paths
            .iter()
            .any(|p| p.hops.iter().any(|x| x.host == h));
        if !by_id.contains_key(&h) && on_path {
            warnings.push(format!(
                "no ruleset for {}: treated as accepting everything (and doing the topology's NAT)",
                host.name
            ));
        }
    }
    let mut walker = flows::Walker {
        plan,
        hosts: &by_id,
        masters: HashMap::new(),
    };
    let mut flows_out = Vec::new();
    for (i, f) in plan.flows.iter().enumerate() {
        progress(Stage::Flows {
            done: i,
            total: plan.flows.len(),
        });
        let p = &plan.paths[i];
        let result = walker.walk(i);
        flows_out.push(FlowReport {
            flow: FlowView::new(d, i, f, p).into_owned(),
            result,
        });
    }
    let mut hosts = Vec::new();
    for (name, hr) in rules {
        let Some(h) = d.host_by_name(name) else {
            continue;
        };
        let hc = &by_id[&h];
        let mut w: Vec<String> = hr.files.iter().flat_map(|f| f.warnings.clone()).collect();
        w.extend(hc.compiled.skipped.iter().cloned());
        if !hc.compiled.ifaces.overflow.is_empty() {
            w.push(format!(
                "more than 128 interface names: matches on {} are unknown",
                hc.compiled.ifaces.overflow.join(", ")
            ));
        }
        progress(Stage::Analysing(name));
        let (open, redundant) = analyses(opts, hr, || open::analyze_host(plan, h, hr, hc));
        hosts.push(HostReport {
            host: name.clone(),
            files: hr.files.iter().map(|f| f.path.clone()).collect(),
            formats: hr.files.iter().map(|f| f.format.name()).collect(),
            rules: hr.ruleset.rules().count(),
            unknown_matches: hr.ruleset.unknown_count(),
            warnings: w,
            open,
            redundant,
        });
    }
    Report {
        topology: Some(d.source_name.clone()),
        options: opts,
        flows: flows_out,
        hosts,
        warnings,
    }
}

/// Without a topology: what each ruleset accepts at all, and its redundant rules.
pub fn audit(rules: &[(String, HostRules)], opts: Options) -> Report {
    audit_with(rules, opts, &|_| {})
}

/// [`audit`], telling `progress` where it is.
pub fn audit_with(
    rules: &[(String, HostRules)],
    opts: Options,
    progress: &(dyn Fn(Stage) + Sync),
) -> Report {
    let mut hosts = Vec::new();
    for (name, hr) in rules {
        progress(Stage::Analysing(name));
        let (open, redundant) = analyses(opts, hr, || open::analyze_lone(hr));
        let mut warnings: Vec<String> = hr.files.iter().flat_map(|f| f.warnings.clone()).collect();
        for v6 in [false, true] {
            if hr.has_family(v6) {
                let c = compile(
                    &hr.ruleset,
                    &SetDb {
                        ipsets: hr.ipsets.as_ref(),
                    },
                    &HostInfo::default(),
                    v6,
                );
                warnings.extend(c.skipped);
                if !c.ifaces.overflow.is_empty() {
                    warnings.push(format!(
                        "more than 128 interface names: matches on {} are unknown",
                        c.ifaces.overflow.join(", ")
                    ));
                }
            }
        }
        warnings.dedup();
        hosts.push(HostReport {
            host: name.clone(),
            files: hr.files.iter().map(|f| f.path.clone()).collect(),
            formats: hr.files.iter().map(|f| f.format.name()).collect(),
            rules: hr.ruleset.rules().count(),
            unknown_matches: hr.ruleset.unknown_count(),
            warnings,
            open,
            redundant,
        });
    }
    Report {
        topology: None,
        options: opts,
        flows: Vec::new(),
        hosts,
        warnings: Vec::new(),
    }
}
