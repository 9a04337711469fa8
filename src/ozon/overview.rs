//! The overview page (contract §1.4, §2.6 ST orders/revenue part, DS): order counters and
//! revenue for `GET /ozon/statistics`, and the daily series of `GET /ozon/daily-stats` — always
//! over the shops the caller may see (the original summed every tenant's shops when "all" was
//! selected, §7 S4), with day boundaries in the global time zone (`global_settings`).
//!
//! Revenue is Σ `order_total_price` of postings not cancelled, in the postings' currency (the
//! daily series says which; the original labelled it RUB whatever it was, §7 C12). The daily
//! series has every day of the window and, for every shop that had postings in it, a value for
//! every day (`0` / `"0"` when none). Two visible shops with the same name are told apart by
//! their id instead of being merged (§7 C18).

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, Duration, NaiveDate};
use serde::Deserialize;
use serde_json::{Value, json};

use super::global_settings;
use super::tenancy;
use crate::auth::Actor;
use crate::db::sql::Sql;
use crate::domain::DomainError;

/// Longest custom window, in days.
pub const MAX_DAYS: i64 = 366;

/// The `orders` and `revenue` objects of `GET /ozon/statistics` over `scope` (`None` = every
/// shop, for admins; an empty list = nothing).
pub async fn orders_and_revenue(
    c: &impl Sql,
    scope: &Option<Vec<i64>>,
) -> Result<(Value, Value), DomainError> {
    let mut orders = json!({"total": 0, "pending": 0, "processing": 0, "shipped": 0,
        "delivered": 0, "cancelled": 0, "by_ozon_status": {}});
    let mut revenue = json!({"yesterday": "0", "week": "0", "month": "0"});
    if scope.as_ref().is_some_and(Vec::is_empty) {
        return Ok((orders, revenue));
    }
    let kept = super::postings::kept_counts(c, scope).await?;
    let mut by_status = serde_json::Map::new();
    let (mut total, mut pending) = (0i64, 0i64);
    let mut per_status: BTreeMap<&str, i64> = BTreeMap::new();
    for (status, operation, n) in &kept {
        if matches!(
            status.as_str(),
            "awaiting_packaging" | "awaiting_registration"
        ) && operation == "awaiting_stock"
        {
            pending += n;
        }
        *per_status.entry(status.as_str()).or_default() += n;
    }
    for (status, n) in per_status {
        if status != "cancelled" {
            total += n;
        }
        let key = match status {
            "awaiting_deliver" => Some("processing"),
            "delivering" => Some("shipped"),
            "delivered" => Some("delivered"),
            "cancelled" => Some("cancelled"),
            _ => None,
        };
        if let Some(k) = key {
            orders[k] = json!(n);
        }
        by_status.insert(status.to_owned(), json!(n));
    }
    orders["total"] = json!(total);
    orders["pending"] = json!(pending);
    orders["by_ozon_status"] = Value::Object(by_status);

    let tz = global_settings::time_zone(c).await?;
    let r = c
        .row(
            "WITH b AS (
                SELECT (date_trunc('day', now() AT TIME ZONE $2) AT TIME ZONE $2) AS today,
                       ((date_trunc('day', now() AT TIME ZONE $2) - interval '1 day') AT TIME ZONE $2) AS yesterday,
                       (date_trunc('week', now() AT TIME ZONE $2) AT TIME ZONE $2) AS monday,
                       (date_trunc('month', now() AT TIME ZONE $2) AT TIME ZONE $2) AS first)
             SELECT coalesce(sum(p.order_total_price) FILTER (
                        WHERE p.in_process_at >= b.yesterday AND p.in_process_at < b.today), 0)::text,
                    coalesce(sum(p.order_total_price) FILTER (WHERE p.in_process_at >= b.monday), 0)::text,
                    coalesce(sum(p.order_total_price) FILTER (WHERE p.in_process_at >= b.first), 0)::text
               FROM b LEFT JOIN ozon_postings p
                 ON ($1::bigint[] IS NULL OR p.shop_id = ANY($1))
                AND p.status <> 'cancelled'
                AND p.in_process_at >= least(b.yesterday, b.monday, b.first)",
            &[scope, &tz],
        )
        .await?;
    revenue["yesterday"] = json!(r.get::<_, String>(0));
    revenue["week"] = json!(r.get::<_, String>(1));
    revenue["month"] = json!(r.get::<_, String>(2));
    Ok((orders, revenue))
}

/// `GET /ozon/daily-stats` query.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DailyQuery {
    pub shop_id: Option<String>,
    pub range_type: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn date(name: &str, v: Option<&str>) -> Result<NaiveDate, DomainError> {
    let s = v.ok_or_else(|| {
        DomainError::invalid(
            name,
            "missing",
            "required with range_type=custom (YYYY-MM-DD)",
        )
    })?;
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| DomainError::invalid(name, "value_error", "must be a date YYYY-MM-DD"))
}

/// The window's first and last local day.
pub fn window(
    today: NaiveDate,
    range_type: &str,
    start: Option<&str>,
    end: Option<&str>,
) -> Result<(NaiveDate, NaiveDate), DomainError> {
    let (first, last) = match range_type {
        "7days" => (today - Duration::days(6), today),
        "14days" => (today - Duration::days(13), today),
        "thisMonth" => (today.with_day(1).unwrap_or(today), today),
        "lastMonth" => {
            let this_first = today.with_day(1).unwrap_or(today);
            let last = this_first.pred_opt().unwrap_or(this_first);
            (last.with_day(1).unwrap_or(last), last)
        }
        "custom" => {
            let a = date("start_date", start)?;
            let b = date("end_date", end)?;
            if b < a {
                return Err(DomainError::invalid(
                    "end_date",
                    "value_error",
                    "must not be before start_date",
                ));
            }
            (a, b)
        }
        _ => {
            return Err(DomainError::invalid(
                "range_type",
                "value_error",
                "must be one of 7days, 14days, thisMonth, lastMonth, custom",
            ));
        }
    };
    if (last - first).num_days() + 1 > MAX_DAYS {
        return Err(DomainError::invalid(
            "end_date",
            "value_error",
            format!("the window may span at most {MAX_DAYS} days"),
        ));
    }
    Ok((first, last))
}

