//! The wiki topology (examples/wiki.toml) built in network namespaces, on
//! documentation addresses, with amwall's generated rules loaded by the real
//! `iptables-restore` and `nft -f`, and probed with real sockets: every flow must
//! arrive as the plan says, and nothing else may (`amwall lab`).
//!
//! Needs root, iproute2, iptables and nftables: a missing one fails here loudly,
//! it never skips. Each test builds its own namespaces (unique names) and drops
//! them at the end, also when it fails.

mod common;

use amwall::amanda::settings::Auth;
use amwall::lab::{ExposureKind, Lab, LabReport, Status};
use amwall::netfilter::Backend;

fn run(auth: Auth, helper: bool, mode: Backend) -> LabReport {
    let d = common::example("wiki").with_auth(auth).with_helper(helper);
    let mut lab = Lab::new(d, mode).expect("the wiki example maps and plans");
    lab.run(&mut |_| {}).unwrap_or_else(|e| {
        panic!("the lab could not run (needs root, iproute2, iptables, nftables): {e}")
    })
}

fn assert_pass(r: &LabReport) {
    assert!(r.passed(), "the lab found problems:\n{r}");
    assert!(
        r.flows.iter().all(|f| f.status == Status::Pass),
        "every flow is probed:\n{r}"
    );
}

/// docs/design.md lab: RHost always saw FWHost's public address, and masquerade kept the
/// source port; TSHost sees RHost's real address through the port forward.
fn assert_nat_as_lab_verified(r: &LabReport) {
    for f in &r.flows {
        let seen = f.seen.as_deref().unwrap_or("");
        if f.flow.responder == "rhost" && f.flow.initiator == "tshost" {
            assert!(
                seen.starts_with("fwhost/eth1:"),
                "#{}: {seen}\n{r}",
                f.flow.id
            );
        }
        if f.flow.initiator == "rhost" {
            assert!(seen.starts_with("rhost:"), "#{}: {seen}\n{r}", f.flow.id);
            assert_eq!(f.flow.via, ["fwhost (port forward)"], "{r}");
        }
    }
}

macro_rules! wiki {
    ($name:ident, $auth:expr, $helper:expr, $mode:expr, $flows:expr) => {
        #[test]
        fn $name() {
            let r = run($auth, $helper, $mode);
            assert_pass(&r);
            assert_eq!(r.flows.len(), $flows, "{r}");
            assert_nat_as_lab_verified(&r);
        }
    };
}

wiki!(iptables_bsd, Auth::Bsd, false, Backend::Iptables, 24);
wiki!(nft_bsd, Auth::Bsd, false, Backend::Nft, 24);
wiki!(iptables_bsd_helper, Auth::Bsd, true, Backend::Iptables, 24);
wiki!(nft_bsd_helper, Auth::Bsd, true, Backend::Nft, 24);
wiki!(iptables_bsdudp, Auth::Bsdudp, false, Backend::Iptables, 24);
wiki!(nft_bsdudp, Auth::Bsdudp, false, Backend::Nft, 24);
wiki!(iptables_bsdtcp, Auth::Bsdtcp, false, Backend::Iptables, 16);
wiki!(nft_bsdtcp, Auth::Bsdtcp, false, Backend::Nft, 16);
wiki!(iptables_ssh, Auth::Ssh, false, Backend::Iptables, 16);
wiki!(nft_ssh, Auth::Ssh, false, Backend::Nft, 16);
wiki!(iptables_local, Auth::Local, false, Backend::Iptables, 0);
wiki!(nft_local, Auth::Local, false, Backend::Nft, 0);

/// bsd with the helper: the data streams are not open statically; each of two
/// dumpers' `CONNECT DATA p MESG p INDEX p STATE p` lets exactly its four
/// connections in (RELATED), also through FWHost's masquerade to RHost.
#[test]
fn bsd_helper_opens_all_four_streams_for_each_dumper() {
    let r = run(Auth::Bsd, true, Backend::Iptables);
    assert_pass(&r);
    let data: Vec<_> = r
        .flows
        .iter()
        .filter(|f| f.detail.starts_with("RELATED via the helper"))
        .collect();
    assert_eq!(
        data.len(),
        3,
        "lhost, fwhost, rhost (tshost's own is over lo)\n{r}"
    );
    for f in data {
        for s in ["DATA", "MESG", "INDEX", "STATE"] {
            assert_eq!(f.detail.matches(s).count(), 2, "{s} twice in {}", f.detail);
        }
        assert!(!f.detail.contains("FAILED"), "{}", f.detail);
    }
}

/// Lab finding (kernel 6.18, nf_conntrack_amanda): with bsdudp and the helper, a
/// second dumper talking to the same client within 180 s gets no REP — the
/// client's `CONNECT DATA p MESG 499999 ...` makes the helper expect port 49999,
/// that expectation clashes with the first dumper's, and the kernel drops the REP.
/// So amwall plans bsdudp statically even when the helper is asked for
/// (`flows::helper_usable`): no flow relies on the helper, every flow
/// passes (two dumpers included), and no bogus port 49999 opens.
#[test]
fn bsdudp_with_the_helper_setting_is_planned_static_and_passes() {
    for mode in [Backend::Iptables, Backend::Nft] {
        let r = run(Auth::Bsdudp, true, mode);
        assert_pass(&r);
        assert!(
            !r.flows
                .iter()
                .any(|f| f.detail.starts_with("RELATED via the helper")),
            "{r}"
        );
        assert!(
            !r.exposure.notes.iter().any(|n| n.contains("tcp 49999")),
            "{r}"
        );
    }
}

/// RHost must accept TSHost's requests from FWHost's public address (masquerade),
/// so FWHost itself reaches RHost's amandad too; the lab reports that as a note
/// (the router is on the path), not as a rule defect.
#[test]
fn router_sharing_the_masquerade_address_is_a_note() {
    let r = run(Auth::Bsdtcp, false, Backend::Nft);
    assert_pass(&r);
    assert!(
        r.exposure.on_path.iter().any(|x| x.src == "fwhost"
            && x.arrived_at.as_deref() == Some("rhost")
            && x.kind == ExposureKind::OnPath),
        "{r}"
    );
}

/// docs/design.md (lab, kernel 6.18): `INDEX -1` (`index no`) stops the helper's parsing,
/// so the STATE stream would get no expectation (the lab saw STATE blocked for every
/// dumper while DATA and MESG passed). amwall therefore plans bsd + helper +
/// `index no` statically, and the whole run passes.
#[test]
fn bsd_helper_with_index_no_is_planned_static_and_passes() {
    let mut d = common::example("wiki")
        .with_auth(Auth::Bsd)
        .with_helper(true);
    d.amanda.index = false;
    for h in &mut d.hosts {
        h.amanda.index = false;
    }
    let mut lab = Lab::new(d, Backend::Nft).unwrap();
    let r = lab
        .run(&mut |_| {})
        .expect("needs root, iproute2, nftables");
    assert_pass(&r);
    assert!(
        !r.flows
            .iter()
            .any(|f| f.detail.starts_with("RELATED via the helper")),
        "{r}"
    );
}
