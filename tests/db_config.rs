//! Pool configuration: `DATABASE_URL`, profiles, Prisma-style parameters, builder
//! overrides, typed errors, and redaction of passwords everywhere they could leak.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use resilient::db::{Backend, ConfigError, DATABASE_URL, DbConfig, DbError, PROFILE_VAR, Profile};
use resilient::{Classify, ErrorClass, Runtime};
use support::{closed_port, logs};

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Result<Option<String>, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| Ok(vars.get(k).cloned())
}

#[test]
fn a_missing_database_url_is_an_error_naming_it() {
    let err = DbConfig::from_lookup(lookup(&[(PROFILE_VAR, "production")])).unwrap_err();
    assert_eq!(err, ConfigError::MissingVar { var: DATABASE_URL });
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
}

#[test]
fn profiles_set_the_defaults() {
    let dev =
        DbConfig::from_lookup(lookup(&[(DATABASE_URL, "postgres://app@localhost/app")])).unwrap();
    assert_eq!(dev.selected_profile(), Profile::Development);
    assert_eq!(dev.pool_size(), 5);
    assert_eq!(dev.pool_acquire_timeout(), Duration::from_secs(10));

    let prod = DbConfig::from_lookup(lookup(&[
        (DATABASE_URL, "postgres://app@localhost/app"),
        (PROFILE_VAR, "Production"),
    ]))
    .unwrap();
    assert_eq!(prod.selected_profile(), Profile::Production);
    assert_eq!(prod.pool_size(), 20);
    assert_eq!(prod.pool_acquire_timeout(), Duration::from_secs(30));

    let bad = DbConfig::from_lookup(lookup(&[
        (DATABASE_URL, "postgres://app@localhost/app"),
        (PROFILE_VAR, "staging"),
    ]))
    .unwrap_err();
    assert!(
        matches!(
            bad,
            ConfigError::InvalidVar {
                var: PROFILE_VAR,
                ..
            }
        ),
        "{bad:?}"
    );
    assert!(bad.to_string().contains("RESILIENT_PROFILE"), "{bad}");
}

#[test]
fn pool_parameters_are_honoured_and_stripped() {
    let config = DbConfig::parse(
        "postgres://app@db.internal:6543/app?connection_limit=8&application_name=api&pool_timeout=3",
    )
    .unwrap()
    .profile(Profile::Production);
    assert_eq!(config.backend(), Backend::Postgres);
    assert_eq!(config.pool_size(), 8);
    assert_eq!(config.pool_acquire_timeout(), Duration::from_secs(3));
    assert_eq!(config.pool_application_name(), "api");
    let shown = config.redacted_url();
    assert!(
        !shown.contains("connection_limit") && !shown.contains("pool_timeout"),
        "{shown}"
    );
    assert!(shown.contains("application_name=api"), "{shown}");
}

