//! The exchange-rate service (contract §2.8 X1–X7, §6): configuration, refresh, reads.
//!
//! Rules, and where they differ from the original:
//! - Configuration, refresh and the connection test are **admins' only** (§7 S9: any
//!   sub-account could replace the installation's key or burn its quota). Changes are audited
//!   in the same transaction, the key as `******`.
//! - The key is sealed with the data key before it is stored, never returned (`******`), and
//!   sending `******` (or nothing) back keeps the stored one.
//! - Reads come from the newest stored row, never from a cache that expires (§7 C10): a rate
//!   stays available when the provider fails, marked `stale` with its age, until a refresh
//!   succeeds. A pair not fetched directly is derived from the opposite one.
//! - A refresh fetches both CNY→RUB and RUB→CNY, checks each answer (`provider`), and stores
//!   both or neither; a failed one records why in `exchange_rate_config.last_refresh_*`.
//! - Bad input (currency codes, `range`, amounts) is a 422 naming the field, never a 500.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;
use serde_json::{Value, json};

use super::provider::{ProviderError, valid_currency, valid_key};
use super::{ExchangeRates, MAX_JUMP, PAIRS, PROVIDER, STALE_AFTER, VALID_FOR};
use crate::auth::Actor;
use crate::auth::audit::{self, Entry};
use crate::db::sql::Sql;
use crate::domain::{DomainError, Work};
use crate::secrets::{EXCHANGE_RATE_KEY_CONTEXT, MASK};

/// Largest amount `convert` accepts (either sign).
const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// The configuration row.
#[derive(Debug, Clone)]
pub struct ConfigRow {
    pub id: i32,
    pub api_key_enc: String,
    pub api_provider: String,
    pub is_enabled: bool,
    pub base_currency: String,
    pub last_refresh_at: Option<DateTime<Utc>>,
    pub last_refresh_status: Option<String>,
    pub last_refresh_error: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
}

const CONFIG_COLUMNS: &str =
    "id, api_key, api_provider, is_enabled, base_currency, last_refresh_at,
     last_refresh_status, last_refresh_error, last_success_at";

fn config_row(r: &tokio_postgres::Row) -> ConfigRow {
    ConfigRow {
        id: r.get(0),
        api_key_enc: r.get(1),
        api_provider: r.get(2),
        is_enabled: r.get(3),
        base_currency: r.get(4),
        last_refresh_at: r.get(5),
        last_refresh_status: r.get(6),
        last_refresh_error: r.get(7),
        last_success_at: r.get(8),
    }
}

pub async fn load_config(c: &impl Sql) -> Result<Option<ConfigRow>, DomainError> {
    Ok(c.maybe_row(
        &format!("SELECT {CONFIG_COLUMNS} FROM exchange_rate_config ORDER BY id LIMIT 1"),
        &[],
    )
    .await?
    .as_ref()
    .map(config_row))
}

fn require_admin(actor: &Actor) -> Result<(), DomainError> {
    actor.require_session()?;
    if actor.is_admin() || actor.is_operator() {
        Ok(())
    } else {
        Err(DomainError::denied(
            "PERMISSION_DENIED",
            "只有管理员可以配置、测试或刷新汇率服务",
        ))
    }
}

fn currency(loc: &str, raw: Option<&str>, default: &str) -> Result<String, DomainError> {
    let code = raw.unwrap_or(default).trim().to_ascii_uppercase();
    if valid_currency(&code) {
        Ok(code)
    } else {
        Err(DomainError::invalid(
            loc,
            "value_error",
            "must be a three-letter currency code such as CNY or RUB",
        ))
    }
}

/// X2 `GET /exchange-rates/config`: the configuration without its key.
pub async fn config_view(c: &impl Sql) -> Result<Value, DomainError> {
    Ok(match load_config(c).await? {
        None => json!({"configured": false, "message": "尚未配置汇率API"}),
        Some(cfg) => json!({
            "configured": true,
            "id": cfg.id,
            "api_provider": cfg.api_provider,
            "is_enabled": cfg.is_enabled,
            "base_currency": cfg.base_currency,
            "api_key": MASK,
            "last_refresh": {
                "at": cfg.last_refresh_at,
                "status": cfg.last_refresh_status,
                "error": cfg.last_refresh_error,
            },
            "last_success_at": cfg.last_success_at,
        }),
    })
}

