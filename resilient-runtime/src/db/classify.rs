//! Error classes for diesel's errors and ours: see the table in the [module docs](super#classification).

use diesel::result::{ConnectionError, DatabaseErrorKind, Error};

use super::error::DbError;
use crate::{Classify, ErrorClass};

/// The SQLSTATE of a PostgreSQL error, as far as diesel-async 0.9.2 preserves it.
///
/// diesel-async keeps the SQLSTATE only as a [`DatabaseErrorKind`] for eight codes
/// (`23505`, `23503`, `23502`, `23514`, `23001`, `23P01`, `40001`, `25006`); every
/// other server error becomes `DatabaseErrorKind::Unknown` with just the server's
/// message (no code, no way to downcast). For the codes that matter to retry and to the
/// breaker, the code is recovered from the server's primary message, which PostgreSQL
/// writes in English unless the server's `lc_messages` says otherwise:
///
/// | code | message begins with / contains |
/// |---|---|
/// | `40P01` | "deadlock detected" |
/// | `40001` | "could not serialize access", "canceling statement due to conflict with recovery" |
/// | `55P03` | "canceling statement due to lock timeout", "could not obtain lock" |
/// | `57014` | "canceling statement due to statement timeout", "… due to user request" |
/// | `53300` | "sorry, too many clients already", "too many connections for", "remaining connection slots are reserved" |
/// | `53200` / `53100` | "out of memory", "out of shared memory" / "could not extend file", "disk full" |
/// | `57P01` | "terminating connection due to administrator command" |
/// | `57P02` | "terminating connection because of crash of another server process" |
/// | `57P03` | "the database system is starting up", "… is shutting down", "… is in recovery mode", "… is not yet accepting connections", "… is not accepting connections" |
/// | `57P05` | "terminating connection due to idle-session timeout" |
/// | `42601` | "syntax error" |
/// | `42501` | "permission denied" |
///
/// Returns `None` for other errors, and for servers whose messages are localized.
///
/// ```
/// use diesel::result::{DatabaseErrorKind, Error};
/// use resilient_runtime::db::sqlstate;
///
/// let deadlock = Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new("deadlock detected".to_string()));
/// assert_eq!(sqlstate(&deadlock), Some("40P01"));
/// ```
pub fn sqlstate(error: &Error) -> Option<&'static str> {
    let Error::DatabaseError(kind, info) = error else {
        return None;
    };
    let exact = match kind {
        DatabaseErrorKind::UniqueViolation => Some("23505"),
        DatabaseErrorKind::ForeignKeyViolation => Some("23503"),
        DatabaseErrorKind::NotNullViolation => Some("23502"),
        DatabaseErrorKind::CheckViolation => Some("23514"),
        DatabaseErrorKind::RestrictViolation => Some("23001"),
        DatabaseErrorKind::ExclusionViolation => Some("23P01"),
        DatabaseErrorKind::SerializationFailure => Some("40001"),
        DatabaseErrorKind::ReadOnlyTransaction => Some("25006"),
        _ => None,
    };
    exact.or_else(|| sqlstate_from_message(info.message()))
}

fn sqlstate_from_message(message: &str) -> Option<&'static str> {
    const BY_MESSAGE: &[(&str, &str)] = &[
        ("deadlock detected", "40P01"),
        ("could not serialize access", "40001"),
        ("canceling statement due to conflict with recovery", "40001"),
        ("canceling statement due to lock timeout", "55P03"),
        ("could not obtain lock", "55P03"),
        ("canceling statement due to statement timeout", "57014"),
        ("canceling statement due to user request", "57014"),
        ("sorry, too many clients already", "53300"),
        ("too many connections for", "53300"),
        ("remaining connection slots are reserved", "53300"),
        ("out of shared memory", "53200"),
        ("out of memory", "53200"),
        ("could not extend file", "53100"),
        ("disk full", "53100"),
        (
            "terminating connection due to administrator command",
            "57P01",
        ),
        ("terminating connection because of crash", "57P02"),
        ("the database system is starting up", "57P03"),
        ("the database system is shutting down", "57P03"),
        ("the database system is in recovery mode", "57P03"),
        (
            "the database system is not yet accepting connections",
            "57P03",
        ),
        ("the database system is not accepting connections", "57P03"),
        (
            "terminating connection due to idle-session timeout",
            "57P05",
        ),
        ("syntax error", "42601"),
        ("permission denied", "42501"),
    ];
    BY_MESSAGE
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map(|(_, code)| *code)
}

