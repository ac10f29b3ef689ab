//! Logging: `GATEHOUSE_LOG` (env-filter syntax, default `info`), text or
//! JSON lines. Access lines use the target `gatehouse::access`, so they can
//! be filtered apart (`GATEHOUSE_LOG=info,gatehouse::access=off`).
//!
//! Nothing secret is logged: ids and keys live in types whose `Debug` is
//! redacted, tokens are never passed to a log macro.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

pub const LOG_ENV: &str = "GATEHOUSE_LOG";

/// Installs the global subscriber; later calls are no-ops (tests start many
/// gateways in one process).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
