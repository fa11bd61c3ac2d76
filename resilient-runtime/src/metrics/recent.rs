//! The last errors, redacted, for the dashboard.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::ErrorClass;

/// How many errors the ring of recent errors keeps.
pub const RECENT_ERRORS: usize = 100;

/// One failed call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecentError {
    /// When it failed, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The operation.
    pub operation: &'static str,
    /// The error's class.
    pub class: ErrorClass,
    /// The error's description, with credentials removed; `None` when the error type
    /// gives none (see [`Classify::describe`](crate::Classify::describe)).
    pub message: Option<String>,
}

#[derive(Default)]
pub(crate) struct RecentErrors(Mutex<VecDeque<RecentError>>);

impl RecentErrors {
    pub(crate) fn push(&self, operation: &'static str, class: ErrorClass, message: Option<String>) {
        let at_unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let entry = RecentError {
            at_unix_ms,
            operation,
            class,
            message: message.map(|m| redact(&m)),
        };
        let mut ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == RECENT_ERRORS {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    pub(crate) fn list(&self) -> Vec<RecentError> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Removes credentials from a message, as the runtime does before keeping or showing
/// any error text: the password of `scheme://user:password@host`
/// URLs and the value of `password=`, `pass=`, `pwd=`, `secret=` and `token=` pairs.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    // URL credentials.
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    // key=value pairs.
    let lower = out.to_ascii_lowercase();
    let mut result = String::with_capacity(out.len());
    let mut i = 0;
    while i < out.len() {
        let hit = ["password=", "pass=", "pwd=", "secret=", "token="]
            .iter()
            .find(|k| {
                lower[i..].starts_with(**k)
                    && (i == 0 || !lower.as_bytes()[i - 1].is_ascii_alphanumeric())
            });
        match hit {
            Some(k) => {
                result.push_str(&out[i..i + k.len()]);
                result.push_str("***");
                i += k.len();
                while i < out.len()
                    && !matches!(
                        out.as_bytes()[i],
                        b' ' | b'&' | b';' | b',' | b'"' | b'\'' | b'\n'
                    )
                {
                    i += 1;
                }
            }
            None => {
                let ch = out[i..].chars().next().map_or(1, char::len_utf8);
                result.push_str(&out[i..i + ch]);
                i += ch;
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed() {
        let m = redact("error connecting to postgres://app:hunter2@db:5432/x?sslmode=disable");
        assert!(!m.contains("hunter2"), "{m}");
        assert!(m.contains("postgres://app:***@db:5432/x"), "{m}");
        let m = redact("host=db user=app password=hunter2 dbname=x");
        assert_eq!(m, "host=db user=app password=*** dbname=x");
        let m = redact("url?user=a&Password=s3cr%40t&x=1 token=abc");
        assert!(!m.contains("s3cr") && !m.contains("abc"), "{m}");
        assert_eq!(
            redact("passwordless login for üser"),
            "passwordless login for üser"
        );
    }

    #[test]
    fn the_ring_keeps_the_last_hundred() {
        let r = RecentErrors::default();
        for i in 0..150 {
            r.push("op", ErrorClass::Transient, Some(format!("e{i}")));
        }
        let l = r.list();
        assert_eq!(l.len(), RECENT_ERRORS);
        assert_eq!(l[0].message.as_deref(), Some("e50"));
        assert_eq!(l[99].message.as_deref(), Some("e149"));
    }
}
