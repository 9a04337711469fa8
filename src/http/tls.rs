//! TLS: rustls with TLS 1.2/1.3 and modern suites only, ALPN h2 + http/1.1, and a certificate that
//! can be swapped while the server runs.
//!
//! The certificate lives behind an `ArcSwap` read by the certificate resolver on every handshake,
//! so a reload (SIGHUP, certbot's deploy hook) changes what new handshakes get without touching
//! established connections. A new pair is fully validated — parsed, key matching the certificate —
//! before it replaces the old one; a bad pair is refused with the reason and the old one stays.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsConfig;
pub use crate::tls_provider::crypto_provider;

/// Self-signed certificates are renewed when fewer days than this remain.
const SELF_SIGNED_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86400);
const SELF_SIGNED_VALIDITY_DAYS: i64 = 397;

/// What the server currently presents, with a description for logs and `status`.
#[derive(Debug)]
pub struct LoadedCertificate {
    pub key: Arc<CertifiedKey>,
    pub subject: String,
    pub not_after: SystemTime,
    pub origin: String,
    /// SHA-256 of the leaf certificate, hex, to tell certificates apart in logs.
    pub fingerprint: String,
}

/// The server's certificate source and the swappable current certificate.
pub struct CertificateStore {
    source: TlsConfig,
    server_names: Vec<String>,
    current: ArcSwap<LoadedCertificate>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for CertificateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateStore")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl CertificateStore {
    /// Load the configured pair, or generate/reuse the self-signed one. `server_name` goes into
    /// the self-signed certificate along with localhost and the loopback addresses.
    pub fn open(source: TlsConfig, server_name: &str) -> anyhow::Result<Arc<Self>> {
        let mut server_names = vec![server_name.to_owned()];
        for n in ["localhost", "127.0.0.1", "::1"] {
            if !server_names.iter().any(|s| s == n) {
                server_names.push(n.to_owned());
            }
        }
        let provider = crypto_provider();
        let first = load_from(&source, &server_names, &provider)?;
        Ok(Arc::new(CertificateStore {
            source,
            server_names,
            current: ArcSwap::from_pointee(first),
            provider,
        }))
    }

    pub fn current(&self) -> Arc<LoadedCertificate> {
        self.current.load_full()
    }

    /// Re-read the certificate source. On success the new certificate is used for every new
    /// handshake; on failure nothing changes and the error says why.
    pub fn reload(&self) -> anyhow::Result<Arc<LoadedCertificate>> {
        let fresh = Arc::new(load_from(&self.source, &self.server_names, &self.provider)?);
        self.current.store(fresh.clone());
        Ok(fresh)
    }

    /// A rustls server configuration that asks this store for the certificate on each handshake.
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<ServerConfig>> {
        let mut cfg = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Our order (above), not the client's: clients offer AES-256 first out of habit.
        cfg.ignore_client_order = true;
        // Stateless resumption tickets, rotated by rustls; saves a full handshake per reconnect.
        cfg.ticketer = rustls::crypto::ring::Ticketer::new().context("TLS session tickets")?;
        cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
        Ok(Arc::new(cfg))
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertificateStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load().key.clone())
    }
}

fn load_from(
    source: &TlsConfig,
    names: &[String],
    provider: &CryptoProvider,
) -> anyhow::Result<LoadedCertificate> {
    match source {
        TlsConfig::Files { cert, key } => {
            let cert_pem = std::fs::read(cert).with_context(|| {
                format!(
                    "cannot read the certificate {} (EF__TLS_CERT); check the path and that the service may read it",
                    cert.display()
                )
            })?;
            let key_pem = std::fs::read(key).with_context(|| {
                format!(
                    "cannot read the private key {} (EF__TLS_KEY); check the path and that the service may read it",
                    key.display()
                )
            })?;
            let origin = format!("{} + {}", cert.display(), key.display());
            certified_key_from_pem(&cert_pem, &key_pem, provider, origin)
        }
        TlsConfig::SelfSigned { dir } => self_signed(dir, names, provider),
    }
}

/// Parse and cross-check a PEM certificate chain and private key.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
    origin: String,
) -> anyhow::Result<LoadedCertificate> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("the certificate file is not valid PEM: {e:?}"))?;
    if chain.is_empty() {
        bail!("the certificate file holds no CERTIFICATE block");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| anyhow!("the key file holds no usable private key: {e:?}"))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow!("the private key is not usable: {e}"))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            bail!("the private key does not belong to the certificate (public keys differ)")
        }
        Err(e) => bail!("the certificate cannot be used: {e}"),
    }
    let leaf = certified
        .end_entity_cert()
        .map_err(|e| anyhow!("no end-entity certificate: {e}"))?;
    let (subject, not_after) = describe(leaf.as_ref())?;
    let fingerprint = hex_sha256(leaf.as_ref());
    Ok(LoadedCertificate {
        key: Arc::new(certified),
        subject,
        not_after,
        origin,
        fingerprint,
    })
}

