//! The openings amwall plans for the wiki topology must be exactly the ones real
//! Amanda 3.5.1 needed in namespaces (docs/design.md "Lab-verified": the table of
//! minimal openings, and "amrecover on RHost through FWHost's port forward").

mod common;

use std::collections::BTreeSet;

use amwall::amanda::settings::Auth;
use amwall::policy::{Addrs, Place};
use amwall::ports::Proto;
use amwall::Plan;

/// (place, proto, dports "lo-hi,...", sources as host names or addresses) per rule,
/// leaving out the management rule.
fn openings(plan: &Plan, host: &str, place: Place) -> BTreeSet<(Proto, String, String)> {
    let d = &plan.deployment;
    let hp = &plan.policies[d.host_by_name(host).unwrap()];
    let name_of = |a: std::net::Ipv4Addr| {
        d.hosts
            .iter()
            .find(|h| h.interfaces.iter().any(|i| i.address == Some(a)))
            .map_or(a.to_string(), |h| {
                // Hosts with several addresses are named with the one seen.
                if h.interfaces.len() > 1 {
                    format!("{}@{a}", h.name)
                } else {
                    h.name.clone()
                }
            })
    };
    hp.in_place(place)
        .filter(|r| r.label != "management")
        .map(|r| {
            let srcs: Vec<String> = match &r.src {
                Addrs::Any => vec!["any".into()],
                Addrs::Net(n) => vec![name_of(n.addr())],
                Addrs::Group(g) => hp.groups[*g]
                    .members
                    .iter()
                    .map(|n| name_of(n.addr()))
                    .collect(),
            };
            let mut srcs = srcs;
            srcs.sort();
            let ports = r
                .dports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",");
            (r.proto, ports, srcs.join(" "))
        })
        .collect()
}

fn wiki(auth: Auth, helper: bool) -> Plan {
    Plan::build(common::example("wiki").with_auth(auth).with_helper(helper)).unwrap()
}

fn set(v: &[(Proto, &str, &str)]) -> BTreeSet<(Proto, String, String)> {
    v.iter()
        .map(|(p, a, b)| (*p, a.to_string(), b.to_string()))
        .collect()
}

const RECOVERERS: &str = "fwhost@192.168.2.1 lhost rhost";

#[test]
fn bsdtcp_minimal_openings() {
    let p = wiki(Auth::Bsdtcp, false);
    assert_eq!(
        openings(&p, "tshost", Place::Input),
        set(&[(Proto::Tcp, "10080", RECOVERERS)])
    );
    for c in ["fwhost", "lhost"] {
        assert_eq!(
            openings(&p, c, Place::Input),
            set(&[(Proto::Tcp, "10080", "tshost")]),
            "{c}"
        );
    }
    assert_eq!(
        openings(&p, "rhost", Place::Input),
        set(&[(Proto::Tcp, "10080", "fwhost@1.2.3.4")])
    );
    // Port forward on FWHost: tcp 10080 only, from RHost's real address.
    assert_eq!(
        openings(&p, "fwhost", Place::Dnat),
        set(&[(Proto::Tcp, "10080", "rhost")])
    );
}

#[test]
fn bsd_and_bsdudp_static_minimal_openings() {
    for auth in [Auth::Bsd, Auth::Bsdudp] {
        let p = wiki(auth, false);
        let both = |src: &str| set(&[(Proto::Udp, "10080", src), (Proto::Tcp, "50000-50100", src)]);
        assert_eq!(
            openings(&p, "tshost", Place::Input),
            both(RECOVERERS),
            "{auth}"
        );
        assert_eq!(
            openings(&p, "fwhost", Place::Input),
            both("tshost"),
            "{auth}"
        );
        assert_eq!(
            openings(&p, "lhost", Place::Input),
            both("tshost"),
            "{auth}"
        );
        assert_eq!(
            openings(&p, "rhost", Place::Input),
            both("fwhost@1.2.3.4"),
            "{auth}"
        );
        assert_eq!(
            openings(&p, "fwhost", Place::Dnat),
            both("rhost"),
            "{auth}: udp 10080 + the data range forwarded"
        );
        let fwd = openings(&p, "fwhost", Place::Forward);
        assert!(
            fwd.contains(&(Proto::Tcp, "50000-50100".into(), "rhost".into())),
            "{auth}: {fwd:?}"
        );
        assert!(
            fwd.contains(&(Proto::Tcp, "50000-50100".into(), "tshost".into())),
            "{auth}: {fwd:?}"
        );
    }
}

