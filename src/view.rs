//! A flow as every report shows it: `amwall flows` (text and JSON),
//! SUMMARY.md, `check` and `lab`.
//!
//! Host ids are resolved to names and the path to words once, here, so the
//! four reports cannot drift apart in how they name a flow, its ports or the
//! routers on its way, and the JSON of each report carries the same fields
//! under the same names.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use crate::amanda::settings::Auth;
use crate::flows::{Flow, HelperRole, Operation};
use crate::model::Deployment;
use crate::plan::Plan;
use crate::ports::{PortRange, Proto, EPHEMERAL};
use crate::route::{HopKind, Path, Path6};

/// Borrows the plan's names where it can (`flows` and SUMMARY.md show
/// 90,000 flows for 10,000 clients); `into_owned` for reports that outlive it.
#[derive(Debug, Clone, Serialize)]
pub struct FlowView<'a> {
    /// 1-based, as in SUMMARY.md, `check` and `lab`.
    pub id: usize,
    pub operation: Operation,
    pub stream: &'static str,
    pub auth: Auth,
    pub initiator: Cow<'a, str>,
    pub responder: Cow<'a, str>,
    /// Routers on the way, with what they do to the flow: "fwhost (masquerade)".
    pub via: Vec<String>,
    pub proto: Proto,
    pub dport: PortRange,
    /// `None`: any source port the initiator's kernel picks (see `ports::EPHEMERAL`).
    pub sport: Option<PortRange>,
    pub helper: HelperRole,
    /// The address the initiator connects to (what Amanda's config must
    /// name): IPv6 for an IPv6-only flow (`Plan::flows6`).
    pub target: IpAddr,
    /// The hops in words, as SUMMARY.md prints them.
    pub path: String,
    pub why: Cow<'a, str>,
}

/// `amwall flows --format json`: the view and every hop with the packet's
/// addresses as that hop sees them. Only this report lists hops, so they are
/// built only for it (the other reports show 90,000 flows without them).
#[derive(Debug, Serialize)]
pub struct FlowJson<'a> {
    #[serde(flatten)]
    pub flow: FlowView<'a>,
    pub hops: Vec<HopView<'a>>,
}

/// One hop with its host named.
#[derive(Debug, Clone, Serialize)]
pub struct HopView<'a> {
    pub host: &'a str,
    pub kind: HopKind,
    #[serde(rename = "in")]
    pub in_iface: Option<&'a str>,
    #[serde(rename = "out")]
    pub out_iface: Option<&'a str>,
    /// IPv6 on an IPv6-only flow's hops, which never have NAT.
    pub src: IpAddr,
    pub dst: IpAddr,
    pub dnat_to: Option<Ipv4Addr>,
    pub snat_to: Option<Ipv4Addr>,
}

/// Every flow of the plan, in the plan's order.
pub fn all(plan: &Plan) -> Vec<FlowView<'_>> {
    plan.flows
        .iter()
        .zip(&plan.paths)
        .enumerate()
        .map(|(i, (f, p))| FlowView::new(&plan.deployment, i, f, p))
        .collect()
}

/// The plan's IPv6-only flows, numbered on after [`all`]'s.
pub fn all6(plan: &Plan) -> Vec<FlowView<'_>> {
    let d = &plan.deployment;
    plan.flows6
        .iter()
        .zip(&plan.paths6)
        .enumerate()
        .map(|(k, (f, p))| FlowView {
            via: p.routers().map(|h| d.hosts[h.host].name.clone()).collect(),
            target: IpAddr::V6(p.target),
            path: path6_text(d, p),
            ..FlowView::bare(d, plan.flows.len() + k, f)
        })
        .collect()
}

