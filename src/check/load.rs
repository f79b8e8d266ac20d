//! Reading the rulesets admins have: iptables-save, ip6tables-save, `nft list
//! ruleset` and `nft -j list ruleset`, told apart by their content; several
//! files per host (say rules.v4 and rules.v6) merge into one ruleset that
//! remembers which file each table came from, for "FILE:LINE".

use std::path::Path;

use crate::diag::{Error, InputError};
use crate::netfilter::ipset::{self, IpSets};
use crate::netfilter::{iptables, nft, ChainInfo, Family, Ruleset};
use crate::sim::compile::Compiled;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    IptablesSave,
    Nft,
    NftJson,
}

impl Format {
    pub fn name(&self) -> &'static str {
        match self {
            Format::IptablesSave => "iptables-save",
            Format::Nft => "nft list ruleset",
            Format::NftJson => "nft -j list ruleset",
        }
    }
}

/// What a file holds, from its first meaningful line.
pub fn detect(text: &str) -> Format {
    for line in text.lines() {
        let t = line.trim_start();
        if t.is_empty() {
            continue;
        }
        if t.starts_with('{') || t.starts_with('[') {
            return Format::NftJson;
        }
        if t.starts_with('#') {
            if t.contains("iptables-save") || t.contains("ip6tables-save") {
                return Format::IptablesSave;
            }
            continue;
        }
        if t.starts_with('*') || t.starts_with(':') || t.starts_with("-A ") || t == "COMMIT" {
            return Format::IptablesSave;
        }
        return Format::Nft;
    }
    Format::IptablesSave
}

/// One file as read and parsed.
#[derive(Clone, Debug)]
pub struct RulesFile {
    pub path: String,
    pub text: String,
    pub format: Format,
    pub ruleset: Ruleset,
    pub chains: Vec<ChainInfo>,
    /// Byte offset where each line starts.
    lines: Vec<usize>,
}

impl RulesFile {
    pub fn parse(path: &str, text: String) -> Result<RulesFile, Box<InputError>> {
        let format = detect(&text);
        let parsed = match format {
            Format::IptablesSave => iptables::parse(path, &text)?,
            Format::Nft => nft::parse(path, &text)?,
            Format::NftJson => nft::parse_json(path, &text)?,
        };
        let mut lines = vec![0];
        lines.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Ok(RulesFile {
            path: path.to_string(),
            text,
            format,
            ruleset: parsed.ruleset,
            chains: parsed.chains,
            lines,
        })
    }

    /// A ruleset file, or standard input for `-` (`iptables-save | amwall check --rules -`).
    pub fn read(path: &Path) -> Result<RulesFile, Error> {
        let text = crate::input::read_text_or_stdin(path)?;
        RulesFile::parse(&crate::input::display_name(path), text).map_err(Error::Input)
    }

    fn line(&self, n: usize) -> Option<&str> {
        let start = *self.lines.get(n.checked_sub(1)?)?;
        let end = self.lines.get(n).copied().unwrap_or(self.text.len());
        self.text.get(start..end).map(str::trim)
    }
}

/// Where a rule (or a chain's policy) is: file, line, and its text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Loc {
    pub file: String,
    pub line: Option<usize>,
    pub text: String,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}", self.file),
            None => write!(f, "{}", self.file),
        }
    }
}

/// A host's rules: one or more files merged.
#[derive(Clone, Debug)]
pub struct HostRules {
    pub files: Vec<RulesFile>,
    pub ruleset: Ruleset,
    /// Per table of `ruleset`: the index of its file.
    pub table_file: Vec<usize>,
    pub ipsets: Option<IpSets>,
}

impl HostRules {
    pub fn new(files: Vec<RulesFile>, ipsets: Option<IpSets>) -> HostRules {
        let mut ruleset = Ruleset::default();
        let mut table_file = Vec::new();
        for (i, f) in files.iter().enumerate() {
            for t in &f.ruleset.tables {
                ruleset.tables.push(t.clone());
                table_file.push(i);
            }
        }
        HostRules {
            files,
            ruleset,
            table_file,
            ipsets,
        }
    }

    pub fn file_names(&self) -> String {
        self.files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn has_family(&self, v6: bool) -> bool {
        self.ruleset.tables.iter().any(|t| match t.family {
            Family::Ip => !v6,
            Family::Ip6 => v6,
            Family::Inet => true,
            _ => false,
        })
    }

    /// Where compiled chain `chain`'s rule `rule` is (`usize::MAX`: its policy).
    pub fn loc(&self, c: &Compiled, chain: usize, rule: usize) -> Loc {
        let ch = &c.chains[chain];
        let fi = self.table_file[ch.table];
        let f = &self.files[fi];
        let table = &self.ruleset.tables[ch.table];
        if rule == usize::MAX {
            let info = f
                .chains
                .iter()
                .find(|i| i.family == table.family && i.table == table.name && i.chain == ch.name);
            let line = info.map(|i| i.line);
            let policy = ch
                .base
                .as_ref()
                .map(|b| match b.policy {
                    crate::netfilter::Policy::Accept => "ACCEPT",
                    crate::netfilter::Policy::Drop => "DROP",
                })
                .unwrap_or("RETURN");
            let text = match f.format {
                Format::IptablesSave => format!(":{} {policy} (policy)", ch.name),
                _ => format!(
                    "chain {} policy {} (policy)",
                    ch.name,
                    policy.to_lowercase()
                ),
            };
            return Loc {
                file: f.path.clone(),
                line,
                text,
            };
        }
        let line = ch.rules[rule].line;
        let text = match (f.format, line.and_then(|l| f.line(l))) {
            (Format::IptablesSave | Format::Nft, Some(t)) => t.to_string(),
            _ => {
                let r = &table.chains[ch.pos].rules[rule];
                match f.format {
                    Format::IptablesSave => {
                        format!("-A {}{}", ch.name, iptables::rule_args_in(r, table.family))
                    }
                    _ => nft::rule_text_in(r, table.family),
                }
            }
        };
        Loc {
            file: f.path.clone(),
            line,
            text,
        }
    }
}

/// `ipset save` output, for `--ipset` (`-`: standard input).
pub fn read_ipsets(path: &Path) -> Result<IpSets, Error> {
    let text = crate::input::read_text_or_stdin(path)?;
    ipset::parse(&crate::input::display_name(path), &text).map_err(Error::Input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart() {
        assert_eq!(
            detect("# Generated by iptables-save v1.8.9\n*filter\n"),
            Format::IptablesSave
        );
        assert_eq!(
            detect("\n*nat\n:PREROUTING ACCEPT [0:0]\n"),
            Format::IptablesSave
        );
        assert_eq!(detect("table inet filter {\n}\n"), Format::Nft);
        assert_eq!(detect("#!/usr/sbin/nft -f\nflush ruleset\n"), Format::Nft);
        assert_eq!(detect("{\"nftables\": []}"), Format::NftJson);
    }
}
