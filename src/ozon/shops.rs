//! Connecting an Ozon shop: its Client-Id and Api-Key (encrypted with the data key before it is
//! stored, never returned: `******`), who it belongs to and who sees it, editing, deleting and
//! testing the connection (contract §2.2, S1–S6).
//!
//! Rules, where the original had none (§7 S1, C6, C14, C15, C17, C18):
//! - a Client-Id belongs to one shop (a unique index, not just a check in the handler): adding it
//!   again is `SHOP_EXISTS` for its owner and `SHOP_BINDIED` for anyone else;
//! - the creator, the creator's main account (for a sub-account) and every admin are linked to the
//!   new shop in the same transaction, so `/auth/me` and new tokens carry it at once;
//! - a main account may own as many shops as its level's `max_shops` (a sub-account's shops count
//!   against its main account); shippers do not add shops;
//! - only an admin, the owner or the owner's main account changes, re-keys, tests or deletes a
//!   shop (`tenancy`); deleting removes its mirror with it (foreign keys);
//! - the connection test reports Ozon's real answer and never pretends to be a sync.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::Row;

use super::Ozon;
use super::tenancy::{self, Ownership};
use crate::auth::audit::{self, Entry};
use crate::auth::{Actor, Role};
use crate::db::sql::{self, Sql};
use crate::db::{Database, DbError, Transaction};
use crate::domain::{Checks, DomainError, Work};
use crate::secrets::{MASK, ozon_api_key_context};

/// The columns every shop read selects (the owner's name and parent come from `users`).
const COLUMNS: &str = "s.id, s.shop_name, s.shop_name_cn, s.platform, s.status, s.owner_user_id,
    s.client_id, s.api_key_enc, s.config, s.stats, s.shipping_managed, s.current_balance_rub::float8,
    s.balance_updated_at, s.last_sync_at, s.created_at, s.updated_at, o.username, o.parent_user_id,
    (SELECT count(*) FROM ozon_products p WHERE p.shop_id = s.id),
    (SELECT count(*) FROM ozon_postings q WHERE q.shop_id = s.id)";

const MAX_CONFIG_BYTES: usize = 16 * 1024;

/// A shop as read, with its owner and product count.
#[derive(Debug, Clone)]
pub struct Shop {
    pub id: i64,
    pub shop_name: String,
    pub shop_name_cn: Option<String>,
    pub platform: String,
    pub status: String,
    pub owner_user_id: i64,
    pub client_id: String,
    pub api_key_enc: String,
    pub config: Value,
    pub stats: Option<Value>,
    pub shipping_managed: bool,
    pub current_balance_rub: Option<f64>,
    pub balance_updated_at: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub owner_username: String,
    pub owner_parent_id: Option<i64>,
    pub total_products: i64,
    pub total_orders: i64,
}

impl Shop {
    fn from_row(r: &Row) -> Shop {
        Shop {
            id: r.get(0),
            shop_name: r.get(1),
            shop_name_cn: r.get(2),
            platform: r.get(3),
            status: r.get(4),
            owner_user_id: r.get(5),
            client_id: r.get(6),
            api_key_enc: r.get(7),
            config: r.get(8),
            stats: r.get(9),
            shipping_managed: r.get(10),
            current_balance_rub: r.get(11),
            balance_updated_at: r.get(12),
            last_sync_at: r.get(13),
            created_at: r.get(14),
            updated_at: r.get(15),
            owner_username: r.get(16),
            owner_parent_id: r.get(17),
            total_products: r.get(18),
            total_orders: r.get(19),
        }
    }

    pub fn ownership(&self) -> Ownership {
        Ownership {
            owner_user_id: self.owner_user_id,
            owner_parent_id: self.owner_parent_id,
        }
    }

