//! `nft list ruleset` text (and nft scripts such as `plan` writes) into the IR.
//!
//! nft's grammar is open-ended (every payload field of every header is an
//! expression), so the parser knows the selectors firewalls use and keeps
//! anything else as `Unknown { text }` up to the next word it recognises; a
//! rule with an unknown part still has its verdict. Structure is strict:
//! unbalanced braces, a chain outside a table, a bad hook or priority are
//! [`InputError`]s with the spot.
//!
//! Named sets of IPv4 or IPv6 addresses stay named ([`Table::sets`], `Addr::Set`);
//! other named sets and maps have no place in the IR and are inlined where a
//! rule uses them, which is the same lookup. A verdict map becomes one rule per
//! element (keys of a map never overlap, so the order does not matter).

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};

use crate::diag::InputError;
use crate::netfilter::names;
use crate::netfilter::SKIPPED_SHOWN;
use crate::netfilter::*;
use crate::ports::{PortRange, Proto};

mod pre;

pub use pre::Includes;

/// Parse one file from memory. `file` names it in errors. An `include` is
/// not followed (there are no files to read it from): it is skipped with a
/// warning. [`parse_with`] follows includes.
pub fn parse(file: &str, text: &str) -> Result<Parsed, Box<InputError>> {
    parse_with(file, text, &Includes::none())
}

/// Parse one file, following `include` as `inc` says. Each rule's
/// [`Origin`] and each chain's [`ChainInfo`] name the file they were written
/// in: 0 for `file`, k for `Parsed::includes[k - 1]`.
pub fn parse_with(file: &str, text: &str, inc: &Includes) -> Result<Parsed, Box<InputError>> {
    let mut pre = pre::Pre::new(file, text, inc);
    let toks = match pre.run() {
        Ok(t) => t,
        Err(e) => return Err(pre.error(e)),
    };
    let mut p = Parser {
        texts: pre
            .sources
            .iter()
            .map(|s| (Arc::clone(&s.text), s.base))
            .collect(),
        trailing_plain: None,
        skipped: 0,
        first_skipped: None,
        warnings: Vec::new(),
        toks,
        i: 0,
        eof: text.len(),
        tables: Vec::new(),
        chains: Vec::new(),
    };
    match p.file() {
        Ok(()) => Ok(Parsed {
            ruleset: Ruleset {
                tables: p.tables.into_iter().map(|t| t.table).collect(),
            },
            chains: p.chains,
            warnings: std::mem::take(&mut pre.warnings)
                .into_iter()
                .chain(p.warnings.iter().map(|(f, l, m)| match l {
                    0 => format!("{}: {m}", pre.path(*f)),
                    _ => format!("{}:{l}: {m}", pre.path(*f)),
                }))
                .collect(),
            includes: pre
                .sources
                .iter()
                .skip(1)
                .map(|s| Source {
                    path: s.path.clone(),
                    text: s.text.to_string(),
                })
                .collect(),
        }),
        Err(e) => Err(pre.error(e)),
    }
}

struct Error {
    span: Range<usize>,
    message: String,
    label: String,
    /// An error already made elsewhere (bad UTF-8 in an included file).
    ready: Option<Box<InputError>>,
}

type Res<T> = Result<T, Error>;

fn err<T>(span: Range<usize>, message: impl Into<String>, label: impl Into<String>) -> Res<T> {
    Err(Error {
        span,
        message: message.into(),
        label: label.into(),
        ready: None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    LParen,
    RParen,
    Comma,
    Semi,
    Nl,
}

#[derive(Debug, Clone)]
struct T {
    tok: Tok,
    span: Range<usize>,
    /// 1-based, counted once by the lexer (a scan per rule would be quadratic).
    line: usize,
    /// Which source the token was written in: 0 the file parsed, k its
    /// `k`th included file (see [`Sources`]). `span` is in that source's
    /// slice of the shared offset space.
    file: usize,
}

impl T {
    fn word(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }
    fn is(&self, w: &str) -> bool {
        self.word() == Some(w)
    }
    /// A word or a string: names may be quoted or not.
    fn name(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) | Tok::Str(w) => Some(w),
            _ => None,
        }
    }
}

/// The tokens of `text`, with spans shifted by `base` (its place in the
/// offset space all sources share) and tagged with source `file`.
fn lex(text: &str, base: usize, file: usize) -> Res<Vec<T>> {
    let mut out = lex_local(text, file)?;
    for t in &mut out {
        t.span = t.span.start + base..t.span.end + base;
    }
    Ok(out)
}

/// An error at the first character of `text[range]` that the emitters would
/// print escaped (`name::escaped_in_text`): read, it would not come back
/// unchanged.
fn unprintable(text: &str, range: Range<usize>, what: &str, label: &str) -> Res<()> {
    let start = range.start;
    match text[range]
        .char_indices()
        .find(|&(_, ch)| crate::name::escaped_in_text(ch))
    {
        Some((j, ch)) => err(
            start + j..start + j + ch.len_utf8(),
            format!("control or invisible character U+{:04X}{what}", ch as u32),
            label,
        ),
        None => Ok(()),
    }
}

fn lex_local(text: &str, file: usize) -> Res<Vec<T>> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let c = b[i];
        let one = |tok| T {
            tok,
            span: i..i + 1,
            line,
            file,
        };
        match c {
            b'\n' => {
                out.push(one(Tok::Nl));
                line += 1;
            }
            b' ' | b'\t' | b'\r' => {}
            c if c < 0x20 || c == 0x7f => {
                return err(
                    i..i + 1,
                    format!("control character U+{c:04X}"),
                    "not part of any nft ruleset",
                );
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'\\' if b.get(i + 1) == Some(&b'\n') => {
                i += 2;
                line += 1;
                continue;
            }
            b'{' => out.push(one(Tok::Open)),
            b'}' => out.push(one(Tok::Close)),
            b'(' => out.push(one(Tok::LParen)),
            b')' => out.push(one(Tok::RParen)),
            b',' => out.push(one(Tok::Comma)),
            b';' => out.push(one(Tok::Semi)),
            b'|' | b'&' | b'^' => out.push(T {
                tok: Tok::Word((c as char).to_string()),
                span: i..i + 1,
                line,
                file,
            }),
            b'"' => {
                let start = i;
                let Some(len) = text[i + 1..].find(['"', '\n']) else {
                    return err(start..text.len(), "unterminated string", "opened here");
                };
                if b[i + 1 + len] != b'"' {
                    return err(start..i + 1 + len, "unterminated string", "opened here");
                }
                // nft takes them, but they could not be printed back inside
                // their line unchanged (`name::comment`): refused, not altered.
                unprintable(
                    text,
                    i + 1..i + 1 + len,
                    " in a string",
                    "amwall could not print it back unchanged",
                )?;
                out.push(T {
                    tok: Tok::Str(text[i + 1..i + 1 + len].to_string()),
                    span: start..i + len + 2,
                    line,
                    file,
                });
                i += len + 2;
                continue;
            }
            _ => {
                let start = i;
                while i < b.len() && !b" \t\r\n{}(),;\"#|&^".contains(&b[i]) {
                    i += 1;
                }
                unprintable(text, start..i, "", "not part of any nft ruleset")?;
                out.push(T {
                    tok: Tok::Word(text[start..i].to_string()),
                    span: start..i,
                    line,
                    file,
                });
                continue;
            }
        }
        i += 1;
    }
    Ok(out)
}

/// A named set or map as declared, kept to resolve `@name` in rules.
#[derive(Debug, Clone)]
struct SetDef {
    /// Key type words (`ipv4_addr`, `inet_service`, `ipv4_addr . inet_service`).
    key: Vec<String>,
    /// Each element's key tokens, and the value tokens for maps.
    elements: Vec<(Vec<T>, Vec<T>)>,
    /// A rule read its elements (they are inlined): later additions miss it.
    used: bool,
}

struct OpenTable {
    table: Table,
    sets: HashMap<String, SetDef>,
    chain_index: HashMap<String, usize>,
}

struct Parser {
    /// Each source's text and base offset, to quote a skipped line as written.
    texts: Vec<(Arc<String>, usize)>,
    /// Whether everything after the last command is plain text (known once asked).
    trailing_plain: Option<bool>,
    /// Lines skipped as pasted text (the first few are named).
    skipped: usize,
    first_skipped: Option<Range<usize>>,
    /// (source, line, message): what was skipped, formatted with the
    /// source's path at the end.
    warnings: Vec<(usize, usize, String)>,
    toks: Vec<T>,
    i: usize,
    /// Where the main file ends, for "file ends" errors.
    eof: usize,
    tables: Vec<OpenTable>,
    chains: Vec<ChainInfo>,
}

fn family_of(w: &str) -> Option<Family> {
    Some(match w {
        "ip" => Family::Ip,
        "ip6" => Family::Ip6,
        "inet" => Family::Inet,
        "arp" => Family::Arp,
        "bridge" => Family::Bridge,
        "netdev" => Family::Netdev,
        _ => return None,
    })
}

/// xt matches whose outcome depends on runtime state.
const STATEFUL_XT: &[&str] = &[
    "limit",
    "hashlimit",
    "recent",
    "connlimit",
    "statistic",
    "quota",
    "time",
    "connbytes",
];

/// xt targets that let the packet continue and change nothing amwall models.
const PASSTHROUGH_XT: &[&str] = &[
    "TCPMSS", "CHECKSUM", "TOS", "DSCP", "TTL", "HL", "CLASSIFY", "AUDIT", "TRACE",
];

/// Words that begin a statement, a verdict or an expression we know: where an
/// unknown expression ends.
const KEYWORDS: &[&str] = &[
    "ip",
    "ip6",
    "tcp",
    "udp",
    "udplite",
    "sctp",
    "dccp",
    "th",
    "icmp",
    "icmpv6",
    "ct",
    "meta",
    "iifname",
    "oifname",
    "iif",
    "oif",
    "mark",
    "fib",
    "ether",
    "limit",
    "log",
    "counter",
    "accept",
    "drop",
    "reject",
    "return",
    "jump",
    "goto",
    "continue",
    "comment",
    "dnat",
    "snat",
    "masquerade",
    "redirect",
    "notrack",
    "queue",
    "l4proto",
    "nfproto",
    "pkttype",
    "skuid",
    "skgid",
    "quota",
    "meter",
    "xt",
];

impl Parser {
    fn peek(&self) -> Option<&T> {
        self.toks.get(self.i)
    }

    fn at(&self, w: &str) -> bool {
        self.peek().is_some_and(|t| t.is(w))
    }

    fn eof_span(&self) -> Range<usize> {
        self.eof..self.eof
    }

    fn span(&self) -> Range<usize> {
        self.peek()
            .map_or_else(|| self.eof_span(), |t| t.span.clone())
    }

