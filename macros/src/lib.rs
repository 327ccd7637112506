//! Procedural macros for [`multipool`](https://docs.rs/multipool):
//! `#[multipool::main]` and `#[multipool::test]`.
//!
//! Do not depend on this crate directly; use the re-exports in `multipool`
//! (enabled by its default `macros` feature).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{Delimiter, Group, Ident, Literal, Span, TokenStream as TokenStream2, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{braced, AttrStyle, Attribute, Expr, Lit, Path, Signature, Visibility};

/// Runs an `async fn` on a multi-threaded multipool runtime.
///
/// The function is rewritten into a synchronous function with the same name,
/// attributes, visibility and return type. Its body builds a
/// `multipool::Runtime` and drives the original `async` body to completion
/// with `Runtime::block_on`, returning whatever the body returns. The runtime
/// is shut down when the function returns.
///
/// This is meant for `async fn main`, but other functions may use it too;
/// their arguments are moved into the `async` body.
///
/// # Options
///
/// * `workers = N`: the number of worker threads, an integer literal greater
///   than zero. Defaults to the `Builder` default (the available parallelism).
/// * `start_paused = true|false`: whether the runtime starts with its clock
///   paused (`Builder::start_paused`, see `multipool::time::pause`). Needs
///   multipool's `test-util` feature, e.g.
///   `multipool = { version = "0.3", features = ["test-util"] }` under
///   `[dev-dependencies]`. Without it, compilation fails with errors
///   pointing at `start_paused` that note the missing `test-util` feature.
/// * `tokio` (or `tokio = true|false`): gives every worker thread and the
///   `block_on` a tokio context for their whole life, so `tokio::net`,
///   `tokio::time` and `tokio::spawn` work in every task; expands to
///   `multipool_compat::tokio::BuilderExt::enable_tokio`. The crate must
///   depend on `multipool-compat` with its `tokio` feature.
/// * `crate = "path"`: the path to the `multipool` crate, for crates that
///   re-export it under another name. Defaults to `::multipool`.
/// * `compat = "path"`: the path to the `multipool-compat` crate, for the
///   `tokio` option. Defaults to `::multipool_compat`.
///
/// # Examples
///
/// ```
/// #[multipool::main]
/// async fn main() {
///     let answer = multipool::spawn(async { 6 * 7 }).await.unwrap();
///     assert_eq!(answer, 42);
/// }
/// ```
///
/// Any return type works, including `Result` with `?` in the body:
///
/// ```
/// use std::error::Error;
///
/// #[multipool::main(workers = 2)]
/// async fn main() -> Result<(), Box<dyn Error>> {
///     let n: u32 = "42".parse()?;
///     assert_eq!(n, 42);
///     Ok(())
/// }
/// ```
///
/// Through a re-export:
///
/// ```
/// mod support {
///     pub use multipool as rt;
/// }
///
/// #[support::rt::main(crate = "support::rt")]
/// async fn main() {}
/// ```
///
/// The expansion of `#[multipool::main(workers = 2)]` is roughly:
///
/// ```
/// fn main() {
///     let body = async move { /* the original body */ };
///     return ::multipool::Runtime::builder()
///         .workers(2)
///         .build()
///         .expect("failed to build the multipool runtime")
///         .block_on(body);
/// }
/// ```
// The last example shows an expansion, so its `fn main` is the point.
#[allow(clippy::needless_doctest_main)]
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry(Kind::Main, args.into(), item.into()).into()
}

