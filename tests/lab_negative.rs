//! Negative controls: the lab must notice when a generated ruleset is wrong. Each
//! test edits one host's rules before they are loaded (drops a rule a flow needs,
//! or adds one nothing needs) and asserts that the lab reports exactly that.
//! A lab that cannot fail proves nothing. Needs root, like tests/lab_wiki.rs.

mod common;

use amwall::amanda::settings::Auth;
use amwall::lab::{ExposureKind, Lab, LabReport, Status};
use amwall::netfilter::Backend;
use amwall::ports::Proto;

fn lab(auth: Auth, helper: bool, mode: Backend) -> Lab {
    let d = common::example("wiki").with_auth(auth).with_helper(helper);
    Lab::new(d, mode).expect("the wiki example maps and plans")
}

fn run(mut lab: Lab) -> LabReport {
    lab.run(&mut |_| {}).unwrap_or_else(|e| {
        panic!("the lab could not run (needs root, iproute2, iptables, nftables): {e}")
    })
}

/// Remove the lines of `host`'s rules that contain every one of `needles`;
/// at least one must go, or the test would prove nothing.
fn drop_lines(lab: &mut Lab, host: &str, needles: &[&str]) -> Vec<String> {
    let r = lab
        .rules
        .iter_mut()
        .find(|r| r.host == host)
        .expect("host has rules");
    let gone = r.drop_rules(needles);
    assert!(
        !gone.is_empty(),
        "no line of {host} matches {needles:?}:\n{}",
        r.text
    );
    gone
}

/// Without lhost's INPUT accept for udp 10080, exactly the server's control flows to
/// lhost fail (amcheck would say "selfcheck request failed: timeout waiting for ACK");
/// lhost's data streams and every other host still pass, and the exposure check
/// reports the blocked port as a needed one.
#[test]
fn dropping_the_control_opening_fails_exactly_those_flows() {
    let mut l = lab(Auth::Bsd, false, Backend::Iptables);
    let gone = drop_lines(&mut l, "lhost", &["-A INPUT", "--dport 10080"]);
    assert_eq!(gone.len(), 1, "{gone:?}");
    let r = run(l);
    assert!(!r.passed(), "{r}");
    for f in &r.flows {
        let broken = f.flow.responder == "lhost" && f.flow.proto == Proto::Udp;
        let want = if broken { Status::Fail } else { Status::Pass };
        assert_eq!(
            f.status, want,
            "#{} {} → {}\n{r}",
            f.flow.id, f.flow.initiator, f.flow.responder
        );
    }
    assert_eq!(r.failed_flows(), 3, "check, estimate, backup control\n{r}");
    assert!(
        r.exposure
            .findings
            .iter()
            .any(|x| x.kind == ExposureKind::Blocked
                && x.src == "tshost"
                && x.dst.starts_with("lhost ")
                && x.proto == Proto::Udp),
        "{r}"
    );
    assert!(r.to_string().contains("Verdict: FAIL"), "{r}");
}

/// Without FWHost's port forward for bsdtcp's 10080, amrecover on RHost cannot reach
/// the server (nft backend); nothing else changes.
#[test]
fn dropping_the_port_forward_fails_remote_recovery() {
    let mut l = lab(Auth::Bsdtcp, false, Backend::Nft);
    drop_lines(&mut l, "fwhost", &["dnat to", "dport 10080"]);
    let r = run(l);
    for f in &r.flows {
        let broken = f.flow.initiator == "rhost";
        assert_eq!(
            f.status,
            if broken { Status::Fail } else { Status::Pass },
            "#{}\n{r}",
            f.flow.id
        );
    }
    assert_eq!(r.failed_flows(), 1, "{r}");
}

/// Without the masquerade, replies from RHost (which has no route to the LAN) never
/// come back, so every flow to RHost fails.
#[test]
fn dropping_the_masquerade_fails_flows_to_the_remote_client() {
    let mut l = lab(Auth::Bsdtcp, false, Backend::Iptables);
    drop_lines(&mut l, "fwhost", &["MASQUERADE"]);
    let r = run(l);
    for f in &r.flows {
        let broken = f.flow.responder == "rhost";
        assert_eq!(
            f.status,
            if broken { Status::Fail } else { Status::Pass },
            "#{}\n{r}",
            f.flow.id
        );
    }
}

