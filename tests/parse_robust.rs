//! Hostile input on stable Rust (the cargo-fuzz targets in fuzz/ go further):
//! lines assembled from the words both syntaxes use, in any order, and plain
//! noise. A parser returns a ruleset or an error and never panics; an iptables
//! ruleset it returns survives emit + parse unchanged.

use amwall::netfilter::{iptables, nft};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

const IPT_WORDS: &[&str] = &[
    "-A",
    "INPUT",
    "FORWARD",
    "mine",
    "-s",
    "-d",
    "!",
    "-i",
    "-o",
    "-p",
    "tcp",
    "udp",
    "icmp",
    "all",
    "-m",
    "--match",
    "tcp",
    "multiport",
    "conntrack",
    "state",
    "set",
    "iprange",
    "mark",
    "addrtype",
    "limit",
    "recent",
    "comment",
    "owner",
    "rpfilter",
    "foo",
    "--dport",
    "--sport",
    "--dports",
    "--ports",
    "--ctstate",
    "--state",
    "--match-set",
    "--src-range",
    "--mark",
    "--dst-type",
    "--limit-iface-in",
    "--tcp-flags",
    "--syn",
    "--comment",
    "--uid-owner",
    "--invert",
    "--loose",
    "-j",
    "-g",
    "ACCEPT",
    "DROP",
    "REJECT",
    "LOG",
    "MARK",
    "CONNMARK",
    "DNAT",
    "SNAT",
    "MASQUERADE",
    "REDIRECT",
    "CT",
    "NETMAP",
    "NFQUEUE",
    "--to-destination",
    "--to-source",
    "--to-ports",
    "--to",
    "--set-xmark",
    "--save-mark",
    "--helper",
    "--notrack",
    "--log-prefix",
    "--reject-with",
    "10.0.0.1",
    "10.0.0.0/8",
    "10.0.0.1-10.0.0.9",
    "2001:db8::/32",
    "[2001:db8::1]:80",
    "1.2.3.4:80-90",
    "22",
    "1024:65535",
    ":1023",
    "80,443",
    "NEW,ESTABLISHED",
    "SYN,ACK",
    "SYN",
    "src",
    "dst,src",
    "LOCAL",
    "0x1/0xff",
    "3/min",
    "eth0",
    "eth+",
    "\"quoted word\"",
    "\"",
    "\"\\\"",
    "-c",
    "1",
    "2",
    "[1:2]",
    "-I",
    "-N",
    "-P",
    "-F",
];

const NFT_WORDS: &[&str] = &[
    "ip",
    "ip6",
    "inet",
    "saddr",
    "daddr",
    "tcp",
    "udp",
    "th",
    "sport",
    "dport",
    "flags",
    "ct",
    "state",
    "status",
    "mark",
    "meta",
    "l4proto",
    "iifname",
    "oifname",
    "\"eth*\"",
    "{",
    "}",
    ",",
    ".",
    ":",
    "==",
    "!=",
    "<",
    ">",
    "&",
    "|",
    "(",
    ")",
    "!",
    "/",
    "@hosts",
    "@nope",
    "set",
    "vmap",
    "map",
    "accept",
    "drop",
    "reject",
    "with",
    "icmp",
    "type",
    "jump",
    "goto",
    "c",
    "return",
    "counter",
    "packets",
    "bytes",
    "log",
    "prefix",
    "level",
    "limit",
    "rate",
    "over",
    "3/second",
    "burst",
    "dnat",
    "snat",
    "masquerade",
    "redirect",
    "to",
    ":80",
    "10.0.0.1",
    "10.0.0.0/8",
    "1.2.3.4-1.2.3.9",
    "fe80::/10",
    "[::1]:80",
    "22",
    "1000-2000",
    "established",
    "related",
    "new",
    "syn",
    "fin",
    "0xff",
    "fib",
    "oif",
    "missing",
    "local",
    "xt",
    "match",
    "target",
    "comment",
    "\"x\"",
    "notrack",
    "helper",
    "random",
    "persistent",
    ";",
    "\n",
];

/// Pieces of rule expressions as `nft -j` prints them, some of them wrong.
fn json_expr() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    let left = select(vec![
        json!({"payload": {"protocol": "tcp", "field": "dport"}}),
        json!({"payload": {"protocol": "ip", "field": "saddr"}}),
        json!({"meta": {"key": "iifname"}}),
        json!({"ct": {"key": "state"}}),
        json!({"ct": {"key": "saddr", "dir": "original", "family": "ip"}}),
        json!({"fib": {"result": "oif", "flags": ["saddr", "iif"]}}),
        json!({"&": [{"meta": {"key": "mark"}}, 255]}),
        json!({"concat": [{"payload": {"protocol": "ip", "field": "saddr"}}, {"payload": {"protocol": "tcp", "field": "dport"}}]}),
        json!({"bogus": 1}),
        json!("x"),
    ]);
    let right = select(vec![
        json!(22),
        json!("10.0.0.1"),
        json!("@s"),
        json!("eth \"0\" {"),
        json!(["established", "related"]),
        json!({"set": [22, {"range": [1, 9]}]}),
        json!({"prefix": {"addr": "10.0.0.0", "len": 8}}),
        json!({"concat": ["10.0.0.1", 22]}),
        json!(false),
        json!(null),
        json!({"set": [[22, {"accept": null}]]}),
    ]);
    let op = select(vec!["==", "!=", "in", "<", "wat"]);
    prop_oneof![
        (left.clone(), right.clone(), op)
            .prop_map(|(l, r, o)| json!({"match": {"op": o, "left": l, "right": r}})),
        select(vec![
            json!({"accept": null}),
            json!({"jump": {"target": "c"}}),
            json!({"counter": {"packets": 1, "bytes": 2}}),
            json!({"log": {"prefix": "a\"b", "level": "info"}}),
            json!({"dnat": {"addr": "10.0.0.1", "port": 80, "family": "ip"}}),
            json!({"masquerade": {"port": {"range": [1024, 65535]}, "flags": ["random"]}}),
            json!({"mangle": {"key": {"meta": {"key": "mark"}}, "value": 2}}),
            json!({"ct helper": "h"}),
            json!({"xt": {"type": "match", "name": "recent"}}),
            json!({"limit": {"rate": 3, "per": "minute"}}),
            json!({"reject": {"type": "tcp reset"}}),
            json!({"weird": [1, 2]}),
        ]),
        (left, right).prop_map(|(l, r)| json!({"vmap": {"key": l, "data": r}})),
    ]
}

