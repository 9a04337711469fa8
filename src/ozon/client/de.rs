//! Lenient readers for the value shapes Ozon varies between API versions: amounts as decimal
//! strings (v3) or JSON numbers (v5), unset dates as `null`, `""` or year 1, image fields as one
//! string or a list. Anything else malformed is an error, which fails the call as `BadResponse`
//! rather than storing a wrong value.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// A money amount exactly as Ozon sent it (`"1390.50"`, `1390.5`), kept as decimal text so no
/// float rounding happens before it reaches a `numeric` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Money(String);

impl Money {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checked decimal text; `None` for anything that is not a plain decimal number.
    pub fn parse(text: &str) -> Option<Money> {
        let t = text.trim();
        let digits = t.strip_prefix('-').unwrap_or(t);
        let mut parts = digits.splitn(2, '.');
        let int = parts.next().unwrap_or("");
        let frac = parts.next();
        let ok = !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
        ok.then(|| Money(t.to_owned()))
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `Option<Money>` from a string, a number or null; `""` is "not set".
pub fn money<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Money>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) if s.trim().is_empty() => Ok(None),
        serde_json::Value::String(s) => Money::parse(&s)
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("not a decimal amount: {s:?}"))),
        // Integers print as integers; floats print as their shortest round-trip text ("1390.5").
        serde_json::Value::Number(n) => Money::parse(&n.to_string())
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("not a decimal amount: {n}"))),
        other => Err(de::Error::custom(format!("not an amount: {other}"))),
    }
}

/// An optional timestamp: RFC 3339 (`Z` or an offset), or naive ISO taken as UTC; `null`, `""`
/// and Ozon's "zero" dates (year 1) are "not set".
pub fn time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    parse_time(&s).map_err(de::Error::custom)
}

pub fn parse_time(s: &str) -> Result<Option<DateTime<Utc>>, String> {
    let s = s.trim();
    if s.is_empty() || s.starts_with("0001-01-01") {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|n| Some(n.and_utc()))
        .map_err(|_| format!("not a timestamp: {s:?}"))
}

/// How Ozon wants timestamps in requests: RFC 3339 in UTC with milliseconds and `Z`.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn ser_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

pub fn ser_opt_time<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_time(t, s),
        None => s.serialize_none(),
    }
}

/// A list of strings that Ozon sometimes sends as one string (`primary_image`, `color_image`);
/// `null` and `""` are the empty list.
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) if s.is_empty() => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// Strings or integers as text (`working_days` is `["1","2"]` in some answers, `[1,2]` in others).
pub fn texts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let values = Option::<Vec<serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            other => Err(de::Error::custom(format!(
                "not a string or number: {other}"
            ))),
        })
        .collect()
}

/// `null` read as the type's default (Ozon sends `null` for empty objects and lists).
pub fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Row {
        #[serde(default, deserialize_with = "money")]
        price: Option<Money>,
        #[serde(default, deserialize_with = "time")]
        at: Option<DateTime<Utc>>,
        #[serde(default, deserialize_with = "strings")]
        images: Vec<String>,
        #[serde(default, deserialize_with = "texts")]
        days: Vec<String>,
        #[serde(default, deserialize_with = "nullable")]
        list: Vec<i64>,
    }

    fn row(json: &str) -> Result<Row, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn amounts_keep_their_decimal_text() {
        let r = |j: &str| row(j).map(|r| r.price.map(|m| m.as_str().to_owned()));
        assert_eq!(
            r(r#"{"price":"1390.50"}"#).unwrap().as_deref(),
            Some("1390.50")
        );
        assert_eq!(r(r#"{"price":1390.5}"#).unwrap().as_deref(), Some("1390.5"));
        assert_eq!(r(r#"{"price":0}"#).unwrap().as_deref(), Some("0"));
        assert_eq!(r(r#"{"price":""}"#).unwrap(), None);
        assert_eq!(r(r#"{"price":null}"#).unwrap(), None);
        assert_eq!(r("{}").unwrap(), None);
        assert!(r(r#"{"price":"1 390,00"}"#).is_err());
        assert!(r(r#"{"price":"12."}"#).is_err());
        assert!(r(r#"{"price":true}"#).is_err());
    }

    #[test]
    fn times_accept_ozon_variants_and_reject_garbage() {
        let at = |j: &str| row(j).map(|r| r.at.map(|t| t.to_rfc3339()));
        assert_eq!(
            at(r#"{"at":"2025-12-13T04:15:00.123456Z"}"#)
                .unwrap()
                .as_deref(),
            Some("2025-12-13T04:15:00.123456+00:00")
        );
        assert_eq!(
            at(r#"{"at":"2025-12-13T07:15:00+03:00"}"#)
                .unwrap()
                .as_deref(),
            Some("2025-12-13T04:15:00+00:00")
        );
        assert_eq!(
            at(r#"{"at":"2025-12-13T04:15:00"}"#).unwrap().as_deref(),
            Some("2025-12-13T04:15:00+00:00"),
            "naive is UTC"
        );
        assert_eq!(at(r#"{"at":"0001-01-01T00:00:00Z"}"#).unwrap(), None);
        assert_eq!(at(r#"{"at":""}"#).unwrap(), None);
        assert_eq!(at(r#"{"at":null}"#).unwrap(), None);
        assert!(at(r#"{"at":"yesterday"}"#).is_err());
        let t = DateTime::parse_from_rfc3339("2025-01-02T03:04:05.6Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_time(&t), "2025-01-02T03:04:05.600Z");
    }

    #[test]
    fn lists_accept_one_or_many_and_null() {
        let r = row(r#"{"images":"a.jpg","days":["1",2],"list":null}"#).unwrap();
        assert_eq!(r.images, vec!["a.jpg"]);
        assert_eq!(r.days, vec!["1", "2"]);
        assert!(r.list.is_empty());
        let r = row(r#"{"images":["a","b"],"days":null}"#).unwrap();
        assert_eq!(r.images, vec!["a", "b"]);
        assert!(r.days.is_empty());
        assert!(row(r#"{"images":""}"#).unwrap().images.is_empty());
        assert!(row(r#"{"days":[{}]}"#).is_err());
    }
}
