//! Any topology text: the loader returns a deployment or an error, never
//! panics; a deployment that plans renders files that our own parsers read
//! back (a name that slipped through validation would break them), and every
//! file name stays a plain name inside the output directory.
#![no_main]

use amwall::netfilter::{iptables, nft};
use amwall::render::BackendSet;
use amwall::Plan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = amwall::load::load_str("fuzz.toml", text.to_string()) else {
        return;
    };
    let Ok(plan) = Plan::build(d) else {
        return;
    };
    let Ok(files) = plan.outputs(BackendSet::Both, None) else {
        return;
    };
    for (name, content) in &files {
        let p = std::path::Path::new(name);
        assert!(
            p.components().count() == 1
                && matches!(p.components().next(), Some(std::path::Component::Normal(_))),
            "output file name {name:?} is not a plain name"
        );
        if name.ends_with(".rules") {
            iptables::parse(name, content)
                .unwrap_or_else(|e| panic!("our own {name} does not parse: {e}\n{content}"));
        } else if name.ends_with(".nft") {
            nft::parse(name, content)
                .unwrap_or_else(|e| panic!("our own {name} does not parse: {e}\n{content}"));
        }
    }
});
