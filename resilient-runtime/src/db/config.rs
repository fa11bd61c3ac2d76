//! Pool configuration: `DATABASE_URL`, the profile, Prisma-style URL parameters,
//! builder overrides, and redaction of secrets.

#![cfg_attr(
    not(any(feature = "postgres", feature = "sqlite")),
    allow(dead_code, unreachable_code)
)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable holding the database URL. Required by [`DbConfig::from_env`].
pub const DATABASE_URL: &str = "DATABASE_URL";

/// The environment variable choosing the [`Profile`]: `production` or `development`
/// (the default when unset).
pub const PROFILE_VAR: &str = "RESILIENT_PROFILE";

/// Longest accepted `pool_timeout`: one day.
const MAX_POOL_TIMEOUT_S: u64 = 24 * 60 * 60;

/// Pool defaults for one kind of deployment.
///
/// | profile | connections | acquire timeout |
/// |---|---|---|
/// | [`Development`](Profile::Development) (default) | 5 | 10 s |
/// | [`Production`](Profile::Production) | 20 | 30 s |
///
/// Chosen by [`PROFILE_VAR`] (`RESILIENT_PROFILE=production|development`, case-insensitive;
/// `prod` and `dev` are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// 5 connections, 10 s acquire timeout.
    #[default]
    Development,
    /// 20 connections, 30 s acquire timeout.
    Production,
}

impl Profile {
    /// The pool size of this profile.
    pub const fn max_size(self) -> u32 {
        match self {
            Profile::Development => 5,
            Profile::Production => 20,
        }
    }

    /// How long a checkout may wait for a connection in this profile.
    pub const fn acquire_timeout(self) -> Duration {
        match self {
            Profile::Development => Duration::from_secs(10),
            Profile::Production => Duration::from_secs(30),
        }
    }

    /// The profile's name, as spelled in [`PROFILE_VAR`].
    pub const fn as_str(self) -> &'static str {
        match self {
            Profile::Development => "development",
            Profile::Production => "production",
        }
    }

    /// Reads [`PROFILE_VAR`] from the process environment; unset means development.
    pub fn from_env() -> Result<Profile, ConfigError> {
        Self::from_lookup(env_lookup)
    }

    /// Reads [`PROFILE_VAR`] through `lookup` (for tests and custom sources).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Result<Option<String>, ConfigError>,
    ) -> Result<Profile, ConfigError> {
        match lookup(PROFILE_VAR)? {
            None => Ok(Profile::Development),
            Some(v) => v.parse().map_err(|_| ConfigError::InvalidVar {
                var: PROFILE_VAR,
                value: v,
                reason: "expected `production` or `development`".into(),
            }),
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "development" | "dev" => Ok(Profile::Development),
            "production" | "prod" => Ok(Profile::Production),
            _ => Err(ConfigError::InvalidVar {
                var: PROFILE_VAR,
                value: s.to_string(),
                reason: "expected `production` or `development`".into(),
            }),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The database behind a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Backend {
    /// PostgreSQL through diesel-async's `AsyncPgConnection` (tokio-postgres, no libpq).
    Postgres,
    /// SQLite through diesel-async's `SyncConnectionWrapper<SqliteConnection>`.
    Sqlite,
}

impl Backend {
    /// `"postgres"` or `"sqlite"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A database configuration that cannot be used. Never contains a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required environment variable is not set.
    #[error(
        "`{var}` is not set: set it to a database URL such as `postgres://user@localhost/app` or `sqlite://app.db`"
    )]
    MissingVar {
        /// The variable, e.g. [`DATABASE_URL`].
        var: &'static str,
    },
    /// An environment variable has a value that cannot be used.
    #[error("`{var}` has an invalid value `{value}`: {reason}")]
    InvalidVar {
        /// The variable.
        var: &'static str,
        /// Its value (never the database URL, which may hold a password).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database URL cannot be parsed.
    #[error("invalid database URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it, redacted.
        reason: String,
    },
    /// The URL's scheme names no supported database.
    #[error(
        "unsupported database URL scheme `{scheme}`: use `postgres://`, `postgresql://`, `sqlite://`, `sqlite::memory:` or `file:`"
    )]
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
    },
    /// A pool parameter of the URL (`connection_limit`, `pool_timeout`) has a bad value.
    #[error("invalid `{param}` in the database URL: `{value}` {reason}")]
    InvalidParam {
        /// The parameter.
        param: &'static str,
        /// Its value.
        value: String,
        /// What a valid value looks like.
        reason: &'static str,
    },
    /// The URL selects a backend this build does not include.
    #[error(
        "the {backend} backend is not compiled in: enable the `{feature}` feature of `resilient`"
    )]
    BackendDisabled {
        /// The backend the URL selects.
        backend: Backend,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
    /// A setting made through the builder is out of range.
    #[error("invalid database setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The builder method, e.g. `max_size`.
        setting: &'static str,
        /// What a valid value looks like.
        reason: &'static str,
    },
}

