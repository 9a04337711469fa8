//! Configuration: embedded defaults (the production guide's values) < the env file
//! (`/etc/euraflow/euraflow.env`) < the process environment < systemd credentials
//! (`$CREDENTIALS_DIRECTORY/<name>`) < `<KEY>_FILE`.
//!
//! Loading never stops at the first problem: every malformed value is reported at once, each
//! naming the key, where the value came from (file and line) and how to fix it.

mod env_file;
pub mod keys;
mod secret;
pub mod value;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use secret::Secret;
pub use value::{
    ByteSize, ConfigValue, Dur, Environment, Hsts, Invalid, List, ListenAddr, LogFormat, LogLevel,
    Networks, QueueLimits, RateLimit, Timeout,
};

use keys::{DefaultValue as KeyDefault, Key};

pub const DEFAULT_CONFIG_FILE: &str = "/etc/euraflow/euraflow.env";
pub const DEV_CONFIG_FILE: &str = "euraflow.env";
/// Where the package keeps the secrets it generates (`LoadCredential=` reads them from here).
pub const PACKAGED_CREDENTIALS: &str = "/etc/euraflow/credentials";
/// The shortest secret accepted in production (the guide: "64位以上随机字符串").
pub const MIN_SECRET_LEN: usize = 64;
/// Secret files (credentials, `<KEY>_FILE`) larger than this are refused.
const MAX_SECRET_FILE: u64 = 64 * 1024;

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

/// What the loader reads. `from_process` is what the binary uses; tests build one by hand so
/// they never depend on the machine's environment.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `serve --dev`: development defaults.
    pub dev: bool,
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// The process environment (all variables; only `EF__*` and `CREDENTIALS_DIRECTORY` are used).
    pub env: Vec<(String, String)>,
    /// Relative paths are resolved against this directory.
    pub cwd: PathBuf,
    pub hostname: String,
    /// The user running the command (the development database role).
    pub username: String,
}

impl LoadOptions {
    pub fn from_process(dev: bool, config_file: Option<PathBuf>) -> Self {
        LoadOptions {
            dev,
            config_file,
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            hostname: system_hostname(),
            username: current_username(),
        }
    }

    fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The name of the user running this process, from the password database (not `$USER`, which
/// `sudo` and service managers set inconsistently).
pub fn current_username() -> String {
    let uid = rustix::process::getuid().as_raw();
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let mut f = line.split(':');
            if let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next())
                && id.parse::<u32>().ok() == Some(uid)
            {
                return name.to_owned();
            }
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "postgres".to_owned())
}

pub fn system_hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

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

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub state_dir: PathBuf,
    pub server_name: String,
    pub debug: bool,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub web: WebConfig,
    pub security: SecurityConfig,
    pub db: DbConfig,
    pub redis: RedisConfig,
    pub worker: WorkerConfig,
    pub log: LogConfig,
    pub business: BusinessConfig,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub https_listen: ListenAddr,
    pub http_listen: SocketAddr,
    pub api_prefix: String,
    pub max_connections: usize,
    pub max_body_size: u64,
    pub request_timeout: Duration,
    pub header_timeout: Duration,
    /// An open connection with no request in progress is closed after this long.
    pub keepalive_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub ws_idle_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub trusted_proxies: Networks,
    pub cors_origins: Vec<String>,
    pub hsts: Option<String>,
    pub metrics_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsConfig {
    /// Generated once into `<state dir>/tls/` and reused.
    SelfSigned {
        dir: PathBuf,
    },
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub web_root: PathBuf,
    pub downloads_root: PathBuf,
    pub web_cache_max_age: Duration,
    pub downloads_cache_max_age: Duration,
}

#[derive(Debug, Clone)]
pub struct SecurityConfig {
    pub secret_key: Secret,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// `None` when `EF__RATE_LIMIT_ENABLED=false`.
    pub rate_limit: Option<RateLimit>,
    pub password_hash: PasswordHash,
    pub single_session: bool,
    pub redis_fail_open: bool,
    pub login_captcha: bool,
}

/// How new passwords are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordHash {
    #[default]
    Argon2id,
    Bcrypt,
}

