//! The `switchboard-cli` binary: parse the command line, run it (`lib.rs`).

use std::process::ExitCode;

use clap::Parser;
use switchboard_cli::{Cli, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("switchboard-cli: {err}");
            ExitCode::FAILURE
        }
    }
}
