//! The `#[resilient]` attribute. Use it through the `resilient` crate.

mod ast;
mod attr;
mod expand;
mod fallback;
mod suggest;
mod valid;

use proc_macro::TokenStream;

/// Placeholder docs.
#[proc_macro_attribute]
pub fn resilient(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match expand::attribute(args.into(), item.clone()) {
        Ok(expanded) => expanded.into(),
        Err(error) => fallback::expand(item, &error).into(),
    }
}
