//! What Amanda does on the network: the facts (with their sources), the flows
//! they imply for a deployment, and lints for settings that break on real systems.

pub mod conf;
pub mod facts;
pub mod flows;
pub mod lints;
pub mod settings;

pub use flows::{flows, Flow, HelperRole, Operation};
pub use lints::{lint, Lint, Severity};
