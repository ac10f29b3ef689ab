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
        // A request's line carries its span (`request_id`, `route`,
        // `backend`) as the `span` object.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// An error and its sources as one line of text, `outer: inner: root`,
/// for log fields (`error = %telemetry::chain(&e)`): operators read the
/// cause, not Rust's Debug form of it.
pub fn chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> Chain<'a> {
    Chain(e)
}

pub struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_chain_reads_as_one_line_of_text() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
        let e = crate::error::GatewayError::BackendConnect(io);
        assert_eq!(
            super::chain(&e).to_string(),
            "backend connection failed: connect timed out"
        );
    }
}
