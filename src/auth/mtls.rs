//! The `mtls` method (SPEC 15): a client certificate that rustls verified
//! against `[server.tls] client_ca` becomes an identity.
//!
//! State: one [`ClientCert`] per TLS connection that presented a verified
//! certificate. `server/mod.rs` parses it once, right after the handshake,
//! and keeps it in that connection's `ConnInfo`; every request on the
//! connection (HTTP/1.1 keep-alive requests, HTTP/2 streams) only reads it.
//! Which field becomes `sub` is read per request from the snapshot
//! (`client_identity`), so a reload applies to open connections too; the
//! identity for each choice, and the escaped PEM for
//! `[identity] client_cert_header`, are built on first use and then shared
//! by the connection's requests (a reference count per request).
//!
//! Parsing uses `x509-cert` (RustCrypto): a DER decoder with no crypto of
//! its own, so the binary keeps one provider (aws-lc-rs). The certificate's
//! signature, validity and chain were checked by rustls before this runs;
//! this module only reads names out of it.

use super::{Attempt, Identity, Method, RequestOrigin};
use crate::config::ClientIdentity;
use crate::error::GatewayError;
use crate::gateway::{Gateway, Snapshot};
use crate::metrics::AuthResult;
use crate::server::ConnInfo;
use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use std::sync::{Arc, OnceLock};
use x509_cert::der::asn1::{
    Ia5StringRef, ObjectIdentifier, PrintableStringRef, TeletexStringRef, Utf8StringRef,
};
use x509_cert::der::{self, Decode, Tag, Tagged};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// `id-at-commonName` (2.5.4.3).
const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
/// `id-at-organizationalUnitName` (2.5.4.11).
const OU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");

/// Why a certificate could not be read. Only logged (at debug): the
/// connection then simply has no client certificate to authenticate with.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("client certificate is not valid DER: {0}")]
    Der(#[from] der::Error),
}

/// The names of a verified client certificate, read once per connection.
#[derive(Debug)]
pub struct ClientCert {
    /// The subject's common name; `None` when absent, not text, or given
    /// more than once (which one would be meant is not ours to guess).
    cn: Option<String>,
    /// The first rfc822Name, dNSName and URI subject alternative names.
    email: Option<String>,
    dns: Option<String>,
    uri: Option<String>,
    /// The subject's OU values, in certificate order.
    ous: Vec<String>,
    /// The issuer's distinguished name (RFC 4514): the `iss` identity field
    /// (SPEC 16), i.e. the subject of the CA that signed the leaf.
    issuer: Arc<str>,
    /// notAfter, unix seconds: when the credential ends.
    not_after: u64,
    der: CertificateDer<'static>,
    /// Identities by `client_identity`, in [`ClientCert::slot`] order.
    identities: [OnceLock<Option<Arc<Identity>>>; 4],
    escaped_pem: OnceLock<Option<http::HeaderValue>>,
}

impl ClientCert {
    /// Reads the leaf certificate rustls verified.
    pub fn parse(der: &CertificateDer<'_>) -> Result<ClientCert, CertError> {
        let cert = Certificate::from_der(der.as_ref())?;
        let tbs = &cert.tbs_certificate;
        let mut cn = None;
        let mut cn_count = 0usize;
        let mut ous = Vec::new();
        for atv in tbs.subject.0.iter().flat_map(|rdn| rdn.0.iter()) {
            if atv.oid == CN {
                cn_count += 1;
                cn = directory_string(&atv.value);
            } else if atv.oid == OU {
                if let Some(v) = directory_string(&atv.value) {
                    ous.push(v);
                }
            }
        }
        if cn_count > 1 {
            cn = None;
        }
        let (mut email, mut dns, mut uri) = (None, None, None);
        // A duplicated or undecodable SAN extension is an error of `get`:
        // the certificate then has no SAN names for us (fail closed).
        if let Ok(Some((_, SubjectAltName(names)))) = tbs.get::<SubjectAltName>() {
            for name in names {
                match name {
                    GeneralName::Rfc822Name(s) if email.is_none() => {
                        email = Some(s.to_string());
                    }
                    GeneralName::DnsName(s) if dns.is_none() => dns = Some(s.to_string()),
                    GeneralName::UniformResourceIdentifier(s) if uri.is_none() => {
                        uri = Some(s.to_string());
                    }
                    _ => {}
                }
            }
        }
        Ok(ClientCert {
            cn,
            email,
            dns,
            uri,
            ous,
            issuer: tbs.issuer.to_string().into(),
            not_after: tbs.validity.not_after.to_unix_duration().as_secs(),
            der: der.clone().into_owned(),
            identities: Default::default(),
            escaped_pem: OnceLock::new(),
        })
    }

