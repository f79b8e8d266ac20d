//! Any text: the JSON parser returns a ruleset or an error, never panics.
#![no_main]

use amwall::netfilter::nft;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nft::parse_json("fuzz.json", text);
    }
});
