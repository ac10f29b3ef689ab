//! Logging: `GATEHOUSE_LOG` (env-filter syntax, default `info`), text or
//! JSON lines. Access lines use the target `gatehouse::access`, so they can
//! be filtered apart (`GATEHOUSE_LOG=info,gatehouse::access=off`).
//!
//! Every line logged while serving a request carries the `request` span:
//! its id, and its route and backend once known (text: `request{...}:`,
//! JSON: the `span` object). That span is made only when such a line is
//! written. The request's fields live in a task-local [`RequestLog`] that
//! the pipeline fills in (one cell write per field), and [`RequestSpans`]
//! turns them into a real span around an event that is logged. A span
//! made for every request instead, with its fields formatted on creation
//! and on each record, its registry slot and its enter/exit on every poll,
//! was about a sixth of the user-space instructions of a proxied request
//! (`bench/instructions.sh`), and almost no request logs anything.
//!
//! Nothing secret is logged: ids and keys live in types whose `Debug` is
//! redacted, tokens are never passed to a log macro.

use crate::config::LogFormat;
use crate::gateway::Snapshot;
use crate::upstream::Backend;
use http::HeaderValue;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use tracing::field::{Empty, Value};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
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
    match format {
        LogFormat::Text => install(builder.with_target(false).finish()),
        // A request's line carries its span (`request_id`, `route`,
        // `backend`) as the `span` object.
        LogFormat::Json => install(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

fn install<S: Subscriber + Send + Sync + 'static>(inner: S) {
    if tracing::subscriber::set_global_default(RequestSpans { inner }).is_err() {
        return;
    }
    // The `request` span's callsite, registered with the subscriber now
    // installed. Taken here, outside any dispatch: a span macro evaluated
    // inside `RequestSpans::event` would reach no subscriber.
    let span = tracing::info_span!(
        "request",
        request_id = Empty,
        route = Empty,
        backend = Empty
    );
    if let Some(meta) = span.metadata() {
        let _ = REQUEST_SPAN.set(meta);
    }
}

static REQUEST_SPAN: OnceLock<&'static Metadata<'static>> = OnceLock::new();

tokio::task_local! {
    static REQUEST: RequestLog;
}

/// What a request's log lines carry, filled in as the pipeline learns it.
/// Owned by the request's future ([`RequestLog::scope`]); written only by
/// the pipeline ([`set_route`], [`set_backend`]), read only when a line is
/// logged.
pub struct RequestLog {
    request_id: HeaderValue,
    snap: Arc<Snapshot>,
    route: Cell<RouteName>,
    backend: RefCell<Option<Arc<Backend>>>,
}

/// The route a request's lines name: none yet, the gateway's own
/// endpoints, or a configured route by index into the snapshot's routes.
#[derive(Clone, Copy)]
pub enum RouteName {
    Unknown,
    Own,
    Config(usize),
}

impl RequestLog {
    pub fn new(request_id: HeaderValue, snap: Arc<Snapshot>) -> Self {
        RequestLog {
            request_id,
            snap,
            route: Cell::new(RouteName::Unknown),
            backend: RefCell::new(None),
        }
    }

    /// Runs `fut` with this request's fields behind every line it logs.
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        REQUEST.scope(self, fut)
    }
}

/// The current request's route, for its log lines. Outside a request: nothing.
pub fn set_route(route: RouteName) {
    let _ = REQUEST.try_with(|r| r.route.set(route));
}

/// The current request's backend, for its log lines.
pub fn set_backend(backend: &Arc<Backend>) {
    let _ = REQUEST.try_with(|r| *r.backend.borrow_mut() = Some(backend.clone()));
}

/// The global subscriber: `inner` (filter, formatter) with the `request`
/// span made around each event logged inside a [`RequestLog::scope`].
/// Everything else is passed through unchanged.
struct RequestSpans<S> {
    inner: S,
}

impl<S: Subscriber> RequestSpans<S> {
    /// Creates and enters the `request` span for `event` when it is logged
    /// inside a request and that span is enabled (the filter decides, as
    /// for any span); `None` otherwise.
    fn enter_request(&self, event: &Event<'_>) -> Option<Id> {
        if !event.is_contextual() {
            return None;
        }
        let meta = *REQUEST_SPAN.get()?;
        if !self.inner.enabled(meta) {
            return None;
        }
        REQUEST
            .try_with(|r| {
                let fields = meta.fields();
                let (f_id, f_route, f_backend) = (
                    fields.field("request_id")?,
                    fields.field("route")?,
                    fields.field("backend")?,
                );
                let request_id = r.request_id.to_str().unwrap_or("");
                let route = match r.route.get() {
                    RouteName::Unknown => None,
                    RouteName::Own => Some(crate::proxy::OWN_ENDPOINT_ROUTE),
                    RouteName::Config(i) => r.snap.config.routes.get(i).map(|r| r.name.as_str()),
                };
                let backend = r.backend.borrow();
                let backend = backend.as_ref().map(|b| b.addr.as_str());
                let values = [
                    (&f_id, Some(&request_id as &dyn Value)),
                    (&f_route, route.as_ref().map(|v| v as &dyn Value)),
                    (&f_backend, backend.as_ref().map(|v| v as &dyn Value)),
                ];
                let id = self
                    .inner
                    .new_span(&Attributes::new(meta, &fields.value_set(&values)));
                self.inner.enter(&id);
                Some(id)
            })
            .ok()
            .flatten()
    }
}

impl<S: Subscriber> Subscriber for RequestSpans<S> {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber)
    }
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(meta)
    }
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        self.inner.enabled(meta)
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.inner.max_level_hint()
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner.new_span(span)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values)
    }
    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows)
    }
    fn event_enabled(&self, event: &Event<'_>) -> bool {
        self.inner.event_enabled(event)
    }
    fn event(&self, event: &Event<'_>) {
        match self.enter_request(event) {
            Some(id) => {
                self.inner.event(event);
                self.inner.exit(&id);
                self.inner.try_close(id);
            }
            None => self.inner.event(event),
        }
    }
    fn enter(&self, span: &Id) {
        self.inner.enter(span)
    }
    fn exit(&self, span: &Id) {
        self.inner.exit(span)
    }
    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }
    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }
    fn current_span(&self) -> tracing_core::span::Current {
        self.inner.current_span()
    }
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
