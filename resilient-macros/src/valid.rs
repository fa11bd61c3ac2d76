//! Checks an [`Operation`] before expansion. Only reads the model; every error points at
//! the option or the part of the signature that is wrong. Expansion may then assume that
//! the options are consistent.

use crate::ast::{Binding, Operation, Source, defaults, returns_option};
use crate::attr::{Args, Backoff, Key, Spanned, Spelled};
use crate::suggest::did_you_mean;
use crate::template::{Hole, Template};
use proc_macro2::{Ident, TokenStream, TokenTree};
use syn::ext::IdentExt;

pub(crate) fn validate(op: &Operation) -> syn::Result<()> {
    signature(op)?;
    ranges(op.args)?;
    retry_settings(op)?;
    delays(op.args)?;
    deadline(op)?;
    cache_settings(op)?;
    templates(op)?;
    Ok(())
}

fn signature(op: &Operation) -> syn::Result<()> {
    let sig = &op.func.item.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span,
            "`#[resilient]` can only be applied to an `async fn`",
        ));
    }
    if op.func.output().is_none() {
        // Type-level checks cover a return type that is not a `Result`; a missing one is
        // caught here because there is no type to point at.
        return Err(syn::Error::new_spanned(
            sig,
            "`#[resilient]` requires the function to return `Result<T, E>`, \
             where `E: From<resilient::Rejection> + resilient::Classify`",
        ));
    }
    Ok(())
}

fn ranges(args: &Args) -> syn::Result<()> {
    if let Some(retry) = args
        .retry
        .as_ref()
        .filter(|r| r.value > defaults::MAX_RETRY)
    {
        return Err(syn::Error::new(
            retry.span,
            format!(
                "`retry` must be at most {}, found {}",
                defaults::MAX_RETRY,
                retry.value
            ),
        ));
    }
    for (key, opt) in [
        (Key::TimeoutMs, &args.timeout_ms),
        (Key::DeadlineMs, &args.deadline_ms),
    ] {
        if let Some(opt) = opt.as_ref().filter(|o| o.value == 0) {
            return Err(syn::Error::new(
                opt.span,
                format!("`{key}` must be greater than 0"),
            ));
        }
    }
    if let Some(ttl) = args.ttl_s.as_ref().filter(|t| t.value == 0) {
        return Err(syn::Error::new(
            ttl.span,
            "`ttl_s` must be greater than 0\nhelp: to not cache, remove `cache`",
        ));
    }
    if let Some(cap) = args.cache_capacity.as_ref().filter(|c| c.value == 0) {
        return Err(syn::Error::new(
            cap.span,
            "`cache_capacity` must be greater than 0",
        ));
    }
    if let Some(name) = args.name.as_ref().filter(|n| n.value.is_empty()) {
        return Err(syn::Error::new(name.span, "`name` must not be empty"));
    }
    Ok(())
}

/// Backoff settings are rejected where they can have no effect, so that a policy never
/// reads as stricter or gentler than it is.
fn retry_settings(op: &Operation) -> syn::Result<()> {
    let args = op.args;
    let settings = [
        (Key::Backoff, args.backoff.as_ref().map(whole)),
        (Key::DelayMs, args.delay_ms.as_ref().map(whole)),
        (Key::MaxDelayMs, args.max_delay_ms.as_ref().map(whole)),
        (Key::Jitter, args.jitter.as_ref().map(whole)),
    ];
    let (retry, source) = op.retry();
    if retry == 0 {
        let why = match source {
            Source::Explicit => "with `retry = 0`".to_owned(),
            Source::Preset(p) => format!(
                "because the `\"{}\"` policy does not retry\nhelp: set `retry = N` to retry",
                p.as_str()
            ),
            Source::Default => {
                "without `retry`\nhelp: add `retry = N` to retry up to N times".to_owned()
            }
        };
        if let Some((key, Some(opt))) = settings.iter().find(|(_, set)| set.is_some()) {
            return Err(syn::Error::new_spanned(
                opt,
                format!("`{key}` has no effect {why}"),
            ));
        }
    }
    if let Some(backoff) = args.backoff.as_ref().filter(|b| b.value == Backoff::None)
        && let Some((key, Some(opt))) = settings[1..].iter().find(|(_, set)| set.is_some())
    {
        return Err(syn::Error::new_spanned(
            opt,
            format!(
                "`{key}` has no effect with `backoff = \"{}\"`",
                backoff.value.as_str()
            ),
        ));
    }
    Ok(())
}

fn delays(args: &Args) -> syn::Result<()> {
    let delay = args
        .delay_ms
        .as_ref()
        .map_or(defaults::DELAY_MS, |d| d.value);
    if let Some(max) = &args.max_delay_ms {
        if max.value < delay {
            let of = if args.delay_ms.is_some() {
                format!("`delay_ms` ({delay})")
            } else {
                format!("the default `delay_ms` ({delay})")
            };
            return Err(syn::Error::new_spanned(
                whole(max),
                format!("`max_delay_ms` ({}) is less than {of}", max.value),
            ));
        }
    } else if let Some(d) = args
        .delay_ms
        .as_ref()
        .filter(|d| d.value > defaults::MAX_DELAY_MS)
    {
        return Err(syn::Error::new_spanned(
            whole(d),
            format!(
                "`delay_ms` ({}) is more than the default `max_delay_ms` ({}), which caps every delay\n\
                 help: set `max_delay_ms` too",
                d.value,
                defaults::MAX_DELAY_MS
            ),
        ));
    }
    Ok(())
}