    fn next(&mut self) -> Option<T> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }

    fn skip_seps(&mut self) {
        while self
            .peek()
            .is_some_and(|t| matches!(t.tok, Tok::Nl | Tok::Semi))
        {
            self.i += 1;
        }
    }

    fn expect_word(&mut self, what: &str) -> Res<(String, Range<usize>)> {
        match self.next() {
            Some(T {
                tok: Tok::Word(w) | Tok::Str(w),
                span,
                ..
            }) => Ok((w, span)),
            Some(t) => err(t.span, format!("expected {what}"), "here"),
            None => err(self.eof_span(), format!("expected {what}"), "file ends"),
        }
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Res<Range<usize>> {
        match self.next() {
            Some(t) if t.tok == tok => Ok(t.span),
            Some(t) => err(t.span, format!("expected {what}"), "here"),
            None => err(self.eof_span(), format!("expected {what}"), "file ends"),
        }
    }

    /// `[FAMILY] NAME`
    fn family_and_name(&mut self) -> Res<(Family, String, Range<usize>)> {
        let (w, span) = self.expect_word("a table family or name")?;
        if let Some(f) = family_of(&w) {
            if self
                .peek()
                .is_some_and(|t| t.name().is_some() && !t.is("{"))
            {
                let (n, s) = self.expect_word("a table name")?;
                return Ok((f, n, s));
            }
        }
        Ok((Family::Ip, w, span))
    }

    fn table_index(&mut self, family: Family, name: &str) -> usize {
        if let Some(i) = self
            .tables
            .iter()
            .position(|t| t.table.family == family && t.table.name == name)
        {
            return i;
        }
        self.tables.push(OpenTable {
            table: Table {
                family,
                name: name.to_string(),
                sets: vec![],
                ct_helpers: vec![],
                chains: vec![],
            },
            sets: HashMap::new(),
            chain_index: HashMap::new(),
        });
        self.tables.len() - 1
    }

    /// `[FAMILY] TABLE` of a table that exists.
    fn existing_table(&mut self) -> Res<usize> {
        let (family, table, span) = self.family_and_name()?;
        match self
            .tables
            .iter()
            .position(|t| t.table.family == family && t.table.name == table)
        {
            Some(ti) => Ok(ti),
            None => err(
                span,
                format!("no table {} {table}", family.name()),
                "add the table first",
            ),
        }
    }

    /// `CHAIN` of table `ti` that exists: its index and the table's name.
    fn existing_chain(&mut self, ti: usize) -> Res<(usize, String)> {
        let (chain, cspan) = self.expect_word("a chain name")?;
        let table = self.tables[ti].table.name.clone();
        match self.tables[ti].chain_index.get(&chain) {
            Some(&ci) => Ok((ci, table)),
            None => err(cspan, format!("no chain {chain} in table {table}"), "here"),
        }
    }

    fn remove_chain(&mut self, ti: usize, ci: usize) {
        let t = &mut self.tables[ti];
        let name = t.table.chains.remove(ci).name;
        t.chain_index = t
            .table
            .chains
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        let (fam, tname) = (t.table.family, t.table.name.clone());
        self.chains
            .retain(|c| !(c.family == fam && c.table == tname && c.chain == name));
    }

    fn warn(&mut self, file: usize, line: usize, msg: String) {
        self.warnings.push((file, line, msg));
    }

    /// `add element [FAMILY] TABLE SET { E, ... }`.
    fn add_elements(
        &mut self,
        ti: usize,
        name: &str,
        nspan: Range<usize>,
        toks: &[T],
        (file, line): (usize, usize),
    ) -> Res<()> {
        let (Some(open), Some(last)) = (toks.first(), toks.last()) else {
            return err(nspan, "expected `{ ELEMENT, ... }`", "after the set name");
        };
        if open.tok != Tok::Open || last.tok != Tok::Close {
            return err(open.span.clone(), "expected `{ ELEMENT, ... }`", "here");
        }
        let t = &mut self.tables[ti];
        let Some(def) = t.sets.get_mut(name) else {
            return err(nspan, format!("no set `{name}` in this table"), "here");
        };
        let new: Vec<(Vec<T>, Vec<T>)> = split_commas(&toks[1..toks.len() - 1])
            .iter()
            .map(|e| split_map_elem(e))
            .collect();
        if let Some(named) = t.table.sets.iter_mut().find(|s| s.name == name) {
            let (what, ty) = if named.v6 {
                ("expected an IPv6 address or prefix", "in an ipv6_addr set")
            } else {
                ("expected an IPv4 address or prefix", "in an ipv4_addr set")
            };
            for (k, _) in &new {
                match k.as_slice() {
                    [e] if e.word().is_some_and(|w| add_nets(named, w)) => {}
                    [e] => return err(e.span.clone(), what, ty),
                    _ => return err(open.span.clone(), what, ty),
                }
            }
        }
        def.elements.extend(new);
        if def.used {
            self.warn(
                file,
                line,
                format!("elements added to @{name} after rules that use it: those rules were read with the elements it had then"),
            );
        }
        Ok(())
    }

    fn flush_set(&mut self, ti: usize, name: &str, nspan: Range<usize>) -> Res<()> {
        let t = &mut self.tables[ti];
        let Some(def) = t.sets.get_mut(name) else {
            return err(nspan, format!("no set `{name}` in this table"), "here");
        };
        def.elements.clear();
        if let Some(named) = t.table.sets.iter_mut().find(|s| s.name == name) {
            named.elements.clear();
            named.elements6.clear();
        }
        Ok(())
    }

    /// Whether the line from token `i` on has no braces: text such as a
    /// shell prompt, not the start of a block.
    fn plain_line(&self, i: usize) -> bool {
        self.toks[i..]
            .iter()
            .take_while(|t| t.tok != Tok::Nl)
            .all(|t| !matches!(t.tok, Tok::Open | Tok::Close))
    }

    /// A pasted dump: a line before the first command, or any line after the
    /// last one, that is no command and opens no block is what a terminal
    /// copy brings along (the prompt, a sentence). Skipped with a warning.
    fn skip_pasted(&mut self, start: usize, seen_command: bool) -> bool {
        let rest_plain = || {
            let mut k = start;
            while k < self.toks.len() {
                if !self.plain_line(k) {
                    return false;
                }
                while k < self.toks.len() && self.toks[k].tok != Tok::Nl {
                    k += 1;
                }
                k += 1;
            }
            true
        };
        if !self.plain_line(start) {
            return false;
        }
        if seen_command {
            // Asked once: every later line is in the same trailing text.
            let plain = match self.trailing_plain {
                Some(p) => p,
                None => {
                    let p = rest_plain();
                    self.trailing_plain = Some(p);
                    p
                }
            };
            if !plain {
                return false;
            }
        }
        let mut end = start;
        while end < self.toks.len() && self.toks[end].tok != Tok::Nl {
            end += 1;
        }
        let t = &self.toks[start];
        let (file, line) = (t.file, t.line);
        let raw = self
            .texts
            .get(file)
            .and_then(|(x, base)| {
                let at = t.span.start.checked_sub(*base)?;
                let from = x.get(..at)?.rfind('\n').map_or(0, |k| k + 1);
                let to = x.get(at..)?.find('\n').map_or(x.len(), |k| at + k);
                x.get(from..to).map(|l| l.trim().to_string())
            })
            .unwrap_or_else(|| tok_text(&self.toks[start..end]));
        if self.first_skipped.is_none() {
            self.first_skipped = Some(t.span.clone());
        }
        self.i = end;
        self.skipped += 1;
        if self.skipped > SKIPPED_SHOWN {
            return true;
        }
        let shown: String = raw.chars().take(60).collect();
        self.warn(
            file,
            line,
            format!("skipped `{shown}`: not an nft command (text pasted around the ruleset?)"),
        );
        true
    }

    // Long: one arm per top-level nft statement (table, chain, set, flush, add, delete,
    // define, include ...): the grammar in one place
    fn file(&mut self) -> Res<()> {
        let mut seen_command = false;
        loop {
            self.skip_seps();
            let Some(t) = self.next() else {
                // Nothing but text: no ruleset at all, say so at its start.
                if let (false, Some(at)) = (seen_command, self.first_skipped.clone()) {
                    return err(
                        at,
                        "no nft command in the file",
                        "expected an nft command: `table`, `add rule`, `flush ruleset`, `define`, `include`...",
                    );
                }
                if self.skipped > SKIPPED_SHOWN {
                    let more = self.skipped - SKIPPED_SHOWN;
                    self.warn(0, 0, format!("{more} more lines of pasted text skipped"));
                }
                return Ok(());
            };
            let Some(w) = t.word().map(str::to_string) else {
                if self.skip_pasted(self.i - 1, seen_command) {
                    continue;
                }
                return err(t.span, "expected a command such as `table`", "here");
            };
            let known = matches!(
                w.as_str(),
                "table"
                    | "add"
                    | "create"
                    | "insert"
                    | "replace"
                    | "delete"
                    | "destroy"
                    | "flush"
                    | "rename"
                    | "list"
                    | "reset"
                    | "describe"
                    | "monitor"
                    | "export"
                    | "get"
            );
            if !known && self.skip_pasted(self.i - 1, seen_command) {
                continue;
            }
            seen_command = true;
            match w.as_str() {
                "table" | "add" | "create" if w == "table" || self.at("table") => {
                    if w != "table" {
                        self.i += 1;
                    }
                    let (family, name, _) = self.family_and_name()?;
                    let ti = self.table_index(family, &name);
                    if self.peek().is_some_and(|t| t.tok == Tok::Open) {
                        self.i += 1;
                        self.table_body(ti)?;
                    }
                }
                "delete" | "destroy" if self.at("table") => {
                    self.i += 1;
                    let (family, name, span) = self.family_and_name()?;
                    let before = self.tables.len();
                    self.tables
                        .retain(|t| !(t.table.family == family && t.table.name == name));
                    if self.tables.len() == before && w == "delete" {
                        return err(
                            span,
                            format!("no table {} {name} to delete", family.name()),
                            "here",
                        );
                    }
                    self.chains
                        .retain(|c| !(c.family == family && c.table == name));
                }
                "flush" if self.at("ruleset") => {
                    self.i += 1;
                    self.tables.clear();
                    self.chains.clear();
                }
                "add" | "insert" if self.at("rule") => {
                    self.i += 1;
                    let ti = self.existing_table()?;
                    let (ci, table) = self.existing_chain(ti)?;
                    // `index N` is a place in the chain; `position H` /
                    // `handle H` name a kernel handle a script cannot know.
                    let mut at = None;
                    if let (Some(k @ ("index" | "position" | "handle")), Some(n)) = (
                        self.peek().and_then(T::word).map(str::to_string).as_deref(),
                        self.toks
                            .get(self.i + 1)
                            .and_then(T::word)
                            .and_then(|n| n.parse::<usize>().ok()),
                    ) {
                        let line = t.line;
                        self.i += 2;
                        if k == "index" {
                            at = Some(n);
                        } else {
                            self.warn(
                                t.file,
                                line,
                                format!("`{w} rule ... {k} {n}`: rule handles are not known here; the rule is put at the chain's {}", if w == "insert" { "start" } else { "end" }),
                            );
                        }
                    }
                    let toks = self.statement_tokens()?;
                    if toks.is_empty() {
                        return err(t.span, format!("`{w} rule` needs a rule for chain {table}"), "here");
                    }
                    let rules = self.rule(ti, &toks)?;
                    let c = &mut self.tables[ti].table.chains[ci];
                    let len = c.rules.len();
                    let pos = match (w.as_str(), at) {
                        ("insert", None) => 0,
                        ("insert", Some(n)) => n.min(len),
                        (_, None) => len,
                        (_, Some(n)) => (n + 1).min(len),
                    };
                    c.rules.splice(pos..pos, rules);
                }
                "add" | "create" if self.at("chain") => {
                    self.i += 1;
                    let ti = self.existing_table()?;
                    let at = self.peek().map_or((0, 0), |t| (t.line, t.file));
                    let (name, _) = self.expect_word("a chain name")?;
                    let ci = self.declare_chain(ti, name, at);
                    if self.peek().is_some_and(|t| t.tok == Tok::Open) {
                        self.i += 1;
                        self.chain_body(ti, ci)?;
                    }
                }
                "add" | "create" if self.at("set") || self.at("map") => {
                    self.i += 1;
                    let ti = self.existing_table()?;
                    let (name, _) = self.expect_word("a set name")?;
                    self.expect(Tok::Open, "`{`")?;
                    self.set(ti, name)?;
                }
                "add" | "create" if self.at("element") => {
                    self.i += 1;
                    let ti = self.existing_table()?;
                    let (name, nspan) = self.expect_word("a set name")?;
                    let toks = self.statement_tokens()?;
                    self.add_elements(ti, &name, nspan, &toks, (t.file, t.line))?;
                }
                "flush" if self.at("table") || self.at("chain") || self.at("set") || self.at("map") => {
                    let what = self.next().and_then(|t| t.word().map(str::to_string)).expect("checked");
                    let ti = self.existing_table()?;
                    match what.as_str() {
                        "table" => {
                            for c in &mut self.tables[ti].table.chains {
                                c.rules.clear();
                            }
                        }
                        "chain" => {
                            let (ci, _) = self.existing_chain(ti)?;
                            self.tables[ti].table.chains[ci].rules.clear();
                        }
                        _ => {
                            let (name, nspan) = self.expect_word("a set name")?;
                            self.flush_set(ti, &name, nspan)?;
                        }
                    }
                }
                "delete" | "destroy" if self.at("chain") => {
                    self.i += 1;
                    let ti = self.existing_table()?;
                    let (name, span) = self.expect_word("a chain name")?;
                    match self.tables[ti].chain_index.get(&name).copied() {
                        Some(ci) => self.remove_chain(ti, ci),
                        None if w == "destroy" => {}
                        None => {
                            return err(span, format!("no chain {name} to delete"), "here")
                        }
                    }
                }
                // Read-only commands change nothing that decides a packet's fate.
                "list" | "reset" | "describe" | "monitor" | "export" | "get" => {
                    self.statement_tokens()?;
                }
                // Valid nft commands amwall does not model: skipped, and said so.
                "add" | "create" | "insert" | "replace" | "delete" | "destroy" | "flush"
                | "rename" => {
                    let toks = self.statement_tokens()?;
                    let mut all = vec![t.clone()];
                    all.extend(toks);
                    let shown: String = tok_text(&all).chars().take(60).collect();
                    self.warn(
                        t.file,
                        t.line,
                        format!("`{shown}` is not modelled: the ruleset nft loads may differ here"),
                    );
                }
                _ => {
                    return err(
                        t.span,
                        format!("unexpected `{w}`"),
                        "expected an nft command: `table`, `add rule`, `flush ruleset`, `define`, `include`...",
                    )
                }
            }
        }
    }

    /// The tokens of one statement: up to a newline or `;` outside braces.
    fn statement_tokens(&mut self) -> Res<Vec<T>> {
        let mut depth = 0usize;
        let mut out = Vec::new();
        let mut open_at = 0..0;
        while let Some(t) = self.peek() {
            match t.tok {
                Tok::Nl if depth > 0 => {
                    self.i += 1;
                    continue;
                }
                Tok::Nl | Tok::Semi if depth == 0 => break,
                Tok::Close if depth == 0 => break,
                Tok::Open => {
                    if depth == 0 {
                        open_at = t.span.clone();
                    }
                    depth += 1
                }
                Tok::Close => depth -= 1,
                _ => {}
            }
            out.push(t.clone());
            self.i += 1;
        }
        if depth > 0 {
            return err(open_at, "unclosed `{`", "opened here");
        }
        Ok(out)
    }

    fn table_body(&mut self, ti: usize) -> Res<()> {
        loop {
            self.skip_seps();
            let Some(t) = self.next() else {
                return err(self.eof_span(), "table block not closed", "expected `}`");
            };
            if t.tok == Tok::Close {
                return Ok(());
            }
            let Some(w) = t.word().map(str::to_string) else {
                return err(
                    t.span,
                    "expected `chain`, `set`, `map` or another table item",
                    "here",
                );
            };
            match w.as_str() {
                "chain" => {
                    let at = self.peek().map_or((0, 0), |t| (t.line, t.file));
                    let (name, _) = self.expect_word("a chain name")?;
                    self.expect(Tok::Open, "`{`")?;
                    self.chain(ti, name, at)?;
                }
                "set" | "map" => {
                    let (name, _) = self.expect_word("a set name")?;
                    self.expect(Tok::Open, "`{`")?;
                    self.set(ti, name)?;
                }
                "ct" if self.at("helper") => {
                    self.i += 1;
                    let (name, _) = self.expect_word("a helper name")?;
                    let open = self.expect(Tok::Open, "`{`")?;
                    self.ct_helper(ti, name, open)?;
                }
                "flags" | "comment" => {
                    self.statement_tokens()?;
                }
                // Objects that do not decide a packet's fate: skipped whole.
                "counter" | "quota" | "limit" | "flowtable" | "secmark" | "synproxy" | "ct" => {
                    while self.peek().is_some_and(|t| t.tok != Tok::Open) {
                        self.i += 1;
                    }
                    let open = self.expect(Tok::Open, "`{`")?;
                    self.skip_block(open)?;
                }
                // An object kind amwall does not know (`tunnel`, newer ones):
                // kept out of the IR, and said so, rather than refusing the file.
                _ => {
                    let toks = self.statement_tokens()?;
                    let mut all = vec![t.clone()];
                    all.extend(toks);
                    let shown: String = tok_text(&all).chars().take(60).collect();
                    self.warn(
                        t.file,
                        t.line,
                        format!("`{shown}` in a table is not modelled: skipped"),
                    );
                }
            }
        }
    }

    fn skip_block(&mut self, open: Range<usize>) -> Res<()> {
        let mut depth = 1;
        while let Some(t) = self.next() {
            match t.tok {
                Tok::Open => depth += 1,
                Tok::Close => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        err(open, "unclosed `{`", "opened here")
    }

    fn ct_helper(&mut self, ti: usize, name: String, open: Range<usize>) -> Res<()> {
        let mut helper = None;
        let mut proto = None;
        loop {
            self.skip_seps();
            let Some(t) = self.next() else {
                return err(open, "unclosed `{`", "opened here");
            };
            match t.tok {
                Tok::Close => break,
                _ if t.is("type") => {
                    let (h, _) = self.expect_word("a helper type")?;
                    helper = Some(h);
                    if self.at("protocol") {
                        self.i += 1;
                        let (p, span) = self.expect_word("tcp or udp")?;
                        proto = Some(match p.as_str() {
                            "tcp" => Proto::Tcp,
                            "udp" => Proto::Udp,
                            _ => return err(span, "a ct helper's protocol is tcp or udp", "here"),
                        });
                    }
                }
                _ => {
                    // l3proto and anything newer: not part of the IR.
                    self.statement_tokens()?;
                }
            }
        }
        let (Some(helper), Some(proto)) = (helper, proto) else {
            return err(
                open,
                "ct helper needs `type \"NAME\" protocol tcp|udp`",
                "in this block",
            );
        };
        self.tables[ti].table.ct_helpers.push(CtHelper {
            name,
            helper,
            proto,
        });
        Ok(())
    }

    fn set(&mut self, ti: usize, name: String) -> Res<()> {
        let mut def = SetDef {
            key: vec![],
            elements: vec![],
            used: false,
        };
        loop {
            self.skip_seps();
            let Some(t) = self.peek().cloned() else {
                return err(self.eof_span(), "set block not closed", "expected `}`");
            };
            if t.tok == Tok::Close {
                self.i += 1;
                break;
            }
            let toks = self.statement_tokens()?;
            let Some(first) = toks.first() else {
                return err(t.span, "unexpected token in a set", "here");
            };
            if first.is("type") || first.is("typeof") {
                let mut key = Vec::new();
                for t in &toks[1..] {
                    match t.word() {
                        Some(":") => break,
                        Some(".") => {}
                        Some(w) => key.push(w.to_string()),
                        None => {}
                    }
                }
                if first.is("typeof") {
                    key = typeof_key(&key);
                }
                def.key = key;
            } else if first.is("elements") {
                let Some(open) = toks.iter().position(|t| t.tok == Tok::Open) else {
                    return err(first.span.clone(), "expected `elements = { ... }`", "here");
                };
                let inner = &toks[open + 1..toks.len() - 1];
                for el in split_commas(inner) {
                    def.elements.push(split_map_elem(&el));
                }
            }
            // flags, size, timeout, policy, counter, auto-merge: not needed.
        }
        // Plain address sets stay named in the IR, as `plan` writes them.
        let v6 = def.key == ["ipv6_addr"];
        if def.key == ["ipv4_addr"] || v6 {
            let mut set = if v6 {
                Set::v6(name.clone(), Vec::new())
            } else {
                Set::v4(name.clone(), Vec::new())
            };
            let mut ok = true;
            for (k, v) in &def.elements {
                match (k.as_slice(), v.is_empty()) {
                    ([t], true) => ok &= t.word().is_some_and(|w| add_nets(&mut set, w)),
                    _ => ok = false,
                }
            }
            if ok {
                self.tables[ti].table.sets.push(set);
            }
        }
        self.tables[ti].sets.insert(name, def);
        Ok(())
    }

    fn chain(&mut self, ti: usize, name: String, at: (usize, usize)) -> Res<()> {
        let ci = self.declare_chain(ti, name, at);
        self.chain_body(ti, ci)
    }

    /// The chain's index in table `ti`, declared here if new.
    fn declare_chain(&mut self, ti: usize, name: String, (line, file): (usize, usize)) -> usize {
        match self.tables[ti].chain_index.get(&name) {
            Some(&i) => i,
            None => {
                let t = &mut self.tables[ti];
                t.chain_index.insert(name.clone(), t.table.chains.len());
                t.table.chains.push(Chain {
                    name: name.clone(),
                    base: None,
                    rules: vec![],
                });
                self.chains.push(ChainInfo {
                    family: t.table.family,
                    table: t.table.name.clone(),
                    chain: name,
                    line,
                    file,
                    counters: None,
                });
                t.table.chains.len() - 1
            }
        }
    }

    fn chain_body(&mut self, ti: usize, ci: usize) -> Res<()> {
        loop {
            self.skip_seps();
            let Some(t) = self.peek().cloned() else {
                return err(self.eof_span(), "chain block not closed", "expected `}`");
            };
            if t.tok == Tok::Close {
                self.i += 1;
                return Ok(());
            }
            if t.is("type") {
                self.i += 1;
                let base = self.base_chain(ti)?;
                self.tables[ti].table.chains[ci].base = Some(base);
                continue;
            }
            if t.is("policy") {
                self.i += 1;
                let (p, span) = self.expect_word("accept or drop")?;
                let pol = policy_of(&p, span)?;
                match self.tables[ti].table.chains[ci].base.as_mut() {
                    Some(b) => b.policy = pol,
                    None => return err(t.span, "only a base chain has a policy", "here"),
                }
                continue;
            }
            if t.is("device") || t.is("devices") || (t.is("comment") && self.chain_comment()) {
                self.statement_tokens()?;
                continue;
            }
            let toks = self.statement_tokens()?;
            if toks.is_empty() {
                return err(t.span, "unexpected token in a chain", "here");
            }
            let rules = self.rule(ti, &toks)?;
            self.tables[ti].table.chains[ci].rules.extend(rules);
        }
    }

    /// A chain's own `comment "x"` line (not a rule that only has a comment).
    fn chain_comment(&self) -> bool {
        let next = self.toks.get(self.i + 2);
        next.map_or(true, |t| matches!(t.tok, Tok::Nl | Tok::Semi | Tok::Close))
    }

    /// `type filter hook input [device X] priority P;` and an optional `policy drop;`
    fn base_chain(&mut self, ti: usize) -> Res<BaseChain> {
        let family = self.tables[ti].table.family;
        let (k, kspan) = self.expect_word("a chain type")?;
        let kind = match k.as_str() {
            "filter" => ChainType::Filter,
            "nat" => ChainType::Nat,
            "route" => ChainType::Route,
            _ => {
                return err(
                    kspan,
                    format!("unknown chain type `{k}`"),
                    "expected filter, nat or route",
                )
            }
        };
        let (h, _) = self.expect_word("`hook`")?;
        if h != "hook" {
            return err(self.span(), "expected `hook`", "here");
        }
        let (h, hspan) = self.expect_word("a hook")?;
        let hook = match h.as_str() {
            "prerouting" => Hook::Prerouting,
            "input" => Hook::Input,
            "forward" => Hook::Forward,
            "output" => Hook::Output,
            "postrouting" => Hook::Postrouting,
            "ingress" => Hook::Ingress,
            "egress" => Hook::Egress,
            _ => return err(hspan, format!("unknown hook `{h}`"), "expected e.g. input"),
        };
        if self.at("device") {
            self.i += 1;
            self.expect_word("a device")?;
        } else if self.at("devices") {
            // `devices = { eth0, eth1 }` (netdev, nft >= 0.9.7)
            self.i += 1;
            if self.at("=") {
                self.i += 1;
            }
            match self.peek().map(|t| t.tok.clone()) {
                Some(Tok::Open) => {
                    let open = self.span();
                    self.i += 1;
                    self.skip_block(open)?;
                }
                _ => {
                    self.expect_word("a device list")?;
                }
            }
        }
        let (w, wspan) = self.expect_word("`priority`")?;
        if w != "priority" {
            return err(wspan, "expected `priority`", "here");
        }
        let toks = self.statement_tokens()?;
        let priority = priority_of(family, &toks).ok_or_else(|| Error {
            span: toks.first().map_or(wspan.clone(), |t| {
                t.span.start..toks.last().unwrap().span.end
            }),
            message: "bad priority".into(),
            label: "expected a number or a name such as filter, filter + 10".into(),
            ready: None,
        })?;
        let mut policy = Policy::Accept;
        if self.peek().is_some_and(|t| t.tok == Tok::Semi) {
            self.i += 1;
            if self.at("policy") {
                self.i += 1;
                let (p, span) = self.expect_word("accept or drop")?;
                policy = policy_of(&p, span)?;
            }
        }
        Ok(BaseChain {
            kind,
            hook,
            priority,
            policy,
        })
    }

    /// One rule line, possibly several IR rules (a verdict map).
    fn rule(&mut self, ti: usize, toks: &[T]) -> Res<Vec<Rule>> {
        let (line, file) = (toks[0].line, toks[0].file);
        // Sets other than IPv4 address sets are inlined: note which were read.
        let t = &mut self.tables[ti];
        for name in toks.iter().filter_map(|t| t.word()?.strip_prefix('@')) {
            if !t.table.sets.iter().any(|s| s.name == name) {
                if let Some(d) = t.sets.get_mut(name) {
                    d.used = true;
                }
            }
        }
        let cx = RuleCx {
            sets: &self.tables[ti].sets,
            named: &self.tables[ti].table.sets,
        };
        let mut rp = RuleParser {
            cx: &cx,
            toks,
            i: 0,
            out: Vec::new(),
            cur: Rule::new(vec![], Action::Continue).at(line, file),
            vmap: None,
        };
        rp.run()?;
        Ok(rp.finish())
    }
}

fn policy_of(p: &str, span: Range<usize>) -> Res<Policy> {
    match p {
        "accept" => Ok(Policy::Accept),
        "drop" => Ok(Policy::Drop),
        _ => err(span, format!("bad policy `{p}`"), "expected accept or drop"),
    }
}

/// nft(8) PRIORITY: a number, or a standard name with an optional offset.
fn priority_of(family: Family, toks: &[T]) -> Option<i32> {
    let words: Vec<&str> = toks.iter().map(|t| t.word()).collect::<Option<_>>()?;
    let base = |w: &str| -> Option<i32> {
        if let Ok(n) = w.parse() {
            return Some(n);
        }
        Some(match (family, w) {
            (Family::Bridge, "dstnat") => -300,
            (Family::Bridge, "filter") => -200,
            (Family::Bridge, "out") => 100,
            (Family::Bridge, "srcnat") => 300,
            (_, "raw") => priority::RAW,
            (_, "mangle") => priority::MANGLE,
            (_, "dstnat") => priority::DSTNAT,
            (_, "filter") => priority::FILTER,
            (_, "security") => priority::SECURITY,
            (_, "srcnat") => priority::SRCNAT,
            _ => return None,
        })
    };
    match words.as_slice() {
        [w] => base(w),
        [w, "+", n] => Some(base(w)? + n.parse::<i32>().ok()?),
        [w, "-", n] => Some(base(w)? - n.parse::<i32>().ok()?),
        [w, n] if n.starts_with('-') || n.starts_with('+') => {
            Some(base(w)? + n.parse::<i32>().ok()?)
        }
        _ => None,
    }
}

/// `typeof ip saddr` → `ipv4_addr`, as far as the IR cares.
fn typeof_key(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let pair = (words[i].as_str(), words.get(i + 1).map(String::as_str));
        let (t, n) = match pair {
            ("ip", Some("saddr" | "daddr")) => ("ipv4_addr", 2),
            ("ip6", Some("saddr" | "daddr")) => ("ipv6_addr", 2),
            (_, Some("sport" | "dport")) => ("inet_service", 2),
            ("meta", Some("iifname" | "oifname")) | ("iifname" | "oifname", _) => {
                ("ifname", if words[i] == "meta" { 2 } else { 1 })
            }
            ("meta", Some("l4proto")) => ("inet_proto", 2),
            _ => ("?", 1),
        };
        out.push(t.to_string());
        i += n;
    }
    out
}

fn split_commas(toks: &[T]) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut depth = 0;
    for t in toks {
        match t.tok {
            Tok::Comma if depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            Tok::Nl => continue,
            Tok::Open | Tok::LParen => depth += 1,
            Tok::Close | Tok::RParen => depth -= 1,
            _ => {}
        }
        cur.push(t.clone());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `key : value` of a map element, or just the key. Element options
/// (`timeout 1s`, `counter ...`, `comment`) are dropped.
fn split_map_elem(el: &[T]) -> (Vec<T>, Vec<T>) {
    let stop = |t: &T| {
        ["timeout", "expires", "counter", "comment"]
            .iter()
            .any(|w| t.is(w))
    };
    match el.iter().position(|t| t.is(":")) {
        Some(i) => {
            let v: Vec<T> = el[i + 1..]
                .iter()
                .take_while(|t| !stop(t))
                .cloned()
                .collect();
            (el[..i].to_vec(), v)
        }
        None => (
            el.iter().take_while(|t| !stop(t)).cloned().collect(),
            vec![],
        ),
    }
}

/// An IPv4 element as prefixes: an address, a prefix, or a range (split into
/// the prefixes that cover it exactly).
/// Add the address, prefix or range `w` to a named set of its family;
/// false when `w` is none of them or of the other family.
fn add_nets(set: &mut Set, w: &str) -> bool {
    if set.v6 {
        match parse_addr(w) {
            Some(Addr::Net6(n)) => set.elements6.push(n),
            Some(Addr::Range(IpAddr::V6(a), IpAddr::V6(b))) if a <= b => {
                set.elements6.extend(ipnet::Ipv6Subnets::new(a, b, 0))
            }
            _ => return false,
        }
        return true;
    }
    match v4_nets(w) {
        Some(n) => set.elements.extend(n),
        None => return false,
    }
    true
}

fn v4_nets(w: &str) -> Option<Vec<Ipv4Net>> {
    match parse_addr(w)? {
        Addr::Net(n) => Some(vec![n]),
        Addr::Range(IpAddr::V4(a), IpAddr::V4(b)) if a <= b => {
            Some(ipnet::Ipv4Subnets::new(a, b, 0).collect())
        }
        _ => None,
    }
}

fn parse_addr(w: &str) -> Option<Addr> {
    if let Some((a, b)) = w.split_once('-') {
        if let (Ok(a), Ok(b)) = (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
            if a.is_ipv6() == b.is_ipv6() {
                return Some(Addr::Range(a, b));
            }
        }
    }
    if let Ok(a) = w.parse::<IpAddr>() {
        return Addr::net(a, if a.is_ipv6() { 128 } else { 32 });
    }
    let n: IpNet = w.parse().ok()?;
    Addr::net(n.addr(), n.prefix_len())
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_ports(w: &str) -> Option<PortRange> {
    match w.split_once('-') {
        Some((a, b)) => {
            let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
            Some(PortRange::new(a.min(b), a.max(b)))
        }
        None => w.parse().ok().map(PortRange::single),
    }
}

struct RuleCx<'a> {
    sets: &'a HashMap<String, SetDef>,
    /// Sets kept by name in `Table::sets`.
    named: &'a [Set],
}

/// What a selector reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    IifName,
    OifName,
    Mark,
    L4Proto,
    NfProto,
    PktType,
    SkUid,
    SkGid,
    Length,
    Addr { src: bool, v6: bool },
    Ttl { v6: bool },
    FragOff,
    Port { src: bool, proto: Option<u8> },
    TcpFlags,
    IcmpType { v6: bool },
    IcmpCode { v6: bool },
    CtState,
    CtStatus,
    CtDirection,
    CtMark,
    CtHelper,
    CtAddr(CtTuple),
    CtPort(CtTuple),
    CtProto,
    EtherSaddr,
}

enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

struct RuleParser<'a> {
    cx: &'a RuleCx<'a>,
    toks: &'a [T],
    i: usize,
    /// Rules split off before this one (statements followed by more matches).
    out: Vec<Rule>,
    cur: Rule,
    /// `SELECTOR vmap { key : verdict }`: one rule per element.
    vmap: Option<Vec<(Vec<Match>, Action)>>,
}

