//! The kernel is the judge: every generated ruleset, for every example × auth
//! mode, is checked and then really loaded by `iptables-restore` and `nft -f` in
//! a throwaway network namespace, and what the kernel lists back must be exactly
//! what we wrote. Needs root, iptables and nftables: CI has all three, and a
//! missing one fails here loudly.

mod common;

use std::collections::BTreeMap;

use amwall::lab::Netns;

/// Table name → its `:CHAIN POLICY` and `-A` lines, in order.
fn tables(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            cur = Some(t.to_string());
            out.entry(t.to_string()).or_default();
        } else if line.starts_with(':') || line.starts_with("-A ") {
            let l = if line.starts_with(':') {
                // Counters differ after a load; the policy is what matters.
                line.rsplit_once(' ').map_or(line, |(a, _)| a).to_string()
            } else {
                line.to_string()
            };
            out.get_mut(cur.as_ref().expect("rule before table"))
                .unwrap()
                .push(l);
        }
    }
    out
}

#[test]
fn iptables_files_load_and_read_back_identically() {
    let ns = Netns::new("amwk").expect("creating a netns needs root and iproute2");
    let mut loaded = 0;
    let mut loaded_sets = 0;
    for (label, plan) in common::variants().into_iter().chain(common::v6only()) {
        for hp in &plan.policies {
            let host = &plan.deployment.hosts[hp.host].name;
            let text = plan.iptables(hp);
            if let Some(sets) = plan.ipset(hp) {
                let r = ns
                    .exec(&["ipset", "restore"], Some(&sets))
                    .expect("ipset must be installed");
                assert!(
                    r.ok(),
                    "{label}/{host}: ipset restore failed: {}\n{sets}",
                    r.stderr
                );
                // Every member the file adds is in the kernel's set afterwards.
                let saved = ns.must(&["ipset", "save"]).unwrap().stdout;
                for line in sets.lines().filter(|l| l.starts_with("add ")) {
                    let mut w = line.split_whitespace().skip(1);
                    let (tmp, member) = (w.next().unwrap(), w.next().unwrap());
                    let name = tmp.trim_end_matches('~');
                    assert!(
                        saved.contains(&format!("add {name} {member}")),
                        "{label}/{host}: {name} lacks {member}"
                    );
                    assert!(
                        !saved.contains(&format!("create {tmp} ")),
                        "temporary set {tmp} left behind"
                    );
                }
                loaded_sets += 1;
            }
            let t = ns
                .exec(&["iptables-restore", "--test"], Some(&text))
                .expect("iptables-restore must be installed");
            assert!(
                t.ok(),
                "{label}/{host}: iptables-restore --test rejected it: {}\n{text}",
                t.stderr
            );
            let l = ns.exec(&["iptables-restore"], Some(&text)).unwrap();
            assert!(
                l.ok(),
                "{label}/{host}: iptables-restore failed: {}",
                l.stderr
            );
            let saved = ns.must(&["iptables-save"]).unwrap().stdout;
            let (want, got) = (tables(&text), tables(&saved));
            for (table, lines) in &want {
                assert_eq!(
                    Some(lines),
                    got.get(table),
                    "{label}/{host}: table {table} reads back differently"
                );
            }
            // HOST.rules6: the IPv6 deny-incoming policy, through ip6tables.
            let text6 = plan.ip6tables(hp);
            let t = ns
                .exec(&["ip6tables-restore", "--test"], Some(&text6))
                .expect("ip6tables-restore must be installed");
            assert!(
                t.ok(),
                "{label}/{host}: ip6tables-restore --test rejected it: {}\n{text6}",
                t.stderr
            );
            let l = ns.exec(&["ip6tables-restore"], Some(&text6)).unwrap();
            assert!(
                l.ok(),
                "{label}/{host}: ip6tables-restore failed: {}",
                l.stderr
            );
            let saved6 = ns.must(&["ip6tables-save"]).unwrap().stdout;
            assert_eq!(
                tables(&text6),
                tables(&saved6),
                "{label}/{host}: the IPv6 filter table reads back differently"
            );
            loaded += 1;
        }
    }
    assert!(loaded >= 60, "only {loaded} rulesets loaded");
    assert!(
        loaded_sets >= 4,
        "the lan example's server must get an ipset: {loaded_sets}"
    );
}

/// `nft list` wraps long element lists; join them before comparing.
fn normalise(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        let t = line.trim_start();
        if out.ends_with(",\n")
            && !t.is_empty()
            && !t.starts_with('}')
            && line.starts_with("\t\t\t")
        {
            out.pop();
            out.push(' ');
            out.push_str(t);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// `table FAM amwall { ... }` as the script writes it, through its closing brace.
fn table_block<'a>(text: &'a str, fam: &str) -> &'a str {
    let start = text
        .find(&format!("table {fam} amwall {{"))
        .unwrap_or_else(|| panic!("no table {fam} amwall block in:\n{text}"));
    let len = text[start..].find("\n}\n").expect("closing brace") + 3;
    &text[start..start + len]
}

