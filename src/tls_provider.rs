//! The one rustls crypto provider of the process, for the HTTPS server (`http::tls`) and for TLS
//! to a remote PostgreSQL (`db::tls`). One provider means one suite order and one set of
//! primitives to review; it sits on the infrastructure floor so that `db` does not import `http`.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// ring with Mozilla's "modern" suite order: AES-128-GCM first. Every suite is an AEAD with
/// forward secrecy either way; AES-128-GCM with SHA-256 costs the server noticeably less per
/// handshake than AES-256-GCM with SHA-384 (SHA-512 was the largest single cost in a profile of
/// new-connection-per-request load).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    let rank = |s: &rustls::SupportedCipherSuite| -> u8 {
        let name = format!("{:?}", s.suite());
        if name.contains("AES_128_GCM") {
            0
        } else if name.contains("AES_256_GCM") {
            1
        } else {
            2
        }
    };
    // Stable: TLS 1.3 suites stay ahead of TLS 1.2 ones, as in ring's own list.
    p.cipher_suites
        .sort_by_key(|s| (s.version() == &rustls::version::TLS12, rank(s)));
    Arc::new(p)
}
