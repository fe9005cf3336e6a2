//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// XMPP connection manager: BOSH and WebSocket in front of an XMPP server.
#[derive(Debug, Parser)]
#[command(name = "xmpp-edge", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Without it, built-in defaults are used:
    /// listen on 0.0.0.0:5280 and serve `localhost` from 127.0.0.1:5222.
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the connection manager (the default).
    Run,
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}
