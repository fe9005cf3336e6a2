//! The `xmpp-edge` binary.

use std::process::ExitCode;

use clap::Parser;
use xmpp_edge::cli::{AdminArgs, Cli, Command};
use xmpp_edge::config::{self, Config};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig { file } => match config::load_file(&file) {
            Ok(config) => {
                print!("{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run => {
            let config = match load(&cli.config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            xmpp_edge::app::init_logging(&config.log);
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            match runtime.block_on(xmpp_edge::app::run(config, cli.config.clone())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sessions { admin, json } => {
            admin_call(&cli.config, &admin, "GET", "/admin/sessions", |body| {
                if json {
                    println!("{body}");
                    return Ok(());
                }
                let rows: Vec<serde_json::Value> =
                    serde_json::from_str(&body).map_err(|e| e.to_string())?;
                print!("{}", xmpp_edge::admin::api::session_table(&rows));
                Ok(())
            })
        }
        Command::Kick { sid, admin } => {
            let path = format!("/admin/sessions/{sid}");
            admin_call(&cli.config, &admin, "DELETE", &path, |_| {
                println!("session {sid} is being ended");
                Ok(())
            })
        }
        Command::Reload { admin } => {
            admin_call(&cli.config, &admin, "POST", "/admin/reload", |body| {
                println!("{body}");
                Ok(())
            })
        }
    }
}

fn load(path: &Option<std::path::PathBuf>) -> Result<Config, ExitCode> {
    match path {
        Some(path) => config::load_file(path).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }),
        None => Ok(Config::default()),
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            None
        }
    }
}

/// Calls the admin API of a running xmpp-edge; `done` handles a 2xx body.
fn admin_call(
    config_path: &Option<std::path::PathBuf>,
    args: &AdminArgs,
    method: &str,
    path: &str,
    done: impl FnOnce(String) -> Result<(), String>,
) -> ExitCode {
    let config = match load(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let base = args.admin.clone().unwrap_or_else(|| {
        let mut addr = config.admin.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    });
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("XMPP_EDGE_ADMIN_TOKEN").ok())
        .or(config.admin.token.clone())
        .or_else(|| {
            let file = config.admin.token_file.as_ref()?;
            std::fs::read_to_string(file)
                .ok()
                .map(|t| t.trim().to_owned())
        });
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(xmpp_edge::admin::client::call(
        &base,
        method,
        path,
        token.as_deref(),
    ));
    match result {
        Ok((status, body)) if (200..300).contains(&status) => match done(body) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: unexpected answer: {e}");
                ExitCode::FAILURE
            }
        },
        Ok((status, body)) => {
            eprintln!("error: HTTP {status}: {}", body.trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