impl ConfigValue for PasswordHash {
    fn parse_value(raw: &str) -> Result<Self, Invalid> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "argon2id" | "argon2" => Ok(PasswordHash::Argon2id),
            "bcrypt" => Ok(PasswordHash::Bcrypt),
            _ => Err(Invalid::new(
                "unknown password hash",
                "write argon2id or bcrypt",
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password: Secret,
    pub sslmode: String,
    /// CA bundle for `verify-full`; `None`: the public web roots.
    pub sslrootcert: Option<PathBuf>,
    pub pool_size: usize,
    pub max_overflow: usize,
    pub pool_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_recycle: Duration,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub auto_migrate: bool,
}

impl DbConfig {
    /// The pool's upper bound: base size plus overflow (the guide: 40 + 60 = 100).
    pub fn max_connections(&self) -> usize {
        self.pool_size + self.max_overflow
    }
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Option<Secret>,
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub password: Secret,
    pub max_connections: usize,
    pub timeout: Duration,
    pub prefix: String,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub concurrency: usize,
    /// Per-queue caps on running jobs (`EF__WORKER_QUEUES`); unlisted queues are capped only by
    /// `concurrency`.
    pub queue_limits: Vec<(crate::queues::Queue, usize)>,
    pub poll_interval: Duration,
    pub shutdown_timeout: Duration,
    pub lease: Duration,
    pub job_retention_days: u32,
    pub scheduler_enabled: bool,
    pub backup_dir: PathBuf,
    pub backup_retention_days: u32,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct BusinessConfig {
    pub inventory_default_threshold: u32,
    pub price_min_margin: f64,
}

impl Config {
    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }
}

/// Load, layer and validate. `Err` carries every problem found.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let (loaded, problems) = load_with_problems(opts);
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigErrors(problems))
    }
}

/// The configuration as far as it can be read, and every problem found. For `euraflow check`,
/// which reports problems as failed checklist lines and still checks the rest; everything else
/// uses [`load`] and refuses to run. A malformed value is replaced by its type's default here.
pub fn load_with_problems(opts: &LoadOptions) -> (Loaded, Vec<ConfigError>) {
    let mut loader = Loader::new(opts);
    loader.apply_defaults();
    loader.apply_file();
    loader.apply_environment();
    loader.apply_aliases();
    loader.apply_credentials();
    loader.apply_key_files();
    loader.resolve_state_paths();
    loader.apply_dev_secret();
    let mut problems = std::mem::take(&mut loader.errors);
    let (loaded, more) = loader.build();
    problems.extend(more);
    (loaded, problems)
}

// ----------------------------------------------------------------------------------------------

/// A value as found in one layer, before it is classified.
struct Raw<'a> {
    name: &'a str,
    value: &'a str,
    source: Source,
}

struct Loader<'o> {
    opts: &'o LoadOptions,
    settings: BTreeMap<&'static str, Setting>,
    /// `<KEY>_FILE` variables: key -> (variable, path, source of the variable).
    key_files: BTreeMap<&'static str, (String, String, Source)>,
    /// Old names seen (alias -> value with source); applied after all layers.
    aliases: BTreeMap<&'static str, Setting>,
    diagnostics: Vec<Diagnostic>,
    errors: Vec<ConfigError>,
    config_file: Option<PathBuf>,
    /// Keys set by the env file, to recognise the same value repeated by systemd's
    /// `EnvironmentFile=` in the environment.
    file_values: BTreeMap<&'static str, Setting>,
}

impl<'o> Loader<'o> {
    fn new(opts: &'o LoadOptions) -> Self {
        Loader {
            opts,
            settings: BTreeMap::new(),
            key_files: BTreeMap::new(),
            aliases: BTreeMap::new(),
            diagnostics: Vec::new(),
            errors: Vec::new(),
            config_file: None,
            file_values: BTreeMap::new(),
        }
    }

