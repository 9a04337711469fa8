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

/// The documented env file: every key with its default, commented out. Packaged as
/// `/etc/euraflow/euraflow.env` and the source of the operator guides' configuration reference.
pub fn render_template() -> String {
    let mut out = String::from(
        "# /etc/euraflow/euraflow.env — configuration of the euraflow appliance.\n\
         # Every setting is shown commented out with its default; uncomment and edit to change it.\n\
         # Precedence: defaults < this file < environment < $CREDENTIALS_DIRECTORY/<name> < EF__<KEY>_FILE.\n\
         # Check with `euraflow config check`; see effective values with `euraflow config show`.\n\
         # Apply with `systemctl restart euraflow euraflow-worker` (TLS files only: `systemctl reload euraflow`).\n",
    );
    let mut section = "";
    for k in keys::KEYS {
        if k.section != section {
            section = k.section;
            out.push_str(&format!("\n# === {section}\n"));
        }
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
    out
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