/// Every flow of the plan with its hops, for `amwall flows --format json`;
/// the IPv6-only ones after the others, as [`all6`] numbers them.
pub fn all_json(plan: &Plan) -> Vec<FlowJson<'_>> {
    let d = &plan.deployment;
    let hops4 = plan.paths.iter().map(|p| {
        p.hops
            .iter()
            .map(|h| {
                let at = (h.host, h.kind, &h.in_iface, &h.out_iface);
                hop_view(d, at, (h.src.into(), h.dst.into()), (h.dnat_to, h.snat_to))
            })
            .collect()
    });
    let hops6 = plan.paths6.iter().map(|p| {
        p.hops
            .iter()
            .map(|h| {
                let at = (h.host, h.kind, &h.in_iface, &h.out_iface);
                hop_view(d, at, (p.src.into(), p.target.into()), (None, None))
            })
            .collect()
    });
    all(plan)
        .into_iter()
        .chain(all6(plan))
        .zip(hops4.chain(hops6))
        .map(|(flow, hops)| FlowJson { flow, hops })
        .collect()
}

/// Where a hop is (host, kind, in and out interface).
type At<'p> = (
    crate::model::HostId,
    HopKind,
    &'p Option<String>,
    &'p Option<String>,
);

/// One hop as `flows --format json` shows it, whichever family it is.
fn hop_view<'p>(
    d: &'p Deployment,
    (host, kind, in_iface, out_iface): At<'p>,
    (src, dst): (IpAddr, IpAddr),
    (dnat_to, snat_to): (Option<Ipv4Addr>, Option<Ipv4Addr>),
) -> HopView<'p> {
    HopView {
        host: &d.hosts[host].name,
        kind,
        in_iface: in_iface.as_deref(),
        out_iface: out_iface.as_deref(),
        src,
        dst,
        dnat_to,
        snat_to,
    }
}

impl<'a> FlowView<'a> {
    /// Flow `i` (0-based) of a plan, with its path.
    pub fn new(d: &'a Deployment, i: usize, f: &'a Flow, p: &Path) -> FlowView<'a> {
        FlowView {
            via: p.routers().map(|h| router(d, h)).collect(),
            target: IpAddr::V4(p.target),
            path: path_text(d, p),
            ..FlowView::bare(d, i, f)
        }
    }

    /// What a flow's view says whatever its path (the path's fields empty).
    fn bare(d: &'a Deployment, i: usize, f: &'a Flow) -> FlowView<'a> {
        FlowView {
            id: i + 1,
            operation: f.operation,
            stream: f.stream,
            auth: f.auth,
            initiator: Cow::Borrowed(&d.hosts[f.initiator].name),
            responder: Cow::Borrowed(&d.hosts[f.responder].name),
            via: Vec::new(),
            proto: f.proto,
            dport: f.dport,
            sport: f.sport,
            helper: f.helper,
            target: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            path: String::new(),
            why: Cow::Borrowed(&f.why),
        }
    }

    /// The same view, owning its text.
    pub fn into_owned(self) -> FlowView<'static> {
        FlowView {
            initiator: Cow::Owned(self.initiator.into_owned()),
            responder: Cow::Owned(self.responder.into_owned()),
            why: Cow::Owned(self.why.into_owned()),
            ..self
        }
    }

    /// "tshost → fwhost via gw (masquerade)".
    pub fn who(&self) -> String {
        if self.via.is_empty() {
            format!("{} → {}", self.initiator, self.responder)
        } else {
            format!(
                "{} → {} via {}",
                self.initiator,
                self.responder,
                self.via.join(", ")
            )
        }
    }

    /// The source port as a table cell: the range, or "any".
    pub fn sport_cell(&self) -> String {
        self.sport.map_or_else(|| "any".into(), |s| s.to_string())
    }

    /// The source ports a check walks: the range, or Linux's ephemeral range.
    pub fn sport_walked(&self) -> String {
        self.sport
            .map_or_else(|| format!("{EPHEMERAL} (ephemeral)"), |r| r.to_string())
    }

    /// What the helper does with the flow, as a suffix to its stream.
    pub fn helper_note(&self) -> &'static str {
        match self.helper {
            HelperRole::None => "",
            HelperRole::Assign => " (helper assigned)",
            HelperRole::Expected => " (RELATED via helper)",
        }
    }
}

