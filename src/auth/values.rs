//! Values of the identity domain that are checked once, where they enter, and carried as their
//! own types afterwards (parse, don't validate): a [`Username`] is always 3–30 allowed
//! characters, a [`NewPassword`] always meets the policy, a [`Phone`] is always digits. The API
//! and the CLI build them the same way, so their rules cannot drift apart.

use std::fmt;

use zeroize::Zeroize;

use super::password::{MAX_BYTES, MIN_LEN};

/// 3–30 characters: letters (any script), digits, `_ - . @`; not only digits (those look like
/// phone numbers, which are a separate login identifier). Surrounding spaces are trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let name = raw.trim();
        let n = name.chars().count();
        if !(3..=30).contains(&n) {
            return Err("must have 3 to 30 characters");
        }
        if !name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        {
            return Err("may contain letters, digits and _ - . @ only");
        }
        if name.chars().all(|c| c.is_ascii_digit()) {
            return Err("must not consist of digits only");
        }
        Ok(Username(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that meets the policy for new passwords: at least 8 characters, at most 1024 bytes
/// (argon2 over megabytes would be a denial of service). Wiped from memory when dropped; its
/// `Debug` never shows it.
pub struct NewPassword(String);

impl NewPassword {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.len() > MAX_BYTES {
            Err("The password may be at most 1024 bytes")
        } else if raw.chars().count() < MIN_LEN {
            Err("The password must have at least 8 characters")
        } else {
            Ok(NewPassword(raw.to_owned()))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for NewPassword {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(***)")
    }
}

/// Digits with an optional leading `+`, 5 to 20 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let phone = raw.trim();
        let digits = phone.strip_prefix('+').unwrap_or(phone);
        if !(5..=20).contains(&phone.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must be 5 to 20 digits, optionally starting with +");
        }
        Ok(Phone(phone.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `138****5678`: enough to recognise, not enough to misuse.
    pub fn masked(phone: &str) -> String {
        let chars: Vec<char> = phone.chars().collect();
        if chars.len() < 8 {
            return "****".to_owned();
        }
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}****{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("alice_01").is_ok());
        assert_eq!(Username::parse("  李小龙 ").unwrap().as_str(), "李小龙");
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse("12345678").is_err());
        assert!(Username::parse("admin' OR '1'='1").is_err());
        assert!(Username::parse("x; DROP TABLE users;--").is_err());
        assert!(Username::parse(&"a".repeat(31)).is_err());
    }

    #[test]
    fn passwords() {
        assert!(NewPassword::parse("short").is_err());
        assert!(NewPassword::parse("长度够八个字符了吗").is_ok());
        assert!(NewPassword::parse(&"a".repeat(1025)).is_err());
        assert!(NewPassword::parse(&"a".repeat(1024)).is_ok());
        assert_eq!(
            format!("{:?}", NewPassword::parse("secret-password").unwrap()),
            "NewPassword(***)"
        );
    }

    #[test]
    fn phones_are_checked_and_masked() {
        assert!(Phone::parse("+79161234567").is_ok());
        assert!(Phone::parse("12ab5").is_err());
        assert_eq!(Phone::masked("13812345678"), "138****5678");
        assert_eq!(Phone::masked("+79161234567"), "+79****4567");
        assert_eq!(Phone::masked("123"), "****");
    }
}
