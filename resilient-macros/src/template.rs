//! Cache key templates: `"user:<id>:<org_id>"` split into literal text and placeholders.
//!
//! Only the template's own syntax is checked here; whether a placeholder names a
//! parameter is a rule of `valid.rs`. `<` and `>` are reserved for placeholders: there is
//! no escape, since keys are opaque bytes and no template needs them as text.

use syn::ext::IdentExt;
use syn::{Ident, LitStr, Member};

use crate::attr::Key;

/// A parsed template. Literal fragments are never empty, and never adjacent: the runtime
/// compares templates fragment by fragment to match invalidations with cached keys.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    /// The literal as written, for spans and for the template's text.
    pub lit: LitStr,
    pub fragments: Vec<Fragment>,
}

#[derive(Debug, Clone)]
pub(crate) enum Fragment {
    Lit(String),
    Hole(Hole),
}

/// A placeholder: a parameter, then field accesses (`<patch.user_id>`, `<pair.0>`).
#[derive(Debug, Clone)]
pub(crate) struct Hole {
    /// The text between the brackets.
    pub text: String,
    /// The parameter's name, without `r#`.
    pub param: String,
    pub fields: Vec<Member>,
}

impl Template {
    /// Parses the template of option `key`. Errors point at the literal: stable Rust
    /// cannot point inside it.
    pub(crate) fn parse(lit: LitStr, key: Key) -> syn::Result<Template> {
        let text = lit.value();
        let error = |msg: String| {
            syn::Error::new(
                lit.span(),
                format!("{msg}\nnote: `<` and `>` are reserved for placeholders"),
            )
        };
        if text.is_empty() {
            return Err(syn::Error::new(
                lit.span(),
                format!(
                    "empty key template for `{key}`\nhelp: for example `{key} = \"user:<id>\"`"
                ),
            ));
        }
        let mut fragments = Vec::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let Some(at) = rest.find(['<', '>']) else {
                fragments.push(Fragment::Lit(rest.to_owned()));
                break;
            };
            if rest.as_bytes()[at] == b'>' {
                return Err(error(format!(
                    "unmatched `>` in key template `{text}`: placeholders are written `<name>`"
                )));
            }
            if at > 0 {
                fragments.push(Fragment::Lit(rest[..at].to_owned()));
            }
            let inner = &rest[at + 1..];
            let Some(end) = inner
                .find(['<', '>'])
                .filter(|&e| inner.as_bytes()[e] == b'>')
            else {
                return Err(error(format!(
                    "unclosed placeholder in key template `{text}`: `<` has no matching `>`"
                )));
            };
            let hole = &inner[..end];
            if hole.is_empty() {
                return Err(error(format!(
                    "empty placeholder `<>` in key template `{text}`\n\
                     help: name a parameter, like `<id>`"
                )));
            }
            fragments.push(Fragment::Hole(Hole::parse(hole).ok_or_else(|| {
                syn::Error::new(
                    lit.span(),
                    format!(
                        "invalid placeholder `<{hole}>` in key template `{text}`: expected a \
                         parameter name or a field path such as `<user.id>`"
                    ),
                )
            })?));
            rest = &inner[end + 1..];
        }
        Ok(Template { lit, fragments })
    }

    pub(crate) fn text(&self) -> String {
        self.lit.value()
    }

    pub(crate) fn holes(&self) -> impl Iterator<Item = &Hole> {
        self.fragments.iter().filter_map(|f| match f {
            Fragment::Hole(h) => Some(h),
            Fragment::Lit(_) => None,
        })
    }
}