    fn slot(choice: ClientIdentity) -> usize {
        match choice {
            ClientIdentity::Cn => 0,
            ClientIdentity::SanEmail => 1,
            ClientIdentity::SanUri => 2,
            ClientIdentity::SanDns => 3,
        }
    }

    fn subject(&self, choice: ClientIdentity) -> Option<&str> {
        match choice {
            ClientIdentity::Cn => self.cn.as_deref(),
            ClientIdentity::SanEmail => self.email.as_deref(),
            ClientIdentity::SanUri => self.uri.as_deref(),
            ClientIdentity::SanDns => self.dns.as_deref(),
        }
        .filter(|s| !s.is_empty())
    }

    /// The identity with `sub` from `choice`; `None` when the certificate
    /// lacks that field (it then does not authenticate).
    pub fn identity(&self, choice: ClientIdentity) -> Option<Arc<Identity>> {
        self.identities[Self::slot(choice)]
            .get_or_init(|| {
                let sub = self.subject(choice)?;
                Some(Arc::new(Identity {
                    sub: sub.to_string(),
                    email: self.email.clone(),
                    groups: self.ous.clone(),
                    name: None,
                    method: Method::Mtls,
                    extra: Vec::new(),
                    claims: None,
                    expires_at: Some(self.not_after),
                    iss: Some(self.issuer.clone()),
                    issuer: None,
                    login: None,
                }))
            })
            .clone()
    }

    /// The certificate as PEM, percent-encoded like nginx's
    /// `$ssl_client_escaped_cert` (every byte but RFC 3986's unreserved
    /// characters, upper-case hex), as a header value.
    pub fn escaped_pem(&self) -> Option<http::HeaderValue> {
        self.escaped_pem
            .get_or_init(|| {
                let text = super::url_encode(&pem(&self.der));
                http::HeaderValue::from_str(&text).ok()
            })
            .clone()
    }
}

/// PEM as OpenSSL writes it: 64-column base64 lines, a final newline.
fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A DirectoryString-like attribute value as text: UTF8String,
/// PrintableString, IA5String or TeletexString (read as its ASCII subset).
/// BMPString and UniversalString are legacy and left out: such a value is
/// treated as absent.
fn directory_string(v: &der::Any) -> Option<String> {
    let s = match v.tag() {
        Tag::Utf8String => Utf8StringRef::try_from(v).ok()?.as_str().to_string(),
        Tag::PrintableString => PrintableStringRef::try_from(v).ok()?.as_str().to_string(),
        Tag::Ia5String => Ia5StringRef::try_from(v).ok()?.as_str().to_string(),
        Tag::TeletexString => TeletexStringRef::try_from(v).ok()?.as_str().to_string(),
        _ => return None,
    };
    Some(s)
}