/// X1's body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConfigBody {
    pub api_key: Option<String>,
    pub api_provider: Option<String>,
    pub base_currency: Option<String>,
    pub is_enabled: Option<bool>,
}

/// The key a request carries, unless it means "keep the stored one" (absent, empty, `******`).
fn new_key(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|k| !k.is_empty() && *k != MASK)
}

/// X1 `POST /exchange-rates/config` (admins): create or change the one configuration.
pub async fn configure(
    work: &mut Work<'_>,
    actor: &Actor,
    rates: &ExchangeRates,
    body: ConfigBody,
) -> Result<Value, DomainError> {
    require_admin(actor)?;
    let provider = body.api_provider.as_deref().unwrap_or(PROVIDER).trim();
    if provider != PROVIDER {
        return Err(DomainError::invalid(
            "api_provider",
            "value_error",
            format!("must be {PROVIDER} (the only provider supported)"),
        ));
    }
    let base = currency("base_currency", body.base_currency.as_deref(), "CNY")?;
    let existing = work
        .tx()
        .maybe_row(
            "SELECT id, is_enabled FROM exchange_rate_config ORDER BY id LIMIT 1 FOR UPDATE",
            &[],
        )
        .await?;
    let key = new_key(body.api_key.as_deref());
    if let Some(k) = key
        && !valid_key(k)
    {
        return Err(DomainError::invalid(
            "api_key",
            "value_error",
            "must be the provider's key: 8 to 128 letters, digits, - or _",
        ));
    }
    let sealed = match key {
        Some(k) => Some(
            rates
                .keys()?
                .seal(EXCHANGE_RATE_KEY_CONTEXT, k)
                .map_err(|e| super::secrets_error(&e))?,
        ),
        None => None,
    };
    let row = match (existing, sealed.as_ref()) {
        (None, None) => {
            return Err(DomainError::invalid(
                "api_key",
                "missing",
                "the provider's API key is required the first time",
            ));
        }
        (None, Some(sealed)) => {
            let enabled = body.is_enabled.unwrap_or(true);
            // Two admins configuring at once: the one-row constraint refuses the second.
            work.tx()
                .row(
                    "INSERT INTO exchange_rate_config (api_key, api_provider, is_enabled, base_currency)
                     VALUES ($1, $2, $3, $4)
                     RETURNING id, api_provider, is_enabled, base_currency",
                    &[sealed, &provider, &enabled, &base],
                )
                .await
                .map_err(|e| {
                    if crate::db::sql::is_unique_violation(&e) {
                        DomainError::conflict(
                            "CONFIG_CHANGED",
                            "汇率API刚被另一位管理员配置，请刷新页面后重试",
                        )
                    } else {
                        DomainError::from(e)
                    }
                })?
        }
        (Some(old), sealed) => {
            let id: i32 = old.get(0);
            let enabled = body.is_enabled.unwrap_or(old.get(1));
            work.tx()
                .row(
                    "UPDATE exchange_rate_config
                        SET api_key = COALESCE($2, api_key), api_provider = $3, is_enabled = $4,
                            base_currency = $5, updated_at = now()
                      WHERE id = $1
                  RETURNING id, api_provider, is_enabled, base_currency",
                    &[&id, &sealed, &provider, &enabled, &base],
                )
                .await?
        }
    };
    let id: i32 = row.get(0);
    let view = json!({
        "id": id,
        "api_provider": row.get::<_, String>(1),
        "is_enabled": row.get::<_, bool>(2),
        "base_currency": row.get::<_, String>(3),
    });
    let mut changes = view.clone();
    changes["api_key"] = json!(if sealed.is_some() { MASK } else { "unchanged" });
    audit::write(
        work.tx(),
        actor,
        Entry::new("system", "update", "配置汇率API")
            .record("exchange_rate_config", id)
            .changes(changes),
    )
    .await?;
    Ok(view)
}

