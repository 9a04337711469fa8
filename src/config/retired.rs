//! Keys of the original EuraFlow `.env` that no longer apply (Celery, ARQ, plugins): each gets
//! one clear notice, never a failure; old spellings (aliases) of current keys; and the closest
//! known key for a misspelt `EF__` name. So an operator's existing `.env` keeps working.

use super::keys::KEYS;

/// A key of the original deployment that the appliance no longer needs. It is accepted with one
/// notice so an operator's existing `.env` works unchanged.
#[derive(Debug, Clone, Copy)]
pub struct Retired {
    /// A full key name, or a prefix ending in `_`.
    pub pattern: &'static str,
    pub notice: &'static str,
}

pub static RETIRED: &[Retired] = &[
    Retired {
        pattern: "EF__CELERY_",
        notice: "jobs run in PostgreSQL under `euraflow worker`; Celery settings no longer apply",
    },
    Retired {
        pattern: "EF__USE_ARQ_DISPATCHER",
        notice: "ARQ is replaced by the PostgreSQL job queue of `euraflow worker`",
    },
    Retired {
        pattern: "EF__ARQ_",
        notice: "ARQ is replaced by the PostgreSQL job queue of `euraflow worker`",
    },
    Retired {
        pattern: "EF__PLUGIN_",
        notice: "features are built into the binary; there is no plugin directory to load",
    },
    Retired {
        pattern: "EF__METRICS_PREFIX",
        notice: "metric names keep the original `ef_` prefix",
    },
    Retired {
        pattern: "EF__TRACE_ENABLED",
        notice: "every request carries a request id (X-Trace-Id, REQUEST_ID in the journal)",
    },
    Retired {
        pattern: "EF__ADMIN_PASSWORD",
        notice: "there is no default admin password; the first admin's random password is written to <state dir>/initial-admin-password",
    },
];

/// An old name for a current key.
#[derive(Debug, Clone, Copy)]
pub struct Alias {
    pub name: &'static str,
    pub target: &'static str,
}

pub static ALIASES: &[Alias] = &[Alias {
    name: "EF__CELERY_CONCURRENCY",
    target: "EF__WORKER_CONCURRENCY",
}];

/// Keys read before the configuration file is found; they are not themselves configuration.
pub static META_KEYS: &[&str] = &["EF__CONFIG_FILE"];

pub fn alias_of(name: &str) -> Option<&'static Alias> {
    ALIASES.iter().find(|a| a.name == name)
}

pub fn retired(name: &str) -> Option<&'static Retired> {
    if alias_of(name).is_some() {
        return None;
    }
    RETIRED.iter().find(|r| {
        if r.pattern.ends_with('_') {
            name.starts_with(r.pattern)
        } else {
            name == r.pattern
        }
    })
}

/// The known key most like `name`, for "did you mean" warnings.
pub fn closest(name: &str) -> Option<&'static str> {
    let candidates = KEYS
        .iter()
        .map(|k| k.name)
        .chain(ALIASES.iter().map(|a| a.name))
        .chain(META_KEYS.iter().copied());
    candidates
        .map(|c| (c, strsim::jaro_winkler(&name.to_ascii_uppercase(), c)))
        .filter(|(_, score)| *score >= 0.80)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_the_intended_key() {
        assert_eq!(closest("EF__DB_POOLSIZE"), Some("EF__DB_POOL_SIZE"));
        assert_eq!(closest("EF__API__PORT"), Some("EF__API_PORT"));
        assert_eq!(closest("EF__XYZZY_FROB_NICATE_QQQ"), None);
    }
}
