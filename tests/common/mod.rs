//! Shared by the end-to-end tests: every bundled example in every auth mode.
#![allow(dead_code)]

use amwall::model::{self, Auth, Deployment};
use amwall::Plan;

pub const EXAMPLES: &[&str] = &["wiki", "lan", "helper"];

pub fn example(name: &str) -> Deployment {
    let path = format!("{}/examples/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    model::load_str(&format!("examples/{name}.toml"), text).unwrap_or_else(|e| panic!("{e:?}"))
}

/// (label, plan) for every example × auth mode, plus the conntrack helper on and
/// off for the UDP auths (the helper example's own setting is "on").
pub fn variants() -> Vec<(String, Plan)> {
    let mut out = Vec::new();
    for ex in EXAMPLES {
        let d = example(ex);
        for auth in Auth::ALL {
            let base = d.with_auth(auth);
            let helpers: &[bool] = if auth.is_udp() {
                &[false, true]
            } else {
                &[false]
            };
            for &h in helpers {
                let v = base.with_helper(h);
                let label = format!("{ex}-{auth}{}", if h { "-helper" } else { "" });
                out.push((label, Plan::build(v).expect("examples plan cleanly")));
            }
        }
    }
    out
}
