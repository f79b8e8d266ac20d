//! Real firewalls no one here wrote (the corpus of docs/real-world-corpus.md,
//! found by `common::real_world_dir`; read in place, never copied): every one goes
//! through `explain` (a few packets, every part of the trace resolvable to
//! FILE:LINE) and through the over-permissive and redundancy analyses
//! without panicking. Prints, per file, the rules, the matches amwall does not
//! understand, what is accepted and the time taken.

use std::path::PathBuf;
use std::time::Instant;

use amwall::check::{self, explain, HostRules, Options, RulesFile};
use amwall::sim::{self, packet};

mod common;

fn files() -> Vec<PathBuf> {
    let Some(v) = common::real_world_files() else {
        return Vec::new();
    };
    assert!(
        v.len() >= 20,
        "expected the 20 real-world rulesets, found {}",
        v.len()
    );
    v
}

fn load(p: &PathBuf) -> HostRules {
    let name = p.file_name().unwrap().to_string_lossy().to_string();
    let text = std::fs::read_to_string(p).unwrap();
    let f = RulesFile::parse(&name, text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    HostRules::new(vec![f], None)
}

const PACKETS4: &[&str] = &[
    "tcp 198.51.100.7:40000 -> 192.0.2.1:22 in eth0",
    "udp 198.51.100.7:845 -> 192.0.2.1:10080 in eth0",
    "tcp 203.0.113.9:50000 -> 192.0.2.1:50050 in eth1 out eth0",
    "icmp 198.51.100.7 -> 192.0.2.1 type echo-request in eth0",
    "tcp 192.0.2.1:10080 -> 198.51.100.7:700 out eth0 state established reply",
    "tcp 198.51.100.0/24:1-65535 -> 192.0.2.1:1-1024",
];

const PACKETS6: &[&str] = &[
    "tcp [2001:db8:1::7]:40000 -> [2001:db8::1]:22 in eth0",
    "udp [2001:db8:1::7]:845 -> [2001:db8::1]:10080 in eth0",
    "icmpv6 2001:db8:1::7 -> 2001:db8::1 type echo-request in eth0",
    "tcp [2001:db8:1::/64]:1-65535 -> [2001:db8::1]:1-1024",
];

#[test]
fn every_real_world_ruleset_explains_and_analyses() {
    let mut summary = Vec::new();
    for p in files() {
        let hr = load(&p);
        let name = hr.files[0].path.clone();
        let packets = if hr.has_family(false) {
            PACKETS4
        } else {
            PACKETS6
        };
        for text in packets {
            let pk = packet::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let ex = sim::explain(&hr.ruleset, None, &pk);
            assert!(!ex.outcomes.is_empty(), "{name}: {text}: no outcome");
            let out = explain::render_text(&hr, &ex, text);
            assert!(out.contains("Verdict: "), "{name}: {text}");
        }
        let t = Instant::now();
        let report = check::audit(&[(name.clone(), hr)], Options::default());
        let took = t.elapsed();
        let h = &report.hosts[0];
        let open: usize = h
            .open
            .iter()
            .map(|v| v.groups.iter().map(|g| g.lines.len()).sum::<usize>())
            .sum();
        let text = check::report::text(&report);
        assert!(text.contains("What each ruleset accepts"), "{name}");
        summary.push(format!(
            "{name}: {} rules, {} not understood, {open} open lines, {} redundant/shadowed, {:.0?}",
            h.rules,
            h.unknown_matches,
            h.redundant.len(),
            took
        ));
    }
    for s in &summary {
        println!("{s}");
    }
}
