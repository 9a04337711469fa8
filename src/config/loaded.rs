//! What loading produces: every effective raw value with the layer it came from (`Source`,
//! `Setting`), the notices and warnings that do not stop the server (`Diagnostic`), the problems
//! that do (`ConfigError`, reported together as `ConfigErrors`), and `Loaded`, which carries all of
//! them next to the typed `Config`. The loader, the resolver, validation and rendering all speak
//! these types, so they live apart from any one of them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::sections::Config;

/// Where an effective value came from; shown by `config show` and in every error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    DevDefault,
    File { path: PathBuf, line: usize },
    Environment,
    Credential(PathBuf),
    KeyFile { variable: String, path: PathBuf },
    Generated(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::DevDefault => f.write_str("default (--dev)"),
            Source::File { path, line } => write!(f, "{} line {line}", path.display()),
            Source::Environment => f.write_str("environment"),
            Source::Credential(path) => write!(f, "credential {}", path.display()),
            Source::KeyFile { variable, path } => write!(f, "{variable}={}", path.display()),
            Source::Generated(path) => write!(f, "generated, kept in {}", path.display()),
        }
    }
}

/// How a source is named inside a sentence ("from /etc/euraflow/euraflow.env line 3").
pub(super) fn source_phrase(source: &Source) -> String {
    match source {
        Source::File { path, line } => format!("from {} line {line}", path.display()),
        Source::Environment => "from the environment".into(),
        other => format!("from {other}"),
    }
}

#[derive(Debug, Clone)]
pub struct Setting {
    pub value: String,
    pub source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Notice,
    Warning,
}

/// Something the operator should know about the configuration that does not stop the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
}

/// One problem that prevents starting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// All problems found while loading, reported together.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "the configuration has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The result of loading: the typed configuration, every effective raw value with its source,
/// and the notices and warnings to log once telemetry is up.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub settings: BTreeMap<&'static str, Setting>,
    pub diagnostics: Vec<Diagnostic>,
    /// The env file that was read, if any.
    pub config_file: Option<PathBuf>,
}

impl Loaded {
    /// Notices and warnings go to the log once telemetry is up.
    pub fn log_diagnostics(&self) {
        for d in &self.diagnostics {
            match d.severity {
                Severity::Notice => tracing::info!(target: "euraflow::config", "{}", d.message),
                Severity::Warning => tracing::warn!(target: "euraflow::config", "{}", d.message),
            }
        }
    }
}