    /// The original's `to_dict`; `with_credentials` adds the Client-Id and the masked key.
    pub fn to_json(&self, with_credentials: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "shop_name": self.shop_name,
            "shop_name_cn": self.shop_name_cn,
            "display_name": self.shop_name_cn.as_deref().filter(|s| !s.is_empty()).unwrap_or(&self.shop_name),
            "platform": self.platform,
            "status": self.status,
            "owner_user_id": self.owner_user_id,
            "shipping_managed": self.shipping_managed,
            "config": self.config,
            "stats": self.stats,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_sync_at": self.last_sync_at,
            "current_balance_rub": self.current_balance_rub,
            "balance_updated_at": self.balance_updated_at,
        });
        if with_credentials {
            v["api_credentials"] = json!({"client_id": self.client_id, "api_key": MASK});
        }
        v
    }

    /// The list statistics of S1/S2.
    fn list_stats(&self) -> Value {
        json!({
            "total_products": self.total_products,
            "total_orders": self.total_orders,
            "last_sync_at": self.last_sync_at,
            "sync_status": if self.last_sync_at.is_some() { "success" } else { "pending" },
        })
    }
}

async fn shops_in(c: &impl Sql, scope: &Option<Vec<i64>>) -> Result<Vec<Shop>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM ozon_shops s JOIN users o ON o.id = s.owner_user_id
          WHERE $1::bigint[] IS NULL OR s.id = ANY($1)
          ORDER BY s.created_at DESC, s.id DESC"
    );
    Ok(c.rows(&sql, &[scope])
        .await?
        .iter()
        .map(Shop::from_row)
        .collect())
}

/// One shop by id, without any access check (callers check with `tenancy` first).
pub async fn by_id(c: &impl Sql, id: i64) -> Result<Option<Shop>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM ozon_shops s JOIN users o ON o.id = s.owner_user_id WHERE s.id = $1"
    );
    Ok(c.maybe_row(&sql, &[&id])
        .await?
        .as_ref()
        .map(Shop::from_row))
}

/// S1 `GET /ozon/shops`: the shops the actor sees, for selectors (`include_stats=false`) or in
/// full with credentials (masked) and list statistics.
pub async fn list(c: &impl Sql, actor: &Actor, include_stats: bool) -> Result<Value, DomainError> {
    let scope = tenancy::visible_shop_ids(c, actor).await?;
    let shops = shops_in(c, &scope).await?;
    let data: Vec<Value> = shops
        .iter()
        .map(|s| {
            if include_stats {
                let mut v = s.to_json(tenancy::may_edit(actor, &s.ownership()));
                v["stats"] = s.list_stats();
                v
            } else {
                json!({
                    "id": s.id,
                    "shop_name": s.shop_name,
                    "shop_name_cn": s.shop_name_cn,
                    "display_name": s.to_json(false)["display_name"],
                    "platform": s.platform,
                    "status": s.status,
                })
            }
        })
        .collect();
    Ok(json!({ "data": data }))
}

/// S2 `GET /ozon/shops/management`: the shops the actor sees, with owner and `can_edit`;
/// credentials only where the actor may edit.
pub async fn management(c: &impl Sql, actor: &Actor) -> Result<Value, DomainError> {
    let scope = tenancy::visible_shop_ids(c, actor).await?;
    let shops = shops_in(c, &scope).await?;
    let data: Vec<Value> = shops
        .iter()
        .map(|s| {
            let can_edit = tenancy::may_edit(actor, &s.ownership());
            let mut v = s.to_json(can_edit);
            v["owner_username"] = json!(s.owner_username);
            v["can_edit"] = json!(can_edit);
            v["stats"] = s.list_stats();
            v
        })
        .collect();
    Ok(json!({ "data": data }))
}

/// The body of S3 `POST /ozon/shops`.
#[derive(Debug, Deserialize)]
pub struct NewShop {
    pub shop_name: String,
    #[serde(default)]
    pub shop_name_cn: Option<String>,
    pub client_id: String,
    pub api_key: String,
    #[serde(default = "ozon")]
    pub platform: String,
    #[serde(default)]
    pub config: Option<Value>,
}

