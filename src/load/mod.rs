//! Loading a deployment: the topology file and the admin's own Amanda files,
//! combined. This layer sits above `model` (which validates the topology) and
//! `amanda::conf` (which reads Amanda's files), so neither knows the other:
//! `model::Draft` is the topology validated so far, `amanda_config` applies
//! the Amanda side to it, and `Draft::finish` runs the checks that need every
//! host.

pub mod amanda_config;

pub use amanda_config::{flat_topology, parse_hosts, HostsEntry};

use std::path::Path;

use crate::diag::Result;
use crate::model::{AmandaSources, Deployment, Draft};

/// Read and validate a topology file.
pub fn load_file(path: &Path) -> Result<Deployment> {
    load_file_with(path, &AmandaSources::default())
}

/// Read a topology; `extra` (the CLI's `--amanda-config`, `--hosts`, ...) adds to
/// or replaces what the file says about the Amanda side.
pub fn load_file_with(path: &Path, extra: &AmandaSources) -> Result<Deployment> {
    // `-`: the topology from standard input; its relative paths are then taken
    // from the current directory.
    let text = crate::input::read_text_or_stdin(path)?;
    load_str_with(&crate::input::display_name(path), text, extra)
}

/// Validate topology text; `name` is what errors call the file.
pub fn load_str(name: &str, text: String) -> Result<Deployment> {
    load_str_with(name, text, &AmandaSources::default())
}

/// As `load_str`; paths in the text are relative to `name`'s directory.
pub fn load_str_with(name: &str, text: String, extra: &AmandaSources) -> Result<Deployment> {
    let mut draft = Draft::parse(name, text)?;
    let sources = draft.amanda_sources(extra)?;
    let provenance = if sources.is_empty() {
        Default::default()
    } else {
        amanda_config::apply(&sources, &mut draft)?
    };
    draft.finish(provenance)
}
