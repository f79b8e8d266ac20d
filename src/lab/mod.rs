//! The lab: real network namespaces and the real kernel as the judge.
//! Everything here cleans up on drop, also when a test fails.

pub mod amanda;
pub mod netns;

pub use netns::{Netns, Output};