fn ozon() -> String {
    "ozon".into()
}

fn check_client_id(checks: &mut Checks, loc: &str, id: &str) {
    checks.check(
        (1..=200).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        loc,
        "value_error",
        "must be Ozon's Client-Id: 1 to 200 letters, digits, - or _",
    );
}

fn check_api_key(checks: &mut Checks, loc: &str, key: &str) {
    checks.check(
        (1..=200).contains(&key.len()) && !key.chars().any(char::is_whitespace),
        loc,
        "value_error",
        "must be Ozon's Api-Key: 1 to 200 characters without spaces",
    );
}

fn check_config(checks: &mut Checks, config: &Option<Value>) {
    if let Some(c) = config {
        checks.check(
            c.is_object() && c.to_string().len() <= MAX_CONFIG_BYTES,
            "config",
            "value_error",
            "must be a JSON object of at most 16 KiB",
        );
    }
}

/// Someone already connected this Client-Id: the actor, or another user.
async fn client_id_taken(
    tx: &Transaction<'_>,
    actor: &Actor,
    client_id: &str,
    except: i64,
) -> Result<Option<DomainError>, DbError> {
    let owner: Option<i64> = tx
        .maybe_row(
            "SELECT owner_user_id FROM ozon_shops WHERE client_id = $1 AND id <> $2",
            &[&client_id, &except],
        )
        .await?
        .map(|r| r.get(0));
    Ok(owner.map(|o| {
        if actor.user().is_some_and(|u| u.id == o) {
            DomainError::rejected("SHOP_EXISTS", "您已添加过该店铺")
        } else {
            DomainError::rejected("SHOP_BINDIED", "该店铺已被其他用户绑定")
        }
    }))
}

fn conflict(e: DbError) -> DomainError {
    if sql::violates(&e, "uq_ozon_shops_client_id") {
        // A concurrent add of the same Client-Id won the race.
        DomainError::rejected("SHOP_BINDIED", "该店铺已被其他用户绑定")
    } else if sql::violates(&e, "uq_ozon_shop_owner_name") {
        DomainError::rejected("SHOP_NAME_EXISTS", "您已有同名店铺，请换一个店铺名称")
    } else {
        e.into()
    }
}

/// The shop quota of the account that will own the shop: a main account's level's `max_shops`,
/// counting its sub-accounts' shops too. Serialised on the main account's row.
async fn check_quota(tx: &Transaction<'_>, actor: &Actor) -> Result<(), DomainError> {
    let Some(me) = actor.user() else {
        return Ok(());
    };
    let main = match me.role {
        Role::MainAccount => me.id,
        Role::SubAccount => match me.parent_user_id {
            Some(p) => p,
            None => return Ok(()),
        },
        _ => return Ok(()),
    };
    let row = tx
        .row(
            "SELECT (SELECT max_shops FROM account_levels WHERE id = m.account_level_id),
                    (SELECT count(*) FROM ozon_shops s
                      WHERE s.owner_user_id = m.id
                         OR s.owner_user_id IN (SELECT id FROM users WHERE parent_user_id = m.id))
               FROM users m WHERE m.id = $1 FOR UPDATE",
            &[&main],
        )
        .await?;
    let max: Option<i32> = row.get(0);
    let used: i64 = row.get(1);
    match max {
        Some(0) => Err(DomainError::rejected(
            "QUOTA_EXCEEDED",
            "您的账号级别不允许创建店铺",
        )),
        Some(n) if used >= i64::from(n) => Err(DomainError::rejected(
            "QUOTA_EXCEEDED",
            format!("不能创建更多店铺，已达上限（{n}个）"),
        )),
        _ => Ok(()),
    }
}

