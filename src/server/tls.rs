//! TLS settings: certificates from PEM files, SNI selection, ALPN, minimum
//! version, optional client certificates; and the client side for HTTPS to
//! backends and key fetches. One provider (aws-lc-rs) for all of it.
//!
//! Certificate rotation: [`watch_files`] checks the files the running
//! `[server.tls]` was built from every `reload_interval` and, when their
//! contents changed, runs the ordinary validated reload. Content is
//! compared, not modification times: a Kubernetes Secret update swaps a
//! symlink and `cp -p` keeps old times, and the files are a few KiB.

use crate::config::file::TlsFile;
use crate::config::read;
use crate::config::units::parse_duration;
use crate::config::{ClientIdentity, Tls, DEFAULT_TLS_RELOAD_INTERVAL, MIN_TLS_RELOAD_INTERVAL};
use crate::gateway::Gateway;
use ::aws_lc_rs::digest;
use rustls::crypto::aws_lc_rs;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why a certificate, key or CA file could not be used. Each names its
/// file; none carries key material.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsFileError {
    #[error(transparent)]
    Read(#[from] read::FileError),
    #[error("{}: not a PEM certificate chain: {source}", .path.display())]
    NotPem {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{}: no certificate found", .path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no usable private key (PKCS#8, SEC1 or PKCS#1 PEM): {source}", .path.display())]
    NoKey {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{}: unsupported key: {source}", .path.display())]
    UnsupportedKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("{} does not match the certificate in {}", .key.display(), .cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{}: {source}", .path.display())]
    BadCa {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The crypto provider offers no safe protocol version (a build fault).
    #[error("{0}")]
    Protocols(rustls::Error),
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// The files a TLS setup is read from, with a running SHA-256 over their
/// names and contents as read, so the loaded state has an exact fingerprint.
struct FileSet {
    paths: Vec<PathBuf>,
    digest: digest::Context,
}

impl FileSet {
    fn new() -> Self {
        FileSet {
            paths: Vec::new(),
            digest: digest::Context::new(&digest::SHA256),
        }
    }

    /// Reads `path`, at most `limit` bytes (SPEC 16).
    fn read(&mut self, path: &Path, limit: u64) -> Result<Vec<u8>, TlsFileError> {
        self.paths.push(path.to_path_buf());
        let read = read::read_limited(path, limit);
        fold(&mut self.digest, path, read.as_deref().ok());
        Ok(read?)
    }

    fn finish(self) -> (Vec<PathBuf>, [u8; 32]) {
        (self.paths, to_array(self.digest.finish()))
    }
}

fn fold(d: &mut digest::Context, path: &Path, contents: Option<&[u8]>) {
    d.update(path.as_os_str().as_encoded_bytes());
    match contents {
        Some(b) => {
            d.update(&[1]);
            d.update(&(b.len() as u64).to_le_bytes());
            d.update(b);
        }
        None => d.update(&[0]),
    }
}

fn to_array(d: digest::Digest) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The fingerprint of `paths` as they are on disk now (an unreadable file
/// counts as its own state, so it differs from any loaded one). Read with
/// the largest bound of any of them: a file grown past its own bound then
/// differs from what was loaded, and the reload it triggers names it.
pub(crate) fn fingerprint(paths: &[PathBuf]) -> [u8; 32] {
    let mut d = digest::Context::new(&digest::SHA256);
    for p in paths {
        let contents = read::read_limited(p, read::MAX_CA_BUNDLE_BYTES).ok();
        fold(&mut d, p, contents.as_deref());
    }
    to_array(d.finish())
}

/// The certificates of a PEM bundle read from `path` (named in errors).
pub(crate) fn parse_certs(
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsFileError::NotPem {
            path: path.into(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

/// A CA bundle.
fn load_ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let pem = read::read_limited(path, read::MAX_CA_BUNDLE_BYTES)?;
    parse_certs(&pem, path)
}

fn parse_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    // Accepts PKCS#8, SEC1 ("EC PRIVATE KEY") and PKCS#1 ("RSA PRIVATE KEY").
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| TlsFileError::NoKey {
        path: path.into(),
        source,
    })
}

/// A certificate chain with its key, checked to belong together.
fn certified_key(
    files: &mut FileSet,
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, TlsFileError> {
    // Both files are read (and fingerprinted) even when the first fails, so
    // the fingerprint always covers the same list.
    let (cert_pem, key_pem) = (
        files.read(cert, read::MAX_FILE_BYTES),
        files.read(key, read::MAX_FILE_BYTES),
    );
    let chain = parse_certs(&cert_pem?, cert)?;
    let key_der = parse_key(&key_pem?, key)?;
    let signing = aws_lc_rs::sign::any_supported_type(&key_der).map_err(|source| {
        TlsFileError::UnsupportedKey {
            path: key.into(),
            source,
        }
    })?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) => Ok(Arc::new(ck)),
        // Inconsistent means the key is not the certificate's; Unknown
        // (e.g. a key type that cannot tell) is let through.
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsFileError::KeyMismatch {
            key: key.into(),
            cert: cert.into(),
        }),
        Err(_) => Ok(Arc::new(ck)),
    }
}

/// Picks the certificate by SNI: exact host, then `*.domain` (one label),
/// then the default.
#[derive(Debug)]
pub(crate) struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = sni {
            let name = name.to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return k.clone();
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = self.wildcard.get(parent) {
                    return k.clone();
                }
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// Builds the rustls server config from `[server.tls]`. Errors are
/// `(key path suffix, message)`.
pub(crate) fn load_server_config(t: &TlsFile, base: &Path) -> Result<Tls, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let mut files = FileSet::new();
    let reload_interval = match &t.reload_interval {
        None => DEFAULT_TLS_RELOAD_INTERVAL,
        Some(text) => match parse_duration(text) {
            Ok(d) if d.is_zero() || d >= MIN_TLS_RELOAD_INTERVAL => d,
            Ok(_) => {
                errs.push((
                    ".reload_interval".into(),
                    format!("`{text}`: use \"0s\" (off) or at least \"100ms\""),
                ));
                DEFAULT_TLS_RELOAD_INTERVAL
            }
            Err(m) => {
                errs.push((".reload_interval".into(), m.to_string()));
                DEFAULT_TLS_RELOAD_INTERVAL
            }
        },
    };
    let mut ck = |cert: &str, key: &str, at: &str, errs: &mut Vec<(String, String)>| {
        certified_key(&mut files, &base.join(cert), &base.join(key))
            .map_err(|m| errs.push((at.to_string(), m.to_string())))
            .ok()
    };
    let default = ck(&t.cert, &t.key, ".cert", &mut errs);
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    for (i, extra) in t.certificates.iter().enumerate() {
        let at = format!(".certificates[{i}]");
        if extra.hosts.is_empty() {
            errs.push((format!("{at}.hosts"), "list at least one host".into()));
        }
        if let Some(k) = ck(&extra.cert, &extra.key, &format!("{at}.cert"), &mut errs) {
            for (j, h) in extra.hosts.iter().enumerate() {
                let h = h.to_ascii_lowercase();
                if let Some(rest) = h.strip_prefix("*.") {
                    wildcard.insert(rest.to_string(), k.clone());
                } else if h.contains('*') {
                    errs.push((
                        format!("{at}.hosts[{j}]"),
                        format!("`{h}`: wildcards are `*.example.com`"),
                    ));
                } else {
                    exact.insert(h, k.clone());
                }
            }
        }
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match t.min_version.as_deref() {
        None | Some("1.2") => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Some("1.3") => &[&rustls::version::TLS13],
        Some(o) => {
            errs.push((
                ".min_version".into(),
                format!("`{o}`: expected \"1.2\" or \"1.3\""),
            ));
            &[&rustls::version::TLS13]
        }
    };
    let alpn: Vec<Vec<u8>> = match &t.alpn {
        None => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Some(list) => {
            for (i, a) in list.iter().enumerate() {
                if a != "h2" && a != "http/1.1" {
                    errs.push((
                        format!(".alpn[{i}]"),
                        format!("`{a}`: expected \"h2\" or \"http/1.1\""),
                    ));
                }
            }
            list.iter().map(|a| a.as_bytes().to_vec()).collect()
        }
    };
    let client_auth = t
        .client_auth
        .as_deref()
        .unwrap_or(if t.client_ca.is_some() {
            "required"
        } else {
            "none"
        });
    let verifier = match (client_auth, &t.client_ca) {
        ("none", _) => None,
        ("optional" | "required", None) => {
            errs.push((
                ".client_ca".into(),
                format!("client_auth = \"{client_auth}\" needs client_ca"),
            ));
            None
        }
        ("optional" | "required", Some(ca)) => {
            let path = base.join(ca);
            match files
                .read(&path, read::MAX_CA_BUNDLE_BYTES)
                .and_then(|pem| parse_certs(&pem, &path))
            {
                Ok(cas) => {
                    let mut roots = rustls::RootCertStore::empty();
                    for c in cas {
                        if let Err(e) = roots.add(c) {
                            errs.push((".client_ca".into(), format!("{}: {e}", path.display())));
                        }
                    }
                    let b =
                        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                    let b = if client_auth == "optional" {
                        b.allow_unauthenticated()
                    } else {
                        b
                    };
                    match b.build() {
                        Ok(v) => Some(v),
                        Err(e) => {
                            errs.push((".client_ca".into(), e.to_string()));
                            None
                        }
                    }
                }
                Err(m) => {
                    errs.push((".client_ca".into(), m.to_string()));
                    None
                }
            }
        }
        (o, _) => {
            errs.push((
                ".client_auth".into(),
                format!("`{o}`: expected \"none\", \"optional\" or \"required\""),
            ));
            None
        }
    };
    let client_identity = match t.client_identity.as_deref() {
        None | Some("cn") => ClientIdentity::Cn,
        Some("san_email") => ClientIdentity::SanEmail,
        Some("san_uri") => ClientIdentity::SanUri,
        Some("san_dns") => ClientIdentity::SanDns,
        Some(o) => {
            errs.push((
                ".client_identity".into(),
                format!("`{o}`: expected \"cn\", \"san_email\", \"san_uri\" or \"san_dns\""),
            ));
            ClientIdentity::Cn
        }
    };
    let Some(default) = default else {
        return Err(errs);
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| vec![(".min_version".to_string(), e.to_string())])?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(SniResolver {
        exact,
        wildcard,
        default,
    }));
    cfg.alpn_protocols = alpn;
    // Resumption by tickets keeps repeat handshakes cheap; stateful cache too.
    cfg.ticketer = aws_lc_rs::Ticketer::new().map_err(|e| vec![(String::new(), e.to_string())])?;
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    let (files, fingerprint) = files.finish();
    Ok(Tls {
        server_config: Arc::new(cfg),
        files,
        fingerprint,
        reload_interval,
        client_identity,
    })
}

/// Client TLS for HTTPS backends and key fetches: the system roots, or only
/// `ca` when given.
pub(crate) fn load_client_config(
    ca: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsFileError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in load_ca_certs(path)? {
                roots.add(c).map_err(|source| TlsFileError::BadCa {
                    path: path.into(),
                    source,
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
    }
    client_config(roots)
}

/// Client TLS for an OpenID Connect provider: the system roots, plus the
/// certificates in `ca` when given (a private CA in addition to, not
/// instead of, the public ones).
pub(crate) fn load_client_config_extra_ca(
    ca: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsFileError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some(path) = ca {
        for c in load_ca_certs(path)? {
            roots.add(c).map_err(|source| TlsFileError::BadCa {
                path: path.into(),
                source,
            })?;
        }
    }
    client_config(roots)
}

fn client_config(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, TlsFileError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsFileError::Protocols)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// While TLS is off or `reload_interval = "0s"`, how often the setting is
/// looked at again (a reload may turn the check on).
const DISABLED_RECHECK: Duration = Duration::from_secs(30);

/// Checks the running config's certificate, key and client CA files every
/// `reload_interval`; when their contents differ from what was loaded, runs
/// [`Gateway::reload`] (the same validated path as SIGHUP), so new
/// connections get the new certificate and a bad file keeps the old one.
///
/// A change is acted on once it has held still for a moment (a cert copied
/// before its key must not be tried half-written), and a state that failed
/// to load is not retried until the files change again, so a broken file
/// logs one error, not one per interval. Ends when shutdown begins.
pub(crate) async fn watch_files(gw: Arc<Gateway>) {
    let mut shutdown = gw.shutdown.subscribe();
    let mut tried: Option<[u8; 32]> = None;
    loop {
        let interval = gw
            .snapshot()
            .config
            .server
            .tls
            .as_ref()
            .map(|t| t.reload_interval)
            .filter(|d| !d.is_zero());
        if !pause(&mut shutdown, interval.unwrap_or(DISABLED_RECHECK)).await {
            return;
        }
        let Some(interval) = interval else { continue };
        let (paths, loaded) = match &gw.snapshot().config.server.tls {
            Some(t) => (t.files.clone(), t.fingerprint),
            None => continue,
        };
        let now = on_disk(&paths).await;
        if now == loaded || tried == Some(now) {
            continue;
        }
        // Let a rotation in progress finish before reading it.
        if !pause(&mut shutdown, (interval / 2).min(Duration::from_secs(1))).await {
            return;
        }
        if on_disk(&paths).await != now {
            continue; // still changing: look again next time
        }
        tried = Some(now);
        tracing::info!("TLS certificate or key files changed on disk: reloading");
        // Errors are logged by reload() and counted as failed reloads.
        let _ = gw.reload().await;
    }
}

async fn on_disk(paths: &[PathBuf]) -> [u8; 32] {
    let paths = paths.to_vec();
    tokio::task::spawn_blocking(move || fingerprint(&paths))
        .await
        .unwrap_or([0; 32])
}

/// Sleeps for `d`; `false` if shutdown began meanwhile.
async fn pause(shutdown: &mut tokio::sync::watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.wait_for(|s| *s) => return false,
    }
    !*shutdown.borrow()
}
