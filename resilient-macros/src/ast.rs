//! The input model: the annotated item, the parameters of an annotated function, and
//! what its options add up to once the preset and the runtime's defaults are applied.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::{
    FnArg, Ident, ItemFn, ItemImpl, Pat, PatType, Receiver, ReturnType, Token, TraitItemFn, Type,
};

use crate::attr::{Args, Preset, Spanned};

/// What `#[resilient]` was put on.
pub(crate) enum Item {
    Fn(ItemFn),
    Impl(ItemImpl),
    /// A method declaration without a body, as found in a trait.
    Decl(TraitItemFn),
}

impl Item {
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Item> {
        match syn::parse2::<syn::Item>(tokens.clone())? {
            syn::Item::Fn(f) => Ok(Item::Fn(f)),
            syn::Item::Impl(i) => Ok(Item::Impl(i)),
            // syn keeps `fn f(&self);` as verbatim tokens.
            syn::Item::Verbatim(_) if syn::parse2::<TraitItemFn>(tokens.clone()).is_ok() => {
                syn::parse2(tokens).map(Item::Decl)
            }
            // Like rustc's "attribute should be applied to a function": point at the attribute.
            _ => Err(syn::Error::new(
                Span::call_site(),
                "`#[resilient]` can only be applied to an `async fn` or an `impl` block",
            )),
        }
    }
}

/// An annotated function and how each of its parameters must be handled per attempt.
pub(crate) struct Function<'a> {
    pub item: &'a ItemFn,
    pub receiver: Option<&'a Receiver>,
    pub params: Vec<Param<'a>>,
}

/// One typed (non-`self`) parameter.
pub(crate) struct Param<'a> {
    pub arg: &'a PatType,
    /// Position among the typed parameters; names `__resilient_arg{index}`.
    pub index: usize,
    pub binding: Binding<'a>,
    pub passing: Passing,
}

/// How a parameter binds its value.
pub(crate) enum Binding<'a> {
    /// `x: T` or `mut x: T`.
    Ident {
        ident: &'a Ident,
        mutability: Option<Token![mut]>,
    },
    /// `_: T`: nothing to rebind per attempt.
    Wild,
    /// `(a, b): (i32, i32)`, `ref x: T`, `x @ ..`: destructured per attempt.
    Pattern,
}

/// How a parameter's value is passed, which decides whether it is cloned per attempt.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Passing {
    /// By value: cloned per attempt when the policy may run the body more than once.
    Owned,
    /// `&T`: copied, never cloned.
    Shared,
    /// `&mut T`: reborrowed, never cloned.
    Unique,
}

impl<'a> Function<'a> {
    pub(crate) fn new(item: &'a ItemFn) -> Self {
        let mut receiver = None;
        let mut params = Vec::new();
        for input in &item.sig.inputs {
            match input {
                FnArg::Receiver(r) => receiver = Some(r),
                FnArg::Typed(arg) => params.push(Param::new(arg, params.len())),
            }
        }
        Function {
            item,
            receiver,
            params,
        }
    }

    pub(crate) fn output(&self) -> Option<&'a Type> {
        match &self.item.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(ty),
        }
    }
}

impl<'a> Param<'a> {
    fn new(arg: &'a PatType, index: usize) -> Self {
        let binding = match &*arg.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Binding::Ident {
                ident: &p.ident,
                mutability: p.mutability,
            },
            Pat::Wild(_) => Binding::Wild,
            _ => Binding::Pattern,
        };
        let passing = match peel(&arg.ty) {
            Type::Reference(r) if r.mutability.is_some() => Passing::Unique,
            Type::Reference(_) => Passing::Shared,
            _ => Passing::Owned,
        };
        Param {
            arg,
            index,
            binding,
            passing,
        }
    }

    /// The name the parameter has in the emitted signature when its pattern is not a plain
    /// identifier. Mixed-site, so the body can't name it.
    pub(crate) fn positional(&self) -> Ident {
        Ident::new(
            &format!("__resilient_arg{}", self.index),
            Span::mixed_site(),
        )
    }
}

/// Strips the invisible groups and parentheses that `macro_rules!` leaves around types.
pub(crate) fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => peel(&g.elem),
        Type::Paren(p) => peel(&p.elem),
        _ => ty,
    }
}

