//! Who may read the dashboard.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

/// What a request's credentials allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// An administrator: may read the dashboard.
    Admin,
    /// A valid credential without the admin role: `403 Forbidden`.
    Forbidden,
    /// No credential, or an invalid one: `401 Unauthorized`.
    Unauthenticated,
}

/// Decides what a request may see. Plug in your application's own authentication by
/// implementing it; [`BearerTokens`] is the built-in one.
pub trait Authorizer: Send + Sync + 'static {
    /// Classifies the request from its headers.
    fn authorize(&self, headers: &HeaderMap) -> Access;
}

impl<F> Authorizer for F
where
    F: Fn(&HeaderMap) -> Access + Send + Sync + 'static,
{
    fn authorize(&self, headers: &HeaderMap) -> Access {
        self(headers)
    }
}

/// Static bearer tokens, compared in constant time.
///
/// ```
/// use resilient_runtime::dashboard::{Access, Authorizer, BearerTokens};
/// use axum::http::HeaderMap;
///
/// let tokens = BearerTokens::new().admin("s3cret-admin").viewer("s3cret-viewer");
/// let mut h = HeaderMap::new();
/// h.insert("authorization", "Bearer s3cret-viewer".parse().unwrap());
/// assert_eq!(tokens.authorize(&h), Access::Forbidden);
/// ```
#[derive(Clone, Default)]
pub struct BearerTokens {
    tokens: Vec<(Vec<u8>, bool)>,
}

impl std::fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("BearerTokens")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl BearerTokens {
    /// No tokens: every request is unauthenticated.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token that grants access.
    pub fn admin(mut self, token: impl Into<String>) -> Self {
        self.tokens.push((token.into().into_bytes(), true));
        self
    }

    /// Adds a valid token without the admin role (its requests get `403`).
    pub fn viewer(mut self, token: impl Into<String>) -> Self {
        self.tokens.push((token.into().into_bytes(), false));
        self
    }
}

impl Authorizer for BearerTokens {
    fn authorize(&self, headers: &HeaderMap) -> Access {
        let Some(presented) = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::as_bytes)
        else {
            return Access::Unauthenticated;
        };
        // Compare against every token, without stopping early, so the time taken says
        // nothing about which one matched or how much of it did. `ct_eq` on slices of
        // different lengths returns false at once: only the length can leak.
        let mut access = Access::Unauthenticated;
        for (token, admin) in &self.tokens {
            if bool::from(token.as_slice().ct_eq(presented)) {
                access = if *admin {
                    Access::Admin
                } else {
                    Access::Forbidden
                };
            }
        }
        if self.tokens.iter().all(|(t, _)| t.is_empty()) {
            return Access::Unauthenticated;
        }
        access
    }
}
