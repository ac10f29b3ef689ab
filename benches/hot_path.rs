//! Micro-benchmarks of the per-request steps (route match, path
//! normalisation, token check, session lookup, sticky choice, header
//! rewrite):
//!
//!     cargo bench --bench hot_path                 # all
//!     cargo bench --bench hot_path -- jwt          # one group
//!
//! They locate a regression in one step; what a request costs end to end
//! is measured against nginx and HAProxy by `bench/run.sh`. CI builds them
//! (`cargo bench --no-run`) and never times them.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, KeyPair};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use gatehouse::auth::jwt::{Issuers, TokenCache, Verifier};
use gatehouse::clock::unix_now;
use gatehouse::config::{self, Config, TokenSource};
use gatehouse::crypto::Mac;
use gatehouse::metrics::Metrics;
use gatehouse::proxy::headers;
use gatehouse::revocation::Revocations;
use gatehouse::route;
use gatehouse::session::{Record, SessionId, SessionKey};
use gatehouse::state::{memory::sessions::MemoryStore, SessionStore};
use gatehouse::upstream::{hash, select, sticky};
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::future::Future;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Runs a future that never waits (the memory store, a cached token) to
/// its end without a runtime, so the figure is the step's alone.
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the benchmarked step waited"),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A config from TOML text, with files (keys) in `dir`.
fn load(dir: &Path, toml: &str) -> Config {
    config::load_str(toml, &dir.join("gatehouse.toml")).expect("benchmark config loads")
}

fn route_match(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut toml = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[upstreams]]\nname = \"app\"\nbackends = [\"127.0.0.1:9\"]\n",
    );
    // 100 routes: 50 by host, 50 by path prefix, the catch-all last.
    for i in 0..99 {
        let (host, prefix) = if i % 2 == 0 {
            (format!("host = \"app{i}.example.com\"\n"), "/".to_string())
        } else {
            (String::new(), format!("/service-{i}/api/"))
        };
        toml.push_str(&format!(
            "[[routes]]\nname = \"r{i}\"\n{host}path_prefix = \"{prefix}\"\nupstream = \"app\"\n"
        ));
    }
    toml.push_str("[[routes]]\nname = \"rest\"\npath_prefix = \"/\"\nupstream = \"app\"\n");
    let cfg = load(dir.path(), &toml);
    assert_eq!(cfg.routes.len(), 100);
    let mut g = c.benchmark_group("route");
    g.bench_function("match of 100, last prefix route", |b| {
        b.iter(|| {
            route::lookup(
                &cfg.routes,
                black_box("gw.example.com"),
                black_box("/service-97/api/items/7"),
            )
        })
    });
    g.bench_function("match of 100, catch-all", |b| {
        b.iter(|| {
            route::lookup(
                &cfg.routes,
                black_box("gw.example.com"),
                black_box("/index.html"),
            )
        })
    });
    g.bench_function("normalise clean path", |b| {
        b.iter(|| route::normalize_path(black_box("/service-97/api/items/7")).map(|p| p.len()))
    });
    g.bench_function("normalise messy path", |b| {
        b.iter(|| {
            route::normalize_path(black_box("/service-97//api/./items/../items/%7e7"))
                .map(|p| p.len())
        })
    });
    g.finish();
}

struct JwtKey {
    alg: Algorithm,
    name: &'static str,
    encoding: EncodingKey,
    public_pem: String,
}

fn jwt_keys() -> Vec<JwtKey> {
    let ec = signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
        .expect("P-256 key");
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
    let rsa_pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).expect("RSA DER");
    vec![
        JwtKey {
            alg: Algorithm::ES256,
            name: "es256",
            encoding: EncodingKey::from_ec_der(ec.to_pkcs8v1().expect("EC DER").as_ref()),
            public_pem: pem(
                "PUBLIC KEY",
                ec.public_key().as_der().expect("DER").as_ref(),
            ),
        },
        JwtKey {
            alg: Algorithm::RS256,
            name: "rs256",
            encoding: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", rsa_pkcs8.as_ref()).as_bytes())
                .expect("RSA PEM"),
            public_pem: pem(
                "PUBLIC KEY",
                rsa.public_key().as_der().expect("DER").as_ref(),
            ),
        },
    ]
}