/// Runs an `async fn` test on a multi-threaded multipool runtime.
///
/// Like [`macro@main`], but the generated function is also marked
/// `#[test]`, so it must not carry a `#[test]` attribute of its own. Each
/// test gets its own runtime, shut down when the test returns. Other
/// attributes such as `#[should_panic]` or `#[ignore]` are kept.
///
/// # Options
///
/// * `workers = N`: the number of worker threads, an integer literal greater
///   than zero. Defaults to the `Builder` default (the available parallelism).
/// * `start_paused = true|false`: whether the runtime starts with its clock
///   paused (`Builder::start_paused`, see `multipool::time::pause`). Needs
///   multipool's `test-util` feature, e.g.
///   `multipool = { version = "0.3", features = ["test-util"] }` under
///   `[dev-dependencies]`. Without it, compilation fails with errors
///   pointing at `start_paused` that note the missing `test-util` feature.
/// * `tokio` (or `tokio = true|false`): gives every worker thread and the
///   `block_on` a tokio context for their whole life, so `tokio::net`,
///   `tokio::time` and `tokio::spawn` work in every task; expands to
///   `multipool_compat::tokio::BuilderExt::enable_tokio`. The crate must
///   depend on `multipool-compat` with its `tokio` feature.
/// * `crate = "path"`: the path to the `multipool` crate, for crates that
///   re-export it under another name. Defaults to `::multipool`.
/// * `compat = "path"`: the path to the `multipool-compat` crate, for the
///   `tokio` option. Defaults to `::multipool_compat`.
///
/// # Examples
///
/// ```
/// #[multipool::test]
/// async fn spawned_tasks_finish() {
///     let task = multipool::spawn(async { 1 + 1 });
///     assert_eq!(task.await.unwrap(), 2);
/// }
///
/// #[multipool::test(workers = 1)]
/// async fn returns_result() -> Result<(), String> {
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// With paused time, sleeping advances the clock instantly once every task
/// is idle (needs the `test-util` feature):
///
/// ```ignore
/// use std::time::Duration;
///
/// #[multipool::test(start_paused = true)]
/// async fn an_hour_passes_at_once() {
///     let start = multipool::time::now();
///     multipool::time::sleep(Duration::from_secs(3600)).await;
///     assert_eq!(multipool::time::now() - start, Duration::from_secs(3600));
/// }
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    entry(Kind::Test, args.into(), item.into()).into()
}

/// Which attribute is being expanded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Main,
    Test,
}

impl Kind {
    /// The options this attribute accepts, in the order error messages list
    /// them. Adding an option means adding its name here, a field to
    /// [`Config`] and one arm to the `match` in [`Config::parse`].
    fn options(self) -> &'static [&'static str] {
        match self {
            Kind::Main => &["workers", "start_paused", "tokio", "crate", "compat"],
            Kind::Test => &["workers", "start_paused", "tokio", "crate", "compat"],
        }
    }

    fn attr_name(self) -> &'static str {
        match self {
            Kind::Main => "`#[multipool::main]`",
            Kind::Test => "`#[multipool::test]`",
        }
    }
}

/// The parsed attribute arguments. Every option is `None` when not given.
#[derive(Default)]
struct Config {
    /// `workers = N`: the literal's value and span.
    workers: Option<(usize, Span)>,
    /// `start_paused = true|false`: the value, and the span of the option's
    /// name, at which a missing `Builder::start_paused` (no `test-util`
    /// feature) is reported.
    start_paused: Option<(bool, Span)>,
    /// `tokio` or `tokio = true|false`: the value, and the span of the
    /// option's name, at which a missing `multipool-compat` is reported.
    tokio: Option<(bool, Span)>,
    /// `crate = "path"`.
    crate_path: Option<Path>,
    /// `compat = "path"`: the value and the option's span.
    compat_path: Option<(Path, Span)>,
}

impl Config {
    /// Parses the attribute arguments. Errors are collected in `errors` so
    /// that all of them are reported at once; the options that parsed are
    /// still returned, so the caller can expand as closely as possible to
    /// what the user wrote.
    fn parse(kind: Kind, args: TokenStream2, errors: &mut Errors) -> Config {
        let mut config = Config::default();
        let mut seen = Vec::new();
        let parser = syn::meta::parser(|meta| {
            let name = path_to_string(&meta.path);
            if !kind.options().contains(&name.as_str()) {
                let expected: Vec<String> =
                    kind.options().iter().map(|o| format!("`{o}`")).collect();
                errors.push(syn::Error::new_spanned(
                    &meta.path,
                    format!(
                        "unknown option `{name}`, expected one of: {}",
                        expected.join(", ")
                    ),
                ));
                return skip_value(&meta);
            }
            if seen.contains(&name) {
                skip_value(&meta)?;
                errors.push(meta.error(format!("`{name}` set multiple times")));
                return Ok(());
            }
            seen.push(name.clone());
            // One arm per option.
            match name.as_str() {
                "workers" => set_value(&mut config.workers, &meta, errors, workers_value),
                "start_paused" => set_value(&mut config.start_paused, &meta, errors, |expr| {
                    bool_value("start_paused", expr, meta.path.span())
                }),
                "tokio" => {
                    let span = meta.path.span();
                    if meta.input.is_empty() || meta.input.peek(syn::Token![,]) {
                        config.tokio = Some((true, span));
                        Ok(())
                    } else {
                        set_value(&mut config.tokio, &meta, errors, |expr| {
                            bool_value("tokio", expr, span)
                        })
                    }
                }
                "crate" => set_value(&mut config.crate_path, &meta, errors, |expr| {
                    path_value("crate", "my_crate::multipool", expr)
                }),
                "compat" => {
                    let span = meta.path.span();
                    set_value(&mut config.compat_path, &meta, errors, |expr| {
                        path_value("compat", "my_crate::multipool_compat", expr)
                            .map(|path| (path, span))
                    })
                }
                _ => unreachable!("`Kind::options` lists `{name}`, which has no arm here"),
            }
        });
        if let Err(e) = parser.parse2(args) {
            errors.push(e);
        }
        if let Some((_, span)) = &config.compat_path {
            if !matches!(config.tokio, Some((true, _))) {
                errors.push(syn::Error::new(
                    *span,
                    "`compat` only applies to the `tokio` option, which is not set",
                ));
            }
        }
        config
    }
}

