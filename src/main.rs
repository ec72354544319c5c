//! The `statekeeper` binary: parses the command line, loads settings, starts logging, runs.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use statekeeper::{Server, config::Settings, http::openapi, shutdown_signal, telemetry};

/// Short-lived state over HTTP, on Redis with an in-memory fallback.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A settings file layered over config/default.toml (also: STATEKEEPER_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Print the OpenAPI document as YAML (this is how openapi.yaml is made).
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        print!("{}", openapi::yaml());
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("statekeeper: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if settings.server.worker_threads > 0 {
        builder.worker_threads(settings.server.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("statekeeper: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match Server::bind(settings).await {
            Ok(server) => {
                server.run(shutdown_signal()).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("statekeeper: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
