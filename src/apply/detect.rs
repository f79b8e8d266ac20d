//! Which backend `apply` loads into when the admin names none. Whatever
//! already manages the host's firewall decides, because the wrong choice
//! either removes someone else's rules (iptables owned mode replaces whole
//! tables) or loads rules that cannot work (an nft table beside firewalld,
//! whose reject in its own base chain still wins).
//!
//! The order is the order of certainty: a running firewalld owns the host
//! whatever else is loaded; ufw's chains mean ufw does; amwall's own earlier
//! rules (iptables or nft) say what the admin chose before; other iptables rules (Docker,
//! fail2ban, a hand-written rules.v4) call for merged mode; nft tables of
//! others sit beside amwall's own table, and the live check after the load
//! judges whether they let Amanda through.

use super::restore::{foreign_rules, without_iptables_tables};
use super::System;
use crate::check::manager;
use crate::diag::{Error, Result};
use crate::model::Manager;
use crate::render::IptablesMode;

/// The backend `apply` picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Nft,
    Iptables(IptablesMode),
    Firewalld,
    Ufw,
}

impl Choice {
    /// The options that choose this by hand.
    pub fn flags(self) -> &'static str {
        match self {
            Choice::Nft => "--backend nft",
            Choice::Iptables(IptablesMode::Owned) => "--backend iptables --iptables owned",
            Choice::Iptables(IptablesMode::Merged) => "--backend iptables --iptables merged",
            Choice::Firewalld => "--backend firewalld",
            Choice::Ufw => "--backend ufw",
        }
    }
}

/// What was found and why it leads to [`Choice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub choice: Choice,
    pub why: String,
}

/// Nft tables amwall writes (the `_sport` ones in firewalld mode).
const OUR_TABLES: [&str; 4] = [
    "ip amwall",
    "ip6 amwall",
    "ip amwall_sport",
    "ip6 amwall_sport",
];

/// Look at the live firewall and pick.
pub fn detect(sys: &dyn System) -> Result<Detected> {
    let firewalld = sys
        .firewall_cmd(&["--state"])
        .is_ok_and(|s| s.trim() == "running");
    if firewalld {
        return Ok(Detected {
            choice: Choice::Firewalld,
            why: "firewalld is running: amwall's services, ipsets and policies go into it".into(),
        });
    }
    // A host without iptables' tools has no legacy tables; iptables-nft's
    // tables then show in nft's listing, as foreign tables.
    let save = sys.iptables_save().ok();
    let save_text = save.as_deref().unwrap_or("");
    let chains: Vec<&str> = save_text
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|c| c.split_whitespace().next())
        .collect();
    let ufw: Vec<&str> = chains
        .iter()
        .copied()
        .filter(|c| c.starts_with("ufw-") || c.starts_with("ufw6-"))
        .collect();
    if !ufw.is_empty() {
        return Ok(Detected {
            choice: Choice::Ufw,
            why: format!(
                "ufw manages this host's firewall (its chains {}{}): amwall's openings go in \
                 as ufw rules, NAT and the amanda helper as ufw's before.init hook",
                ufw.iter().take(3).copied().collect::<Vec<_>>().join(", "),
                if ufw.len() > 3 { ", ..." } else { "" }
            ),
        });
    }
    if chains.iter().any(|c| c.starts_with("AMWALL-")) {
        return Ok(Detected {
            choice: Choice::Iptables(IptablesMode::Merged),
            why: "amwall's chains AMWALL-* are loaded: they are replaced as before".into(),
        });
    }
    let tables: Vec<String> = save_text
        .lines()
        .filter_map(|l| l.strip_prefix('*'))
        .map(|t| t.trim().to_string())
        .collect();
    let foreign = foreign_rules(save_text, &tables);
    if save_text.contains("-m comment --comment \"amanda ") {
        return Ok(Detected {
            choice: Choice::Iptables(IptablesMode::Owned),
            why: format!(
                "amwall's whole-table iptables rules are loaded: they are replaced as before{}",
                if foreign.is_empty() {
                    String::new()
                } else {
                    " (the tables also hold rules amwall did not write: see below)".into()
                }
            ),
        });
    }
    let nft = sys.nft_ruleset()?;
    let ours = nft
        .lines()
        .any(|l| l.split_whitespace().take(3).eq(["table", "ip", "amwall"]));
    let listed = if save.is_some() {
        without_iptables_tables(&nft)
    } else {
        nft
    };
    let others: Vec<String> = listed
        .lines()
        .filter_map(|l| l.strip_prefix("table "))
        .map(|t| t.split(" {").next().unwrap_or(t).trim().to_string())
        .filter(|t| !OUR_TABLES.contains(&t.as_str()))
        .collect();
    let beside = if others.is_empty() {
        String::new()
    } else {
        format!(
            "; nft tables of others ({}) stay beside amwall's own table: a drop in any of \
             them still wins, and the check after loading names any that blocks Amanda",
            others.join(", ")
        )
    };
    if ours {
        return Ok(Detected {
            choice: Choice::Nft,
            why: format!("amwall's nft table is loaded: it is replaced as before{beside}"),
        });
    }
    if !foreign.is_empty() {
        return Ok(Detected {
            choice: Choice::Iptables(IptablesMode::Merged),
            why: format!(
                "iptables holds {} rule(s) and chain(s) amwall did not write ({}): amwall's \
                 chains are loaded beside them and entered by one jump each",
                foreign.len(),
                owners(&foreign).join("; ")
            ),
        });
    }
    Ok(Detected {
        choice: Choice::Nft,
        why: if others.is_empty() {
            "no other firewall found: amwall's own nft table".to_string()
        } else {
            format!("no iptables rules of others{beside}")
        },
    })
}

