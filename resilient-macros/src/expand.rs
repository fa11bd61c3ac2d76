//! Generates the rewritten function, and rewrites the method attributes inside an
//! annotated `impl` block.
//!
//! Every runtime item is named through `::resilient::__private`, and every binding the
//! expansion introduces is named `__resilient_*` with a mixed-site span, so the user's body
//! can neither see nor shadow them.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned as _;
use syn::visit_mut::VisitMut;
use syn::{AttrStyle, Attribute, FnArg, ImplItem, ItemImpl, Member, Meta, Pat, Type};

use crate::ast::{
    Binding, Function, Item, Operation, Param, Passing, peel, result_error_type, result_ok_type,
    returns_option,
};
use crate::attr::{Args, Backoff, BuiltinBreaker, BuiltinBulkhead, Preset, SpecRef};
use crate::template::{Fragment, Template};
use crate::valid;

/// Parse → validate → generate. On `Err`, the caller emits the item unchanged.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    match Item::parse(item)? {
        Item::Impl(imp) => impl_block(args, imp),
        Item::Decl(decl) => Err(syn::Error::new_spanned(
            &decl.sig,
            "`#[resilient]` needs the function body: put it on the method in the `impl` block, \
             not on the trait's declaration",
        )),
        Item::Fn(item) => {
            let args: Args = syn::parse2(args)?;
            let op = Operation {
                args: &args,
                func: Function::new(&item),
            };
            valid::validate(&op)?;
            Ok(function(&op))
        }
    }
}

// ===== functions =====

