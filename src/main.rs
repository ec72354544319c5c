//! The `statekeeper` binary: parses the command line, loads settings, starts logging, runs.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use statekeeper::{
    Server, config::Settings, http::openapi, shutdown_signal, telemetry, transfer::cli,
};

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
    /// Write a backup of Redis's items (cache, sessions, agent states, pending actions, lock
    /// fencing marks, unfinished jobs) to stdout as NDJSON, for every tenant the settings
    /// name, or one.
    Backup {
        /// Only this tenant's items.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this capability's items (repeatable): cache, sessions, agent_states,
        /// pending_actions, locks, queues, usage, budgets.
        #[arg(long)]
        capability: Vec<String>,
    },
    /// Restore a backup read from stdin into Redis; prints what it did as JSON.
    Restore {
        /// merge (a later write held by Redis wins), replace, or skip-existing.
        #[arg(long, default_value = "merge")]
        mode: String,
        /// Check the file and count its items; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove the index entries of expired agent states and sessions in Redis, for every
    /// tenant the settings name, or one; prints what it removed.
    Cleanup {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Ask the service running on this machine whether it is ready (`GET /health/ready` on
    /// its port): exit 0 if it answers 200, 1 otherwise. The container image's healthcheck,
    /// which has no shell or curl to do it.
    Healthcheck,
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
    if let Some(Command::Healthcheck) = cli.command {
        return healthcheck(&settings);
    }
    let to_stderr = matches!(
        cli.command,
        Some(Command::Backup { .. } | Command::Restore { .. })
    );
    telemetry::init(&settings.log, to_stderr);
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
    let command = cli.command.unwrap_or(Command::Serve);
    runtime.block_on(async {
        let done = match command {
            Command::Backup { tenant, capability } => {
                let mut out = std::io::stdout().lock();
                cli::backup(&settings, tenant.as_deref(), &capability, &mut out)
                    .await
                    .map(|count| eprintln!("statekeeper backup: {count} items written"))
            }
            Command::Restore { mode, dry_run } => {
                let (mut input, mut out) = (std::io::stdin().lock(), std::io::stdout().lock());
                cli::restore(&settings, &mode, dry_run, &mut input, &mut out)
                    .await
                    .map(|_| ())
            }
            Command::Cleanup { tenant } => {
                let mut out = std::io::stdout().lock();
                cli::cleanup(&settings, tenant.as_deref(), &mut out).await
            }
            Command::Serve | Command::Openapi | Command::Healthcheck => {
                return serve(settings).await;
            }
        };
        match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(failed) => {
                eprintln!("statekeeper: {}", failed.message);
                ExitCode::from(failed.code)
            }
        }
    })
}

async fn serve(settings: Settings) -> ExitCode {
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
}

/// `GET /health/ready` on the service's own port (on loopback when it listens on every
/// address), within two seconds.
fn healthcheck(settings: &Settings) -> ExitCode {
    use std::io::{Read, Write};
    let host = match settings.server.host.as_str() {
        "0.0.0.0" | "::" | "" => "127.0.0.1",
        host => host,
    };
    let within = std::time::Duration::from_secs(2);
    let ready = (|| -> std::io::Result<bool> {
        let address = std::net::ToSocketAddrs::to_socket_addrs(&(host, settings.server.port))?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut stream = std::net::TcpStream::connect_timeout(&address, within)?;
        stream.set_read_timeout(Some(within))?;
        stream.write_all(b"GET /health/ready HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200")
    })();
    match ready {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("statekeeper healthcheck: not ready");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("statekeeper healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}
