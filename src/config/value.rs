//! Typed values of configuration keys: how a raw string from a file, the environment or a
//! credential becomes a number, a duration, a size, an address. Each parser returns the problem
//! and the fix as text so the caller can attach the key and where the value came from.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// What is wrong with a value, and how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub problem: String,
    pub fix: String,
}

impl Invalid {
    pub fn new(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// A value type that can be read from the text of a configuration key.
pub trait ConfigValue: Sized {
    fn parse_value(raw: &str) -> Result<Self, Invalid>;
}

impl ConfigValue for String {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        Ok(raw.to_owned())
    }
}

impl ConfigValue for PathBuf {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid::new("the path is empty", "give an absolute path"));
        }
        Ok(PathBuf::from(raw))
    }
}

impl<T: ConfigValue> ConfigValue for Option<T> {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        if raw.trim().is_empty() {
            Ok(None)
        } else {
            T::parse_value(raw).map(Some)
        }
    }
}

/// Booleans are accepted the way the original (pydantic) accepted them, so an existing `.env`
/// keeps working: true/false, 1/0, yes/no, on/off, any case.
impl ConfigValue for bool {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "y" | "t" => Ok(true),
            "false" | "0" | "no" | "off" | "n" | "f" => Ok(false),
            _ => Err(Invalid::new("expected a boolean", "write true or false")),
        }
    }
}

macro_rules! integer_value {
    ($($t:ty),*) => {$(
        impl ConfigValue for $t {
            fn parse_value(raw: &str) -> Result<Self, Invalid> {
                raw.trim().parse::<$t>().map_err(|_| {
                    Invalid::new(
                        format!("expected a whole number between {} and {}", <$t>::MIN, <$t>::MAX),
                        "write digits only, for example 40",
                    )
                })
            }
        }
    )*};
}
integer_value!(u16, u32, u64, usize, i64);

impl ConfigValue for f64 {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(Invalid::new(
                "expected a decimal number",
                "write a number such as 0.2",
            )),
        }
    }
}

/// An IP address; `localhost` is read as 127.0.0.1 (the original's templates use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

impl Default for Ip {
    fn default() -> Self {
        Ip(IpAddr::from([127, 0, 0, 1]))
    }
}

impl ConfigValue for Ip {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        let s = raw.trim();
        if s.eq_ignore_ascii_case("localhost") {
            return Ok(Ip::default());
        }
        s.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map(Ip)
            .map_err(|_| {
                Invalid::new(
                    "expected an IP address",
                    "write an address such as 127.0.0.1, 0.0.0.0 or ::",
                )
            })
    }
}

/// A duration: bare digits are seconds (the original's `*_TIMEOUT` keys were seconds); a number
/// with a unit is `250ms`, `60s`, `5m`, `1h`, `1d`. Zero is allowed (e.g. "no caching").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl ConfigValue for Dur {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        parse_duration(raw).map(Dur).ok_or_else(|| {
            Invalid::new(
                "expected a duration",
                "write seconds (60) or a number with a unit: 250ms, 60s, 5m, 1h, 1d",
            )
        })
    }
}

pub fn parse_duration(raw: &str) -> Option<Duration> {
    let s = raw.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let factor = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        _ => return None,
    };
    let secs = n * factor;
    if !secs.is_finite() || !(0.0..=10.0 * 365.0 * 86400.0).contains(&secs) {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

/// A size in bytes. Accepts `52428800`, `50M`, `50MB`, `50MiB`, `512k`, `1G` (binary units, as
/// nginx's `client_max_body_size 50M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ConfigValue for ByteSize {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        let s = raw.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let invalid = || {
            Invalid::new(
                "expected a size",
                "write bytes, or a number with a unit: 512K, 50M, 1G",
            )
        };
        let n: u64 = num.parse().map_err(|_| invalid())?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            _ => return Err(invalid()),
        };
        n.checked_mul(factor).map(ByteSize).ok_or_else(invalid)
    }
}

/// A listen address: `host:port`, `[v6]:port`, or `off` to disable the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenAddr {
    #[default]
    Off,
    On(SocketAddr),
}

