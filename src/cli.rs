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
    /// List the live sessions of a running xmpp-edge (admin API).
    Sessions {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End a session of a running xmpp-edge (admin API).
    Kick {
        /// The session id, as `sessions` lists it.
        sid: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make a running xmpp-edge re-read its configuration file (admin API;
    /// SIGHUP does the same).
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the admin API is.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Admin API base URL; default: `admin.listen` of --config, else
    /// http://127.0.0.1:9281.
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// Bearer token; default: $XMPP_EDGE_ADMIN_TOKEN, else the token of --config.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}