/// A rate as the service knows it.
#[derive(Debug, Clone)]
pub struct Known {
    pub rate: Decimal,
    pub fetched_at: Option<DateTime<Utc>>,
    /// Derived from the opposite pair (1 / rate).
    pub derived: bool,
    pub age_seconds: i64,
    pub stale: bool,
}

impl Known {
    fn json(&self, from: &str, to: &str) -> Value {
        json!({
            "from_currency": from,
            "to_currency": to,
            "rate": self.rate.to_string(),
            "cached": true,
            "fetched_at": self.fetched_at,
            "age_seconds": self.age_seconds,
            "stale": self.stale,
        })
    }
}

/// Whether a rate fetched at `fetched_at` is stale: older than [`STALE_AFTER`], or a later
/// refresh failed.
fn staleness(
    fetched_at: DateTime<Utc>,
    cfg: Option<&ConfigRow>,
    now: DateTime<Utc>,
) -> (i64, bool) {
    let age = (now - fetched_at).num_seconds().max(0);
    let failed_since = cfg.is_some_and(|c| {
        c.last_refresh_status.as_deref() == Some("failed")
            && c.last_refresh_at.is_some_and(|at| at > fetched_at)
    });
    (age, failed_since || age > STALE_AFTER.as_secs() as i64)
}

async fn newest(
    c: &impl Sql,
    from: &str,
    to: &str,
) -> Result<Option<(Decimal, DateTime<Utc>)>, DomainError> {
    Ok(c.maybe_row(
        "SELECT rate, fetched_at FROM exchange_rates
          WHERE from_currency = $1 AND to_currency = $2
          ORDER BY fetched_at DESC, id DESC LIMIT 1",
        &[&from, &to],
    )
    .await?
    .map(|r| (r.get(0), r.get(1))))
}

/// The newest known rate from `from` to `to` (derived from `to`→`from` when only that one is
/// stored; 1 for a currency to itself).
pub async fn lookup(c: &impl Sql, from: &str, to: &str) -> Result<Option<Known>, DomainError> {
    if from == to {
        return Ok(Some(Known {
            rate: Decimal::ONE,
            fetched_at: None,
            derived: false,
            age_seconds: 0,
            stale: false,
        }));
    }
    let (rate, fetched_at, derived) = match newest(c, from, to).await? {
        Some((rate, at)) => (rate, at, false),
        None => match newest(c, to, from).await? {
            Some((rate, at)) if !rate.is_zero() => {
                let mut inverse = (Decimal::ONE / rate).round_dp(6);
                inverse.rescale(6);
                (inverse, at, true)
            }
            _ => return Ok(None),
        },
    };
    let cfg = load_config(c).await?;
    let (age_seconds, stale) = staleness(fetched_at, cfg.as_ref(), Utc::now());
    Ok(Some(Known {
        rate,
        fetched_at: Some(fetched_at),
        derived,
        age_seconds,
        stale,
    }))
}

fn not_available(from: &str, to: &str) -> DomainError {
    DomainError::not_found(
        "EXCHANGE_RATE_NOT_AVAILABLE",
        format!("尚无 {from}→{to} 汇率：请管理员在 系统配置 → 第三方服务 中配置汇率API并刷新"),
    )
}

/// X3's query.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RateQuery {
    pub from_currency: Option<String>,
    pub to_currency: Option<String>,
    pub force_refresh: bool,
}

/// X3 `GET /exchange-rates/rate`: the newest stored rate. `force_refresh` refreshes first when
/// an admin asks (a provider call costs the installation's quota); for others it is ignored.
pub async fn rate(
    client: &mut deadpool_postgres::Client,
    actor: &Actor,
    rates: &ExchangeRates,
    q: &RateQuery,
) -> Result<Value, DomainError> {
    let from = currency("from_currency", q.from_currency.as_deref(), "CNY")?;
    let to = currency("to_currency", q.to_currency.as_deref(), "RUB")?;
    let mut fresh = false;
    if q.force_refresh && require_admin(actor).is_ok() {
        fresh = matches!(
            refresh(client, rates, actor).await?,
            Refreshed::Success { .. }
        );
    }
    let known = lookup(&*client, &from, &to)
        .await?
        .ok_or_else(|| not_available(&from, &to))?;
    let mut v = known.json(&from, &to);
    v["cached"] = json!(!fresh);
    Ok(v)
}

