//! What docs/design.md asks of the policy, checked on every example × auth mode:
//! every hop of every flow is let through by some rule (complete), no rule is
//! covered by another in its place (minimal, so no shadowed or redundant rule), and
//! no rule exists that no flow needs (management aside).

mod common;

use amwall::flows::HelperRole;
use amwall::policy::{covers, Addrs, Place, PolicyRule};
use amwall::route::HopKind;

fn need(place: Place, hop: &amwall::route::Hop, f: &amwall::flows::Flow) -> PolicyRule {
    PolicyRule {
        place,
        in_iface: hop.in_iface.clone(),
        out_iface: if place == Place::Forward {
            hop.out_iface.clone()
        } else {
            None
        },
        src: Addrs::Net(ipnet::Ipv4Net::new(hop.src, 32).unwrap()),
        dst: match place {
            Place::Forward => Some(hop.dnat_to.unwrap_or(hop.dst)),
            Place::Dnat => Some(hop.dst),
            _ => None,
        },
        proto: f.proto,
        sport: f.sport,
        dports: vec![f.dport],
        // A port-forwarded packet needs the forward rule for DNAT'd
        // connections (or a wider one).
        dnat_to: if matches!(place, Place::Dnat | Place::Forward) {
            hop.dnat_to
        } else {
            None
        },
        flows: vec![],
        label: String::new(),
    }
}

#[test]
fn every_hop_of_every_flow_has_a_rule() {
    for (label, plan) in common::variants() {
        for (fi, (f, p)) in plan.flows.iter().zip(&plan.paths).enumerate() {
            for hop in &p.hops {
                let hp = &plan.policies[hop.host];
                let mut wanted = Vec::new();
                match hop.kind {
                    HopKind::Destination if f.helper != HelperRole::Expected => {
                        wanted.push(Place::Input)
                    }
                    HopKind::Forward => {
                        if hop.dnat_to.is_some() {
                            wanted.push(Place::Dnat);
                        }
                        if f.helper != HelperRole::Expected {
                            wanted.push(Place::Forward);
                        }
                    }
                    _ => {}
                }
                if f.helper == HelperRole::Assign
                    && matches!(hop.kind, HopKind::Destination | HopKind::Forward)
                {
                    wanted.push(Place::Helper);
                }
                for place in wanted {
                    let n = need(place, hop, f);
                    let by = hp.rules.iter().find(|r| covers(r, &n, &hp.groups));
                    let by = by.unwrap_or_else(|| {
                        panic!(
                            "{label}: flow #{} has no {place:?} rule on host {}",
                            fi + 1,
                            hop.host
                        )
                    });
                    assert!(
                        by.flows.contains(&fi) || by.label == "management",
                        "{label}: rule does not credit flow #{}",
                        fi + 1
                    );
                }
            }
        }
    }
}

#[test]
fn no_rule_is_covered_by_another() {
    for (label, plan) in common::variants() {
        for hp in &plan.policies {
            for (i, a) in hp.rules.iter().enumerate() {
                for (j, b) in hp.rules.iter().enumerate() {
                    assert!(
                        i == j || !covers(a, b, &hp.groups),
                        "{label}: host {} rule {j} is covered by rule {i}",
                        hp.host
                    );
                }
            }
        }
    }
}

#[test]
fn every_rule_serves_a_flow() {
    for (label, plan) in common::variants() {
        for hp in &plan.policies {
            for r in &hp.rules {
                assert!(
                    r.label == "management" || !r.flows.is_empty(),
                    "{label}: rule without a flow: {r:?}"
                );
            }
            // Helper mode never assigns in any place but Helper, and only for bsd/bsdudp.
            for r in hp.in_place(Place::Helper) {
                assert!(
                    r.flows.iter().all(|&f| plan.flows[f].auth.is_udp()),
                    "{label}"
                );
            }
        }
    }
}
