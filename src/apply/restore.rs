//! The texts a rollback feeds the tools, computed from the snapshot alone:
//! pure functions, so the restore is the same whoever runs it (the watchdog,
//! `--rollback`, or the next invocation that finds an overdue apply).

/// The tables an iptables-restore file names, in order.
pub(crate) fn tables_of(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.strip_prefix('*'))
        .map(|t| t.trim().to_string())
        .collect()
}

/// The sets an ipset file of `plan` fills: each is filled under a temporary
/// name and swapped in (`swap TMP NAME`), so the swaps name them all.
pub(crate) fn sets_of(ipset: &str) -> Vec<String> {
    let mut v: Vec<String> = ipset
        .lines()
        .filter_map(|l| l.strip_prefix("swap "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The set names an `ipset save` dump creates.
pub(crate) fn set_names(saved: &str) -> Vec<String> {
    saved
        .lines()
        .filter_map(|l| l.strip_prefix("create "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn builtin_chains(table: &str) -> &'static [&'static str] {
    match table {
        "filter" => &["INPUT", "FORWARD", "OUTPUT"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "raw" => &["PREROUTING", "OUTPUT"],
        "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "security" => &["INPUT", "FORWARD", "OUTPUT"],
        _ => &[],
    }
}

/// The restore text that puts the iptables tables `ours` back as `saved`
/// had them: tables `saved` lacks were empty and accepting (that is what
/// the kernel has before anything is loaded).
pub(crate) fn iptables_rollback(saved: &str, ours: &[String]) -> String {
    let present = tables_of(saved);
    let mut out = String::new();
    let mut keep = false;
    for l in saved.lines() {
        if let Some(t) = l.strip_prefix('*') {
            keep = ours.iter().any(|o| o == t.trim());
        }
        if keep {
            out.push_str(l);
            out.push('\n');
        }
        if l.trim() == "COMMIT" {
            keep = false;
        }
    }
    for t in ours.iter().filter(|t| !present.contains(t)) {
        out.push_str(&format!("*{t}\n"));
        for c in builtin_chains(t) {
            out.push_str(&format!(":{c} ACCEPT [0:0]\n"));
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// `ipset restore` text that gives the sets that existed before their old
/// members back (the sets we created are destroyed separately).
pub(crate) fn ipset_rollback(saved: &str, sets: &[(String, bool)]) -> String {
    let mut out = String::new();
    for (name, _) in sets.iter().filter(|(_, existed)| *existed) {
        out.push_str(&format!("flush {name}\n"));
        for l in saved.lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() >= 3 && w[0] == "add" && w[1] == name {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_only_our_tables_and_empties_new_ones() {
        let saved = "# Generated\n*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n";
        let t = iptables_rollback(saved, &["raw".into(), "filter".into()]);
        assert_eq!(
            t,
            "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n\
             *raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
        );
    }

    #[test]
    fn ipset_rollback_refills_only_sets_that_existed() {
        let saved = "create amw_a hash:ip family inet\nadd amw_a 192.0.2.1\nadd amw_b 192.0.2.2\nadd amw_ab 192.0.2.3\n";
        let t = ipset_rollback(saved, &[("amw_a".into(), true), ("amw_b".into(), false)]);
        assert_eq!(t, "flush amw_a\nadd amw_a 192.0.2.1\n");
    }

    #[test]
    fn sets_and_tables_are_found() {
        assert_eq!(
            sets_of("create amw_x hash:ip -exist\ncreate amw_x~ hash:ip -exist\nadd amw_x~ 192.0.2.1\nswap amw_x~ amw_x\ndestroy amw_x~\n"),
            vec!["amw_x".to_string()]
        );
        assert_eq!(
            tables_of("*raw\nCOMMIT\n*filter\nCOMMIT\n"),
            vec!["raw", "filter"]
        );
        assert_eq!(
            set_names("create amw_a hash:ip family inet\nadd amw_a 192.0.2.1\ncreate b hash:net\n"),
            vec!["amw_a", "b"]
        );
    }
}
