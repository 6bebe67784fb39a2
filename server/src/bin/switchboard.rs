//! The `switchboard` binary: parse flags, set up logging, serve until SIGINT
//! or SIGTERM; or print the configuration (`--print-config`) or a token
//! (`switchboard token`).

use clap::Parser;
use switchboard_server::cli::{Cli, Command, LogFormat};
use switchboard_server::policy::mint::{TokenRequest, mint};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match serve(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("switchboard: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let filter = EnvFilter::try_new(&cli.log)?;
    match cli.log_format {
        // Logs on stderr, as docs/CONFIGURATION.md says: stdout is for what a command
        // prints (`--print-config`).
        LogFormat::Text => {
            tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).init()
        }
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init(),
    }
    let config = cli.config()?;
    if cli.print_config {
        print!("{}", switchboard_server::env::masked_toml(&config));
        return Ok(());
    }
    if let Some(Command::Token(args)) = &cli.command {
        let request =
            TokenRequest { user: args.user.clone(), ttl: args.ttl, rooms: args.rooms.clone() };
        println!("{}", mint(&config.auth, &request, std::time::SystemTime::now())?);
        return Ok(());
    }
    if !config.bind.ip().is_loopback() && config.api.key.is_none() {
        return Err(format!(
            "refusing to serve the admin API on {} without an API key: set api.key \
             (SWITCHBOARD_API_KEY / --api-key) or bind to a loopback address",
            config.bind
        )
        .into());
    }
    let listener = switchboard_server::bind(config.bind, config.backlog)
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    switchboard_server::run(listener, config, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
