//! The lab: real network namespaces and the real kernel as the judge.
//! Everything here cleans up on drop, also when a test fails.
//!
//! `Lab::new` maps the topology onto documentation addresses and plans rules for
//! the mapped copy; `rules` can then be edited (tests drop a rule to prove the
//! lab notices); `build` creates the namespaces and loads the rules with the real
//! tools; `probe` asks the kernel (see `check`) and returns a `LabReport`, whose
//! `Display` is what `amwall lab` prints. Dropping the `Lab` removes every
//! namespace unless `keep` was called.
//!
//! No `unsafe` anywhere in the lab: sockets through socket2 and std, epoll,
//! setns, signals and limits through nix.
#![forbid(unsafe_code)]

pub mod amanda;
pub mod check;
pub mod firewalld;
pub mod map;
pub mod netns;
pub mod probe;
mod report;
mod ssh;
pub mod topo;
pub mod ufw;

use std::time::Instant;

pub use check::{
    Exposure, ExposureFinding, ExposureKind, Host6, Ipv6Exposure, LabReport, Neighbour, ProbedFlow,
    Status,
};
pub use map::{MapError, Mapping};
pub use netns::{Netns, Output};
pub use probe::Timing;

use crate::amanda::settings::Auth;
use crate::model::Deployment;
use crate::netfilter::Backend;
use crate::Plan;

/// Why a lab run could not happen (as opposed to what it found).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The topology cannot be mapped onto the documentation ranges.
    #[error("{0}")]
    Map(String),
    /// The topology does not plan (the same error `amwall plan` gives).
    #[error(transparent)]
    Plan(#[from] crate::Error),
    /// Not root, a tool missing, a namespace that cannot be built.
    #[error("{0}")]
    Env(String),
    /// The real tool refused a generated ruleset.
    #[error("loading the rules of {host} with {tool} failed: {message}")]
    Load {
        host: String,
        tool: &'static str,
        message: String,
    },
}

/// One host's rules exactly as they will be loaded.
#[derive(Debug, Clone)]
pub struct HostRules {
    pub host: String,
    /// `ipset restore` input to load before the iptables rules.
    pub ipset: Option<String>,
    /// iptables-restore input or nft script (nft: both tables, `ip` and `ip6`).
    pub text: String,
    /// ip6tables-restore input (`HOST.rules6`), iptables only.
    pub text6: Option<String>,
}

/// What the lab is doing, for a progress display.
#[derive(Debug, Clone)]
pub enum Progress {
    Stage(String),
    Probes {
        what: &'static str,
        done: usize,
        total: usize,
    },
}

/// A namespace left running by `Lab::keep`.
#[derive(Debug, Clone)]
pub struct Kept {
    pub host: String,
    pub namespace: String,
}

pub struct Lab {
    /// The plan for the topology as written (its names are the report's names).
    pub original: Plan,
    /// The plan for the mapped copy: these are the rules the kernel gets.
    pub plan: Plan,
    pub mapping: Mapping,
    pub backend: Backend,
    /// Per host, in host order. Edit before `build` to test the lab itself.
    pub rules: Vec<HostRules>,
    pub timing: Timing,
    net: Option<topo::LabNet>,
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(tool).is_file())
}

impl HostRules {
    /// Remove every rule line that contains all of `needles` (a negative control:
    /// which flows did that rule carry?), from the IPv4 and the IPv6 rules. Only
    /// rule lines: iptables `-A` lines, nft statements inside a chain — never a
    /// table, chain, set or policy line.
    pub fn drop_rules(&mut self, needles: &[&str]) -> Vec<String> {
        let mut gone = drop_lines(&mut self.text, needles);
        if let Some(t6) = &mut self.text6 {
            gone.extend(drop_lines(t6, needles));
        }
        gone
    }
}

/// `HostRules::drop_rules` on one text.
fn drop_lines(text: &mut String, needles: &[&str]) -> Vec<String> {
    let is_rule = |l: &str| {
        l.starts_with("-A ")
            || (l.starts_with("\t\t")
                && !l.starts_with("\t\t\t")
                && !l.trim_start().starts_with("type ")
                && !l.trim_start().starts_with("elements ")
                && !l.trim_start().starts_with("flags ")
                && !l.trim_start().starts_with("l3proto "))
    };
    let mut gone = Vec::new();
    let mut kept = String::with_capacity(text.len());
    for l in text.lines() {
        if is_rule(l) && needles.iter().all(|n| l.contains(n)) {
            gone.push(l.to_string());
        } else {
            kept.push_str(l);
            kept.push('\n');
        }
    }
    *text = kept;
    gone
}

