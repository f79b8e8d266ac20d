//! Reading the rulesets admins have: iptables-save, ip6tables-save, `nft list
//! ruleset` and `nft -j list ruleset`, told apart by their content; several
//! files per host (say rules.v4 and rules.v6) merge into one ruleset that
//! remembers which file each table came from, for "FILE:LINE".

use std::path::Path;

use crate::diag::{Error, InputError};
use crate::netfilter::ipset::{self, IpSets};
use crate::netfilter::{iptables, nft, ChainInfo, Family, Ruleset, Source};
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

/// What a file holds, from the first line anywhere in it that only one format
/// has; `None` when no line is either's. The whole content counts because
/// dumps are often pasted with the shell prompt that made them, or a
/// sentence, in front. A file with nothing but comments and blank lines is an
/// (empty) iptables-save dump, as before.
pub fn detect(text: &str) -> Option<Format> {
    let t = text.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        return Some(Format::NftJson);
    }
    let mut meaningful = false;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(c) = t.strip_prefix('#') {
            if c.contains("iptables-save") || c.contains("ip6tables-save") {
                return Some(Format::IptablesSave);
            }
            if c.starts_with('!') && c.contains("nft") {
                return Some(Format::Nft);
            }
            continue;
        }
        meaningful = true;
        if let Some(f) = line_format(t) {
            return Some(f);
        }
    }
    (!meaningful).then_some(Format::IptablesSave)
}

/// The format a single (trimmed, non-comment) line belongs to, if only one
/// format has lines like it.
fn line_format(t: &str) -> Option<Format> {
    if t.starts_with("{\"nftables\"") {
        return Some(Format::NftJson);
    }
    let words: Vec<&str> = t.split_whitespace().collect();
    let table_name =
        |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let ipt = t == "COMMIT"
        || t.strip_prefix('*').is_some_and(table_name)
        || (t.starts_with(':') && words.len() >= 2)
        || matches!(words.first(), Some(&("-A" | "-I" | "-N" | "-P")))
        || (t.starts_with('[') && words.get(1).is_some_and(|w| *w == "-A"));
    if ipt {
        return Some(Format::IptablesSave);
    }
    let family = |w: &&str| matches!(*w, "ip" | "ip6" | "inet" | "arp" | "bridge" | "netdev");
    let nft = match words.as_slice() {
        ["table", rest @ ..] => {
            // `table inet x {`, `table x {`, `table ip x`: a name, a brace or the end.
            let rest: Vec<&str> = rest.iter().copied().skip_while(family).collect();
            matches!(rest.as_slice(), [_] | [_, "{", ..])
                || rest.first().is_some_and(|w| w.ends_with('{'))
        }
        ["flush", "ruleset", ..] => true,
        ["add" | "create" | "delete" | "destroy" | "flush", "table", ..] => true,
        ["add" | "insert", "rule", ..] => true,
        ["define" | "redefine", _, "=", ..] => true,
        ["undefine", _] => true,
        ["include", f, ..] => f.starts_with('"'),
        _ => false,
    };
    nft.then_some(Format::Nft)
}

/// The error for a file that is neither format, naming what each expects.
fn neither(path: &str, text: &str) -> Box<InputError> {
    let start = text.len() - text.trim_start().len();
    let end = text[start..].find('\n').map_or(text.len(), |e| start + e);
    Box::new(
        InputError::new(
            path,
            &std::sync::Arc::new(text.to_string()),
            start..end,
            "neither an iptables-save dump (`*filter` ... `COMMIT`) nor an nft ruleset \
             (`table inet x { ... }`) nor `nft -j list ruleset` JSON",
            "no line of the file looks like either",
        )
        .with_help(
            "iptables-save prints `*TABLE`, chains as `:CHAIN POLICY [p:b]`, rules as \
             `-A CHAIN ...` and `COMMIT`; `nft list ruleset` prints `table FAMILY NAME { chain \
             NAME { ... } }`; give the file as the tool printed it",
        ),
    )
}

/// One file as read and parsed.
#[derive(Clone, Debug)]
pub struct RulesFile {
    pub path: String,
    pub text: String,
    pub format: Format,
    pub ruleset: Ruleset,
    pub chains: Vec<ChainInfo>,
    /// What the parser skipped (pasted prompts), each with FILE:LINE.
    pub warnings: Vec<String>,
    /// Files nft `include`d, for rules written in them.
    pub includes: Vec<Source>,
    /// Byte offset where each line starts, per source (0 the file itself,
    /// then its includes).
    lines: Vec<Vec<usize>>,
}

fn line_starts(text: &str) -> Vec<usize> {
    let mut lines = vec![0];
    lines.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    lines
}

impl RulesFile {
    /// `text` read from `path`; nft `include`s are followed as `nft -f`
    /// follows them without `-I`.
    pub fn parse(path: &str, text: String) -> Result<RulesFile, Box<InputError>> {
        RulesFile::parse_with(path, text, &nft::Includes::nft_default())
    }