/// Who wrote the foreign rules, each manager once, in order found.
fn owners(foreign: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in foreign {
        // "TABLE: chain NAME" or "TABLE: -A CHAIN ... -j TARGET".
        let (table, rest) = f.split_once(": ").unwrap_or(("", f));
        let words: Vec<&str> = rest.split_whitespace().collect();
        let mut path = Vec::new();
        match words.as_slice() {
            ["chain", name] => path.push(format!("{table} {name}")),
            ["-A", chain, ..] => {
                path.push(format!("{table} {chain}"));
                if let Some(i) = words.iter().position(|w| *w == "-j" || *w == "-g") {
                    if let Some(t) = words.get(i + 1) {
                        path.push((*t).to_string());
                    }
                }
            }
            _ => {}
        }
        let m = manager::of("iptables-save", &path);
        let short = m.split(" (").next().unwrap_or(&m).to_string();
        if !out.contains(&short) {
            out.push(short);
        }
    }
    out
}

/// What the topology says of the host (`firewall = ...`) against what was
/// found: a disagreement means the plan's files were chosen for another
/// host than this one, and loading is refused (exit 2) before anything
/// changes.
pub fn reconcile(declared: Option<Manager>, host: &str, found: Detected) -> Result<Detected> {
    use Choice::*;
    let Some(m) = declared else {
        return Ok(found);
    };
    let agrees = match (m, found.choice) {
        (Manager::Firewalld, Firewalld) => Some(found.choice),
        (Manager::Ufw, Ufw) => Some(found.choice),
        (Manager::Amwall, Nft | Iptables(IptablesMode::Owned)) => Some(found.choice),
        (Manager::Shared, Nft) => Some(Nft),
        (Manager::Shared, Iptables(_)) => Some(Iptables(IptablesMode::Merged)),
        _ => None,
    };
    match agrees {
        Some(choice) => Ok(Detected {
            choice,
            why: format!(
                "{} (the topology says: firewall = \"{}\")",
                found.why,
                m.name()
            ),
        }),
        None => Err(Error::Usage(format!(
            "the topology says `{}` manages {host}'s firewall (firewall = \"{}\"), but here: {}; \
             nothing was loaded: correct the topology's `firewall`, or give --backend",
            m.name(),
            m.name(),
            found.why
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(choice: Choice) -> Detected {
        Detected {
            choice,
            why: "found".into(),
        }
    }

    #[test]
    fn the_topologys_manager_must_match_the_host() {
        let ok = |m, c| reconcile(Some(m), "h", found(c)).map(|d| d.choice);
        assert_eq!(
            ok(Manager::Firewalld, Choice::Firewalld).unwrap(),
            Choice::Firewalld
        );
        assert_eq!(ok(Manager::Amwall, Choice::Nft).unwrap(), Choice::Nft);
        assert_eq!(ok(Manager::Ufw, Choice::Ufw).unwrap(), Choice::Ufw);
        // Shared always means merged, even over amwall's earlier owned rules.
        assert_eq!(
            ok(Manager::Shared, Choice::Iptables(IptablesMode::Owned)).unwrap(),
            Choice::Iptables(IptablesMode::Merged)
        );
        for (m, c) in [
            (Manager::Firewalld, Choice::Nft),
            (Manager::Amwall, Choice::Firewalld),
            (Manager::Amwall, Choice::Iptables(IptablesMode::Merged)),
            (Manager::Shared, Choice::Firewalld),
            (Manager::Ufw, Choice::Nft),
            (Manager::Amwall, Choice::Ufw),
        ] {
            let e = ok(m, c).unwrap_err();
            assert!(matches!(e, Error::Usage(_)), "{e}");
            let e = e.to_string();
            assert!(
                e.contains(&format!("firewall = \"{}\"", m.name())) && e.contains("here: found"),
                "{e}"
            );
        }
        assert_eq!(
            reconcile(None, "h", found(Choice::Nft)).unwrap().choice,
            Choice::Nft
        );
    }
}