fn env_lookup(var: &str) -> Result<Option<String>, ConfigError> {
    match std::env::var(var) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::InvalidVar {
            var: if var == DATABASE_URL {
                DATABASE_URL
            } else {
                PROFILE_VAR
            },
            value: "<not unicode>".into(),
            reason: "the value is not valid UTF-8".into(),
        }),
    }
}

// ===== Redaction =====

/// Removes secrets from text: the configured password in every spelling we know of,
/// and the password part of anything that looks like `scheme://user:password@host`.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Arc<[String]>,
}

/// What a secret is replaced with.
pub(crate) const MASK: &str = "***";

impl Redactor {
    pub(crate) fn new(mut secrets: Vec<String>) -> Self {
        secrets.retain(|s| !s.is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor {
            secrets: secrets.into(),
        }
    }

    /// `text` with every secret masked.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = scrub_userinfo(text);
        for s in self.secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

/// Masks the password of every `scheme://user:password@` in `text`.
pub(crate) fn scrub_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or whitespace; userinfo is
        // everything before its last '@'.
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The password of `scheme://user:password@host…`, as written (percent-encoded).
fn url_password(base: &str) -> Option<&str> {
    let rest = &base[base.find("://")? + 3..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    userinfo.split_once(':').map(|(_, password)| password)
}

/// `error: source: source…`. tokio-postgres keeps the reason ("Connection refused",
/// "invalid value for option `port`") in the source of its errors, not in their message.
#[cfg(feature = "postgres")]
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Decodes `%XX` escapes (lossily); used only to learn every spelling of a password.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ===== DbConfig =====

/// Where a pool connects.
#[derive(Clone)]
pub(crate) enum Target {
    /// A PostgreSQL server. The parsed configuration holds the password; it is only
    /// ever printed through tokio-postgres' own redacting `Debug`, which we never use.
    #[cfg(feature = "postgres")]
    Postgres(Box<tokio_postgres::Config>),
    /// A SQLite database: a filename or a `file:` URI.
    #[cfg(feature = "sqlite")]
    Sqlite {
        /// What `SqliteConnection::establish` receives.
        path: String,
        /// An in-memory database lives and dies with its one connection.
        memory: bool,
    },
}

/// How to reach one database and how to pool its connections.
///
/// Built from a URL ([`parse`](Self::parse)) or from the environment
/// ([`from_env`](Self::from_env)), then adjusted with the builder methods. Each pool
/// setting is resolved in this order: the builder method, then the URL's Prisma-style
/// parameter, then the [`Profile`].
///
/// | setting | builder | URL parameter | default |
/// |---|---|---|---|
/// | pool size | [`max_size`](Self::max_size) | `connection_limit` | by profile: 5 / 20 |
/// | acquire timeout | [`acquire_timeout`](Self::acquire_timeout) | `pool_timeout` (seconds) | by profile: 10 s / 30 s |
/// | idle connections kept open | [`min_idle`](Self::min_idle) | | none |
/// | connection lifetime | [`max_lifetime`](Self::max_lifetime) | | 30 min |
/// | idle timeout | [`idle_timeout`](Self::idle_timeout) | | 10 min |
/// | server-side `statement_timeout` (PostgreSQL) | [`statement_timeout`](Self::statement_timeout) | | 60 s |
/// | `application_name` (PostgreSQL) | [`application_name`](Self::application_name) | `application_name` | `resilient` |
/// | `busy_timeout` (SQLite) | [`busy_timeout`](Self::busy_timeout) | | 5 s |
/// | health check timeout | [`health_timeout`](Self::health_timeout) | | 5 s |
/// | breaker fed by health probes | [`breaker`](Self::breaker) | | `"database"` |
///
/// `connection_limit` and `pool_timeout` are removed from the URL before connecting.
/// Other parameters go to the driver (tokio-postgres for PostgreSQL, SQLite's URI
/// filename parameters for `file:` URLs).
///
/// URLs: `postgres://…` and `postgresql://…` select PostgreSQL; `sqlite://path`,
/// `sqlite:path`, `sqlite::memory:` and `file:…` select SQLite.
///
/// `Display` and `Debug` never show a password:
///
#[cfg_attr(
    feature = "postgres",
    doc = r#"
```
use resilient_runtime::db::{DbConfig, Profile};
# fn main() -> Result<(), resilient_runtime::db::ConfigError> {
let config = DbConfig::parse("postgres://app:s3cret@localhost/app?connection_limit=8&pool_timeout=3")?
    .profile(Profile::Production);
assert_eq!(config.pool_size(), 8);
assert_eq!(config.pool_acquire_timeout(), std::time::Duration::from_secs(3));
assert!(!format!("{config} {config:?}").contains("s3cret"));
# Ok(())
# }
```
"#
)]
#[derive(Clone)]
pub struct DbConfig {
    pub(crate) target: Target,
    backend: Backend,
    /// The URL as shown to people: password masked, pool parameters removed.
    display: String,
    pub(crate) redactor: Redactor,
    profile: Profile,
    url_connection_limit: Option<u32>,
    url_pool_timeout: Option<Duration>,
    max_size: Option<u32>,
    acquire_timeout: Option<Duration>,
    min_idle: Option<u32>,
    max_lifetime: Option<Duration>,
    idle_timeout: Option<Duration>,
    statement_timeout: Option<Duration>,
    application_name: Option<String>,
    busy_timeout: Duration,
    health_timeout: Duration,
    breaker: Option<&'static str>,
}

impl DbConfig {
    /// Default [`max_lifetime`](Self::max_lifetime): 30 minutes.
    pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
    /// Default [`idle_timeout`](Self::idle_timeout): 10 minutes.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
    /// Default server-side [`statement_timeout`](Self::statement_timeout): 60 s.
    pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default [`application_name`](Self::application_name).
    pub const DEFAULT_APPLICATION_NAME: &'static str = "resilient";
    /// Default SQLite [`busy_timeout`](Self::busy_timeout): 5 s.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default [`health_timeout`](Self::health_timeout): 5 s.
    pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

