//! The exchange-rate provider's client: exchangerate-api.com v6, `GET
//! <base>/v6/<api key>/latest/<FROM>` (contract §6), with the base URL from
//! `EF__EXCHANGE_RATE_API_BASE_URL` so tests and the demo talk to [`super::fake`] over real HTTP.
//!
//! What the original did not: the key goes into the URL path, so it must be a plain token (no
//! `/`, `?`, `%`), and the URL is never logged nor put into an error (reqwest's errors carry it;
//! they are stripped with `without_url`). Every answer is checked before it is believed: a
//! `result` of `success`, the base currency asked for, and a positive, finite rate within
//! [`MIN_RATE`]..[`MAX_RATE`] (what `numeric(18,6)` can hold meaningfully). Bodies are capped at
//! [`MAX_BODY`]; redirects are not followed.

use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use serde_json::Value;

/// The smallest and largest rate believed (a rate below 1e-6 would be stored as 0).
pub const MIN_RATE: f64 = 1e-6;
pub const MAX_RATE: f64 = 1e6;
/// Largest answer read (the real one lists ~160 currencies, a few KiB).
pub const MAX_BODY: usize = 256 * 1024;

/// Why the provider gave no usable rate. The messages never contain the key or the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("the exchange-rate provider did not answer within {0:?} (API请求超时)")]
    Timeout(Duration),
    #[error("the exchange-rate provider cannot be reached: {0} (网络连接失败)")]
    Connect(String),
    #[error(
        "the exchange-rate provider refused the API key ({0}); fix: enter a valid key in 系统配置 → 第三方服务 (API密钥无效或已过期)"
    )]
    InvalidKey(String),
    #[error("the exchange-rate provider answered HTTP {0} (API返回错误: {0})")]
    Status(u16),
    #[error("the exchange-rate provider reported an error: {0}")]
    Refused(String),
    #[error("the exchange-rate provider's answer is not usable: {0}")]
    BadAnswer(String),
    #[error("the exchange-rate provider has no rate for {0} (目标货币 {0} 不存在)")]
    MissingCurrency(String),
}