    fn notice(&mut self, message: String) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Notice,
            message,
        });
    }

    fn warning(&mut self, message: String) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message,
        });
    }

    fn error(&mut self, key: Option<&str>, message: String) {
        self.errors.push(ConfigError {
            key: key.map(str::to_owned),
            message,
        });
    }

    fn apply_defaults(&mut self) {
        for key in keys::KEYS {
            let (value, source) = match key.default {
                KeyDefault::Value(v) => (v.to_owned(), Source::Default),
                KeyDefault::ByMode {
                    production,
                    development,
                } => {
                    if self.opts.dev {
                        (development.to_owned(), Source::DevDefault)
                    } else {
                        (production.to_owned(), Source::Default)
                    }
                }
                // Resolved once EF__STATE_DIR is known.
                KeyDefault::UnderStateDir(_) => (String::new(), Source::Default),
                KeyDefault::Hostname => (self.opts.hostname.clone(), Source::Default),
                KeyDefault::DevUser { production } => {
                    if self.opts.dev {
                        (self.opts.username.clone(), Source::DevDefault)
                    } else {
                        (production.to_owned(), Source::Default)
                    }
                }
                KeyDefault::Unset => (String::new(), Source::Default),
            };
            self.settings.insert(key.name, Setting { value, source });
        }
    }

    fn apply_file(&mut self) {
        let explicit = self
            .opts
            .config_file
            .clone()
            .map(|p| (p, "--config"))
            .or_else(|| {
                self.opts
                    .env_var("EF__CONFIG_FILE")
                    .filter(|v| !v.is_empty())
                    .map(|v| (PathBuf::from(v), "EF__CONFIG_FILE"))
            });
        let (path, required) = match explicit {
            Some((p, _)) => (self.absolute(&p), true),
            None if self.opts.dev => (self.absolute(Path::new(DEV_CONFIG_FILE)), false),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let text = match read_limited(&path, env_file::MAX_FILE_SIZE) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                self.notice(format!(
                    "no configuration file at {}; using the embedded defaults and the environment",
                    path.display()
                ));
                return;
            }
            Err(e) => {
                self.error(
                    None,
                    format!(
                        "cannot read the configuration file {}: {e}; fix: check the path and that the service user may read it (mode 0640 root:euraflow)",
                        path.display()
                    ),
                );
                return;
            }
        };
        self.config_file = Some(path.clone());
        let (entries, syntax) = env_file::parse(&text);
        for e in syntax {
            self.error(
                None,
                format!(
                    "{} line {}: {}; fix: write KEY=value, or start the line with # to comment it out",
                    path.display(),
                    e.line,
                    e.message
                ),
            );
        }
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for entry in entries {
            if let Some(first) = seen.insert(entry.key.clone(), entry.line) {
                self.warning(format!(
                    "{} sets {} twice (lines {first} and {}); the later line wins",
                    path.display(),
                    entry.key,
                    entry.line
                ));
            }
            let source = Source::File {
                path: path.clone(),
                line: entry.line,
            };
            self.apply_raw(Raw {
                name: &entry.key,
                value: &entry.value,
                source,
            });
        }
    }

    fn apply_environment(&mut self) {
        let vars: Vec<(String, String)> = self
            .opts
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("EF__"))
            .cloned()
            .collect();
        for (name, value) in &vars {
            if keys::META_KEYS.contains(&name.as_str()) {
                continue;
            }
            // systemd's EnvironmentFile= loads the same file into the environment; a value equal
            // to the file's is reported as coming from the file, which is where an operator edits it.
            if let Some(k) = keys::find(name)
                && let Some(from_file) = self.file_values.get(k.name)
                && &from_file.value == value
            {
                continue;
            }
            self.apply_raw(Raw {
                name,
                value,
                source: Source::Environment,
            });
        }
    }

    /// Classify one `NAME=value` from the file or the environment.
    fn apply_raw(&mut self, raw: Raw<'_>) {
        let from_file = matches!(raw.source, Source::File { .. });
        let where_ = source_phrase(&raw.source);
        if !raw.name.starts_with("EF__") {
            self.warning(format!(
                "{} is not an EF__ setting and is ignored ({where_})",
                raw.name
            ));
            return;
        }
        if keys::META_KEYS.contains(&raw.name) {
            self.warning(format!(
                "{} only works in the environment or as --config, not inside the file ({where_}); ignored",
                raw.name
            ));
            return;
        }
        if let Some(key) = keys::find(raw.name) {
            let setting = Setting {
                value: raw.value.to_owned(),
                source: raw.source,
            };
            if from_file {
                self.file_values.insert(key.name, setting.clone());
            }
            self.settings.insert(key.name, setting);
            return;
        }
        if let Some(alias) = keys::alias_of(raw.name) {
            self.aliases.insert(
                alias.name,
                Setting {
                    value: raw.value.to_owned(),
                    source: raw.source,
                },
            );
            return;
        }
        if let Some(base) = raw.name.strip_suffix("_FILE")
            && let Some(key) = keys::find(base).filter(|k| k.secret)
        {
            self.key_files.insert(
                key.name,
                (raw.name.to_owned(), raw.value.to_owned(), raw.source),
            );
            return;
        }
        if let Some(retired) = keys::retired(raw.name) {
            // One notice per key, even when both the file and the environment set it.
            let message = format!(
                "{} no longer applies: {} ({where_})",
                raw.name, retired.notice
            );
            if !self.diagnostics.iter().any(|d| {
                d.message
                    .starts_with(&format!("{} no longer applies", raw.name))
            }) {
                self.notice(message);
            }
            return;
        }
        match keys::closest(raw.name) {
            Some(near) => self.warning(format!(
                "unknown setting {} ({where_}) is ignored; did you mean {near}?",
                raw.name
            )),
            None => self.warning(format!(
                "unknown setting {} ({where_}) is ignored; `euraflow config show` lists every setting",
                raw.name
            )),
        }
    }

    fn apply_aliases(&mut self) {
        let aliases = std::mem::take(&mut self.aliases);
        for (name, setting) in aliases {
            let Some(alias) = keys::alias_of(name) else {
                continue;
            };
            let target_set = self
                .settings
                .get(alias.target)
                .is_some_and(|s| !matches!(s.source, Source::Default | Source::DevDefault));
            if target_set {
                self.notice(format!(
                    "{name} ({}) is the old name of {}, which is also set; {} wins",
                    source_phrase(&setting.source),
                    alias.target,
                    alias.target
                ));
            } else {
                self.notice(format!(
                    "{name} ({}) is read as {}; rename it when convenient",
                    source_phrase(&setting.source),
                    alias.target
                ));
                self.settings.insert(alias.target, setting);
            }
        }
    }

    /// systemd passes secrets in `$CREDENTIALS_DIRECTORY`. A command an operator runs by hand
    /// (`euraflow migrate`, `check`, `user ...`) has no such variable: in production it reads the
    /// packaged credentials directory instead, so the same secrets apply without copying them.
    fn apply_credentials(&mut self) {
        let dir = match self
            .opts
            .env_var("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
        {
            Some(d) => PathBuf::from(d),
            None if !self.opts.dev && Path::new(PACKAGED_CREDENTIALS).is_dir() => {
                PathBuf::from(PACKAGED_CREDENTIALS)
            }
            None => return,
        };
        for key in keys::KEYS.iter().filter(|k| k.secret) {
            let Some(name) = key.credential else { continue };
            let path = dir.join(name);
            match read_limited(&path, MAX_SECRET_FILE) {
                Ok(text) => {
                    self.settings.insert(
                        key.name,
                        Setting {
                            value: trim_secret(&text),
                            source: Source::Credential(path),
                        },
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => self.error(
                    Some(key.name),
                    format!(
                        "{}: cannot read credential {}: {e}; fix: check the LoadCredential= line of the unit",
                        key.name,
                        path.display()
                    ),
                ),
            }
        }
    }

    fn apply_key_files(&mut self) {
        let files = std::mem::take(&mut self.key_files);
        for (name, (variable, path, origin)) in files {
            let path = self.absolute(Path::new(&path));
            match read_limited(&path, MAX_SECRET_FILE) {
                Ok(text) => {
                    self.settings.insert(
                        name,
                        Setting {
                            value: trim_secret(&text),
                            source: Source::KeyFile { variable, path },
                        },
                    );
                }
                Err(e) => self.error(
                    Some(name),
                    format!(
                        "{variable}={} ({}): cannot read the file: {e}; fix: point it at a readable file holding only the secret",
                        path.display(),
                        source_phrase(&origin)
                    ),
                ),
            }
        }
    }

    /// Make `EF__STATE_DIR` absolute and fill the defaults that live below it.
    fn resolve_state_paths(&mut self) {
        let state = self
            .settings
            .get("EF__STATE_DIR")
            .map(|s| s.value.clone())
            .unwrap_or_default();
        let state_dir = self.absolute(Path::new(&state));
        if let Some(s) = self.settings.get_mut("EF__STATE_DIR") {
            s.value = state_dir.display().to_string();
        }
        for key in keys::KEYS {
            if let KeyDefault::UnderStateDir(sub) = key.default
                && let Some(s) = self.settings.get_mut(key.name)
                && matches!(s.source, Source::Default | Source::DevDefault)
            {
                s.value = state_dir.join(sub).display().to_string();
            }
        }
    }

    /// `--dev` without a secret: generate one into the state dir and keep it there, so tokens
    /// survive restarts of the development server.
    fn apply_dev_secret(&mut self) {
        if !self.opts.dev {
            return;
        }
        let has_secret = self
            .settings
            .get("EF__SECRET_KEY")
            .is_some_and(|s| !s.value.is_empty());
        if has_secret {
            return;
        }
        let state_dir = PathBuf::from(
            self.settings
                .get("EF__STATE_DIR")
                .map(|s| s.value.clone())
                .unwrap_or_default(),
        );
        let path = state_dir.join("secret_key");
        match load_or_generate_secret(&path) {
            Ok(secret) => {
                self.settings.insert(
                    "EF__SECRET_KEY",
                    Setting {
                        value: secret,
                        source: Source::Generated(path),
                    },
                );
            }
            Err(e) => self.error(
                Some("EF__SECRET_KEY"),
                format!(
                    "cannot keep the development secret in {}: {e}; fix: make the directory writable or set EF__SECRET_KEY",
                    path.display()
                ),
            ),
        }
    }

    fn absolute(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.opts.cwd.join(p)
        }
    }

    fn build(self) -> (Loaded, Vec<ConfigError>) {
        let Loader {
            settings,
            mut diagnostics,
            config_file,
            opts,
            ..
        } = self;
        let mut r = Resolver {
            settings: &settings,
            errors: Vec::new(),
        };
        let environment: Environment = r.get("EF__ENV");
        let state_dir = PathBuf::from(r.get::<String>("EF__STATE_DIR"));
        let api_host = r.get::<value::Ip>("EF__API_HOST").0;
        let api_port: u16 = r.get("EF__API_PORT");
        let tls_cert: Option<PathBuf> = r.get("EF__TLS_CERT");
        let tls_key: Option<PathBuf> = r.get("EF__TLS_KEY");
        let tls = match (tls_cert, tls_key) {
            (None, None) => TlsConfig::SelfSigned {
                dir: state_dir.join("tls"),
            },
            (Some(cert), Some(key)) => TlsConfig::Files {
                cert: absolute(&opts.cwd, &cert),
                key: absolute(&opts.cwd, &key),
            },
            (Some(_), None) | (None, Some(_)) => {
                r.fail(
                    "EF__TLS_KEY",
                    "EF__TLS_CERT and EF__TLS_KEY must be set together; fix: set both (fullchain.pem and privkey.pem), or neither for a self-signed certificate".into(),
                );
                TlsConfig::SelfSigned {
                    dir: state_dir.join("tls"),
                }
            }
        };
        let debug: bool = r.get("EF__API_DEBUG");
        let rate_limit_enabled: bool = r.get("EF__RATE_LIMIT_ENABLED");
        let rate_limit: Option<RateLimit> = r.get("EF__RATE_LIMIT_DEFAULT");
        let config = Config {
            environment,
            server_name: r.get("EF__SERVER_NAME"),
            debug,
            http: HttpConfig {
                https_listen: r.get("EF__HTTPS_LISTEN"),
                http_listen: SocketAddr::new(api_host, api_port),
                api_prefix: r.get("EF__API_PREFIX"),
                max_connections: r.get("EF__MAX_CONNECTIONS"),
                max_body_size: r.get::<ByteSize>("EF__MAX_BODY_SIZE").0,
                request_timeout: r.get::<Timeout>("EF__REQUEST_TIMEOUT").0,
                header_timeout: r.get::<Timeout>("EF__HTTP_HEADER_TIMEOUT").0,
                keepalive_timeout: r.get::<Timeout>("EF__KEEPALIVE_TIMEOUT").0,
                tls_handshake_timeout: r.get::<Timeout>("EF__TLS_HANDSHAKE_TIMEOUT").0,
                ws_idle_timeout: r.get::<Timeout>("EF__WS_IDLE_TIMEOUT").0,
                shutdown_timeout: r.get::<Timeout>("EF__SHUTDOWN_TIMEOUT").0,
                trusted_proxies: r.get("EF__TRUSTED_PROXIES"),
                cors_origins: r.get::<List>("EF__CORS_ORIGINS").0,
                hsts: r.get::<Hsts>("EF__HSTS").0,
                metrics_enabled: r.get("EF__METRICS_ENABLED"),
            },
            tls,
            web: WebConfig {
                web_root: absolute(&opts.cwd, &r.get::<PathBuf>("EF__WEB_ROOT")),
                downloads_root: absolute(&opts.cwd, &r.get::<PathBuf>("EF__DOWNLOADS_ROOT")),
                web_cache_max_age: r.get::<Dur>("EF__WEB_CACHE_MAX_AGE").0,
                downloads_cache_max_age: r.get::<Dur>("EF__DOWNLOADS_CACHE_MAX_AGE").0,
            },
            security: SecurityConfig {
                secret_key: r.get("EF__SECRET_KEY"),
                access_token_ttl: Duration::from_secs(
                    60 * r.get::<u64>("EF__ACCESS_TOKEN_EXPIRE_MINUTES"),
                ),
                refresh_token_ttl: Duration::from_secs(
                    86400 * r.get::<u64>("EF__REFRESH_TOKEN_EXPIRE_DAYS"),
                ),
                rate_limit: rate_limit.filter(|_| rate_limit_enabled),
                password_hash: r.get("EF__PASSWORD_HASH"),
                single_session: r.get("EF__SINGLE_SESSION"),
                redis_fail_open: r.get("EF__AUTH_REDIS_FAIL_OPEN"),
                login_captcha: r.get("EF__LOGIN_CAPTCHA"),
            },
            db: DbConfig {
                host: r.get("EF__DB_HOST"),
                port: r.get("EF__DB_PORT"),
                name: r.get("EF__DB_NAME"),
                user: r.get("EF__DB_USER"),
                password: r.get("EF__DB_PASSWORD"),
                sslmode: r.get("EF__DB_SSLMODE"),
                sslrootcert: r
                    .get::<Option<PathBuf>>("EF__DB_SSLROOTCERT")
                    .map(|p| absolute(&opts.cwd, &p)),
                pool_size: r.get("EF__DB_POOL_SIZE"),
                max_overflow: r.get("EF__DB_MAX_OVERFLOW"),
                pool_timeout: r.get::<Timeout>("EF__DB_POOL_TIMEOUT").0,
                pool_idle_timeout: r.get::<Timeout>("EF__DB_POOL_IDLE_TIMEOUT").0,
                pool_recycle: r.get::<Timeout>("EF__DB_POOL_RECYCLE").0,
                connect_timeout: r.get::<Timeout>("EF__DB_CONNECT_TIMEOUT").0,
                statement_timeout: r.get::<Timeout>("EF__DB_STATEMENT_TIMEOUT").0,
                auto_migrate: r.get("EF__DB_AUTO_MIGRATE"),
            },
            redis: RedisConfig {
                url: r.get::<Option<Secret>>("EF__REDIS_URL"),
                host: r.get("EF__REDIS_HOST"),
                port: r.get("EF__REDIS_PORT"),
                db: r.get("EF__REDIS_DB"),
                password: r.get("EF__REDIS_PASSWORD"),
                max_connections: r.get("EF__REDIS_MAX_CONNECTIONS"),
                timeout: r.get::<Timeout>("EF__REDIS_TIMEOUT").0,
                prefix: r.get("EF__REDIS_PREFIX"),
            },
            worker: WorkerConfig {
                concurrency: r.get("EF__WORKER_CONCURRENCY"),
                queue_limits: r.get::<QueueLimits>("EF__WORKER_QUEUES").0,
                poll_interval: r.get::<Timeout>("EF__WORKER_POLL_INTERVAL").0,
                shutdown_timeout: r.get::<Timeout>("EF__WORKER_SHUTDOWN_TIMEOUT").0,
                lease: r.get::<Timeout>("EF__JOB_LEASE_TIMEOUT").0,
                job_retention_days: r.get("EF__JOB_RETENTION_DAYS"),
                scheduler_enabled: r.get("EF__SCHEDULER_ENABLED"),
                backup_dir: absolute(&opts.cwd, &r.get::<PathBuf>("EF__BACKUP_DIR")),
                backup_retention_days: r.get("EF__BACKUP_RETENTION_DAYS"),
            },
            log: LogConfig {
                level: if debug && !r.is_set("EF__LOG_LEVEL") {
                    LogLevel::Debug
                } else {
                    r.get("EF__LOG_LEVEL")
                },
                format: r.get("EF__LOG_FORMAT"),
            },
            business: BusinessConfig {
                inventory_default_threshold: r.get("EF__INVENTORY_DEFAULT_THRESHOLD"),
                price_min_margin: r.get("EF__PRICE_MIN_MARGIN"),
            },
            state_dir,
        };
        let mut config = config;
        if !r.is_set("EF__DB_PORT")
            && let Some((port, note)) = local_postgresql_port(&config.db.host, config.db.port)
        {
            config.db.port = port;
            diagnostics.push(Diagnostic {
                severity: Severity::Notice,
                message: note,
            });
        }
        validate(&config, &mut r, &mut diagnostics);
        let problems = r.errors;
        (
            Loaded {
                config,
                settings,
                diagnostics,
                config_file,
            },
            problems,
        )
    }
}

/// A local PostgreSQL reached through its socket directory announces its port in the socket's
/// name (`.s.PGSQL.<port>`). When the port was not configured and nothing listens on the default
/// one but exactly one other cluster does (Debian numbers a second cluster 5433), use that one:
/// the package created the database there.
fn local_postgresql_port(host: &str, port: u16) -> Option<(u16, String)> {
    if !host.starts_with('/') {
        return None;
    }
    let dir = Path::new(host);
    if dir.join(format!(".s.PGSQL.{port}")).exists() {
        return None;
    }
    let ports: Vec<u16> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix(".s.PGSQL.")?
                .parse::<u16>()
                .ok()
        })
        .collect();
    match ports.as_slice() {
        [only] => Some((
            *only,
            format!(
                "no PostgreSQL socket for port {port} in {host}; using the local cluster on port {only} (set EF__DB_PORT to choose)"
            ),
        )),
        _ => None,
    }
}

