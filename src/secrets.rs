//! Third-party credentials at rest (Ozon Api-Keys, the exchange-rate key): encrypted with the
//! installation's data key before they reach PostgreSQL, so the database — and every backup of it
//! — holds only ciphertext.
//!
//! - **Cipher**: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`): 192-bit random nonces, so
//!   random nonces never collide in practice, and authenticated, so a changed byte fails to
//!   decrypt instead of yielding garbage.
//! - **Context binding**: every value is encrypted with associated data naming what it is
//!   (`ozon_shop.api_key:<client id>`): a ciphertext copied into another shop's row does not
//!   decrypt there.
//! - **Format**: `ef1:<key id>:<base64url(nonce ‖ ciphertext)>`. The key id (8 hex characters of
//!   the key's SHA-256) says which key of the ring encrypted it.
//! - **The data key** (`EF__DATA_KEY`, systemd credential `data_key`, generated once by the
//!   package like the secret key, or into the state directory with `--dev`) is a key ring: one or
//!   more base64url-encoded 32-byte keys separated by whitespace or commas; the first encrypts,
//!   all decrypt. `euraflow secrets rotate-data-key` puts a new key first, re-encrypts every
//!   stored value in one transaction, and then drops the old key.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::Secret;

const PREFIX: &str = "ef1";
const NONCE_LEN: usize = 24;
/// Largest plaintext accepted (Api-Keys are ~36 characters).
pub const MAX_PLAINTEXT: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsError {
    #[error(
        "no data key is configured (EF__DATA_KEY); fix: `euraflow gen-data-key > /etc/euraflow/credentials/data_key` (chmod 0640, chgrp euraflow), then restart the services"
    )]
    NoKey,
    #[error(
        "the data key is not valid: {0}; fix: each key is the output of `euraflow gen-data-key`"
    )]
    BadKey(String),
    #[error(
        "a stored secret was encrypted with data key {0}, which the configured key ring does not hold; fix: restore the data key file that was in use (or re-enter the credentials)"
    )]
    UnknownKey(String),
    #[error(
        "a stored secret does not decrypt with the data key (damaged, or moved from another record)"
    )]
    Undecryptable,
    #[error("a stored secret is not in the ef1 format")]
    Malformed,
    #[error("the value to protect is longer than {MAX_PLAINTEXT} bytes")]
    TooLong,
}

struct DataKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The installation's data keys; the first encrypts.
pub struct KeyRing {
    keys: Vec<DataKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

/// A new random data key, base64url (43 characters), for `euraflow gen-data-key`.
pub fn generate_key() -> String {
    let mut b = Zeroizing::new([0u8; 32]);
    rand::fill(&mut b[..]);
    URL_SAFE_NO_PAD.encode(&b[..])
}

fn key_id(raw: &[u8]) -> String {
    Sha256::digest(raw)[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl KeyRing {
    /// Parse a key ring (see the module's documentation).
    pub fn parse(text: &str) -> Result<KeyRing, SecretsError> {
        let mut keys = Vec::new();
        for part in text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|p| !p.is_empty())
        {
            let raw = Zeroizing::new(
                URL_SAFE_NO_PAD
                    .decode(part.trim_end_matches('='))
                    .map_err(|_| SecretsError::BadKey("a key is not base64url".into()))?,
            );
            if raw.len() != 32 {
                return Err(SecretsError::BadKey(format!(
                    "a key has {} bytes, not 32",
                    raw.len()
                )));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&raw)
                .map_err(|_| SecretsError::BadKey("a key has the wrong length".into()))?;
            let id = key_id(&raw);
            if keys.iter().any(|k: &DataKey| k.id == id) {
                continue;
            }
            keys.push(DataKey { id, cipher });
        }
        if keys.is_empty() {
            return Err(SecretsError::NoKey);
        }
        Ok(KeyRing { keys })
    }

    /// The ring from the configuration, if a data key is configured.
    pub fn from_config(key: &Secret) -> Result<Option<KeyRing>, SecretsError> {
        if key.is_empty() {
            return Ok(None);
        }
        KeyRing::parse(key.expose()).map(Some)
    }

    /// The id of the key that encrypts.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Encrypt `plaintext` for the record `context` names.
    pub fn seal(&self, context: &str, plaintext: &str) -> Result<String, SecretsError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SecretsError::TooLong);
        }
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let sealed = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Undecryptable)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(format!(
            "{PREFIX}:{}:{}",
            key.id,
            URL_SAFE_NO_PAD.encode(blob)
        ))
    }

    /// Decrypt a value sealed for `context`.
    pub fn open(&self, context: &str, stored: &str) -> Result<Zeroizing<String>, SecretsError> {
        let mut parts = stored.splitn(3, ':');
        let (Some(PREFIX), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretsError::Malformed);
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SecretsError::UnknownKey(id.to_owned()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SecretsError::Malformed)?;
        if blob.len() <= NONCE_LEN {
            return Err(SecretsError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let plain = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Undecryptable)?;
        String::from_utf8(plain)
            .map(Zeroizing::new)
            .map_err(|_| SecretsError::Undecryptable)
    }

    /// Whether `stored` is sealed with the current key (rotation skips those).
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .split(':')
            .nth(1)
            .is_some_and(|id| id == self.current_id())
    }
}