fn tok_text(toks: &[T]) -> String {
    let mut out = String::new();
    for (k, t) in toks.iter().enumerate() {
        let s = match &t.tok {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Open => "{".into(),
            Tok::Close => "}".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Semi => ";".into(),
            Tok::Nl => continue,
        };
        let glue = k > 0
            && (matches!(t.tok, Tok::Comma | Tok::RParen)
                || matches!(toks[k - 1].tok, Tok::LParen));
        if k > 0 && !glue {
            out.push(' ');
        }
        out.push_str(&s);
    }
    out
}

impl RuleParser<'_> {
    fn peek(&self) -> Option<&T> {
        self.toks.get(self.i)
    }

    fn peek_word(&self) -> Option<&str> {
        self.peek().and_then(T::word)
    }

    fn word_at(&self, k: usize) -> Option<&str> {
        self.toks.get(self.i + k).and_then(T::word)
    }

    fn next(&mut self) -> Option<&T> {
        let t = self.toks.get(self.i);
        self.i += 1;
        t
    }

    fn end_span(&self) -> Range<usize> {
        let e = self.toks.last().map_or(0, |t| t.span.end);
        e..e
    }

    /// The tokens from `start` to here, as text.
    fn text_from(&self, start: usize) -> String {
        let end = self.i.min(self.toks.len());
        tok_text(&self.toks[start.min(end)..end])
    }

    fn name(&mut self, what: &str) -> Res<String> {
        match self.next() {
            Some(t) => match t.name() {
                Some(n) => Ok(n.to_string()),
                None => err(t.span.clone(), format!("expected {what}"), "here"),
            },
            None => err(self.end_span(), format!("expected {what}"), "rule ends"),
        }
    }

    fn run(&mut self) -> Res<()> {
        while self.i < self.toks.len() {
            let decided = self.cur.action != Action::Continue || self.vmap.is_some();
            if decided && self.peek_word() != Some("comment") {
                return err(
                    self.toks[self.i].span.clone(),
                    "nothing but a comment may follow the verdict",
                    "after the verdict",
                );
            }
            self.item()?;
        }
        Ok(())
    }

    fn finish(mut self) -> Vec<Rule> {
        // Kept text is one piece per rule: where one unknown part ends is a
        // guess, and one piece reads back the same wherever it is printed.
        for r in self.out.iter_mut().chain(std::iter::once(&mut self.cur)) {
            merge_unknowns(&mut r.matches);
        }
        // Without a verdict, the last statement is the rule's action (as
        // iptables' one target): `... ct helper set "x"` is `Action::CtHelper`.
        if self.cur.action == Action::Continue && self.vmap.is_none() {
            if let Some(last) = self.cur.effects.pop() {
                self.cur.action = last;
            }
        }
        match self.vmap.take() {
            Some(elems) => {
                for (m, a) in elems {
                    let mut r = self.cur.clone();
                    r.matches.extend(m);
                    r.action = a;
                    self.out.push(r);
                }
            }
            None => self.out.push(self.cur),
        }
        self.out
    }

    fn push_match(&mut self, m: Match) {
        // A statement before this match ran for every packet that got this
        // far: it becomes a rule of its own, and this rule re-checks the
        // matches before it.
        if !self.cur.effects.is_empty() {
            let mut split = self.cur.clone();
            split.action = split.effects.pop().expect("non-empty");
            split.comment = None;
            self.out.push(split);
            self.cur.effects.clear();
        }
        self.cur.matches.push(m);
    }

    fn push_matches(&mut self, ms: Vec<Match>) {
        for m in ms {
            // `tcp dport 22` implies `meta l4proto tcp`: keep one.
            if matches!(m, Match::Proto(_) | Match::ProtoNum(_)) && self.cur.matches.contains(&m) {
                continue;
            }
            self.push_match(m);
        }
    }

    fn effect(&mut self, a: Action) {
        self.cur.effects.push(a);
    }

    fn verdict(&mut self, a: Action, span: Range<usize>) -> Res<()> {
        if self.cur.action != Action::Continue || self.vmap.is_some() {
            return err(span, "a rule has one verdict", "second verdict");
        }
        self.cur.action = a;
        Ok(())
    }

    /// Skip an expression we do not know, up to the next word we do.
    fn unknown_from(&mut self, start: usize) {
        let mut depth = 0;
        self.i = start + 1;
        while let Some(t) = self.peek() {
            match t.tok {
                Tok::Open | Tok::LParen => depth += 1,
                Tok::Close | Tok::RParen => depth -= 1,
                _ => {}
            }
            if depth == 0 && t.word().is_some_and(|w| KEYWORDS.contains(&w)) {
                break;
            }
            self.i += 1;
        }
        let text = self.text_from(start);
        self.push_match(Match::Unknown { text });
    }

    // Long: one arm per rule statement keyword: the grammar in one place
    fn item(&mut self) -> Res<()> {
        let start = self.i;
        let t = self.toks[start].clone();
        let Some(w) = t.name().map(str::to_string) else {
            self.unknown_from(start);
            return Ok(());
        };
        let w1 = self.word_at(1).map(str::to_string);
        match (w.as_str(), w1.as_deref()) {
            ("accept", _) => {
                self.i += 1;
                self.verdict(Action::Accept, t.span)
            }
            ("drop", _) => {
                self.i += 1;
                self.verdict(Action::Drop, t.span)
            }
            ("return", _) => {
                self.i += 1;
                self.verdict(Action::Return, t.span)
            }
            ("continue", _) => {
                self.i += 1;
                Ok(())
            }
            ("jump" | "goto", _) => {
                self.i += 1;
                let c = self.name("a chain name")?;
                let a = if w == "jump" {
                    Action::Jump(c)
                } else {
                    Action::Goto(c)
                };
                self.verdict(a, t.span)
            }
            ("reject", _) => {
                self.i += 1;
                let mut with = None;
                if self.peek_word() == Some("with") {
                    self.i += 1;
                    // `icmpx type X` is listed as `icmpx X`; `tcp reset`.
                    let kind = self.name("a reject type")?;
                    if self.peek_word() == Some("type") {
                        self.i += 1;
                    }
                    let what = self.name("a reject code")?;
                    with = Some(format!("{kind} {what}"));
                }
                self.verdict(Action::Reject(with), t.span)
            }
            ("queue", _) => {
                self.unknown_action(start, true);
                Ok(())
            }
            ("comment", _) => {
                self.i += 1;
                let c = self.name("a comment string")?;
                self.cur.comment = Some(c);
                Ok(())
            }
            ("counter", _) => {
                self.i += 1;
                let mut c = Counters::default();
                while let (Some(k), Some(v)) = (self.word_at(0), self.word_at(1)) {
                    let v: u64 = match v.parse() {
                        Ok(v) => v,
                        Err(_) => break,
                    };
                    match k {
                        "packets" => c.packets = v,
                        "bytes" => c.bytes = v,
                        _ => break,
                    }
                    self.i += 2;
                }
                self.cur.counters = Some(c);
                Ok(())
            }
            ("log", _) => {
                self.i += 1;
                self.log();
                Ok(())
            }
            ("notrack", _) => {
                self.i += 1;
                self.effect(Action::Notrack);
                Ok(())
            }
            ("limit", _) | ("quota", _) => {
                self.i += 1;
                self.stateful(&w, start);
                Ok(())
            }
            ("meter", _) => {
                self.i += 1;
                // meter NAME [size N] { key STATEMENT }
                while self.peek().is_some_and(|t| t.tok != Tok::Open) {
                    self.i += 1;
                }
                self.skip_group();
                let args = self.toks[start + 1..self.i]
                    .iter()
                    .map(|t| tok_text(std::slice::from_ref(t)))
                    .collect();
                self.push_match(Match::Stateful {
                    module: "meter".into(),
                    args,
                });
                Ok(())
            }
            ("ct", Some("count")) => {
                self.i += 2;
                self.stateful("ct count", start);
                Ok(())
            }
            ("masquerade" | "snat" | "dnat" | "redirect", _) => {
                self.i += 1;
                self.nat(&w, start)
            }
            ("ct", Some("helper")) if self.word_at(2) == Some("set") => {
                self.i += 3;
                let h = self.name("a helper name")?;
                self.effect(Action::CtHelper(h));
                Ok(())
            }
            ("fib", _) => {
                self.i += 1;
                self.fib(start)
            }
            ("xt", Some("match" | "target")) => {
                // iptables-nft's compatibility expressions: an xtables
                // extension nft cannot show. Rate limits are "may match"
                // wherever they come from; everything else is unknown.
                self.i += 2;
                let name = self.name("an extension name")?;
                let text = self.text_from(start);
                if w1.as_deref() == Some("match") {
                    if STATEFUL_XT.contains(&name.as_str()) {
                        self.push_match(Match::Stateful {
                            module: name,
                            args: vec![],
                        });
                    } else {
                        self.push_match(Match::Unknown { text });
                    }
                } else if PASSTHROUGH_XT.contains(&name.as_str()) {
                    self.effect(Action::Passthrough {
                        target: name,
                        args: vec![],
                    });
                } else {
                    self.effect(Action::Unknown { text });
                }
                Ok(())
            }
            _ => self.expression(start),
        }
    }

    fn skip_group(&mut self) {
        let mut depth = 0;
        while let Some(t) = self.peek() {
            match t.tok {
                Tok::Open | Tok::LParen => depth += 1,
                Tok::Close | Tok::RParen => depth -= 1,
                _ => {}
            }
            self.i += 1;
            if depth == 0 {
                break;
            }
        }
    }

    fn unknown_action(&mut self, start: usize, terminal: bool) {
        self.i = start + 1;
        while self
            .peek()
            .is_some_and(|t| !t.word().is_some_and(|w| KEYWORDS.contains(&w)))
        {
            self.i += 1;
        }
        let text = self.text_from(start);
        if terminal && self.cur.action == Action::Continue {
            self.cur.action = Action::Unknown { text };
        } else {
            self.effect(Action::Unknown { text });
        }
    }

    /// `limit rate [over] N/unit [burst N packets]`, `quota ...`, `ct count ...`:
    /// "may match"; the words are kept.
    fn stateful(&mut self, module: &str, start: usize) {
        let from = self.i;
        while let Some(w) = self.peek().and_then(T::name) {
            if KEYWORDS.contains(&w) && self.i > from {
                break;
            }
            self.i += 1;
        }
        let _ = start;
        let args = self.toks[from..self.i]
            .iter()
            .map(|t| t.name().unwrap_or_default().to_string())
            .collect();
        self.push_match(Match::Stateful {
            module: module.to_string(),
            args,
        });
    }

    fn log(&mut self) {
        let mut prefix = None;
        let mut args = Vec::new();
        let mut kind = LogKind::Log;
        while let Some(k) = self.peek_word().map(str::to_string) {
            let k = k.as_str();
            match k {
                "prefix" => {
                    self.i += 1;
                    prefix = self.next().and_then(T::name).map(str::to_string);
                }
                "level" | "flags" | "group" | "snaplen" | "queue-threshold" => {
                    if k == "group" {
                        kind = LogKind::NfLog;
                    }
                    args.push(k.to_string());
                    self.i += 1;
                    if let Some(v) = self.next().and_then(T::name) {
                        args.push(v.to_string());
                    }
                    // `flags tcp sequence,options`
                    while self.peek().is_some_and(|t| t.tok == Tok::Comma) {
                        self.i += 1;
                        if let Some(v) = self.next().and_then(T::name) {
                            let last = args.last_mut().expect("pushed above");
                            last.push(',');
                            last.push_str(v);
                        }
                    }
                    if k == "flags"
                        && self.peek_word().is_some_and(|w| {
                            !KEYWORDS.contains(&w)
                                && !["prefix", "level", "group", "snaplen", "queue-threshold"]
                                    .contains(&w)
                        })
                    {
                        if let Some(v) = self.next().and_then(T::name) {
                            args.push(v.to_string());
                        }
                    }
                }
                _ => break,
            }
        }
        self.effect(Action::Log { kind, prefix, args });
    }

    /// `masquerade [to :P] [flags]`, `snat [ip|ip6] to ADDR[:P] [flags]`, `redirect [to :P]`.
    fn nat(&mut self, kind: &str, start: usize) -> Res<()> {
        if matches!(self.peek_word(), Some("ip" | "ip6")) && self.word_at(1) == Some("to") {
            self.i += 1;
        }
        let mut spec = NatSpec {
            addrs: None,
            ports: None,
            flags: vec![],
        };
        if self.peek_word() == Some("to") {
            self.i += 1;
            let Some(t) = self.next().cloned() else {
                return err(
                    self.end_span(),
                    "`to` needs an address or port",
                    "rule ends",
                );
            };
            let Some(w) = t.word() else {
                return err(t.span, "expected an address or :port", "here");
            };
            if self.peek_word() == Some("map") || w == "map" {
                self.unknown_action(start, true);
                return Ok(());
            }
            let parsed = parse_nat_to(w);
            match parsed {
                Some((a, p)) => {
                    spec.addrs = a;
                    spec.ports = p;
                }
                None => {
                    self.unknown_action(start, true);
                    return Ok(());
                }
            }
        }
        while let Some(w) = self.peek_word() {
            let f = match w {
                "random" => NatFlag::Random,
                "fully-random" => NatFlag::RandomFully,
                "persistent" => NatFlag::Persistent,
                _ => break,
            };
            spec.flags.push(f);
            self.i += 1;
            if self.peek().is_some_and(|t| t.tok == Tok::Comma) {
                self.i += 1;
            }
        }
        spec.flags.sort();
        spec.flags.dedup();
        let span = self.toks[start].span.clone();
        let plain = spec.ports.is_none() && spec.flags.is_empty();
        let a = match kind {
            "masquerade" if plain && spec.addrs.is_none() => Action::Masquerade,
            "masquerade" => Action::MasqueradeTo(spec),
            "redirect" => Action::Redirect(spec),
            "snat" => Action::Snat(spec),
            _ => match spec.addrs {
                Some((IpAddr::V4(a), IpAddr::V4(b))) if a == b && plain => Action::Dnat(a),
                _ => Action::DnatTo(spec),
            },
        };
        self.verdict(a, span)
    }

    /// `fib saddr . iif oif missing` (rpfilter), `fib daddr type local` (addrtype).
    fn fib(&mut self, start: usize) -> Res<()> {
        let mut keys = Vec::new();
        while let Some(w) = self.peek_word() {
            match w {
                "saddr" | "daddr" | "iif" | "oif" | "mark"
                    if keys.last().map_or(true, |k: &String| k == ".") =>
                {
                    keys.push(w.to_string());
                }
                "." => keys.push(".".into()),
                _ => break,
            }
            self.i += 1;
        }
        let keys: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|k| *k != ".")
            .collect();
        let result = self.peek_word().map(str::to_string);
        self.i += 1;
        let (neg, _) = self.op();
        let dir = if keys.contains(&"saddr") {
            Dir::Src
        } else {
            Dir::Dst
        };
        match result.as_deref() {
            Some("type") => {
                let vals = self.values()?;
                let mut types = Vec::new();
                for v in vals {
                    let name = v
                        .first()
                        .and_then(T::name)
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    match crate::netfilter::names::ADDR_TYPES
                        .iter()
                        .find(|(_, n)| *n == name)
                    {
                        Some((t, _)) => types.push(*t),
                        None => {
                            self.unknown_from(start);
                            return Ok(());
                        }
                    }
                }
                types.sort();
                types.dedup();
                let limit_iface = if keys.contains(&"iif") {
                    Some(Dir::Src)
                } else if keys.contains(&"oif") {
                    Some(Dir::Dst)
                } else {
                    None
                };
                let m = Match::AddrType {
                    dir,
                    types,
                    limit_iface,
                };
                self.push_match(if neg { m.negate() } else { m });
            }
            Some("oif") if dir == Dir::Src => {
                // The nft spelling of rpfilter: is there a route back?
                let v = self.next().and_then(T::name).map(str::to_string);
                let missing = match v.as_deref() {
                    Some("missing" | "0") => true,
                    Some("exists") => false,
                    _ => {
                        self.unknown_from(start);
                        return Ok(());
                    }
                };
                let mut flags = Vec::new();
                if !keys.contains(&"iif") {
                    flags.push("loose".to_string());
                }
                if keys.contains(&"mark") {
                    flags.push("validmark".to_string());
                }
                let m = Match::RpFilter(flags);
                self.push_match(if missing != neg { m.negate() } else { m });
            }
            _ => self.unknown_from(start),
        }
        Ok(())
    }

    /// `==`, `!=`, `<`, ... (absent means equal).
    fn op(&mut self) -> (bool, Op) {
        let op = match self.peek_word() {
            Some("==") | Some("eq") => Op::Eq,
            Some("!=") | Some("ne") => Op::Ne,
            Some("<") | Some("lt") => Op::Lt,
            Some(">") | Some("gt") => Op::Gt,
            Some("<=") | Some("le") => Op::Le,
            Some(">=") | Some("ge") => Op::Ge,
            _ => return (false, Op::Eq),
        };
        self.i += 1;
        (matches!(op, Op::Ne), op)
    }

    /// The right-hand side as elements (each a list of words for the parts of
    /// a concatenation): `X`, `{ X, Y }`, `@set`, or `a,b,c` (flag lists).
    fn values(&mut self) -> Res<Vec<Vec<T>>> {
        let Some(t) = self.peek().cloned() else {
            return err(self.end_span(), "expected a value", "rule ends");
        };
        if t.tok == Tok::Open {
            let from = self.i + 1;
            self.skip_group();
            let inner =
                &self.toks[from.min(self.i)..self.i.saturating_sub(1).max(from.min(self.i))];
            return Ok(split_commas(inner)
                .into_iter()
                .map(|el| el.into_iter().filter(|t| !t.is(".")).collect())
                .collect());
        }
        if let Some(name) = t.word().and_then(|w| w.strip_prefix('@')) {
            self.i += 1;
            return match self.cx.sets.get(name) {
                Some(def) => Ok(def
                    .elements
                    .iter()
                    .map(|(k, _)| k.iter().filter(|t| !t.is(".")).cloned().collect())
                    .collect()),
                None => err(
                    t.span.clone(),
                    format!("no set `{name}` in this table"),
                    "here",
                ),
            };
        }
        let mut out = Vec::new();
        loop {
            let mut el = Vec::new();
            let Some(v) = self.next().cloned() else {
                return err(self.end_span(), "expected a value", "rule ends");
            };
            el.push(v);
            // A concatenation's parts: `1.2.3.4 . 22`
            while self.peek_word() == Some(".") {
                self.i += 1;
                if let Some(v) = self.next().cloned() {
                    el.push(v);
                }
            }
            out.push(el);
            if self.peek().is_some_and(|t| t.tok == Tok::Comma) {
                self.i += 1;
                continue;
            }
            return Ok(out);
        }
    }

    /// A selector: `ip saddr`, `tcp dport`, `meta mark`, `ct original ip saddr`...
    fn field(&mut self) -> Option<Field> {
        let w0 = self.peek_word()?.to_string();
        let w1 = self.word_at(1).map(str::to_string);
        let (f, n) = match (w0.as_str(), w1.as_deref()) {
            ("meta", Some(k)) => (meta_field(k)?, 2),
            (k, _) if meta_field(k).is_some() && !["length", "protocol"].contains(&k) => {
                (meta_field(k)?, 1)
            }
            ("ip" | "ip6", Some("saddr" | "daddr")) => (
                Field::Addr {
                    src: w1.as_deref() == Some("saddr"),
                    v6: w0 == "ip6",
                },
                2,
            ),
            ("ip", Some("protocol")) | ("ip6", Some("nexthdr")) => (Field::L4Proto, 2),
            ("ip", Some("ttl")) => (Field::Ttl { v6: false }, 2),
            ("ip6", Some("hoplimit")) => (Field::Ttl { v6: true }, 2),
            ("ip", Some("frag-off")) => (Field::FragOff, 2),
            ("tcp" | "udp" | "udplite" | "sctp" | "dccp" | "th", Some("sport" | "dport")) => {
                let proto = match w0.as_str() {
                    "tcp" => Some(6),
                    "udp" => Some(17),
                    "udplite" => Some(136),
                    "sctp" => Some(132),
                    "dccp" => Some(33),
                    _ => None,
                };
                (
                    Field::Port {
                        src: w1.as_deref() == Some("sport"),
                        proto,
                    },
                    2,
                )
            }
            ("tcp", Some("flags")) => (Field::TcpFlags, 2),
            ("icmp", Some("type")) => (Field::IcmpType { v6: false }, 2),
            ("icmp", Some("code")) => (Field::IcmpCode { v6: false }, 2),
            ("icmpv6", Some("type")) => (Field::IcmpType { v6: true }, 2),
            ("icmpv6", Some("code")) => (Field::IcmpCode { v6: true }, 2),
            ("ct", Some("state")) => (Field::CtState, 2),
            ("ct", Some("status")) => (Field::CtStatus, 2),
            ("ct", Some("direction")) => (Field::CtDirection, 2),
            ("ct", Some("mark")) => (Field::CtMark, 2),
            ("ct", Some("helper")) => (Field::CtHelper, 2),
            ("ct", Some("protocol")) => (Field::CtProto, 2),
            ("ct", Some(d @ ("original" | "reply"))) => {
                let orig = d == "original";
                let mut k = 2;
                if matches!(self.word_at(2), Some("ip" | "ip6")) {
                    k = 3;
                }
                let key = self.word_at(k)?.to_string();
                let tuple = |src: bool| match (orig, src) {
                    (true, true) => CtTuple::OrigSrc,
                    (true, false) => CtTuple::OrigDst,
                    (false, true) => CtTuple::ReplSrc,
                    (false, false) => CtTuple::ReplDst,
                };
                match key.as_str() {
                    "saddr" => (Field::CtAddr(tuple(true)), k + 1),
                    "daddr" => (Field::CtAddr(tuple(false)), k + 1),
                    "proto-src" => (Field::CtPort(tuple(true)), k + 1),
                    "proto-dst" => (Field::CtPort(tuple(false)), k + 1),
                    "protocol" => (Field::CtProto, k + 1),
                    _ => return None,
                }
            }
            ("ether", Some("saddr")) => (Field::EtherSaddr, 2),
            _ => return None,
        };
        self.i += n;
        Some(f)
    }

    fn expression(&mut self, start: usize) -> Res<()> {
        // A concatenation of selectors, or one.
        let mut fields = Vec::new();
        loop {
            match self.field() {
                Some(f) => fields.push(f),
                None => {
                    // `meta nftrace set 1`, `ip dscp set cs1`: a statement
                    // that changes nothing amwall models.
                    let set_at = (1..6)
                        .take_while(|k| {
                            self.word_at(*k)
                                .is_some_and(|w| w == "set" || !KEYWORDS.contains(&w))
                        })
                        .find(|k| self.word_at(*k) == Some("set"));
                    if let Some(k) = set_at {
                        // The value may be several words (`set rt mtu`), none
                        // of them a keyword.
                        let value_at = self.i + k + 1;
                        let mut end = value_at;
                        while self
                            .toks
                            .get(end)
                            .and_then(T::word)
                            .is_some_and(|w| !KEYWORDS.contains(&w))
                        {
                            end += 1;
                        }
                        if end == value_at {
                            self.unknown_from(start);
                            return Ok(());
                        }
                        self.i = end;
                        let text = self.text_from(start);
                        self.effect(Action::Passthrough {
                            target: "nft".into(),
                            args: vec![text],
                        });
                        return Ok(());
                    }
                    self.unknown_from(start);
                    return Ok(());
                }
            }
            if self.peek_word() == Some(".") {
                self.i += 1;
                continue;
            }
            break;
        }
        // `meta mark set X`, `ct mark set X`: statements.
        if self.peek_word() == Some("set") {
            self.i += 1;
            return self.set_statement(start, &fields);
        }
        if self.peek_word() == Some("vmap") {
            self.i += 1;
            return self.vmap(start, &fields);
        }
        // `meta mark & 0xff == 0x1`, `tcp flags & (fin|syn) == syn`
        let mut mask: Option<u32> = None;
        if self.peek_word() == Some("&") && fields.len() == 1 {
            self.i += 1;
            mask = match self.bits(fields[0]) {
                Some(m) => Some(m),
                None => {
                    self.unknown_from(start);
                    return Ok(());
                }
            };
        }
        // `tcp flags ! fin,syn`: none of these flags.
        if fields == [Field::TcpFlags] && mask.is_none() && self.peek_word() == Some("!") {
            self.i += 1;
            let m = self.bits(Field::TcpFlags);
            match m {
                Some(m) => {
                    self.push_matches(vec![Match::Proto(Proto::Tcp)]);
                    self.push_match(Match::TcpFlags {
                        mask: m as u8,
                        set: 0,
                    });
                }
                None => self.unknown_from(start),
            }
            return Ok(());
        }
        let (neg, op) = self.op();
        // A named address set of the field's family stays a reference
        // (`Table::sets` has it).
        if let ([Field::Addr { src, v6 }], Some(name)) = (
            fields.as_slice(),
            self.peek_word().and_then(|w| w.strip_prefix('@')),
        ) {
            if mask.is_none()
                && matches!(op, Op::Eq | Op::Ne)
                && self.cx.named.iter().any(|s| s.name == name && s.v6 == *v6)
            {
                let a = Addr::Set(name.to_string());
                let m = if *src { Match::Src(a) } else { Match::Dst(a) };
                self.i += 1;
                self.push_match(if neg { m.negate() } else { m });
                return Ok(());
            }
        }
        let vals = self.values()?;
        // `tcp flags syn / fin,syn,rst,ack` (nft >= 1.0.1)
        if fields == [Field::TcpFlags] && self.peek_word() == Some("/") {
            self.i += 1;
            let m = self.bits(Field::TcpFlags);
            let v = vals
                .iter()
                .map(|e| flag_bits(e.first().and_then(T::name).unwrap_or_default()))
                .sum::<Option<u32>>();
            match (m, v) {
                (Some(m), Some(v)) => {
                    let mt = Match::TcpFlags {
                        mask: m as u8,
                        set: v as u8,
                    };
                    self.push_matches(vec![Match::Proto(Proto::Tcp)]);
                    self.push_match(if neg { mt.negate() } else { mt });
                }
                _ => self.unknown_from(start),
            }
            return Ok(());
        }
        match self.build(&fields, mask, &op, &vals) {
            Some(mut ms) => {
                if neg {
                    let last = ms.pop().expect("build returns the match last");
                    ms.push(last.negate());
                }
                self.push_matches(ms);
            }
            None => {
                self.i = self.i.max(start + 1);
                let text = self.text_from(start);
                self.push_match(Match::Unknown { text });
            }
        }
        Ok(())
    }

    /// A mask or flag value after `&`: `0xff`, or `(fin|syn|rst|ack)`.
    fn bits(&mut self, f: Field) -> Option<u32> {
        let t = self.peek()?.clone();
        if t.tok == Tok::LParen {
            self.i += 1;
            let mut bits = 0;
            while let Some(t) = self.next().cloned() {
                match t.tok {
                    Tok::RParen => return Some(bits),
                    Tok::Word(w) if w == "|" => {}
                    Tok::Word(w) => bits |= flag_bits(&w)?,
                    _ => return None,
                }
            }
            return None;
        }
        let w = t.word()?.to_string();
        self.i += 1;
        // `fin,syn,rst,ack`
        if f == Field::TcpFlags {
            let mut bits = flag_bits(&w)?;
            while self.peek().is_some_and(|t| t.tok == Tok::Comma) {
                self.i += 1;
                bits |= flag_bits(self.next()?.word()?)?;
            }
            return Some(bits);
        }
        parse_u32(&w)
    }

    /// The IR for `fields OP vals`: implied protocol matches first, the match last.
    fn build(
        &self,
        fields: &[Field],
        mask: Option<u32>,
        op: &Op,
        vals: &[Vec<T>],
    ) -> Option<Vec<Match>> {
        let mut implied = Vec::new();
        for f in fields {
            if let Some(p) = implied_proto(*f) {
                if !implied.contains(&p) {
                    implied.push(p);
                }
            }
        }
        let one = |f: Field, t: &T| -> Option<Match> { self.atom(f, mask, op, t) };
        let m = if fields.len() == 1 {
            let f = fields[0];
            let singles: Vec<&T> = vals.iter().map(|e| e.first()).collect::<Option<_>>()?;
            if vals.iter().any(|e| e.len() != 1) {
                return None;
            }
            match f {
                Field::Port { src, .. } if matches!(op, Op::Eq | Op::Ne) => {
                    let ports: Vec<PortRange> = singles
                        .iter()
                        .map(|t| t.word().and_then(parse_ports))
                        .collect::<Option<_>>()?;
                    if src {
                        Match::SPort(ports)
                    } else {
                        Match::DPort(ports)
                    }
                }
                Field::CtState => {
                    let mut v: Vec<CtState> = singles
                        .iter()
                        .map(|t| ct_state(t.word()?))
                        .collect::<Option<_>>()?;
                    v.sort();
                    v.dedup();
                    Match::CtState(v)
                }
                Field::CtStatus => {
                    let mut v: Vec<CtStatus> = singles
                        .iter()
                        .map(|t| ct_status(t.word()?))
                        .collect::<Option<_>>()?;
                    v.sort();
                    v.dedup();
                    Match::CtStatus(v)
                }
                Field::TcpFlags if mask.is_some() => {
                    let set = singles
                        .iter()
                        .map(|t| flag_bits(t.word()?))
                        .sum::<Option<u32>>()?;
                    Match::TcpFlags {
                        mask: mask? as u8,
                        set: set as u8,
                    }
                }
                _ if singles.len() == 1 => one(f, singles[0])?,
                _ => Match::AnyOf(
                    singles
                        .iter()
                        .map(|t| one(f, t).map(|m| vec![m]))
                        .collect::<Option<_>>()?,
                ),
            }
        } else {
            let alts: Vec<Vec<Match>> = vals
                .iter()
                .map(|el| {
                    if el.len() != fields.len() {
                        return None;
                    }
                    fields
                        .iter()
                        .zip(el)
                        .map(|(f, t)| one(*f, t))
                        .collect::<Option<Vec<_>>>()
                })
                .collect::<Option<_>>()?;
            Match::AnyOf(alts)
        };
        let mut out: Vec<Match> = implied;
        out.push(m);
        Some(out)
    }

    /// One value of one field.
    // Long: one arm per payload, meta and ct expression: the grammar in one place
    fn atom(&self, f: Field, mask: Option<u32>, op: &Op, t: &T) -> Option<Match> {
        let w = t.name()?;
        let cmp_ok = matches!(op, Op::Eq | Op::Ne);
        Some(match f {
            Field::IifName | Field::OifName if cmp_ok => {
                let name = match w.strip_suffix('*') {
                    Some(p) if !w.ends_with("\\*") => format!("{p}+"),
                    _ => w.to_string(),
                };
                if f == Field::IifName {
                    Match::InIface(name)
                } else {
                    Match::OutIface(name)
                }
            }
            Field::Addr { src, v6 } if cmp_ok => {
                let a = match w.strip_prefix('@') {
                    Some(n) => Addr::Set(n.to_string()),
                    None => parse_addr(w)?,
                };
                if a.is_v6().is_some_and(|x| x != v6) {
                    return None;
                }
                if src {
                    Match::Src(a)
                } else {
                    Match::Dst(a)
                }
            }
            Field::L4Proto if cmp_ok => match names::proto_number(w)? {
                6 => Match::Proto(Proto::Tcp),
                17 => Match::Proto(Proto::Udp),
                n => Match::ProtoNum(n),
            },
            Field::NfProto if cmp_ok => Match::IpVersion(match w {
                "ipv4" => 4,
                "ipv6" => 6,
                _ => return None,
            }),
            Field::Mark | Field::CtMark if cmp_ok => {
                let value = parse_u32(w)?;
                let mask = mask.unwrap_or(u32::MAX);
                if f == Field::Mark {
                    Match::Mark { value, mask }
                } else {
                    Match::ConnMark { value, mask }
                }
            }
            Field::PktType if cmp_ok => Match::PktType(match w {
                "host" | "unicast" => PktType::Unicast,
                "broadcast" => PktType::Broadcast,
                "multicast" => PktType::Multicast,
                _ => return None,
            }),
            Field::SkUid | Field::SkGid if cmp_ok => {
                let r = match w.split_once('-') {
                    Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                    None => {
                        let v = w.parse().ok()?;
                        (v, v)
                    }
                };
                Match::Owner(if f == Field::SkUid {
                    Owner::Uid(r.0, r.1)
                } else {
                    Owner::Gid(r.0, r.1)
                })
            }
            Field::Length if cmp_ok => {
                let r = parse_ports(w)?;
                Match::Length(r.lo, r.hi)
            }
            Field::Ttl { .. } => {
                let v: u8 = w.parse().ok()?;
                match op {
                    Op::Eq | Op::Ne => Match::Ttl(Cmp::Eq, v),
                    Op::Lt => Match::Ttl(Cmp::Lt, v),
                    Op::Gt => Match::Ttl(Cmp::Gt, v),
                    Op::Le => Match::Ttl(Cmp::Lt, v.checked_add(1)?),
                    Op::Ge => Match::Ttl(Cmp::Gt, v.checked_sub(1)?),
                }
            }
            Field::FragOff if mask == Some(0x1fff) && w == "0" && cmp_ok => {
                // `ip frag-off & 0x1fff == 0` is "not a later fragment"; the
                // caller negates `!=` into `Fragment`.
                Match::Fragment.negate()
            }
            Field::Port { src, .. } => {
                let r = match op {
                    Op::Eq | Op::Ne => parse_ports(w)?,
                    _ => {
                        let p: u16 = w.parse().ok()?;
                        match op {
                            Op::Lt => PortRange::new(0, p.checked_sub(1)?),
                            Op::Le => PortRange::new(0, p),
                            Op::Gt => PortRange::new(p.checked_add(1)?, u16::MAX),
                            _ => PortRange::new(p, u16::MAX),
                        }
                    }
                };
                if src {
                    Match::SPort(vec![r])
                } else {
                    Match::DPort(vec![r])
                }
            }
            Field::IcmpType { v6 } if cmp_ok => {
                let ty = match w.parse() {
                    Ok(n) => n,
                    Err(_) => match names::icmp_type(w, v6) {
                        Some((t, None)) => t,
                        Some(_) => return None,
                        None => (0..=255u8).find(|t| names::icmp_type_nft(*t, v6) == Some(w))?,
                    },
                };
                let t = IcmpType {
                    ty: Some(ty),
                    code: None,
                };
                if v6 {
                    Match::Icmp6(t)
                } else {
                    Match::Icmp(t)
                }
            }
            Field::IcmpCode { v6 } if cmp_ok => {
                let t = IcmpType {
                    ty: None,
                    code: Some(w.parse().ok()?),
                };
                if v6 {
                    Match::Icmp6(t)
                } else {
                    Match::Icmp(t)
                }
            }
            Field::CtDirection if cmp_ok => Match::CtDirection(match w {
                "original" => CtDirection::Original,
                "reply" => CtDirection::Reply,
                _ => return None,
            }),
            Field::CtAddr(tuple) if cmp_ok => Match::CtAddr(tuple, parse_addr(w)?),
            Field::CtPort(tuple) if cmp_ok => Match::CtPort(tuple, parse_ports(w)?),
            Field::CtProto if cmp_ok => Match::CtProto(names::proto_number(w)?),
            Field::EtherSaddr if cmp_ok => Match::MacSrc(w.to_ascii_lowercase()),
            Field::CtState if cmp_ok => Match::CtState(vec![ct_state(w)?]),
            Field::CtStatus if cmp_ok => Match::CtStatus(vec![ct_status(w)?]),
            Field::TcpFlags if cmp_ok => {
                // `tcp flags syn`: that flag set.
                let b = flag_bits(w)? as u8;
                Match::TcpFlags { mask: b, set: b }
            }
            _ => return None,
        })
    }

    /// `meta mark set X`, `meta mark set mark and M xor V`, `ct mark set mark`,
    /// `meta mark set ct mark`... The kernel computes `(src & M) ^ V`.
    fn set_statement(&mut self, start: usize, fields: &[Field]) -> Res<()> {
        let from = self.i;
        let target_ct = fields == [Field::CtMark];
        let a = if fields == [Field::Mark] || target_ct {
            self.mark_value(target_ct)
        } else {
            None
        };
        match a {
            Some(a) => self.effect(a),
            None => {
                // Other fields set (dscp, priority, ...): nothing amwall models.
                self.i = from;
                while self
                    .peek()
                    .is_some_and(|t| !t.word().is_some_and(|w| KEYWORDS.contains(&w)))
                {
                    self.i += 1;
                }
                if self.i == from {
                    self.i += 1;
                }
                self.i = self.i.min(self.toks.len());
                let text = self.text_from(start);
                self.effect(Action::Passthrough {
                    target: "nft".into(),
                    args: vec![text],
                });
            }
        }
        Ok(())
    }

    fn mark_value(&mut self, target_ct: bool) -> Option<Action> {
        let save = self.i;
        let src_ct = match (self.word_at(0)?, self.word_at(1)) {
            ("ct", Some("mark")) => {
                self.i += 2;
                Some(true)
            }
            ("meta", Some("mark")) => {
                self.i += 2;
                Some(false)
            }
            ("mark", _) => {
                self.i += 1;
                Some(false)
            }
            (v, _) => {
                let v = parse_u32(v)?;
                self.i += 1;
                return Some(if target_ct {
                    Action::ConnMark(ConnMarkOp::Set {
                        value: v,
                        mask: u32::MAX,
                    })
                } else {
                    Action::Mark {
                        value: v,
                        mask: u32::MAX,
                    }
                });
            }
        };
        let src_ct = src_ct?;
        let (mut and, mut xor) = (u32::MAX, 0u32);
        while let (Some(op), Some(v)) = (self.word_at(0), self.word_at(1).and_then(parse_u32)) {
            // One kernel bitwise op, `(src & and) ^ xor`, whatever order
            // nft prints its parts in (`xor 0xa00 and 0xffff00ff`).
            match op {
                "and" | "&" => and &= v,
                "or" | "|" => {
                    and &= !v;
                    xor |= v;
                }
                "xor" | "^" => xor ^= v,
                _ => break,
            }
            self.i += 2;
        }
        let a = match (target_ct, src_ct) {
            (false, false) => Action::Mark {
                value: xor,
                mask: !and | xor,
            },
            (true, true) => Action::ConnMark(ConnMarkOp::Set {
                value: xor,
                mask: !and | xor,
            }),
            (true, false) if and == u32::MAX && xor == 0 => Action::ConnMark(ConnMarkOp::Save {
                nfmask: u32::MAX,
                ctmask: u32::MAX,
            }),
            (false, true) if and == u32::MAX && xor == 0 => Action::ConnMark(ConnMarkOp::Restore {
                nfmask: u32::MAX,
                ctmask: u32::MAX,
            }),
            _ => {
                self.i = save;
                return None;
            }
        };
        Some(a)
    }

    /// `SELECTOR vmap { key : verdict, ... }` (or `@map`): one rule per element.
    fn vmap(&mut self, start: usize, fields: &[Field]) -> Res<()> {
        let span = self.toks[start].span.clone();
        let elems: Vec<(Vec<T>, Vec<T>)> = match self.peek().cloned() {
            Some(t) if t.tok == Tok::Open => {
                let from = self.i + 1;
                self.skip_group();
                split_commas(
                    &self.toks[from.min(self.i)..self.i.saturating_sub(1).max(from.min(self.i))],
                )
                .iter()
                .map(|e| split_map_elem(e))
                .collect()
            }
            Some(t) if t.word().is_some_and(|w| w.starts_with('@')) => {
                self.i += 1;
                let name = &t.word().expect("checked")[1..];
                match self.cx.sets.get(name) {
                    Some(d) => d.elements.clone(),
                    None => {
                        return err(
                            t.span.clone(),
                            format!("no map `{name}` in this table"),
                            "here",
                        )
                    }
                }
            }
            _ => return err(self.end_span(), "expected `{` or `@map` after vmap", "here"),
        };
        let mut out = Vec::new();
        for (k, v) in elems {
            let key: Vec<T> = k.into_iter().filter(|t| !t.is(".")).collect();
            let verdict = match v.first().and_then(T::word) {
                Some("accept") => Action::Accept,
                Some("drop") => Action::Drop,
                Some("return") => Action::Return,
                Some("continue") => Action::Continue,
                Some("jump") => {
                    Action::Jump(v.get(1).and_then(T::name).unwrap_or_default().to_string())
                }
                Some("goto") => {
                    Action::Goto(v.get(1).and_then(T::name).unwrap_or_default().to_string())
                }
                _ => Action::Unknown { text: tok_text(&v) },
            };
            let ms = match self.build(fields, None, &Op::Eq, std::slice::from_ref(&key)) {
                Some(ms) => ms,
                None => vec![Match::Unknown {
                    text: tok_text(&key),
                }],
            };
            out.push((ms, verdict));
        }
        if self.cur.action != Action::Continue || self.vmap.is_some() {
            return err(span, "a rule has one verdict", "second verdict");
        }
        self.vmap = Some(out);
        Ok(())
    }
}

