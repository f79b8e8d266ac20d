//! Parse + full over-permissive analysis of the 4,841-rule ruleset from
//! the real-world corpus (docs/real-world-corpus.md; `AMWALL_REALWORLD`) (fffuu, the Isabelle-verified analyser,
//! took 127 s on it on this kind of 2-core machine; the target is < 1 s).
//! Also the redundancy search and one explained packet.
//!
//! And a generated allow list of 50,000 rules, one source address and port
//! each (the shape of ban lists and country blocks; issue target: the full
//! check under 2 s on a 2-core machine), beside its 1,000-rule cut as the
//! baseline of the same run: linear growth keeps the ratio near 50.
//!
//! `cargo bench --bench analysis` (criterion; reports in target/criterion).

use std::path::PathBuf;

use amwall::check::{self, HostRules, Options, RulesFile};
use amwall::sim::{self, packet};
use criterion::{criterion_group, criterion_main, Criterion};

const CHAIR: &str =
    "configs_chair_for_Network_Architectures_and_Services_iptables-save-2015-05-15_14-14-46";

fn text() -> String {
    // As the tests find it: AMWALL_REALWORLD, else beside the clone.
    let dir = std::env::var_os("AMWALL_REALWORLD").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/rulesets/real-world"),
        PathBuf::from,
    );
    let p = dir.join(CHAIR);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn load(text: &str) -> HostRules {
    HostRules::new(
        vec![RulesFile::parse(CHAIR, text.to_string()).unwrap()],
        None,
    )
}

fn bench(c: &mut Criterion) {
    let text = text();
    let mut g = c.benchmark_group("chair-4841-rules");
    g.sample_size(10);
    g.bench_function("parse", |b| b.iter(|| load(&text)));
    g.bench_function("parse + over-permissive analysis", |b| {
        b.iter(|| {
            let hr = load(&text);
            check::audit(
                &[("chair".into(), hr)],
                Options {
                    open: true,
                    redundant: false,
                },
            )
        })
    });
    g.bench_function("parse + over-permissive + redundant/shadowed", |b| {
        b.iter(|| {
            let hr = load(&text);
            check::audit(&[("chair".into(), hr)], Options::default())
        })
    });
    let hr = load(&text);
    let p = packet::parse("tcp 198.51.100.7:40000 -> 131.159.20.52:22 in eth1.110 out eth1.109")
        .unwrap();
    g.bench_function("explain one packet", |b| {
        b.iter(|| sim::explain(&hr.ruleset, None, &p))
    });
    g.finish();
}

/// One `-s ADDR -p tcp --dport P -j ACCEPT` rule per address.
fn allow_list(n: u32) -> String {
    let mut t =
        String::from("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    t.push_str("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
    for i in 0..n {
        let a = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        t.push_str(&format!(
            "-A INPUT -s {a}/32 -p tcp -m tcp --dport {} -j ACCEPT\n",
            i % 65535 + 1
        ));
    }
    t.push_str("COMMIT\n");
    t
}

fn bench_lists(c: &mut Criterion) {
    let mut g = c.benchmark_group("allow-list");
    g.sample_size(10);
    for n in [1_000u32, 50_000] {
        let text = allow_list(n);
        g.bench_function(format!("{n} rules: parse + full check"), |b| {
            b.iter(|| {
                let hr =
                    HostRules::new(vec![RulesFile::parse("list", text.clone()).unwrap()], None);
                check::audit(&[("list".into(), hr)], Options::default())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_lists);
criterion_main!(benches);
