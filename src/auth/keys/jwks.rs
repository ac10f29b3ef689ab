//! Keys published at a `jwks_url`, or kept in a `jwks_file`: fetched (or
//! read) in the background at start, refreshed every `jwks_refresh`
//! (longer when a response's `Cache-Control: max-age` says so), and
//! refetched when a token names an unknown `kid` — at most once per
//! `jwks_min_refetch`, so tokens with forged `kid`s cannot turn the
//! gateway into a load generator against the identity provider. Only
//! those refetches count against the window (SPEC 2): the first token
//! signed with a rotated key triggers a fetch even right after a start-up,
//! reload or scheduled one.
//!
//! A file takes the same path as a URL (SPEC 16: `jwks_refresh` applies to
//! `jwks_file` too): a Kubernetes-mounted JWKS changes on disk, and its
//! schedule, rate limit, keep-the-old-keys-on-failure and metrics are the
//! same. It starts with the keys `check` read, so it never waits for a
//! first load.
//!
//! Shared state, who touches it and why:
//! - `current`: written by the refresh task only, read by every request
//!   (`ArcSwapOption`: a load is a few atomics, no lock). A failed fetch
//!   never clears it: old keys stay until a new set arrives.
//! - `state`: a std mutex around a few fields, held for a handful of
//!   instructions by the task and by requests that ask for a refetch; never
//!   across an await.
//! - the refresh task holds only a `Weak` while it sleeps; it ends when
//!   the `RemoteKeys` is dropped (the config that named it was replaced and
//!   its last request finished), through the `stop` channel.

use super::KeySet;
use crate::clock::Instant;
use crate::config::{JwksLocation, JwksSource};
use crate::metrics::Metrics;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Whole-fetch deadline: connect, TLS, request, body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest JWKS body read; real ones are a few KiB.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// `max-age` above this is capped: keys must be refreshed at least daily.
pub const MAX_AGE_CAP: Duration = Duration::from_secs(24 * 3600);
/// First retry delay after a failed fetch; doubles up to `jwks_min_refetch`.
const FIRST_RETRY: Duration = Duration::from_secs(1);

struct FetchState {
    /// When the last fetch asked for by an unknown `kid` started: the
    /// `jwks_min_refetch` window counts from here.
    last_triggered: Option<Instant>,
    /// When the periodic schedule fetches next.
    next_at: Instant,
    /// Consecutive failures.
    failures: u32,
    last_error: Option<String>,
    /// A request asked for a fetch the task has not started yet.
    pending: bool,
    in_progress: bool,
}

/// The live key set of one `jwks_url` or `jwks_file`.
pub struct RemoteKeys {
    pub source: JwksSource,
    /// Issuer name, for logs and `/readyz`.
    name: String,
    current: ArcSwapOption<KeySet>,
    state: Mutex<FetchState>,
    wake: Arc<Notify>,
    /// Bumped after every fetch attempt; requests waiting for a refetch
    /// watch it.
    done: watch::Sender<u64>,
    stop: watch::Sender<()>,
    started: AtomicBool,
}