fn merge_unknowns(ms: &mut Vec<Match>) {
    let mut texts = Vec::new();
    let mut first = None;
    for (i, m) in ms.iter().enumerate() {
        if let Match::Unknown { text } = m {
            first.get_or_insert(i);
            texts.push(text.clone());
        }
    }
    if texts.len() < 2 {
        return;
    }
    let first = first.expect("two unknowns");
    let mut k = 0;
    ms.retain(|m| {
        let keep = !matches!(m, Match::Unknown { .. }) || k == first;
        k += 1;
        keep
    });
    // `first` is still the first unknown's index: nothing before it was removed.
    ms[first] = Match::Unknown {
        text: texts.join(" "),
    };
}

fn meta_field(k: &str) -> Option<Field> {
    Some(match k {
        "iifname" | "iif" => Field::IifName,
        "oifname" | "oif" => Field::OifName,
        "mark" => Field::Mark,
        "l4proto" | "protocol" => Field::L4Proto,
        "nfproto" => Field::NfProto,
        "pkttype" => Field::PktType,
        "skuid" => Field::SkUid,
        "skgid" => Field::SkGid,
        "length" => Field::Length,
        _ => return None,
    })
}

fn implied_proto(f: Field) -> Option<Match> {
    match f {
        Field::Port { proto: Some(6), .. } | Field::TcpFlags => Some(Match::Proto(Proto::Tcp)),
        Field::Port {
            proto: Some(17), ..
        } => Some(Match::Proto(Proto::Udp)),
        Field::Port { proto: Some(n), .. } => Some(Match::ProtoNum(n)),
        Field::IcmpType { v6: false } | Field::IcmpCode { v6: false } => Some(Match::ProtoNum(1)),
        Field::IcmpType { v6: true } | Field::IcmpCode { v6: true } => Some(Match::ProtoNum(58)),
        _ => None,
    }
}

