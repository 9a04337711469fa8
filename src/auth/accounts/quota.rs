//! `GET /auth/users/{id}/quota`: how much of its level a main account uses (the user page shows
//! "子账号 n / max, 店铺 n / max"). A sub-account or shipper counts against its main account, so
//! its quota is its parent's. The original web app called this endpoint; the original server had
//! none (a 404 on every visit of the user page).

use serde::Serialize;

use super::not_found;
use crate::auth::actor::Actor;
use crate::auth::roles::Role;
use crate::db::sql::Sql;
use crate::domain::DomainError;

/// Used vs allowed. `max_*` is `null` when the account has no level (no limit is set).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Quota {
    pub sub_accounts_count: i64,
    pub max_sub_accounts: Option<i32>,
    pub shops_count: i64,
    pub max_shops: Option<i32>,
}

/// The quota of the main account `id` belongs to. Visible to admins, to the user itself and to
/// its main account; for anyone else the user does not exist (404, as for a missing id, so ids
/// cannot be probed).
pub async fn quota(c: &impl Sql, actor: &Actor, id: i64) -> Result<Quota, DomainError> {
    actor.require_session()?;
    let Some(me) = actor.user() else {
        return Err(not_found());
    };
    // One statement: the target, its main account (itself or its parent), and the counts the
    // quota checks of user and shop creation use (children of the main account; shops owned by
    // it or by its children).
    let row = c
        .maybe_row(
            "WITH t AS (SELECT parent_user_id, COALESCE(parent_user_id, id) AS main
                          FROM users WHERE id = $1)
             SELECT t.parent_user_id,
                    (SELECT count(*) FROM users WHERE parent_user_id = t.main),
                    l.max_sub_accounts,
                    (SELECT count(*) FROM ozon_shops s
                      WHERE s.owner_user_id = t.main
                         OR s.owner_user_id IN (SELECT id FROM users WHERE parent_user_id = t.main)),
                    l.max_shops
               FROM t JOIN users m ON m.id = t.main
                      LEFT JOIN account_levels l ON l.id = m.account_level_id",
            &[&id],
        )
        .await?
        .ok_or_else(not_found)?;
    let parent: Option<i64> = row.get(0);
    let visible = me.role == Role::Admin || me.id == id || parent == Some(me.id);
    if !visible {
        return Err(not_found());
    }
    Ok(Quota {
        sub_accounts_count: row.get(1),
        max_sub_accounts: row.get(2),
        shops_count: row.get(3),
        max_shops: row.get(4),
    })
}