/// Without the helper assignment on lhost, the dumper's data connections to lhost
/// are not RELATED and fail, while the control flows still pass: the lab really
/// exercises the kernel helper, it does not pass helper flows on faith.
#[test]
fn dropping_the_helper_assignment_fails_the_data_streams() {
    let mut l = lab(Auth::Bsd, true, Backend::Iptables);
    drop_lines(&mut l, "lhost", &["CT --helper amanda"]);
    let r = run(l);
    for f in &r.flows {
        let broken = f.flow.responder == "lhost" && f.flow.proto == Proto::Tcp;
        assert_eq!(
            f.status,
            if broken { Status::Fail } else { Status::Pass },
            "#{}\n{r}",
            f.flow.id
        );
    }
    let data = r
        .flows
        .iter()
        .find(|f| f.flow.responder == "lhost" && f.flow.proto == Proto::Tcp)
        .unwrap();
    assert!(
        data.detail.contains("DATA") && data.detail.contains("FAILED"),
        "{}",
        data.detail
    );
}

/// The same for nft: drop the `ct helper set` rule on RHost; the stream through
/// FWHost's masquerade then fails.
#[test]
fn dropping_the_nft_helper_assignment_fails_the_remote_data_streams() {
    let mut l = lab(Auth::Bsd, true, Backend::Nft);
    drop_lines(&mut l, "rhost", &["ct helper set"]);
    let r = run(l);
    for f in &r.flows {
        let broken = f.flow.responder == "rhost" && f.flow.proto == Proto::Tcp;
        assert_eq!(
            f.status,
            if broken { Status::Fail } else { Status::Pass },
            "#{}\n{r}",
            f.flow.id
        );
    }
}

/// An opening nothing needs is reported by the exposure check, from every host that
/// can route there, with the exact port; the flows still pass.
#[test]
fn an_extra_opening_is_reported_as_exposure() {
    let mut l = lab(Auth::Bsdtcp, false, Backend::Iptables);
    let ts = l.rules.iter_mut().find(|r| r.host == "tshost").unwrap();
    let at = ts
        .text
        .find("-A INPUT -i lo -j ACCEPT")
        .expect("loopback rule");
    ts.text
        .insert_str(at, "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT\n");
    let r = run(l);
    assert_eq!(r.failed_flows(), 0, "{r}");
    assert!(!r.passed(), "{r}");
    let extra: Vec<_> = r
        .exposure
        .findings
        .iter()
        .filter(|x| x.kind == ExposureKind::Unneeded)
        .collect();
    assert!(!extra.is_empty(), "{r}");
    for x in &extra {
        assert!(x.dst.starts_with("tshost "), "{r}");
        assert_eq!(x.proto, Proto::Tcp);
        assert_eq!(x.dports.len(), 1);
        assert_eq!((x.dports[0].lo, x.dports[0].hi), (8080, 8080), "{r}");
    }
    let mut srcs: Vec<&str> = extra.iter().map(|x| x.src.as_str()).collect();
    srcs.sort();
    srcs.dedup();
    // RHost has no route to the LAN; the two LAN hosts reach it.
    assert_eq!(srcs, ["fwhost", "lhost"], "{r}");
}

/// Narrowing RHost's accepted source ports to 1000-1023 (the server binds from the
/// bottom of its reserved-tcp-port) must fail the flows to RHost: the probes really
/// bind the source port a flow requires.
#[test]
fn a_rule_for_the_wrong_source_ports_fails_the_flow() {
    let mut l = lab(Auth::Bsdtcp, false, Backend::Nft);
    let rh = l.rules.iter_mut().find(|r| r.host == "rhost").unwrap();
    assert!(rh.text.contains("tcp sport 512-1023"), "{}", rh.text);
    rh.text = rh.text.replace("tcp sport 512-1023", "tcp sport 1000-1023");
    let r = run(l);
    for f in &r.flows {
        let broken = f.flow.responder == "rhost";
        assert_eq!(
            f.status,
            if broken { Status::Fail } else { Status::Pass },
            "#{}\n{r}",
            f.flow.id
        );
    }
}