/// `amwall flows` text: the flow on one line, its path and reason below.
impl fmt::Display for FlowView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{:<3} {:<15} {:<6} {} → {} {} {} [sport {}] {}\n      path: {}\n      why:  {}",
            self.id,
            self.operation.name(),
            self.auth,
            self.initiator,
            self.responder,
            self.proto,
            self.dport,
            self.sport_cell(),
            self.stream,
            self.path,
            self.why
        )
    }
}

/// "fwhost (port forward, masquerade)": a router with what it does to the flow.
fn router(d: &Deployment, h: &crate::route::Hop) -> String {
    let mut what = Vec::new();
    if h.dnat_to.is_some() {
        what.push("port forward");
    }
    if h.snat_to.is_some() {
        what.push("masquerade");
    }
    let name = &d.hosts[h.host].name;
    if what.is_empty() {
        name.clone()
    } else {
        format!("{name} ({})", what.join(", "))
    }
}

/// The hops in words: "lhost → fwhost (forward eth1→eth0, masquerade as 192.0.2.1) → tshost".
fn path_text(d: &Deployment, p: &Path) -> String {
    let mut parts = Vec::new();
    for h in &p.hops {
        let name = &d.hosts[h.host].name;
        parts.push(match h.kind {
            HopKind::Loopback => format!("{name} (loopback, `lo` accepted)"),
            HopKind::Origin | HopKind::Destination => name.clone(),
            HopKind::Forward => {
                let mut s = format!(
                    "{name} (forward {}→{}",
                    h.in_iface.as_deref().unwrap_or("?"),
                    h.out_iface.as_deref().unwrap_or("?")
                );
                if let Some(to) = h.dnat_to {
                    s.push_str(&format!(", port forward {} → {to}", h.dst));
                }
                if let Some(sn) = h.snat_to {
                    s.push_str(&format!(", masquerade as {sn}"));
                }
                s.push(')');
                s
            }
        });
    }
    parts.join(" → ")
}

/// An IPv6-only path in words: no NAT on it, ever.
fn path6_text(d: &Deployment, p: &Path6) -> String {
    let parts: Vec<String> = p
        .hops
        .iter()
        .map(|h| {
            let name = &d.hosts[h.host].name;
            match h.kind {
                HopKind::Loopback => format!("{name} (loopback, `lo` accepted)"),
                HopKind::Origin | HopKind::Destination => name.clone(),
                HopKind::Forward => format!(
                    "{name} (IPv6 forward {}→{})",
                    h.in_iface.as_deref().unwrap_or("?"),
                    h.out_iface.as_deref().unwrap_or("?")
                ),
            }
        })
        .collect();
    format!("IPv6 only: {}", parts.join(" → "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wiki(auth: Auth) -> Plan {
        let text = include_str!("../examples/wiki.toml").to_string();
        let d = crate::load::load_str("wiki.toml", text).unwrap();
        Plan::build(d.with_auth(auth)).unwrap()
    }

    #[test]
    fn a_masqueraded_flow_names_its_router_and_what_it_does() {
        let plan = wiki(Auth::Bsd);
        let v = all(&plan);
        assert_eq!(v.len(), plan.flows.len());
        let f = v
            .iter()
            .find(|f| f.via.iter().any(|r| r.contains("masquerade")))
            .expect("the wiki site masquerades its lab clients");
        assert!(f.who().contains(" via fwhost (masquerade)"), "{}", f.who());
        assert!(f.path.contains("masquerade as"), "{}", f.path);
        let j = all_json(&plan);
        let hops = &j[f.id - 1].hops;
        assert_eq!(hops.first().unwrap().host, f.initiator);
        assert_eq!(hops.last().unwrap().host, f.responder);
        assert!(hops.iter().any(|h| h.snat_to.is_some()));
    }

    #[test]
    fn ids_count_from_one_and_text_shows_any_for_ephemeral_ports() {
        // ssh: the initiator's ssh client binds no source port.
        let plan = wiki(Auth::Ssh);
        let v = all(&plan);
        assert_eq!(v[0].id, 1);
        let eph = v.iter().find(|f| f.sport.is_none()).unwrap();
        assert!(eph.to_string().contains("[sport any]"), "{eph}");
        assert_eq!(eph.sport_walked(), "32768-60999 (ephemeral)");
    }
}