impl RemoteKeys {
    /// A holder for `source`. When `previous` loaded the same URL or file,
    /// its keys and schedule are carried over (a reload does not refetch).
    /// A file starts with the keys the config check read: fresher than
    /// `previous`'s, which are kept only when they hold the same material
    /// (so tokens verified with them stay cached).
    pub fn new(name: &str, source: JwksSource, previous: Option<&RemoteKeys>) -> RemoteKeys {
        let now = Instant::now();
        let mut state = FetchState {
            last_triggered: None,
            next_at: now,
            failures: 0,
            last_error: None,
            pending: false,
            in_progress: false,
        };
        let current = ArcSwapOption::empty();
        let previous = previous.filter(|p| p.source.same_location(&source));
        if let Some(prev) = previous {
            current.store(prev.current.load_full());
            let st = prev.lock();
            state.last_triggered = st.last_triggered;
            state.next_at = st.next_at;
            state.failures = st.failures;
            state.last_error = st.last_error.clone();
        }
        if let JwksLocation::File { read, .. } = &source.location {
            let same = current
                .load()
                .as_ref()
                .is_some_and(|c| c.same_material(read));
            if !same {
                current.store(Some(read.clone()));
            }
            if previous.is_none() {
                state.next_at = now + source.refresh;
            }
        }
        RemoteKeys {
            source,
            name: name.to_string(),
            current,
            state: Mutex::new(state),
            wake: Arc::new(Notify::new()),
            done: watch::channel(0).0,
            stop: watch::channel(()).0,
            started: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The keys, once a fetch has succeeded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Generation of the current set (0: none yet). Cheap: no refcount.
    pub fn generation(&self) -> u64 {
        self.current.load().as_ref().map_or(0, |s| s.generation())
    }

    /// Why this issuer cannot verify tokens yet, if it cannot.
    pub fn not_ready(&self) -> Option<String> {
        if self.current.load().is_some() {
            return None;
        }
        let st = self.lock();
        Some(match &st.last_error {
            Some(e) => format!(
                "jwt issuer `{}`: no signing keys yet from {} (last error: {e})",
                self.name,
                self.source.describe()
            ),
            None => format!(
                "jwt issuer `{}`: signing keys from {} not fetched yet",
                self.name,
                self.source.describe()
            ),
        })
    }

    /// Starts the background refresh (once; later calls do nothing).
    pub fn start(self: &Arc<Self>, metrics: Arc<Metrics>) {
        if self.started.swap(true, Relaxed) {
            return;
        }
        let weak = Arc::downgrade(self);
        let stop = self.stop.subscribe();
        let wake = self.wake.clone();
        tokio::spawn(refresh_loop(weak, wake, stop, metrics));
    }

    /// Asks for a fetch because a token named a `kid` the current set
    /// lacks (or no set has arrived), and waits for it. Returns `true` when
    /// a fetch finished meanwhile, so the lookup is worth repeating; `false`
    /// when the last refetch of this kind began less than
    /// `jwks_min_refetch` ago. A fetch already running (a scheduled one)
    /// is waited for instead.
    pub async fn refetch(&self) -> bool {
        let mut done = self.done.subscribe();
        {
            let mut st = self.lock();
            if !(st.pending || st.in_progress) {
                let due = st
                    .last_triggered
                    .is_none_or(|t| t.elapsed() >= self.source.min_refetch);
                if !due {
                    return false;
                }
                st.pending = true;
                self.wake.notify_one();
            }
        }
        let waited = tokio::time::timeout(FETCH_TIMEOUT + Duration::from_secs(1), done.changed());
        matches!(waited.await, Ok(Ok(())))
    }

    /// Like [`RemoteKeys::refetch`], but when the last refetch began less
    /// than `jwks_min_refetch` ago, waits for that window to pass instead
    /// of giving up. Only for tokens the gateway fetched from the issuer
    /// itself (OpenID Connect ID tokens from the token endpoint): a client
    /// cannot use those to drive fetches, and a key rotation must not fail
    /// the logins that arrive just after the last fetch.
    pub async fn refetch_after_window(&self) -> bool {
        let wait = {
            let st = self.lock();
            st.last_triggered.map_or(Duration::ZERO, |t| {
                self.source.min_refetch.saturating_sub(t.elapsed())
            })
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        self.refetch().await
    }

    /// How long the task sleeps before the next scheduled fetch.
    fn until_next(&self) -> Duration {
        self.lock()
            .next_at
            .saturating_duration_since(Instant::now())
    }

    /// One fetch, start to end; updates the keys, the schedule and the
    /// metrics.
    async fn fetch_now(&self, metrics: &Metrics) {
        {
            let mut st = self.lock();
            let now = Instant::now();
            if st.pending {
                st.last_triggered = Some(now);
            }
            st.pending = false;
            st.in_progress = true;
        }
        let result = match tokio::time::timeout(FETCH_TIMEOUT, load(&self.source)).await {
            Ok(r) => r,
            Err(_) => Err(RefreshError::Timeout),
        };
        let result = result.and_then(|(body, max_age)| {
            KeySet::from_jwks(&body)
                .map(|(set, skipped)| (set, skipped, max_age))
                .map_err(RefreshError::from)
        });
        let now = Instant::now();
        match result {
            Ok((set, skipped, max_age)) => {
                metrics.jwks_fetches_ok.fetch_add(1, Relaxed);
                let unchanged = self
                    .current
                    .load()
                    .as_ref()
                    .is_some_and(|c| c.same_material(&set));
                if !unchanged {
                    let kids: Vec<&str> = set
                        .keys()
                        .iter()
                        .map(|k| k.kid.as_deref().unwrap_or("-"))
                        .collect();
                    match &self.source.location {
                        JwksLocation::Url { url, .. } => {
                            tracing::info!(issuer = %self.name, url = %url.text, kids = ?kids, "JWKS loaded")
                        }
                        JwksLocation::File { path, .. } => {
                            tracing::info!(issuer = %self.name, file = %path.display(), kids = ?kids, "JWKS loaded")
                        }
                    }
                    for s in &skipped {
                        tracing::warn!(issuer = %self.name, "JWKS {s}");
                    }
                    self.current.store(Some(Arc::new(set)));
                }
                // `max-age` may stretch the period, never shorten it.
                let period = max_age
                    .map_or(self.source.refresh, |m| m.min(MAX_AGE_CAP))
                    .max(self.source.refresh);
                let mut st = self.lock();
                st.failures = 0;
                st.last_error = None;
                st.next_at = now + period;
                st.in_progress = false;
            }
            Err(e) => {
                metrics.jwks_fetches_failed.fetch_add(1, Relaxed);
                match &self.source.location {
                    JwksLocation::Url { url, .. } => {
                        tracing::warn!(issuer = %self.name, url = %url.text, error = %e, "JWKS fetch failed; keeping the current keys")
                    }
                    JwksLocation::File { path, .. } => {
                        tracing::warn!(issuer = %self.name, file = %path.display(), error = %e, "JWKS fetch failed; keeping the current keys")
                    }
                }
                let mut st = self.lock();
                st.failures = st.failures.saturating_add(1);
                let backoff = FIRST_RETRY
                    .saturating_mul(1 << st.failures.min(16).saturating_sub(1))
                    .min(self.source.min_refetch.max(FIRST_RETRY));
                st.last_error = Some(e.to_string());
                st.next_at = now + backoff;
                st.in_progress = false;
            }
        }
        self.done.send_modify(|n| *n += 1);
    }
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("name", &self.name)
            .field("from", &self.source.describe())
            .field("generation", &self.generation())
            .finish()
    }
}

async fn refresh_loop(
    keys: Weak<RemoteKeys>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<()>,
    metrics: Arc<Metrics>,
) {
    loop {
        let Some(wait) = keys.upgrade().map(|k| k.until_next()) else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
            // Only ever an error: the sender went away with its RemoteKeys.
            _ = stop.changed() => return,
        }
        let Some(k) = keys.upgrade() else { return };
        k.fetch_now(&metrics).await;
    }
}

/// `Cache-Control: max-age=N` (RFC 9111 section 5.2.2.1), unless the
/// response also says `no-store` or `no-cache`.
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut age = None;
    for v in headers.get_all(http::header::CACHE_CONTROL) {
        for d in v.to_str().ok()?.split(',') {
            let d = d.trim();
            if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
                return None;
            }
            if let Some((k, n)) = d.split_once('=') {
                if k.trim().eq_ignore_ascii_case("max-age") {
                    age = n
                        .trim()
                        .trim_matches('"')
                        .parse()
                        .ok()
                        .map(Duration::from_secs);
                }
            }
        }
    }
    age
}

