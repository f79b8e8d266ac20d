//! Amanda's own configuration, read the way Amanda 3.5.1 reads it: `amanda.conf`
//! with its includes and definitions, the `disklist`, a client's
//! `amanda-client.conf`, Debian's `/etc/amanda-security.conf` and a services file.
//!
//! Why: admins should not retype what Amanda already knows. The clients come from
//! the disklist, each client's auth, `index` and `client-port` from its dumptype
//! (after inheritance, with Amanda's real defaults), and every port range from the
//! server's and the clients' files. Every value keeps the file:line:column it came
//! from (or the default it fell back to, with the source of that default), so that
//! a generated rule and a lint can say which line of which file decided it.
//!
//! The language is `get_conftoken`/`read_confline`/`read_block` in
//! `A:common-src/conffile.c` and `parse_diskline` in `A:server-src/diskfile.c`;
//! each function here names the part it mirrors, and the tests compare what we read
//! with `amgetconf` on Debian's own sample files. Deliberate differences: unknown
//! keywords are kept and reported as warnings (admins carry configs across
//! versions), and include cycles are reported instead of recursing.
//!
//! This module never prints; errors are `diag::InputError`s with carets.

// The internal parsers return `InputError` by value: it is built at most once per
// run (the first error ends the parse), and the public functions hand it out boxed
// in `diag::Error`.
#![allow(clippy::result_large_err)]

mod client;
mod disklist;
mod keywords;
mod lexer;
mod lints;
mod parse;
mod security;
mod server;
mod source;
mod values;

use std::fmt;

use serde::Serialize;

pub use client::{load_client_conf, ClientConf};
pub use disklist::{DiskEntry, DumptypeRef};
pub use keywords::Kind;
pub use lints::{lint_client, lint_server, LintContext};
pub use security::{
    load_security_conf, load_services, parse_security_conf, parse_services, SecurityConf, Services,
};
pub use server::{
    load_server_config, AmandaConfig, ClientEntry, Definition, DumptypeSettings, ServerSettings,
};
pub use source::{Pos, Spanned, Texts};

use crate::amanda::settings::Build;

/// Something that Amanda accepts (or that we accept where Amanda would not) but
/// that an admin should look at. Never changes what was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Short stable name, for scripts and tests.
    pub code: &'static str,
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.pos, self.message)
    }
}

/// A top-level parameter as written. Unknown keywords land here too (with
/// `known: false`), so nothing an admin wrote is silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawParam {
    /// Lowercase, `_` folded to `-`.
    pub key: String,
    pub value: String,
    pub pos: Pos,
    /// Whether Amanda 3.5.1 knows the keyword.
    pub known: bool,
}

pub(crate) fn raw_params(stmts: &[parse::Stmt], section: keywords::Section) -> Vec<RawParam> {
    stmts
        .iter()
        .filter_map(|s| match s {
            parse::Stmt::Param(p) => Some(RawParam {
                key: p.key.clone(),
                value: p
                    .args
                    .iter()
                    .map(|a| a.render())
                    .collect::<Vec<_>>()
                    .join(" "),
                pos: p.key_loc.pos(),
                known: keywords::known(section, &p.key),
            }),
            parse::Stmt::Define(_) => None,
        })
        .collect()
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Written at this place (for an inherited value: where the parent wrote it).
    File(Pos),
    /// Not written anywhere; Amanda's default, with where that default comes from.
    Default(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{p}"),
            Origin::Default(why) => write!(f, "default ({why})"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Setting<T> {
    /// The place to point at: where it was written, if it was.
    pub fn pos(&self) -> Option<&Pos> {
        match &self.origin {
            Origin::File(p) => Some(p),
            Origin::Default(_) => None,
        }
    }
}

/// Whose compiled-in defaults fill what the files leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    pub build: Build,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            build: Build::Debian,
        }
    }
}