/// `GET /ozon/daily-stats`: `{dates, shops, counts, revenue, total_days, currency}`.
pub async fn daily(c: &impl Sql, actor: &Actor, q: &DailyQuery) -> Result<Value, DomainError> {
    let shop_id = match given(&q.shop_id) {
        Some(s) => Some(s.parse::<i64>().map_err(|_| {
            DomainError::invalid("shop_id", "value_error", "must be a whole number")
        })?),
        None => None,
    };
    let scope = tenancy::scope(c, actor, shop_id).await?;
    let tz = global_settings::time_zone(c).await?;
    let today: NaiveDate = c
        .row("SELECT (now() AT TIME ZONE $1)::date", &[&tz])
        .await?
        .get(0);
    let (first, last) = window(
        today,
        given(&q.range_type).unwrap_or("7days"),
        given(&q.start_date),
        given(&q.end_date),
    )?;
    let mut dates = Vec::new();
    let mut d = first;
    while d <= last {
        dates.push(d.format("%Y-%m-%d").to_string());
        d = d.succ_opt().unwrap_or(d + Duration::days(1));
    }
    let rows = if scope.as_ref().is_some_and(Vec::is_empty) {
        Vec::new()
    } else {
        c.rows(
            "SELECT (p.in_process_at AT TIME ZONE $2)::date, s.id, s.shop_name, count(*),
                    coalesce(sum(p.order_total_price), 0)::text, max(p.currency_code)
               FROM ozon_postings p JOIN ozon_shops s ON s.id = p.shop_id
              WHERE ($1::bigint[] IS NULL OR p.shop_id = ANY($1))
                AND p.status <> 'cancelled' AND p.in_process_at IS NOT NULL
                AND p.in_process_at >= ($3::date::timestamp AT TIME ZONE $2)
                AND p.in_process_at < (($4::date + 1)::timestamp AT TIME ZONE $2)
              GROUP BY 1, s.id, s.shop_name",
            &[&scope, &tz, &first, &last],
        )
        .await?
    };
    // Names per shop id, told apart when two shops share one.
    let mut names: BTreeMap<i64, String> = BTreeMap::new();
    for r in &rows {
        names.insert(r.get(1), r.get(2));
    }
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for n in names.values() {
        *uses.entry(n.as_str()).or_default() += 1;
    }
    let label: HashMap<i64, String> = names
        .iter()
        .map(|(id, n)| {
            let l = if uses.get(n.as_str()).copied().unwrap_or(0) > 1 {
                format!("{n} #{id}")
            } else {
                n.clone()
            };
            (*id, l)
        })
        .collect();
    let mut shops: Vec<String> = label.values().cloned().collect();
    shops.sort();
    let mut counts = serde_json::Map::new();
    let mut revenue = serde_json::Map::new();
    for d in &dates {
        let zero_counts: serde_json::Map<String, Value> =
            shops.iter().map(|s| (s.clone(), json!(0))).collect();
        let zero_revenue: serde_json::Map<String, Value> =
            shops.iter().map(|s| (s.clone(), json!("0"))).collect();
        counts.insert(d.clone(), Value::Object(zero_counts));
        revenue.insert(d.clone(), Value::Object(zero_revenue));
    }
    let mut currencies: HashMap<String, i64> = HashMap::new();
    for r in &rows {
        let day: NaiveDate = r.get(0);
        let key = day.format("%Y-%m-%d").to_string();
        let shop = label.get(&r.get::<_, i64>(1)).cloned().unwrap_or_default();
        let n: i64 = r.get(3);
        if let Some(Value::Object(m)) = counts.get_mut(&key) {
            m.insert(shop.clone(), json!(n));
        }
        if let Some(Value::Object(m)) = revenue.get_mut(&key) {
            m.insert(shop, json!(r.get::<_, String>(4)));
        }
        if let Some(cur) = r.get::<_, Option<String>>(5) {
            *currencies.entry(cur).or_default() += n;
        }
    }
    let currency = currencies
        .into_iter()
        .max_by_key(|(c, n)| (*n, c.clone()))
        .map_or_else(|| "CNY".to_owned(), |(c, _)| c);
    Ok(json!({
        "dates": dates,
        "shops": shops,
        "counts": counts,
        "revenue": revenue,
        "total_days": dates.len(),
        "currency": currency,
        "time_zone": tz,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_contract() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let today = d("2026-03-10");
        assert_eq!(
            window(today, "7days", None, None).unwrap(),
            (d("2026-03-04"), today)
        );
        assert_eq!(
            window(today, "14days", None, None).unwrap(),
            (d("2026-02-25"), today)
        );
        assert_eq!(
            window(today, "thisMonth", None, None).unwrap(),
            (d("2026-03-01"), today)
        );
        assert_eq!(
            window(today, "lastMonth", None, None).unwrap(),
            (d("2026-02-01"), d("2026-02-28"))
        );
        assert_eq!(
            window(today, "custom", Some("2026-01-01"), Some("2026-01-03")).unwrap(),
            (d("2026-01-01"), d("2026-01-03"))
        );
        assert!(window(today, "custom", None, Some("2026-01-03")).is_err());
        assert!(window(today, "custom", Some("2024-01-01"), Some("2026-01-03")).is_err());
        assert!(window(today, "year", None, None).is_err());
    }
}
