//! TLS on the public listener: rustls with the operator's PEM certificate chain and private key, TLS 1.2 and
//! 1.3 only, and ALPN offering `h2` before `http/1.1`, so clients that can speak HTTP/2 do.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// A certificate or key that cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read a PEM certificate chain from {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("cannot read a PEM private key from {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the certificate and the key do not make a TLS server: {0}")]
    Config(String),
}

/// The acceptor for `cert_file` (the chain, leaf first) and `key_file` (PKCS#8, PKCS#1 or SEC1).
pub fn acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, TlsError> {
    let certificate = |reason: String| TlsError::Certificate { path: cert_file.display().to_string(), reason };
    let chain = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| certificate(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(certificate("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| TlsError::Key { path: key_file.display().to_string(), reason: e.to_string() })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