/// Rules that involve more than one value, or depend on production vs development.
fn validate(c: &Config, r: &mut Resolver<'_>, diagnostics: &mut Vec<Diagnostic>) {
    let prod = c.is_production();
    let secret = &c.security.secret_key;
    if prod {
        if secret.is_empty() {
            r.fail(
                "EF__SECRET_KEY",
                "EF__SECRET_KEY is not set; production needs a random secret of at least 64 characters; fix: run `euraflow gen-secret > /etc/euraflow/credentials/secret_key` (or put EF__SECRET_KEY=<output> in /etc/euraflow/euraflow.env)".into(),
            );
        } else if looks_like_placeholder(secret.expose()) {
            r.fail(
                "EF__SECRET_KEY",
                format!(
                    "EF__SECRET_KEY ({}) is the template's placeholder, not a secret; fix: replace it with the output of `euraflow gen-secret`",
                    r.source_of("EF__SECRET_KEY")
                ),
            );
        } else if secret.len() < MIN_SECRET_LEN {
            r.fail(
                "EF__SECRET_KEY",
                format!(
                    "EF__SECRET_KEY ({}) has {} characters; production needs at least {MIN_SECRET_LEN}; fix: replace it with the output of `euraflow gen-secret`",
                    r.source_of("EF__SECRET_KEY"),
                    secret.len()
                ),
            );
        }
        if c.debug {
            r.fail(
                "EF__API_DEBUG",
                format!(
                    "EF__API_DEBUG=true ({}) is refused in production: debug output exposes internals; fix: set EF__API_DEBUG=false (or run `euraflow serve --dev` on a workstation)",
                    r.source_of("EF__API_DEBUG")
                ),
            );
        }
    }
    if !c.http.api_prefix.starts_with("/api/ef/") || c.http.api_prefix.ends_with('/') {
        r.fail(
            "EF__API_PREFIX",
            format!(
                "EF__API_PREFIX={} ({}) must start with /api/ef/ and not end with /; fix: use /api/ef/v1",
                c.http.api_prefix,
                r.source_of("EF__API_PREFIX")
            ),
        );
    }
    let algorithm = r
        .settings
        .get("EF__ALGORITHM")
        .map(|s| s.value.trim().to_owned())
        .unwrap_or_default();
    if !algorithm.eq_ignore_ascii_case("HS256") {
        r.fail(
            "EF__ALGORITHM",
            format!(
                "EF__ALGORITHM={algorithm} ({}) is not supported: tokens are signed with HS256 only; fix: set EF__ALGORITHM=HS256 or remove the line",
                r.source_of("EF__ALGORITHM")
            ),
        );
    }
    let positive = [
        ("EF__MAX_CONNECTIONS", c.http.max_connections as u64),
        ("EF__MAX_BODY_SIZE", c.http.max_body_size),
        ("EF__DB_POOL_SIZE", c.db.pool_size as u64),
        ("EF__REDIS_MAX_CONNECTIONS", c.redis.max_connections as u64),
        ("EF__WORKER_CONCURRENCY", c.worker.concurrency as u64),
        (
            "EF__JOB_RETENTION_DAYS",
            u64::from(c.worker.job_retention_days),
        ),
        (
            "EF__BACKUP_RETENTION_DAYS",
            u64::from(c.worker.backup_retention_days),
        ),
        (
            "EF__ACCESS_TOKEN_EXPIRE_MINUTES",
            c.security.access_token_ttl.as_secs(),
        ),
        (
            "EF__REFRESH_TOKEN_EXPIRE_DAYS",
            c.security.refresh_token_ttl.as_secs(),
        ),
    ];
    for (name, v) in positive {
        if v == 0 && !r.has_error(name) {
            r.fail(
                name,
                format!(
                    "{name}=0 ({}) would make the server unusable; fix: use a positive number (default {})",
                    r.source_of(name),
                    default_text(name)
                ),
            );
        }
    }
    if !(0.0..=1.0).contains(&c.business.price_min_margin) {
        r.fail(
            "EF__PRICE_MIN_MARGIN",
            format!(
                "EF__PRICE_MIN_MARGIN={} ({}) must be between 0 and 1; fix: write a fraction such as 0.2",
                c.business.price_min_margin,
                r.source_of("EF__PRICE_MIN_MARGIN")
            ),
        );
    }
    if !matches!(
        c.db.sslmode.as_str(),
        "disable" | "prefer" | "require" | "verify-full"
    ) {
        r.fail(
            "EF__DB_SSLMODE",
            format!(
                "EF__DB_SSLMODE={} ({}) is not one of disable, prefer, require, verify-full",
                c.db.sslmode,
                r.source_of("EF__DB_SSLMODE")
            ),
        );
    }
    if c.db.sslrootcert.is_some() && c.db.sslmode != "verify-full" {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message: format!(
                "EF__DB_SSLROOTCERT is set, but EF__DB_SSLMODE={} does not verify the server's certificate; set EF__DB_SSLMODE=verify-full to use it",
                c.db.sslmode
            ),
        });
    }
    for origin in &c.http.cors_origins {
        let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
            && !origin.ends_with('/')
            && http::HeaderValue::from_str(origin).is_ok();
        if !valid {
            r.fail(
                "EF__CORS_ORIGINS",
                format!(
                    "EF__CORS_ORIGINS contains '{origin}' ({}), which is not an origin; fix: write scheme://host[:port] without a path, separated by commas",
                    r.source_of("EF__CORS_ORIGINS")
                ),
            );
        }
    }
    if !c.http.http_listen.ip().is_loopback() {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message: format!(
                "EF__API_HOST={} ({}) exposes the plain-HTTP listener beyond this machine: it carries the API unencrypted; the server terminates TLS itself, so 127.0.0.1 is the safe value unless a proxy on another host must reach it",
                c.http.http_listen.ip(),
                r.source_of("EF__API_HOST")
            ),
        });
    }
    if c.worker.lease < Duration::from_secs(2) && !r.has_error("EF__JOB_LEASE_TIMEOUT") {
        r.fail(
            "EF__JOB_LEASE_TIMEOUT",
            format!(
                "EF__JOB_LEASE_TIMEOUT={:?} ({}) is too short to renew a lease reliably; fix: use 2s or more (default 60s)",
                c.worker.lease,
                r.source_of("EF__JOB_LEASE_TIMEOUT")
            ),
        );
    }
    if c.worker.poll_interval < Duration::from_millis(10)
        || c.worker.poll_interval > Duration::from_secs(60)
    {
        r.fail(
            "EF__WORKER_POLL_INTERVAL",
            format!(
                "EF__WORKER_POLL_INTERVAL={:?} ({}) must be between 10ms and 60s; fix: use 1s unless you have a reason",
                c.worker.poll_interval,
                r.source_of("EF__WORKER_POLL_INTERVAL")
            ),
        );
    }
    if c.http.shutdown_timeout < Duration::from_secs(1) {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message:
                "EF__SHUTDOWN_TIMEOUT below 1s cuts off almost every in-flight request on stop"
                    .into(),
        });
    }
}

