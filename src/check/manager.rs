//! Whose rule blocks a flow. A host's ruleset is often several managers'
//! at once (Docker's chains, fail2ban's bans, firewalld's or ufw's, the
//! admin's own, amwall's); each names its chains and tables its own way, and
//! the fix goes to whoever owns the rule.

/// The manager of a rule, from the file it was read from and the chains a
/// packet took to it ("filter INPUT", "f2b-sshd"; nft: "firewalld filter_INPUT").
pub fn of(file: &str, chain_path: &[String]) -> String {
    let has = |p: &str| {
        chain_path
            .iter()
            .any(|c| c.split(' ').any(|w| w.starts_with(p)))
    };
    let table = |t: &str| chain_path.iter().any(|c| c.split(' ').next() == Some(t));
    let s = if has("AMWALL-") || table("amwall") {
        "amwall's own rules (run `amwall plan` again)"
    } else if has("f2b-") {
        "fail2ban's chain (a ban: `fail2ban-client unban`)"
    } else if has("DOCKER") {
        "Docker's chains (DOCKER-USER is the admin's place in them)"
    } else if has("ufw-") || has("ufw6-") {
        "ufw's chains (`ufw allow`)"
    } else if table("firewalld") {
        "firewalld's table (`firewall-cmd`: the zone's services, ports or rich rules)"
    } else if file.contains("nft") {
        let t = chain_path
            .first()
            .and_then(|c| c.split(' ').next())
            .unwrap_or("?");
        return format!("nft table `{t}`");
    } else {
        "the host's own rules"
    };
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn managers_are_told_apart_by_their_names() {
        let f = "rules.v4";
        assert!(of(f, &p(&["filter INPUT", "f2b-sshd"])).starts_with("fail2ban"));
        assert!(of(f, &p(&["filter FORWARD", "DOCKER-USER"])).starts_with("Docker"));
        assert!(of(f, &p(&["filter INPUT", "ufw-before-input"])).starts_with("ufw"));
        assert!(of(f, &p(&["filter INPUT", "AMWALL-INPUT"])).starts_with("amwall"));
        assert!(of("x.nft", &p(&["firewalld filter_INPUT"])).starts_with("firewalld"));
        assert!(of("x.nft", &p(&["amwall input"])).starts_with("amwall"));
        assert_eq!(
            of("(live nft list ruleset)", &p(&["fw input"])),
            "nft table `fw`"
        );
        assert_eq!(of(f, &p(&["filter INPUT"])), "the host's own rules");
    }
}