/// X4's body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConvertBody {
    pub amount: Value,
    pub from_currency: Option<String>,
    pub to_currency: Option<String>,
}

fn amount(v: &Value) -> Result<Decimal, DomainError> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let bad = || {
        DomainError::invalid(
            "amount",
            "value_error",
            format!("must be a decimal number such as \"100.50\", at most {MAX_AMOUNT} either way"),
        )
    };
    let d: Decimal = text
        .parse()
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| bad())?;
    if d.abs() > Decimal::from(MAX_AMOUNT) {
        return Err(bad());
    }
    Ok(d)
}

/// X4 `POST /exchange-rates/convert`: `amount × rate`, rounded to 0.01.
pub async fn convert(c: &impl Sql, body: &ConvertBody) -> Result<Value, DomainError> {
    let amount = amount(&body.amount)?;
    let from = currency("from_currency", body.from_currency.as_deref(), "CNY")?;
    let to = currency("to_currency", body.to_currency.as_deref(), "RUB")?;
    let known = lookup(c, &from, &to)
        .await?
        .ok_or_else(|| not_available(&from, &to))?;
    let converted = (amount * known.rate).round_dp(2);
    Ok(json!({
        "amount": amount.to_string(),
        "from_currency": from,
        "to_currency": to,
        "rate": known.rate.to_string(),
        "converted_amount": converted.to_string(),
        "fetched_at": known.fetched_at,
        "stale": known.stale,
    }))
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq)]
pub enum Refreshed {
    /// No configuration, or it is disabled.
    Skipped,
    Success {
        /// CNY→RUB.
        rate: Decimal,
        fetched_at: DateTime<Utc>,
        records: usize,
    },
    /// The provider gave nothing usable; the last good rates are kept (and now stale).
    Failed(String),
}

impl Refreshed {
    /// X5's answer.
    pub fn to_json(&self) -> Value {
        match self {
            Refreshed::Skipped => json!({
                "status": "skipped", "message": "汇率服务未配置或已禁用", "rate": null,
                "fetched_at": null, "records_processed": 0, "records_updated": 0,
            }),
            Refreshed::Success {
                rate,
                fetched_at,
                records,
            } => json!({
                "status": "success", "message": "汇率刷新成功", "rate": rate.to_string(),
                "fetched_at": fetched_at, "records_processed": records, "records_updated": records,
            }),
            Refreshed::Failed(why) => json!({
                "status": "failed", "message": format!("汇率刷新失败: {why}"), "rate": null,
                "fetched_at": null, "records_processed": 0, "records_updated": 0,
            }),
        }
    }
}

/// Fetch every pair of [`PAIRS`] and check it against the last good rate.
async fn fetch_all(
    c: &impl Sql,
    rates: &ExchangeRates,
    key: &str,
) -> Result<Vec<(&'static str, &'static str, Decimal)>, ProviderError> {
    let mut out = Vec::new();
    for (from, to) in PAIRS {
        let got = rates.provider().latest(key, from, &[to]).await?;
        for (_, rate) in got {
            if let Ok(Some((last, _))) = newest(c, from, to).await
                && !last.is_zero()
            {
                let ratio = (rate / last).to_f64().unwrap_or(f64::INFINITY);
                if !(1.0 / MAX_JUMP..=MAX_JUMP).contains(&ratio) {
                    return Err(ProviderError::BadAnswer(format!(
                        "{from}→{to} jumped from {last} to {rate} (more than ×{MAX_JUMP} at once)"
                    )));
                }
            }
            out.push((from, to, rate));
        }
    }
    Ok(out)
}