fn jwt(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = jwt_keys();
    let mut toml = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[upstreams]]\nname = \"app\"\nbackends = [\"127.0.0.1:9\"]\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"app\"\n\
         auth = \"required\"\nmethods = [\"jwt\"]\n",
    );
    for k in &keys {
        let file: PathBuf = dir.path().join(format!("{}.pem", k.name));
        std::fs::write(&file, &k.public_pem).expect("write key");
        toml.push_str(&format!(
            "[[jwt]]\nname = \"{n}\"\nissuer = \"https://{n}.example.com\"\n\
             audiences = [\"api\"]\nalgorithms = [\"{a:?}\"]\npublic_key_file = \"{f}\"\n",
            n = k.name,
            a = k.alg,
            f = file.display(),
        ));
    }
    let cfg = load(dir.path(), &toml);
    let issuers = Issuers::build(&cfg.jwt, None, &Default::default());
    let revocations = Revocations::default();
    let metrics = Metrics::default();
    let mut g = c.benchmark_group("jwt");
    for k in &keys {
        let now = unix_now();
        let claims = serde_json::json!({
            "iss": format!("https://{}.example.com", k.name),
            "aud": "api", "sub": "alice", "email": "alice@example.com",
            "groups": ["staff", "ops"], "iat": now, "exp": now + 3600,
        });
        let token = jsonwebtoken::encode(&Header::new(k.alg), &claims, &k.encoding).expect("sign");
        let warm = TokenCache::default();
        let verifier = Verifier {
            issuers: &issuers,
            cache: &warm,
            revocations: &revocations,
            metrics: &metrics,
        };
        ready(verifier.verify(&TokenSource::Bearer, &token, now)).expect("token verifies");
        g.bench_function(format!("{} cache hit", k.name), |b| {
            b.iter(|| ready(verifier.verify(&TokenSource::Bearer, black_box(&token), now)))
        });
        g.bench_function(format!("{} full verify", k.name), |b| {
            b.iter_batched(
                || TokenCache::with_capacity(4),
                |cold| {
                    let v = Verifier {
                        cache: &cold,
                        ..verifier
                    };
                    ready(v.verify(&TokenSource::Bearer, black_box(&token), now)).map(|_| ())
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn sessions(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _enter = rt.enter();
    let store = MemoryStore::start(&Default::default(), Arc::new(Metrics::default()));
    let keys: Vec<SessionKey> = (0..100_000)
        .map(|i| {
            let key = SessionId::generate().key();
            let record = Record {
                user: format!("user-{i:06}"),
                email: Some(format!("user-{i:06}@example.com")),
                groups: vec!["staff".into(), "engineering".into()],
                name: None,
                created_ms: gatehouse::clock::now_ms(),
                client_ip: "203.0.113.45".into(),
                user_agent: "Mozilla/5.0 (X11; Linux x86_64)".into(),
                login: "password".into(),
                backends: Default::default(),
                extra: Vec::new(),
                id_token: None,
                sid: None,
            };
            ready(store.create(key, record, Duration::from_secs(1800))).expect("create");
            key
        })
        .collect();
    // The view a request gets is built on a session's first request.
    ready(store.get(keys[42])).expect("get");
    let mut g = c.benchmark_group("session");
    g.bench_function("memory lookup of 100k", |b| {
        b.iter(|| ready(store.get(black_box(keys[42]))).map(|v| v.is_some()))
    });
    g.bench_function("cookie value to key", |b| {
        let value = SessionId::generate();
        let text = value.as_str().to_string();
        b.iter(|| SessionId::parse(black_box(&text)).map(|id| id.key()))
    });
    g.finish();
}

fn stickiness(c: &mut Criterion) {
    let mac = Mac::derive(b"a root secret of thirty-two bytes", "affinity");
    let addrs = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"];
    let tag = sticky::backend_tag(&mac, "app", addrs[1]);
    let cookie = sticky::Token::new(tag).encode(&mac, "app");
    let members: Vec<(u64, u32)> = addrs
        .iter()
        .map(|a| (hash::stable_hash(a.as_bytes()), 1))
        .collect();
    let schedule: Vec<u16> = vec![0, 1, 2];
    let mut g = c.benchmark_group("sticky");
    g.bench_function("affinity cookie check", |b| {
        b.iter(|| sticky::Token::decode(black_box(&cookie), &mac, "app"))
    });
    g.bench_function("rendezvous hash of 3", |b| {
        b.iter(|| hash::top(black_box(0x5eed_cafe), &members))
    });
    g.bench_function("round robin first choice", |b| {
        let mut cursor = 0usize;
        b.iter(|| {
            cursor += 1;
            select::order(
                3,
                select::Policy::RoundRobin {
                    schedule: &schedule,
                    cursor,
                },
            )
            .next()
        })
    });
    g.finish();
}

fn header_rewrite(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = load(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[upstreams]]\nname = \"app\"\nbackends = [\"127.0.0.1:9\"]\n\
         [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n",
    );
    let mut browser = HeaderMap::new();
    for (n, v) in [
        ("host", "app.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        (
            "cookie",
            "gatehouse_session=Zm9vYmFyYmF6cXV4cXV1eA; theme=dark",
        ),
        ("connection", "keep-alive"),
        ("x-auth-user", "mallory"),
        ("x-forwarded-for", "198.51.100.9"),
    ] {
        browser.append(n, HeaderValue::from_static(v));
    }
    let peer = headers::peer_value("192.0.2.7".parse::<IpAddr>().expect("address"));
    let host = HeaderValue::from_static("app.example.com");
    c.bench_function("headers/rewrite browser request", |b| {
        b.iter_batched(
            || browser.clone(),
            |mut h| {
                headers::strip_identity(&mut h, &cfg.identity);
                headers::remove_hop_by_hop(&mut h, false);
                headers::strip_lookalikes(&mut h);
                headers::set_forwarded(&mut h, &peer, false, true, Some(&host));
                h
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(
    benches,
    route_match,
    jwt,
    sessions,
    stickiness,
    header_rewrite
);
criterion_main!(benches);
