//! User settings: per-user preferences in four sections (notifications, display, sync,
//! security), the defaults when none are stored. A domain service like `auth::accounts`: the API
//! (`/settings`, and `/auth/me`'s `settings`) only translates.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Actor;
use crate::auth::audit::{self, Entry};
use crate::db::DbError;
use crate::db::sql::Sql;
use crate::domain::{Checks, DomainError, Work};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notifications {
    email: bool,
    browser: bool,
    order_updates: bool,
    price_alerts: bool,
    inventory_alerts: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Display {
    language: String,
    timezone: String,
    currency: String,
    date_format: String,
    shop_name_format: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sync {
    auto_sync: bool,
    sync_interval: i32,
    sync_on_login: bool,
    promotions: bool,
    finance_transactions: bool,
    balance: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Security {
    two_factor_auth: bool,
    session_timeout: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    notifications: Notifications,
    display: Display,
    sync: Sync,
    security: Security,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            notifications: Notifications {
                email: true,
                browser: true,
                order_updates: true,
                price_alerts: true,
                inventory_alerts: true,
            },
            display: Display {
                language: "zh-CN".into(),
                timezone: "Asia/Shanghai".into(),
                currency: "RUB".into(),
                date_format: "YYYY-MM-DD".into(),
                shop_name_format: "both".into(),
            },
            sync: Sync {
                auto_sync: true,
                sync_interval: 60,
                sync_on_login: true,
                promotions: true,
                finance_transactions: true,
                balance: true,
            },
            security: Security {
                two_factor_auth: false,
                session_timeout: 30,
            },
        }
    }
}

const COLUMNS: &str = "notifications_email, notifications_browser, notifications_order_updates,
    notifications_price_alerts, notifications_inventory_alerts, display_language, display_timezone,
    display_currency, display_date_format, display_shop_name_format, sync_auto_sync, sync_interval,
    sync_on_login, sync_promotions, sync_finance_transactions, sync_balance,
    security_two_factor_auth, security_session_timeout";

/// A user's settings as JSON (defaults when nothing is stored).
pub async fn load(c: &impl Sql, user_id: i64) -> Result<Value, DbError> {
    let row = c
        .maybe_row(
            &format!("SELECT {COLUMNS} FROM user_settings WHERE user_id = $1"),
            &[&user_id],
        )
        .await?;
    let s = match row {
        None => Settings::default(),
        Some(r) => Settings {
            notifications: Notifications {
                email: r.get(0),
                browser: r.get(1),
                order_updates: r.get(2),
                price_alerts: r.get(3),
                inventory_alerts: r.get(4),
            },
            display: Display {
                language: r.get(5),
                timezone: r.get(6),
                currency: r.get(7),
                date_format: r.get(8),
                shop_name_format: r.get(9),
            },
            sync: Sync {
                auto_sync: r.get(10),
                sync_interval: r.get(11),
                sync_on_login: r.get(12),
                promotions: r.get(13),
                finance_transactions: r.get(14),
                balance: r.get(15),
            },
            security: Security {
                two_factor_auth: r.get(16),
                session_timeout: r.get(17),
            },
        },
    };
    Ok(serde_json::to_value(s).unwrap_or_default())
}

fn owner(actor: &Actor) -> Result<i64, DomainError> {
    actor.require_shops()?;
    actor.user().map(|u| u.id).ok_or_else(|| {
        DomainError::denied(
            "INSUFFICIENT_PERMISSIONS",
            "Settings belong to users; log in",
        )
    })
}

/// The actor's settings (defaults when none are stored).
pub async fn get(c: &impl Sql, actor: &Actor) -> Result<Value, DomainError> {
    Ok(load(c, owner(actor)?).await?)
}

/// Store all four sections as given.
pub async fn put(work: &mut Work<'_>, actor: &Actor, s: &Settings) -> Result<Value, DomainError> {
    actor.require_session()?;
    let user_id = owner(actor)?;
    let mut checks = Checks::new();
    checks
        .len_between(&s.display.language, "display.language", 2, 10)
        .len_between(&s.display.timezone, "display.timezone", 1, 50)
        .len_between(&s.display.date_format, "display.date_format", 1, 20)
        .check(
            s.display.currency.len() == 3
                && s.display.currency.bytes().all(|b| b.is_ascii_uppercase()),
            "display.currency",
            "value_error",
            "must be a three-letter currency code such as RUB",
        )
        .check(
            matches!(s.display.shop_name_format.as_str(), "ru" | "cn" | "both"),
            "display.shop_name_format",
            "enum",
            "must be ru, cn or both",
        )
        .check(
            (1..=1440).contains(&s.sync.sync_interval),
            "sync.sync_interval",
            "value_error",
            "must be 1 to 1440 minutes",
        )
        .check(
            (1..=1440).contains(&s.security.session_timeout),
            "security.session_timeout",
            "value_error",
            "must be 1 to 1440 minutes",
        );
    checks.finish()?;
    // `/auth/me` carries the settings.
    work.effects().stale([user_id]);
    let tx = work.tx();
    tx.exec(
            &format!(
                "INSERT INTO user_settings (user_id, {COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
                 ON CONFLICT (user_id) DO UPDATE SET
                   notifications_email = EXCLUDED.notifications_email,
                   notifications_browser = EXCLUDED.notifications_browser,
                   notifications_order_updates = EXCLUDED.notifications_order_updates,
                   notifications_price_alerts = EXCLUDED.notifications_price_alerts,
                   notifications_inventory_alerts = EXCLUDED.notifications_inventory_alerts,
                   display_language = EXCLUDED.display_language,
                   display_timezone = EXCLUDED.display_timezone,
                   display_currency = EXCLUDED.display_currency,
                   display_date_format = EXCLUDED.display_date_format,
                   display_shop_name_format = EXCLUDED.display_shop_name_format,
                   sync_auto_sync = EXCLUDED.sync_auto_sync,
                   sync_interval = EXCLUDED.sync_interval,
                   sync_on_login = EXCLUDED.sync_on_login,
                   sync_promotions = EXCLUDED.sync_promotions,
                   sync_finance_transactions = EXCLUDED.sync_finance_transactions,
                   sync_balance = EXCLUDED.sync_balance,
                   security_two_factor_auth = EXCLUDED.security_two_factor_auth,
                   security_session_timeout = EXCLUDED.security_session_timeout,
                   updated_at = now()"
            ),
            &[
                &user_id,
                &s.notifications.email,
                &s.notifications.browser,
                &s.notifications.order_updates,
                &s.notifications.price_alerts,
                &s.notifications.inventory_alerts,
                &s.display.language,
                &s.display.timezone,
                &s.display.currency,
                &s.display.date_format,
                &s.display.shop_name_format,
                &s.sync.auto_sync,
                &s.sync.sync_interval,
                &s.sync.sync_on_login,
                &s.sync.promotions,
                &s.sync.finance_transactions,
                &s.sync.balance,
                &s.security.two_factor_auth,
                &s.security.session_timeout,
            ],
        )
    .await?;
    audit::write(
        tx,
        actor,
        Entry::new("settings", "update", "更新设置").record("user_settings", user_id),
    )
    .await?;
    Ok(load(tx, user_id).await?)
}

/// Back to the defaults.
pub async fn reset(work: &mut Work<'_>, actor: &Actor) -> Result<(), DomainError> {
    actor.require_session()?;
    let user_id = owner(actor)?;
    // `/auth/me` carries the settings.
    work.effects().stale([user_id]);
    let tx = work.tx();
    tx.exec("DELETE FROM user_settings WHERE user_id = $1", &[&user_id])
        .await?;
    audit::write(
        tx,
        actor,
        Entry::new("settings", "reset", "重置设置").record("user_settings", user_id),
    )
    .await?;
    Ok(())
}
