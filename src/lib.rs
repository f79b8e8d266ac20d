//! amwall: derive, check and prove the firewall rules Amanda backups need.
//!
//! Pipeline (see ARCHITECTURE.md): `model` → `flows` → `route` →
//! `policy` → `render` (through the `netfilter` IR). Library code never prints
//! or exits; errors are values with spans (`diag`).

pub mod amanda;
pub mod ansible;
pub mod apply;
pub mod check;
pub mod diag;
pub mod doctor;
pub mod export;
pub mod flows;
pub mod input;
pub mod lab;
pub mod lint;
pub mod load;
pub mod model;
pub mod name;
pub mod netfilter;
pub mod output;
pub mod picture;
pub mod plan;
pub mod policy;
pub mod ports;
pub mod render;
pub mod route;
pub mod sim;
pub mod summary;
pub mod table;
pub mod view;

pub use diag::{Error, Result};
pub use plan::Plan;