struct Resolver<'a> {
    settings: &'a BTreeMap<&'static str, Setting>,
    errors: Vec<ConfigError>,
}

impl Resolver<'_> {
    /// The typed value of `name`. A malformed value is recorded as an error (with key, value,
    /// source and fix) and replaced by the type's default so that the remaining keys are still
    /// checked; `build` then returns every error at once.
    fn get<T: ConfigValue + std::default::Default>(&mut self, name: &'static str) -> T {
        let Some(key) = keys::find(name) else {
            self.fail(
                name,
                format!("internal error: {name} is not in the key table"),
            );
            return T::default();
        };
        let Some(setting) = self.settings.get(name) else {
            return T::default();
        };
        match T::parse_value(&setting.value) {
            Ok(v) => v,
            Err(invalid) => {
                let shown = display_value(key, &setting.value);
                self.fail(
                    name,
                    format!(
                        "{name}={shown} ({}): {}; fix: {} (default: {})",
                        source_phrase(&setting.source),
                        invalid.problem,
                        invalid.fix,
                        default_text(name)
                    ),
                );
                T::default()
            }
        }
    }

    fn fail(&mut self, key: &str, message: String) {
        self.errors.push(ConfigError {
            key: Some(key.to_owned()),
            message,
        });
    }

    /// Whether the key was set anywhere, rather than left at its default.
    fn is_set(&self, name: &str) -> bool {
        self.settings
            .get(name)
            .is_some_and(|s| !matches!(s.source, Source::Default | Source::DevDefault))
    }

    fn has_error(&self, key: &str) -> bool {
        self.errors.iter().any(|e| e.key.as_deref() == Some(key))
    }

    fn source_of(&self, name: &str) -> String {
        self.settings
            .get(name)
            .map(|s| source_phrase(&s.source))
            .unwrap_or_else(|| "default".into())
    }
}

