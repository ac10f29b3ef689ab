//! TLS settings: certificates from PEM files, SNI selection, ALPN, minimum
//! version, optional client certificates; and the client side for HTTPS to
//! backends and key fetches. One provider (aws-lc-rs) for all of it.

use crate::config::file::TlsFile;
use crate::config::Tls;
use rustls::crypto::aws_lc_rs;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    // Accepts PKCS#8, SEC1 ("EC PRIVATE KEY") and PKCS#1 ("RSA PRIVATE KEY").
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "{}: no usable private key (PKCS#8, SEC1 or PKCS#1 PEM): {e}",
            path.display()
        )
    })
}

/// A certificate chain with its key, checked to belong together.
pub(crate) fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let signing = aws_lc_rs::sign::any_supported_type(&key_der)
        .map_err(|e| format!("{}: unsupported key: {e}", key.display()))?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) => Ok(Arc::new(ck)),
        // Inconsistent means the key is not the certificate's; Unknown
        // (e.g. a key type that cannot tell) is let through.
        Err(rustls::Error::InconsistentKeys(_)) => Err(format!(
            "{} does not match the certificate in {}",
            key.display(),
            cert.display()
        )),
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
    let mut files: Vec<PathBuf> = Vec::new();
    let mut ck = |cert: &str, key: &str, at: &str, errs: &mut Vec<(String, String)>| {
        let (c, k) = (base.join(cert), base.join(key));
        files.push(c.clone());
        files.push(k.clone());
        certified_key(&c, &k)
            .map_err(|m| errs.push((at.to_string(), m)))
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
            files.push(path.clone());
            match load_certs(&path) {
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
                    errs.push((".client_ca".into(), m));
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
    Ok(Tls {
        server_config: Arc::new(cfg),
        files,
    })
}

/// Client TLS for HTTPS backends and key fetches: the system roots, or only
/// `ca` when given.
pub(crate) fn load_client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in load_certs(path)? {
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
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
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some(path) = ca {
        for c in load_certs(path)? {
            roots
                .add(c)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    client_config(roots)
}

fn client_config(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