fn flag_bits(w: &str) -> Option<u32> {
    Some(u32::from(match w {
        "fin" => tcp_flag::FIN,
        "syn" => tcp_flag::SYN,
        "rst" => tcp_flag::RST,
        "psh" => tcp_flag::PSH,
        "ack" => tcp_flag::ACK,
        "urg" => tcp_flag::URG,
        "ecn" => tcp_flag::ECE,
        "cwr" => tcp_flag::CWR,
        w => return parse_u32(w).filter(|v| *v <= 0xff),
    }))
}

fn ct_state(w: &str) -> Option<CtState> {
    Some(match w {
        "invalid" => CtState::Invalid,
        "established" => CtState::Established,
        "related" => CtState::Related,
        "new" => CtState::New,
        "untracked" => CtState::Untracked,
        _ => return None,
    })
}

fn ct_status(w: &str) -> Option<CtStatus> {
    Some(match w {
        "expected" => CtStatus::Expected,
        "seen-reply" => CtStatus::SeenReply,
        "assured" => CtStatus::Assured,
        "confirmed" => CtStatus::Confirmed,
        "snat" => CtStatus::Snat,
        "dnat" => CtStatus::Dnat,
        _ => return None,
    })
}

/// A NAT target's addresses (first, last) and ports.
type NatTo = (Option<(IpAddr, IpAddr)>, Option<PortRange>);