    /// As [`RulesFile::parse`], with nft's include path given.
    pub fn parse_with(
        path: &str,
        text: String,
        inc: &nft::Includes,
    ) -> Result<RulesFile, Box<InputError>> {
        let format = detect(&text).ok_or_else(|| neither(path, &text))?;
        let parsed = match format {
            Format::IptablesSave => iptables::parse(path, &text)?,
            Format::Nft => nft::parse_with(path, &text, inc)?,
            Format::NftJson => nft::parse_json(path, &text)?,
        };
        let lines = std::iter::once(text.as_str())
            .chain(parsed.includes.iter().map(|s| s.text.as_str()))
            .map(line_starts)
            .collect();
        Ok(RulesFile {
            path: path.to_string(),
            text,
            format,
            ruleset: parsed.ruleset,
            chains: parsed.chains,
            warnings: parsed.warnings,
            includes: parsed.includes,
            lines,
        })
    }

    /// A ruleset file, or standard input for `-` (`iptables-save | amwall check --rules -`).
    pub fn read(path: &Path) -> Result<RulesFile, Error> {
        RulesFile::read_with(path, &nft::Includes::nft_default())
    }

    /// As [`RulesFile::read`], with nft's include path given.
    pub fn read_with(path: &Path, inc: &nft::Includes) -> Result<RulesFile, Error> {
        let text = crate::input::read_text_or_stdin(path)?;
        RulesFile::parse_with(&crate::input::display_name(path), text, inc).map_err(Error::Input)
    }

    /// Source `file` (0 this file, k its `k`th include): its path and text.
    fn source(&self, file: usize) -> (&str, &str) {
        match file.checked_sub(1).and_then(|k| self.includes.get(k)) {
            Some(s) => (&s.path, &s.text),
            None => (&self.path, &self.text),
        }
    }

    fn line(&self, file: usize, n: usize) -> Option<&str> {
        let (_, text) = self.source(file);
        let lines = self.lines.get(file)?;
        let start = *lines.get(n.checked_sub(1)?)?;
        let end = lines.get(n).copied().unwrap_or(text.len());
        text.get(start..end).map(str::trim)
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
            let file = self.source_path(f, info.map_or(0, |i| i.file));
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
            return Loc { file, line, text };
        }
        let line = ch.rules[rule].line;
        // Which file the rule was written in (an nft include).
        let src = table
            .chains
            .get(ch.pos)
            .and_then(|c| c.rules.get(rule))
            .and_then(|r| r.origin)
            .map_or(0, |o| o.file);
        let text = match (f.format, line.and_then(|l| f.line(src, l))) {
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
            file: self.source_path(f, src),
            line,
            text,
        }
    }

    fn source_path(&self, f: &RulesFile, file: usize) -> String {
        f.source(file).0.to_string()
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
            Some(Format::IptablesSave)
        );
        assert_eq!(
            detect("\n*nat\n:PREROUTING ACCEPT [0:0]\n"),
            Some(Format::IptablesSave)
        );
        assert_eq!(detect("table inet filter {\n}\n"), Some(Format::Nft));
        assert_eq!(
            detect("#!/usr/sbin/nft -f\nflush ruleset\n"),
            Some(Format::Nft)
        );
        assert_eq!(detect("{\"nftables\": []}"), Some(Format::NftJson));
        assert_eq!(detect("# only a comment\n\n"), Some(Format::IptablesSave));
    }

    /// A pasted terminal session: the prompt (and a sentence) come first,
    /// the format is decided by the lines only one format has.
    #[test]
    fn pasted_dumps_are_told_apart_by_their_content() {
        assert_eq!(
            detect(
                "root@host:~# iptables-save\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\nroot@host:~#\n"
            ),
            Some(Format::IptablesSave)
        );
        assert_eq!(
            detect("Here are the rules of our server:\n\n*filter\n-A INPUT -j ACCEPT\nCOMMIT\n"),
            Some(Format::IptablesSave)
        );
        assert_eq!(
            detect("root@host:~# nft list ruleset\ntable inet filter {\n}\n"),
            Some(Format::Nft)
        );
        assert_eq!(
            detect("define lan = 192.0.2.0/24\ntable ip t {\n}\n"),
            Some(Format::Nft)
        );
        assert_eq!(detect("hello world\nnothing here\n"), None);
        // A sentence that starts with a command word is not nft.
        assert_eq!(
            detect("add the rules below\n*filter\nCOMMIT\n"),
            Some(Format::IptablesSave)
        );
    }

    #[test]
    fn neither_format_says_what_each_expects() {
        let e = RulesFile::parse("x.txt", "\nhello world\n".into()).unwrap_err();
        assert_eq!((e.line, e.column), (2, 1));
        assert!(e.message.contains("`*filter`"), "{e}");
        assert!(e.message.contains("`table inet x {"), "{e}");
    }
}
