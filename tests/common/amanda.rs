//! The real-Amanda tests' shared steps: the wiki lab and its checks, each
//! failing with the lab's diagnostics.

use std::time::Instant;

use amwall::amanda::settings::Auth;
use amwall::lab::amanda::{AmandaLab, Dump, Recovery};
use amwall::lab::Output;
use amwall::netfilter::Backend;
use amwall::Plan;

pub const FIXTURE: &str = "tests/fixtures/lab/wiki-doc.toml";

pub fn plan(auth: Auth, helper: bool) -> Plan {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let d = amwall::load::load_file(&path).unwrap_or_else(|e| panic!("{FIXTURE}: {e:?}"));
    Plan::build(d.with_auth(auth).with_helper(helper)).expect("the fixture plans cleanly")
}

pub fn lab(plan: &Plan) -> AmandaLab {
    AmandaLab::build(plan).unwrap_or_else(|e| panic!("building the Amanda lab: {e}"))
}

pub fn show(o: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status, o.stdout, o.stderr
    )
}

pub fn fail(lab: &AmandaLab, what: &str, detail: &str) -> ! {
    panic!(
        "{what}\n{detail}\n\n======== lab diagnostics ========\n{}",
        lab.diagnostics()
    )
}

pub fn check_ok(lab: &AmandaLab, label: &str) {
    let t = Instant::now();
    let o = lab.amcheck().expect("running amcheck");
    // amcheck can exit 0 while printing ERROR lines (docs/design.md "Lab-verified").
    if !(o.ok() && o.stdout.contains("0 problems found")) {
        fail(lab, &format!("{label}: amcheck failed"), &show(&o));
    }
    eprintln!("{label}: amcheck ok in {:.1?}", t.elapsed());
}

pub fn dump_ok(lab: &AmandaLab, label: &str) -> Dump {
    let d = lab.amdump().expect("running amdump");
    if !d.ok() {
        fail(
            lab,
            &format!("{label}: amdump failed"),
            &format!("{}\n--- amreport\n{}", show(&d.output), d.report),
        );
    }
    // Every client's DLE made it to tape.
    for host in ["tshost", "fwhost", "lhost", "rhost"] {
        for dle in lab.dles(host).unwrap() {
            let dle = format!("{} ", dle.display());
            if !d
                .report
                .lines()
                .any(|l| l.starts_with(host) && l.contains(&dle))
            {
                fail(
                    lab,
                    &format!("{label}: amreport does not list {host}:{dle}"),
                    &d.report,
                );
            }
        }
    }
    eprintln!("{label}: amdump ok in {:.1?}", d.took);
    d
}

pub fn recover_ok(lab: &AmandaLab, label: &str, host: &str) -> Recovery {
    let r = lab.amrecover(host).expect("running amrecover");
    if let Err(e) = &r.compared {
        fail(
            lab,
            &format!("{label}: amrecover on {host} did not restore the files: {e}"),
            &show(&r.output),
        );
    }
    eprintln!("{label}: amrecover on {host} ok in {:.1?}", r.took);
    r
}

const HOSTS: [&str; 4] = ["tshost", "fwhost", "lhost", "rhost"];

/// After a passing run: every generated Amanda rule carried real Amanda
/// traffic (iptables keeps per-rule counters; the nft rendering has none), and
/// no packet reached a drop policy, so no flow was blocked even once and
/// rescued by a retransmission. nft needs `count_policy_drops_nft` before the run.
pub fn every_rule_hit_nothing_dropped(lab: &AmandaLab, label: &str, backend: Backend) {
    if backend == Backend::Iptables {
        let unused = unused_amanda_rules(lab);
        if !unused.is_empty() {
            fail(
                lab,
                &format!("{label}: generated rules that no packet of the run hit"),
                &unused.join("\n"),
            );
        }
        eprintln!("{label}: every generated Amanda rule was hit");
        let dropped = dropped_by_policy(lab);
        if !dropped.is_empty() {
            fail(
                lab,
                &format!("{label}: packets dropped by a chain policy during a passing run"),
                &dropped.join("\n"),
            );
        }
        eprintln!("{label}: no packet dropped by any policy");
    } else {
        let dropped = dropped_by_policy_nft(lab);
        if !dropped.is_empty() {
            fail(
                lab,
                &format!("{label}: packets reached a drop policy during a passing run"),
                &dropped.join("\n"),
            );
        }
        eprintln!("{label}: no packet reached a drop policy");
    }
}