impl ConfigValue for ListenAddr {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        let s = raw.trim();
        if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("none") {
            return Ok(ListenAddr::Off);
        }
        let s = s.replace("localhost:", "127.0.0.1:");
        s.parse().map(ListenAddr::On).map_err(|_| {
            Invalid::new(
                "expected an address and port",
                "write it as [::]:443, 0.0.0.0:443 or 127.0.0.1:8443, or off",
            )
        })
    }
}

/// A comma-separated list; blanks are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct List(pub Vec<String>);

impl ConfigValue for List {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        Ok(List(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ))
    }
}

/// `EF__WORKER_QUEUES`: `queue=N` pairs separated by commas, each queue one of the job queues.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueLimits(pub Vec<(crate::queues::Queue, usize)>);

impl ConfigValue for QueueLimits {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        let names = crate::queues::Queue::ALL
            .iter()
            .map(|q| q.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut limits: Vec<(crate::queues::Queue, usize)> = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((name, n)) = item.split_once('=') else {
                return Err(Invalid::new(
                    format!("'{item}' is not queue=N"),
                    "write pairs such as ef_pull=4,ef_push=4,default=4",
                ));
            };
            let Some(queue) = crate::queues::Queue::parse(name.trim()) else {
                return Err(Invalid::new(
                    format!("'{}' is not a job queue", name.trim()),
                    format!("use one of {names}"),
                ));
            };
            let n: usize = match n.trim().parse() {
                Ok(n) if n > 0 && n <= 10_000 => n,
                _ => {
                    return Err(Invalid::new(
                        format!(
                            "the limit of {} is not a number from 1 to 10000",
                            queue.as_str()
                        ),
                        "write a positive whole number, e.g. default=4 (leave a queue out for no cap of its own)",
                    ));
                }
            };
            if limits.iter().any(|(q, _)| *q == queue) {
                return Err(Invalid::new(
                    format!("{} is listed twice", queue.as_str()),
                    "list each queue once",
                ));
            }
            limits.push((queue, n));
        }
        Ok(QueueLimits(limits))
    }
}

/// Networks whose forwarding headers we believe: `127.0.0.1/32, 10.0.0.0/8, ::1`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Networks(pub Vec<IpNet>);

impl ConfigValue for Networks {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        let mut nets = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = if item.contains('/') {
                item.parse::<IpNet>().ok()
            } else {
                item.parse::<IpAddr>().ok().map(IpNet::from)
            };
            match net {
                Some(n) => nets.push(n.trunc()),
                None => {
                    return Err(Invalid::new(
                        format!("'{item}' is not an address or network"),
                        "write addresses or CIDR networks separated by commas: 127.0.0.1/32, ::1/128, 10.0.0.0/8",
                    ));
                }
            }
        }
        Ok(Networks(nets))
    }
}

impl Networks {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// IPv4-mapped IPv6 peers (from a `[::]` listener) compare as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// `N/second|minute|hour|day` as the original's `EF__RATE_LIMIT_DEFAULT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

impl ConfigValue for RateLimit {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        let invalid = || {
            Invalid::new(
                "expected a rate",
                "write it as N/second, N/minute, N/hour or N/day, for example 100/minute",
            )
        };
        let (n, unit) = raw.trim().split_once('/').ok_or_else(invalid)?;
        let requests: u32 = n.trim().parse().map_err(|_| invalid())?;
        if requests == 0 {
            return Err(Invalid::new(
                "a rate of 0 would refuse every request",
                "use a positive number, or set EF__RATE_LIMIT_ENABLED=false",
            ));
        }
        let unit = unit.trim().to_ascii_lowercase();
        let unit = unit.trim_start_matches('1');
        let per = match unit {
            "second" | "seconds" | "s" | "sec" => 1,
            "minute" | "minutes" | "m" | "min" => 60,
            "hour" | "hours" | "h" => 3600,
            "day" | "days" | "d" => 86400,
            _ => return Err(invalid()),
        };
        Ok(RateLimit {
            requests,
            per: Duration::from_secs(per),
        })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "second",
            60 => "minute",
            3600 => "hour",
            _ => "day",
        };
        write!(f, "{}/{}", self.requests, unit)
    }
}

/// Log levels, including the Python names an existing `.env` uses (`WARNING`, `CRITICAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl ConfigValue for LogLevel {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "error" | "critical" | "fatal" => Ok(LogLevel::Error),
            _ => Err(Invalid::new(
                "unknown log level",
                "write one of DEBUG, INFO, WARNING, ERROR",
            )),
        }
    }
}