/// `ADDR`, `ADDR-ADDR`, `ADDR:PORT[-PORT]`, `[V6]:PORT`, `:PORT`.
fn parse_nat_to(w: &str) -> Option<NatTo> {
    let ports_of = |p: Option<&str>| match p {
        Some(p) => parse_ports(p).map(Some),
        None => Some(None),
    };
    if let Some(rest) = w.strip_prefix('[') {
        // [a]:p, [a]-[b]:p
        let (a, rest) = rest.split_once(']')?;
        let (b, rest) = match rest.strip_prefix("-[") {
            Some(r) => r.split_once(']')?,
            None => (a, rest),
        };
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return None,
        };
        let (a, b): (IpAddr, IpAddr) = (a.parse().ok()?, b.parse().ok()?);
        return Some((Some((a, b)), ports_of(port)?));
    }
    let (addr, port) = if w.matches(':').count() > 1 {
        (w, None)
    } else {
        match w.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (w, None),
        }
    };
    let addrs = if addr.is_empty() {
        None
    } else {
        let (a, b) = addr.split_once('-').unwrap_or((addr, addr));
        let (a, b): (IpAddr, IpAddr) = (a.parse().ok()?, b.parse().ok()?);
        Some((a, b))
    };
    let ports = ports_of(port)?;
    if addrs.is_none() && ports.is_none() {
        return None;
    }
    Some((addrs, ports))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(chain_body: &str) -> Vec<Rule> {
        let text = format!(
            "table inet t {{\n\tset ports {{\n\t\ttype inet_service\n\t\telements = {{ 22, 80 }}\n\t}}\n\tchain c {{\n\t\ttype filter hook input priority filter + 10; policy drop;\n{chain_body}\n\t}}\n\tchain sub {{\n\t}}\n}}\n"
        );
        let p = parse("t.nft", &text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        p.ruleset.tables[0].chains[0].rules.clone()
    }

    /// A control or invisible character would be printed back escaped (the
    /// ruleset would change on the way back): refused where it is.
    #[test]
    fn control_and_invisible_characters_are_refused_where_they_are() {
        for (text, col) in [
            ("table ip t {\n\tchain c {\n\t\ttcp dport 22 accept comment \"a\u{1}b\"\n\t}\n}\n", (3, 33)),
            ("table ip t {\n\tchain c {\n\t\ttcp dport 22 accept comment \"a\u{2028}b\"\n\t}\n}\n", (3, 33)),
            ("table ip t {\n\tchain c\u{1} {\n\t}\n}\n", (2, 9)),
            ("table ip t {\n\tchain c {\u{7f}\n\t}\n}\n", (2, 11)),
        ] {
            let e = parse("t.nft", text).unwrap_err();
            assert_eq!((e.line, e.column), col, "{e}");
            assert!(e.to_string().contains("character U+"), "{e}");
        }
        // Tabs and carriage returns outside strings stay whitespace.
        assert_eq!(
            one("tcp dport 22\taccept\r").action,
            one("tcp dport 22 accept").action
        );
    }

    fn one(rule: &str) -> Rule {
        let mut r = rules(rule);
        assert_eq!(r.len(), 1, "{rule}: {r:?}");
        r.remove(0)
    }

    fn net(s: &str) -> Addr {
        parse_addr(s).unwrap()
    }

    #[test]
    fn base_chain_and_priority_expressions() {
        let p = parse(
            "t",
            "table ip6 f {\n\tchain pre {\n\t\ttype nat hook prerouting priority dstnat - 5; policy accept;\n\t}\n\tchain out {\n\t\ttype route hook output priority mangle; policy drop;\n\t}\n}\n",
        )
        .unwrap();
        let t = &p.ruleset.tables[0];
        assert_eq!(t.family, Family::Ip6);
        let b = t.chains[0].base.clone().unwrap();
        assert_eq!(
            (b.kind, b.hook, b.priority),
            (ChainType::Nat, Hook::Prerouting, -105)
        );
        let b = t.chains[1].base.clone().unwrap();
        assert_eq!(
            (b.kind, b.priority, b.policy),
            (ChainType::Route, -150, Policy::Drop)
        );
        assert_eq!(p.chains[1].line, 5);
    }

    #[test]
    fn matches_with_negation_sets_and_implied_protocols() {
        let r = one("\t\tiifname != \"eth*\" ip saddr { 10.0.0.0/8, 192.0.2.1 } tcp dport != { 22, 1000-2000 } ct state established,related counter packets 3 bytes 180 accept comment \"x y\"");
        assert_eq!(
            r.matches,
            vec![
                Match::InIface("eth+".into()).negate(),
                Match::AnyOf(vec![
                    vec![Match::Src(net("10.0.0.0/8"))],
                    vec![Match::Src(net("192.0.2.1"))]
                ]),
                Match::Proto(Proto::Tcp),
                Match::DPort(vec![PortRange::single(22), PortRange::new(1000, 2000)]).negate(),
                Match::CtState(vec![CtState::Established, CtState::Related]),
            ]
        );
        assert_eq!(
            r.counters,
            Some(Counters {
                packets: 3,
                bytes: 180
            })
        );
        assert_eq!(
            (r.action, r.comment.as_deref()),
            (Action::Accept, Some("x y"))
        );
        assert_eq!(r.origin, Some(Origin { line: 8, file: 0 }));
    }

    #[test]
    fn named_sets_inline_unless_ipv4_addresses() {
        let r = one("\t\ttcp dport @ports accept");
        assert_eq!(
            r.matches[1],
            Match::DPort(vec![PortRange::single(22), PortRange::single(80)])
        );
        let p = parse("t", "table ip t {\n\tset h {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 192.0.2.0/24, 198.51.100.1-198.51.100.2,\n\t\t\t     203.0.113.9 }\n\t}\n\tchain c {\n\t\tip saddr @h drop\n\t}\n}\n").unwrap();
        let t = &p.ruleset.tables[0];
        // The range becomes the prefixes that cover it exactly: .1/32 and .2/32.
        assert_eq!(t.sets[0].elements.len(), 4);
        assert_eq!(
            t.chains[0].rules[0].matches,
            vec![Match::Src(Addr::Set("h".into()))]
        );
    }

    /// An `ipv6_addr` set stays named as well, with its family: `add
    /// element` and `flush set` change it, a reference from `ip6 saddr`
    /// names it, and what is emitted reads back the same.
    #[test]
    fn ipv6_address_sets_stay_named() {
        let text = "table ip6 t {\n\tset h {\n\t\ttype ipv6_addr\n\t\tflags interval\n\t\telements = { 2001:db8::/64, 2001:db8:1::1 }\n\t}\n\tchain c {\n\t\tip6 saddr @h drop\n\t}\n}\nadd element ip6 t h { 2001:db8:2::5 }\n";
        let p = parse("t", text).unwrap();
        let t = &p.ruleset.tables[0];
        assert!(t.sets[0].v6 && t.sets[0].elements.is_empty());
        assert_eq!(t.sets[0].elements6.len(), 3);
        assert_eq!(
            t.chains[0].rules[0].matches,
            vec![Match::Src(Addr::Set("h".into()))]
        );
        let again = parse("t", &crate::netfilter::nft::emit(&p.ruleset, &[])).unwrap();
        assert_eq!(again.ruleset.canonical(), p.ruleset.canonical());
        let e = parse("t", "table ip6 t {\n\tset h {\n\t\ttype ipv6_addr\n\t}\n}\nadd element ip6 t h { 192.0.2.1 }\n")
            .unwrap_err();
        assert!(e.message.contains("IPv6"), "{e}");
        let f = parse("t", &format!("{text}flush set ip6 t h\n")).unwrap();
        assert!(f.ruleset.tables[0].sets[0].elements6.is_empty());
    }

    #[test]
    fn statements_before_the_verdict_are_effects() {
        let r =
            one("\t\tmeta l4proto udp log prefix \"dropped: \" level info meta mark set 0x2 drop");
        assert_eq!(r.matches, vec![Match::Proto(Proto::Udp)]);
        assert_eq!(
            r.effects,
            vec![
                Action::Log {
                    kind: LogKind::Log,
                    prefix: Some("dropped: ".into()),
                    args: vec!["level".into(), "info".into()]
                },
                Action::Mark {
                    value: 2,
                    mask: u32::MAX
                },
            ]
        );
        assert_eq!(r.action, Action::Drop);
        // No verdict: the last statement is the action.
        assert_eq!(
            one("\t\tudp dport 10080 ct helper set \"amanda-udp\"").action,
            Action::CtHelper("amanda-udp".into())
        );
        // iptables-nft's xmark.
        assert_eq!(
            one("\t\tct mark set ct mark xor 0xa00 and 0xffff00ff").action,
            Action::ConnMark(ConnMarkOp::Set {
                value: 0xa00,
                mask: 0xff00
            })
        );
        assert_eq!(
            one("\t\tmeta mark set mark or 0x4").action,
            Action::Mark { value: 4, mask: 4 }
        );
    }

    #[test]
    fn a_verdict_map_is_one_rule_per_element() {
        let r = rules("\t\ttcp dport vmap { 22 : accept, 80 : jump sub }");
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].matches,
            vec![
                Match::Proto(Proto::Tcp),
                Match::DPort(vec![PortRange::single(22)])
            ]
        );
        assert_eq!(r[1].action, Action::Jump("sub".into()));
        assert_eq!(r[0].origin, r[1].origin);
    }

    #[test]
    fn nat_fib_flags_and_marks() {
        assert_eq!(
            one("\t\tdnat ip to 192.0.2.2").action,
            Action::Dnat("192.0.2.2".parse().unwrap())
        );
        assert_eq!(
            one("\t\tmasquerade to :1024-65535 random,persistent").action,
            Action::MasqueradeTo(NatSpec {
                addrs: None,
                ports: Some(PortRange::new(1024, 65535)),
                flags: vec![NatFlag::Random, NatFlag::Persistent]
            })
        );
        assert_eq!(
            one("\t\tfib daddr type local accept").matches,
            vec![Match::AddrType {
                dir: Dir::Dst,
                types: vec![AddrType::Local],
                limit_iface: None
            }]
        );
        assert_eq!(
            one("\t\tfib saddr . iif oif missing drop").matches,
            vec![Match::RpFilter(vec![]).negate()]
        );
        assert_eq!(
            one("\t\ttcp flags syn / fin,syn,rst,ack accept").matches,
            vec![
                Match::Proto(Proto::Tcp),
                Match::TcpFlags {
                    mask: 0x17,
                    set: 0x02
                }
            ]
        );
        assert_eq!(
            one("\t\ttcp flags & (fin|syn|rst|ack) == syn accept").matches[1],
            Match::TcpFlags {
                mask: 0x17,
                set: 0x02
            }
        );
        assert_eq!(
            one("\t\tmeta mark & 0x000000ff == 0x00000001 accept").matches,
            vec![Match::Mark {
                value: 1,
                mask: 0xff
            }]
        );
        assert_eq!(
            one("\t\ticmpv6 type { nd-neighbor-solicit, 136 } accept").matches,
            vec![
                Match::ProtoNum(58),
                Match::AnyOf(vec![
                    vec![Match::Icmp6(IcmpType {
                        ty: Some(135),
                        code: None
                    })],
                    vec![Match::Icmp6(IcmpType {
                        ty: Some(136),
                        code: None
                    })]
                ])
            ]
        );
        assert!(
            matches!(&one("\t\tlimit rate 3/minute burst 5 packets accept").matches[0], Match::Stateful { module, .. } if module == "limit")
        );
    }

    #[test]
    fn unknown_expressions_keep_the_verdict() {
        let r = one("\t\tvlan id 10 ip saddr 10.0.0.1 accept");
        assert_eq!(
            r.matches[0],
            Match::Unknown {
                text: "vlan id 10".into()
            }
        );
        assert_eq!(r.matches[1], Match::Src(net("10.0.0.1")));
        assert_eq!(r.action, Action::Accept);
        assert_eq!(r.unknown_count(), 1);
        let r = one("\t\tmeta l4proto icmp xt match icmp counter packets 0 bytes 0 accept");
        assert!(r.matches[1].is_unknown());
        assert_eq!(r.action, Action::Accept);
        assert!(matches!(
            one("\t\txt match recent drop").matches[0],
            Match::Stateful { .. }
        ));
    }

    #[test]
    fn scripts_replace_tables() {
        let p = parse("t", "#!/usr/sbin/nft -f\ntable ip a\ndelete table ip a\ntable ip a {\n\tchain c {\n\t\taccept\n\t}\n}\nadd rule ip a c drop\n").unwrap();
        assert_eq!(p.ruleset.tables.len(), 1);
        assert_eq!(p.ruleset.tables[0].chains[0].rules.len(), 2);
    }

    /// `define`/`$var` as nft 1.0.6 reads them (each case checked with `nft -c -f`).
    #[test]
    fn variables_are_replaced_where_they_are_used() {
        let p = parse(
            "v.nft",
            "define lan = { 192.0.2.0/24, 198.51.100.7 }\ndefine amanda=10080\ndefine ifs = { \"eth0\", \"eth1\" }\n\
             table inet f {\n\tdefine local = 203.0.113.1\n\tchain c {\n\t\ttype filter hook input priority filter; policy drop;\n\
             \t\tiifname $ifs ip saddr $lan tcp dport $amanda accept\n\
             \t\tip saddr { $lan, $local } udp dport $amanda accept\n\t\tjump $target\n\t}\n\tchain d {\n\t}\n}\n"
                .replace("$target", "d")
                .as_str(),
        )
        .unwrap();
        let r = &p.ruleset.tables[0].chains[0].rules;
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(r[0].unknown_count(), 0, "{r:?}");
        assert_eq!(r[0].origin, Some(Origin { line: 8, file: 0 }));
        assert_eq!(
            r[0].matches[1],
            Match::AnyOf(vec![
                vec![Match::Src(net("192.0.2.0/24"))],
                vec![Match::Src(net("198.51.100.7"))]
            ])
        );
        assert_eq!(
            r[0].matches[3],
            Match::DPort(vec![PortRange::single(10080)])
        );
        // A set value inside an anonymous set merges into it.
        assert_eq!(
            r[1].matches[0],
            Match::AnyOf(vec![
                vec![Match::Src(net("192.0.2.0/24"))],
                vec![Match::Src(net("198.51.100.7"))],
                vec![Match::Src(net("203.0.113.1"))]
            ])
        );
        // redefine reaches later uses only, also through another variable.
        let p = parse(
            "v.nft",
            "define p = 22\nredefine p = 23\ndefine q = $p\nredefine p = 24\nundefine nothing\n\
             table ip t {\n\tchain c {\n\t\ttcp dport $q accept\n\t\ttcp dport $p accept\n\t}\n}\n",
        )
        .unwrap();
        let r = &p.ruleset.tables[0].chains[0].rules;
        assert_eq!(r[0].matches[1], Match::DPort(vec![PortRange::single(23)]));
        assert_eq!(r[1].matches[1], Match::DPort(vec![PortRange::single(24)]));
    }

    #[test]
    fn variable_errors_are_nfts() {
        // Unknown at its name, as nft's "unknown identifier".
        let e = parse(
            "v",
            "table ip t {\n\tchain c {\n\t\ttcp dport $nope accept\n\t}\n}\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (3, 14));
        assert!(e.message.contains("unknown identifier 'nope'"), "{e}");
        // A define is local to its block.
        let e = parse(
            "v",
            "table ip t {\n\tdefine p = 22\n}\ntable ip u {\n\tchain c {\n\t\ttcp dport $p accept\n\t}\n}\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 6);
        // Defined twice, also from an inner block.
        let e = parse("v", "define p = 1\ntable ip t {\n\tdefine p = 2\n}\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 9));
        assert!(e.message.contains("redefinition"), "{e}");
        // undefine removes it for what follows.
        let e = parse(
            "v",
            "define p = 1\nundefine p\ntable ip t {\n\tchain c {\n\t\ttcp dport $p accept\n\t}\n}\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 5);
        let e = parse("v", "define p =\ntable ip t {\n}\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse("v", "define c = x\ntable ip $c {\n}\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 10));
        // Defines that double at every step stop at a bound, not in memory.
        let mut t = String::from("define a0 = { 1, 2 }\n");
        for k in 1..40 {
            t.push_str(&format!("define a{k} = {{ $a{}, $a{} }}\n", k - 1, k - 1));
        }
        let e = parse("v", &t).unwrap_err();
        assert!(e.message.contains("tokens"), "{e}");
    }

    #[test]
    fn includes_are_spliced_in_and_rules_keep_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("rules.d")).unwrap();
        std::fs::write(d.join("defs.nft"), "define amanda = 10080\n").unwrap();
        std::fs::write(d.join("rules.d/10-a.nft"), "tcp dport $amanda accept\n").unwrap();
        std::fs::write(d.join("rules.d/20-b.nft"), "udp dport $amanda accept").unwrap();
        std::fs::write(d.join("rules.d/.hidden.nft"), "drop\n").unwrap();
        std::fs::create_dir(d.join("rules.d/sub.nft")).unwrap();
        let main = format!(
            "include \"defs.nft\"\ntable ip t {{\n\tchain c {{\n\t\tinclude \"{}/rules.d/*.nft\"\n\t\tinclude \"{}/none/*.nft\"\n\t\tdrop\n\t}}\n}}\n",
            d.display(),
            d.display()
        );
        let inc = Includes {
            dirs: vec![d.to_path_buf()],
            follow: true,
        };
        let p = parse_with("main.nft", &main, &inc).unwrap();
        let r = &p.ruleset.tables[0].chains[0].rules;
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(p.includes.len(), 3);
        assert!(p.includes[1].path.ends_with("10-a.nft"));
        assert_eq!(r[0].origin, Some(Origin { line: 1, file: 2 }));
        assert_eq!(r[1].origin, Some(Origin { line: 1, file: 3 }));
        assert_eq!(r[2].origin, Some(Origin { line: 6, file: 0 }));
        assert_eq!(
            r[1].matches[1],
            Match::DPort(vec![PortRange::single(10080)])
        );
        // Not followed without files: skipped with a warning.
        let p = parse("main.nft", "include \"x.nft\"\ntable ip t {\n}\n").unwrap();
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0].starts_with("main.nft:1: include \"x.nft\" not followed"));
        // A plain name is looked up in the include path, not beside the file.
        let e = parse_with(
            "main.nft",
            "include \"defs.nft\"\n",
            &Includes::nft_default(),
        )
        .unwrap_err();
        assert!(
            e.message.contains("not found in the include path (/etc)"),
            "{e}"
        );
        // A cycle names its chain; an error inside an include names that file.
        std::fs::write(
            d.join("a.nft"),
            format!("include \"{}/b.nft\"\n", d.display()),
        )
        .unwrap();
        std::fs::write(d.join("b.nft"), "table ip t {\n}\ninclude \"a.nft\"\n").unwrap();
        let e = parse_with("main.nft", "include \"a.nft\"\n", &inc).unwrap_err();
        assert!(e.message.contains("include cycle:"), "{e}");
        assert!(e.message.contains("a.nft includes"), "{e}");
        assert!(e.file.ends_with("b.nft") && e.line == 3, "{e}");
        std::fs::write(
            d.join("bad.nft"),
            "table ip t {\n\tchain c {\n\t\ttcp dport $x accept\n",
        )
        .unwrap();
        let e = parse_with("main.nft", "include \"bad.nft\"\n", &inc).unwrap_err();
        assert!(e.file.ends_with("bad.nft") && e.line == 3, "{e}");
        // Each file included twice per level: bounded.
        for k in 0..30 {
            std::fs::write(
                d.join(format!("x{k}.nft")),
                format!("include \"x{}.nft\"\ninclude \"x{}.nft\"\n", k + 1, k + 1),
            )
            .unwrap();
        }
        std::fs::write(d.join("x30.nft"), "define z = 1\nundefine z\n").unwrap();
        let e = parse_with("main.nft", "include \"x0.nft\"\n", &inc).unwrap_err();
        assert!(
            e.message.contains("nested too deeply") || e.message.contains("tokens"),
            "{e}"
        );
    }

    /// Valid nft that used to stop the parse: read when it shapes the
    /// ruleset, skipped with a FILE:LINE warning when amwall does not model it.
    #[test]
    fn valid_commands_are_read_or_skipped_never_refused() {
        let p = parse(
            "s.nft",
            "table ip t {\n}\nadd chain ip t c { type filter hook input priority 0; policy drop; }\n\
             add set ip t s { type ipv4_addr; }\nadd element ip t s { 192.0.2.1, 198.51.100.0/24 }\n\
             add rule ip t c ip saddr @s accept\nadd rule ip t c drop\nadd rule t c index 0 counter\n\
             insert rule ip t c index 0 tcp dport 22 accept\nadd chain ip t gone\ndelete chain ip t gone\n\
             list ruleset\nreplace rule ip t c handle 2 drop\n",
        )
        .unwrap();
        let t = &p.ruleset.tables[0];
        assert_eq!(t.chains.len(), 1);
        let b = t.chains[0].base.clone().unwrap();
        assert_eq!((b.hook, b.policy), (Hook::Input, Policy::Drop));
        assert_eq!(t.sets[0].elements.len(), 2);
        let r = &t.chains[0].rules;
        assert_eq!(r.len(), 4, "{r:?}");
        assert_eq!(r[0].origin.unwrap().line, 9);
        assert_eq!(r[1].matches, vec![Match::Src(Addr::Set("s".into()))]);
        assert_eq!(r[2].origin.unwrap().line, 8);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(
            p.warnings[0].starts_with("s.nft:13: `replace rule"),
            "{:?}",
            p.warnings
        );
        // flush empties, a netdev chain's device list, an unknown table object.
        let p = parse(
            "s.nft",
            "table netdev n {\n\tchain c {\n\t\ttype filter hook ingress devices = { lo, eth0 } priority 0; policy accept;\n\t\tdrop\n\t}\n\
             \ttunnel x {\n\t\tid 1\n\t}\n}\ntable ip t {\n\tchain c {\n\t\taccept\n\t}\n}\nflush chain ip t c\n",
        )
        .unwrap();
        assert_eq!(p.ruleset.tables[0].chains[0].rules.len(), 1);
        assert!(p.ruleset.tables[1].chains[0].rules.is_empty());
        assert!(
            p.warnings[0].starts_with("s.nft:6: `tunnel x"),
            "{:?}",
            p.warnings
        );
        // Malformed still says where.
        let e = parse("s.nft", "add rule ip nope c accept\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 13));
        let e = parse("s.nft", "frobnicate ruleset\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
    }

    /// `nft list ruleset` pasted from a terminal: the prompt line before
    /// and after, a sentence; a stray word between tables stays an error.
    #[test]
    fn pasted_text_around_the_ruleset_is_skipped() {
        let p = parse(
            "p.nft",
            "root@h:~# nft list ruleset\nThe rules:\ntable inet f {\n\tchain c {\n\t\taccept\n\t}\n}\n$\n",
        )
        .unwrap();
        assert_eq!(p.ruleset.tables[0].chains[0].rules.len(), 1);
        assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
        assert!(p.warnings[0].starts_with("p.nft:1: skipped `root@h:~# nft list ruleset`"));
        assert!(p.warnings[2].starts_with("p.nft:8: skipped `$`"));
        let e = parse("p.nft", "table ip a {\n}\nstray words\ntable ip b {\n}\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 1));
        let e = parse("p.nft", "tabel ip a {\n}\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
        let mut t = "x y\n".repeat(50);
        t.push_str("table ip a {\n}\n");
        let p = parse("p.nft", &t).unwrap();
        assert_eq!(p.warnings.len(), SKIPPED_SHOWN + 1);
        assert!(
            p.warnings[SKIPPED_SHOWN].contains("40 more lines"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn malformed_input_says_where() {
        let e = parse(
            "t.nft",
            "table ip t {\n\tchain c {\n\t\ttype filter hook nowhere priority 0;\n\t}\n}\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (3, 20));
        let e = parse("t.nft", "table ip t {\n\tchain c {\n\t\taccept\n").unwrap_err();
        assert!(e.message.contains("not closed"), "{e}");
        let e = parse("t.nft", "chain c {\n}\n").unwrap_err();
        assert_eq!(e.line, 1);
        // The set's `{` swallows the chain's `}`: the table is what stays open.
        let e = parse(
            "t.nft",
            "table ip t {\n\tchain c {\n\t\tip saddr { 1.2.3.4\n\t}\n}\n",
        )
        .unwrap_err();
        assert!(e.message.contains("not closed"), "{e}");
        let e = parse(
            "t.nft",
            "table ip t {\n\tchain c {\n\t\tip saddr @nope drop\n\t}\n}\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 3);
    }
}
