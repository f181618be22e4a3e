//! `paygate serve` over TLS: the operator's certificate and key from files named relative to the config, TLS 1.3
//! and 1.2 accepted, HTTP/2 through ALPN, the same 402s and free routes as over plain HTTP.

use std::sync::Arc;

use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use paygate_testkit::Upstream;
use paygate_testkit::lnd::Identity;
use paygate_testkit::process::ServeProcess;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ProtocolVersion, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const BIN: &str = env!("CARGO_BIN_EXE_paygate");

/// A TLS client trusting `ca`, limited to `versions`, offering `alpn`.
fn connector(ca: &Identity, versions: &[&'static rustls::SupportedProtocolVersion], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn connect(connector: &TlsConnector, address: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(address).await.unwrap();
    connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.expect("TLS handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_http2_and_tls_1_2_or_1_3() {
    let upstream = Upstream::start().await;
    let (ca, leaf) = Identity::ca_signed();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), leaf.key_pem()).unwrap();
    let config = dir.path().join("paygate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert_file = \"cert.pem\"\ntls_key_file = \"key.pem\"\n\n\
             [upstream]\nurl = \"{}\"\n\n[store]\nurl = \"sqlite::memory:\"\n\n\
             [[routes]]\nmethod = \"GET\"\npath = \"/v1/quote\"\nprice = \"$0.01\"\n\n[[routes]]\npath = \"/free\"\n\n\
             [[routes]]\npath = \"/headers\"\n",
            upstream.url()
        ),
    )
    .unwrap();
    let served = ServeProcess::start(BIN, &config);

    // TLS 1.3 with ALPN: HTTP/2 is chosen, and a free route answers through it.
    let modern = connector(&ca, &[&rustls::version::TLS13, &rustls::version::TLS12], &[b"h2", b"http/1.1"]);
    let stream = connect(&modern, &served.address).await;
    let (_, session) = stream.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(session.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::get("https://127.0.0.1/free").body(Empty::<bytes::Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let _ = response.into_body().collect().await.unwrap();
    // The upstream is told the client came over HTTPS.
    let request = Request::get("https://127.0.0.1/headers").body(Empty::<bytes::Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let seen: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(seen["x-forwarded-proto"], "https", "{seen}");
    let request = Request::get("https://127.0.0.1/v1/quote").body(Empty::<bytes::Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 402);
    assert!(response.headers().contains_key("payment-required"));

    // TLS 1.2 is accepted too, and HTTP/1.1 when that is all a client offers.
    let old = connector(&ca, &[&rustls::version::TLS12], &[b"http/1.1"]);
    let mut stream = connect(&old, &served.address).await;
    assert_eq!(stream.get_ref().1.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    stream.write_all(b"GET /v1/quote HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap_or_default();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 402"), "{answer}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(&served.address).await.unwrap();
    plain.write_all(b"GET /free HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"), "{answer:?}");
}

/// `server.max_header_bytes` bounds a request's head: larger is refused with 431 before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_the_configured_limit_is_refused() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paygate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_header_bytes = 8192\n\n[upstream]\nurl = \"{}\"\n\n\
             [store]\nurl = \"sqlite::memory:\"\n\n[[routes]]\npath = \"/free\"\n",
            upstream.url()
        ),
    )
    .unwrap();
    let served = ServeProcess::start(BIN, &config);
    let url = format!("http://{}/free", served.address);
    let http = reqwest::Client::new();
    assert_eq!(http.get(&url).header("x-note", "a".repeat(4_000)).send().await.unwrap().status(), 200);
    let refused = http.get(&url).header("x-note", "a".repeat(10_000)).send().await.unwrap();
    assert_eq!(refused.status(), 431);
}

#[test]
fn a_certificate_without_its_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paygate.toml");
    std::fs::write(&config, "[server]\ntls_cert_file = \"cert.pem\"\n\n[upstream]\nurl = \"http://127.0.0.1:9\"\n")
        .unwrap();
    let output =
        std::process::Command::new(BIN).args(["serve", "--check-config", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("server.tls_cert_file: give both tls_cert_file and tls_key_file"), "{stderr}");
    std::fs::write(
        &config,
        "[server]\ntls_cert_file = \"cert.pem\"\ntls_key_file = \"key.pem\"\n\n[upstream]\nurl = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let output =
        std::process::Command::new(BIN).args(["serve", "--check-config", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read a PEM certificate chain from") && stderr.contains("cert.pem"), "{stderr}");
}
