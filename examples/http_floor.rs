//! The floor of the server's own stack, for `bench/side-by-side` (issue 16): the same tokio
//! runtime, hyper connection builder and rustls configuration as `euraflow serve`, and nothing
//! else — no routing, no middleware, no access log, no file checks. Every request is answered
//! with one file held in memory and the headers the real server sends with it.
//!
//! What this costs per request is what hyper + rustls + tokio cost on the machine; the difference
//! to `euraflow serve` on the same file is what the server's own code costs. It is a measuring
//! instrument, not a server: it has no limits and no shutdown.
//!
//! Usage: `http_floor ADDR CERT.pem KEY.pem FILE` (`cargo run --release --example http_floor`).

// A development tool: a failed setup step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, cert, key, file] = &args[..] else {
        panic!("usage: http_floor ADDR CERT.pem KEY.pem FILE");
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("certificate")
        .collect::<Result<_, _>>()
        .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_file(key).expect("key PEM");
    // The server's own provider and suite order (`euraflow::tls_provider`).
    let mut tls =
        rustls::ServerConfig::builder_with_provider(euraflow::tls_provider::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("certificate and key");
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tls.ignore_client_order = true;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let body = Bytes::from(std::fs::read(file).expect("file"));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        loop {
            let (tcp, _) = listener.accept().await.expect("accept");
            let _ = tcp.set_nodelay(true);
            let (acceptor, builder, body) = (acceptor.clone(), builder.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |_req| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(answer(body)) }
                });
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
}

fn answer(body: Bytes) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::builder()
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("etag", "\"6a5-18f3c2b7d10\"")
        .header("last-modified", "Tue, 08 Dec 2026 00:59:00 GMT")
        .header("accept-ranges", "bytes")
        .header("vary", "accept-encoding")
        .header("x-frame-options", "SAMEORIGIN")
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "strict-origin-when-cross-origin")
        .header("x-xss-protection", "1; mode=block");
    r = r.header("content-length", body.len());
    r.body(Full::new(body)).expect("response")
}
