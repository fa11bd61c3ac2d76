//! Parses the arguments of `#[resilient(key = value, ...)]` into [`Args`].
//!
//! Adding an option takes one line in `keys!`, one field in [`Args`] and one arm in
//! [`Args::parse_value`]. Checks that need only the option itself (the spelling of
//! `backoff = "..."`, `breaker = true`) happen here, where the value is read; ranges and
//! rules that relate several options live in `valid.rs`.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{ExprPath, Ident, Lit, LitBool, LitInt, LitStr, Path, Token, bracketed};

use crate::suggest::did_you_mean;
use crate::template::Template;

/// A parsed value with the span of its key and of its (first) value token, so that a rule
/// about it can point at either, or at the whole `key = value`.
#[derive(Debug, Clone)]
pub(crate) struct Spanned<T> {
    pub value: T,
    pub key: Span,
    pub span: Span,
}

/// Declares the option keywords once: `mod kw`, the [`Key`] enum, its spelling and an
/// example for error messages all come from this list.
macro_rules! keys {
    ($($kw:ident => $variant:ident $example:literal,)*) => {
        mod kw {
            $(syn::custom_keyword!($kw);)*
        }

        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Key {
            $($variant,)*
        }

        impl Key {
            const ALL: &[Key] = &[$(Key::$variant,)*];

            pub(crate) const fn as_str(self) -> &'static str {
                match self {
                    $(Key::$variant => stringify!($kw),)*
                }
            }

            /// A well-formed use of the option, quoted in error messages.
            const fn example(self) -> &'static str {
                match self {
                    $(Key::$variant => $example,)*
                }
            }

            /// Consumes the next token if it is a known key.
            fn parse_known(input: ParseStream) -> syn::Result<Option<(Key, Span)>> {
                $(
                    if input.peek(kw::$kw) {
                        let span = input.parse::<kw::$kw>()?.span;
                        return Ok(Some((Key::$variant, span)));
                    }
                )*
                Ok(None)
            }
        }
    };
}

keys! {
    retry => Retry "retry = 3",
    backoff => Backoff "backoff = \"exponential\"",
    delay_ms => DelayMs "delay_ms = 100",
    max_delay_ms => MaxDelayMs "max_delay_ms = 10000",
    jitter => Jitter "jitter = true",
    timeout_ms => TimeoutMs "timeout_ms = 5000",
    deadline_ms => DeadlineMs "deadline_ms = 20000",
    bulkhead => Bulkhead "bulkhead = \"read\"",
    breaker => Breaker "breaker = \"database\"",
    idempotent => Idempotent "idempotent = true",
    policy => Policy "policy = \"read\"",
    fallback => Fallback "fallback = Self::find_cached",
    name => Name "name = \"UserRepo::find\"",
    cache => Cache "cache = \"user:<id>\"",
    ttl_s => TtlS "ttl_s = 1800",
    stale_s => StaleS "stale_s = 86400",
    cache_capacity => CacheCapacity "cache_capacity = 10000",
    cache_none => CacheNone "cache_none = true",
    invalidate => Invalidate "invalidate = \"user:<id>\"",
    invalidate_prefix => InvalidatePrefix "invalidate_prefix = \"user:<id>:\"",
    // Added by `#[resilient]` on the enclosing `impl` block; not for users.
    __type => Type "__type = \"UserRepo\"",
}

impl Key {
    /// Keys the user may write; hidden ones are never suggested or listed.
    fn public() -> impl Iterator<Item = Key> {
        Key::ALL
            .iter()
            .copied()
            .filter(|k| !k.as_str().starts_with("__"))
    }
}

