//! One fresh database per test on the machine's PostgreSQL (127.0.0.1:5432, user
//! `postgres`, trust authentication), dropped when the test ends.
//!
//! If the server cannot be reached, the support code tries once to start it with
//! `pg_ctlcluster`; if it still cannot be reached, the test fails and says what to
//! install or start. Database tests never skip silently.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use resilient::db::DbConfig;

pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 5432;
/// Prefix of every database and role the tests create.
pub const PREFIX: &str = "resilient_t_";

pub fn admin_url() -> String {
    format!("postgres://postgres@{HOST}:{PORT}/test")
}

fn reachable() -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], PORT));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Makes sure the shared server listens, starting it once if needed; panics with
/// instructions otherwise.
pub fn ensure_server() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        if reachable() {
            return Ok(());
        }
        let versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        for v in &versions {
            let _ = std::process::Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", v, "main", "start"])
                .status();
        }
        for _ in 0..50 {
            if reachable() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "PostgreSQL is not reachable at {HOST}:{PORT}, and `pg_ctlcluster --skip-systemctl-redirect \
             <version> main start` did not start it (versions found in /etc/postgresql: {versions:?}).\n\
             The database tests need PostgreSQL (15) listening on {HOST}:{PORT} with trust authentication \
             for user `postgres` and a database `test`:\n  apt-get install postgresql\n  \
             pg_ctlcluster --skip-systemctl-redirect 15 main start"
        ))
    });
    if let Err(message) = ready {
        panic!("{message}");
    }
}

/// A direct connection to `url`, retried for a few seconds (a server just started may
/// still refuse connections).
pub async fn connect(url: &str) -> AsyncPgConnection {
    let mut last = None;
    for _ in 0..50 {
        match AsyncPgConnection::establish(url).await {
            Ok(c) => return c,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot connect to {url}: {last:?}");
}

/// A superuser connection to the `test` database.
pub async fn admin() -> AsyncPgConnection {
    ensure_server();
    static CLEANED: OnceLock<()> = OnceLock::new();
    let mut conn = connect(&admin_url()).await;
    if CLEANED.set(()).is_ok() {
        drop_leftovers(&mut conn).await;
    }
    conn
}

#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Drops databases and roles left by test processes that died before cleaning up.
async fn drop_leftovers(conn: &mut AsyncPgConnection) {
    let alive = |name: &str| {
        let pid = name
            .trim_start_matches(PREFIX)
            .split('_')
            .next()
            .unwrap_or("");
        pid.parse::<u32>()
            .is_ok_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    let dbs: Vec<Name> = diesel::sql_query(format!(
        "SELECT datname AS name FROM pg_database WHERE datname LIKE '{PREFIX}%'"
    ))
    .load(conn)
    .await
    .unwrap_or_default();
    for db in dbs.iter().filter(|d| !alive(&d.name)) {
        let _ = conn
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name))
            .await;
    }
    let roles: Vec<Name> = diesel::sql_query(format!(
        "SELECT rolname AS name FROM pg_roles WHERE rolname LIKE '{PREFIX}%'"
    ))
    .load(conn)
    .await
    .unwrap_or_default();
    for role in roles.iter().filter(|r| !alive(&r.name)) {
        let _ = conn
            .batch_execute(&format!("DROP ROLE IF EXISTS {}", role.name))
            .await;
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name for a database or role of this test process.
pub fn unique_name(kind: &str) -> String {
    format!(
        "{PREFIX}{}_{}{kind}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database of its own for one test. Dropped (best effort) when it goes out of scope.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = unique_name("");
        admin()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        TestDb { name }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@{HOST}:{PORT}/{}", self.name)
    }

    /// A pool configuration for this database, its `application_name` set to the
    /// database's name so that `pg_stat_activity` shows whose connections are whose.
    pub fn config(&self) -> DbConfig {
        DbConfig::parse(&self.url())
            .expect("test URL")
            .application_name(self.name.clone())
    }

    /// A direct (unpooled) superuser connection to this database.
    pub async fn direct(&self) -> AsyncPgConnection {
        connect(&self.url()).await
    }

    /// Runs SQL on a direct connection.
    pub async fn exec(&self, sql: &str) {
        self.direct()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A `bigint` computed by `expr` on a direct connection, e.g. `count(*) FROM t`.
    pub async fn scalar(&self, expr: &str) -> i64 {
        diesel::select(diesel::dsl::sql::<BigInt>(&format!("(SELECT {expr})")))
            .get_result(&mut self.direct().await)
            .await
            .unwrap_or_else(|e| panic!("SELECT {expr}: {e}"))
    }

    /// Statements of this database's pools still running on the server.
    pub async fn active_statements(&self) -> i64 {
        self.scalar(&format!(
            "count(*) FROM pg_stat_activity WHERE datname = '{0}' AND application_name = '{0}' \
             AND state <> 'idle' AND pid <> pg_backend_pid()",
            self.name
        ))
        .await
    }

    /// Terminates every backend of this database's pools; returns how many.
    pub async fn terminate_pool_backends(&self) -> i64 {
        self.scalar(&format!(
            "count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{0}' \
             AND application_name = '{0}' AND pid <> pg_backend_pid()",
            self.name
        ))
        .await
    }
}

/// Runs `sql` as the admin, best effort, from `Drop`: which may run inside a tokio
/// runtime, so on a thread with a runtime of its own.
fn admin_cleanup(sql: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let mut conn = AsyncPgConnection::establish(&admin_url()).await.ok()?;
            conn.batch_execute(&sql).await.ok()
        })
    })
    .join();
}

impl Drop for TestDb {
    fn drop(&mut self) {
        admin_cleanup(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// A login role of its own for one test (not a superuser). Dropped when it goes out of scope.
pub struct TestRole {
    pub name: String,
}

impl TestRole {
    /// `options` are appended to `CREATE ROLE name LOGIN`, e.g. `CONNECTION LIMIT 0`.
    pub async fn create(options: &str) -> TestRole {
        let name = unique_name("_role");
        admin()
            .await
            .batch_execute(&format!("CREATE ROLE {name} LOGIN {options}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE ROLE {name}: {e}"));
        TestRole { name }
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        // Objects it owns were dropped with its test database.
        admin_cleanup(format!("DROP ROLE IF EXISTS {}", self.name));
    }
}
