//! `amwall lab`'s probes and exposure scan through the firewall managers
//! themselves: the wiki topology's namespaces with no amwall table at all,
//! firewalld (Debian's, on a private D-Bus, `lab::firewalld`) or ufw
//! (Debian's, on a private /etc copy, `lab::ufw`) running on every host,
//! loaded only from the mapped plan's `--firewalld` or `--ufw` files. Every
//! flow must arrive; whatever else arrives must be the manager's own
//! defaults (firewalld's zone services), never one of amwall's openings.
//!
//! Needs root, iproute2, nftables, iptables, firewalld, dbus-daemon and ufw:
//! anything missing fails here, it never skips.

mod common;

use amwall::amanda::settings::Auth;
use amwall::lab::firewalld::Firewalld;
use amwall::lab::ufw::Ufw;
use amwall::lab::{ExposureKind, Lab, LabReport, Status};
use amwall::netfilter::Backend;
use amwall::ports::Proto;

/// The wiki lab wired, with nothing loaded (the managers bring the rules).
fn bare(auth: Auth) -> Lab {
    let d = common::example("wiki").with_auth(auth);
    let mut lab = Lab::new(d, Backend::Nft).expect("the wiki example maps and plans");
    for r in &mut lab.rules {
        r.text = "# the manager loads this host's rules\n".into();
    }
    lab.build(&mut |_| {}).unwrap_or_else(|e| {
        panic!("the lab could not be built (needs root, iproute2, nftables): {e}")
    });
    lab
}

fn hosts(lab: &Lab) -> Vec<String> {
    lab.plan
        .deployment
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .collect()
}

fn all_flows_pass(r: &LabReport, n: usize) {
    assert_eq!(r.flows.len(), n, "{r}");
    let failed: Vec<String> = r
        .flows
        .iter()
        .filter(|f| f.status != Status::Pass)
        .map(|f| format!("#{} {}", f.flow.id, f.flow))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}\n{r}");
}

/// Negative control, before the manager has amwall's files: its defaults
/// refuse Amanda, and the probes see it.
fn refused_before(lab: &Lab, what: &str) {
    let r = lab.probe(&mut |_| {}).expect("probing");
    let failed = r.flows.iter().filter(|f| f.status != Status::Pass).count();
    assert!(failed > 0, "{what}'s defaults let every flow through:\n{r}");
}

fn firewalld_lab(auth: Auth, flows: usize) {
    let lab = bare(auth);
    let mut running = Vec::new();
    for name in hosts(&lab) {
        let ns = lab.namespace(&name).unwrap();
        let conf = tempfile::tempdir().unwrap();
        Firewalld::default_config(conf.path()).expect("firewalld must be installed");
        let fw = Firewalld::start(ns, conf.path())
            .unwrap_or_else(|e| panic!("{name}: firewalld must start: {e}"));
        if name == "fwhost" {
            for a in [
                "--zone=internal --add-interface=eth0",
                "--zone=public --add-interface=eth1",
            ] {
                let mut args = vec!["--permanent"];
                args.extend(a.split(' '));
                assert!(fw.cmd(&args).unwrap().ok(), "{a}");
            }
            assert!(fw.cmd(&["--reload"]).unwrap().ok());
        }
        running.push((name, fw, conf));
    }
    refused_before(&lab, "firewalld");
    let out = tempfile::tempdir().unwrap();
    for (name, fw, _) in &running {
        let o = fw
            .install(&lab.plan.firewalld_outputs(Some(name)), out.path())
            .unwrap();
        assert!(o.ok(), "{name}: {}{}", o.stdout, o.stderr);
    }
    let r = lab.probe(&mut |_| {}).expect("probing");
    all_flows_pass(&r, flows);
    // Beyond need: only the zones' own services (public: ssh; internal:
    // ssh, mdns, samba-client), none of amwall's ports.
    let zone_ports = [
        (Proto::Tcp, 22),
        (Proto::Udp, 5353),
        (Proto::Udp, 137),
        (Proto::Udp, 138),
    ];
    for f in &r.exposure.findings {
        assert_eq!(f.kind, ExposureKind::Unneeded, "{r}");
        assert!(
            f.dports
                .iter()
                .all(|p| (p.lo..=p.hi).all(|d| zone_ports.contains(&(f.proto, d)))),
            "open beyond need and not a zone service: {f:?}\n{r}"
        );
    }
    for (_, fw, _) in &running {
        assert!(fw.complaints().is_empty(), "{}", fw.log());
    }
    let own: Vec<String> = r
        .exposure
        .findings
        .iter()
        .map(|f| format!("{} -> {} {} {:?}", f.src, f.dst, f.proto, f.dports))
        .collect();
    eprintln!(
        "{auth}/firewalld lab: {} flows pass; beyond need, the zones' own: {own:?}",
        r.flows.len()
    );
}

fn ufw_lab(auth: Auth, flows: usize) {
    let lab = bare(auth);
    let mut enabled = Vec::new();
    for name in hosts(&lab) {
        let ns = lab.namespace(&name).unwrap();
        let ufw = Ufw::enable(ns).unwrap_or_else(|e| panic!("{name}: ufw must enable: {e}"));
        // The admin's own ssh rule from the LAN (amwall leaves management to ufw).
        let lan = lab
            .plan
            .deployment
            .networks
            .iter()
            .find(|n| n.name == "lan")
            .expect("the wiki has a lan")
            .cidr
            .expect("the wiki's lan is IPv4")
            .to_string();
        let o = ufw
            .run(&[
                "allow", "from", &lan, "to", "any", "port", "22", "proto", "tcp",
            ])
            .unwrap();
        assert!(o.ok(), "{name}: {}{}", o.stdout, o.stderr);
        enabled.push((name, ufw));
    }
    refused_before(&lab, "ufw");
    let out = tempfile::tempdir().unwrap();
    for (name, ufw) in &enabled {
        let o = ufw
            .install(&lab.plan.ufw_outputs(Some(name)), out.path())
            .unwrap();
        assert!(o.ok(), "{name}: {}{}", o.stdout, o.stderr);
    }
    let r = lab.probe(&mut |_| {}).expect("probing");
    all_flows_pass(&r, flows);
    assert!(
        r.exposure.findings.is_empty(),
        "nothing open beyond need:\n{r}"
    );
    eprintln!(
        "{auth}/ufw lab: {} flows pass, nothing open beyond need",
        r.flows.len()
    );
}

#[test]
fn firewalld_bsd() {
    firewalld_lab(Auth::Bsd, 24);
}

#[test]
fn firewalld_bsdtcp() {
    firewalld_lab(Auth::Bsdtcp, 16);
}

#[test]
fn ufw_bsdudp() {
    ufw_lab(Auth::Bsdudp, 24);
}

#[test]
fn ufw_bsdtcp() {
    ufw_lab(Auth::Bsdtcp, 16);
}