/// Input:
///
/// ```text
/// #[resilient(retry = 3)]
/// async fn create(&self, new: NewUser) -> Result<User, RepoError> { BODY }
/// ```
///
/// Output:
///
/// ```text
/// async fn create(&self, new: NewUser) -> Result<User, RepoError> {
///     static __RESILIENT_POLICY: Policy = Policy::new("create", module_path!()).retry(3);
///     inventory::submit! { Registration::new(&__RESILIENT_POLICY) }
///     assert_return::<Result<User, RepoError>>();
///     assert_error::<RepoError>();
///     let __resilient_rt = RuntimeRef::current();
///     let mut __resilient_call = Call::new(&__resilient_rt, &__RESILIENT_POLICY);
///     let __resilient_result = loop {
///         let __resilient_admission = match __resilient_call.try_admit() { .. admit().await .. };
///         let new = CloneForRetry::clone_for_retry(&new);
///         let outcome = __resilient_call.start_attempt(async { BODY }).await;
///         match __resilient_call.end_attempt(__resilient_admission, outcome) {
///             Break(result) => break result,
///             Continue(wake) => sleep_until(wake).await,
///         }
///     };
///     __resilient_call.finish(__resilient_result)
/// }
/// ```
///
/// Without retries the `loop` becomes a single `match` (see [`single_attempt`]), and with
/// a fallback `finish` is followed by the fallback call (see [`finish`]). A `cache` wraps
/// the run in a cache lookup (see [`cached_run`]); `invalidate` builds its keys before the
/// run and invalidates them after it (see [`invalidating_run`]).
///
/// The body is re-run inline in a non-`move` async block instead of through a closure:
/// each attempt's future is dropped before the next one starts, so the body may borrow
/// `&mut self` and the arguments afresh every time, which an `FnMut` closure returning a
/// future cannot do.
fn function(op: &Operation) -> TokenStream {
    let item = op.func.item;
    let (inner, outer): (Vec<&Attribute>, Vec<&Attribute>) = item
        .attrs
        .iter()
        .partition(|a| matches!(a.style, AttrStyle::Inner(_)));
    let vis = &item.vis;
    let reuse = op.reuses_args();
    let sig = signature(op, reuse);
    let ret = op
        .func
        .output()
        .expect("validated: the function has a return type");

    let policy = policy_static(op);
    let mut checks = type_checks(ret);
    if op.args.cache.is_some() {
        checks.extend(cacheable_check(ret));
    }
    let rebind = if reuse {
        op.func.params.iter().map(rebind).collect()
    } else {
        TokenStream::new()
    };
    let attempt = attempt_future(ret, &item.block);
    let run = if op.retry().0 > 0 {
        retry_loop(&rebind, &attempt)
    } else {
        single_attempt(&rebind, &attempt)
    };
    let finish = finish(op);

    let m = Span::mixed_site();
    let (before, run, after) = match &op.args.cache {
        Some(cache) => (
            TokenStream::new(),
            cached_run(op, &cache.value, &run),
            TokenStream::new(),
        ),
        None => invalidating_run(op, run),
    };
    let body = quote_spanned! {m=>
        #(#inner)*
        #policy
        #checks
        let __resilient_rt = ::resilient::__private::RuntimeRef::current();
        let mut __resilient_call =
            ::resilient::__private::Call::new(&__resilient_rt, &__RESILIENT_POLICY);
        #before
        let __resilient_result = #run;
        #after
        #finish
    };
    let mut out = quote!(#(#outer)* #vis #sig);
    // The body's braces keep the user's span: an item whose span ends inside the macro's
    // expansion counts as macro-generated, and rustc then silences lints such as
    // `dead_code` on the user's function.
    item.block
        .brace_token
        .surround(&mut out, |out| out.extend(body));
    out
}

/// The user's signature, except that when arguments are reused across attempts, `mut`
/// moves from the parameter to the per-attempt binding (the parameter itself is never
/// mutated, and `unused_mut` would say so), and patterns are bound to a positional name
/// and destructured per attempt.
fn signature(op: &Operation, reuse: bool) -> syn::Signature {
    let mut sig = op.func.item.sig.clone();
    if !reuse {
        return sig;
    }
    let typed = sig.inputs.iter_mut().filter_map(|input| match input {
        FnArg::Typed(arg) => Some(arg),
        FnArg::Receiver(_) => None,
    });
    for (arg, param) in typed.zip(&op.func.params) {
        match (&param.binding, param.passing) {
            (Binding::Ident { .. }, Passing::Owned) => {
                if let Pat::Ident(p) = &mut *arg.pat {
                    p.mutability = None;
                }
            }
            (Binding::Ident { .. }, Passing::Shared | Passing::Unique) => {}
            (Binding::Wild | Binding::Pattern, _) => {
                let ident = param.positional();
                *arg.pat = syn::parse_quote!(#ident);
            }
        }
    }
    sig
}

/// Fresh bindings for one attempt, shadowing the parameters.
fn rebind(param: &Param) -> TokenStream {
    let pat = &param.arg.pat;
    let positional = param.positional();
    // Spanned at the parameter's type, so that a missing `Clone` points at the argument.
    let ty_span = param.arg.ty.span();
    let clone = quote_spanned!(ty_span=> ::resilient::__private::CloneForRetry::clone_for_retry);
    match (&param.binding, param.passing) {
        (Binding::Ident { ident, mutability }, Passing::Owned) => {
            quote_spanned!(ty_span=> let #mutability #ident = #clone(&#ident);)
        }
        (Binding::Ident { .. } | Binding::Wild, _) => TokenStream::new(),
        (Binding::Pattern, Passing::Owned) => quote!(let #pat = #clone(&#positional);),
        (Binding::Pattern, Passing::Shared) => quote!(let #pat = #positional;),
        (Binding::Pattern, Passing::Unique) => quote!(let #pat = &mut *#positional;),
    }
}

/// `async { fake return edge; BODY }`, not `move`: see [`function`].
///
/// The fake return edge (as in tracing's `#[instrument]`) fixes the block's output type
/// before the body is checked, so `?` converts into the declared error type and a
/// mismatched `return` is reported against the user's return type.
fn attempt_future(ret: &Type, block: &syn::Block) -> TokenStream {
    let ret_span = ret.span();
    let fake = syn::Ident::new(
        "__resilient_fake_return",
        Span::mixed_site().located_at(ret_span),
    );
    let (ret, _) = infer_impl_trait(ret);
    quote_spanned! {ret_span=>
        async {
            #[allow(
                unknown_lints,
                unreachable_code,
                clippy::diverging_sub_expression,
                clippy::empty_loop,
                clippy::let_unit_value,
                clippy::let_with_type_underscore,
                clippy::needless_return,
                clippy::unreachable
            )]
            if false {
                let #fake: #ret = loop {};
                return #fake;
            }
            #block
        }
    }
}

/// `Result<Admission, Rejection>`: the synchronous admission when a bulkhead slot is
/// free at once (no future to build), else the awaited one that queues.
fn admission() -> TokenStream {
    quote_spanned! {Span::mixed_site()=>
        match __resilient_call.try_admit() {
            ::resilient::__private::core::result::Result::Ok(
                ::resilient::__private::core::option::Option::Some(admission),
            ) => ::resilient::__private::core::result::Result::Ok(admission),
            ::resilient::__private::core::result::Result::Ok(
                ::resilient::__private::core::option::Option::None,
            ) => __resilient_call.admit().await,
            ::resilient::__private::core::result::Result::Err(rejection) => {
                ::resilient::__private::core::result::Result::Err(rejection)
            }
        }
    }
}

/// Runs attempts until the runtime stops asking for another.
fn retry_loop(rebind: &TokenStream, attempt: &TokenStream) -> TokenStream {
    let admission = admission();
    quote_spanned! {Span::mixed_site()=>
        loop {
            let __resilient_admission = match #admission {
                ::resilient::__private::core::result::Result::Ok(admission) => admission,
                ::resilient::__private::core::result::Result::Err(rejection) => {
                    break ::resilient::__private::rejected(rejection);
                }
            };
            #rebind
            let __resilient_outcome = __resilient_call.start_attempt(#attempt).await;
            match __resilient_call.end_attempt(__resilient_admission, __resilient_outcome) {
                ::resilient::__private::core::ops::ControlFlow::Break(result) => break result,
                ::resilient::__private::core::ops::ControlFlow::Continue(wake) => {
                    ::resilient::__private::sleep_until(wake).await;
                }
            }
        }
    }
}

/// One attempt, without a loop: with no retry the arguments are not cloned, and a body
/// that moves one would not compile inside a loop.
///
/// `Call::end_attempt` asks for another attempt only while the policy's `max_retries`
/// allows one, and this policy is the `static` above, built with none; so `Continue`
/// cannot happen unless the runtime starts overriding retries at run time.
fn single_attempt(rebind: &TokenStream, attempt: &TokenStream) -> TokenStream {
    let admission = admission();
    quote_spanned! {Span::mixed_site()=>
        match #admission {
            ::resilient::__private::core::result::Result::Ok(__resilient_admission) => {
                #rebind
                let __resilient_outcome = __resilient_call.start_attempt(#attempt).await;
                match __resilient_call.end_attempt(__resilient_admission, __resilient_outcome) {
                    ::resilient::__private::core::ops::ControlFlow::Break(result) => result,
                    ::resilient::__private::core::ops::ControlFlow::Continue(_) => {
                        ::resilient::__private::core::unreachable!(
                            "the runtime retried an operation declared without retries"
                        )
                    }
                }
            }
            ::resilient::__private::core::result::Result::Err(rejection) => {
                ::resilient::__private::rejected(rejection)
            }
        }
    }
}

// ===== caches =====

/// The read path: the cache answers first; on a miss this caller loads the value through
/// the policy (other callers of the same key wait for it) and stores it.
///
/// Input: `#[resilient(cache = "user:<id>")] async fn find(&self, id: i64) -> Result<Option<User>, E>`
///
/// Output, where `RUN` is the retry loop (or the single attempt):
///
/// ```text
/// let __resilient_key = CacheKey::new().lit("user:").part(&id);
/// let __resilient_result = match match __resilient_call.cache_probe(&__resilient_key) {
///     Ok(fresh) => CacheEnter::Done(Ok(fresh)),
///     Err(stale) => __resilient_call.cache_join(__resilient_key, stale).await,
/// } {
///     CacheEnter::Done(result) => result,
///     CacheEnter::Load(__resilient_load) => {
///         let __resilient_result = RUN;
///         __resilient_call.cache_store(__resilient_load, __resilient_result, is_none)
///     }
/// };
/// ```
///
/// A fresh hit is answered synchronously (no single-flight future is built), and flows
/// into the same `finish` (and fallback) as a load, so both end alike. The key is built
/// before the body runs, from the arguments as the caller passed them.
fn cached_run(op: &Operation, cache: &Template, run: &TokenStream) -> TokenStream {
    let m = Span::mixed_site();
    let key = key_expr(cache, &op.func);
    let ret = op
        .func
        .output()
        .expect("validated: the function has a return type");
    let negative = if returns_option(ret) {
        quote_spanned!(m=> ::resilient::__private::is_none)
    } else {
        quote_spanned!(m=> ::resilient::__private::never_negative)
    };
    // Located at the cached type, like `assert_cacheable`: the errors of a type that is
    // not `Send` or `Sync` then all point there instead of at the attribute.
    let at = m.located_at(result_ok_type(ret).unwrap_or(ret).span());
    let probe = quote_spanned!(at=> __resilient_call.cache_probe(&__resilient_key));
    let join = quote_spanned!(at=> __resilient_call.cache_join(__resilient_key, stale));
    let store = quote_spanned!(at=> __resilient_call.cache_store);
    quote_spanned! {m=> {
        let __resilient_key = #key;
        match match #probe {
            ::resilient::__private::core::result::Result::Ok(fresh) => {
                ::resilient::__private::CacheEnter::Done(
                    ::resilient::__private::core::result::Result::Ok(fresh),
                )
            }
            ::resilient::__private::core::result::Result::Err(stale) => #join.await,
        } {
            ::resilient::__private::CacheEnter::Done(result) => result,
            ::resilient::__private::CacheEnter::Load(__resilient_load) => {
                let __resilient_result = #run;
                #store(__resilient_load, __resilient_result, #negative)
            }
        }
    }}
}

/// The write path: keys to invalidate, built before the body runs (it may move the
/// arguments), and the invalidation once the policy has given its result. The runtime
/// decides from the result whether the write may have been applied.
///
/// Returns what goes before the run, the run, and what goes after it.
fn invalidating_run(op: &Operation, run: TokenStream) -> (TokenStream, TokenStream, TokenStream) {
    let args = op.args;
    if args.invalidate.is_empty() && args.invalidate_prefix.is_empty() {
        return (TokenStream::new(), run, TokenStream::new());
    }
    let m = Span::mixed_site();
    let mut before = TokenStream::new();
    let mut lists = Vec::new();
    for (name, templates) in [
        ("__resilient_invalidate", &args.invalidate),
        ("__resilient_invalidate_prefix", &args.invalidate_prefix),
    ] {
        if templates.is_empty() {
            // The parameter's type makes `&[]` a `&[CacheKey]`.
            lists.push(quote_spanned!(m=> &[]));
            continue;
        }
        let name = Ident::new(name, m);
        let keys = templates.iter().map(|t| key_expr(&t.value, &op.func));
        before.extend(quote_spanned!(m=> let #name = [#(#keys),*];));
        lists.push(quote_spanned!(m=> &#name));
    }
    let after = quote_spanned! {m=>
        __resilient_call.invalidate(&__resilient_result, #(#lists),*);
    };
    (before, run, after)
}

/// `CacheKey::new().lit("user:").part(&id).lit(":").part(&patch.org_id)`: the key one call
/// makes from `template`, for `cache` and `invalidate` alike.
///
/// Each value is located at the template, so that a value that cannot be part of a key
/// is reported there with the `KeyPart` message; the parameter keeps its own hygiene.
fn key_expr(template: &Template, func: &Function) -> TokenStream {
    let at = template.lit.span();
    let m = Span::mixed_site().located_at(at);
    let mut key = quote_spanned!(m=> ::resilient::__private::CacheKey::new());
    for fragment in &template.fragments {
        match fragment {
            Fragment::Lit(text) => {
                let text = Literal::string(text);
                key.extend(quote_spanned!(m=> .lit(#text)));
            }
            Fragment::Hole(hole) => {
                let mut param = func
                    .params
                    .iter()
                    .find_map(|p| match &p.binding {
                        Binding::Ident { ident, .. } if ident.unraw() == hole.param => {
                            Some((*ident).clone())
                        }
                        _ => None,
                    })
                    .expect("validated: every placeholder names a parameter");
                param.set_span(param.span().located_at(at));
                let fields = hole.fields.iter().map(|f| match f {
                    Member::Named(ident) => {
                        let mut ident = ident.clone();
                        ident.set_span(at);
                        Member::Named(ident)
                    }
                    Member::Unnamed(index) => Member::Unnamed(syn::Index {
                        index: index.index,
                        span: at,
                    }),
                });
                key.extend(quote_spanned!(m=> .part(&#param #(.#fields)*)));
            }
        }
    }
    key
}

/// `static NAME: KeyTemplate = KeyTemplate::new("user:<id>", &[Lit("user:"), Hole("id")]);`
fn template_static(name: &Ident, template: &Template) -> TokenStream {
    let m = Span::mixed_site();
    let text = Literal::string(&template.text());
    let fragments = template.fragments.iter().map(|f| match f {
        Fragment::Lit(text) => {
            let text = Literal::string(text);
            quote_spanned!(m=> ::resilient::__private::Fragment::Lit(#text))
        }
        Fragment::Hole(hole) => {
            let text = Literal::string(&hole.text);
            quote_spanned!(m=> ::resilient::__private::Fragment::Hole(#text))
        }
    });
    quote_spanned! {m=>
        static #name: ::resilient::__private::KeyTemplate =
            ::resilient::__private::KeyTemplate::new(#text, &[#(#fragments),*]);
    }
}

/// The key template statics and the policy's cache settings.
///
/// Returns the statics, to put next to the policy, and the builder calls to chain.
fn cache_policy(args: &Args) -> (TokenStream, TokenStream) {
    let m = Span::mixed_site();
    let mut statics = TokenStream::new();
    let mut chain = TokenStream::new();
    if let Some(cache) = &args.cache {
        let name = Ident::new("__RESILIENT_CACHE_KEY", m);
        statics.extend(template_static(&name, &cache.value));
        chain.extend(quote_spanned!(m=> .cache(&#name)));
    }
    for (method, value) in [("ttl_s", &args.ttl_s), ("stale_s", &args.stale_s)] {
        if let Some(v) = value {
            let method = format_ident!("{method}", span = m);
            let v = Literal::u64_unsuffixed(v.value);
            chain.extend(quote_spanned!(m=> .#method(#v)));
        }
    }
    if let Some(n) = &args.cache_capacity {
        let n = Literal::usize_unsuffixed(n.value);
        chain.extend(quote_spanned!(m=> .cache_capacity(#n)));
    }
    if let Some(none) = &args.cache_none {
        let none = none.value;
        chain.extend(quote_spanned!(m=> .cache_none(#none)));
    }
    for (method, prefix, templates) in [
        ("invalidate", "__RESILIENT_INVALIDATE", &args.invalidate),
        (
            "invalidate_prefix",
            "__RESILIENT_INVALIDATE_PREFIX",
            &args.invalidate_prefix,
        ),
    ] {
        if templates.is_empty() {
            continue;
        }
        let names: Vec<Ident> = (0..templates.len())
            .map(|i| format_ident!("{prefix}_{i}", span = m))
            .collect();
        for (name, t) in names.iter().zip(templates) {
            statics.extend(template_static(name, &t.value));
        }
        let method = format_ident!("{method}", span = m);
        chain.extend(quote_spanned!(m=> .#method(&[#(&#names),*])));
    }
    (statics, chain)
}

/// Cached values are cloned for every hit and shared across threads. Spanned at the `Ok`
/// type when the signature spells `Result<T, E>`, else at the return type.
fn cacheable_check(ret: &Type) -> TokenStream {
    if contains_impl_trait(ret) {
        return TokenStream::new();
    }
    let ok = cached_type(ret);
    quote_spanned!(ok.span()=> ::resilient::__private::assert_cacheable::<#ok>();)
}

/// `T` of a return type spelled `Result<T, E>`, else `<R as ResilientReturn>::Ok`,
/// spanned at the return type.
fn cached_type(ret: &Type) -> TokenStream {
    match result_ok_type(ret) {
        Some(ok) => ok.to_token_stream(),
        None => quote_spanned!(ret.span()=> <#ret as ::resilient::__private::ResilientReturn>::Ok),
    }
}

/// `finish`, then the fallback if there is one and the runtime says it applies.
fn finish(op: &Operation) -> TokenStream {
    let m = Span::mixed_site();
    let Some(fallback) = &op.args.fallback else {
        return quote_spanned!(m=> __resilient_call.finish(__resilient_result));
    };
    let path = &fallback.value;
    // The call and its arguments are located at the path, so that a wrong signature is
    // reported there (and rustc makes no edit suggestions against the user's signature).
    // Each argument keeps its hygiene, only its location changes.
    let at = path.span();
    let receiver = op.func.receiver.map(|r| {
        let mut token = r.self_token;
        token.span = token.span.located_at(at);
        token.to_token_stream()
    });
    let args = op.func.params.iter().map(|p| {
        let mut ident = match &p.binding {
            Binding::Ident { ident, .. } => (*ident).clone(),
            Binding::Wild | Binding::Pattern => p.positional(),
        };
        ident.set_span(ident.span().located_at(at));
        ident
    });
    let receiver = receiver.into_iter();
    let call = quote_spanned!(at=> #path(#(#receiver,)* #(#args),*).await);
    quote_spanned! {m=>
        let __resilient_out = __resilient_call.finish(__resilient_result);
        if ::resilient::__private::core::result::Result::is_err(&__resilient_out)
            && __resilient_call.fallback_applies()
        {
            return #call;
        }
        __resilient_out
    }
}

/// The `static` policy, registered with the runtime's inventory.
///
/// The `static` never names the function's generics or `Self` (cached #80, #16), so it is
/// valid in generic functions and in methods.
fn policy_static(op: &Operation) -> TokenStream {
    let args = op.args;
    let name = Literal::string(&op.name());
    let m = Span::mixed_site();
    let mut chain = quote_spanned! {m=>
        ::resilient::__private::Policy::new(#name, ::resilient::__private::core::module_path!())
    };
    // The preset first: explicit options override it.
    if let Some(p) = &args.policy {
        let preset = match p.value {
            Preset::Read => quote!(Read),
            Preset::Write => quote!(Write),
            Preset::Report => quote!(Report),
        };
        chain.extend(quote_spanned!(m=> .preset(::resilient::__private::Preset::#preset)));
    }
    if let Some(n) = &args.retry {
        let n = Literal::u32_unsuffixed(n.value);
        chain.extend(quote_spanned!(m=> .retry(#n)));
    }
    if let Some(b) = &args.backoff {
        let backoff = match b.value {
            Backoff::None => quote!(None),
            Backoff::Fixed => quote!(Fixed),
            Backoff::Exponential => quote!(Exponential),
        };
        chain.extend(quote_spanned!(m=> .backoff(::resilient::__private::Backoff::#backoff)));
    }
    for (method, value) in [
        ("delay_ms", &args.delay_ms),
        ("max_delay_ms", &args.max_delay_ms),
        ("timeout_ms", &args.timeout_ms),
        ("deadline_ms", &args.deadline_ms),
    ] {
        if let Some(v) = value {
            let method = format_ident!("{method}", span = m);
            let v = Literal::u64_unsuffixed(v.value);
            chain.extend(quote_spanned!(m=> .#method(#v)));
        }
    }
    if let Some(j) = &args.jitter {
        let j = j.value;
        chain.extend(quote_spanned!(m=> .jitter(#j)));
    }
    if let Some(b) = &args.bulkhead {
        chain.extend(match &b.value {
            SpecRef::Builtin(builtin) => {
                let spec = match builtin {
                    BuiltinBulkhead::Read => quote!(READ),
                    BuiltinBulkhead::Write => quote!(WRITE),
                    BuiltinBulkhead::Report => quote!(REPORT),
                };
                quote_spanned!(m=> .bulkhead(&::resilient::__private::bulkhead::#spec))
            }
            // Spanned at the path: a `static` of the wrong type is reported there.
            SpecRef::Custom(path) => quote_spanned!(path.span()=> .bulkhead(&#path)),
            SpecRef::Off => quote_spanned!(m=> .no_bulkhead()),
        });
    }
    if let Some(b) = &args.breaker {
        chain.extend(match &b.value {
            SpecRef::Builtin(BuiltinBreaker::Database) => {
                quote_spanned!(m=> .breaker(&::resilient::__private::breaker::DATABASE))
            }
            SpecRef::Custom(path) => quote_spanned!(path.span()=> .breaker(&#path)),
            SpecRef::Off => quote_spanned!(m=> .no_breaker()),
        });
    }
    if let Some(i) = &args.idempotent {
        let i = i.value;
        chain.extend(quote_spanned!(m=> .idempotent(#i)));
    }
    if args.fallback.is_some() {
        chain.extend(quote_spanned!(m=> .with_fallback()));
    }
    let (templates, cache) = cache_policy(args);
    chain.extend(cache);
    quote_spanned! {m=>
        #templates
        static __RESILIENT_POLICY: ::resilient::__private::Policy = #chain;
        ::resilient::__private::inventory::submit! {
            ::resilient::__private::Registration::new(&__RESILIENT_POLICY)
        }
    }
}

/// Trait-bound checks spanned at the user's return and error types, so that a return type
/// that is not a `Result`, or an error type missing an impl, is reported there with the
/// runtime's `#[diagnostic::on_unimplemented]` message.
fn type_checks(ret: &Type) -> TokenStream {
    // `impl Trait` cannot be named in a turbofish; the generic bounds on `Call` still apply.
    if contains_impl_trait(ret) {
        return TokenStream::new();
    }
    let ret_span = ret.span();
    let (err, err_span) = match result_error_type(ret) {
        Some(err) => (err.to_token_stream(), err.span()),
        None => (
            quote_spanned!(ret_span=> <#ret as ::resilient::__private::ResilientReturn>::Err),
            ret_span,
        ),
    };
    let mut checks = quote_spanned!(ret_span=> ::resilient::__private::assert_return::<#ret>(););
    checks.extend(quote_spanned!(err_span=> ::resilient::__private::assert_error::<#err>();));
    checks
}

fn contains_impl_trait(ty: &Type) -> bool {
    infer_impl_trait(ty).1
}

/// `ty` with every `impl Trait` replaced by `_`, for use in a `let`, and whether there was any.
fn infer_impl_trait(ty: &Type) -> (Type, bool) {
    struct Replace(bool);
    impl VisitMut for Replace {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(it) = ty {
                let underscore_token = syn::Token![_](it.impl_token.span);
                *ty = Type::Infer(syn::TypeInfer { underscore_token });
                self.0 = true;
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    let mut replace = Replace(false);
    replace.visit_type_mut(&mut ty);
    (ty, replace.0)
}

// ===== impl blocks =====

/// Input:
///
/// ```text
/// #[resilient]
/// impl UserRepo {
///     #[resilient(retry = 3)]
///     async fn find(&self, id: i64) -> Result<User, RepoError> { .. }
/// }
/// ```
///
/// Output: the same block with `#[resilient(retry = 3, __type = "UserRepo")]` on `find`,
/// which the method's own expansion turns into the name `UserRepo::find`. The method
/// attributes are expanded after this one, so rewriting their arguments is all it takes.
fn impl_block(args: TokenStream, mut imp: ItemImpl) -> syn::Result<TokenStream> {
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(
            args,
            "`#[resilient]` on an `impl` block takes no options\n\
             help: put the options on each method: `#[resilient(retry = 3)] async fn ..`",
        ));
    }
    let type_name = self_type_name(&imp.self_ty)?;
    for item in &mut imp.items {
        let ImplItem::Fn(method) = item else { continue };
        for attr in &mut method.attrs {
            if is_resilient(attr.path()) {
                add_type_name(&mut attr.meta, &type_name);
            }
        }
    }
    Ok(imp.into_token_stream())
}

/// `UserRepo` for `UserRepo`, `Repo<T>`, `crate::db::UserRepo` or `&UserRepo`.
fn self_type_name(ty: &Type) -> syn::Result<String> {
    let ty = match peel(ty) {
        Type::Reference(r) => peel(&r.elem),
        ty => ty,
    };
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last().expect("a path has a segment");
            Ok(last.ident.unraw().to_string())
        }
        _ => Err(syn::Error::new_spanned(
            ty,
            "`#[resilient]` on an `impl` block names operations after the self type, \
             which must be a path like `UserRepo`\n\
             help: remove it and set `name = \"..\"` on each method instead",
        )),
    }
}

/// `#[resilient]`, `#[resilient::resilient]` or `#[::resilient::resilient]`. An attribute
/// imported under another name cannot be recognised; its operation keeps the plain name.
fn is_resilient(path: &syn::Path) -> bool {
    let segments: Vec<_> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    match segments.as_slice() {
        [one] => one == "resilient" && path.leading_colon.is_none(),
        [krate, attr] => krate == "resilient" && attr == "resilient",
        _ => false,
    }
}

fn add_type_name(meta: &mut Meta, type_name: &str) {
    let name = Literal::string(type_name);
    match meta {
        Meta::Path(path) => {
            *meta = Meta::List(syn::MetaList {
                path: path.clone(),
                delimiter: syn::MacroDelimiter::Paren(syn::token::Paren::default()),
                tokens: quote!(__type = #name),
            });
        }
        Meta::List(list) => {
            let trailing_comma = list.tokens.clone().into_iter().last().is_some_and(
                |tt| matches!(tt, proc_macro2::TokenTree::Punct(p) if p.as_char() == ','),
            );
            if list.tokens.is_empty() || trailing_comma {
                list.tokens.extend(quote!(__type = #name));
            } else {
                list.tokens.extend(quote!(, __type = #name));
            }
        }
        // `#[resilient = ..]` is not valid for an attribute macro; rustc reports it.
        Meta::NameValue(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(args: TokenStream, item: TokenStream) -> String {
        attribute(args, item).unwrap().to_string()
    }

    #[test]
    fn impl_blocks_name_their_methods() {
        let out = expand(
            TokenStream::new(),
            quote! {
                impl<T> crate::Repo<T> {
                    #[resilient] async fn a(&self) -> R {}
                    #[resilient()] async fn b(&self) -> R {}
                    #[resilient(retry = 1)] async fn c(&self) -> R {}
                    #[resilient::resilient(retry = 1,)] async fn d(&self) -> R {}
                    #[other(retry = 1)] async fn e(&self) -> R {}
                }
            },
        );
        assert_eq!(out.matches("__type = \"Repo\"").count(), 4, "{out}");
        assert!(out.contains("retry = 1 , __type"), "{out}");
        assert!(
            out.contains("resilient :: resilient (retry = 1 , __type = \"Repo\")] async fn d"),
            "{out}"
        );
        assert!(out.contains("# [other (retry = 1)]"), "{out}");
    }

    #[test]
    fn self_type_names() {
        let name = |ty: Type| self_type_name(&ty).unwrap();
        assert_eq!(name(syn::parse_quote!(UserRepo)), "UserRepo");
        assert_eq!(name(syn::parse_quote!(db::Repo<'a, T>)), "Repo");
        assert_eq!(name(syn::parse_quote!(&mut r#Repo)), "Repo");
        assert!(self_type_name(&syn::parse_quote!((A, B))).is_err());
    }

    #[test]
    fn without_retries_arguments_are_used_as_they_are() {
        let out = expand(
            quote!(timeout_ms = 10),
            quote!(
                async fn f(mut x: String, (a, b): (u8, u8)) -> R {
                    BODY
                }
            ),
        );
        assert!(
            out.contains("async fn f (mut x : String , (a , b) : (u8 , u8))"),
            "{out}"
        );
        assert!(!out.contains("loop { let __resilient_admission"), "{out}");
        assert!(!out.contains("clone_for_retry"), "{out}");
    }

    #[test]
    fn with_retries_arguments_are_cloned_per_attempt() {
        let out = expand(
            quote!(retry = 1),
            quote!(
                async fn f(&self, mut x: String, (a, b): (u8, u8), r: &str) -> R {
                    BODY
                }
            ),
        );
        // `mut` moves from the parameter to the per-attempt binding; the pattern is bound
        // to a positional name and destructured per attempt.
        assert!(
            out.contains(
                "async fn f (& self , x : String , __resilient_arg1 : (u8 , u8) , r : & str)"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "let mut x = :: resilient :: __private :: CloneForRetry :: clone_for_retry (& x)"
            ),
            "{out}"
        );
        assert!(out.contains("let (a , b) = :: resilient :: __private :: CloneForRetry :: clone_for_retry (& __resilient_arg1)"), "{out}");
        assert!(!out.contains("clone_for_retry (& r)"), "{out}");
        assert!(out.contains("loop { let __resilient_admission"), "{out}");
    }

    #[test]
    fn a_cached_read_enters_the_cache_before_the_policy() {
        let out = expand(
            quote!(cache = "user:<id>:<org_id>", ttl_s = 1800, stale_s = 86400),
            quote!(
                async fn find(&self, id: i64, org_id: &str) -> Result<Option<User>, E> {
                    BODY
                }
            ),
        );
        let template = "static __RESILIENT_CACHE_KEY : :: resilient :: __private :: KeyTemplate = \
             :: resilient :: __private :: KeyTemplate :: new (\"user:<id>:<org_id>\" , \
             & [:: resilient :: __private :: Fragment :: Lit (\"user:\") , \
             :: resilient :: __private :: Fragment :: Hole (\"id\") , \
             :: resilient :: __private :: Fragment :: Lit (\":\") , \
             :: resilient :: __private :: Fragment :: Hole (\"org_id\")]) ;";
        assert!(out.contains(template), "{out}");
        assert!(
            out.contains(". cache (& __RESILIENT_CACHE_KEY) . ttl_s (1800) . stale_s (86400) ;"),
            "{out}"
        );
        assert!(
            out.contains("assert_cacheable :: < Option < User > > () ; let __resilient_rt"),
            "{out}"
        );
        let key = ":: resilient :: __private :: CacheKey :: new () . lit (\"user:\") . part (& id) \
                   . lit (\":\") . part (& org_id)";
        assert!(
            out.contains(&format!("{{ let __resilient_key = {key} ;")),
            "{out}"
        );
        assert!(
            out.contains("match match __resilient_call . cache_probe (& __resilient_key)"),
            "{out}"
        );
        assert!(
            out.contains(
                "(__resilient_load , __resilient_result , :: resilient :: __private :: is_none)"
            ),
            "{out}"
        );
        assert!(!out.contains("invalidate"), "{out}");
    }

    #[test]
    fn a_write_builds_its_keys_before_the_body() {
        let out = expand(
            quote!(
                invalidate = "user:<patch.user_id>",
                invalidate = ["org:<patch.ids.0>"]
            ),
            quote!(
                async fn update(patch: Patch) -> Result<(), E> {
                    BODY
                }
            ),
        );
        assert!(
            out.contains(
                ". invalidate (& [& __RESILIENT_INVALIDATE_0 , & __RESILIENT_INVALIDATE_1]) ;"
            ),
            "{out}"
        );
        assert!(!out.contains("invalidate_prefix"), "{out}");
        let keys = "let __resilient_invalidate = [\
             :: resilient :: __private :: CacheKey :: new () . lit (\"user:\") . part (& patch . user_id) , \
             :: resilient :: __private :: CacheKey :: new () . lit (\"org:\") . part (& patch . ids . 0)] ;";
        let at = out.find(keys).unwrap_or_else(|| panic!("{out}"));
        assert!(at < out.find("BODY").unwrap(), "{out}");
        assert!(
            out.contains(
                "__resilient_call . invalidate (& __resilient_result , & __resilient_invalidate , & []) ;"
            ),
            "{out}"
        );
        assert!(!out.contains("cache_probe"), "{out}");
    }
}
