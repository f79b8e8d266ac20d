//! The nft text parser against what `plan` writes, and against what the
//! kernel lists back after loading it (`nft list ruleset`), for every example
//! × auth mode; and against `nft list ruleset` of real iptables rulesets loaded
//! through iptables-nft (the kernel's own translation, which no one here wrote).

mod common;

use amwall::lab::Netns;
use amwall::netfilter::{nft, Family, Ruleset};
use amwall::render;

#[test]
fn every_planned_nft_script_reparses_to_its_ir() {
    let mut checked = 0;
    for (label, plan) in common::variants() {
        for hp in &plan.policies {
            let host = &plan.deployment.hosts[hp.host].name;
            // HOST.nft: table ip amwall, then table ip6 amwall.
            let mut ir = render::nft_ruleset(hp);
            ir.tables.push(render::nft6_table(hp));
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
            let json = ns.must(&["nft", "-j", "list", "ruleset"]).unwrap().stdout;
            let parsed = nft::parse_json("nft -j list ruleset", &json)
                .unwrap_or_else(|e| panic!("{label}/{host}: {e:?}\n{json}"));
            assert_eq!(
                amwall_table(&parsed.ruleset).canonical(),
                render::nft_ruleset(hp).canonical(),
                "{label}/{host}: the kernel's JSON listing parses differently\n{json}"
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
    let Some(files) = common::real_world_files() else {
        return;
    };
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
        let json = ns.must(&["nft", "-j", "list", "ruleset"]).unwrap().stdout;
        // The JSON shows iptables-nft's compatibility expressions as `xt`
        // objects where the text listing translates them, so the two differ
        // here; the JSON must still parse.
        let from_json = nft::parse_json(&format!("{name} (nft -j list ruleset)"), &json)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            from_json.ruleset.rules().count(),
            parsed.ruleset.rules().count(),
            "{name}"
        );
        let rules = parsed.ruleset.rules().count();
        let unknown: Vec<String> = parsed
            .ruleset
            .rules()
            .flat_map(|r| r.matches.iter().filter(|m| m.is_unknown()))
            .map(|m| format!("{m:?}"))
            .collect();
        println!(
            "{name}: nft lists {rules} rules, {} unknown (JSON: {}), parsed in {took:?} {unknown:?}",
            parsed.unknown_count(),
            from_json.unknown_count()
        );
        if std::env::var_os("AMWALL_DUMP_NFT").is_some() {
            std::fs::write(format!("/tmp/nft-{name}"), &listed).unwrap();
        }
        listed_ok += 1;
    }
    assert!(listed_ok >= 10, "only {listed_ok} files loaded");
}

/// Text and JSON listings of one ruleset must read the same.
fn assert_same(json: &Ruleset, text: &Ruleset, what: &str) {
    let (j, t) = (json.canonical(), text.canonical());
    for (tj, tt) in j.tables.iter().zip(&t.tables) {
        for (cj, ct) in tj.chains.iter().zip(&tt.chains) {
            for (i, (rj, rt)) in cj.rules.iter().zip(&ct.rules).enumerate() {
                assert_eq!(
                    rj, rt,
                    "{what}: chain {} rule {i}: JSON and text differ",
                    ct.name
                );
            }
        }
    }
    assert_eq!(j, t, "{what}: JSON and text listings differ");
}

/// A ruleset written here with what the text parser supports, loaded into
/// the kernel: `nft list ruleset` and `nft -j list ruleset` parse the same.
#[test]
fn text_and_json_listings_agree() {
    let ruleset = r#"table inet t {
	set hosts { type ipv4_addr; flags interval; elements = { 192.0.2.0/24, 198.51.100.1-198.51.100.9, 203.0.113.1 } }
	set pairs { type ipv4_addr . inet_service; elements = { 10.0.0.1 . 22 } }
	map m { type inet_service : verdict; elements = { 22 : accept, 80 : drop } }
	ct helper amanda-udp { type "amanda" protocol udp; l3proto ip; }
	chain c { type filter hook input priority filter + 5; policy drop;
		ct state established,related accept
		iifname "eth*" ip saddr @hosts tcp dport { 22, 1000-2000 } counter log prefix "x y" level info accept comment "hi"
		ip saddr . tcp dport @pairs accept
		tcp dport vmap @m
		tcp flags syn / fin,syn,rst,ack limit rate over 10/second burst 20 packets drop
		tcp flags & (syn|ack) == syn ct state new accept
		meta mark & 0xff == 0x1 ct mark set meta mark
		meta mark set mark and 0xffffff00 xor 0x1
		fib saddr . iif oif missing drop
		fib daddr type local accept
		ip6 saddr fe80::/10 icmpv6 type { nd-neighbor-solicit, 136 } accept
		ip daddr != 10.0.0.0/8 udp sport 840-860 udp dport 10080 ct helper set "amanda-udp"
		ip protocol icmp icmp type echo-request limit rate 5/second accept
		meta nfproto ipv6 ct state new accept
		iifname { "eth0", "eth1" } oifname != "lo" tcp dport != 22 reject with tcp reset
		reject with icmpx type admin-prohibited
	}
	chain n { type nat hook postrouting priority srcnat; policy accept;
		oifname "eth1" meta l4proto tcp masquerade to :1024-65535 random
		oifname "eth2" snat ip to 192.0.2.1-192.0.2.9
	}
	chain p { type nat hook prerouting priority dstnat; policy accept;
		tcp dport 80 dnat ip to 10.0.0.1:8080
		iifname "eth1" udp dport 10080 dnat ip to 192.0.2.2
	}
}
"#;
    let ns = Netns::new("amwj").expect("netns");
    let l = ns.exec(&["nft", "-f", "-"], Some(ruleset)).unwrap();
    assert!(l.ok(), "nft -f: {}", l.stderr);
    let text = ns.must(&["nft", "list", "ruleset"]).unwrap().stdout;
    let json = ns.must(&["nft", "-j", "list", "ruleset"]).unwrap().stdout;
    let from_text = nft::parse("list", &text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let from_json = nft::parse_json("json", &json).unwrap_or_else(|e| panic!("{e:?}\n{json}"));
    assert_eq!(from_text.unknown_count(), 0, "{:#?}", from_text.ruleset);
    assert_same(
        &from_json.ruleset,
        &from_text.ruleset,
        "hand-written ruleset",
    );
    // What we wrote parses to what the kernel lists.
    let ours = nft::parse("ours", ruleset).unwrap();
    assert_same(
        &ours.ruleset,
        &from_text.ruleset,
        "our text vs the kernel's listing",
    );
}
