//! Global settings of the Ozon pages (contract §2.7 G1, G3, G4; §3.5): the display time zone the
//! order filters and daily statistics use, the image CDN, the system and credit names — and, on
//! `GET /ozon/global-settings`, the exchange rate the pages read.
//!
//! Everyone logged in reads; only admins write (audited). Values are JSON objects of at most
//! [`MAX_VALUE_BYTES`]; `default_timezone.value` must be a time zone PostgreSQL knows, so the
//! date math (done by PostgreSQL, `AT TIME ZONE`) can never fail on a stored value. The seeded
//! time zone is the web app's default, `Asia/Shanghai` (the original's server used UTC, §7 C11).

use serde_json::{Value, json};

use crate::auth::Actor;
use crate::auth::audit::{self, Entry};
use crate::db::sql::Sql;
use crate::domain::{DomainError, Work};

pub const DEFAULT_TIME_ZONE: &str = "Asia/Shanghai";
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
const MAX_KEY: usize = 100;

/// The display time zone (an IANA name PostgreSQL knows).
pub async fn time_zone(c: &impl Sql) -> Result<String, DomainError> {
    let row = c
        .maybe_row(
            "SELECT setting_value->>'value' FROM ozon_global_settings
              WHERE setting_key = 'default_timezone'",
            &[],
        )
        .await?;
    Ok(row
        .and_then(|r| r.get::<_, Option<String>>(0))
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_TIME_ZONE.to_owned()))
}

fn setting_json(key: String, value: Value, description: Option<String>) -> Value {
    json!({"setting_key": key, "setting_value": value, "description": description})
}

/// G1 `GET /ozon/global-settings`: every setting by key, and the exchange rate when one is known.
pub async fn all(c: &impl Sql, exchange_rate: Option<Value>) -> Result<Value, DomainError> {
    let rows = c
        .rows(
            "SELECT setting_key, setting_value, description FROM ozon_global_settings
              ORDER BY setting_key",
            &[],
        )
        .await?;
    let mut settings = serde_json::Map::new();
    for r in rows {
        let key: String = r.get(0);
        settings.insert(key.clone(), setting_json(key, r.get(1), r.get(2)));
    }
    Ok(json!({"settings": settings, "exchange_rate": exchange_rate}))
}

fn not_found() -> DomainError {
    DomainError::not_found("SETTING_NOT_FOUND", "Setting not found")
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// G3 `GET /ozon/global-settings/{key}`.
pub async fn one(c: &impl Sql, key: &str) -> Result<Value, DomainError> {
    if !valid_key(key) {
        return Err(not_found());
    }
    let row = c
        .maybe_row(
            "SELECT setting_key, setting_value, description FROM ozon_global_settings
              WHERE setting_key = $1",
            &[&key],
        )
        .await?
        .ok_or_else(not_found)?;
    Ok(setting_json(row.get(0), row.get(1), row.get(2)))
}

/// G4 `PUT /ozon/global-settings/{key}` `{setting_value: {...}}`: admins only; upsert, audited.
pub async fn put(
    work: &mut Work<'_>,
    actor: &Actor,
    key: &str,
    value: Value,
) -> Result<Value, DomainError> {
    actor.require_session()?;
    if !(actor.is_admin() || actor.is_operator()) {
        return Err(DomainError::denied(
            "PERMISSION_DENIED",
            "只有管理员可以修改全局设置",
        ));
    }
    if !valid_key(key) {
        return Err(DomainError::invalid(
            "key",
            "value_error",
            format!("must be 1 to {MAX_KEY} characters of a-z, 0-9 and _"),
        ));
    }
    if !value.is_object() {
        return Err(DomainError::invalid(
            "setting_value",
            "type_error",
            "must be a JSON object such as {\"value\": ...}",
        ));
    }
    if value.to_string().len() > MAX_VALUE_BYTES {
        return Err(DomainError::invalid(
            "setting_value",
            "value_error",
            format!("must be at most {MAX_VALUE_BYTES} bytes of JSON"),
        ));
    }
    if key == "default_timezone" {
        let tz = value.get("value").and_then(Value::as_str).unwrap_or("");
        let known = !tz.is_empty()
            && tz.len() <= 64
            && work
                .tx()
                .maybe_row("SELECT 1 FROM pg_timezone_names WHERE name = $1", &[&tz])
                .await?
                .is_some();
        if !known {
            return Err(DomainError::invalid(
                "setting_value.value",
                "value_error",
                "must be a time zone name such as Asia/Shanghai or Europe/Moscow",
            ));
        }
    }
    let description = format!("Auto-created setting: {key}");
    let row = work
        .tx()
        .row(
            "INSERT INTO ozon_global_settings AS g (setting_key, setting_value, description)
             VALUES ($1, $2, $3)
             ON CONFLICT (setting_key) DO UPDATE
                SET setting_value = excluded.setting_value, updated_at = now()
             RETURNING setting_key, setting_value, description",
            &[&key, &value, &description],
        )
        .await?;
    audit::write(
        work.tx(),
        actor,
        Entry::new("system", "update", "修改全局设置")
            .record("ozon_global_settings", key)
            .changes(json!({"setting_key": key, "setting_value": value})),
    )
    .await?;
    Ok(setting_json(row.get(0), row.get(1), row.get(2)))
}
