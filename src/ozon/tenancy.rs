//! Which shops an actor may see and change, read from the database on every request (the
//! original trusted the `shop_ids` claim of the access token, so an assignment changed only at
//! the next refresh, and several routes did not check at all — §7 S1–S4, S10).
//!
//! - Admins (and the operator) see every shop.
//! - Everyone else sees the shops they own and the shops linked to them in `user_shops` (the
//!   creator, its parent and every admin are linked when a shop is added).
//! - Changing a shop (edit, re-key, delete, test, sync) needs an admin or the owner — or, for a
//!   sub-account's shop, its main account. Linked sub-accounts and shippers only read.
//!
//! A shop the actor may not see is "not found" (404), whether or not it exists: another tenant's
//! shop ids reveal nothing.

use crate::auth::{Actor, Role};
use crate::db::sql::Sql;
use crate::domain::DomainError;

pub fn shop_not_found() -> DomainError {
    DomainError::not_found("SHOP_NOT_FOUND", "店铺不存在或您没有权限访问")
}

/// The shops the actor may see; `None` means every shop.
pub async fn visible_shop_ids(
    c: &impl Sql,
    actor: &Actor,
) -> Result<Option<Vec<i64>>, DomainError> {
    if actor.is_operator() || actor.is_admin() {
        return Ok(None);
    }
    let Some(me) = actor.user() else {
        return Ok(Some(Vec::new()));
    };
    Ok(Some(crate::auth::users::shops_visible_to(c, me.id).await?))
}

/// The shops a request is about: the one it names (if the actor may see it), or all the actor
/// may see (`None` = every shop, for admins).
pub async fn scope(
    c: &impl Sql,
    actor: &Actor,
    shop_id: Option<i64>,
) -> Result<Option<Vec<i64>>, DomainError> {
    let visible = visible_shop_ids(c, actor).await?;
    match (shop_id, visible) {
        (Some(id), None) => Ok(Some(vec![id])),
        (Some(id), Some(ids)) if ids.contains(&id) => Ok(Some(vec![id])),
        (Some(_), Some(_)) => Err(shop_not_found()),
        (None, visible) => Ok(visible),
    }
}

/// What a shop row says about who may change it.
#[derive(Debug, Clone, Copy)]
pub struct Ownership {
    pub owner_user_id: i64,
    /// The owner's main account, when the owner is a sub-account.
    pub owner_parent_id: Option<i64>,
}

/// Whether the actor may change the shop (see the module's rules).
pub fn may_edit(actor: &Actor, o: &Ownership) -> bool {
    if actor.is_operator() || actor.is_admin() {
        return true;
    }
    match actor.user() {
        Some(me) => {
            me.id == o.owner_user_id
                || (me.role == Role::MainAccount && o.owner_parent_id == Some(me.id))
        }
        None => false,
    }
}

/// The shop's ownership, if the actor may see it; otherwise "not found".
pub async fn visible_shop(
    c: &impl Sql,
    actor: &Actor,
    shop_id: i64,
) -> Result<Ownership, DomainError> {
    let row = c
        .maybe_row(
            "SELECT s.owner_user_id, o.parent_user_id
               FROM ozon_shops s JOIN users o ON o.id = s.owner_user_id
              WHERE s.id = $1",
            &[&shop_id],
        )
        .await?
        .ok_or_else(shop_not_found)?;
    let o = Ownership {
        owner_user_id: row.get(0),
        owner_parent_id: row.get(1),
    };
    if let Some(ids) = visible_shop_ids(c, actor).await?
        && !ids.contains(&shop_id)
    {
        return Err(shop_not_found());
    }
    Ok(o)
}

/// The shop's ownership, if the actor may change it: "not found" when they may not see it, 403
/// when they may only read it.
pub async fn editable_shop(
    c: &impl Sql,
    actor: &Actor,
    shop_id: i64,
) -> Result<Ownership, DomainError> {
    let o = visible_shop(c, actor, shop_id).await?;
    if !may_edit(actor, &o) {
        return Err(DomainError::denied(
            "SHOP_READ_ONLY",
            "您对该店铺只有查看权限：只有店铺所有者或管理员可以修改、同步或删除",
        ));
    }
    Ok(o)
}