    /// Reads [`DATABASE_URL`] (required) and [`PROFILE_VAR`] (optional) from the
    /// process environment.
    ///
    /// ```no_run
    /// use resilient_runtime::db::DbConfig;
    /// let config = DbConfig::from_env()?; // DATABASE_URL, RESILIENT_PROFILE
    /// # Ok::<(), resilient_runtime::db::ConfigError>(())
    /// ```
    pub fn from_env() -> Result<DbConfig, ConfigError> {
        Self::from_lookup(env_lookup)
    }

    /// [`from_env`](Self::from_env) with another source of variables, e.g. a map in a test.
    ///
    /// ```
    /// use resilient_runtime::db::{ConfigError, DbConfig, DATABASE_URL};
    /// let missing = DbConfig::from_lookup(|_| Ok(None)).unwrap_err();
    /// assert_eq!(missing, ConfigError::MissingVar { var: DATABASE_URL });
    /// assert!(missing.to_string().contains("DATABASE_URL"));
    /// ```
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Result<Option<String>, ConfigError>,
    ) -> Result<DbConfig, ConfigError> {
        let url = lookup(DATABASE_URL)?.ok_or(ConfigError::MissingVar { var: DATABASE_URL })?;
        let profile = Profile::from_lookup(&lookup)?;
        Ok(Self::parse(&url)?.profile(profile))
    }

