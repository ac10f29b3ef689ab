//! Measures the memory one in-memory session costs:
//!
//!     cargo run --release --example session_memory [COUNT]
//!
//! Creates COUNT sessions (default 200000) with realistic records in the
//! memory store and reports the growth of the process's resident memory,
//! and the process's whole resident memory (what `bench/run.sh` checks).

use gatehouse::clock::now_ms;
use gatehouse::config::sessions::Sessions;
use gatehouse::metrics::Metrics;
use gatehouse::session::{Record, SessionId};
use gatehouse::state::{memory::sessions::MemoryStore, SessionStore};
use std::sync::Arc;
use std::time::Duration;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let store = MemoryStore::start(&Sessions::default(), Arc::new(Metrics::default()));
    let before = rss_bytes();
    for i in 0..count {
        let record = Record {
            user: format!("user-{i:06}"),
            email: Some(format!("user-{i:06}@example.com")),
            groups: vec!["staff".into(), "engineering".into()],
            name: None,
            created_ms: now_ms(),
            client_ip: "203.0.113.45".into(),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
                .into(),
            login: "password".into(),
            backends: Default::default(),
            extra: Vec::new(),
            id_token: None,
            sid: None,
        };
        store
            .create(
                SessionId::generate().key(),
                record,
                Duration::from_secs(1800),
            )
            .await
            .unwrap();
    }
    let after = rss_bytes();
    println!(
        "{count} sessions: resident memory grew {:.1} MiB, {} bytes per session",
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) / count as u64
    );
    println!(
        "{count} sessions: total resident memory {} KiB",
        after / 1024
    );
}