/// S3: connect a shop; returns it with its (masked) credentials.
pub async fn create(
    work: &mut Work<'_>,
    actor: &Actor,
    ozon: &Ozon,
    new: NewShop,
) -> Result<Shop, DomainError> {
    actor.require_session()?;
    let Some(me) = actor.user().cloned() else {
        return Err(DomainError::denied(
            "INSUFFICIENT_PERMISSIONS",
            "Shops belong to users; log in to add one",
        ));
    };
    if me.role == Role::Shipper {
        return Err(DomainError::denied(
            "INSUFFICIENT_PERMISSIONS",
            "发货员不能添加店铺",
        ));
    }
    let name = new.shop_name.trim().to_owned();
    let name_cn = new
        .shop_name_cn
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let client_id = new.client_id.trim().to_owned();
    let api_key = new.api_key.trim().to_owned();
    let mut checks = Checks::new();
    checks.len_between(&name, "shop_name", 1, 200);
    if let Some(cn) = &name_cn {
        checks.len_between(cn, "shop_name_cn", 1, 200);
    }
    check_client_id(&mut checks, "client_id", &client_id);
    check_api_key(&mut checks, "api_key", &api_key);
    checks.check(new.platform == "ozon", "platform", "enum", "must be ozon");
    check_config(&mut checks, &new.config);
    checks.finish()?;
    let sealed = ozon
        .keys()?
        .seal(&ozon_api_key_context(&client_id), &api_key)
        .map_err(|e| super::secrets_error(&e))?;
    // The creator, its main account and every admin gain it in `/auth/me`.
    work.effects().stale_everyone();
    let tx = work.tx();
    if let Some(e) = client_id_taken(tx, actor, &client_id, 0).await? {
        return Err(e);
    }
    check_quota(tx, actor).await?;
    let id: i64 = tx
        .row(
            "INSERT INTO ozon_shops (shop_name, shop_name_cn, platform, status, owner_user_id, client_id,
                                     api_key_enc, config)
             VALUES ($1, $2, 'ozon', 'active', $3, $4, $5, $6) RETURNING id",
            &[
                &name,
                &name_cn,
                &me.id,
                &client_id,
                &sealed,
                &new.config.clone().unwrap_or_else(|| json!({})),
            ],
        )
        .await
        .map_err(conflict)?
        .get(0);
    // The creator sees it at once (the original forgot the creator), so do its main account and
    // every admin.
    tx.exec(
        "INSERT INTO user_shops (user_id, shop_id)
         SELECT u, $1::bigint FROM unnest(ARRAY[$2::bigint, $3::bigint]) AS u WHERE u IS NOT NULL
         UNION SELECT id, $1::bigint FROM users WHERE role = 'admin'
         ON CONFLICT DO NOTHING",
        &[
            &id,
            &me.id,
            &(if me.role == Role::SubAccount {
                me.parent_user_id
            } else {
                None
            }),
        ],
    )
    .await?;
    audit::write(
        tx,
        actor,
        Entry::new("ozon_shop", "create", "添加店铺")
            .record("ozon_shops", id)
            .changes(json!({"shop_name": name, "client_id": client_id})),
    )
    .await?;
    by_id(tx, id).await?.ok_or_else(tenancy::shop_not_found)
}

/// The body of S4 `PUT /ozon/shops/{id}`; `None` keeps a field.
#[derive(Debug, Deserialize, Default)]
pub struct ShopChanges {
    pub shop_name: Option<String>,
    pub shop_name_cn: Option<String>,
    pub status: Option<String>,
    pub shipping_managed: Option<bool>,
    pub api_credentials: Option<CredentialChanges>,
    pub config: Option<Value>,
}

#[derive(Debug, Deserialize, Default)]
pub struct CredentialChanges {
    pub client_id: Option<String>,
    /// Empty or `******` (what the page sends back) means "unchanged".
    pub api_key: Option<String>,
}