fn deadline(op: &Operation) -> syn::Result<()> {
    let Some(deadline) = &op.args.deadline_ms else {
        return Ok(());
    };
    let (timeout, source) = op.timeout_ms();
    if deadline.value >= timeout {
        return Ok(());
    }
    let of = match source {
        Source::Explicit => format!("`timeout_ms` ({timeout})"),
        Source::Preset(p) => format!(
            "the per-attempt timeout of the `\"{}\"` policy ({timeout} ms)",
            p.as_str()
        ),
        Source::Default => format!("the default per-attempt timeout ({timeout} ms)"),
    };
    let mut msg = format!(
        "`deadline_ms` ({}) is less than {of}, so no attempt could run to its timeout",
        deadline.value
    );
    if !matches!(source, Source::Explicit) {
        msg.push_str("\nhelp: set `timeout_ms` to at most ");
        msg.push_str(&deadline.value.to_string());
    }
    Err(syn::Error::new_spanned(whole(deadline), msg))
}

/// Cache settings need a cache, and a method either reads through a cache or
/// invalidates one.
fn cache_settings(op: &Operation) -> syn::Result<()> {
    let args = op.args;
    let Some(cache) = &args.cache else {
        let settings = [
            (Key::TtlS, args.ttl_s.as_ref().map(whole)),
            (Key::StaleS, args.stale_s.as_ref().map(whole)),
            (Key::CacheCapacity, args.cache_capacity.as_ref().map(whole)),
            (Key::CacheNone, args.cache_none.as_ref().map(whole)),
        ];
        if let Some((key, Some(opt))) = settings.iter().find(|(_, set)| set.is_some()) {
            return Err(syn::Error::new_spanned(
                opt,
                format!(
                    "`{key}` has no effect without `cache`\n\
                     help: add a key template, like `cache = \"user:<id>\"`"
                ),
            ));
        }
        return Ok(());
    };
    if let Some(inv) = args.invalidate.first().or(args.invalidate_prefix.first()) {
        let key = if args.invalidate.is_empty() {
            Key::InvalidatePrefix
        } else {
            Key::Invalidate
        };
        return Err(syn::Error::new(
            inv.key,
            format!(
                "`{key}` and `cache` cannot be used on the same function: a read caches, \
                 a write invalidates\n\
                 help: invalidate `{}` from the functions that change it",
                cache.value.text()
            ),
        ));
    }
    if let Some(none) = &args.cache_none
        && let Some(ret) = op.func.output()
        && !returns_option(ret)
    {
        return Err(syn::Error::new_spanned(
            whole(none),
            "`cache_none` has no effect: the cached type is not an `Option`\n\
             note: `Ok(None)` is recognised when the signature spells the `Ok` type \
             `Option<..>`, as in `Result<Option<User>, E>`",
        ));
    }
    Ok(())
}

/// Every placeholder names a parameter; an `invalidate` template is not listed twice.
fn templates(op: &Operation) -> syn::Result<()> {
    let args = op.args;
    let all = args
        .cache
        .iter()
        .map(|t| (Key::Cache, t))
        .chain(args.invalidate.iter().map(|t| (Key::Invalidate, t)))
        .chain(
            args.invalidate_prefix
                .iter()
                .map(|t| (Key::InvalidatePrefix, t)),
        );
    for (key, template) in all {
        for hole in template.value.holes() {
            placeholder(op, key, &template.value, hole)?;
        }
    }
    for (key, list) in [
        (Key::Invalidate, &args.invalidate),
        (Key::InvalidatePrefix, &args.invalidate_prefix),
    ] {
        for (i, t) in list.iter().enumerate() {
            let text = t.value.text();
            if list[..i].iter().any(|earlier| earlier.value.text() == text) {
                return Err(syn::Error::new(
                    t.span,
                    format!("`{key}` lists `\"{text}\"` twice"),
                ));
            }
        }
    }
    Ok(())
}

fn placeholder(op: &Operation, key: Key, template: &Template, hole: &Hole) -> syn::Result<()> {
    let span = template.lit.span();
    let text = &hole.text;
    if hole.param == "self" {
        return Err(syn::Error::new(
            span,
            format!(
                "placeholder `<{text}>` in `{key}` refers to `self`: keys are built from \
                 the parameters only\n\
                 help: take the value as a parameter and name that"
            ),
        ));
    }
    let params: Vec<String> = op
        .func
        .params
        .iter()
        .filter_map(|p| match &p.binding {
            Binding::Ident { ident, .. } => Some(ident.unraw().to_string()),
            Binding::Wild | Binding::Pattern => None,
        })
        .collect();
    if params.contains(&hole.param) {
        return Ok(());
    }
    let func = op.func.item.sig.ident.unraw();
    let mut msg = format!("placeholder `<{text}>` in `{key}` names no parameter of `{func}`");
    if let Some(hint) = did_you_mean(&hole.param, params.iter().map(String::as_str)) {
        let fixed = match text.split_once('.') {
            Some((_, fields)) => format!("{hint}.{fields}"),
            None => hint.to_owned(),
        };
        msg.push_str(&format!(", did you mean `<{fixed}>`?"));
    } else if params.is_empty() {
        msg.push_str(&format!(": `{func}` has no named parameters"));
    } else {
        let list: Vec<String> = params.iter().map(|p| format!("`{p}`")).collect();
        msg.push_str(&format!("; its parameters are {}", list.join(", ")));
    }
    Err(syn::Error::new(span, msg))
}

/// Tokens spanning `key = value`, for `syn::Error::new_spanned`, which underlines from the
/// first token to the last.
fn whole<T>(opt: &Spanned<T>) -> TokenStream {
    [opt.key, opt.span]
        .into_iter()
        .map(|span| TokenTree::Ident(Ident::new("x", span)))
        .collect()
}
