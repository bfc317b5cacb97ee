//! TLS pieces both binaries use: rustls with the `ring` provider (the only
//! one linked, so two providers never collide; it builds with gcc alone),
//! PEM certificates and keys read from files with errors that name the file,
//! a peer certificate's names, and the client side an agent connects with:
//! system roots or a CA file, an optional client certificate, optional pins.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What went wrong setting TLS up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {what} {}: {reason}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{} holds no PEM certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("a pin must be 64 hexadecimal digits (the SHA-256 of a certificate), not `{0}`")]
    BadPin(String),
    #[error("no usable root certificate in the system's store: {0}")]
    NoRoots(String),
}

/// The provider every TLS configuration here is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS versions allowed: 1.3 and 1.2.
pub const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Every certificate of the PEM file `path`, in order (a chain: the
/// end-entity certificate first).
pub fn certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// The private key of the PEM file `path` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        what: "the private key",
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The certificates of `path` as trust anchors.
pub fn roots(path: &Path, what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, what)? {
        roots.add(cert).map_err(|e| TlsError::File {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The DNS names (subject alternative names) a certificate was issued for:
/// how a client certificate says which agent it is.
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(parsed) => parsed.valid_dns_names().map(str::to_owned).collect(),
        Err(_) => Vec::new(),
    }
}

/// The SHA-256 of a certificate's DER bytes, in lowercase hex: what a pin
/// names (`openssl x509 -in cert.pem -outform der | sha256sum`).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How an agent checks the collector and shows itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// Trust only the certificates of this PEM file; `None`: the system's
    /// roots.
    pub ca_file: Option<PathBuf>,
    /// The agent's certificate chain and key, for a collector that asks.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// SHA-256 fingerprints (hex) of certificates the collector's must be
    /// one of, besides being valid.
    pub pins: Vec<String>,
}

impl ClientTls {
    /// A client configuration that trusts no server.
    pub fn trusting_nothing() -> ClientConfig {
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth()
    }

    /// The rustls client configuration (TLS 1.2 and 1.3).
    pub fn config(&self) -> Result<ClientConfig, TlsError> {
        let provider = provider();
        let roots = match &self.ca_file {
            Some(path) => roots(path, "the CA file")?,
            None => {
                let found = rustls_native_roots()?;
                if found.is_empty() {
                    return Err(TlsError::NoRoots("none found".into()));
                }
                found
            }
        };
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let builder =
            ClientConfig::builder_with_provider(provider).with_protocol_versions(VERSIONS)?;
        let builder = if self.pins.is_empty() {
            builder.with_webpki_verifier(verifier)
        } else {
            let pins = self
                .pins
                .iter()
                .map(|p| {
                    let p = p.trim().to_ascii_lowercase().replace(':', "");
                    if p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()) {
                        Ok(p)
                    } else {
                        Err(TlsError::BadPin(p))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned { verifier, pins }))
        };
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => builder.with_client_auth_cert(
                certificates(cert, "the client certificate")?,
                private_key(key)?,
            )?,
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TlsError::Rustls(rustls::Error::General(
                    "a client certificate needs both its certificate and its key".into(),
                )));
            }
        };
        // No ALPN list here: the HTTPS connector sets it from the HTTP
        // versions it enables (and refuses a configuration that has one).
        Ok(config)
    }
}

/// The system's trust store, as rustls-native-certs finds it.
fn rustls_native_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() && !found.errors.is_empty() {
        return Err(TlsError::NoRoots(
            found
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    Ok(roots)
}

/// A server certificate must be valid (the usual checks) and one of the
/// pinned ones.
#[derive(Debug)]
struct Pinned {
    verifier: Arc<rustls::client::WebPkiServerVerifier>,
    pins: Vec<String>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified =
            self.verifier
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        let print = fingerprint(end_entity);
        if self.pins.contains(&print) {
            Ok(verified)
        } else {
            Err(rustls::Error::General(format!(
                "the collector's certificate (SHA-256 {print}) is not one of the pinned ones"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier.supported_verify_schemes()
    }
}