/// X5 `POST /exchange-rates/refresh` (admins) and the hourly job (`Actor::system`): fetch both
/// pairs and store them — or record why not and keep the last good ones.
pub async fn refresh(
    client: &mut deadpool_postgres::Client,
    rates: &ExchangeRates,
    actor: &Actor,
) -> Result<Refreshed, DomainError> {
    require_admin(actor)?;
    let Some(cfg) = load_config(&*client).await? else {
        return Ok(Refreshed::Skipped);
    };
    if !cfg.is_enabled {
        return Ok(Refreshed::Skipped);
    }
    let fetched = match rates.keys().and_then(|ring| {
        ring.open(EXCHANGE_RATE_KEY_CONTEXT, &cfg.api_key_enc)
            .map_err(|e| super::secrets_error(&e))
    }) {
        Ok(key) => fetch_all(&*client, rates, &key)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let work = Work::begin(client).await?;
    let outcome = match fetched {
        Ok(pairs) => {
            let fetched_at: DateTime<Utc> = work.tx().row("SELECT now()", &[]).await?.get(0);
            let expires_at = fetched_at + chrono::Duration::seconds(VALID_FOR.as_secs() as i64);
            for (from, to, rate) in &pairs {
                work.tx()
                    .exec(
                        "INSERT INTO exchange_rates (from_currency, to_currency, rate, fetched_at,
                                                     expires_at, source)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[from, to, rate, &fetched_at, &expires_at, &cfg.api_provider],
                    )
                    .await?;
            }
            work.tx()
                .exec(
                    "UPDATE exchange_rate_config
                        SET last_refresh_at = $2, last_refresh_status = 'success',
                            last_refresh_error = NULL, last_success_at = $2
                      WHERE id = $1",
                    &[&cfg.id, &fetched_at],
                )
                .await?;
            let rate = pairs
                .iter()
                .find(|(f, t, _)| *f == "CNY" && *t == "RUB")
                .map(|p| p.2)
                .unwrap_or_default();
            Refreshed::Success {
                rate,
                fetched_at,
                records: pairs.len(),
            }
        }
        Err(why) => {
            tracing::warn!(
                error = %why,
                "exchange-rate refresh failed; the last good rates are kept (marked stale)"
            );
            let stored = crate::jobs::truncate(&why, 480);
            work.tx()
                .exec(
                    "UPDATE exchange_rate_config
                        SET last_refresh_at = now(), last_refresh_status = 'failed',
                            last_refresh_error = $2
                      WHERE id = $1",
                    &[&cfg.id, &stored],
                )
                .await?;
            Refreshed::Failed(why)
        }
    };
    if actor.user().is_some() {
        let result = outcome.to_json();
        audit::write(
            work.tx(),
            actor,
            Entry::new("system", "update", "刷新汇率")
                .record("exchange_rates", cfg.id)
                .changes(json!({"status": result["status"], "rate": result["rate"]})),
        )
        .await?;
    }
    let _ = work.commit().await?;
    Ok(outcome)
}

/// X6's query.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HistoryQuery {
    pub from_currency: Option<String>,
    pub to_currency: Option<String>,
    pub range: Option<String>,
}

/// X6 `GET /exchange-rates/history`: the stored rates of `range` (today since 00:00 UTC, week
/// = 7 days, month = 30 days), oldest first.
pub async fn history(c: &impl Sql, q: &HistoryQuery) -> Result<Value, DomainError> {
    let from = currency("from_currency", q.from_currency.as_deref(), "CNY")?;
    let to = currency("to_currency", q.to_currency.as_deref(), "RUB")?;
    let range = q.range.as_deref().unwrap_or("today");
    let since = match range {
        "today" => "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
        "week" => "now() - interval '7 days'",
        "month" => "now() - interval '30 days'",
        _ => {
            return Err(DomainError::invalid(
                "range",
                "value_error",
                "must be today, week or month",
            ));
        }
    };
    let rows = c
        .rows(
            &format!(
                "SELECT fetched_at, rate FROM exchange_rates
                  WHERE from_currency = $1 AND to_currency = $2 AND fetched_at >= {since}
                  ORDER BY fetched_at, id LIMIT 10000"
            ),
            &[&from, &to],
        )
        .await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            let at: DateTime<Utc> = r.get(0);
            let rate: Decimal = r.get(1);
            json!({"time": at, "rate": rate.to_f64()})
        })
        .collect();
    Ok(json!({"from_currency": from, "to_currency": to, "time_range": range, "data": data}))
}