/// Everything `#[resilient(...)]` was given, one field per option.
#[derive(Debug, Default)]
pub(crate) struct Args {
    pub retry: Option<Spanned<u32>>,
    pub backoff: Option<Spanned<Backoff>>,
    pub delay_ms: Option<Spanned<u64>>,
    pub max_delay_ms: Option<Spanned<u64>>,
    pub jitter: Option<Spanned<bool>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub deadline_ms: Option<Spanned<u64>>,
    pub bulkhead: Option<Spanned<SpecRef<BuiltinBulkhead>>>,
    pub breaker: Option<Spanned<SpecRef<BuiltinBreaker>>>,
    pub idempotent: Option<Spanned<bool>>,
    pub policy: Option<Spanned<Preset>>,
    pub fallback: Option<Spanned<ExprPath>>,
    pub name: Option<Spanned<String>>,
    pub cache: Option<Spanned<Template>>,
    pub ttl_s: Option<Spanned<u64>>,
    pub stale_s: Option<Spanned<u64>>,
    pub cache_capacity: Option<Spanned<usize>>,
    pub cache_none: Option<Spanned<bool>>,
    /// Every `invalidate` template, in order: the option may be repeated.
    pub invalidate: Vec<Spanned<Template>>,
    pub invalidate_prefix: Vec<Spanned<Template>>,
    pub type_name: Option<Spanned<String>>,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = Args::default();
        while !input.is_empty() {
            let (key, key_span) = parse_key(input)?;
            if !input.peek(Token![=]) {
                return Err(syn::Error::new(
                    key_span,
                    format!("expected `=` after `{key}`, like `{}`", key.example()),
                ));
            }
            input.parse::<Token![=]>()?;
            args.parse_value(key, key_span, input)?;
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

impl Args {
    /// Reads the value of `key` into its field. The one place that maps keys to fields.
    fn parse_value(&mut self, key: Key, key_span: Span, input: ParseStream) -> syn::Result<()> {
        let at = At { key, key_span };
        match key {
            Key::Retry => at.store(&mut self.retry, input, int),
            Key::Backoff => at.store(&mut self.backoff, input, spelled),
            Key::DelayMs => at.store(&mut self.delay_ms, input, int),
            Key::MaxDelayMs => at.store(&mut self.max_delay_ms, input, int),
            Key::Jitter => at.store(&mut self.jitter, input, boolean),
            Key::TimeoutMs => at.store(&mut self.timeout_ms, input, int),
            Key::DeadlineMs => at.store(&mut self.deadline_ms, input, int),
            Key::Bulkhead => at.store(&mut self.bulkhead, input, spec_ref),
            Key::Breaker => at.store(&mut self.breaker, input, spec_ref),
            Key::Idempotent => at.store(&mut self.idempotent, input, boolean),
            Key::Policy => at.store(&mut self.policy, input, spelled),
            Key::Fallback => at.store(&mut self.fallback, input, fallback_path),
            Key::Name => at.store(&mut self.name, input, string),
            Key::Cache => at.store(&mut self.cache, input, template),
            Key::TtlS => at.store(&mut self.ttl_s, input, int),
            Key::StaleS => at.store(&mut self.stale_s, input, int),
            Key::CacheCapacity => at.store(&mut self.cache_capacity, input, int),
            Key::CacheNone => at.store(&mut self.cache_none, input, boolean),
            Key::Invalidate => at.extend(&mut self.invalidate, input),
            Key::InvalidatePrefix => at.extend(&mut self.invalidate_prefix, input),
            Key::Type => at.store(&mut self.type_name, input, string),
        }
    }
}

/// The key being parsed, passed to the value parsers for their error messages.
#[derive(Clone, Copy)]
struct At {
    key: Key,
    key_span: Span,
}

impl At {
    fn store<T>(
        self,
        slot: &mut Option<Spanned<T>>,
        input: ParseStream,
        parse: fn(At, ParseStream) -> syn::Result<T>,
    ) -> syn::Result<()> {
        if slot.is_some() {
            return Err(syn::Error::new(
                self.key_span,
                format!("duplicate option `{}`", self.key),
            ));
        }
        let span = input.span();
        let value = parse(self, input)?;
        *slot = Some(Spanned {
            value,
            key: self.key_span,
            span,
        });
        Ok(())
    }

    /// Appends one template, or a bracketed list of them: `invalidate = "a"` and
    /// `invalidate = ["a", "b"]` may be repeated and mixed.
    fn extend(self, list: &mut Vec<Spanned<Template>>, input: ParseStream) -> syn::Result<()> {
        let mut one = |input: ParseStream| {
            let span = input.span();
            let value = template(self, input)?;
            list.push(Spanned {
                value,
                key: self.key_span,
                span,
            });
            Ok(())
        };
        if !input.peek(syn::token::Bracket) {
            return one(input);
        }
        let content;
        let brackets = bracketed!(content in input);
        if content.is_empty() {
            return Err(syn::Error::new(
                brackets.span.join(),
                format!(
                    "expected at least one key template in `{} = [..]`",
                    self.key
                ),
            ));
        }
        while !content.is_empty() {
            one(&content)?;
            if content.is_empty() {
                break;
            }
            content.parse::<Token![,]>()?;
        }
        Ok(())
    }

    /// `expected {what} for `key`, found {next token}`, plus an optional help line.
    fn expected(self, input: ParseStream, what: &str) -> syn::Error {
        let found = describe_next(input);
        let mut msg = format!("expected {what} for `{}`, found {found}", self.key);
        let help = self
            .quoting_help(input)
            .unwrap_or_else(|| format!("for example `{}`", self.key.example()));
        msg.push_str("\nhelp: ");
        msg.push_str(&help);
        syn::Error::new(input.span(), msg)
    }

    /// `retry = "5"` → "remove the quotes"; `backoff = fixed` → "add quotes".
    fn quoting_help(self, input: ParseStream) -> Option<String> {
        let key = self.key;
        let wants_string =
            matches!(self.key.example().split_once(" = "), Some((_, v)) if v.starts_with('"'));
        if let Ok(s) = input.fork().parse::<LitStr>() {
            let inner = s.value();
            let plain = inner.parse::<u64>().is_ok() || inner == "true" || inner == "false";
            return (plain && !wants_string)
                .then(|| format!("remove the quotes: `{key} = {inner}`"));
        }
        if let Ok(id) = input.fork().call(Ident::parse_any) {
            return wants_string.then(|| format!("add quotes: `{key} = \"{id}\"`"));
        }
        None
    }
}

/// Parses an option name, with a "did you mean" hint for misspellings.
fn parse_key(input: ParseStream) -> syn::Result<(Key, Span)> {
    if let Some(known) = Key::parse_known(input)? {
        return Ok(known);
    }
    let Ok(ident) = input.fork().call(Ident::parse_any) else {
        return Err(syn::Error::new(
            input.span(),
            format!("expected an option name, found {}", describe_next(input)),
        ));
    };
    let typo = ident.unraw().to_string();
    let msg = if let Some(hint) = did_you_mean(&typo, Key::public().map(Key::as_str)) {
        format!("unknown option `{typo}`, did you mean `{hint}`?")
    } else {
        let all: Vec<String> = Key::public().map(|k| format!("`{k}`")).collect();
        format!(
            "unknown option `{typo}`, expected one of: {}",
            all.join(", ")
        )
    };
    Err(syn::Error::new(ident.span(), msg))
}

/// "a string literal", "`true`", "identifier `fixed`"... for "expected X, found Y".
fn describe_next(input: ParseStream) -> String {
    if input.is_empty() {
        return "nothing".to_owned();
    }
    if let Ok(lit) = input.fork().parse::<Lit>() {
        return match lit {
            Lit::Str(_) => "a string literal".to_owned(),
            Lit::Int(_) => "an integer literal".to_owned(),
            Lit::Float(_) => "a float literal".to_owned(),
            Lit::Bool(b) => format!("`{}`", b.value),
            _ => "a literal".to_owned(),
        };
    }
    if input.peek(Ident::peek_any)
        && let Ok(path) = input.fork().call(Path::parse_mod_style)
    {
        let text: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        return format!("`{}`", text.join("::"));
    }
    if input.peek(Token![-]) {
        return "a negative number".to_owned();
    }
    "an expression".to_owned()
}

// ===== value parsers =====

fn int<T>(at: At, input: ParseStream) -> syn::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    if !input.peek(LitInt) {
        return Err(at.expected(input, "an integer"));
    }
    let lit: LitInt = input.parse()?;
    lit.base10_parse().map_err(|_| {
        // A negative literal (from `macro_rules!` input) or one too large for the field.
        let ty = std::any::type_name::<T>();
        syn::Error::new(
            lit.span(),
            format!(
                "expected a non-negative integer that fits in `{ty}` for `{}`, found `{lit}`",
                at.key
            ),
        )
    })
}

fn boolean(at: At, input: ParseStream) -> syn::Result<bool> {
    if !input.peek(LitBool) {
        return Err(at.expected(input, "`true` or `false`"));
    }
    Ok(input.parse::<LitBool>()?.value)
}

fn string(at: At, input: ParseStream) -> syn::Result<String> {
    if !input.peek(LitStr) {
        return Err(at.expected(input, "a string literal"));
    }
    Ok(input.parse::<LitStr>()?.value())
}

fn template(at: At, input: ParseStream) -> syn::Result<Template> {
    if !input.peek(LitStr) {
        let what = match at.key {
            Key::Invalidate | Key::InvalidatePrefix => "a key template string or a list of them",
            _ => "a key template string",
        };
        return Err(at.expected(input, what));
    }
    Template::parse(input.parse()?, at.key)
}

fn fallback_path(at: At, input: ParseStream) -> syn::Result<ExprPath> {
    if input.peek(Lit) {
        return Err(at.expected(input, "a path to an async fn"));
    }
    input.parse()
}

/// A closed set of string values (`backoff`, `policy`, the built-in bulkheads and breakers).
pub(crate) trait Spelled: Copy + PartialEq + 'static {
    /// What the value is, for "unknown {WHAT} `"x"`".
    const WHAT: &'static str;
    const ALL: &'static [(&'static str, Self)];

    fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("", |(s, _)| s)
    }

    /// Extra guidance appended after an unknown value (custom bulkheads, breakers).
    fn note() -> Option<&'static str> {
        None
    }

    /// Maps a string literal to a value; unknown spellings get a hint.
    fn from_lit(lit: &LitStr) -> syn::Result<Self> {
        let text = lit.value();
        if let Some((_, v)) = Self::ALL.iter().find(|(s, _)| *s == text) {
            return Ok(*v);
        }
        let names = Self::ALL.iter().map(|(s, _)| *s);
        let mut msg = match did_you_mean(&text, names.clone()) {
            Some(hint) => format!(
                "unknown {} `\"{text}\"`, did you mean `\"{hint}\"`?",
                Self::WHAT
            ),
            None => format!(
                "unknown {} `\"{text}\"`, expected {}",
                Self::WHAT,
                one_of(names)
            ),
        };
        if let Some(note) = Self::note() {
            msg.push_str("\nnote: ");
            msg.push_str(note);
        }
        Err(syn::Error::new(lit.span(), msg))
    }
}