/// The generated Amanda rules (comment "amanda ...") whose packet counter is
/// still 0 after the run, as `host: rule`.
pub fn unused_amanda_rules(lab: &AmandaLab) -> Vec<String> {
    let mut out = Vec::new();
    for host in HOSTS {
        let saved = lab
            .iptables_counters(host)
            .unwrap_or_else(|e| panic!("iptables-save -c on {host}: {e}"));
        for line in saved.lines() {
            let Some(rest) = line.strip_prefix("[0:0] ") else {
                continue;
            };
            if rest.contains("amanda") {
                out.push(format!("{host}: {rest}"));
            }
        }
    }
    out
}

/// Filter chains whose DROP policy counted packets, as `host: :CHAIN DROP [p:b]`.
pub fn dropped_by_policy(lab: &AmandaLab) -> Vec<String> {
    let mut out = Vec::new();
    for host in HOSTS {
        let saved = lab
            .iptables_counters(host)
            .unwrap_or_else(|e| panic!("iptables-save -c on {host}: {e}"));
        let mut table = "";
        for line in saved.lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t;
            } else if table == "filter"
                && line.starts_with(':')
                && line.contains(" DROP ")
                && !line.ends_with("[0:0]")
            {
                out.push(format!("{host}: {line}"));
            }
        }
    }
    out
}

/// The nft rendering has no counters: append one `counter` rule (it changes
/// no verdict) to each drop-policy chain, to count what reaches the policy.
pub fn count_policy_drops_nft(lab: &AmandaLab) {
    for host in HOSTS {
        let ns = lab.namespace(host).unwrap();
        for chain in ["input", "forward"] {
            ns.must(&[
                "nft",
                "add",
                "rule",
                "ip",
                "amwall",
                chain,
                "counter",
                "comment",
                "\"reaches the policy\"",
            ])
            .unwrap_or_else(|e| panic!("{host}: adding a counter to {chain}: {e}"));
        }
    }
}

/// The counters `count_policy_drops_nft` added that counted packets.
pub fn dropped_by_policy_nft(lab: &AmandaLab) -> Vec<String> {
    let mut out = Vec::new();
    for host in HOSTS {
        let ns = lab.namespace(host).unwrap();
        let listed = ns
            .must(&["nft", "list", "table", "ip", "amwall"])
            .unwrap()
            .stdout;
        let counters: Vec<&str> = listed
            .lines()
            .filter(|l| l.contains("reaches the policy"))
            .collect();
        assert_eq!(counters.len(), 2, "{host}: {listed}");
        for l in counters {
            if !l.contains("counter packets 0 ") {
                out.push(format!("{host}: {}", l.trim()));
            }
        }
    }
    out
}

/// `text` without the one line that contains every needle. Panics unless
/// exactly one line matches, so a changed rendering cannot silently turn the
/// negative control into a no-op.
pub fn without(text: &str, needles: &[&str]) -> String {
    let hits: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && needles.iter().all(|n| l.contains(n)))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected exactly one rule with {needles:?} in\n{text}"
    );
    text.lines()
        .filter(|l| *l != hits[0])
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Build a lab whose `host` ruleset lacks the rule with `needles`.
pub fn lab_without(plan: &Plan, backend: Backend, host: &str, needles: &[&str]) -> AmandaLab {
    let lab = lab(plan);
    lab.load_rules_with(backend, |h, text| {
        if h == host {
            without(&text, needles)
        } else {
            text
        }
    })
    .unwrap_or_else(|e| panic!("loading the edited rules: {e}"));
    lab
}

/// The problem lines amcheck printed about `host`.
pub fn amcheck_problems(o: &Output, host: &str) -> Vec<String> {
    o.stdout
        .lines()
        .chain(o.stderr.lines())
        .filter(|l| l.contains("ERROR") && l.contains(host))
        .map(str::to_string)
        .collect()
}