/// The associated data of an Ozon shop's Api-Key.
pub fn ozon_api_key_context(client_id: &str) -> String {
    format!("ozon_shop.api_key:{client_id}")
}

/// The associated data of the exchange-rate provider's key (one per installation).
pub const EXCHANGE_RATE_KEY_CONTEXT: &str = "exchange_rate_config.api_key";

/// How a secret is shown by the API: never the value.
pub const MASK: &str = "******";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_bound_to_its_context() {
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let sealed = ring
            .seal("ozon_shop.api_key:123", "secret-api-key")
            .unwrap();
        assert!(sealed.starts_with("ef1:"), "{sealed}");
        assert!(!sealed.contains("secret-api-key"));
        assert_eq!(
            ring.open("ozon_shop.api_key:123", &sealed)
                .unwrap()
                .as_str(),
            "secret-api-key"
        );
        // Moved to another shop's row: refused.
        assert_eq!(
            ring.open("ozon_shop.api_key:999", &sealed).unwrap_err(),
            SecretsError::Undecryptable
        );
        // Two seals of one value differ (random nonces).
        assert_ne!(
            sealed,
            ring.seal("ozon_shop.api_key:123", "secret-api-key")
                .unwrap()
        );
        // A flipped character fails.
        let mut broken = sealed.clone();
        let last = broken.pop().unwrap();
        broken.push(if last == 'A' { 'B' } else { 'A' });
        assert!(ring.open("ozon_shop.api_key:123", &broken).is_err());
    }

    #[test]
    fn a_ring_decrypts_with_any_key_and_encrypts_with_the_first() {
        let (old, new) = (generate_key(), generate_key());
        let old_ring = KeyRing::parse(&old).unwrap();
        let sealed = old_ring.seal("c", "v").unwrap();
        let ring = KeyRing::parse(&format!("{new}\n{old}")).unwrap();
        assert_eq!(ring.open("c", &sealed).unwrap().as_str(), "v");
        assert!(!ring.is_current(&sealed));
        assert!(ring.is_current(&ring.seal("c", "v").unwrap()));
        let only_new = KeyRing::parse(&new).unwrap();
        assert!(matches!(
            only_new.open("c", &sealed),
            Err(SecretsError::UnknownKey(_))
        ));
    }

    #[test]
    fn bad_rings_are_refused_with_a_reason() {
        assert_eq!(KeyRing::parse("  ").unwrap_err(), SecretsError::NoKey);
        assert!(matches!(
            KeyRing::parse("short"),
            Err(SecretsError::BadKey(_))
        ));
        assert!(matches!(
            KeyRing::parse("not base64 at all!"),
            Err(SecretsError::BadKey(_))
        ));
        assert_eq!(
            KeyRing::parse(&generate_key())
                .unwrap()
                .open("c", "plain")
                .unwrap_err(),
            SecretsError::Malformed
        );
    }
}
