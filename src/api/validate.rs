//! Input rules shared by the API's handlers, reported as the original's 422
//! `validation_errors` (`{type, loc, msg}`; the submitted value is never echoed — it could be a
//! password).

use super::error::{ApiError, FieldError};

#[derive(Default)]
pub struct Checks {
    errors: Vec<FieldError>,
}

impl Checks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record `msg` for field `loc` unless `ok`.
    pub fn check(&mut self, ok: bool, loc: &str, kind: &str, msg: impl Into<String>) -> &mut Self {
        if !ok {
            self.errors.push(FieldError {
                kind: kind.to_owned(),
                loc: std::iter::once("body".to_owned())
                    .chain(loc.split('.').map(str::to_owned))
                    .collect(),
                msg: msg.into(),
            });
        }
        self
    }

    pub fn len_between(&mut self, value: &str, loc: &str, min: usize, max: usize) -> &mut Self {
        let n = value.chars().count();
        self.check(
            n >= min && n <= max,
            loc,
            "string_length",
            format!("must have {min} to {max} characters"),
        )
    }

    pub fn finish(&mut self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(std::mem::take(&mut self.errors)))
        }
    }
}

/// Usernames: 3–30 characters; letters (any script), digits, `_ - . @`; not only digits (those
/// look like phone numbers, which are a separate login identifier).
pub fn username_problem(name: &str) -> Option<&'static str> {
    let n = name.chars().count();
    if !(3..=30).contains(&n) {
        return Some("must have 3 to 30 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
    {
        return Some("may contain letters, digits and _ - . @ only");
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Some("must not consist of digits only");
    }
    None
}

/// Phone numbers: digits with an optional leading `+`, 5 to 20 characters.
pub fn phone_problem(phone: &str) -> Option<&'static str> {
    let digits = phone.strip_prefix('+').unwrap_or(phone);
    if !(5..=20).contains(&phone.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some("must be 5 to 20 digits, optionally starting with +");
    }
    None
}

/// Free-text lists (permissions): bounded count and length, printable.
pub fn string_list_problem(items: &[String], max_items: usize, max_len: usize) -> Option<String> {
    if items.len() > max_items {
        return Some(format!("at most {max_items} entries"));
    }
    if items
        .iter()
        .any(|s| s.is_empty() || s.chars().count() > max_len || s.chars().any(char::is_control))
    {
        return Some(format!(
            "entries must be 1 to {max_len} printable characters"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(username_problem("alice_01"), None);
        assert_eq!(username_problem("李小龙"), None);
        assert!(username_problem("ab").is_some());
        assert!(username_problem("12345678").is_some());
        assert!(username_problem("admin' OR '1'='1").is_some());
        assert!(username_problem("x; DROP TABLE users;--").is_some());
        assert!(username_problem(&"a".repeat(31)).is_some());
    }
}