    /// Parses a database URL, with the development profile.
    pub fn parse(url: &str) -> Result<DbConfig, ConfigError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(ConfigError::InvalidUrl {
                reason: "the URL is empty".into(),
            });
        }
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("sqlite:") || lower.starts_with("file:") || lower == ":memory:" {
            parse_sqlite(url)
        } else {
            parse_postgres(url)
        }
    }

    fn with_target(target: Target, backend: Backend, display: String, redactor: Redactor) -> Self {
        DbConfig {
            target,
            backend,
            display,
            redactor,
            profile: Profile::Development,
            url_connection_limit: None,
            url_pool_timeout: None,
            max_size: None,
            acquire_timeout: None,
            min_idle: None,
            max_lifetime: Some(Self::DEFAULT_MAX_LIFETIME),
            idle_timeout: Some(Self::DEFAULT_IDLE_TIMEOUT),
            statement_timeout: Some(Self::DEFAULT_STATEMENT_TIMEOUT),
            application_name: None,
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            health_timeout: Self::DEFAULT_HEALTH_TIMEOUT,
            breaker: Some(crate::breaker::DATABASE.name()),
        }
    }

    // ----- builder -----

    /// Sets the profile whose defaults apply where neither the builder nor the URL decides.
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Sets the pool size, overriding `connection_limit` and the profile. At least 1.
    pub fn max_size(mut self, connections: u32) -> Self {
        self.max_size = Some(connections);
        self
    }

    /// Sets how long a checkout waits for a connection, overriding `pool_timeout` and
    /// the profile. Must not be zero.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = Some(timeout);
        self
    }

    /// Keeps at least this many idle connections open (default: none, so building the
    /// runtime opens nothing). At most the pool size.
    pub fn min_idle(mut self, connections: Option<u32>) -> Self {
        self.min_idle = connections;
        self
    }

    /// Closes a connection when it is returned after living this long (default 30 min;
    /// `None` keeps connections forever). Must not be zero.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Closes connections idle for this long (default 10 min; `None` never). Must not be zero.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// PostgreSQL only: the server cancels any statement running longer than this
    /// (default 60 s; `None` leaves the server's setting). A backstop for statements
    /// whose client is gone; attempt timeouts should be shorter.
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// PostgreSQL only: the `application_name` the server shows in `pg_stat_activity`
    /// (default: the URL's `application_name`, else `resilient`).
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// SQLite only: how long a statement waits for a lock held by another connection
    /// before failing with "database is locked" (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Bounds one health check, checkout included (default 5 s). Must not be zero.
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    /// The circuit breaker that health probes feed (default `"database"`, the breaker
    /// operations use unless they name another); `None` for none. The runtime must
    /// declare it.
    pub fn breaker(mut self, breaker: Option<&'static str>) -> Self {
        self.breaker = breaker;
        self
    }

    // ----- effective values -----

    /// The backend the URL selects.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The profile in effect.
    pub fn selected_profile(&self) -> Profile {
        self.profile
    }

    /// The URL with its password masked and its pool parameters removed.
    pub fn redacted_url(&self) -> &str {
        &self.display
    }

    /// Whether this is an in-memory SQLite database. Such a database belongs to one
    /// connection, so its pool holds exactly one connection and never recycles it.
    pub fn is_memory(&self) -> bool {
        match &self.target {
            #[cfg(feature = "sqlite")]
            Target::Sqlite { memory, .. } => *memory,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The pool size in effect: builder, else `connection_limit`, else the profile
    /// (always 1 for an in-memory SQLite database).
    pub fn pool_size(&self) -> u32 {
        if self.is_memory() {
            return 1;
        }
        self.max_size
            .or(self.url_connection_limit)
            .unwrap_or(self.profile.max_size())
    }

    /// The acquire timeout in effect: builder, else `pool_timeout`, else the profile.
    pub fn pool_acquire_timeout(&self) -> Duration {
        self.acquire_timeout
            .or(self.url_pool_timeout)
            .unwrap_or(self.profile.acquire_timeout())
    }

    /// Idle connections kept open.
    pub fn pool_min_idle(&self) -> Option<u32> {
        self.min_idle
    }

    /// Connection lifetime in effect (`None` for an in-memory SQLite database).
    pub fn pool_max_lifetime(&self) -> Option<Duration> {
        if self.is_memory() {
            None
        } else {
            self.max_lifetime
        }
    }

    /// Idle timeout in effect (`None` for an in-memory SQLite database).
    pub fn pool_idle_timeout(&self) -> Option<Duration> {
        if self.is_memory() {
            None
        } else {
            self.idle_timeout
        }
    }

    /// Server-side statement timeout (PostgreSQL).
    pub fn pool_statement_timeout(&self) -> Option<Duration> {
        self.statement_timeout
    }

    /// `application_name` in effect (PostgreSQL).
    pub fn pool_application_name(&self) -> &str {
        if let Some(name) = &self.application_name {
            return name;
        }
        match &self.target {
            #[cfg(feature = "postgres")]
            Target::Postgres(pg) => pg
                .get_application_name()
                .unwrap_or(Self::DEFAULT_APPLICATION_NAME),
            #[allow(unreachable_patterns)]
            _ => Self::DEFAULT_APPLICATION_NAME,
        }
    }

    /// SQLite `busy_timeout`.
    pub fn pool_busy_timeout(&self) -> Duration {
        self.busy_timeout
    }

    /// Health check timeout.
    pub fn pool_health_timeout(&self) -> Duration {
        self.health_timeout
    }

    /// The breaker fed by health probes.
    pub fn health_breaker(&self) -> Option<&'static str> {
        self.breaker
    }

    /// Checks the builder's settings; the runtime reports these problems when it is built.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason| Err(ConfigError::InvalidSetting { setting, reason });
        if self.max_size == Some(0) {
            return invalid("max_size", "a pool needs at least 1 connection");
        }
        if self.acquire_timeout.is_some_and(|d| d.is_zero()) {
            return invalid("acquire_timeout", "must be longer than zero");
        }
        if self.min_idle.is_some_and(|n| n > self.pool_size()) {
            return invalid("min_idle", "cannot exceed the pool size");
        }
        if self.max_lifetime.is_some_and(|d| d.is_zero()) {
            return invalid(
                "max_lifetime",
                "must be longer than zero (use `None` for no limit)",
            );
        }
        if self.idle_timeout.is_some_and(|d| d.is_zero()) {
            return invalid(
                "idle_timeout",
                "must be longer than zero (use `None` for no limit)",
            );
        }
        if self.statement_timeout.is_some_and(|d| d.is_zero()) {
            return invalid(
                "statement_timeout",
                "must be longer than zero (use `None` for the server's setting)",
            );
        }
        if self.health_timeout.is_zero() {
            return invalid("health_timeout", "must be longer than zero");
        }
        if self
            .application_name
            .as_deref()
            .is_some_and(|n| n.contains(char::is_control))
        {
            return invalid("application_name", "must not contain control characters");
        }
        Ok(())
    }
}