/// S4: change a shop (owner, its main account, or an admin).
pub async fn update(
    work: &mut Work<'_>,
    actor: &Actor,
    ozon: &Ozon,
    id: i64,
    ch: ShopChanges,
) -> Result<Shop, DomainError> {
    actor.require_session()?;
    tenancy::editable_shop(work.tx(), actor, id).await?;
    let tx = work.tx();
    let before = tx
        .maybe_row(
            "SELECT client_id, api_key_enc FROM ozon_shops WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or_else(tenancy::shop_not_found)?;
    let old_client_id: String = before.get(0);
    let old_key_enc: String = before.get(1);
    let mut checks = Checks::new();
    let name = ch.shop_name.as_deref().map(str::trim).map(str::to_owned);
    if let Some(n) = &name {
        checks.len_between(n, "shop_name", 1, 200);
    }
    let name_cn = ch.shop_name_cn.as_deref().map(str::trim).map(str::to_owned);
    if let Some(cn) = &name_cn {
        checks.len_between(cn, "shop_name_cn", 0, 200);
    }
    if let Some(s) = &ch.status {
        checks.check(
            matches!(s.as_str(), "active" | "inactive" | "suspended"),
            "status",
            "enum",
            "must be active, inactive or suspended",
        );
    }
    let creds = ch.api_credentials.unwrap_or_default();
    let client_id = creds
        .client_id
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| old_client_id.clone());
    check_client_id(&mut checks, "api_credentials.client_id", &client_id);
    let new_key = creds
        .api_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty() && *k != MASK)
        .map(str::to_owned);
    if let Some(k) = &new_key {
        check_api_key(&mut checks, "api_credentials.api_key", k);
    }
    check_config(&mut checks, &ch.config);
    checks.finish()?;
    let keys = ozon.keys()?;
    let key_enc = match (&new_key, client_id != old_client_id) {
        (Some(k), _) => Some(
            keys.seal(&ozon_api_key_context(&client_id), k)
                .map_err(|e| super::secrets_error(&e))?,
        ),
        // The key is bound to its Client-Id: a new Client-Id re-seals the same key.
        (None, true) => {
            let plain = keys
                .open(&ozon_api_key_context(&old_client_id), &old_key_enc)
                .map_err(|e| super::secrets_error(&e))?;
            Some(
                keys.seal(&ozon_api_key_context(&client_id), &plain)
                    .map_err(|e| super::secrets_error(&e))?,
            )
        }
        (None, false) => None,
    };
    if client_id != old_client_id
        && let Some(e) = client_id_taken(tx, actor, &client_id, id).await?
    {
        return Err(e);
    }
    // The page sends empty webhook fields back; they never clear stored ones.
    let config_patch = ch.config.map(|mut c| {
        if let Some(obj) = c.as_object_mut() {
            obj.retain(|k, v| {
                !(matches!(k.as_str(), "webhook_url" | "webhook_secret")
                    && v.as_str().is_some_and(str::is_empty))
            });
        }
        c
    });
    tx.exec(
        "UPDATE ozon_shops SET
            shop_name = COALESCE($2, shop_name),
            shop_name_cn = CASE WHEN $3::varchar IS NULL THEN shop_name_cn ELSE NULLIF($3, '') END,
            status = COALESCE($4, status),
            shipping_managed = COALESCE($5, shipping_managed),
            client_id = $6,
            api_key_enc = COALESCE($7, api_key_enc),
            config = config || COALESCE($8, '{}'::jsonb),
            updated_at = now()
          WHERE id = $1",
        &[
            &id,
            &name,
            &name_cn,
            &ch.status,
            &ch.shipping_managed,
            &client_id,
            &key_enc,
            &config_patch,
        ],
    )
    .await
    .map_err(conflict)?;
    audit::write(
        tx,
        actor,
        Entry::new("ozon_shop", "update", "修改店铺")
            .record("ozon_shops", id)
            .changes(json!({
                "shop_name": name,
                "status": ch.status,
                "client_id_changed": client_id != old_client_id,
                "api_key_changed": new_key.is_some(),
            })),
    )
    .await?;
    by_id(tx, id).await?.ok_or_else(tenancy::shop_not_found)
}

