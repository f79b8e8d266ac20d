use amwall::netfilter::iptables;
#[test]
fn art() {
    let dir = std::env::var("ART").unwrap();
    let data = std::fs::read(&dir).unwrap();
    let text = String::from_utf8_lossy(&data).to_string();
    let p = iptables::parse("a", &text).unwrap();
    let again = iptables::emit(&p.ruleset, &[]);
    let q = iptables::parse("b", &again).unwrap();
    let (a, b) = (p.ruleset.canonical(), q.ruleset.canonical());
    for (ta, tb) in a.tables.iter().zip(&b.tables) {
        for (ca, cb) in ta.chains.iter().zip(&tb.chains) {
            for (ra, rb) in ca.rules.iter().zip(&cb.rules) {
                if ra != rb {
                    let line = p
                        .ruleset
                        .rules()
                        .find(|r| r.canonical() == *ra)
                        .and_then(|r| r.origin)
                        .map(|o| o.line)
                        .unwrap_or(0);
                    println!("orig line: {:?}", text.lines().nth(line.saturating_sub(1)));
                    println!(
                        "emitted: -A {}{}",
                        ca.name,
                        iptables::rule_args_in(ra, ta.family)
                    );
                    println!("a: {ra:?}\nb: {rb:?}");
                    return;
                }
            }
            if ca.rules.len() != cb.rules.len() {
                println!("len differs in {}", ca.name);
            }
        }
    }
    println!("tables: {} vs {}", a.tables.len(), b.tables.len());
}
