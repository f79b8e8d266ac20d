//! Any text: the nft parser returns a ruleset or an error, never panics, and
//! the emitter prints whatever it returns.
#![no_main]

use amwall::netfilter::nft;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = nft::parse("fuzz.nft", text) {
        let _ = nft::emit(&parsed.ruleset, &[]);
    }
});