impl fmt::Display for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {} connections, {:?} acquire timeout)",
            self.display,
            self.profile,
            self.pool_size(),
            self.pool_acquire_timeout()
        )
    }
}

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConfig")
            .field("url", &self.display)
            .field("backend", &self.backend)
            .field("profile", &self.profile)
            .field("max_size", &self.pool_size())
            .field("acquire_timeout", &self.pool_acquire_timeout())
            .field("min_idle", &self.min_idle)
            .field("max_lifetime", &self.pool_max_lifetime())
            .field("idle_timeout", &self.pool_idle_timeout())
            .field("statement_timeout", &self.statement_timeout)
            .field("application_name", &self.pool_application_name())
            .field("busy_timeout", &self.busy_timeout)
            .field("health_timeout", &self.health_timeout)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

// ===== URL parsing =====

/// The pool parameters found in a query string, and the pairs left for the driver.
struct PoolParams {
    connection_limit: Option<u32>,
    pool_timeout: Option<Duration>,
    rest: Vec<(String, String)>,
}

fn take_pool_params(query: &str) -> Result<PoolParams, ConfigError> {
    let mut params = PoolParams {
        connection_limit: None,
        pool_timeout: None,
        rest: Vec::new(),
    };
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "connection_limit" => {
                params.connection_limit = Some(
                    value
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| ConfigError::InvalidParam {
                            param: "connection_limit",
                            value: value.to_string(),
                            reason: "is not a number of connections: expected a whole number of at least 1",
                        })?,
                );
            }
            "pool_timeout" => {
                let secs = value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|s| (1..=MAX_POOL_TIMEOUT_S).contains(s))
                    .ok_or_else(|| ConfigError::InvalidParam {
                        param: "pool_timeout",
                        value: value.to_string(),
                        reason: "is not a timeout: expected whole seconds from 1 to 86400",
                    })?;
                params.pool_timeout = Some(Duration::from_secs(secs));
            }
            _ => params.rest.push((key.into_owned(), value.into_owned())),
        }
    }
    Ok(params)
}