#[test]
fn nft_scripts_load_and_list_back_identically() {
    let ns = Netns::new("amwk").expect("creating a netns needs root and iproute2");
    let mut loaded = 0;
    for (label, plan) in common::variants().into_iter().chain(common::v6only()) {
        for hp in &plan.policies {
            let host = &plan.deployment.hosts[hp.host].name;
            let text = plan.nft(hp);
            let c = ns
                .exec(&["nft", "-c", "-f", "-"], Some(&text))
                .expect("nft must be installed");
            assert!(
                c.ok(),
                "{label}/{host}: nft -c rejected it: {}\n{text}",
                c.stderr
            );
            let l = ns.exec(&["nft", "-f", "-"], Some(&text)).unwrap();
            assert!(l.ok(), "{label}/{host}: nft -f failed: {}", l.stderr);
            for fam in ["ip", "ip6"] {
                let listed = ns
                    .must(&["nft", "list", "table", fam, "amwall"])
                    .unwrap()
                    .stdout;
                assert_eq!(
                    normalise(table_block(&text, fam)),
                    normalise(&listed),
                    "{label}/{host}: the kernel lists a different {fam} table"
                );
            }
            loaded += 1;
        }
    }
    assert!(loaded >= 60, "only {loaded} rulesets loaded");
}

/// Loading twice must replace, not append: the script owns its table.
#[test]
fn nft_script_replaces_only_its_own_table() {
    let ns = Netns::new("amwk").expect("creating a netns needs root and iproute2");
    let other = ns
        .exec(&["nft", "-f", "-"], Some("table ip other {\n\tchain c {\n\t\ttype filter hook input priority 10; policy accept;\n\t}\n}\n"))
        .unwrap();
    assert!(other.ok(), "{}", other.stderr);
    let plan = &common::variants()[0].1;
    let text = plan.nft(&plan.policies[0]);
    for _ in 0..2 {
        let l = ns.exec(&["nft", "-f", "-"], Some(&text)).unwrap();
        assert!(l.ok(), "{}", l.stderr);
    }
    let all = ns.must(&["nft", "list", "ruleset"]).unwrap().stdout;
    assert_eq!(all.matches("table ip amwall").count(), 1);
    assert_eq!(all.matches("table ip6 amwall").count(), 1);
    assert!(
        all.contains("table ip other"),
        "another table was touched:\n{all}"
    );
    for fam in ["ip", "ip6"] {
        let listed = ns
            .must(&["nft", "list", "table", fam, "amwall"])
            .unwrap()
            .stdout;
        assert_eq!(normalise(table_block(&text, fam)), normalise(&listed));
    }
}

/// 200 clients: the server's groups become an ipset (iptables) and an interval set
/// of aggregated prefixes (nft); both load and read back, and the kernel agrees on
/// which addresses are members, the gap at .100 included.
#[test]
fn large_groups_load_as_sets() {
    let plan = amwall::Plan::build(common::generated(200)).unwrap();
    let hp = &plan.policies[0];
    let ns = Netns::new("amwk").expect("creating a netns needs root and iproute2");
    let sets = plan.ipset(hp).expect("200 recovering hosts need an ipset");
    assert!(
        sets.contains("hash:net"),
        "aggregated prefixes need hash:net"
    );
    let r = ns.exec(&["ipset", "restore"], Some(&sets)).unwrap();
    assert!(r.ok(), "{}", r.stderr);
    for (addr, member) in [
        ("198.51.100.2", true),
        ("198.51.100.99", true),
        ("198.51.100.100", false),
        ("198.51.100.101", true),
        ("198.51.100.202", true),
        ("198.51.100.203", false),
    ] {
        let t = ns
            .exec(&["ipset", "test", "amw_in_amrecover_hosts", addr], None)
            .unwrap();
        assert_eq!(t.ok(), member, "ipset membership of {addr}: {}", t.stderr);
    }
    let text = plan.iptables(hp);
    let l = ns.exec(&["iptables-restore"], Some(&text)).unwrap();
    assert!(l.ok(), "{}", l.stderr);
    let saved = ns.must(&["iptables-save"]).unwrap().stdout;
    assert_eq!(tables(&text).get("filter"), tables(&saved).get("filter"));

    let nft = plan.nft(hp);
    assert!(
        nft.contains("flags interval"),
        "prefixes need an interval set"
    );
    let l = ns.exec(&["nft", "-f", "-"], Some(&nft)).unwrap();
    assert!(l.ok(), "{}", l.stderr);
    for (addr, member) in [
        ("198.51.100.2", true),
        ("198.51.100.100", false),
        ("198.51.100.201", true),
    ] {
        let g = ns
            .exec(
                &[
                    "nft",
                    "get",
                    "element",
                    "ip",
                    "amwall",
                    "in_amrecover_hosts",
                    &format!("{{ {addr} }}"),
                ],
                None,
            )
            .unwrap();
        assert_eq!(g.ok(), member, "nft membership of {addr}: {}", g.stderr);
    }
}
