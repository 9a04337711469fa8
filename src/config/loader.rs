//! Reading the layers, lowest first: embedded defaults < the env file
//! (`/etc/euraflow/euraflow.env`) < the process environment < systemd credentials
//! (`$CREDENTIALS_DIRECTORY/<name>`) < `<KEY>_FILE`. Each value is kept as raw text with its
//! source; legacy, renamed and unknown keys are classified here (one notice or warning each).
//! `load` then hands the layered values to `resolve` (typed values) and `validate` (rules
//! between values), and returns every problem at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::env_file;
use super::keys::{self, DefaultValue as KeyDefault};
use super::loaded::{
    ConfigError, ConfigErrors, Diagnostic, Loaded, Setting, Severity, Source, source_phrase,
};
use super::resolve;
use super::secret::{load_or_generate_data_key, load_or_generate_secret};

pub const DEFAULT_CONFIG_FILE: &str = "/etc/euraflow/euraflow.env";
pub const DEV_CONFIG_FILE: &str = "euraflow.env";
/// Where the package keeps the secrets it generates (`LoadCredential=` reads them from here).
pub const PACKAGED_CREDENTIALS: &str = "/etc/euraflow/credentials";
/// Secret files (credentials, `<KEY>_FILE`) larger than this are refused.
const MAX_SECRET_FILE: u64 = 64 * 1024;

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
    loader.apply_dev_data_key();
    let mut problems = std::mem::take(&mut loader.errors);
    let (loaded, more) = resolve::build(loader);
    problems.extend(more);
    (loaded, problems)
}

/// A value as found in one layer, before it is classified.
struct Raw<'a> {
    name: &'a str,
    value: &'a str,
    source: Source,
}

/// The layers as they are applied, lowest first; `resolve::build` turns the result into a
/// typed `Config`.
pub(super) struct Loader<'o> {
    pub(super) opts: &'o LoadOptions,
    pub(super) settings: BTreeMap<&'static str, Setting>,
    /// `<KEY>_FILE` variables: key -> (variable, path, source of the variable).
    key_files: BTreeMap<&'static str, (String, String, Source)>,
    /// Old names seen (alias -> value with source); applied after all layers.
    aliases: BTreeMap<&'static str, Setting>,
    pub(super) diagnostics: Vec<Diagnostic>,
    errors: Vec<ConfigError>,
    pub(super) config_file: Option<PathBuf>,
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

    /// `--dev` without a data key: generate one into the state dir and keep it there, so stored
    /// Ozon keys stay readable across restarts of the development server.
    fn apply_dev_data_key(&mut self) {
        if !self.opts.dev {
            return;
        }
        if self
            .settings
            .get("EF__DATA_KEY")
            .is_some_and(|s| !s.value.is_empty())
        {
            return;
        }
        let state_dir = PathBuf::from(
            self.settings
                .get("EF__STATE_DIR")
                .map(|s| s.value.clone())
                .unwrap_or_default(),
        );
        let path = state_dir.join("data_key");
        match load_or_generate_data_key(&path) {
            Ok(key) => {
                self.settings.insert(
                    "EF__DATA_KEY",
                    Setting {
                        value: key,
                        source: Source::Generated(path),
                    },
                );
            }
            Err(e) => self.error(
                Some("EF__DATA_KEY"),
                format!(
                    "cannot keep the development data key in {}: {e}; fix: make the directory writable or set EF__DATA_KEY",
                    path.display()
                ),
            ),
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
}

fn trim_secret(text: &str) -> String {
    text.trim_end_matches(['\n', '\r']).to_owned()
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