impl LogLevel {
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl ConfigValue for LogFormat {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "text" | "console" | "plain" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(Invalid::new("unknown log format", "write text or json")),
        }
    }
}

/// production refuses unsafe settings; development relaxes them for a workstation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    #[default]
    Production,
    Development,
}

impl ConfigValue for Environment {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "production" | "prod" => Ok(Environment::Production),
            "development" | "dev" => Ok(Environment::Development),
            _ => Err(Invalid::new(
                "unknown environment",
                "write production or development",
            )),
        }
    }
}

/// `EF__HSTS`: the Strict-Transport-Security value, or `off`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hsts(pub Option<String>);

impl ConfigValue for Hsts {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        let s = raw.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("false") {
            return Ok(Hsts(None));
        }
        if s.eq_ignore_ascii_case("on") || s.eq_ignore_ascii_case("true") {
            return Ok(Hsts(Some(crate::config::keys::HSTS_DEFAULT.to_owned())));
        }
        let ok = s.to_ascii_lowercase().starts_with("max-age=")
            && s[8..]
                .split(';')
                .next()
                .is_some_and(|n| n.trim().parse::<u64>().is_ok());
        if !ok || http::HeaderValue::from_str(s).is_err() {
            return Err(Invalid::new(
                "not a Strict-Transport-Security value",
                "write max-age=31536000; includeSubDomains (or off)",
            ));
        }
        Ok(Hsts(Some(s.to_owned())))
    }
}

/// Timeouts accept bare seconds too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeout(pub Duration);

impl ConfigValue for Timeout {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        match parse_duration(raw) {
            Some(d) if !d.is_zero() => Ok(Timeout(d)),
            Some(_) => Err(Invalid::new(
                "a timeout of zero would fail everything at once",
                "use a positive duration such as 30s",
            )),
            None => Err(Invalid::new(
                "expected a duration",
                "write seconds (60) or a number with a unit: 250ms, 60s, 5m, 1h",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            Timeout::parse_value("60").unwrap().0,
            Duration::from_secs(60)
        );
        assert_eq!(
            Timeout::parse_value("5m").unwrap().0,
            Duration::from_secs(300)
        );
        assert_eq!(
            Timeout::parse_value("250ms").unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            Timeout::parse_value("1d").unwrap().0,
            Duration::from_secs(86400)
        );
        assert!(Timeout::parse_value("0").is_err());
        assert!(Timeout::parse_value("soon").is_err());
        assert!(Timeout::parse_value("-5s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse_value("50M").unwrap().0, 50 << 20);
        assert_eq!(ByteSize::parse_value("50MB").unwrap().0, 50 << 20);
        assert_eq!(ByteSize::parse_value("1024").unwrap().0, 1024);
        assert!(ByteSize::parse_value("50 parsecs").is_err());
        assert!(ByteSize::parse_value("99999999999999999999G").is_err());
    }

    #[test]
    fn rates() {
        let r = RateLimit::parse_value("100/minute").unwrap();
        assert_eq!((r.requests, r.per), (100, Duration::from_secs(60)));
        assert_eq!(r.to_string(), "100/minute");
        assert!(RateLimit::parse_value("100 per minute").is_err());
        assert!(RateLimit::parse_value("0/second").is_err());
    }

    #[test]
    fn networks_match_mapped_v4() {
        let n = Networks::parse_value("127.0.0.1, 10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!n.contains("192.168.1.1".parse().unwrap()));
        assert!(Networks::parse_value("10.0.0.0/99").is_err());
    }

    #[test]
    fn booleans_like_pydantic() {
        for t in ["true", "True", "1", "yes", "on"] {
            assert!(bool::parse_value(t).unwrap());
        }
        for f in ["false", "FALSE", "0", "no", "off"] {
            assert!(!bool::parse_value(f).unwrap());
        }
        assert!(bool::parse_value("maybe").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(ListenAddr::parse_value("off").unwrap(), ListenAddr::Off);
        assert!(
            matches!(ListenAddr::parse_value("[::]:443").unwrap(), ListenAddr::On(a) if a.port() == 443)
        );
        assert!(ListenAddr::parse_value("443").is_err());
    }
}