/// The `mtls` method: the connection's verified certificate, if any.
///
/// CSRF `origin`: a browser holding a client certificate presents it on
/// any request to this origin, cross-site ones included, so an unsafe
/// request whose `Origin` (or `Referer`) names another origin is refused
/// (403), as with a cookie. One with neither header passes: that is a
/// machine client, the usual caller with a certificate, and browsers send
/// `Origin` on cross-site unsafe requests.
pub(super) fn authenticate(
    gw: &Gateway,
    snap: &Snapshot,
    parts: &http::request::Parts,
    conn: &ConnInfo,
) -> Attempt {
    let Some(cert) = conn.client_cert.as_deref() else {
        return Attempt::Absent;
    };
    // The TLS settings of this snapshot may differ from the ones the
    // connection was accepted with; a reload that removed `[server.tls]`
    // leaves the default choice.
    let choice = snap
        .config
        .server
        .tls
        .as_ref()
        .map_or(ClientIdentity::Cn, |t| t.client_identity);
    let Some(identity) = cert.identity(choice) else {
        // A verified certificate without the configured field: the caller
        // is who the CA says, but not nameable; refused rather than made
        // anonymous.
        gw.metrics.auth("mtls", AuthResult::Invalid);
        return Attempt::Rejected("client certificate lacks the configured identity field");
    };
    if snap.config.sessions.csrf
        && !super::is_safe_method(&parts.method)
        && super::request_origin(snap, &parts.headers, &parts.uri, conn) == RequestOrigin::Foreign
    {
        gw.metrics.auth("mtls", AuthResult::Forbidden);
        return Attempt::Failed(GatewayError::Forbidden);
    }
    gw.metrics.auth("mtls", AuthResult::Ok);
    Attempt::Accepted {
        identity,
        from_cookie: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn cert(f: impl FnOnce(&mut CertificateParams)) -> ClientCert {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        f(&mut p);
        let c = p.self_signed(&key).unwrap();
        ClientCert::parse(c.der()).unwrap()
    }

    #[test]
    fn names_are_read_from_subject_and_alternative_names() {
        let c = cert(|p| {
            p.distinguished_name.push(DnType::CommonName, "svc-a");
            p.distinguished_name
                .push(DnType::OrganizationalUnitName, "ops");
            p.subject_alt_names = vec![
                SanType::DnsName("a.example".try_into().unwrap()),
                SanType::Rfc822Name("a@example.com".try_into().unwrap()),
                SanType::URI("spiffe://example/a".try_into().unwrap()),
                SanType::Rfc822Name("b@example.com".try_into().unwrap()),
            ];
        });
        let id = c.identity(ClientIdentity::Cn).unwrap();
        assert_eq!(id.sub, "svc-a");
        assert_eq!(id.email.as_deref(), Some("a@example.com"));
        assert_eq!(id.groups, ["ops"]);
        assert_eq!(id.method, Method::Mtls);
        assert_eq!(
            c.identity(ClientIdentity::SanEmail).unwrap().sub,
            "a@example.com"
        );
        assert_eq!(
            c.identity(ClientIdentity::SanUri).unwrap().sub,
            "spiffe://example/a"
        );
        assert_eq!(c.identity(ClientIdentity::SanDns).unwrap().sub, "a.example");
        // Built once per choice, then shared.
        assert!(Arc::ptr_eq(&id, &c.identity(ClientIdentity::Cn).unwrap()));
    }

    #[test]
    fn missing_fields_do_not_authenticate() {
        let c = cert(|p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name
                .push(DnType::OrganizationalUnitName, "ops");
        });
        for choice in [
            ClientIdentity::Cn,
            ClientIdentity::SanEmail,
            ClientIdentity::SanUri,
            ClientIdentity::SanDns,
        ] {
            assert!(c.identity(choice).is_none(), "{choice:?}");
        }
    }

    #[test]
    fn a_common_name_given_twice_is_no_common_name() {
        let c = cert(|p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name.push(DnType::CommonName, "alice");
            // rcgen keeps one value per type: the second CN by its OID.
            p.distinguished_name
                .push(DnType::CustomDnType(vec![2, 5, 4, 3]), "admin");
        });
        assert!(c.identity(ClientIdentity::Cn).is_none());
    }

    #[test]
    fn escaped_pem_matches_nginx_escaping() {
        let c = cert(|p| {
            p.distinguished_name.push(DnType::CommonName, "x");
        });
        let v = c.escaped_pem().unwrap();
        let text = v.to_str().unwrap();
        assert!(
            text.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
            "{text}"
        );
        assert!(text.ends_with("-----END%20CERTIFICATE-----%0A"), "{text}");
        assert!(!text.contains(['+', '/', '=', ' ', '\n']));
        let decoded = percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .unwrap();
        let back = CertificateDer::from_pem_slice(decoded.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), c.der.as_ref());
    }

    use rustls_pki_types::pem::PemObject;
}
