//! Any text: the parser returns a ruleset or an error, never panics; and what
//! it returns survives emit + parse unchanged (the smoltcp round trip on
//! input no one designed).
#![no_main]

use amwall::netfilter::iptables;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = iptables::parse("fuzz.rules", text) else {
        return;
    };
    let again = iptables::emit(&parsed.ruleset, &[]);
    let reparsed = iptables::parse("fuzz-again.rules", &again)
        .unwrap_or_else(|e| panic!("our own output does not parse: {e}\n{again}"));
    assert_eq!(
        reparsed.ruleset.canonical(),
        parsed.ruleset.canonical(),
        "emit + parse changed the ruleset\n{again}"
    );
});
