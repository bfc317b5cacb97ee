//! Certificates made in the test (rcgen, ring): a CA that issues server and
//! client certificates as PEM files, and a small HTTPS client (rustls over a
//! blocking socket) that checks what a TLS listener serves.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// A certificate authority whose certificate is `cert` (PEM).
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub cert: PathBuf,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("cert", &self.cert).finish()
    }
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new CA named `name`, its certificate written to `dir/NAME.crt`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        std::fs::write(&cert, issuer.pem()).unwrap();
        Ca { issuer, cert }
    }

    /// A certificate for `names` (DNS names or IP addresses), valid from an
    /// hour ago for a day, written to `dir/STEM.crt` and `dir/STEM.key`.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> Issued {
        let now = OffsetDateTime::now_utc();
        self.issue_valid(
            dir,
            stem,
            names,
            now - Duration::hours(1),
            now + Duration::days(1),
        )
    }

    /// [`issue`](Self::issue) with the validity given.
    pub fn issue_valid(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let issued = Issued {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        // Written beside and renamed, as a certificate renewal would.
        for (path, text) in [
            (&issued.key, key.serialize_pem()),
            (&issued.cert, cert.pem()),
        ] {
            let temp = path.with_extension("tmp");
            std::fs::write(&temp, text).unwrap();
            std::fs::rename(&temp, path).unwrap();
        }
        issued
    }
}

/// The DER of the first certificate of a PEM file.
pub fn der(path: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .as_ref()
        .to_vec()
}

/// What an HTTPS request to a test server got.
#[derive(Debug)]
pub struct HttpsAnswer {
    /// The status line and headers and body, as text.
    pub text: String,
    /// The DER of the certificate the server showed.
    pub server_cert: Vec<u8>,
}

/// A TLS client stream over `sock` to `localhost`, trusting `ca`, showing
/// `client` when given.
pub fn tls_stream(
    sock: std::net::TcpStream,
    ca: &Path,
    client: Option<&Issued>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(c) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&c.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(&c.key).unwrap(),
            )
            .unwrap(),
    };
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    Ok(rustls::StreamOwned::new(conn, sock))
}

/// `GET path` over TLS to `127.0.0.1:port` as `localhost`, trusting `ca`,
/// showing `client` when given; `Err` with rustls's reason when the
/// handshake fails.
pub fn https_get(
    port: u16,
    path: &str,
    ca: &Path,
    client: Option<&Issued>,
) -> Result<HttpsAnswer, String> {
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut tls = tls_stream(sock, ca, client)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    match tls.read_to_end(&mut body) {
        Ok(_) => {}
        // The server closed without close_notify after the answer: fine.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !body.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let server_cert = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    Ok(HttpsAnswer {
        text: String::from_utf8_lossy(&body).into_owned(),
        server_cert,
    })
}
