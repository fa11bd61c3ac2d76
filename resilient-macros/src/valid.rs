//! Checks an [`Operation`] before expansion. Only reads the model; every error points at
//! the option or the part of the signature that is wrong. Expansion may then assume that
//! the options are consistent.

use crate::ast::{Operation, Source, defaults};
use crate::attr::{Args, Backoff, Key, Spanned, Spelled};
use proc_macro2::{Ident, TokenStream, TokenTree};

pub(crate) fn validate(op: &Operation) -> syn::Result<()> {
    signature(op)?;
    ranges(op.args)?;
    retry_settings(op)?;
    delays(op.args)?;
    deadline(op)?;
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

/// Tokens spanning `key = value`, for `syn::Error::new_spanned`, which underlines from the
/// first token to the last.
fn whole<T>(opt: &Spanned<T>) -> TokenStream {
    [opt.key, opt.span]
        .into_iter()
        .map(|span| TokenTree::Ident(Ident::new("x", span)))
        .collect()
}