/// Parses `= <expr>` after an option name, validates the expression and
/// stores the result in `slot`. Validation errors are recorded in `errors` so
/// that parsing can go on; only malformed syntax stops it.
fn set_value<T>(
    slot: &mut Option<T>,
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    validate: impl FnOnce(&Expr) -> syn::Result<T>,
) -> syn::Result<()> {
    let expr: Expr = meta.value()?.parse()?;
    match validate(&expr) {
        Ok(value) => *slot = Some(value),
        Err(e) => errors.push(e),
    }
    Ok(())
}

/// Consumes whatever follows an option name (`= expr` or `(...)`) without
/// looking at it, so that parsing can continue with the next option.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<Group>()?;
    }
    Ok(())
}

fn workers_value(expr: &Expr) -> syn::Result<(usize, Span)> {
    if let Expr::Lit(syn::ExprLit {
        lit: Lit::Int(lit), ..
    }) = expr
    {
        if let Ok(n @ 1..) = lit.base10_parse::<usize>() {
            return Ok((n, lit.span()));
        }
    }
    Err(syn::Error::new_spanned(
        expr,
        "`workers` must be an integer literal greater than zero",
    ))
}

fn bool_value(option: &str, expr: &Expr, name_span: Span) -> syn::Result<(bool, Span)> {
    if let Expr::Lit(syn::ExprLit {
        lit: Lit::Bool(lit),
        ..
    }) = expr
    {
        return Ok((lit.value, name_span));
    }
    Err(syn::Error::new_spanned(
        expr,
        format!("`{option}` must be `true` or `false`"),
    ))
}

fn path_value(option: &str, example: &str, expr: &Expr) -> syn::Result<Path> {
    if let Expr::Lit(syn::ExprLit {
        lit: Lit::Str(lit), ..
    }) = expr
    {
        if let Ok(path) = lit.parse::<Path>() {
            return Ok(path);
        }
    }
    Err(syn::Error::new_spanned(
        expr,
        format!(
            "`{option}` must be a string literal containing a path, e.g. `{option} = \"{example}\"`"
        ),
    ))
}

fn path_to_string(path: &Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    segments.join("::")
}

/// Collects errors so that several can be reported from one expansion.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(e) => e.combine(error),
            None => self.0 = Some(error),
        }
    }
}

/// An `fn` item whose body is kept as raw tokens: it is not parsed (faster,
/// and immune to syntax `syn` does not know yet) and keeps its spans.
struct ItemFn {
    attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    brace_span: Span,
    body: TokenStream2,
    /// The spans of the first and last tokens of the body's last statement
    /// (or tail expression): rustc reports a mismatched return type there,
    /// so the generated code that returns the body's value is spanned there.
    last_stmt: Option<(Span, Span)>,
}

