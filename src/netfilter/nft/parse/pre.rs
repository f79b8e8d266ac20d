//! What nft does before it parses a command: `include "FILE"` splices the
//! tokens of FILE in where it stands, `define NAME = VALUE` / `redefine` /
//! `undefine` bind symbols, and `$NAME` is replaced by the value bound when it
//! is read. The parser proper then sees plain nft text, so a variable can stand
//! wherever a value can without every rule knowing about variables.
//!
//! Semantics follow nft 1.0.6 as `nft -c -f` shows them (checked by hand,
//! and by the tests below where a file system is not needed):
//! - A define is visible in its block and the blocks inside it; `define` of a
//!   name visible from an outer block is "redefinition of symbol"; `redefine`
//!   and `undefine` act on the current block only (an `undefine` of a name the
//!   block does not have is no error, and an outer binding stays visible).
//! - A reference takes the value bound at that point: a later `redefine`
//!   changes later uses only (also through `define q = $p`).
//! - An unknown `$NAME` is an error at NAME, as nft's "unknown identifier".
//! - A set value used inside an anonymous set (`{ $lan, 192.0.2.1 }`) is
//!   merged into it, as nft flattens nested sets.
//! - `include "NAME"`: an absolute NAME is read as is, `./` and `../` are
//!   relative to the working directory, any other NAME is looked up in the
//!   include path (nft's default is `/etc`; `nft -I DIR` adds DIR after it) —
//!   not next to the including file. Wildcards (`*`, `?`, `[...]`) match in
//!   alphabetical order, skip names starting with `.`, and may match nothing;
//!   directories are skipped; a plain NAME that does not exist is an error.
//!   Nesting deeper than 16 is an error in nft; a cycle is reported with its
//!   chain before that.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{err, lex, Error, Res, Tok, T};
use crate::diag::InputError;

/// How `include` is followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Includes {
    /// The include path: where `include "NAME"` looks for a NAME that does
    /// not start with `/`, `./` or `../`, in order.
    pub dirs: Vec<PathBuf>,
    /// Whether `include` reads files at all. Off for text with no files
    /// around it (fuzzing, what the kernel lists, which never includes):
    /// an include is then skipped with a warning.
    pub follow: bool,
}

impl Includes {
    /// As `nft -f` runs without `-I`: Debian's nft is built with include
    /// path `/etc` (`nft -h`: "Default is: /etc").
    pub fn nft_default() -> Includes {
        Includes {
            dirs: vec![PathBuf::from("/etc")],
            follow: true,
        }
    }

    /// Never read a file.
    pub fn none() -> Includes {
        Includes {
            dirs: Vec::new(),
            follow: false,
        }
    }
}

/// nft's limit on nested includes (`Include nested too deeply, max 16 levels`).
const MAX_DEPTH: usize = 16;

/// More tokens than this beyond those the files themselves hold (and in all
/// define values together) is refused: defines that double at each step
/// would otherwise grow exponentially. Files, however often included, are
/// bounded by the input limit on their bytes.
const MAX_TOKENS: usize = 2_000_000;

/// More included files than this (a wildcard over a huge tree) is refused.
const MAX_FILES: usize = 10_000;

/// One source in the shared offset space.
pub(super) struct Src {
    pub path: String,
    pub text: Arc<String>,
    pub base: usize,
    /// Where it was included from: (source, line).
    pub from: Option<(usize, usize)>,
}

pub(super) struct Pre<'a> {
    inc: &'a Includes,
    pub sources: Vec<Src>,
    pub warnings: Vec<String>,
    /// Innermost last.
    scopes: Vec<HashMap<String, Vec<T>>>,
    /// Sources being expanded, outermost first (for cycles and depth).
    stack: Vec<(usize, Option<PathBuf>)>,
    /// Files read so far, by canonical path: read once however often included.
    cache: HashMap<PathBuf, Arc<String>>,
    /// Bytes of all sources, counting repeats: bounded by the input limit.
    bytes: u64,
    out_len: usize,
    /// Tokens lexed from all sources, each inclusion counted.
    lexed: usize,
    /// Tokens held by define values.
    defined: usize,
}

