//! Secrets: `Secret`, a string never printed by `Debug`, compared in constant time, wiped on
//! drop; and making and keeping one (`generate_secret`, owner-only files). The loader, the
//! first-admin bootstrap and the self-signed TLS key all write their secrets through
//! `write_private_file`, so there is one place that gets the mode and the atomic rename right.

use std::fmt;
use std::io::Write;
use std::path::Path;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret itself; call sites are the only places it leaves this type.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.chars().count()
    }

    pub fn ct_eq(&self, other: &str) -> bool {
        self.0.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(unset)")
        } else {
            f.write_str("Secret(redacted)")
        }
    }
}

impl crate::config::value::ConfigValue for Secret {
    fn parse_value(raw: &str) -> Result<Self, crate::config::value::Invalid> {
        Ok(Secret::new(raw))
    }
}

/// The shortest secret accepted in production (the guide: "64位以上随机字符串").
pub const MIN_SECRET_LEN: usize = 64;

/// 64 random bytes, URL-safe base64 without padding: 86 characters, like the guide's
/// `secrets.token_urlsafe(64)`.
pub fn generate_secret() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 64];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The secret kept in `path`, or a new one generated and written there (owner-only) when the
/// file is missing or too short; `--dev` uses it so tokens survive restarts.
pub(super) fn load_or_generate_secret(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().len() >= MIN_SECRET_LEN => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let secret = generate_secret();
    write_private_file(path, secret.as_bytes())?;
    Ok(secret)
}

/// The data key kept in `path`, or a new one (`secrets::generate_key`) written there (owner-only)
/// when the file is missing or empty.
pub(super) fn load_or_generate_data_key(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = crate::secrets::generate_key();
    write_private_file(path, format!("{key}\n").as_bytes())?;
    Ok(key)
}

/// Write a file readable by its owner only (0600), replacing it atomically.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(redacted)");
        assert!(s.ct_eq("hunter2-very-secret"));
        assert!(!s.ct_eq("hunter2"));
    }
}
