//! How the configuration is shown to people: `config show` (effective values with their
//! sources, secrets redacted), the packaged env-file template, and the operator guides' Markdown
//! reference. All three are generated from the key table in `keys`, so the documentation cannot
//! drift from what the loader accepts.

use super::keys::{self, DefaultValue as KeyDefault, Key};
use super::loaded::Loaded;

/// How a value is shown to humans: secrets never, other values quoted.
pub fn display_value(key: &Key, value: &str) -> String {
    if key.secret {
        if value.is_empty() {
            "(unset)".into()
        } else {
            format!("<redacted, {} characters>", value.chars().count())
        }
    } else if value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '#' || c == '"' || c == '\'')
    {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        value.to_owned()
    }
}

/// `config show`: every key in env-file syntax with its source, secrets redacted. The output can
/// be saved and edited as a configuration file.
pub fn render_show(loaded: &Loaded) -> String {
    let mut out = String::new();
    let mode = if loaded.config.is_production() {
        "production"
    } else {
        "development"
    };
    out.push_str(&format!(
        "# euraflow {} effective configuration ({mode})\n",
        env!("CARGO_PKG_VERSION")
    ));
    match &loaded.config_file {
        Some(p) => out.push_str(&format!("# configuration file: {}\n", p.display())),
        None => out.push_str("# configuration file: none\n"),
    }
    let width = keys::KEYS
        .iter()
        .map(|k| {
            let v = loaded
                .settings
                .get(k.name)
                .map(|s| display_value(k, &s.value))
                .unwrap_or_default();
            k.name.len() + 1 + v.len()
        })
        .max()
        .unwrap_or(40)
        .min(72);
    let mut section = "";
    for k in keys::KEYS {
        if k.section != section {
            section = k.section;
            out.push_str(&format!("\n# --- {section}\n"));
        }
        let Some(s) = loaded.settings.get(k.name) else {
            continue;
        };
        let line = format!("{}={}", k.name, display_value(k, &s.value));
        out.push_str(&format!("{line:<width$}  # {}\n", s.source));
    }
    out
}

/// The keys an operator of a single machine typically sets, in the order the short
/// `/etc/euraflow/euraflow.env` lists them (its first version, written once at install).
pub const OPERATOR_KEYS: &[&str] = &[
    "EF__SERVER_NAME",
    "EF__TLS_CERT",
    "EF__TLS_KEY",
    "EF__TRUSTED_PROXIES",
    "EF__CORS_ORIGINS",
    "EF__DB_HOST",
    "EF__DB_PORT",
    "EF__DB_NAME",
    "EF__DB_USER",
    "EF__DB_PASSWORD",
    "EF__REDIS_URL",
    "EF__WEB_ROOT",
    "EF__DOWNLOADS_ROOT",
    "EF__BACKUP_DIR",
    "EF__BACKUP_RETENTION_DAYS",
    "EF__WORKER_CONCURRENCY",
    "EF__LOG_LEVEL",
];

/// Where the package puts the full reference (`render_template`).
pub const REFERENCE_PATH: &str = "/usr/share/doc/euraflow/euraflow.env.reference";

/// The short env file the package writes once as `/etc/euraflow/euraflow.env` when there is
/// none: the keys of [`OPERATOR_KEYS`], commented out, pointing to the full reference. It is not
/// a conffile (the maintainer scripts own it), so an upgrade never replaces it and never stops
/// at dpkg's "modified configuration file" prompt; new keys appear in the reference.
pub fn render_short_template() -> String {
    let mut out = String::from(
        "# /etc/euraflow/euraflow.env — configuration of the euraflow appliance (本机配置).\n\
         # The settings an operator usually changes, commented out with their defaults; uncomment\n\
         # and edit to change one. Every other key, with its default and meaning, is in\n",
    );
    out.push_str(&format!(
        "#   {REFERENCE_PATH}  (or: euraflow config template)\n"
    ));
    out.push_str(
        "# and any of them may be added here. Upgrades never change this file.\n\
         # 完整的配置项说明见上面的参考文件；升级不会修改本文件。\n",
    );
    out.push_str(HOW_TO_APPLY);
    for name in OPERATOR_KEYS {
        if let Some(k) = keys::KEYS.iter().find(|k| k.name == *name) {
            push_key(&mut out, k);
        }
    }
    out
}

const HOW_TO_APPLY: &str = "# Precedence: defaults < this file < environment < $CREDENTIALS_DIRECTORY/<name> < EF__<KEY>_FILE.\n\
     # Check with `euraflow config check`; see effective values with `euraflow config show`.\n\
     # Apply with `systemctl restart euraflow euraflow-worker` (TLS files only: `systemctl reload euraflow`).\n";

/// The documented env file: every key with its default, commented out. Packaged as the
/// reference [`REFERENCE_PATH`] and the source of the operator guides' configuration reference.
pub fn render_template() -> String {
    let mut out = String::from(
        "# euraflow configuration reference: every setting commented out with its default.\n\
         # Copy the lines you change into /etc/euraflow/euraflow.env (or a --config file), uncommented.\n",
    );
    out.push_str(HOW_TO_APPLY);
    let mut section = "";
    for k in keys::KEYS {
        if k.section != section {
            section = k.section;
            out.push_str(&format!("\n# === {section}\n"));
        }
        push_key(&mut out, k);
    }
    out
}

/// One key of an env-file template: its documentation and the commented default.
fn push_key(out: &mut String, k: &Key) {
    {
        out.push_str(&format!("\n# {}\n", k.doc));
        let default = match k.default {
            KeyDefault::Value(v) => v.to_owned(),
            KeyDefault::ByMode { production, .. } => production.to_owned(),
            KeyDefault::UnderStateDir(sub) => format!("/var/lib/euraflow/{sub}"),
            KeyDefault::Hostname => "<this machine's host name>".to_owned(),
            KeyDefault::DevUser { production } => production.to_owned(),
            KeyDefault::Unset => String::new(),
        };
        if let Some(cred) = k.credential {
            out.push_str(&format!(
                "# Secret: prefer the file /etc/euraflow/credentials/{cred} (passed as a systemd credential).\n"
            ));
        }
        let shown = if default.contains(' ') || default.contains('#') {
            format!("\"{default}\"")
        } else {
            default
        };
        out.push_str(&format!("#{}={shown}\n", k.name));
    }
}

/// The configuration reference as Markdown tables, one per section (embedded in
/// docs/operations.md and docs/zh-CN/运维手册.md between `<!-- config-reference -->` markers;
/// a test keeps them identical).
pub fn render_markdown_reference() -> String {
    let mut out = String::new();
    let mut section = "";
    for k in keys::KEYS {
        if k.section != section {
            section = k.section;
            out.push_str(&format!(
                "\n**{section}**\n\n| key | default | meaning |\n|---|---|---|\n"
            ));
        }
        let default = match k.default {
            KeyDefault::Value(v) => format!("`{v}`"),
            KeyDefault::ByMode {
                production,
                development,
            } => format!("`{production}` (`--dev`: `{development}`)"),
            KeyDefault::UnderStateDir(sub) => format!("`<state dir>/{sub}`"),
            KeyDefault::Hostname => "host name".to_owned(),
            KeyDefault::DevUser { production } => format!("`{production}` (`--dev`: your user)"),
            KeyDefault::Unset => "—".to_owned(),
        };
        let mut doc = k.doc.replace('|', "\\|");
        if let Some(cred) = k.credential {
            doc.push_str(&format!(" Secret; credential `{cred}`."));
        }
        out.push_str(&format!("| `{}` | {default} | {doc} |\n", k.name));
    }
    out
}
