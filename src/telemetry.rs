//! Logging: `tracing` events as pretty text or JSON lines, filtered by `RUST_LOG` when set,
//! else by `log.level`.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber; call once, early in `main`. Logs go to stdout, or to
/// stderr for the commands whose stdout is their output (`backup`, `restore`).
pub fn init(settings: &LogSettings, to_stderr: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let layer = fmt::layer().with_writer(move || -> Box<dyn std::io::Write> {
        if to_stderr {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        }
    });
    match settings.format {
        LogFormat::Json => registry.with(layer.json()).init(),
        LogFormat::Pretty => registry.with(layer).init(),
    }
}