impl Lab {
    /// Map `d` onto documentation addresses and plan its rules for `backend`.
    pub fn new(d: Deployment, backend: Backend) -> Result<Lab, LabError> {
        let original = Plan::build(d)?;
        let (mapping, mapped) =
            Mapping::new(&original.deployment).map_err(|e| LabError::Map(e.0))?;
        let plan = Plan::build(mapped)?;
        map::same_shape(&original, &plan).map_err(|e| LabError::Map(e.0))?;
        let rules = plan
            .policies
            .iter()
            .map(|hp| HostRules {
                host: plan.deployment.hosts[hp.host].name.clone(),
                ipset: match backend {
                    Backend::Iptables => plan.ipset(hp),
                    Backend::Nft => None,
                },
                text: match backend {
                    Backend::Iptables => plan.iptables(hp),
                    Backend::Nft => plan.nft(hp),
                },
                text6: match backend {
                    Backend::Iptables => Some(plan.ip6tables(hp)),
                    Backend::Nft => None,
                },
            })
            .collect();
        Ok(Lab {
            original,
            plan,
            mapping,
            backend,
            rules,
            timing: check::default_timing(),
            net: None,
        })
    }

    /// Create the namespaces, wire them, and load every host's rules.
    pub fn build(&mut self, progress: &mut dyn FnMut(Progress)) -> Result<(), LabError> {
        if !is_root() {
            return Err(LabError::Env(
                "amwall lab needs root: it creates network namespaces and loads firewall rules into them".into(),
            ));
        }
        let mut tools = vec!["ip", "ping"];
        match self.backend {
            Backend::Iptables => {
                tools.push("iptables-restore");
                if self.rules.iter().any(|r| r.text6.is_some()) {
                    tools.push("ip6tables-restore");
                }
                if self.rules.iter().any(|r| r.ipset.is_some()) {
                    tools.push("ipset");
                }
            }
            Backend::Nft => tools.push("nft"),
        }
        let missing: Vec<&str> = tools.into_iter().filter(|t| !have(t)).collect();
        if !missing.is_empty() {
            return Err(LabError::Env(format!(
                "amwall lab needs {} (Debian: apt-get install iproute2 iptables nftables ipset iputils-ping)",
                missing.join(", ")
            )));
        }
        let d = &self.plan.deployment;
        let net6: Vec<_> = self.mapping.networks.iter().map(|n| n.mapped6).collect();
        let net = topo::LabNet::build(d, &net6, &self.mapping.lab6(), &mut |s| {
            progress(Progress::Stage(s.to_string()))
        })
        .map_err(|e| LabError::Env(format!("building the lab: {e}")))?;
        for (h, r) in self.rules.iter().enumerate() {
            progress(Progress::Stage(format!("loading the rules of {}", r.host)));
            let ns = net.ns(h);
            let res = match self.backend {
                Backend::Iptables => {
                    topo::load_iptables(ns, r.ipset.as_deref(), &r.text, r.text6.as_deref())
                }
                Backend::Nft => topo::load_nft(ns, &r.text),
            };
            res.map_err(|e| LabError::Load {
                host: r.host.clone(),
                tool: match self.backend {
                    Backend::Iptables => "iptables-restore",
                    Backend::Nft => "nft",
                },
                message: e.to_string(),
            })?;
        }
        self.net = Some(net);
        Ok(())
    }

    /// Probe exposure and every flow; needs `build` first.
    pub fn probe(&self, progress: &mut dyn FnMut(Progress)) -> Result<LabReport, LabError> {
        let t0 = Instant::now();
        let net = self
            .net
            .as_ref()
            .ok_or_else(|| LabError::Env("the lab is not built".into()))?;
        let hosts: Vec<&Netns> = net.hosts.iter().collect();
        let addr6 = self.mapping.lab6();
        let (flows, exposure, ipv6) = check::run(
            &self.plan,
            &addr6,
            &hosts,
            self.timing,
            &mut |what, done, total| {
                progress(Progress::Probes {
                    what: match what {
                        "flows" => "flows",
                        "ipv6" => "IPv6",
                        _ => "exposure",
                    },
                    done,
                    total,
                })
            },
        )
        .map_err(|e| LabError::Env(format!("probing: {e}")))?;
        let d = &self.original.deployment;
        let mut auth: Vec<Auth> = d.hosts.iter().map(|h| h.amanda.auth).collect();
        auth.sort();
        auth.dedup();
        Ok(LabReport {
            topology: d.source_name.clone(),
            backend: self.backend,
            auth,
            helper: d
                .hosts
                .iter()
                .any(|h| h.amanda.conntrack_helper && h.amanda.auth.is_udp()),
            networks: self.mapping.networks.clone(),
            flows,
            exposure,
            ipv6,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// `build` then `probe`.
    pub fn run(&mut self, progress: &mut dyn FnMut(Progress)) -> Result<LabReport, LabError> {
        self.build(progress)?;
        self.probe(progress)
    }

    /// Leave the namespaces up after the `Lab` is dropped.
    pub fn keep(&mut self) -> Vec<Kept> {
        match self.net.take() {
            Some(net) => net
                .keep(&self.plan.deployment)
                .into_iter()
                .map(|(host, namespace)| Kept { host, namespace })
                .collect(),
            None => vec![],
        }
    }

    /// The namespace of a host while the lab is built (for tests and `--keep`).
    pub fn namespace(&self, host: &str) -> Option<&Netns> {
        let h = self.plan.deployment.host_by_name(host)?;
        self.net.as_ref().map(|n| n.ns(h))
    }
}