/// The class of a PostgreSQL SQLSTATE.
///
/// | SQLSTATE | class | why |
/// |---|---|---|
/// | `40001` serialization failure, `40P01` deadlock, `40000`, `55P03` lock not available | transient | the server rolled the statement back; retry, but say nothing about health |
/// | `40003` statement completion unknown | ambiguous | the server itself does not know |
/// | `08xxx` connection exception, `53xxx` insufficient resources (`53300` too many connections), `57P01` admin shutdown, `57P02` crash shutdown, `57P03` cannot connect now, `57P04`, `57P05`, `57014` query canceled (statement timeout), `58xxx` system error | unavailable | nothing was applied and the server is unwell or overloaded: retry, and count it |
/// | everything else: `23xxx` constraint violations, `42xxx` syntax and permissions, `22xxx` bad data, `25xxx`, `40002`, `XX000`, … | caller | retrying would fail the same way |
///
/// ```
/// use resilient_runtime::{db::class_of_sqlstate, ErrorClass};
/// assert_eq!(class_of_sqlstate("40P01"), ErrorClass::Transient);
/// assert_eq!(class_of_sqlstate("53300"), ErrorClass::Unavailable);
/// assert_eq!(class_of_sqlstate("23505"), ErrorClass::Caller);
/// ```
pub fn class_of_sqlstate(code: &str) -> ErrorClass {
    match code {
        "40001" | "40P01" | "40000" | "55P03" => ErrorClass::Transient,
        "40003" => ErrorClass::Ambiguous,
        "57014" | "57P01" | "57P02" | "57P03" | "57P04" | "57P05" => ErrorClass::Unavailable,
        _ if code.starts_with("08") || code.starts_with("53") || code.starts_with("58") => {
            ErrorClass::Unavailable
        }
        _ => ErrorClass::Caller,
    }
}

/// SQLite errors that are not constraint violations reach us as messages only.
fn sqlite_class(message: &str) -> Option<ErrorClass> {
    if message.contains("database is locked") || message.contains("database table is locked") {
        Some(ErrorClass::Transient)
    } else if message.contains("unable to open database file")
        || message.contains("disk I/O error")
        || message.contains("database or disk is full")
    {
        Some(ErrorClass::Unavailable)
    } else {
        None
    }
}

/// diesel-async reports every tokio-postgres error without a SQLSTATE (and every
/// failure of SQLite's blocking task) as `UnableToSendCommand` with the driver's
/// message. Whether the statement reached the server depends on which one it is.
fn unable_to_send_class(message: &str) -> ErrorClass {
    const NOTHING_SENT_UNAVAILABLE: &[&str] = &[
        "error connecting to server",
        "timeout waiting for server",
        "authentication error",
        "error performing TLS handshake",
    ];
    const NOTHING_SENT_CALLER: &[&str] = &[
        "error serializing parameter",
        "error encoding message to server",
    ];
    if NOTHING_SENT_UNAVAILABLE
        .iter()
        .any(|m| message.starts_with(m))
    {
        ErrorClass::Unavailable
    } else if NOTHING_SENT_CALLER.iter().any(|m| message.starts_with(m)) {
        ErrorClass::Caller
    } else {
        // "connection closed", "error communicating with the server: …", a panicked
        // or cancelled SQLite task: the statement may have run.
        ErrorClass::Ambiguous
    }
}

impl Classify for Error {
    /// See the [classification table](super#classification).
    fn class(&self) -> ErrorClass {
        match self {
            Error::NotFound => ErrorClass::Caller,
            Error::DatabaseError(kind, info) => match kind {
                DatabaseErrorKind::ClosedConnection => ErrorClass::Ambiguous,
                DatabaseErrorKind::UnableToSendCommand => unable_to_send_class(info.message()),
                _ => match sqlstate(self) {
                    Some(code) => class_of_sqlstate(code),
                    None => sqlite_class(info.message()).unwrap_or(ErrorClass::Caller),
                },
            },
            // The commit failed and so did the rollback: the connection is probably gone
            // and nobody knows whether the commit happened.
            Error::RollbackErrorOnCommit { .. } => ErrorClass::Ambiguous,
            // The connection's transaction state is unknown; nothing was sent this time.
            Error::BrokenTransactionManager => ErrorClass::Unavailable,
            Error::InvalidCString(_)
            | Error::QueryBuilderError(_)
            | Error::DeserializationError(_)
            | Error::SerializationError(_)
            | Error::RollbackTransaction
            | Error::AlreadyInTransaction
            | Error::NotInTransaction => ErrorClass::Caller,
            // A variant added by a later diesel: assume the worst for writes.
            _ => ErrorClass::Ambiguous,
        }
    }
}