/// The type arguments of a type's last path segment, with that segment's name:
/// `Result` and `[T, E]` for `Result<T, E>`, `RepoResult` and `[T]` for `RepoResult<T>`.
fn type_args(ty: &Type) -> Option<(&Ident, Vec<&Type>)> {
    let Type::Path(path) = peel(ty) else {
        return None;
    };
    let last = path.path.segments.last()?;
    let args = match &last.arguments {
        syn::PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|a| match a {
                syn::GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((&last.ident, args))
}

/// `T` and `E` in a return type spelled `Result<T, E>` (any path ending in `Result`).
fn result_types(ret: &Type) -> Option<(&Type, &Type)> {
    match type_args(ret)? {
        (ident, args) if ident == "Result" && args.len() == 2 => Some((args[0], args[1])),
        _ => None,
    }
}

/// `T` in a return type spelled `Result<T, E>`.
pub(crate) fn result_ok_type(ret: &Type) -> Option<&Type> {
    result_types(ret).map(|(ok, _)| ok)
}

/// `E` in a return type spelled `Result<T, E>`.
pub(crate) fn result_error_type(ret: &Type) -> Option<&Type> {
    result_types(ret).map(|(_, err)| err)
}

/// Whether the return type's first type argument is spelled `Option<..>`, as in
/// `Result<Option<User>, E>` or `RepoResult<Option<User>>`: then `Ok(None)` is a negative
/// result. An `Option` is never the error type (it cannot implement `Classify`), so the
/// first argument of an alias is its `Ok` type whenever it is an `Option`.
pub(crate) fn returns_option(ret: &Type) -> bool {
    type_args(ret)
        .and_then(|(_, args)| args.first().copied())
        .and_then(type_args)
        .is_some_and(|(ident, args)| ident == "Option" && args.len() == 1)
}

// ===== the effective policy =====

/// The runtime's defaults (`resilient_runtime::policy`). The macro needs them to check
/// cross-option rules when an option is left out; keep them in sync with `Policy::new`,
/// `Policy::preset` and `RetryPolicy::NONE`.
pub(crate) mod defaults {
    pub const RETRY: u32 = 0;
    pub const MAX_RETRY: u32 = 10;
    pub const TIMEOUT_MS: u64 = 30_000;
    pub const DELAY_MS: u64 = 100;
    pub const MAX_DELAY_MS: u64 = 10_000;
}

impl Preset {
    pub(crate) const fn retry(self) -> u32 {
        match self {
            Preset::Read => 2,
            Preset::Write => 4,
            Preset::Report => 0,
        }
    }

    pub(crate) const fn timeout_ms(self) -> u64 {
        match self {
            Preset::Read => 5_000,
            Preset::Write => 10_000,
            Preset::Report => 30_000,
        }
    }
}

/// Where an effective setting comes from, so that messages can say why.
#[derive(Clone, Copy)]
pub(crate) enum Source {
    Explicit,
    Preset(Preset),
    Default,
}

/// An annotated function together with its options.
pub(crate) struct Operation<'a> {
    pub args: &'a Args,
    pub func: Function<'a>,
}

impl Operation<'_> {
    /// The name in the registry: `name = ".."`, else `Type::method` when the enclosing
    /// `impl` carries `#[resilient]`, else the function's name.
    pub(crate) fn name(&self) -> String {
        if let Some(name) = &self.args.name {
            return name.value.clone();
        }
        let ident = self.func.item.sig.ident.unraw();
        match &self.args.type_name {
            Some(ty) => format!("{}::{ident}", ty.value),
            None => ident.to_string(),
        }
    }

    pub(crate) fn retry(&self) -> (u32, Source) {
        self.setting(self.args.retry.as_ref(), Preset::retry, defaults::RETRY)
    }

    pub(crate) fn timeout_ms(&self) -> (u64, Source) {
        self.setting(
            self.args.timeout_ms.as_ref(),
            Preset::timeout_ms,
            defaults::TIMEOUT_MS,
        )
    }

    /// Whether the body may run more than once, or the arguments must outlive it for the
    /// fallback: then owned arguments are cloned per attempt.
    pub(crate) fn reuses_args(&self) -> bool {
        self.retry().0 > 0 || self.args.fallback.is_some()
    }

    fn setting<T: Copy>(
        &self,
        explicit: Option<&Spanned<T>>,
        from_preset: fn(Preset) -> T,
        default: T,
    ) -> (T, Source) {
        match (explicit, &self.args.policy) {
            (Some(v), _) => (v.value, Source::Explicit),
            (None, Some(p)) => (from_preset(p.value), Source::Preset(p.value)),
            (None, None) => (default, Source::Default),
        }
    }
}