fn encode_query(pairs: &[(String, String)], mask: impl Fn(&str) -> bool) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, if mask(k) { MASK } else { v });
    }
    ser.finish()
}

fn parse_sqlite(url: &str) -> Result<DbConfig, ConfigError> {
    let lower = url.to_ascii_lowercase();
    let (body, is_uri) = if lower.starts_with("file:") {
        (url, true)
    } else if lower.starts_with("sqlite://") {
        (&url["sqlite://".len()..], false)
    } else if lower.starts_with("sqlite:") {
        (&url["sqlite:".len()..], false)
    } else {
        (url, false)
    };
    let (path, query) = match body.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (body, None),
    };
    let params = match query {
        Some(q) => take_pool_params(q)?,
        None => PoolParams {
            connection_limit: None,
            pool_timeout: None,
            rest: Vec::new(),
        },
    };
    let memory = path == ":memory:"
        || (is_uri && path == "file::memory:")
        || params
            .rest
            .iter()
            .any(|(k, v)| k == "mode" && v == "memory");
    if path.is_empty() {
        return Err(ConfigError::InvalidUrl {
            reason:
                "the SQLite URL names no file: use `sqlite://path/to/app.db` or `sqlite::memory:`"
                    .into(),
        });
    }
    // Anything the driver should see goes through SQLite's URI filenames.
    let target_path = if params.rest.is_empty() {
        path.to_string()
    } else if is_uri {
        format!("{path}?{}", encode_query(&params.rest, |_| false))
    } else {
        format!("file:{path}?{}", encode_query(&params.rest, |_| false))
    };
    let display = if memory && !is_uri {
        "sqlite::memory:".to_string()
    } else if is_uri {
        target_path.clone()
    } else {
        format!("sqlite://{target_path}")
    };
    #[cfg(feature = "sqlite")]
    {
        let mut config = DbConfig::with_target(
            Target::Sqlite {
                path: target_path,
                memory,
            },
            Backend::Sqlite,
            display,
            Redactor::default(),
        );
        config.url_connection_limit = params.connection_limit;
        config.url_pool_timeout = params.pool_timeout;
        Ok(config)
    }
    #[cfg(not(feature = "sqlite"))]
    {
        let _ = (target_path, display, memory);
        Err(ConfigError::BackendDisabled {
            backend: Backend::Sqlite,
            feature: "sqlite",
        })
    }
}

