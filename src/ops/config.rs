//! `euraflow config show|check|template`: the effective configuration with its sources, a
//! validation that runs without starting anything (the unit's `ExecStartPre`), and the
//! documented template.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, LoadOptions, Loaded};
use crate::exit;

fn load(dev: bool, file: Option<PathBuf>) -> Result<Loaded, config::ConfigErrors> {
    config::load(&LoadOptions::from_process(dev, file))
}

/// `config template [--markdown | --short]`
pub fn template(markdown: bool, short: bool) -> ExitCode {
    if markdown {
        print!("{}", config::render_markdown_reference());
    } else if short {
        print!("{}", config::render_short_template());
    } else {
        print!("{}", config::render_template());
    }
    ExitCode::SUCCESS
}

fn print_diagnostics(loaded: &Loaded) {
    for d in &loaded.diagnostics {
        let label = match d.severity {
            config::Severity::Notice => "notice",
            config::Severity::Warning => "warning",
        };
        eprintln!("{label}: {}", d.message);
    }
}

pub fn show(dev: bool, file: Option<PathBuf>) -> ExitCode {
    match load(dev, file) {
        Ok(loaded) => {
            print_diagnostics(&loaded);
            print!("{}", config::render_show(&loaded));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            exit::code(exit::FAILURE)
        }
    }
}

pub fn check(dev: bool, file: Option<PathBuf>) -> ExitCode {
    let loaded = match load(dev, file) {
        Ok(l) => l,
        Err(errors) => {
            eprint!("{errors}");
            return exit::code(exit::FAILURE);
        }
    };
    print_diagnostics(&loaded);
    // A configured certificate must load and match its key, or the server would not start.
    if let config::TlsConfig::Files { .. } = &loaded.config.tls
        && !matches!(loaded.config.http.https_listen, config::ListenAddr::Off)
        && let Err(e) = crate::http::tls::CertificateStore::open(
            loaded.config.tls.clone(),
            &loaded.config.server_name,
        )
    {
        eprintln!("the configuration has 1 problem:\n  - TLS: {e:#}");
        return exit::code(exit::FAILURE);
    }
    let mode = if loaded.config.is_production() {
        "production"
    } else {
        "development"
    };
    let file = loaded
        .config_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "none".into());
    println!("configuration OK ({mode}; file: {file})");
    ExitCode::SUCCESS
}
