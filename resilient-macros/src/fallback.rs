//! The output when expansion fails.

use proc_macro2::TokenStream;

/// The user's item, unchanged, followed by the error.
///
/// Dropping the item would make rust-analyzer lose completions and go-to-definition inside
/// the function while the attribute is being fixed (tokio #4154). Left as written, an
/// `async fn` still compiles, so the error is the only one reported.
pub(crate) fn expand(item: TokenStream, error: &syn::Error) -> TokenStream {
    let mut out = item;
    out.extend(error.to_compile_error());
    out
}
