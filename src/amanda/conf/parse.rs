//! The statement structure of amanda.conf and amanda-client.conf: parameters,
//! `define KIND NAME { ... }` blocks, `includefile`. Values stay as tokens with their
//! locations; `values` reads the few that decide firewall rules.
//!
//! Where this differs from Amanda on purpose: unknown keywords and unknown `define`
//! kinds are kept and reported as warnings (Amanda 3.5.1 rejects them with
//! "configuration keyword expected"), and an include cycle is an error naming the
//! chain (Amanda recurses until "Too many open files").
//!
//! Each included file is read and parsed once, however often it is included: a
//! few small files that each include the next one twice would otherwise cost
//! 2^n reads (Amanda itself re-reads them). The meaning stays Amanda's — a file
//! included again applies its settings again at that point — see
//! `Parser::include`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::keywords::{self, Kind, Section};
use super::lexer::{Lexer, Tok, Token};
use super::source::{Loc, Src};
use super::Warning;
use crate::diag::{Error, InputError};

#[derive(Debug, Clone)]
pub(crate) struct Arg {
    pub val: ArgVal,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub(crate) enum ArgVal {
    Word(String),
    Str(String),
    Int(i64),
    Real(f64),
    Comma,
    Block(Block),
    Other(char),
}

impl Arg {
    /// The value as Amanda would print it back.
    pub fn render(&self) -> String {
        match &self.val {
            ArgVal::Word(w) => w.clone(),
            ArgVal::Str(s) => format!("{s:?}"),
            ArgVal::Int(n) => n.to_string(),
            ArgVal::Real(r) => r.to_string(),
            ArgVal::Comma => ",".into(),
            ArgVal::Block(b) => format!("{{ {} lines }}", b.items.len()),
            ArgVal::Other(c) => c.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Param {
    /// Lowercase, `_` folded to `-`.
    pub key: String,
    pub key_loc: Loc,
    pub args: Vec<Arg>,
}

impl Param {
    /// The whole statement, for carets.
    pub fn loc(&self) -> Loc {
        match self.args.last() {
            Some(a) => self.key_loc.to(&a.loc),
            None => self.key_loc.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Item {
    Param(Param),
    /// A bare name inside a block: copy that definition's settings here (`read_block`).
    Inherit {
        name: String,
        loc: Loc,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone)]
pub(crate) struct Definition {
    pub kind: Kind,
    pub name: String,
    pub name_loc: Loc,
    pub body: Block,
}

#[derive(Debug, Clone)]
pub(crate) enum Stmt {
    Param(Param),
    Define(Definition),
}

/// Which file this is, for the keyword table and which `define` kinds it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Server,
    Client,
}

/// How deep `includefile` may nest. Amanda has no limit of its own (it stops
/// when it runs out of file descriptors, about 1,000 deep); real configs nest two
/// or three deep, so 64 only ever stops a generated or mistaken chain, early
/// enough that the error's include chain is still readable.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 64;

/// A configuration file with its includes expanded in place.
#[derive(Debug)]
pub(crate) struct Doc {
    /// In Amanda's order; a statement that an include applies again appears
    /// once, at the place where it was applied last (see `Parser::include`).
    pub stmts: Vec<Stmt>,
    /// Every file read, once each, in the order first read.
    pub srcs: Vec<Arc<Src>>,
}

impl Doc {
    /// Every file read, in order.
    pub fn files(&self) -> Vec<PathBuf> {
        self.srcs.iter().map(|s| s.path.clone()).collect()
    }
}

pub(crate) fn parse_file(
    path: &Path,
    config_dir: &Path,
    flavor: Flavor,
    warnings: &mut Vec<Warning>,
) -> Result<Doc, Error> {
    let src = Src::read(path)?;
    let mut p = Parser::new(flavor, config_dir.to_path_buf(), warnings);
    p.file(src, None)?;
    Ok(p.finish())
}

/// Parse text that did not come from a file (unit tests, config snippets).
#[cfg(test)]
pub(crate) fn parse_text(
    name: &str,
    text: &str,
    flavor: Flavor,
    warnings: &mut Vec<Warning>,
) -> Result<Doc, Error> {
    let mut p = Parser::new(flavor, PathBuf::from("."), warnings);
    p.file(Src::new(Path::new(name), text.to_string()), None)?;
    Ok(p.finish())
}

/// A statement's identity: (file number in `Parser::srcs`, statement number in
/// that file). The same statement applied again by a second include has the same key.
type Key = (usize, usize);

/// A file being read.
struct Open {
    canon: PathBuf,
    name: Arc<str>,
    /// The `includefile` that opened it (None for the file we were given).
    from: Option<Loc>,
    file_no: usize,
    next_stmt: usize,
}

/// A file read completely: what including it again applies.
struct Done {
    /// Its statements with its includes expanded, each once, in order.
    stmts: Vec<(Key, Stmt)>,
    /// Where it was first included.
    first: Option<Loc>,
}

struct Parser<'w> {
    flavor: Flavor,
    config_dir: PathBuf,
    /// Files being read, outermost first, to report include cycles and depth.
    stack: Vec<Open>,
    /// Statements in order; `None` where the same statement was applied again later.
    out: Vec<Option<(Key, Stmt)>>,
    /// Where each statement is in `out`.
    at: HashMap<Key, usize>,
    /// Files read completely, by canonical path.
    done: HashMap<PathBuf, Done>,
    srcs: Vec<Arc<Src>>,
    warnings: &'w mut Vec<Warning>,
}

impl<'w> Parser<'w> {
    fn new(flavor: Flavor, config_dir: PathBuf, warnings: &'w mut Vec<Warning>) -> Self {
        Parser {
            flavor,
            config_dir,
            stack: Vec::new(),
            out: Vec::new(),
            at: HashMap::new(),
            done: HashMap::new(),
            srcs: Vec::new(),
            warnings,
        }
    }

    fn finish(self) -> Doc {
        Doc {
            stmts: self.out.into_iter().flatten().map(|(_, s)| s).collect(),
            srcs: self.srcs,
        }
    }

    /// Apply a statement of the file being read.
    fn push(&mut self, stmt: Stmt) {
        let top = self.stack.last_mut().expect("statements come from a file");
        let key = (top.file_no, top.next_stmt);
        top.next_stmt += 1;
        self.apply(key, stmt);
    }

    /// Apply `stmt` now; if it was applied before (the same file included
    /// again), the earlier application no longer counts.
    fn apply(&mut self, key: Key, stmt: Stmt) {
        if let Some(old) = self.at.insert(key, self.out.len()) {
            self.out[old] = None;
        }
        self.out.push(Some((key, stmt)));
    }

    fn file(&mut self, src: Arc<Src>, from: Option<Loc>) -> Result<(), Error> {
        let canon = std::fs::canonicalize(&src.path).unwrap_or_else(|_| src.path.clone());
        let start = self.out.len();
        self.stack.push(Open {
            canon: canon.clone(),
            name: Arc::clone(&src.name),
            from: from.clone(),
            file_no: self.srcs.len(),
            next_stmt: 0,
        });
        self.srcs.push(Arc::clone(&src));
        let mut lx = Lexer::new(src, 0);
        loop {
            let t = lx.next()?;
            match t.tok {
                Tok::Newline => {}
                Tok::Eof => break,
                Tok::Word(w) => self.statement(&mut lx, w, t.span)?,
                _ => {
                    return Err(lx
                        .loc(t.span)
                        .error("configuration keyword expected", "not a keyword")
                        .with_help(
                            "each line starts with a parameter name, `define` or `includefile`",
                        )
                        .into())
                }
            }
        }
        self.stack.pop();
        // Everything applied since `start` that is still in force is what
        // including this file again applies.
        let stmts = self.out[start..].iter().flatten().cloned().collect();
        self.done.insert(canon, Done { stmts, first: from });
        Ok(())
    }

    /// "a.conf → b.conf → c.conf" for the files being read from `i` on, then `last`.
    fn chain(&self, i: usize, last: &str) -> String {
        let mut names: Vec<&str> = self.stack[i..].iter().map(|o| &*o.name).collect();
        names.push(last);
        names.join(" → ")
    }

    /// "included from b.conf:1:13, amanda.conf:3:13" for the files being read.
    fn included_from(&self) -> String {
        let at: Vec<String> = self
            .stack
            .iter()
            .rev()
            .filter_map(|o| o.from.as_ref().map(|l| l.pos().to_string()))
            .collect();
        if at.is_empty() {
            String::new()
        } else {
            format!("; included from {}", at.join(", "))
        }
    }

    fn section(&self) -> Section {
        match self.flavor {
            Flavor::Server => Section::Server,
            Flavor::Client => Section::Client,
        }
    }

    fn statement(
        &mut self,
        lx: &mut Lexer,
        word: String,
        span: std::ops::Range<usize>,
    ) -> Result<(), Error> {
        let key = keywords::normalize(&word);
        let key_loc = lx.loc(span);
        match key.as_str() {
            "includefile" => {
                let t = lx.next()?;
                let Tok::Str(name) = t.tok else {
                    return Err(lx
                        .loc(t.span)
                        .error("includefile needs a quoted file name", "expected \"FILE\"")
                        .into());
                };
                let loc = lx.loc(t.span);
                end_of_line(lx)?;
                self.include(&name, &loc)
            }
            "define" => {
                let t = lx.next()?;
                let Tok::Word(kw) = t.tok else {
                    return Err(lx
                        .loc(t.span)
                        .error("`define` needs a kind, such as dumptype", "expected a kind")
                        .into());
                };
                let kind_loc = lx.loc(t.span);
                let kind = Kind::parse(&keywords::normalize(&kw));
                match kind {
                    None => self.warn(
                        "unknown-define",
                        &kind_loc,
                        format!("unknown definition kind `{kw}`: kept, but Amanda 3.5.1 rejects it"),
                    ),
                    Some(k)
                        if self.flavor == Flavor::Client
                            && !matches!(k, Kind::Application | Kind::Script) =>
                    {
                        self.warn(
                            "unknown-define",
                            &kind_loc,
                            format!("`define {}` belongs in amanda.conf; amanda-client.conf only defines application and script", k.name()),
                        )
                    }
                    _ => {}
                }
                let n = lx.next()?;
                let name = match n.tok {
                    Tok::Word(s) | Tok::Str(s) => s,
                    _ => {
                        return Err(lx
                            .loc(n.span)
                            .error(format!("`define {kw}` needs a name"), "expected a name")
                            .into())
                    }
                };
                let name_loc = lx.loc(n.span);
                let b = lx.next()?;
                if b.tok != Tok::LBrace {
                    return Err(lx
                        .loc(b.span)
                        .error(
                            format!("expected `{{` after `define {kw} {name}`"),
                            "expected `{`",
                        )
                        .into());
                }
                let open = lx.loc(b.span);
                let body = self.block(lx, kind, open)?;
                end_of_line(lx)?;
                if let Some(kind) = kind {
                    self.push(Stmt::Define(Definition {
                        kind,
                        name,
                        name_loc,
                        body,
                    }));
                }
                Ok(())
            }
            _ => {
                let args = self.args(lx, &key, false)?;
                if !keywords::known(self.section(), &key) {
                    self.unknown_keyword(&word, &key_loc, None);
                }
                // `holdingdisk NAME { ... }` defines a holding disk (`get_holdingdisk`).
                if key == "holdingdisk" {
                    if let [name, Arg {
                        val: ArgVal::Block(body),
                        ..
                    }] = &args[..]
                    {
                        if let ArgVal::Word(n) | ArgVal::Str(n) = &name.val {
                            self.push(Stmt::Define(Definition {
                                kind: Kind::Holdingdisk,
                                name: n.clone(),
                                name_loc: name.loc.clone(),
                                body: body.clone(),
                            }));
                            return Ok(());
                        }
                    }
                }
                self.push(Stmt::Param(Param { key, key_loc, args }));
                Ok(())
            }
        }
    }

    fn include(&mut self, name: &str, loc: &Loc) -> Result<(), Error> {
        // conffile.c `read_conffile` → config_dir_relative(): relative names are taken
        // from the configuration directory, not from the including file (amanda.conf(5):
        // "Relative pathnames are relative to the configuration directory"; checked with
        // amgetconf on a nested include).
        let path = if Path::new(name).is_absolute() {
            PathBuf::from(name)
        } else {
            self.config_dir.join(name)
        };
        let canon = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if let Some(i) = self.stack.iter().position(|o| o.canon == canon) {
            let chain = self.chain(i, &self.stack[i].name);
            return Err(loc
                .error(
                    format!("includefile cycle: {chain}"),
                    "this includes a file that is already being read",
                )
                .with_help(format!(
                    "Amanda would recurse until \"Too many open files\"; remove one of the includes{}",
                    self.included_from()
                ))
                .into());
        }
        // Included before: apply what it applied, again, at this point, without
        // reading it again. Amanda 3.5.1 re-reads the file: its parameters are set
        // again (a later value wins, so moving each one here is the same result),
        // and a `define` in it fails as a second definition (checked with
        // amgetconf: "dumptype X already defined at FILE:LINE").
        if let Some(done) = self.done.get(&canon) {
            if let Some((_, Stmt::Define(d))) = done
                .stmts
                .iter()
                .find(|(_, s)| matches!(s, Stmt::Define(_)))
            {
                let first = done
                    .first
                    .as_ref()
                    .map_or_else(|| "at the top".to_string(), |l| format!("at {}", l.pos()));
                return Err(loc
                    .error(
                        format!(
                            "\"{name}\" is included a second time: its {} `{}` ({}) would be defined twice",
                            d.kind.name(),
                            d.name,
                            d.name_loc.pos()
                        ),
                        "included again here",
                    )
                    .with_help(format!(
                        "first included {first}; Amanda reads the file again and stops with \"{} {} already defined\": include it once",
                        d.kind.name(),
                        d.name
                    ))
                    .into());
            }
            let again = done.stmts.clone();
            for (key, stmt) in again {
                self.apply(key, stmt);
            }
            return Ok(());
        }
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(loc
                .error(
                    format!(
                        "includefile nested more than {MAX_INCLUDE_DEPTH} deep: {}",
                        self.chain(0, name)
                    ),
                    "one include too many",
                )
                .with_help(format!(
                    "real configurations nest a few levels; look for a generated or recursive chain{}",
                    self.included_from()
                ))
                .into());
        }
        let src = Src::read(&path).map_err(|e| {
            loc.error(
                format!(
                    "could not open conf file \"{}\": {}",
                    path.display(),
                    super::source::reason(&e)
                ),
                "included here",
            )
            .with_help("relative names are taken from the configuration directory (amanda.conf(5))")
        })?;
        self.file(src, Some(loc.clone()))
    }

    /// Tokens up to the end of the line; a `{` opens an anonymous block.
    fn args(&mut self, lx: &mut Lexer, key: &str, in_block: bool) -> Result<Vec<Arg>, Error> {
        let mut args = Vec::new();
        loop {
            let t = lx.next()?;
            let loc = lx.loc(t.span.clone());
            let val = match t.tok {
                Tok::Newline | Tok::Eof => return Ok(args),
                Tok::RBrace => {
                    let msg = if in_block {
                        "`}` must be on a line of its own"
                    } else {
                        "unexpected `}` outside a block"
                    };
                    return Err(loc
                        .error(msg, "here")
                        .with_help("Amanda: \"end of line is expected\"")
                        .into());
                }
                Tok::LBrace => {
                    let kind = Kind::of_inline_param(key);
                    let body = self.block(lx, kind, loc.clone())?;
                    let end = lx.offset();
                    let loc = lx.loc(t.span.start..end);
                    args.push(Arg {
                        val: ArgVal::Block(body),
                        loc,
                    });
                    continue;
                }
                Tok::Word(w) => ArgVal::Word(w),
                Tok::Str(s) => ArgVal::Str(s),
                Tok::Int(n) => ArgVal::Int(n),
                Tok::Real(r) => ArgVal::Real(r),
                Tok::Comma => ArgVal::Comma,
                Tok::Other(c) => ArgVal::Other(c),
            };
            args.push(Arg { val, loc });
        }
    }

    /// After `{`: lines of parameters or names of parents, up to a `}` (consumed).
    /// `kind` is None for kinds we do not know; then every line is a parameter.
    pub(crate) fn block(
        &mut self,
        lx: &mut Lexer,
        kind: Option<Kind>,
        open: Loc,
    ) -> Result<Block, Error> {
        let t = lx.next()?;
        match t.tok {
            Tok::Newline => {}
            Tok::Eof => return Err(unclosed(&open).into()),
            _ => {
                return Err(lx
                    .loc(t.span)
                    .error(
                        "expected a line break after `{`",
                        "move this to the next line",
                    )
                    .into())
            }
        }
        let mut items = Vec::new();
        loop {
            let t = lx.next()?;
            let loc = lx.loc(t.span.clone());
            match t.tok {
                Tok::Newline => {}
                Tok::RBrace => {
                    return Ok(Block { items });
                }
                Tok::Eof => return Err(unclosed(&open).into()),
                Tok::Str(name) => {
                    end_of_line(lx)?;
                    items.push(Item::Inherit { name, loc });
                }
                Tok::Word(w) => {
                    let key = keywords::normalize(&w);
                    if key == "define" || key == "includefile" {
                        // Most likely the `}` of the block above is missing; say so
                        // here, where Amanda also stops ("dumptype parameter expected").
                        return Err(loc
                            .error(
                                format!("`{w}` inside a block: `}}` missing before this line"),
                                "still inside the block",
                            )
                            .with_help(format!("the block opened at {} is not closed", open.pos()))
                            .into());
                    }
                    let bare = matches!(lx.peek()?.tok, Tok::Newline | Tok::Eof);
                    let known = kind.map(|k| keywords::known(Section::Block(k), &key));
                    if bare && known == Some(false) {
                        items.push(Item::Inherit { name: w, loc });
                        continue;
                    }
                    let args = self.args(lx, &key, true)?;
                    if known == Some(false) {
                        self.unknown_keyword(&w, &loc, kind);
                    }
                    items.push(Item::Param(Param {
                        key,
                        key_loc: loc,
                        args,
                    }));
                }
                _ => {
                    return Err(loc
                        .error(
                            "expected a parameter, or the name of a definition to inherit",
                            "unexpected here",
                        )
                        .into())
                }
            }
        }
    }

    fn unknown_keyword(&mut self, word: &str, loc: &Loc, kind: Option<Kind>) {
        let place = match (kind, self.flavor) {
            (Some(k), _) => format!(" in a {}", k.name()),
            (None, Flavor::Server) => " in amanda.conf".to_string(),
            (None, Flavor::Client) => " in amanda-client.conf".to_string(),
        };
        self.warn(
            "unknown-keyword",
            loc,
            format!(
                "unknown keyword `{word}`{place}: kept and ignored, but Amanda 3.5.1 rejects it"
            ),
        );
    }

    fn warn(&mut self, code: &'static str, loc: &Loc, message: String) {
        self.warnings.push(Warning {
            code,
            pos: loc.pos(),
            message,
        });
    }
}

/// A block parser usable from the disklist, for `host disk { inline dumptype }`.
pub(crate) fn inline_block(
    lx: &mut Lexer,
    kind: Kind,
    open: Loc,
    warnings: &mut Vec<Warning>,
) -> Result<Block, Error> {
    let mut p = Parser::new(Flavor::Server, PathBuf::new(), warnings);
    p.block(lx, Some(kind), open)
}

fn unclosed(open: &Loc) -> InputError {
    open.error("unclosed block: `}` missing", "this `{` is never closed")
}

fn end_of_line(lx: &mut Lexer) -> Result<(), InputError> {
    let t: Token = lx.next()?;
    match t.tok {
        Tok::Newline | Tok::Eof => Ok(()),
        _ => Err(lx
            .loc(t.span)
            .error("expected the end of the line", "unexpected")
            .with_help("Amanda: \"end of line is expected\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> (Doc, Vec<Warning>) {
        let mut w = Vec::new();
        let d = parse_text("t.conf", text, Flavor::Server, &mut w).unwrap();
        (d, w)
    }

    #[test]
    fn define_with_inheritance_and_bare_boolean() {
        let (d, w) =
            doc("define dumptype a {\n  global\n  index\n  \"quoted-parent\"\n  auth \"bsd\"\n}\n");
        assert!(w.is_empty(), "{w:?}");
        let Stmt::Define(def) = &d.stmts[0] else {
            panic!()
        };
        assert_eq!(def.kind, Kind::Dumptype);
        let names: Vec<String> = def
            .body
            .items
            .iter()
            .map(|i| match i {
                Item::Param(p) => format!("param {}", p.key),
                Item::Inherit { name, .. } => format!("inherit {name}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "inherit global",
                "param index",
                "inherit quoted-parent",
                "param auth"
            ]
        );
    }

    #[test]
    fn unknown_keywords_are_kept_and_warned() {
        let (d, w) = doc("frobnicate 3 \"x\"\ndefine dumptype a {\n  zap-level 2\n}\n");
        assert_eq!(d.stmts.len(), 2);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].code, "unknown-keyword");
        assert_eq!(w[0].pos.to_string(), "t.conf:1:1");
        assert_eq!(w[1].pos.to_string(), "t.conf:3:3");
    }

    #[test]
    fn holdingdisk_block_is_a_definition() {
        let (d, _) = doc("holdingdisk hd1 {\n  directory \"/x\"\n}\n");
        assert!(
            matches!(&d.stmts[0], Stmt::Define(def) if def.kind == Kind::Holdingdisk && def.name == "hd1")
        );
    }

    #[test]
    fn application_inline_block_in_dumptype() {
        let (d, w) = doc("define dumptype a {\n  application {\n    plugin \"amgtar\"\n  }\n}\n");
        assert!(w.is_empty(), "{w:?}");
        let Stmt::Define(def) = &d.stmts[0] else {
            panic!()
        };
        let Item::Param(p) = &def.body.items[0] else {
            panic!()
        };
        assert!(matches!(&p.args[0].val, ArgVal::Block(b) if b.items.len() == 1));
    }

    #[test]
    fn unclosed_block_points_at_the_brace() {
        let mut w = Vec::new();
        let e = parse_text(
            "t.conf",
            "define dumptype a {\n  index\n",
            Flavor::Server,
            &mut w,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "t.conf:1:19: unclosed block: `}` missing");
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn parse_dir(dir: &Path) -> (Result<Doc, Error>, usize) {
        let mut w = Vec::new();
        let before = super::super::source::READS.with(|r| r.get());
        let d = parse_file(&dir.join("amanda.conf"), dir, Flavor::Server, &mut w);
        (d, super::super::source::READS.with(|r| r.get()) - before)
    }

    /// (file, line, key, value) of each parameter, in order.
    fn applied(d: &Doc) -> Vec<(String, usize, String, String)> {
        d.stmts
            .iter()
            .filter_map(|s| match s {
                Stmt::Param(p) => {
                    let pos = p.key_loc.pos();
                    let file = Path::new(&*pos.file)
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    let v = p.args.iter().map(|a| a.render()).collect::<String>();
                    Some((file, pos.line, p.key.clone(), v))
                }
                Stmt::Define(_) => None,
            })
            .collect()
    }

    /// Each of `n` files sets something, includes the next one, sets something
    /// else and includes the next one again (the chain).
    fn chain(dir: &Path, n: usize) {
        for i in 0..n {
            let name = if i == 0 {
                "amanda.conf".to_string()
            } else {
                format!("f{i}.conf")
            };
            let text = if i + 1 == n {
                "unreserved-tcp-port 2000,3000\n".to_string()
            } else {
                let next = format!("f{}.conf", i + 1);
                format!("inparallel {i}\nincludefile \"{next}\"\nreserved-udp-port {i},{}\nincludefile \"{next}\"\n", i + 700)
            };
            write(dir, &name, &text);
        }
    }

    /// Amanda's meaning, spelled out: expand every include in place, text by
    /// text, then keep each statement's last application.
    fn naive(dir: &Path, name: &str, out: &mut Vec<(String, usize, String, String)>) {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        for (i, l) in text.lines().enumerate() {
            let (k, v) = l.split_once(' ').unwrap();
            if k == "includefile" {
                naive(dir, v.trim_matches('"'), out);
            } else {
                out.push((name.to_string(), i + 1, k.to_string(), v.to_string()));
            }
        }
    }

    #[test]
    fn a_file_included_again_applies_again_in_amandas_order() {
        let dir = tempfile::tempdir().unwrap();
        chain(dir.path(), 7);
        let (d, reads) = parse_dir(dir.path());
        let d = d.unwrap();
        assert_eq!(reads, 7);
        let mut all = Vec::new();
        naive(dir.path(), "amanda.conf", &mut all);
        assert_eq!(all.len(), (1 << 6) * 2 - 2 + (1 << 6));
        // Keep each statement where it was applied last.
        let mut last: Vec<(String, usize, String, String)> = Vec::new();
        for s in all {
            last.retain(|x| (&x.0, x.1) != (&s.0, s.1));
            last.push(s);
        }
        assert_eq!(applied(&d), last);
        assert_eq!(d.files().len(), 7, "each file listed once");
    }

    /// 24 files, each including the next one twice: 2^23 includes for Amanda,
    /// 24 reads here.
    #[test]
    fn an_exponential_include_chain_reads_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        chain(dir.path(), 24);
        let (d, reads) = parse_dir(dir.path());
        let d = d.unwrap();
        assert_eq!(reads, 24);
        let got = applied(&d);
        assert_eq!(got.len(), 23 * 2 + 1, "each statement once");
        // The last statement applied wins, as in Amanda: the deepest file's.
        let value = |k: &str| got.iter().rev().find(|s| s.2 == k).unwrap().3.clone();
        assert_eq!(value("inparallel"), "22");
        assert_eq!(value("reserved-udp-port"), "22,722");
    }

    #[test]
    fn a_define_in_a_file_included_twice_is_a_second_definition() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "amanda.conf",
            "includefile \"d.conf\"\ninparallel 3\nincludefile \"d.conf\"\n",
        );
        write(
            dir.path(),
            "d.conf",
            "define dumptype dd {\n  auth \"bsdtcp\"\n}\n",
        );
        let (d, reads) = parse_dir(dir.path());
        let e = d.unwrap_err().to_string();
        assert_eq!(reads, 2);
        assert!(
            e.contains("amanda.conf:3:13: \"d.conf\" is included a second time: its dumptype `dd`"),
            "{e}"
        );
        assert!(e.contains("d.conf:1:17"), "{e}");
    }

    #[test]
    fn include_cycle_and_depth_name_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "amanda.conf", "includefile \"a.conf\"\n");
        write(
            dir.path(),
            "a.conf",
            "inparallel 2\nincludefile \"b.conf\"\n",
        );
        write(dir.path(), "b.conf", "includefile \"a.conf\"\n");
        let e = parse_dir(dir.path()).0.unwrap_err();
        let Error::Input(e) = e else { panic!("{e}") };
        let b = dir.path().join("b.conf").display().to_string();
        let a = dir.path().join("a.conf").display().to_string();
        assert_eq!(
            e.to_string(),
            format!("{b}:1:13: includefile cycle: {a} → {b} → {a}")
        );
        let help = format!("{:?}", e);
        assert!(
            help.contains(&format!("included from {a}:2:13, ")),
            "{help}"
        );

        let dir = tempfile::tempdir().unwrap();
        for i in 0..100 {
            let name = if i == 0 {
                "amanda.conf".to_string()
            } else {
                format!("n{i}.conf")
            };
            write(
                dir.path(),
                &name,
                &format!("includefile \"n{}.conf\"\n", i + 1),
            );
        }
        let (d, reads) = parse_dir(dir.path());
        let e = d.unwrap_err().to_string();
        assert_eq!(reads, MAX_INCLUDE_DEPTH);
        let last = dir.path().join(format!("n{}.conf", MAX_INCLUDE_DEPTH - 1));
        assert!(
            e.starts_with(&format!(
                "{}:1:13: includefile nested more than 64 deep: ",
                last.display()
            )),
            "{e}"
        );
    }

    /// Latin-1 bytes read as one character each: the column after them is the
    /// one an editor shows (lossy UTF-8 folds `à` + no-break space into one `�`).
    #[test]
    fn latin1_text_keeps_columns() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("amanda.conf"),
            b"# Sauvegarde \xe0\xa0Paris\ndefine dumptype a {\n  comment \"voil\xe0\xa0\" }\n",
        )
        .unwrap();
        let e = parse_dir(dir.path()).0.unwrap_err().to_string();
        assert!(
            e.ends_with("amanda.conf:3:20: `}` must be on a line of its own"),
            "{e}"
        );
    }
}
