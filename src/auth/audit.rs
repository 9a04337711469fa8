//! The audit log (`audit_logs`): who did what, from where, with which request id. Written in the
//! same transaction as the change where there is one, so a change and its record stand or fall
//! together. Never holds secrets: password changes are recorded as events without values.

use std::net::IpAddr;

use serde_json::Value;
use tokio_postgres::GenericClient;

use crate::db::DbError;

/// Who acted and from where (from [`crate::auth::RequestMeta`] and the current user).
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub module: &'a str,
    pub action: &'a str,
    pub action_display: &'a str,
    pub table_name: Option<&'a str>,
    pub record_id: Option<String>,
    pub changes: Option<Value>,
    pub notes: Option<String>,
}

impl<'a> Entry<'a> {
    pub fn new(module: &'a str, action: &'a str, action_display: &'a str) -> Self {
        Entry {
            module,
            action,
            action_display,
            table_name: None,
            record_id: None,
            changes: None,
            notes: None,
        }
    }

    pub fn record(mut self, table: &'a str, id: impl ToString) -> Self {
        self.table_name = Some(table);
        self.record_id = Some(id.to_string());
        self
    }

    pub fn changes(mut self, changes: Value) -> Self {
        self.changes = Some(changes);
        self
    }

    pub fn notes(mut self, notes: impl Into<String>) -> Self {
        self.notes = Some(notes.into());
        self
    }
}

pub async fn write(c: &impl GenericClient, actor: &Actor, e: Entry<'_>) -> Result<(), DbError> {
    let user_id = actor.user_id.and_then(|id| i32::try_from(id).ok());
    c.execute(
        "INSERT INTO audit_logs (user_id, username, module, action, action_display, table_name,
                                 record_id, changes, ip_address, user_agent, request_id, notes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &user_id,
            &actor.username,
            &e.module,
            &e.action,
            &e.action_display,
            &e.table_name,
            &e.record_id,
            &e.changes,
            &actor.ip,
            &actor.user_agent,
            &actor.request_id,
            &e.notes,
        ],
    )
    .await?;
    Ok(())
}

/// `{field: {old, new}}` for the fields that differ.
pub fn diff(pairs: &[(&str, Value, Value)]) -> Value {
    let mut out = serde_json::Map::new();
    for (field, old, new) in pairs {
        if old != new {
            out.insert(
                (*field).to_owned(),
                serde_json::json!({"old": old, "new": new}),
            );
        }
    }
    Value::Object(out)
}
