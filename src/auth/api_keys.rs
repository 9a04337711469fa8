//! API keys for scripts and the browser extension: `ef_live_` + 32 random URL-safe characters,
//! shown once, stored as SHA-256 (the original's format, so its keys keep working).

use base64::Engine;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "ef_live_";
pub const MAX_PER_USER: i64 = 20;
pub const DEFAULT_PERMISSIONS: &[&str] = &["product_selection:write"];

/// A new key (to show once) and its hash (to store).
pub fn generate() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let key = format!("{PREFIX}{}", &encoded[..32]);
    let hash = hash(&key);
    (key, hash)
}

pub fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Cheap shape check before touching the database.
pub fn looks_valid(key: &str) -> bool {
    key.len() == PREFIX.len() + 32
        && key.starts_with(PREFIX)
        && key[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_hash() {
        let (k, h) = generate();
        assert!(looks_valid(&k), "{k}");
        assert_eq!(k.len(), 40);
        assert_eq!(h.len(), 64);
        assert_eq!(hash(&k), h);
        assert_ne!(generate().0, k);
        assert!(!looks_valid("ef_live_short"));
    }
}
