//! The nft text parser against what `plan` writes, and against what the
//! kernel lists back after loading it (`nft list ruleset`), for every example
//! × auth mode; and against `nft list ruleset` of real iptables rulesets loaded
//! through iptables-nft (the kernel's own translation, which no one here wrote).

mod common;

use std::path::PathBuf;

use amwall::lab::Netns;
use amwall::netfilter::{nft, Family, Ruleset};
use amwall::render;

#[test]
fn every_planned_nft_script_reparses_to_its_ir() {
    let mut checked = 0;
    for (label, plan) in common::variants() {
        for hp in &plan.policies {
            let host = &plan.deployment.hosts[hp.host].name;
            let ir = render::nft_ruleset(hp);
            let text = plan.nft(hp);
            let parsed = nft::parse(&format!("{label}/{host}.nft"), &text)
                .unwrap_or_else(|e| panic!("{label}/{host}: {e:?}\n{text}"));
            assert_eq!(
                parsed.ruleset.canonical(),
                ir.canonical(),
                "{label}/{host}: re-parse differs\n{text}"
            );
            assert_eq!(parsed.unknown_count(), 0, "{label}/{host}");
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} rulesets");
}

/// Only the `amwall` table: the namespace may hold others.
fn amwall_table(rs: &Ruleset) -> Ruleset {
    Ruleset {
        tables: rs
            .tables
            .iter()
            .filter(|t| t.family == Family::Ip && t.name == render::NFT_TABLE)
            .cloned()
            .collect(),
    }
}

#[test]
fn what_the_kernel_lists_back_parses_to_the_same_ir() {
    let ns = Netns::new("amwp").expect("creating a netns needs root and iproute2");
    let mut checked = 0;
    for (label, plan) in common::variants() {
        for hp in &plan.policies {
            let host = &plan.deployment.hosts[hp.host].name;
            let text = plan.nft(hp);
            let l = ns.exec(&["nft", "-f", "-"], Some(&text)).unwrap();
            assert!(l.ok(), "{label}/{host}: nft -f failed: {}", l.stderr);
            let listed = ns.must(&["nft", "list", "ruleset"]).unwrap().stdout;
            let parsed = nft::parse("nft list ruleset", &listed)
                .unwrap_or_else(|e| panic!("{label}/{host}: {e:?}\n{listed}"));
            assert_eq!(
                amwall_table(&parsed.ruleset).canonical(),
                render::nft_ruleset(hp).canonical(),
                "{label}/{host}: the kernel's listing parses differently\n{listed}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} rulesets");
}

/// Real iptables rulesets, loaded with iptables-nft, listed as nft: every
/// listing parses. Prints rules and unknown matches per file (the xt
/// compatibility expressions iptables-nft leaves for matches nft has no
/// native form for are unknown by design).
#[test]
fn real_world_rulesets_listed_by_nft_parse() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/rulesets/real-world");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "SOURCE.md"))
        .collect();
    files.sort();
    let mut listed_ok = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        // The collectors anonymised MAC addresses as XX:XX:..., which
        // iptables refuses; any valid address keeps the rule's shape.
        let text = std::fs::read_to_string(f)
            .unwrap()
            .replace("XX:XX:XX:XX:XX:XX", "02:00:00:00:00:01");
        let ns = Netns::new("amwr").expect("netns");
        let v6 = text.contains("ip6tables-save");
        let restore = if v6 {
            "ip6tables-restore"
        } else {
            "iptables-restore"
        };
        // Some dumps use extensions this kernel lacks (ULOG, old NOTRACK...);
        // iptables-restore may then stop reading early (a broken pipe).
        match ns.exec(&[restore], Some(&text)) {
            Ok(l) if l.ok() => {}
            Ok(l) => {
                println!("{name}: {restore} refused: {}", l.stderr.trim());
                continue;
            }
            Err(e) => {
                println!("{name}: {restore} failed: {e}");
                continue;
            }
        }
        let listed = ns.must(&["nft", "list", "ruleset"]).unwrap().stdout;
        let start = std::time::Instant::now();
        let parsed = nft::parse(&format!("{name} (nft list ruleset)"), &listed)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let took = start.elapsed();
        let rules = parsed.ruleset.rules().count();
        let unknown: Vec<String> = parsed
            .ruleset
            .rules()
            .flat_map(|r| r.matches.iter().filter(|m| m.is_unknown()))
            .map(|m| format!("{m:?}"))
            .collect();
        println!(
            "{name}: nft lists {rules} rules, {} unknown, parsed in {took:?} {unknown:?}",
            parsed.unknown_count()
        );
        if std::env::var_os("AMWALL_DUMP_NFT").is_some() {
            std::fs::write(format!("/tmp/nft-{name}"), &listed).unwrap();
        }
        listed_ok += 1;
    }
    assert!(listed_ok >= 10, "only {listed_ok} files loaded");
}