impl<'a> Pre<'a> {
    pub fn new(file: &str, text: &str, inc: &'a Includes) -> Pre<'a> {
        Pre {
            inc,
            sources: vec![Src {
                path: file.to_string(),
                text: Arc::new(text.to_string()),
                base: 0,
                from: None,
            }],
            warnings: Vec::new(),
            scopes: vec![HashMap::new()],
            stack: Vec::new(),
            cache: HashMap::new(),
            bytes: text.len() as u64,
            out_len: 0,
            lexed: 0,
            defined: 0,
        }
    }

    /// The main file's tokens with includes spliced in and variables replaced.
    pub fn run(&mut self) -> Res<Vec<T>> {
        let text = Arc::clone(&self.sources[0].text);
        let toks = lex(&text, 0, 0)?;
        self.lexed = toks.len();
        let mut out = Vec::new();
        // The main file counts for cycles when it is a file at all.
        let canon = self
            .inc
            .follow
            .then(|| std::fs::canonicalize(&self.sources[0].path).ok())
            .flatten();
        self.stack.push((0, canon));
        self.expand(toks, &mut out)?;
        self.stack.pop();
        Ok(out)
    }

    /// The InputError for `e`, in the source its span falls in.
    pub fn error(&self, e: Error) -> Box<InputError> {
        if let Some(ready) = e.ready {
            return ready;
        }
        let k = self
            .sources
            .iter()
            .rposition(|s| s.base <= e.span.start)
            .unwrap_or(0);
        let s = &self.sources[k];
        let start = e.span.start - s.base;
        let end = e.span.end.saturating_sub(s.base).max(start);
        let mut ie = InputError::new(&s.path, &s.text, start..end, e.message, e.label);
        if s.from.is_some() {
            ie = ie.with_help(format!("in {}", self.chain_of(k)));
        }
        Box::new(ie)
    }

    /// The path of source `k`.
    pub fn path(&self, k: usize) -> &str {
        self.sources.get(k).map_or("", |s| s.path.as_str())
    }

    /// "FILE, included from A:3, included from B:1".
    fn chain_of(&self, mut k: usize) -> String {
        let mut out = self.sources[k].path.clone();
        while let Some((from, line)) = self.sources[k].from {
            out.push_str(&format!(
                ", included from {}:{line}",
                self.sources[from].path
            ));
            k = from;
        }
        out
    }

    fn push(&mut self, out: &mut Vec<T>, t: T) -> Res<()> {
        if self.out_len >= MAX_TOKENS + self.lexed {
            return err(
                t.span,
                format!("variables grow the ruleset by more than {MAX_TOKENS} tokens"),
                "still growing here",
            );
        }
        self.out_len += 1;
        out.push(t);
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<&Vec<T>> {
        self.scopes.iter().rev().find_map(|s| s.get(name))
    }

    fn expand(&mut self, toks: Vec<T>, out: &mut Vec<T>) -> Res<()> {
        let mut i = 0;
        let mut at_start = true;
        while i < toks.len() {
            let t = &toks[i];
            match &t.tok {
                Tok::Open => {
                    self.scopes.push(HashMap::new());
                    at_start = true;
                }
                Tok::Close => {
                    if self.scopes.len() > 1 {
                        self.scopes.pop();
                    }
                    at_start = true;
                }
                Tok::Nl | Tok::Semi => at_start = true,
                Tok::Word(w) if at_start && matches!(w.as_str(), "define" | "redefine") => {
                    i = self.define(&toks, i)?;
                    continue;
                }
                Tok::Word(w) if at_start && w == "undefine" => {
                    let Some(n) = toks.get(i + 1).filter(|n| symbol(n).is_some()) else {
                        return err(t.span.clone(), "`undefine` needs a name", "here");
                    };
                    let name = symbol(n).expect("checked").to_string();
                    self.scopes.last_mut().expect("one scope").remove(&name);
                    i += 2;
                    continue;
                }
                Tok::Word(w) if at_start && w == "include" => {
                    i = self.include(&toks, i, out)?;
                    continue;
                }
                // A lone `$` is no variable (a shell prompt pasted in).
                Tok::Word(w) if w.starts_with('$') && w.len() > 1 => {
                    self.reference(t, out)?;
                    at_start = false;
                    i += 1;
                    continue;
                }
                _ => at_start = false,
            }
            self.push(out, t.clone())?;
            i += 1;
        }
        Ok(())
    }

    /// `$NAME` at `t`: the bound value, placed where `t` is.
    fn reference(&mut self, t: &T, out: &mut Vec<T>) -> Res<()> {
        let w = t.word().expect("a word");
        let name = &w[1..];
        let name_span = t.span.start + 1..t.span.end;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./\\-".contains(c))
        {
            return err(
                name_span,
                format!("bad variable name `{w}`"),
                "expected $NAME",
            );
        }
        // `table ip $t`, `chain $c {`: nft takes no variable as a name there.
        let prev = out.iter().rev().find(|p| p.tok != Tok::Nl);
        let prev2 = out.iter().rev().filter(|p| p.tok != Tok::Nl).nth(1);
        let naming = prev.is_some_and(|p| p.is("table") || p.is("chain"))
            || (prev.is_some_and(|p| p.word().is_some_and(|w| super::family_of(w).is_some()))
                && prev2.is_some_and(|p| p.is("table")));
        if naming {
            return err(
                t.span.clone(),
                format!("`{w}`: nft takes no variable as a table or chain name"),
                "write the name",
            );
        }
        let Some(value) = self.lookup(name).cloned() else {
            return err(
                name_span,
                format!("unknown identifier '{name}'"),
                "not defined here",
            );
        };
        // Inside an anonymous set a set value merges into it.
        let in_set = prev.is_some_and(|p| matches!(p.tok, Tok::Open | Tok::Comma));
        let inner = match value.as_slice() {
            [first, mid @ .., last]
                if in_set && first.tok == Tok::Open && last.tok == Tok::Close =>
            {
                mid
            }
            v => v,
        };
        for v in inner {
            self.push(
                out,
                T {
                    tok: v.tok.clone(),
                    span: t.span.clone(),
                    line: t.line,
                    file: t.file,
                },
            )?;
        }
        Ok(())
    }

    /// `define NAME = VALUE` (or `redefine`) at `toks[i]`; returns where the
    /// statement ends (its separator stays for the parser).
    fn define(&mut self, toks: &[T], i: usize) -> Res<usize> {
        let kw = toks[i].word().expect("a word").to_string();
        let mut j = i + 1;
        // `NAME = V`, `NAME=V`, `NAME= V`, `NAME =V`: the lexer keeps `=` in words.
        let Some(n) = toks.get(j).filter(|n| matches!(n.tok, Tok::Word(_))) else {
            return err(
                toks[i].span.clone(),
                format!("`{kw}` needs NAME = VALUE"),
                "here",
            );
        };
        let word = n.word().expect("a word");
        let (name, rest) = match word.split_once('=') {
            Some((a, b)) => (a.to_string(), Some(b.to_string())),
            None => (word.to_string(), None),
        };
        let name_span = n.span.start..n.span.start + name.len();
        if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return err(
                name_span,
                format!("`{kw}` needs a name"),
                "expected NAME = VALUE",
            );
        }
        j += 1;
        let mut value_toks: Vec<T> = Vec::new();
        match rest {
            Some(r) if !r.is_empty() => value_toks.push(T {
                tok: Tok::Word(r.clone()),
                span: n.span.end - r.len()..n.span.end,
                line: n.line,
                file: n.file,
            }),
            Some(_) => {}
            None => match toks.get(j).and_then(T::word) {
                Some("=") => j += 1,
                Some(w) if w.starts_with('=') => {
                    let t = &toks[j];
                    value_toks.push(T {
                        tok: Tok::Word(w[1..].to_string()),
                        span: t.span.start + 1..t.span.end,
                        line: t.line,
                        file: t.file,
                    });
                    j += 1;
                }
                _ => {
                    let at = toks.get(j).map_or(n.span.clone(), |t| t.span.clone());
                    return err(at, format!("expected `=` after `{kw} {name}`"), "here");
                }
            },
        }
        // The value: up to a newline or `;` outside braces.
        let mut depth = 0usize;
        while let Some(t) = toks.get(j) {
            match t.tok {
                Tok::Nl | Tok::Semi if depth == 0 => break,
                Tok::Close if depth == 0 => break,
                Tok::Nl => {
                    j += 1;
                    continue;
                }
                Tok::Open => depth += 1,
                Tok::Close => depth -= 1,
                _ => {}
            }
            value_toks.push(t.clone());
            j += 1;
        }
        if depth > 0 {
            return err(
                toks[i].span.clone(),
                "unclosed `{` in the value",
                "this definition",
            );
        }
        if value_toks.is_empty() {
            let at = toks.get(j).map_or(n.span.clone(), |t| t.span.clone());
            return err(
                at,
                format!("`{kw} {name}` needs a value"),
                "expected a value here",
            );
        }
        // References in the value are read now: later redefines do not reach it.
        let mut value = Vec::new();
        let saved = self.out_len;
        for t in &value_toks {
            if t.word().is_some_and(|w| w.starts_with('$')) {
                self.reference(t, &mut value)?;
            } else {
                self.push(&mut value, t.clone())?;
            }
        }
        // A value counts against the limit each time it is used, not here.
        self.out_len = saved;
        self.defined += value.len();
        if self.defined > MAX_TOKENS {
            return err(
                name_span,
                format!("the defines hold more than {MAX_TOKENS} tokens together"),
                "still growing here",
            );
        }
        if kw == "define" && self.lookup(&name).is_some() {
            return err(
                name_span,
                format!("redefinition of symbol '{name}'"),
                "already defined (use `redefine`)",
            );
        }
        self.scopes
            .last_mut()
            .expect("one scope")
            .insert(name, value);
        Ok(j)
    }

    /// `include "FILE"` at `toks[i]`: the files' tokens go to `out`.
    fn include(&mut self, toks: &[T], i: usize, out: &mut Vec<T>) -> Res<usize> {
        let kw = &toks[i];
        let Some(Tok::Str(name)) = toks.get(i + 1).map(|t| &t.tok) else {
            let at = toks.get(i + 1).map_or(kw.span.clone(), |t| t.span.clone());
            return err(
                at,
                "`include` needs a quoted file name",
                "expected \"FILE\"",
            );
        };
        let span = kw.span.start..toks[i + 1].span.end;
        let (from_file, from_line) = (kw.file, kw.line);
        if !self.inc.follow {
            let from = &self.sources[from_file].path;
            self.warnings.push(format!(
                "{from}:{from_line}: include \"{name}\" not followed: its rules are missing"
            ));
            return Ok(i + 2);
        }
        let files = self.resolve(name).map_err(|m| Error {
            span: span.clone(),
            message: m,
            label: "this include".into(),
            ready: None,
        })?;
        for path in files {
            if self.stack.len() >= MAX_DEPTH {
                return err(
                    span,
                    format!("include nested too deeply, max {MAX_DEPTH} levels"),
                    "here",
                );
            }
            let canon = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if let Some(at) = self
                .stack
                .iter()
                .position(|(_, c)| c.as_ref() == Some(&canon))
            {
                let mut chain: Vec<String> = self.stack[at..]
                    .iter()
                    .map(|(k, _)| self.sources[*k].path.clone())
                    .collect();
                chain.push(path.display().to_string());
                return err(
                    span,
                    format!("include cycle: {}", chain.join(" includes ")),
                    "includes a file that is already being read",
                );
            }
            if self.sources.len() > MAX_FILES {
                return err(
                    span,
                    format!("more than {MAX_FILES} included files"),
                    "here",
                );
            }
            let text = match self.cache.get(&canon) {
                Some(t) => Arc::clone(t),
                None => {
                    let t = match crate::input::read_text(&path) {
                        Ok(t) => Arc::new(t),
                        Err(crate::diag::Error::Input(ie)) => {
                            return Err(Error {
                                span,
                                message: String::new(),
                                label: String::new(),
                                ready: Some(ie),
                            })
                        }
                        Err(e) => {
                            return err(span, format!("include \"{name}\": {e}"), "this include")
                        }
                    };
                    self.cache.insert(canon.clone(), Arc::clone(&t));
                    t
                }
            };
            self.bytes += text.len() as u64;
            let limit = crate::input::limit().unwrap_or(crate::input::DEFAULT_LIMIT);
            if self.bytes > limit {
                return err(
                    span,
                    format!(
                        "the included files add up to more than the input limit of {limit} bytes (set {} to raise it)",
                        crate::input::LIMIT_ENV
                    ),
                    "here",
                );
            }
            let last = self.sources.last().expect("the main file");
            let base = last.base + last.text.len() + 1;
            let k = self.sources.len();
            self.sources.push(Src {
                path: path.display().to_string(),
                text: Arc::clone(&text),
                base,
                from: Some((from_file, from_line)),
            });
            let sub = lex(&text, base, k)?;
            self.lexed += sub.len();
            self.stack.push((k, Some(canon)));
            self.expand(sub, out)?;
            self.stack.pop();
            // A file that ends without a newline still ends its statement.
            if out
                .last()
                .is_some_and(|t| !matches!(t.tok, Tok::Nl | Tok::Semi))
            {
                let end = base + text.len();
                self.push(
                    out,
                    T {
                        tok: Tok::Nl,
                        span: end..end,
                        line: text.lines().count().max(1),
                        file: k,
                    },
                )?;
            }
        }
        Ok(i + 2)
    }

    /// The files `include "name"` reads, in order.
    fn resolve(&self, name: &str) -> Result<Vec<PathBuf>, String> {
        let wild = name.contains(['*', '?', '[']);
        let direct = name.starts_with('/') || name.starts_with("./") || name.starts_with("../");
        let candidates: Vec<PathBuf> = if direct {
            vec![PathBuf::from(name)]
        } else {
            self.inc.dirs.iter().map(|d| d.join(name)).collect()
        };
        for c in &candidates {
            let found = if wild {
                glob(c)?
            } else if c.exists() {
                vec![c.clone()]
            } else {
                continue;
            };
            // Directories are skipped, as nft skips them.
            let files: Vec<PathBuf> = found.into_iter().filter(|p| !p.is_dir()).collect();
            if wild && files.is_empty() {
                continue;
            }
            return Ok(files);
        }
        if wild {
            return Ok(Vec::new());
        }
        if direct {
            Err(format!("include \"{name}\": file not found"))
        } else {
            let dirs: Vec<String> = self
                .inc
                .dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            Err(format!(
                "include \"{name}\": not found in the include path ({}); nft looks there, not next to the including file (nft -I DIR, amwall --nft-include DIR add a directory; \"./{name}\" is relative to the working directory)",
                if dirs.is_empty() { "empty".to_string() } else { dirs.join(", ") }
            ))
        }
    }
}

/// The name of `undefine NAME`.
fn symbol(t: &T) -> Option<&str> {
    t.word().filter(|w| !w.is_empty() && !w.starts_with('$'))
}

/// Paths matching `pattern` (wildcards in any component), sorted; names
/// starting with `.` are not matched by a wildcard, as glob(3) does it.
fn glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let mut current: Vec<PathBuf> = vec![if pattern.is_absolute() {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    }];
    for comp in pattern.components() {
        use std::path::Component;
        let part = match comp {
            Component::RootDir | Component::Prefix(_) => continue,
            Component::CurDir => ".".to_string(),
            Component::ParentDir => "..".to_string(),
            Component::Normal(p) => p.to_string_lossy().into_owned(),
        };
        let mut next = Vec::new();
        for dir in &current {
            if !part.contains(['*', '?', '[']) {
                let p = dir.join(&part);
                if p.exists() {
                    next.push(p);
                }
                continue;
            }
            let Ok(rd) = std::fs::read_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && wildmatch(part.as_bytes(), n.as_bytes()))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
            if next.len() > MAX_FILES {
                return Err(format!(
                    "`{}` matches more than {MAX_FILES} paths",
                    pattern.display()
                ));
            }
        }
        current = next;
    }
    Ok(current)
}

