//! The texts a rollback feeds the tools, computed from the snapshot alone:
//! pure functions, so the restore is the same whoever runs it (the watchdog,
//! `--rollback`, or the next invocation that finds an overdue apply).

use crate::netfilter::Jump;

/// What tells merged mode's chains from everyone else's (`render::MERGED_PREFIX`).
const MERGED_PREFIX: &str = "AMWALL-";

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

/// One table's part of an iptables-save dump: its amwall chains (name →
/// rules, in order) and the jumps into them from built-in chains.
#[derive(Default)]
struct Ours {
    chains: Vec<(String, Vec<String>)>,
    jumps: Vec<String>,
}

fn ours_in(save: &str, table: &str) -> Ours {
    let mut o = Ours::default();
    let mut here = false;
    for l in save.lines() {
        if let Some(t) = l.strip_prefix('*') {
            here = t.trim() == table;
            continue;
        }
        if !here {
            continue;
        }
        if let Some(c) = l.strip_prefix(':') {
            let name = c.split_whitespace().next().unwrap_or("");
            if name.starts_with(MERGED_PREFIX) {
                o.chains.push((name.to_string(), Vec::new()));
            }
        } else if let Some(rest) = l.strip_prefix("-A ") {
            let chain = rest.split_whitespace().next().unwrap_or("");
            if chain.starts_with(MERGED_PREFIX) {
                if let Some((_, rules)) = o.chains.iter_mut().find(|(n, _)| n == chain) {
                    rules.push(l.to_string());
                }
            } else if is_our_jump(rest) {
                o.jumps.push(l.to_string());
            }
        }
    }
    o
}

/// `FROM -j AMWALL-X` and nothing else: the jumps merged mode adds.
fn is_our_jump(rest: &str) -> bool {
    let w: Vec<&str> = rest.split_whitespace().collect();
    matches!(w.as_slice(), [_, "-j", c] if c.starts_with(MERGED_PREFIX))
}