fn parse_postgres(raw: &str) -> Result<DbConfig, ConfigError> {
    let scheme_end = raw.find(':');
    let scheme = scheme_end.map(|i| raw[..i].to_ascii_lowercase());
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => {}
        Some(s)
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            return Err(ConfigError::UnsupportedScheme {
                scheme: s.to_string(),
            });
        }
        _ => {
            return Err(ConfigError::InvalidUrl {
                reason: "expected `postgres://…`, `sqlite://…`, `sqlite::memory:` or `file:…`"
                    .into(),
            });
        }
    }
    // Not `url::Url`: it rejects the multi-host URLs tokio-postgres accepts
    // (`postgres://h1:5432,h2:5433/app`). tokio-postgres validates the rest below.
    let (base, query) = match raw.split_once('?') {
        Some((base, query)) => (base, query),
        None => (raw, ""),
    };
    let params = take_pool_params(query)?;
    let mut secrets = Vec::new();
    if let Some(password) = url_password(base) {
        secrets.push(password.to_string());
        secrets.push(percent_decode(password));
    }
    for (k, v) in &params.rest {
        if k == "password" {
            secrets.push(v.clone());
        }
    }
    let (sanitized, shown_query) = if params.rest.is_empty() {
        (base.to_string(), String::new())
    } else {
        (
            format!("{base}?{}", encode_query(&params.rest, |_| false)),
            format!("?{}", encode_query(&params.rest, |k| k == "password")),
        )
    };
    let redactor = Redactor::new(secrets);
    let display = redactor.redact(&format!("{}{shown_query}", scrub_userinfo(base)));

    #[cfg(feature = "postgres")]
    {
        let pg: tokio_postgres::Config =
            sanitized
                .parse()
                .map_err(|e: tokio_postgres::Error| ConfigError::InvalidUrl {
                    reason: redactor.redact(&error_chain(&e)),
                })?;
        // tokio-postgres decodes the password itself: mask that spelling too.
        let mut all = redactor.secrets.to_vec();
        if let Some(p) = pg.get_password() {
            all.push(String::from_utf8_lossy(p).into_owned());
        }
        let mut config = DbConfig::with_target(
            Target::Postgres(Box::new(pg)),
            Backend::Postgres,
            display,
            Redactor::new(all),
        );
        config.url_connection_limit = params.connection_limit;
        config.url_pool_timeout = params.pool_timeout;
        Ok(config)
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = (sanitized, display);
        Err(ConfigError::BackendDisabled {
            backend: Backend::Postgres,
            feature: "postgres",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_scrubbed() {
        assert_eq!(
            scrub_userinfo("error for postgres://u:p%40ss@h:5432/db?x=1 and more"),
            "error for postgres://u:***@h:5432/db?x=1 and more"
        );
        assert_eq!(scrub_userinfo("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(scrub_userinfo("no url here"), "no url here");
        assert_eq!(
            scrub_userinfo("a://x:y@z b://c:d@e"),
            "a://x:***@z b://c:***@e"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("p%40ss%2Fw"), "p@ss/w");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn redactor_masks_longest_first() {
        let r = Redactor::new(vec!["ab".into(), "abc".into(), String::new()]);
        assert_eq!(r.redact("xabcx ab"), "x***x ***");
    }
}