/// Shell wildcard match: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`/`[^x]`.
fn wildmatch(p: &[u8], s: &[u8]) -> bool {
    // Iterative with one backtrack point for `*`: linear enough for names.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(pi + 1),
            Some(b'[') => class(p, pi, s[si]),
            Some(&c) if c == s[si] => Some(pi + 1),
            _ => None,
        };
        match step {
            Some(np) => {
                pi = np;
                si += 1;
            }
            None => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether the class at `p[at] == '['` matches `c`: the index after it if so.
fn class(p: &[u8], at: usize, c: u8) -> Option<usize> {
    let mut i = at + 1;
    let neg = matches!(p.get(i), Some(b'!' | b'^'));
    if neg {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while let Some(&x) = p.get(i) {
        if x == b']' && !first {
            return (hit != neg).then_some(i + 1);
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&e| e != b']') {
            hit |= (x..=p[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= x == c;
            i += 1;
        }
    }
    // No closing `]`: the `[` is a plain character.
    (c == b'[').then_some(at + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_the_shell() {
        assert!(wildmatch(b"*.nft", b"a.nft"));
        assert!(!wildmatch(b"*.nft", b"a.conf"));
        assert!(wildmatch(b"[0-9]?-*", b"10-lan.nft"));
        assert!(!wildmatch(b"[!0-9]*", b"1x"));
        assert!(wildmatch(b"a*b*c", b"axxbyyc"));
        assert!(!wildmatch(b"a*b*c", b"axxbyy"));
        assert!(wildmatch(b"[", b"["));
    }
}
