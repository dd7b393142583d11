//! The binary's side: flags and their help, kage.toml, the selection
//! policy, the demo and replay. No library layer imports from here.

pub mod cli;
pub mod config_file;
pub mod demo;
pub mod policy;
pub mod replay;