fn source_phrase(source: &Source) -> String {
    match source {
        Source::File { path, line } => format!("from {} line {line}", path.display()),
        Source::Environment => "from the environment".into(),
        other => format!("from {other}"),
    }
}

fn default_text(name: &str) -> String {
    match keys::find(name).map(|k| k.default) {
        Some(KeyDefault::Value(v)) => v.to_owned(),
        Some(KeyDefault::ByMode { production, .. }) => production.to_owned(),
        Some(KeyDefault::UnderStateDir(sub)) => format!("<state dir>/{sub}"),
        Some(KeyDefault::Hostname) => "the host name".into(),
        Some(KeyDefault::DevUser { production }) => production.to_owned(),
        _ => "unset".into(),
    }
}

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

/// The placeholders of the original templates and guides, which must never sign tokens.
fn looks_like_placeholder(secret: &str) -> bool {
    let s = secret.trim().to_ascii_lowercase();
    (s.starts_with('<') && s.ends_with('>'))
        || s.contains("change-me")
        || s.contains("changeme")
        || s.contains("your-secret")
        || s.contains("your_secret")
        || s.contains("替换")
        || s.contains("更换")
        // The guide's printed example ("请勿使用此示例": do not use this example).
        || s.starts_with("ab3de5fg7hi9jk1lm3no5pq7rs9tu1vw3xy5za7bc9de1fg3hi5jk7lm9no1pq3rs5t")
}

fn trim_secret(text: &str) -> String {
    text.trim_end_matches(['\n', '\r']).to_owned()
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.as_os_str().is_empty() || p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

fn read_limited(path: &Path, limit: u64) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(std::io::Error::other("it is a directory"));
    }
    if meta.len() > limit {
        return Err(std::io::Error::other(format!(
            "it is {} bytes, more than the {limit} accepted",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path)?;
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("it is not UTF-8 text"))
}

/// 64 random bytes, URL-safe base64 without padding: 86 characters, like the guide's
/// `secrets.token_urlsafe(64)`.
pub fn generate_secret() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 64];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn load_or_generate_secret(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().len() >= MIN_SECRET_LEN => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let secret = generate_secret();
    write_private_file(path, secret.as_bytes())?;
    Ok(secret)
}

/// Write a file readable by its owner only (0600), replacing it atomically.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
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
/// `/etc/euraflow/euraflow.env` and the source of the README's configuration reference.
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

/// The configuration reference as Markdown tables, one per section (embedded in the README
/// between `<!-- config-reference -->` markers; a test keeps the two identical).
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

#[cfg(test)]
mod tests;