/// Merged mode's load: the chains file, plus in each table the jumps that
/// `live` lacks, inserted at the top. One `iptables-restore --noflush`
/// transaction, so the chains and their jumps appear together; computed
/// from the live state under apply's lock, so a jump is never added twice.
pub(crate) fn merged_load(rules: &str, jumps: &[Jump], live: &str) -> String {
    let mut out = String::new();
    let mut table = String::new();
    for l in rules.lines() {
        if let Some(t) = l.strip_prefix('*') {
            table = t.trim().to_string();
        }
        if l.trim() == "COMMIT" {
            let present = ours_in(live, &table).jumps;
            for j in jumps.iter().filter(|j| j.table == table) {
                if !present.contains(&j.rule_line()) {
                    out.push_str(&format!("-I {} 1 -j {}\n", j.from, j.chain));
                }
            }
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Merged mode's rollback, as an `iptables-restore --noflush` text: in each
/// table of `tables`, amwall's chains and jumps go back to what `saved` had
/// (refilled, or removed with their jumps when `saved` had none), and every
/// other chain is left as it is *now*, so a ban fail2ban added while the
/// apply waited survives the rollback. Computed from `live`, so running it
/// twice is the same as once.
pub(crate) fn merged_rollback(saved: &str, live: &str, tables: &[String]) -> String {
    let mut out = String::new();
    for t in tables {
        let (was, is) = (ours_in(saved, t), ours_in(live, t));
        if was.chains.is_empty() && is.chains.is_empty() && is.jumps.is_empty() {
            continue;
        }
        out.push_str(&format!("*{t}\n"));
        for j in is.jumps.iter().filter(|j| !was.jumps.contains(j)) {
            out.push_str(&format!("-D{}\n", &j[2..]));
        }
        for (name, rules) in &was.chains {
            out.push_str(&format!(":{name} - [0:0]\n"));
            for r in rules {
                out.push_str(r);
                out.push('\n');
            }
        }
        for (name, _) in is
            .chains
            .iter()
            .filter(|(n, _)| !was.chains.iter().any(|(w, _)| w == n))
        {
            out.push_str(&format!("-F {name}\n-X {name}\n"));
        }
        for j in was.jumps.iter().filter(|j| !is.jumps.contains(j)) {
            let rest = &j[3..];
            let (from, target) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("-I {from} 1 {target}\n"));
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// The lines of `saved`'s tables `tables` that owned mode's files never
/// hold: user chains, and rules other than ESTABLISHED,RELATED, `lo`, and
/// amwall's commented openings (`amanda ...`, `management`). These are what
/// replacing the tables would take away from someone else.
pub(crate) fn foreign_rules(saved: &str, tables: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut table: Option<String> = None;
    for l in saved.lines() {
        if let Some(t) = l.strip_prefix('*') {
            table = Some(t.trim().to_string()).filter(|t| tables.contains(t));
            continue;
        }
        let Some(t) = &table else { continue };
        if let Some(c) = l.strip_prefix(':') {
            let name = c.split_whitespace().next().unwrap_or("");
            if !builtin_chains(t).contains(&name) {
                out.push(format!("{t}: chain {name}"));
            }
        } else if l.starts_with("-A ") && !owned_rule(l) {
            out.push(format!("{t}: {l}"));
        }
    }
    out
}

/// A rule of the kind owned mode writes.
fn owned_rule(l: &str) -> bool {
    let rest: Vec<&str> = l.split_whitespace().skip(2).collect();
    let rest = rest.join(" ");
    rest == "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        || rest == "-i lo -j ACCEPT"
        || rest.contains("-m comment --comment \"amanda ")
        || rest.contains("-m comment --comment management ")
        // HOST.rules6: what IPv6 itself needs (render::ip6tables_ruleset).
        || rest.contains("-m comment --comment \"icmpv6 (rfc 4890)\" ")
        || rest.contains("-m comment --comment \"dhcpv6 client\" ")
}

/// `nft list ruleset` without the tables iptables-nft keeps for
/// iptables-save (ip/ip6 filter, nat, raw, mangle, security), which
/// iptables-save already showed in iptables' own words.
pub fn without_iptables_tables(nft: &str) -> String {
    let mut out = String::new();
    let mut skip = false;
    for l in nft.lines() {
        if let Some(rest) = l.strip_prefix("table ") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            skip = matches!(w.as_slice(), [fam, name, ..]
                if matches!(*fam, "ip" | "ip6")
                    && matches!(*name, "filter" | "nat" | "raw" | "mangle" | "security"));
        }
        if !skip {
            out.push_str(l);
            out.push('\n');
        }
        if l == "}" {
            skip = false;
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

    const FOREIGN: &str = "*filter\n:INPUT DROP [0:0]\n:f2b-sshd - [0:0]\n-A INPUT -p tcp --dport 22 -j f2b-sshd\n-A f2b-sshd -j RETURN\nCOMMIT\n";

    fn jump(t: &str, f: &str, c: &str) -> Jump {
        Jump {
            table: t.into(),
            from: f.into(),
            chain: c.into(),
        }
    }

    #[test]
    fn merged_load_adds_only_missing_jumps_at_the_top() {
        let rules =
            "# x\n*filter\n:AMWALL-INPUT - [0:0]\n-A AMWALL-INPUT -i lo -j ACCEPT\nCOMMIT\n";
        let j = [jump("filter", "INPUT", "AMWALL-INPUT")];
        let first = merged_load(rules, &j, FOREIGN);
        assert_eq!(
            first,
            "# x\n*filter\n:AMWALL-INPUT - [0:0]\n-A AMWALL-INPUT -i lo -j ACCEPT\n-I INPUT 1 -j AMWALL-INPUT\nCOMMIT\n"
        );
        let live = "*filter\n:INPUT DROP [0:0]\n:AMWALL-INPUT - [0:0]\n-A INPUT -j AMWALL-INPUT\n-A INPUT -p tcp --dport 22 -j f2b-sshd\nCOMMIT\n";
        assert_eq!(merged_load(rules, &j, live), rules, "no second jump");
    }

    #[test]
    fn merged_rollback_removes_new_chains_and_keeps_foreign_changes() {
        // Loaded over FOREIGN; meanwhile fail2ban added a ban.
        let live = "*filter\n:INPUT DROP [0:0]\n:AMWALL-INPUT - [0:0]\n:f2b-sshd - [0:0]\n-A INPUT -j AMWALL-INPUT\n-A INPUT -p tcp --dport 22 -j f2b-sshd\n-A AMWALL-INPUT -i lo -j ACCEPT\n-A f2b-sshd -s 192.0.2.9/32 -j REJECT\n-A f2b-sshd -j RETURN\nCOMMIT\n";
        let t = merged_rollback(FOREIGN, live, &["filter".into()]);
        assert_eq!(
            t,
            "*filter\n-D INPUT -j AMWALL-INPUT\n-F AMWALL-INPUT\n-X AMWALL-INPUT\nCOMMIT\n"
        );
        // After it, live has no AMWALL lines: running it again changes nothing.
        assert_eq!(merged_rollback(FOREIGN, FOREIGN, &["filter".into()]), "");
    }

    #[test]
    fn merged_rollback_refills_the_chains_that_were_there() {
        let saved = "*filter\n:INPUT ACCEPT [0:0]\n:AMWALL-INPUT - [0:0]\n-A INPUT -j AMWALL-INPUT\n-A AMWALL-INPUT -p udp --dport 10080 -j ACCEPT\nCOMMIT\n";
        let live = "*filter\n:INPUT ACCEPT [0:0]\n:AMWALL-INPUT - [0:0]\n:AMWALL-FORWARD - [0:0]\n-A INPUT -j AMWALL-INPUT\n-A FORWARD -j AMWALL-FORWARD\n-A AMWALL-INPUT -i lo -j ACCEPT\nCOMMIT\n";
        let t = merged_rollback(saved, live, &["filter".into()]);
        assert_eq!(
            t,
            "*filter\n-D FORWARD -j AMWALL-FORWARD\n:AMWALL-INPUT - [0:0]\n-A AMWALL-INPUT -p udp --dport 10080 -j ACCEPT\n-F AMWALL-FORWARD\n-X AMWALL-FORWARD\nCOMMIT\n"
        );
    }

    #[test]
    fn foreign_rules_are_what_owned_mode_never_writes() {
        let saved = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n\
            -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -i lo -j ACCEPT\n\
            -A INPUT -s 192.0.2.2/32 -p udp -m udp --dport 10080 -m comment --comment \"amanda check\" -j ACCEPT\n\
            -A INPUT -p tcp -m tcp --dport 22 -m comment --comment management -j ACCEPT\n\
            -A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT\n-A FORWARD -j DOCKER-USER\nCOMMIT\n\
            *mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j MARK --set-mark 1\nCOMMIT\n";
        assert_eq!(
            foreign_rules(saved, &["filter".into()]),
            [
                "filter: chain DOCKER-USER",
                "filter: -A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT",
                "filter: -A FORWARD -j DOCKER-USER"
            ]
        );
        assert!(foreign_rules(saved, &["raw".into()]).is_empty());
    }

    /// What plan writes as `HOST.rules6` is amwall's own, so applying again
    /// over it is no refusal; an admin's IPv6 rule is foreign.
    #[test]
    fn plans_ipv6_rules_are_not_foreign() {
        let plan = crate::Plan::build(
            crate::load::load_str(
                "t.toml",
                "[[network]]\nname = \"l\"\ncidr = \"192.0.2.0/24\"\ncidr6 = \"2001:db8::/64\"\n\
                 [[host]]\nname = \"s\"\nroles = [\"server\", \"client\"]\n\
                 interfaces = [{ name = \"eth0\", network = \"l\", address = \"192.0.2.2\" }]\n"
                    .into(),
            )
            .unwrap(),
        )
        .unwrap();
        let text = plan.ip6tables(&plan.policies[0]);
        assert!(foreign_rules(&text, &tables_of(&text)).is_empty(), "{text}");
        let theirs = text.replace(
            "COMMIT",
            "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT\nCOMMIT",
        );
        assert_eq!(
            foreign_rules(&theirs, &tables_of(&theirs)),
            ["filter: -A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT"]
        );
    }

    #[test]
    fn iptables_nft_tables_are_left_to_iptables_save() {
        let nft = "table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\ntable inet firewalld {\n\tchain x {\n\t}\n}\ntable ip6 nat {\n}\n";
        assert_eq!(
            without_iptables_tables(nft),
            "table inet firewalld {\n\tchain x {\n\t}\n}\n"
        );
    }
}