fn line(words: &'static [&'static str]) -> impl Strategy<Value = String> {
    vec(select(words), 0..14).prop_map(|w| w.join(" "))
}

fn iptables_file() -> impl Strategy<Value = String> {
    (
        select(vec!["filter", "nat", "mangle", "raw", "security", "bogus"]),
        vec((line(IPT_WORDS), 0..4u8), 0..6),
        any::<bool>(),
    )
        .prop_map(|(table, lines, commit)| {
            let table = if table == "bogus" { "filter" } else { table };
            let mut s = format!("*{table}\n:INPUT DROP [0:0]\n:mine - [0:0]\n");
            for (l, k) in lines {
                // Mostly rules, so that the words reach the rule parser.
                if k > 0 {
                    s.push_str("-A INPUT ");
                }
                s.push_str(&l);
                s.push('\n');
            }
            if commit {
                s.push_str("COMMIT\n");
            }
            s
        })
}

fn nft_file() -> impl Strategy<Value = String> {
    vec(line(NFT_WORDS), 0..6).prop_map(|lines| {
        let mut s = String::from(
            "table inet t {\n\tset hosts {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1 }\n\t}\n\tchain c {\n\t\ttype filter hook input priority 0; policy drop;\n",
        );
        for l in lines {
            s.push_str("\t\t");
            s.push_str(&l);
            s.push('\n');
        }
        s.push_str("\t}\n}\n");
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn iptables_never_panics_and_what_it_reads_round_trips(text in iptables_file()) {
        if let Ok(parsed) = iptables::parse("r.rules", &text) {
            let again = iptables::emit(&parsed.ruleset, &[]);
            let reparsed = iptables::parse("again.rules", &again)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{again}\nfrom\n{text}")))?;
            prop_assert_eq!(
                reparsed.ruleset.canonical(),
                parsed.ruleset.canonical(),
                "\n{}\nfrom\n{}",
                again,
                text
            );
        }
    }

    #[test]
    fn nft_never_panics_and_what_it_reads_round_trips(text in nft_file()) {
        // Where unknown text starts and ends in nft is a guess that the
        // emitted text need not repeat; the round trip holds for the rest.
        if let Ok(parsed) = nft::parse("r.nft", &text).map(|p| (p.unknown_count() == 0, p)) {
            let (understood, parsed) = parsed;
            let again = nft::emit(&parsed.ruleset, &[]);
            if !understood {
                return Ok(());
            }
            let reparsed = nft::parse("again.nft", &again)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{again}\nfrom\n{text}")))?;
            prop_assert_eq!(
                reparsed.ruleset.canonical(),
                parsed.ruleset.canonical(),
                "\n{}\nfrom\n{}",
                again,
                text
            );
        }
    }

    #[test]
    fn noise_never_panics(text in "[ -~\t\n\"\\\\{}!*:-]{0,300}") {
        let _ = iptables::parse("n.rules", &text);
        let _ = nft::parse("n.nft", &text);
        let _ = iptables::parse("n.rules", &format!("*filter\n:INPUT ACCEPT\n-A INPUT {text}\nCOMMIT\n"));
        let _ = nft::parse("n.nft", &format!("table ip t {{\n\tchain c {{\n\t\t{text}\n\t}}\n}}\n"));
        let _ = nft::parse_json("n.json", &text);
    }

    #[test]
    fn json_never_panics(exprs in vec(json_expr(), 0..6), comment in "[ -~\n]{0,10}") {
        let rule = serde_json::json!({"rule": {"family": "inet", "table": "t", "chain": "c",
            "handle": 3, "comment": comment, "expr": exprs}});
        let doc = serde_json::json!({"nftables": [
            {"table": {"family": "inet", "name": "t"}},
            {"chain": {"family": "inet", "table": "t", "name": "c", "type": "filter",
                       "hook": "input", "prio": 0, "policy": "drop"}},
            rule]});
        if let Ok(p) = nft::parse_json("r.json", &doc.to_string()) {
            for r in p.ruleset.rules() {
                prop_assert_eq!(r.origin.map(|o| o.line), Some(3));
            }
        }
    }
}