#[test]
fn the_builder_overrides_the_url_and_the_profile() {
    let config =
        DbConfig::parse("postgresql://app@localhost/app?connection_limit=8&pool_timeout=3")
            .unwrap()
            .profile(Profile::Production)
            .max_size(2)
            .acquire_timeout(Duration::from_millis(250))
            .min_idle(Some(1))
            .max_lifetime(None)
            .idle_timeout(Some(Duration::from_secs(5)))
            .statement_timeout(Some(Duration::from_secs(2)))
            .application_name("worker")
            .breaker(None);
    assert_eq!(config.pool_size(), 2);
    assert_eq!(config.pool_acquire_timeout(), Duration::from_millis(250));
    assert_eq!(config.pool_min_idle(), Some(1));
    assert_eq!(config.pool_max_lifetime(), None);
    assert_eq!(config.pool_idle_timeout(), Some(Duration::from_secs(5)));
    assert_eq!(
        config.pool_statement_timeout(),
        Some(Duration::from_secs(2))
    );
    assert_eq!(config.pool_application_name(), "worker");
    assert_eq!(config.health_breaker(), None);
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn bad_values_are_typed_errors_naming_the_parameter() {
    let param = |url: &str| match DbConfig::parse(url) {
        Err(ConfigError::InvalidParam { param, .. }) => param,
        other => panic!("{url}: expected InvalidParam, got {other:?}"),
    };
    assert_eq!(
        param("postgres://u@h/db?connection_limit=abc"),
        "connection_limit"
    );
    assert_eq!(
        param("postgres://u@h/db?connection_limit=0"),
        "connection_limit"
    );
    assert_eq!(
        param("postgres://u@h/db?connection_limit=-3"),
        "connection_limit"
    );
    assert_eq!(param("postgres://u@h/db?pool_timeout=soon"), "pool_timeout");
    assert_eq!(param("postgres://u@h/db?pool_timeout=0"), "pool_timeout");
    assert_eq!(
        param("sqlite://app.db?connection_limit=many"),
        "connection_limit"
    );
    let err = DbConfig::parse("postgres://u@h/db?connection_limit=abc").unwrap_err();
    assert!(
        err.to_string().contains("connection_limit") && err.to_string().contains("abc"),
        "{err}"
    );

    for url in [
        "",
        "not a url",
        "postgres://u:secretpw@h:notaport/db",
        "postgres://u@h/db?sslmode=bogus",
    ] {
        let err = DbConfig::parse(url).unwrap_err();
        assert!(
            matches!(err, ConfigError::InvalidUrl { .. }),
            "{url}: {err:?}"
        );
        assert!(!format!("{err} {err:?}").contains("secretpw"), "{err:?}");
    }
    assert!(matches!(
        DbConfig::parse("mysql://u@h/db"),
        Err(ConfigError::UnsupportedScheme { scheme }) if scheme == "mysql"
    ));

    let config = DbConfig::parse("postgres://u@h/db").unwrap();
    for (setting, config) in [
        ("max_size", config.clone().max_size(0)),
        (
            "acquire_timeout",
            config.clone().acquire_timeout(Duration::ZERO),
        ),
        ("min_idle", config.clone().max_size(2).min_idle(Some(3))),
        (
            "max_lifetime",
            config.clone().max_lifetime(Some(Duration::ZERO)),
        ),
        (
            "idle_timeout",
            config.clone().idle_timeout(Some(Duration::ZERO)),
        ),
        (
            "health_timeout",
            config.clone().health_timeout(Duration::ZERO),
        ),
    ] {
        assert!(
            matches!(config.validate(), Err(ConfigError::InvalidSetting { setting: s, .. }) if s == setting),
            "{setting}"
        );
    }
}

#[test]
fn sqlite_urls_select_sqlite() {
    let file = DbConfig::parse("sqlite://data/app.db?connection_limit=3").unwrap();
    assert_eq!(file.backend(), Backend::Sqlite);
    assert_eq!(file.pool_size(), 3);
    assert!(!file.is_memory());
    assert_eq!(file.redacted_url(), "sqlite://data/app.db");

    let absolute = DbConfig::parse("sqlite:///tmp/app.db").unwrap();
    assert_eq!(absolute.redacted_url(), "sqlite:///tmp/app.db");

    let memory = DbConfig::parse("sqlite::memory:").unwrap().max_size(8);
    assert!(memory.is_memory());
    assert_eq!(
        memory.pool_size(),
        1,
        "an in-memory database belongs to one connection"
    );
    assert_eq!(memory.pool_max_lifetime(), None);
    assert_eq!(memory.pool_idle_timeout(), None);

    let uri = DbConfig::parse("file:app.db?mode=rwc&pool_timeout=2").unwrap();
    assert_eq!(uri.backend(), Backend::Sqlite);
    assert_eq!(uri.pool_acquire_timeout(), Duration::from_secs(2));
    assert_eq!(uri.redacted_url(), "file:app.db?mode=rwc");
}

#[tokio::test]
async fn runtime_build_reports_database_problems() {
    let config = DbConfig::parse("postgres://u@127.0.0.1/db").unwrap();
    let err = Runtime::builder()
        .without_registry()
        .database("primary", config.clone().max_size(0))
        .database("primary", config.clone())
        .database("reporting", config.clone().breaker(Some("replica")))
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("database `primary`: declared twice"),
        "{text}"
    );
    assert!(text.contains("max_size"), "{text}");
    assert!(text.contains("breaker `replica`"), "{text}");

    let rt = Runtime::builder()
        .without_registry()
        .database("primary", config.clone())
        .database("reporting", config.max_size(1))
        .build()
        .unwrap();
    assert_eq!(rt.default_pool().map(|p| p.name()), Some("primary"));
    assert_eq!(
        rt.pools().map(|p| p.name()).collect::<Vec<_>>(),
        ["primary", "reporting"]
    );
    assert_eq!(
        rt.pool("reporting").map(|p| p.config().pool_size()),
        Some(1)
    );
    let missing = rt
        .scope(resilient::db::conn_from("nope"))
        .await
        .unwrap_err();
    assert_eq!(
        missing,
        DbError::UnknownPool {
            name: "nope".into()
        }
    );
    assert_eq!(missing.class(), ErrorClass::Caller);
    assert_eq!(resilient::db::conn().await.unwrap_err(), DbError::NoRuntime);
}