/// X7's body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TestBody {
    pub api_key: Option<String>,
}

/// X7 `POST /exchange-rates/test-connection` (admins): one CNY→RUB call with the given key (or
/// the stored one when the key is `******` or absent). Stores nothing.
pub async fn test_connection(
    c: &impl Sql,
    actor: &Actor,
    rates: &ExchangeRates,
    body: &TestBody,
) -> Result<Value, DomainError> {
    require_admin(actor)?;
    let key = match new_key(body.api_key.as_deref()) {
        Some(k) => zeroize::Zeroizing::new(k.to_owned()),
        None => {
            let cfg = load_config(c).await?.ok_or_else(|| {
                DomainError::invalid("api_key", "missing", "give the key to test")
            })?;
            rates
                .keys()?
                .open(EXCHANGE_RATE_KEY_CONTEXT, &cfg.api_key_enc)
                .map_err(|e| super::secrets_error(&e))?
        }
    };
    Ok(match rates.provider().latest(&key, "CNY", &["RUB"]).await {
        Ok(got) => json!({
            "success": true,
            "message": "API连接成功",
            "rate": got.first().map(|(_, r)| r.to_string()),
        }),
        Err(e) => json!({"success": false, "message": format!("API连接失败: {e}")}),
    })
}

/// G1's `exchange_rate`: `{cny_to_rub, rub_to_cny, updated_at, stale, age_seconds}` from the
/// newest stored rates, or `None` when none is known.
pub async fn for_global_settings(c: &impl Sql) -> Result<Option<Value>, DomainError> {
    let cny_rub = lookup(c, "CNY", "RUB").await?;
    let rub_cny = lookup(c, "RUB", "CNY").await?;
    let (Some(a), Some(b)) = (cny_rub, rub_cny) else {
        return Ok(None);
    };
    let updated_at = a.fetched_at.max(b.fetched_at);
    Ok(Some(json!({
        "cny_to_rub": a.rate.to_string(),
        "rub_to_cny": b.rate.to_string(),
        "updated_at": updated_at,
        "stale": a.stale || b.stale,
        "age_seconds": a.age_seconds.max(b.age_seconds),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(status: &str, at: DateTime<Utc>) -> ConfigRow {
        ConfigRow {
            id: 1,
            api_key_enc: String::new(),
            api_provider: PROVIDER.into(),
            is_enabled: true,
            base_currency: "CNY".into(),
            last_refresh_at: Some(at),
            last_refresh_status: Some(status.into()),
            last_refresh_error: None,
            last_success_at: None,
        }
    }

    #[test]
    fn a_rate_is_stale_when_old_or_when_a_later_refresh_failed() {
        let now = Utc::now();
        let fetched = now - chrono::Duration::minutes(30);
        assert_eq!(staleness(fetched, None, now), (1800, false));
        assert!(staleness(fetched, Some(&cfg("failed", now)), now).1);
        assert!(!staleness(fetched, Some(&cfg("success", now)), now).1);
        assert!(staleness(now - chrono::Duration::hours(3), None, now).1);
    }

    #[test]
    fn amounts_are_decimals_within_bounds() {
        assert_eq!(amount(&json!("100.50")).unwrap().to_string(), "100.50");
        assert_eq!(amount(&json!(3)).unwrap().to_string(), "3");
        assert!(amount(&json!("1e13")).is_err());
        assert!(amount(&json!("abc")).is_err());
        assert!(amount(&json!(null)).is_err());
    }

    #[test]
    fn the_mask_means_unchanged() {
        assert_eq!(new_key(Some(MASK)), None);
        assert_eq!(new_key(Some("  ")), None);
        assert_eq!(new_key(None), None);
        assert_eq!(new_key(Some("abc")), Some("abc"));
    }
}
