//! [`LndRest`]: a [`LightningBackend`] over LND's REST API, `POST /v1/invoices` (`AddInvoice`).
//!
//! Authentication is LND's: the hex of a macaroon file in the `Grpc-Metadata-macaroon` header (an
//! `invoice.macaroon` is enough and is all this needs). The connection trusts only the node's `tls.cert`:
//!
//! * a server certificate byte-identical to one in that file is accepted as is (pinning: the handshake still
//!   proves the server holds its key). This is the usual case, and it needs a verifier of its own because LND's
//!   self-signed certificate is marked as a CA, which rustls/webpki refuse as a server certificate
//!   (`CaUsedAsEndEntity`, lightningnetwork/lnd#5450), so `add_root_certificate` alone cannot reach a stock LND;
//! * any other certificate must chain to a certificate of that file, for the URL's host name (a node behind a
//!   proxy with its own CA).
//!
//! Neither the platform's roots nor any proxy from the environment are used, and redirects are not followed,
//! so the macaroon goes to the configured node only. It never appears in an error or in `Debug`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use serde_json::json;

use super::{BackendError, Invoice, LightningBackend};

/// The header LND's REST gateway reads the macaroon from.
pub const MACAROON_HEADER: &str = "Grpc-Metadata-macaroon";
/// Macaroons are a few hundred bytes; anything much larger is the wrong file.
const MAX_MACAROON_BYTES: usize = 16 * 1024;
/// An `AddInvoice` answer is well under a kilobyte.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why an [`LndRest`] could not be built. Names the file at fault; never holds the macaroon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LndConfigError {
    #[error("LND REST URL: {0}")]
    Url(&'static str),
    #[error("LND macaroon file {}: {problem}", path.display())]
    Macaroon { path: PathBuf, problem: String },
    #[error("LND TLS certificate file {}: {problem}", path.display())]
    TlsCert { path: PathBuf, problem: String },
    #[error("LND REST client: {0}")]
    Client(String),
}

/// An LND node's REST API (`https://host:8080`).
pub struct LndRest {
    /// `{url}/v1/invoices`.
    endpoint: String,
    /// Hex of the macaroon file, marked sensitive.
    macaroon: HeaderValue,
    client: reqwest::Client,
}

impl fmt::Debug for LndRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LndRest").field("endpoint", &self.endpoint).field("macaroon", &"<redacted>").finish()
    }
}

impl LndRest {
    /// Reads the macaroon and the node's `tls.cert` once, now: a missing or unreadable file is an error naming
    /// it. `timeout` bounds each invoice request, connection included.
    pub fn new(
        url: &str,
        macaroon_path: impl AsRef<Path>,
        tls_cert_path: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<LndRest, LndConfigError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| LndConfigError::Url("not a URL"))?;
        if parsed.scheme() != "https" {
            return Err(LndConfigError::Url("LND's REST API is served over https"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
            return Err(LndConfigError::Url("must be the API's base URL, without credentials, query or fragment"));
        }
        let endpoint = format!("{}/v1/invoices", parsed.as_str().trim_end_matches('/'));
        let macaroon = read_macaroon(macaroon_path.as_ref())?;
        let pinned = read_certificates(tls_cert_path.as_ref())?;
        let tls = tls_config(pinned)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| LndConfigError::Client(e.to_string()))?;
        Ok(LndRest { endpoint, macaroon, client })
    }
}

fn read_macaroon(path: &Path) -> Result<HeaderValue, LndConfigError> {
    let err = |problem: String| LndConfigError::Macaroon { path: path.to_owned(), problem };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot be read: {e}")))?;
    if bytes.is_empty() {
        return Err(err("is empty".into()));
    }
    if bytes.len() > MAX_MACAROON_BYTES {
        return Err(err("is too large to be a macaroon".into()));
    }
    let mut value = HeaderValue::from_str(&hex::encode(bytes)).map_err(|_| err("cannot be sent".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, LndConfigError> {
    let err = |problem: String| LndConfigError::TlsCert { path: path.to_owned(), problem };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot be read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("holds no PEM certificate".into()));
    }
    Ok(certs)
}

fn tls_config(pinned: Vec<CertificateDer<'static>>) -> Result<rustls::ClientConfig, LndConfigError> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(pinned.iter().cloned());
    // No usable root (a certificate webpki cannot parse as one) leaves pinning as the only way in.
    let chained = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().ok();
    let verifier = PinnedCertVerifier { pinned, chained, provider: provider.clone() };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LndConfigError::Client(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts the node's own certificate by its bytes, or a chain to one of the configured certificates.
#[derive(Debug)]
struct PinnedCertVerifier {
    pinned: Vec<CertificateDer<'static>>,
    chained: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|cert| cert.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        let chained = match &self.chained {
            Some(chained) => chained.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            None => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)),
        };
        // Say what the operator must check: which certificate the node serves.
        chained.map_err(|e| {
            rustls::Error::General(format!(
                "the server's certificate is not the node's tls.cert, nor signed by it ({e})"
            ))
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// LND's `AddInvoiceResponse` as the REST gateway writes it: bytes in base64, 64-bit integers as strings.
#[derive(Deserialize)]
struct AddInvoiceAnswer {
    r_hash: String,
    payment_request: String,
}

/// The REST gateway's error body, `{code, message, details}`.
#[derive(Deserialize)]
struct ErrorAnswer {
    message: String,
}

#[async_trait]
impl LightningBackend for LndRest {
    async fn create_invoice(&self, amount_msat: u64, memo: &str, expiry_secs: u64) -> Result<Invoice, BackendError> {
        let body = json!({
            "value_msat": amount_msat.to_string(),
            "memo": memo,
            "expiry": expiry_secs.to_string(),
        });
        let mut response = self
            .client
            .post(&self.endpoint)
            .header(MACAROON_HEADER, self.macaroon.clone())
            .json(&body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(BackendError::InvalidAnswer("the answer is too large".into()));
            }
            bytes.extend_from_slice(&chunk);
        }
        read_add_invoice(status.as_u16(), &bytes)
    }
}

/// Reads LND's answer to `AddInvoice` (HTTP `status`, body `bytes`): the invoice, or why there is none. Its error
/// message is kept only without control characters and cut at 300 characters.
pub fn read_add_invoice(status: u16, bytes: &[u8]) -> Result<Invoice, BackendError> {
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<ErrorAnswer>(bytes)
            .map(|e| e.message.chars().filter(|c| !c.is_control()).take(300).collect())
            .unwrap_or_else(|_| "no error message".into());
        return Err(BackendError::Refused { status, message });
    }
    let answer: AddInvoiceAnswer = serde_json::from_slice(bytes)
        .map_err(|e| BackendError::InvalidAnswer(format!("not an AddInvoice answer: {e}")))?;
    let payment_hash = paygate_proto::b64::url_decode(&answer.r_hash)
        .ok()
        .and_then(|hash| <[u8; 32]>::try_from(hash).ok())
        .ok_or_else(|| BackendError::InvalidAnswer("r_hash is not 32 bytes of base64".into()))?;
    if answer.payment_request.is_empty() {
        return Err(BackendError::InvalidAnswer("the payment request is empty".into()));
    }
    Ok(Invoice { bolt11: answer.payment_request, payment_hash })
}

/// A transport failure, described without the URL (the chain of causes says what failed: refused, TLS, DNS).
fn transport_error(err: reqwest::Error) -> BackendError {
    if err.is_timeout() {
        return BackendError::Timeout;
    }
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    BackendError::Unreachable(text)
}
