//! Bad input never panics: random edits of a real topology and random small
//! topologies either plan or fail with an error that points inside the file.

use amwall::diag::Error;
use amwall::load::load_str;
use amwall::Plan;
use proptest::prelude::*;

const WIKI: &str = include_str!("../examples/wiki.toml");
const V6ONLY: &str = include_str!("fixtures/v6only/upstream.toml");

fn check(text: String) -> Result<(), TestCaseError> {
    let lines = text.lines().count() + 1;
    match load_str("t.toml", text).and_then(Plan::build) {
        Ok(plan) => {
            // Whatever plans must also render.
            plan.outputs(amwall::render::BackendSet::Both, None)
                .unwrap();
            // And every other consumer of addresses: JSON, the lab's mapping.
            amwall::export::plan_json_text(&plan);
            if let Ok((_, mapped)) = amwall::lab::map::Mapping::new(&plan.deployment) {
                Plan::build(mapped).ok();
            }
        }
        Err(Error::Input(e)) => {
            prop_assert!(
                e.line >= 1 && e.line <= lines,
                "line {} of {}",
                e.line,
                lines
            );
            prop_assert!(e.column >= 1);
        }
        Err(e) => prop_assert!(false, "unexpected error kind: {e}"),
    }
    Ok(())
}

/// Replace `del` bytes at `pos` by `ins`, for each edit, on char boundaries.
fn apply_edits(text: &mut String, edits: Vec<(usize, usize, String)>) {
    for (pos, del, ins) in edits {
        let mut p = pos.min(text.len());
        while !text.is_char_boundary(p) {
            p -= 1;
        }
        let mut end = (p + del).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        text.replace_range(p..end, &ins);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn edited_wiki_never_panics(edits in prop::collection::vec((0usize..WIKI.len(), 0usize..4, "[ -~\n]{0,6}"), 1..5)) {
        let mut text = WIKI.to_string();
        apply_edits(&mut text, edits);
        check(text)?;
    }

    /// The IPv6-only fixture with its keys dropped or edited: `cidr`,
    /// `address`, `address6`, `gateway`, `build` lines gone or garbled
    /// exercise every "no IPv4" path (each `Option` a consumer must handle).
    #[test]
    fn edited_ipv6_only_topology_never_panics(
        drop in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        edits in prop::collection::vec((0usize..V6ONLY.len(), 0usize..4, "[ -~\n]{0,6}"), 0..3),
        debian in any::<bool>(),
    ) {
        let mut lines: Vec<&str> = V6ONLY.lines().collect();
        for i in drop {
            if !lines.is_empty() {
                lines.remove(i.index(lines.len()));
            }
        }
        let mut text = lines.join("\n");
        if debian {
            text = text.replace("build = \"upstream\"", "build = \"debian\"");
        }
        apply_edits(&mut text, edits);
        check(text)?;
    }

    #[test]
    fn random_topologies_never_panic(
        nets in 1usize..4,
        hosts in prop::collection::vec((prop::collection::vec(0usize..3, 1..3), 0usize..16, prop::option::of(0usize..6), any::<bool>()), 1..7),
        auth in prop::sample::select(vec!["bsd", "bsdudp", "bsdtcp", "ssh", "local"]),
        helper in any::<bool>(),
    ) {
        let ranges = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"];
        let mut t = format!("[amanda]\nauth = \"{auth}\"\nclient-port = 10080\nconntrack-helper = {helper}\n");
        for (n, cidr) in ranges.iter().enumerate().take(nets) {
            t.push_str(&format!("[[network]]\nname = \"n{n}\"\ncidr = \"{cidr}\"\n"));
        }
        for (i, (ifs, roles, gw, masq)) in hosts.iter().enumerate() {
            let mut seen = Vec::new();
            let ifaces: Vec<String> = ifs.iter().map(|n| n % nets).filter(|n| !seen.contains(n) && { seen.push(*n); true }).collect::<Vec<_>>().iter().enumerate()
                .map(|(k, n)| format!("{{ name = \"eth{k}\", network = \"n{n}\", address = \"{}.{}\" }}", ranges[*n].trim_end_matches(".0/24"), i + 1))
                .collect();
            let role_names = ["server", "client", "recover", "router"];
            // One server (h0) most of the time, so most cases get past validation.
            let roles = if i == 0 { roles | 1 } else { roles & !1 };
            let roles = if seen.len() < 2 { roles & !8 } else { roles };
            let rs: Vec<String> = role_names.iter().enumerate().filter(|(b, _)| roles & (1 << b) != 0).map(|(_, r)| format!("\"{r}\"")).collect();
            t.push_str(&format!("[[host]]\nname = \"h{i}\"\nroles = [{}]\ninterfaces = [{}]\n", rs.join(", "), ifaces.join(", ")));
            if let Some(g) = gw.map(|g| g % hosts.len()).filter(|g| *g != i) { t.push_str(&format!("gateway = \"h{g}\"\n")); }
            if *masq && seen.len() >= 2 { t.push_str(&format!("masquerade = [{{ from = \"n{}\", to = \"n{}\" }}]\n", seen[0], seen[1])); }
        }
        check(t)?;
    }
}