impl Classify for ConnectionError {
    /// A bad URL is the caller's; any other failure to connect means the database is
    /// unavailable (nothing was sent).
    fn class(&self) -> ErrorClass {
        match self {
            ConnectionError::InvalidCString(_) | ConnectionError::InvalidConnectionUrl(_) => {
                ErrorClass::Caller
            }
            _ => ErrorClass::Unavailable,
        }
    }
}

impl Classify for DbError {
    /// A checkout that timed out is unavailable (nothing was sent); a closed pool or a
    /// missing runtime is a rejection; the rest are configuration mistakes (caller).
    fn class(&self) -> ErrorClass {
        match self {
            DbError::Unavailable { .. } => ErrorClass::Unavailable,
            DbError::NoRuntime | DbError::Closed { .. } => ErrorClass::Rejected,
            DbError::NoPool
            | DbError::UnknownPool { .. }
            | DbError::SqliteNeedsMultiThread { .. }
            | DbError::WrongBackend { .. } => ErrorClass::Caller,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::DatabaseError(kind, Box::new(message.to_string()))
    }

    #[test]
    fn kinds_and_messages() {
        use DatabaseErrorKind as K;
        use ErrorClass::*;
        let cases = [
            (
                db(
                    K::SerializationFailure,
                    "could not serialize access due to concurrent update",
                ),
                Transient,
            ),
            (db(K::Unknown, "deadlock detected"), Transient),
            (
                db(K::Unknown, "canceling statement due to lock timeout"),
                Transient,
            ),
            (
                db(K::Unknown, "sorry, too many clients already"),
                Unavailable,
            ),
            (
                db(K::Unknown, "too many connections for role \"x\""),
                Unavailable,
            ),
            (
                db(
                    K::Unknown,
                    "terminating connection due to administrator command",
                ),
                Unavailable,
            ),
            (
                db(K::Unknown, "the database system is starting up"),
                Unavailable,
            ),
            (
                db(K::Unknown, "the database system is shutting down"),
                Unavailable,
            ),
            (
                db(K::Unknown, "canceling statement due to statement timeout"),
                Unavailable,
            ),
            (db(K::UnableToSendCommand, "connection closed"), Ambiguous),
            (
                db(
                    K::UnableToSendCommand,
                    "error communicating with the server: broken pipe",
                ),
                Ambiguous,
            ),
            (
                db(
                    K::UnableToSendCommand,
                    "error connecting to server: Connection refused (os error 111)",
                ),
                Unavailable,
            ),
            (
                db(K::UnableToSendCommand, "error serializing parameter 0: bad"),
                Caller,
            ),
            (db(K::ClosedConnection, "closed"), Ambiguous),
            (
                db(
                    K::UniqueViolation,
                    "duplicate key value violates unique constraint",
                ),
                Caller,
            ),
            (db(K::ForeignKeyViolation, "fk"), Caller),
            (db(K::Unknown, "syntax error at or near \"SELEC\""), Caller),
            (db(K::Unknown, "permission denied for table users"), Caller),
            (db(K::Unknown, "relation \"nope\" does not exist"), Caller),
            (db(K::Unknown, "database is locked"), Transient),
            (Error::NotFound, Caller),
            (Error::RollbackTransaction, Caller),
            (Error::BrokenTransactionManager, Unavailable),
        ];
        for (error, class) in cases {
            assert_eq!(error.class(), class, "{error:?}");
        }
    }

    #[test]
    fn db_errors() {
        let e = DbError::Unavailable {
            pool: "p",
            waited: std::time::Duration::from_secs(1),
            cause: None,
            connections: 1,
            idle: 0,
            max_size: 1,
        };
        assert_eq!(e.class(), ErrorClass::Unavailable);
        assert_eq!(DbError::Closed { pool: "p" }.class(), ErrorClass::Rejected);
        assert_eq!(
            DbError::SqliteNeedsMultiThread { pool: "p" }.class(),
            ErrorClass::Caller
        );
    }
}