impl Parse for ItemFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let content;
        let brace = braced!(content in input);
        // Inner attributes (`#![...]`) are not allowed in an `async` block;
        // on a function body they mean the same as outer attributes.
        attrs.extend(
            content
                .call(Attribute::parse_inner)?
                .into_iter()
                .map(|attr| Attribute {
                    style: AttrStyle::Outer,
                    ..attr
                }),
        );
        // Split the body at top-level `;` only, without parsing it, to find
        // the last statement.
        let mut body = TokenStream2::new();
        let mut last_stmt = None;
        let mut stmt_start = None;
        while !content.is_empty() {
            let token: TokenTree = content.parse()?;
            let span = token.span();
            let start = *stmt_start.get_or_insert(span);
            last_stmt = Some((start, span));
            if matches!(&token, TokenTree::Punct(p) if p.as_char() == ';') {
                stmt_start = None;
            }
            body.extend([token]);
        }
        Ok(ItemFn {
            attrs,
            vis,
            sig,
            brace_span: brace.span.join(),
            body,
            last_stmt,
        })
    }
}

fn entry(kind: Kind, args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let mut input: ItemFn = match syn::parse2(item.clone()) {
        Ok(input) => input,
        Err(e) => {
            let e = match syn::parse2::<syn::Item>(item.clone()) {
                Ok(syn::Item::Fn(_)) | Err(_) => e,
                Ok(other) => syn::Error::new_spanned(
                    other,
                    format!("{} can only be applied to an `async fn`", kind.attr_name()),
                ),
            };
            // Nothing to rewrite: keep the item as it is, after the error.
            let error = e.into_compile_error();
            return quote!(#error #item);
        }
    };

    let mut errors = Errors::default();
    let config = Config::parse(kind, args, &mut errors);
    if input.sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            input.sig.fn_token,
            "the `async` keyword is missing from the function declaration",
        ));
    }
    match kind {
        Kind::Main if input.sig.ident == "main" && !input.sig.inputs.is_empty() => {
            errors.push(syn::Error::new_spanned(
                &input.sig.inputs,
                "the main function cannot accept arguments",
            ));
        }
        Kind::Main => {}
        Kind::Test => {
            if !input.sig.inputs.is_empty() {
                errors.push(syn::Error::new_spanned(
                    &input.sig.inputs,
                    "the test function cannot accept arguments",
                ));
            }
            if let Some(attr) = input.attrs.iter().find(|a| is_test_attribute(a)) {
                errors.push(syn::Error::new_spanned(
                    attr,
                    "a second test attribute is supplied; `#[multipool::test]` already marks \
                     the function as a test, remove this attribute",
                ));
            }
        }
    }

    match errors.0 {
        None => expand(kind, input, &config, true),
        Some(e) => {
            // Still expand to something as close as possible to the intended
            // output (so IDEs keep working), but with the error first and
            // without `#[test]`, which would only add errors of its own.
            let error = e.into_compile_error();
            input.attrs.retain(|a| !is_test_attribute(a));
            let expanded = expand(kind, input, &config, false);
            quote!(#error #expanded)
        }
    }
}

/// Whether `attr` is `#[test]` (or one of the prelude paths it resolves to).
fn is_test_attribute(attr: &Attribute) -> bool {
    let path = attr.path();
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    match segments.as_slice() {
        [test] => test == "test" && path.leading_colon.is_none(),
        [krate, prelude, _edition, test] => {
            (krate == "core" || krate == "std") && prelude == "prelude" && test == "test"
        }
        _ => false,
    }
}