#[test]
fn pools_need_a_tokio_runtime_at_build() {
    let err = Runtime::builder()
        .without_registry()
        .database("primary", DbConfig::parse("postgres://u@h/db").unwrap())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

/// The password: percent-encoded in the URL, with characters that need it.
const PASSWORD: &str = "p@ss:w/rd-XYZZY";
const ENCODED: &str = "p%40ss%3Aw%2Frd-XYZZY";

fn assert_no_password(what: &str, text: &str) {
    for secret in [PASSWORD, ENCODED, "XYZZY"] {
        assert!(!text.contains(secret), "{what} leaks the password: {text}");
    }
}

/// Display and Debug of the configuration, of config errors, of checkout errors (which
/// carry bb8's captured connection error), of health reports and pool status, and every
/// log line: none shows the password.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_never_appears_in_display_debug_errors_or_logs() {
    logs::install();
    let port = closed_port();
    let url = format!(
        "postgres://app:{ENCODED}@127.0.0.1:{port}/app?password={ENCODED}&connection_limit=2"
    );
    let config = DbConfig::parse(&url)
        .unwrap()
        .acquire_timeout(Duration::from_millis(300));
    assert_no_password("Display", &config.to_string());
    assert_no_password("Debug", &format!("{config:?} {config:#?}"));
    assert_no_password("redacted_url", config.redacted_url());
    assert!(
        config.redacted_url().contains("app:***@"),
        "{}",
        config.redacted_url()
    );

    for bad in [
        format!("postgres://app:{ENCODED}@127.0.0.1:{port}/app?connection_limit=x"),
        format!("postgres://app:{ENCODED}@127.0.0.1:notaport/app"),
        format!("postgres://app:{ENCODED}@127.0.0.1/app?unknown_option=1"),
    ] {
        let err = DbConfig::parse(&bad).unwrap_err();
        assert_no_password("ConfigError", &format!("{err} {err:?}"));
    }

    let rt = Runtime::builder()
        .without_registry()
        .database("leaky", config)
        .build()
        .unwrap();
    let err = rt.scope(resilient::db::conn()).await.unwrap_err();
    let DbError::Unavailable { cause, .. } = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    eprintln!("checkout error: {err}");
    let cause = cause.as_deref().unwrap_or_default().to_lowercase();
    assert!(cause.contains("refused"), "the real error is kept: {cause}");
    assert_eq!(err.class(), ErrorClass::Unavailable);
    assert_no_password("DbError", &format!("{err} {err:?}"));

    let pool = rt.pool("leaky").unwrap();
    let report = pool.check().await;
    assert!(!report.healthy);
    assert_no_password("HealthReport", &format!("{report:?}"));
    assert_no_password("PoolStatus", &format!("{:?}", pool.status()));
    assert_no_password("DbPool", &format!("{pool:?}"));
    assert_no_password("Runtime", &format!("{rt:?}"));
    assert_no_password("last_error", &pool.last_error().unwrap_or_default());

    let monitor = rt.start_health_monitor(
        resilient::db::MonitorConfig::DEFAULT.interval(Duration::from_millis(20)),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    monitor.stop().await;
    rt.shutdown(Duration::from_secs(1)).await;

    let lines = logs::lines();
    assert!(
        lines.iter().any(|l| l.to_lowercase().contains("refused")),
        "the connection error is logged"
    );
    for line in &lines {
        assert_no_password("a log line", line);
    }
}

#[test]
fn postgres_url_shapes_tokio_postgres_accepts_are_accepted() {
    let multi =
        DbConfig::parse("postgresql://u:pw@h1:5432,h2:5433/app?connection_limit=2").unwrap();
    assert_eq!(
        multi.redacted_url(),
        "postgresql://u:***@h1:5432,h2:5433/app"
    );
    assert_eq!(multi.pool_size(), 2);
    let socket = DbConfig::parse("postgres:///app?host=/var/run/postgresql").unwrap();
    assert_eq!(socket.backend(), Backend::Postgres);
    let options = DbConfig::parse("postgres://u@h/app?options=-c%20search_path%3Dapp").unwrap();
    assert!(
        options.redacted_url().contains("options="),
        "{}",
        options.redacted_url()
    );
    let err = DbConfig::parse("postgres://u@h:notaport/app").unwrap_err();
    assert!(
        err.to_string().contains("port"),
        "the reason names the bad option: {err}"
    );
}
