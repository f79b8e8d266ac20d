//! The iptables-save parser against what `plan` writes (every example × auth
//! mode must re-parse to the IR it was emitted from) and against real rulesets
//! no one here wrote (`../shared/rulesets/real-world/`, read in place: their
//! licences keep them out of this repository).

mod common;

use amwall::netfilter::iptables;
use amwall::render;

#[test]
fn every_planned_iptables_ruleset_reparses_to_its_ir() {
    let mut checked = 0;
    for (label, plan) in common::variants() {
        for hp in &plan.policies {
            let host = &plan.deployment.hosts[hp.host].name;
            let ir = render::iptables_ruleset(hp);
            let text = plan.iptables(hp);
            let parsed = iptables::parse(&format!("{label}/{host}.rules"), &text)
                .unwrap_or_else(|e| panic!("{label}/{host}: {e}\n{text}"));
            assert_eq!(
                parsed.ruleset.canonical(),
                ir.canonical(),
                "{label}/{host}: re-parse differs\n{text}"
            );
            assert_eq!(parsed.unknown_count(), 0, "{label}/{host}");
            // Every rule knows its line, and that line is the rule.
            let lines: Vec<&str> = text.lines().collect();
            for r in parsed.ruleset.rules() {
                let line = lines[r.origin.expect("parsed rules have an origin").line - 1];
                assert!(line.starts_with("-A "), "{label}/{host}: {line}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} rulesets");
}

/// Every real-world dump parses; emitting what we parsed and parsing that
/// again gives the same IR (so the emitter covers everything the parser
/// produces). Prints rules and unknown matches per file.
#[test]
fn real_world_rulesets_parse_and_round_trip() {
    let Some(dir) = common::real_world_dir() else {
        return;
    };
    let files = common::real_world_files().unwrap();
    assert!(
        files.len() >= 20,
        "only {} files in {}",
        files.len(),
        dir.display()
    );
    let mut total_rules = 0;
    let mut total_unknown = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(f).unwrap();
        let start = std::time::Instant::now();
        let parsed = iptables::parse(&name, &text).unwrap_or_else(|e| panic!("{e:?}"));
        let took = start.elapsed();
        let rules = parsed.ruleset.rules().count();
        let unknown = parsed.unknown_count();
        let unknown_texts: Vec<String> = parsed
            .ruleset
            .rules()
            .flat_map(|r| {
                r.matches
                    .iter()
                    .filter(|m| m.is_unknown())
                    .map(|m| format!("{m:?}"))
                    .chain(match &r.action {
                        amwall::netfilter::Action::Unknown { text } => Some(text.clone()),
                        _ => None,
                    })
            })
            .collect();
        println!("{name}: {rules} rules, {unknown} unknown, parsed in {took:?} {unknown_texts:?}");
        total_rules += rules;
        total_unknown += unknown;
        let again = iptables::emit(&parsed.ruleset, &[]);
        let reparsed = iptables::parse(&name, &again)
            .unwrap_or_else(|e| panic!("{name}: our own output does not parse: {e}\n{again}"));
        assert_eq!(
            reparsed.ruleset.canonical(),
            parsed.ruleset.canonical(),
            "{name}: emit + parse changes the ruleset"
        );
    }
    println!(
        "total: {} files, {total_rules} rules, {total_unknown} unknown",
        files.len()
    );
}