fn describe(der: &[u8]) -> anyhow::Result<(String, SystemTime)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow!("the certificate cannot be parsed: {e}"))?;
    let subject = cert.subject().to_string();
    let ts = cert.validity().not_after.timestamp();
    let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(ts.max(0) as u64);
    Ok((subject, not_after))
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reuse `<dir>/selfsigned.{crt,key}` while valid for our names and not close to expiry;
/// otherwise generate a new pair (ECDSA P-256) and keep it for next time.
fn self_signed(
    dir: &Path,
    names: &[String],
    provider: &CryptoProvider,
) -> anyhow::Result<LoadedCertificate> {
    let cert_path = dir.join("selfsigned.crt");
    let key_path = dir.join("selfsigned.key");
    if let (Ok(c), Ok(k)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
        let origin = format!("self-signed {}", cert_path.display());
        match certified_key_from_pem(&c, &k, provider, origin) {
            Ok(loaded) => {
                let fresh = loaded
                    .not_after
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > SELF_SIGNED_RENEW_BEFORE);
                if fresh && covers_names(&c, names) {
                    return Ok(loaded);
                }
            }
            Err(e) => {
                tracing::warn!(path = %cert_path.display(), error = %e, "the stored self-signed certificate is unusable; generating a new one");
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create {} for the self-signed certificate; make EF__STATE_DIR writable or set EF__TLS_CERT/EF__TLS_KEY",
            dir.display()
        )
    })?;
    let (cert_pem, key_pem) = generate_self_signed(names)?;
    crate::config::write_private_file(&key_path, key_pem.as_bytes())
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    std::fs::write(&cert_path, cert_pem.as_bytes())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    tracing::info!(path = %cert_path.display(), names = ?names, "generated a self-signed certificate");
    certified_key_from_pem(
        cert_pem.as_bytes(),
        key_pem.as_bytes(),
        provider,
        format!("self-signed {}", cert_path.display()),
    )
}

fn covers_names(cert_pem: &[u8], names: &[String]) -> bool {
    let Ok(der) = CertificateDer::from_pem_slice(cert_pem) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let present: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                4 => Some(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()),
                16 => <[u8; 16]>::try_from(*ip)
                    .ok()
                    .map(|b| std::net::Ipv6Addr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    names.iter().all(|n| present.iter().any(|p| p == n))
}

/// A fresh self-signed certificate and key (PEM) for the given names; IP literals become IP SANs.
pub fn generate_self_signed(names: &[String]) -> anyhow::Result<(String, String)> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .context("building the self-signed certificate")?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "euraflow self-signed");
    let now = time_now();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SELF_SIGNED_VALIDITY_DAYS);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("generating a key pair")?;
    let cert = params
        .self_signed(&key)
        .context("signing the self-signed certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatched_key_is_refused_with_reason() {
        let names = vec!["localhost".to_owned()];
        let (cert_a, _key_a) = generate_self_signed(&names).unwrap();
        let (_cert_b, key_b) = generate_self_signed(&names).unwrap();
        let err = certified_key_from_pem(
            cert_a.as_bytes(),
            key_b.as_bytes(),
            &crypto_provider(),
            "test".into(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn aes_128_gcm_is_preferred() {
        let p = crypto_provider();
        let names: Vec<String> = p
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(names[0], "TLS13_AES_128_GCM_SHA256", "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| n.contains("GCM") || n.contains("CHACHA20")),
            "{names:?}"
        );
    }

    #[test]
    fn garbage_is_refused() {
        let err =
            certified_key_from_pem(b"hello", b"world", &crypto_provider(), "t".into()).unwrap_err();
        assert!(err.to_string().contains("CERTIFICATE"), "{err}");
    }

    #[test]
    fn self_signed_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let src = TlsConfig::SelfSigned {
            dir: dir.path().join("tls"),
        };
        let a = CertificateStore::open(src.clone(), "example.test").unwrap();
        let b = CertificateStore::open(src, "example.test").unwrap();
        assert_eq!(a.current().fingerprint, b.current().fingerprint);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tls/selfsigned.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A different host name is not covered: a new certificate is made.
        let c = CertificateStore::open(
            TlsConfig::SelfSigned {
                dir: dir.path().join("tls"),
            },
            "other.test",
        )
        .unwrap();
        assert_ne!(a.current().fingerprint, c.current().fingerprint);
    }
}