/// S5: delete a shop and its mirror (products, sync errors, links: foreign keys cascade).
pub async fn delete(work: &mut Work<'_>, actor: &Actor, id: i64) -> Result<(), DomainError> {
    actor.require_session()?;
    tenancy::editable_shop(work.tx(), actor, id).await?;
    // Its users' `shop_ids` (in `/auth/me`) lose it.
    work.effects().stale_everyone();
    let tx = work.tx();
    let row = tx
        .maybe_row(
            "DELETE FROM ozon_shops WHERE id = $1 RETURNING shop_name, client_id",
            &[&id],
        )
        .await?
        .ok_or_else(tenancy::shop_not_found)?;
    audit::write(
        tx,
        actor,
        Entry::new("ozon_shop", "delete", "删除店铺")
            .record("ozon_shops", id)
            .changes(
                json!({"shop_name": row.get::<_, String>(0), "client_id": row.get::<_, String>(1)}),
            ),
    )
    .await?;
    Ok(())
}

/// S6: ask Ozon whether the stored credentials work (one product-list call), and record the
/// outcome in the shop's `stats`. Answers the original's shape; `success` is Ozon's real answer.
pub async fn test_connection(
    db: &Database,
    actor: &Actor,
    ozon: &Ozon,
    id: i64,
) -> Result<Value, DomainError> {
    actor.require_session()?;
    // No pooled connection is held while Ozon answers.
    let shop = {
        let c = db.get().await?;
        tenancy::editable_shop(&c, actor, id).await?;
        by_id(&c, id).await?.ok_or_else(tenancy::shop_not_found)?
    };
    let client = ozon.shop_client(&shop.client_id, &shop.api_key_enc)?;
    let started = Instant::now();
    let outcome = client.test_connection().await;
    let ms = started.elapsed().as_millis() as u64;
    let (result, status) = match &outcome {
        Ok(total) => (
            json!({
                "success": true,
                "message": "Connection successful",
                "details": {
                    "api_version": "v3",
                    "response_time_ms": ms,
                    "test_info": {
                        "status": "API credentials are valid",
                        "products_count": total,
                        "endpoint_tested": "/v3/product/list",
                    },
                },
            }),
            "success",
        ),
        Err(e) => {
            let message = match e {
                crate::ozon::client::OzonError::AuthFailed { status: 403, .. } => "Access denied",
                crate::ozon::client::OzonError::AuthFailed { .. } => "Authentication failed",
                _ => "Test connection failed",
            };
            (
                json!({
                    "success": false,
                    "message": message,
                    "details": {"error": e.user_message(), "response_time_ms": ms},
                }),
                "failed",
            )
        }
    };
    let c = db.get().await?;
    c.exec(
        "UPDATE ozon_shops SET stats = COALESCE(stats, '{}'::jsonb)
                || jsonb_build_object('last_connection_test', now(), 'connection_status', $2::text)
          WHERE id = $1",
        &[&id, &status],
    )
    .await?;
    audit::write(
        &c,
        actor,
        Entry::new("ozon_shop", "test_connection", "测试店铺连接")
            .record("ozon_shops", id)
            .notes(status),
    )
    .await?;
    Ok(result)
}

/// `GET /ozon/scan-shipping/access`: whether the scan station applies to the actor (shippers, and
/// accounts with shops whose shipping is managed).
pub async fn scan_shipping_access(c: &impl Sql, actor: &Actor) -> Result<Value, DomainError> {
    let scope = tenancy::visible_shop_ids(c, actor).await?;
    let shop_count: i64 = c
        .row(
            "SELECT count(*) FROM ozon_shops WHERE $1::bigint[] IS NULL OR id = ANY($1)",
            &[&scope],
        )
        .await?
        .get(0);
    let is_shipper = actor.role() == Some(Role::Shipper);
    Ok(json!({
        "has_access": is_shipper && shop_count > 0,
        "is_shipper": is_shipper,
        "shop_count": shop_count,
    }))
}