impl Hole {
    /// `id`, `r#type`, `user.id` or `pair.0`; `None` for anything else (spaces included).
    fn parse(text: &str) -> Option<Hole> {
        if text.contains(char::is_whitespace) {
            return None;
        }
        let mut segments = text.split('.');
        let head = match segments.next()? {
            // Not an `Ident` to syn; valid.rs rejects it with a message of its own.
            "self" => "self".to_owned(),
            head => syn::parse_str::<Ident>(head).ok()?.unraw().to_string(),
        };
        let fields = segments
            .map(|s| syn::parse_str::<Member>(s).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Hole {
            text: text.to_owned(),
            param: head,
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> syn::Result<Template> {
        Template::parse(
            LitStr::new(text, proc_macro2::Span::call_site()),
            Key::Cache,
        )
    }

    fn shape(text: &str) -> Vec<String> {
        parse(text)
            .unwrap()
            .fragments
            .iter()
            .map(|f| match f {
                Fragment::Lit(l) => format!("lit {l}"),
                Fragment::Hole(h) => format!("hole {} {}", h.param, h.fields.len()),
            })
            .collect()
    }

    fn error(text: &str) -> String {
        parse(text).expect_err(text).to_string()
    }

    #[test]
    fn fragments() {
        assert_eq!(
            shape("user:<id>:<org_id>"),
            ["lit user:", "hole id 0", "lit :", "hole org_id 0"]
        );
        assert_eq!(shape("<a><b>"), ["hole a 0", "hole b 0"]);
        assert_eq!(shape("projects"), ["lit projects"]);
        assert_eq!(
            shape("user:<patch.user_id>:"),
            ["lit user:", "hole patch 1", "lit :"]
        );
        assert_eq!(shape("<pair.0>"), ["hole pair 1"]);
        assert_eq!(shape("<r#type>"), ["hole type 0"]);
        assert_eq!(shape("<self.id>"), ["hole self 1"]);
    }

    #[test]
    fn malformed() {
        assert!(error("").starts_with("empty key template for `cache`"));
        assert!(error("user:<id").starts_with("unclosed placeholder"));
        assert!(error("user:<id<org>>").starts_with("unclosed placeholder"));
        assert!(error("user:id>").starts_with("unmatched `>`"));
        assert!(error("user:<>").starts_with("empty placeholder `<>`"));
        for bad in [
            "<user id>",
            "<user.>",
            "<.id>",
            "<1>",
            "<a-b>",
            "<user.id()>",
            "<fn>",
        ] {
            assert!(error(bad).starts_with("invalid placeholder"), "{bad}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Text with no `<` or `>`.
        fn literal() -> impl Strategy<Value = String> {
            "[a-z:/_ .-]{1,6}"
        }

        /// A placeholder's text: a parameter, maybe followed by field accesses.
        fn hole() -> impl Strategy<Value = String> {
            (
                "[a-z][a-z0-9_]{0,5}",
                proptest::collection::vec("[a-z][a-z0-9_]{0,3}|[0-9]", 0..3),
            )
                .prop_filter("not a keyword", |(head, fields)| {
                    syn::parse_str::<Ident>(head).is_ok()
                        && fields.iter().all(|f| syn::parse_str::<Member>(f).is_ok())
                })
                .prop_map(|(head, fields)| {
                    std::iter::once(head)
                        .chain(fields)
                        .collect::<Vec<_>>()
                        .join(".")
                })
        }

        proptest! {
            #[test]
            fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
                let _ = parse(&text);
            }

            #[test]
            fn arbitrary_brackets_never_panic(text in "[<>a.b0 ]{0,20}") {
                let _ = parse(&text);
            }

            #[test]
            fn well_formed_templates_round_trip(
                parts in proptest::collection::vec((proptest::option::of(literal()), hole()), 1..5),
                tail in proptest::option::of(literal()),
            ) {
                let mut text = String::new();
                for (lit, hole) in &parts {
                    text.push_str(lit.as_deref().unwrap_or(""));
                    text.push('<');
                    text.push_str(hole);
                    text.push('>');
                }
                text.push_str(tail.as_deref().unwrap_or(""));
                let template = parse(&text).expect("well formed");
                let mut rebuilt = String::new();
                let mut previous_literal = false;
                for f in &template.fragments {
                    match f {
                        Fragment::Lit(l) => {
                            prop_assert!(!l.is_empty(), "empty literal in {text}");
                            prop_assert!(!previous_literal, "adjacent literals in {text}");
                            previous_literal = true;
                            rebuilt.push_str(l);
                        }
                        Fragment::Hole(h) => {
                            previous_literal = false;
                            rebuilt.push('<');
                            rebuilt.push_str(&h.text);
                            rebuilt.push('>');
                        }
                    }
                }
                prop_assert_eq!(rebuilt, text);
                prop_assert_eq!(template.holes().count(), parts.len());
            }
        }
    }
}
