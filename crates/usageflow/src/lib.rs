//! The `usageflow` command: configuration loading and the subcommands.
//!
//! The binary in `main.rs` only parses the command line and calls [`cli::run`].

pub mod cli;
pub mod config;
pub mod files;
pub mod run;
pub mod serve;
pub mod sql;

pub use config::{Config, ConfigError, LogConfig, LogFormat};