/// Why a key set could not be refreshed; kept (as text) as the issuer's
/// last error.
#[derive(Debug, thiserror::Error)]
enum RefreshError {
    #[error("timed out after {}s", FETCH_TIMEOUT.as_secs())]
    Timeout,
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("key set too large")]
    TooLarge,
    #[error(transparent)]
    File(#[from] crate::config::read::FileError),
    #[error("reading the file failed: {0}")]
    Task(tokio::task::JoinError),
    #[error(transparent)]
    Keys(#[from] super::KeyError),
}

/// The JWKS text and, from a URL, how long it may be cached.
async fn load(src: &JwksSource) -> Result<(Bytes, Option<Duration>), RefreshError> {
    match &src.location {
        JwksLocation::Url { url, tls } => fetch(url, tls).await,
        JwksLocation::File { path, .. } => {
            // Through the config's bounded reader: a regular file of at
            // most MAX_JWKS_BYTES, whatever the mount turns into.
            let path = path.clone();
            let read = tokio::task::spawn_blocking(move || {
                crate::config::read::read_limited(&path, MAX_JWKS_BYTES as u64)
            })
            .await
            .map_err(RefreshError::Task)?;
            Ok((Bytes::from(read?), None))
        }
    }
}

/// GET the JWKS (see [`crate::fetch`]); the body is capped at
/// [`MAX_JWKS_BYTES`].
async fn fetch(
    url: &crate::config::JwksUrl,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(Bytes, Option<Duration>), RefreshError> {
    let out = crate::fetch::Outgoing::get(url).header(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/jwk-set+json, application/json"),
    );
    let reply = crate::fetch::send(tls, out).await?;
    if reply.status != 200 {
        return Err(RefreshError::Status(reply.status));
    }
    if reply.body.len() > MAX_JWKS_BYTES {
        return Err(RefreshError::TooLarge);
    }
    Ok((reply.body, max_age(&reply.headers)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_unless_caching_is_forbidden() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(http::header::CACHE_CONTROL, v.parse().unwrap());
            max_age(&m)
        };
        assert_eq!(h("public, max-age=3600"), Some(Duration::from_secs(3600)));
        assert_eq!(h("Max-Age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(h("max-age=3600, no-cache"), None);
        assert_eq!(h("no-store"), None);
        assert_eq!(h("max-age=soon"), None);
        assert_eq!(max_age(&http::HeaderMap::new()), None);
    }
}