fn expand(kind: Kind, input: ItemFn, config: &Config, mark_test: bool) -> TokenStream2 {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        brace_span,
        body,
        last_stmt,
    } = input;
    sig.asyncness = None;

    // The code that builds the runtime and returns the body's output is
    // spanned at the body's last statement, so that a mismatched return type
    // is reported there (as for a plain `fn`) and not at the attribute.
    let (start, end) = last_stmt.unwrap_or((brace_span, brace_span));
    let crate_path = match &config.crate_path {
        Some(path) => path.to_token_stream(),
        None => quote_spanned!(Span::call_site().located_at(start)=> ::multipool),
    };
    let workers = config.workers.map(|(n, span)| {
        let mut lit = Literal::usize_unsuffixed(n);
        lit.set_span(span);
        quote_spanned!(start=> .workers(#lit))
    });
    // `Builder::start_paused` only exists with multipool's `test-util`
    // feature. Without it, rustc's "no method named `start_paused`" error
    // (pointing at the option's name) says "private field, not a method",
    // which is misleading. So the expansion also names `time::pause`, an
    // item behind the same feature: rustc then reports, first, that it was
    // configured out and is "gated behind the `test-util` feature". With the
    // feature, that is an unused function item and costs nothing.
    let (start_paused, needs_test_util) = config
        .start_paused
        .map(|(paused, span)| {
            let method = Ident::new("start_paused", span);
            let pause = Ident::new("pause", span);
            (
                quote_spanned!(start=> .#method(#paused)),
                quote_spanned!(start=> let _ = #crate_path::time::#pause;),
            )
        })
        .unzip();
    let mut builder =
        quote_spanned!(start=> #crate_path::Runtime::builder() #workers #start_paused);
    if let Some((true, span)) = config.tokio {
        // Spanned at the option, so that a missing `multipool-compat`
        // dependency (or feature) is reported there.
        let compat = match &config.compat_path {
            Some((path, _)) => path.to_token_stream(),
            None => quote_spanned!(span=> ::multipool_compat),
        };
        let enable = Ident::new("enable_tokio", span);
        builder = quote_spanned!(span=> #compat::tokio::BuilderExt::#enable(#builder));
    }
    let run = quote_spanned! {end=>
        #[allow(
            clippy::expect_used,
            clippy::needless_return,
            clippy::diverging_sub_expression,
            clippy::unwrap_in_result
        )]
        {
            #needs_test_util
            return #builder
                .build()
                .expect("failed to build the multipool runtime")
                .block_on(body);
        }
    };
    let test_attr = (kind == Kind::Test && mark_test).then(|| quote!(#[::core::prelude::v1::test]));

    // Like `let body = async move { ... };` but keeping the braces' span.
    let mut block = Group::new(Delimiter::Brace, body);
    block.set_span(brace_span);
    quote! {
        #test_attr
        #(#attrs)*
        #vis #sig {
            let body = async move #block;
            #run
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{entry, is_test_attribute, path_to_string, Config, Errors, Kind};
    use proc_macro2::TokenStream as TokenStream2;
    use quote::quote;
    use syn::Attribute;

    fn config(kind: Kind, args: TokenStream2) -> (Config, Vec<String>) {
        let mut errors = Errors::default();
        let config = Config::parse(kind, args, &mut errors);
        let messages = errors.0.into_iter().flatten().map(|e| e.to_string());
        (config, messages.collect())
    }

    #[test]
    fn parses_every_option() {
        let (config, errors) = config(
            Kind::Main,
            quote!(workers = 3, start_paused = true, crate = "a::b"),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(config.workers.map(|(n, _)| n), Some(3));
        assert_eq!(config.start_paused.map(|(p, _)| p), Some(true));
        let path = config.crate_path.expect("crate path");
        assert_eq!(path_to_string(&path), "a::b");
    }

    #[test]
    fn no_arguments_means_defaults() {
        let (config, errors) = config(Kind::Test, TokenStream2::new());
        assert!(errors.is_empty(), "{errors:?}");
        assert!(config.workers.is_none() && config.crate_path.is_none());
        assert!(config.start_paused.is_none());
    }

    #[test]
    fn reports_every_bad_option() {
        let (config, errors) = config(
            Kind::Test,
            quote!(
                workers = 0,
                threads = 4,
                workers = 2,
                crate = 1,
                workers = "x"
            ),
        );
        assert_eq!(
            errors,
            [
                "`workers` must be an integer literal greater than zero",
                "unknown option `threads`, expected one of: `workers`, `start_paused`, `tokio`, \
                 `crate`, `compat`",
                "`workers` set multiple times",
                "`crate` must be a string literal containing a path, \
                 e.g. `crate = \"my_crate::multipool\"`",
                "`workers` set multiple times",
            ]
        );
        // A repeated option does not override the first occurrence.
        assert!(config.workers.is_none());
    }

    #[test]
    fn rejects_workers_that_are_not_positive_integer_literals() {
        for args in [
            quote!(workers = 0),
            quote!(workers = -1),
            quote!(workers = "2"),
            quote!(workers = N),
            quote!(workers = 99999999999999999999999999),
        ] {
            let (_, errors) = config(Kind::Main, args);
            assert_eq!(
                errors,
                ["`workers` must be an integer literal greater than zero"]
            );
        }
    }

    #[test]
    fn start_paused_takes_a_bool_literal_once() {
        let (parsed, errors) = config(Kind::Test, quote!(start_paused = false));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(parsed.start_paused.map(|(p, _)| p), Some(false));
        for args in [
            quote!(start_paused = 1),
            quote!(start_paused = "true"),
            quote!(start_paused = yes),
            quote!(start_paused = !false),
        ] {
            let (parsed, errors) = config(Kind::Test, args);
            assert_eq!(errors, ["`start_paused` must be `true` or `false`"]);
            assert!(parsed.start_paused.is_none());
        }
        let (parsed, errors) = config(
            Kind::Main,
            quote!(start_paused = true, start_paused = false),
        );
        assert_eq!(errors, ["`start_paused` set multiple times"]);
        assert_eq!(parsed.start_paused.map(|(p, _)| p), Some(true));
    }

    #[test]
    fn start_paused_calls_the_builder_method() {
        for (args, call) in [
            (quote!(start_paused = true), ". start_paused (true)"),
            (quote!(start_paused = false), ". start_paused (false)"),
        ] {
            let out = entry(
                Kind::Test,
                args,
                quote!(
                    async fn t() {}
                ),
            )
            .to_string();
            assert!(out.contains(call), "{out}");
        }
        let out = entry(
            Kind::Test,
            quote!(),
            quote!(
                async fn t() {}
            ),
        )
        .to_string();
        assert!(!out.contains("start_paused"), "{out}");
    }

    #[test]
    fn tokio_is_a_flag_or_a_bool() {
        for (args, expected) in [
            (quote!(tokio), Some(true)),
            (quote!(tokio, workers = 2), Some(true)),
            (quote!(tokio = true), Some(true)),
            (quote!(tokio = false), Some(false)),
            (quote!(workers = 2), None),
        ] {
            let (parsed, errors) = config(Kind::Main, args);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(parsed.tokio.map(|(t, _)| t), expected);
        }
        let (_, errors) = config(Kind::Test, quote!(tokio = "yes"));
        assert_eq!(errors, ["`tokio` must be `true` or `false`"]);
    }

    #[test]
    fn tokio_calls_enable_tokio_through_the_compat_path() {
        let expand = |args| {
            entry(
                Kind::Main,
                args,
                quote!(
                    async fn main() {}
                ),
            )
            .to_string()
        };
        let out = expand(quote!(tokio));
        assert!(
            out.contains(":: multipool_compat :: tokio :: BuilderExt :: enable_tokio"),
            "{out}"
        );
        let out = expand(quote!(tokio, compat = "my::compat"));
        assert!(
            out.contains("my :: compat :: tokio :: BuilderExt :: enable_tokio"),
            "{out}"
        );
        for args in [quote!(), quote!(tokio = false)] {
            let out = expand(args);
            assert!(!out.contains("enable_tokio"), "{out}");
        }
    }

    #[test]
    fn compat_needs_tokio_and_a_path() {
        let (_, errors) = config(Kind::Main, quote!(compat = "a::b"));
        assert_eq!(
            errors,
            ["`compat` only applies to the `tokio` option, which is not set"]
        );
        let (parsed, errors) = config(Kind::Main, quote!(tokio, compat = 3));
        assert_eq!(
            errors,
            ["`compat` must be a string literal containing a path, \
              e.g. `compat = \"my_crate::multipool_compat\"`"]
        );
        assert!(parsed.compat_path.is_none());
    }

    #[test]
    fn recognises_test_attributes() {
        let test_attrs: Vec<Attribute> = syn::parse_quote! {
            #[test]
            #[::core::prelude::v1::test]
            #[std::prelude::rust_2021::test]
        };
        assert!(test_attrs.iter().all(is_test_attribute));
        let other: Vec<Attribute> = syn::parse_quote! {
            #[tests]
            #[multipool::test]
            #[should_panic]
        };
        assert!(!other.iter().any(is_test_attribute));
    }

    #[test]
    fn test_expansion_is_marked_test_once() {
        let out = entry(
            Kind::Test,
            quote!(),
            quote!(
                async fn t() {}
            ),
        )
        .to_string();
        assert_eq!(out.matches("test").count(), 1, "{out}");
        assert!(out.contains(":: core :: prelude :: v1 :: test"), "{out}");
        assert!(!out.contains("async fn"), "{out}");
    }

    #[test]
    fn an_error_comes_first_and_the_function_is_still_emitted() {
        let out = entry(
            Kind::Test,
            quote!(),
            quote!(
                fn t(x: u8) {}
            ),
        )
        .to_string();
        assert!(out.starts_with(":: core :: compile_error !"), "{out}");
        assert!(out.contains("fn t (x : u8)"), "{out}");
        assert!(!out.contains("prelude"), "no #[test] on error: {out}");
    }
}