/// docs/design.md lab table, "bsd, bsdudp helper" — for bsd only: with bsdudp the
/// helper fails once two dumpers serve one client (lab finding, see
/// `flows::helper_usable`), so amwall plans bsdudp statically even when
/// the helper is asked for.
#[test]
fn bsdudp_with_the_helper_is_planned_static() {
    let (with, without) = (wiki(Auth::Bsdudp, true), wiki(Auth::Bsdudp, false));
    for h in ["tshost", "fwhost", "lhost", "rhost"] {
        for place in [Place::Input, Place::Forward, Place::Dnat] {
            assert_eq!(
                openings(&with, h, place),
                openings(&without, h, place),
                "{h} {place:?}"
            );
        }
        assert!(
            openings(&with, h, Place::Helper).is_empty(),
            "{h}: no helper assigned"
        );
    }
    assert!(with.lints.iter().any(|l| l.code == "helper-bsdudp"));
}

#[test]
fn helper_mode_minimal_openings() {
    for auth in [Auth::Bsd] {
        let p = wiki(auth, true);
        let udp = |src: &str| set(&[(Proto::Udp, "10080", src)]);
        // TSHost as static: recovery needs the range (the helper does not parse CTL).
        assert_eq!(
            openings(&p, "tshost", Place::Input),
            set(&[
                (Proto::Udp, "10080", RECOVERERS),
                (Proto::Tcp, "50000-50100", RECOVERERS)
            ]),
            "{auth}"
        );
        // Clients: udp 10080 from TSHost + the helper, no tcp range.
        for c in ["fwhost", "lhost"] {
            assert_eq!(openings(&p, c, Place::Input), udp("tshost"), "{auth} {c}");
        }
        assert_eq!(
            openings(&p, "lhost", Place::Helper),
            udp("tshost"),
            "{auth}"
        );
        assert_eq!(
            openings(&p, "rhost", Place::Input),
            udp("fwhost@1.2.3.4"),
            "{auth}"
        );
        assert_eq!(
            openings(&p, "rhost", Place::Helper),
            udp("fwhost@1.2.3.4"),
            "{auth}"
        );
        // FWHost assigns the helper for the requests it forwards to RHost, too; the
        // server assigns none (recovery is static).
        assert_eq!(openings(&p, "fwhost", Place::Helper), udp("tshost"));
        assert!(openings(&p, "tshost", Place::Helper).is_empty());
    }
}

/// docs/design.md: an OUTPUT assignment breaks local recovery with bsdudp; helpers go in
/// raw PREROUTING only.
#[test]
fn helper_is_never_assigned_in_output() {
    for (label, plan) in common::variants() {
        for hp in &plan.policies {
            let ipt = amwall::render::iptables_ruleset(hp);
            for t in &ipt.tables {
                for c in &t.chains {
                    for r in &c.rules {
                        if matches!(r.action, amwall::netfilter::Action::CtHelper(_)) {
                            assert_eq!(
                                (t.name.as_str(), c.name.as_str()),
                                ("raw", "PREROUTING"),
                                "{label}"
                            );
                        }
                    }
                }
            }
            let nft = amwall::render::nft_ruleset(hp);
            for c in &nft.tables[0].chains {
                if c.rules
                    .iter()
                    .any(|r| matches!(r.action, amwall::netfilter::Action::CtHelper(_)))
                {
                    assert_eq!(
                        c.base.as_ref().unwrap().hook,
                        amwall::netfilter::Hook::Prerouting,
                        "{label}"
                    );
                }
            }
        }
    }
}