/// `"a"`, `"a"` or `"b"`, `"a"`, `"b"` or `"c"`.
fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = names.map(|n| format!("`\"{n}\"`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn spelled<T: Spelled>(at: At, input: ParseStream) -> syn::Result<T> {
    if !input.peek(LitStr) {
        return Err(at.expected(input, "a string literal"));
    }
    T::from_lit(&input.parse()?)
}

/// Declares a fieldless enum with its attribute spellings.
macro_rules! spelled_enum {
    ($(#[$doc:meta])* $name:ident ($what:literal) { $($variant:ident = $text:literal,)* } $(note = $note:expr)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name {
            $($variant,)*
        }

        impl Spelled for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [(&'static str, Self)] = &[$(($text, $name::$variant),)*];

            $(fn note() -> Option<&'static str> {
                Some($note)
            })?
        }
    };
}

spelled_enum! {
    /// `backoff = "..."`.
    Backoff ("backoff") {
        Exponential = "exponential",
        Fixed = "fixed",
        None = "none",
    }
}

spelled_enum! {
    /// `policy = "..."`: a preset of the runtime's `Policy::preset`.
    Preset ("policy preset") {
        Read = "read",
        Write = "write",
        Report = "report",
    }
}

spelled_enum! {
    /// The built-in bulkheads, named by string.
    BuiltinBulkhead ("built-in bulkhead") {
        Read = "read",
        Write = "write",
        Report = "report",
    }
    note = "only the built-in bulkheads are strings; custom bulkheads are declared as \
            `static NAME: resilient::bulkhead::BulkheadSpec = BulkheadSpec::new(\"name\", max_concurrent, max_queue);` \
            and referenced by path: `bulkhead = NAME`"
}

spelled_enum! {
    /// The built-in breakers, named by string.
    BuiltinBreaker ("built-in breaker") {
        Database = "database",
    }
    note = "only the built-in breaker is a string; custom breakers are declared as \
            `static NAME: resilient::breaker::BreakerSpec = BreakerSpec::new(\"name\");` \
            and referenced by path: `breaker = NAME`"
}

/// `bulkhead = ...` / `breaker = ...`: a built-in by string, a custom `static` by path, or off.
#[derive(Debug, Clone)]
pub(crate) enum SpecRef<B> {
    Builtin(B),
    Custom(Path),
    Off,
}

fn spec_ref<B: Spelled>(at: At, input: ParseStream) -> syn::Result<SpecRef<B>> {
    let key = at.key;
    if input.peek(LitStr) {
        return B::from_lit(&input.parse()?).map(SpecRef::Builtin);
    }
    if input.peek(LitBool) {
        let lit: LitBool = input.parse()?;
        if !lit.value {
            return Ok(SpecRef::Off);
        }
        let default = match key {
            Key::Breaker => "the `\"database\"` breaker is on by default, so omit `breaker`, ",
            _ => "",
        };
        return Err(syn::Error::new(
            lit.span,
            format!(
                "expected a {key} name or `false`, found `true`\n\
                 help: {default}name a built-in (`{}`) or a custom static (`{key} = NAME`), \
                 or turn it off with `{key} = false`",
                key.example()
            ),
        ));
    }
    if !input.peek(Ident::peek_any) && !input.peek(Token![::]) {
        return Err(at.expected(input, "a string literal, a path or `false`"));
    }
    let path = input.call(Path::parse_mod_style)?;
    // `bulkhead = write` almost certainly means the built-in: statics are UPPER_CASE.
    if let Some(ident) = path.get_ident() {
        let text = ident.to_string();
        if B::ALL.iter().any(|(s, _)| *s == text) {
            return Err(syn::Error::new(
                ident.span(),
                format!(
                    "built-in {key}s are named by string, found path `{text}`\n\
                     help: add quotes: `{key} = \"{text}\"`"
                ),
            ));
        }
    }
    Ok(SpecRef::Custom(path))
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(tokens: &str) -> syn::Result<Args> {
        syn::parse_str(tokens)
    }

    fn error(tokens: &str) -> String {
        parse(tokens).expect_err(tokens).to_string()
    }

    #[test]
    fn every_key_parses() {
        let args = parse(
            r#"retry = 3, backoff = "fixed", delay_ms = 10, max_delay_ms = 20, jitter = false,
               timeout_ms = 100, deadline_ms = 1_000, bulkhead = crate::EXPORTS,
               breaker = false, idempotent = true, policy = "write",
               fallback = Self::cached, name = "x", __type = "Repo","#,
        )
        .unwrap();
        assert_eq!(args.retry.map(|r| r.value), Some(3));
        assert_eq!(args.backoff.map(|b| b.value), Some(Backoff::Fixed));
        assert_eq!(args.deadline_ms.map(|d| d.value), Some(1_000));
        assert!(matches!(
            args.bulkhead.map(|b| b.value),
            Some(SpecRef::Custom(_))
        ));
        assert!(matches!(args.breaker.map(|b| b.value), Some(SpecRef::Off)));
        assert_eq!(args.policy.map(|p| p.value), Some(Preset::Write));
        assert_eq!(args.type_name.map(|t| t.value).as_deref(), Some("Repo"));
    }

    #[test]
    fn every_key_has_a_field() {
        // `Args::parse_value` is exhaustive over `Key`; this catches a key whose example
        // does not parse, which would make its error messages misleading.
        for key in Key::ALL {
            parse(key.example()).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }

    #[test]
    fn cache_keys_parse() {
        let args = parse(
            r#"cache = "user:<id>", ttl_s = 1800, stale_s = 86400, cache_capacity = 500,
               cache_none = true"#,
        )
        .unwrap();
        assert_eq!(
            args.cache.map(|c| c.value.text()).as_deref(),
            Some("user:<id>")
        );
        assert_eq!(args.ttl_s.map(|t| t.value), Some(1800));
        assert_eq!(args.stale_s.map(|t| t.value), Some(86400));
        assert_eq!(args.cache_capacity.map(|t| t.value), Some(500));
        assert_eq!(args.cache_none.map(|t| t.value), Some(true));
    }

    #[test]
    fn invalidate_is_repeatable_and_takes_lists() {
        let args = parse(
            r#"invalidate = "a:<x>", invalidate = ["b:<x>", "c:<x>",], invalidate_prefix = "d:",
               invalidate_prefix = ["e:<x>:"]"#,
        )
        .unwrap();
        let texts = |list: &[Spanned<Template>]| -> Vec<String> {
            list.iter().map(|t| t.value.text()).collect()
        };
        assert_eq!(texts(&args.invalidate), ["a:<x>", "b:<x>", "c:<x>"]);
        assert_eq!(texts(&args.invalidate_prefix), ["d:", "e:<x>:"]);
        assert!(error("invalidate = []").starts_with("expected at least one key template"));
        assert!(error("invalidate = [1]").starts_with("expected a key template string or a list"));
        assert!(error("invalidate = [\"a\" \"b\"]").starts_with("expected `,`"));
        assert!(error("cache = user").contains("add quotes: `cache = \"user\"`"));
    }

    #[test]
    fn every_single_valued_key_rejects_a_duplicate() {
        for key in Key::ALL {
            if matches!(key, Key::Invalidate | Key::InvalidatePrefix) {
                continue;
            }
            let example = key.example();
            assert_eq!(
                error(&format!("{example}, {example}")),
                format!("duplicate option `{key}`"),
            );
        }
    }

    #[test]
    fn hidden_keys_are_never_suggested() {
        assert!(!error("colour = 1").contains("__type"));
        assert!(error("_type = 1").starts_with("unknown option `_type`, expected one of"));
    }

    #[test]
    fn value_errors() {
        assert_eq!(error("retry = 1, retry = 2"), "duplicate option `retry`");
        assert!(error("jitter = \"true\"").contains("remove the quotes: `jitter = true`"));
        assert!(error("backoff = fixed").contains("add quotes: `backoff = \"fixed\"`"));
        assert!(error("policy = \"Read\"").contains("did you mean `\"read\"`?"));
        // rustc tokenizes `-1` as `-` and `1`; proc-macro2's fallback lexer as one literal.
        assert!(error("timeout_ms = -1").contains("non-negative integer"));
        assert!(error("retry = 99999999999").contains("fits in `u32`"));
        assert!(error("bulkhead = 3").starts_with("expected a string literal, a path or `false`"));
    }
}