/// Whether `key` can be put into the provider's URL: 8 to 128 of `A-Z a-z 0-9 - _`.
pub fn valid_key(key: &str) -> bool {
    (8..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `code` is a currency code (three capital letters).
pub fn valid_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// A rate as the provider gave it, checked and rounded to the stored 6 places.
pub fn checked_rate(currency: &str, value: &Value) -> Result<Decimal, ProviderError> {
    let Some(f) = value.as_f64() else {
        return Err(ProviderError::BadAnswer(format!(
            "the rate for {currency} is not a number"
        )));
    };
    if !f.is_finite() || f <= 0.0 {
        return Err(ProviderError::BadAnswer(format!(
            "the rate for {currency} is not a positive number"
        )));
    }
    if !(MIN_RATE..=MAX_RATE).contains(&f) {
        return Err(ProviderError::BadAnswer(format!(
            "the rate for {currency} ({f}) is outside {MIN_RATE}..{MAX_RATE}"
        )));
    }
    let mut d = Decimal::from_f64(f)
        .ok_or_else(|| ProviderError::BadAnswer(format!("the rate for {currency} is unusable")))?
        .round_dp(6);
    // Six places, as `numeric(18,6)` gives it back.
    d.rescale(6);
    if d <= Decimal::ZERO {
        return Err(ProviderError::BadAnswer(format!(
            "the rate for {currency} rounds to zero"
        )));
    }
    Ok(d)
}

/// The provider's client (one `reqwest` client; cheap to clone).
#[derive(Debug, Clone)]
pub struct Provider {
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
}

impl Provider {
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Provider> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("euraflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                anyhow::anyhow!("building the exchange-rate client: {}", e.without_url())
            })?;
        Ok(Provider {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The rates from `from` to each of `to`, checked.
    pub async fn latest(
        &self,
        api_key: &str,
        from: &str,
        to: &[&str],
    ) -> Result<Vec<(String, Decimal)>, ProviderError> {
        if !valid_key(api_key) {
            return Err(ProviderError::InvalidKey(
                "it is not 8 to 128 letters, digits, - or _".into(),
            ));
        }
        if !valid_currency(from) {
            return Err(ProviderError::BadAnswer(format!(
                "{from} is not a currency code"
            )));
        }
        let url = format!("{}/v6/{api_key}/latest/{from}", self.base_url);
        let answer = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = answer.status().as_u16();
        let body = read_capped(answer).await.map_err(|e| self.transport(e))?;
        let Some(body) = body else {
            return Err(ProviderError::BadAnswer(format!(
                "the answer is larger than {MAX_BODY} bytes"
            )));
        };
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        let error_type = json
            .as_ref()
            .and_then(|j| j.get("error-type"))
            .and_then(Value::as_str)
            .map(|s| s.chars().take(100).collect::<String>());
        if matches!(
            error_type.as_deref(),
            Some("invalid-key" | "inactive-account")
        ) {
            return Err(ProviderError::InvalidKey(error_type.unwrap_or_default()));
        }
        if status == 401 || status == 403 {
            return Err(ProviderError::InvalidKey(format!("HTTP {status}")));
        }
        if let Some(e) = error_type {
            return Err(ProviderError::Refused(e));
        }
        if !(200..300).contains(&status) {
            return Err(ProviderError::Status(status));
        }
        let Some(json) = json else {
            return Err(ProviderError::BadAnswer("the answer is not JSON".into()));
        };
        if json.get("result").and_then(Value::as_str) != Some("success") {
            return Err(ProviderError::BadAnswer(
                "the answer's result is not \"success\"".into(),
            ));
        }
        if let Some(base) = json.get("base_code").and_then(Value::as_str)
            && base != from
        {
            return Err(ProviderError::BadAnswer(format!(
                "the answer is for base {} instead of {from}",
                base.chars().take(10).collect::<String>()
            )));
        }
        let Some(rates) = json.get("conversion_rates").and_then(Value::as_object) else {
            return Err(ProviderError::BadAnswer(
                "the answer has no conversion_rates".into(),
            ));
        };
        let mut out = Vec::with_capacity(to.len());
        for currency in to {
            let value = rates
                .get(*currency)
                .ok_or_else(|| ProviderError::MissingCurrency((*currency).to_owned()))?;
            out.push(((*currency).to_owned(), checked_rate(currency, value)?));
        }
        Ok(out)
    }

    /// A transport failure, without the URL (it holds the key).
    fn transport(&self, e: reqwest::Error) -> ProviderError {
        if e.is_timeout() {
            ProviderError::Timeout(self.timeout)
        } else {
            let e = e.without_url();
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            ProviderError::Connect(text.chars().take(300).collect())
        }
    }
}

/// The body, or `None` when it is longer than [`MAX_BODY`].
async fn read_capped(mut answer: reqwest::Response) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if answer.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_fit_into_a_url_path_only_when_plain() {
        assert!(valid_key("0123456789abcdef01234567"));
        assert!(!valid_key("short"));
        assert!(!valid_key("../../etc/passwd-xxxxx"));
        assert!(!valid_key("abcdefgh?x=1"));
        assert!(!valid_key(&"a".repeat(129)));
    }

    #[test]
    fn rates_must_be_positive_finite_and_sane() {
        assert_eq!(
            checked_rate("RUB", &json!(12.3456789)).unwrap().to_string(),
            "12.345679"
        );
        for bad in [
            json!(0),
            json!(-1.0),
            json!("12.3"),
            json!(null),
            json!(1e7),
            json!(1e-9),
        ] {
            assert!(checked_rate("RUB", &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_are_three_capitals() {
        assert!(valid_currency("CNY"));
        assert!(!valid_currency("cny"));
        assert!(!valid_currency("CN"));
        assert!(!valid_currency("C/Y"));
    }
}
