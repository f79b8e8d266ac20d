//! What Amanda is, below any deployment: its facts (with their sources), its
//! setting types, and the reader of its own configuration files. What those
//! imply for one deployment lives above `model`, in `flows` and `lint`.

pub mod conf;
pub mod facts;
pub mod settings;
