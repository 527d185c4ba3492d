//! `${VAR}` interpolation, in two steps around the YAML parser.
//!
//! The README's style, `config: {key_file: ${KEY}}`, is not valid YAML as written: in a flow
//! mapping `{` and `}` end a plain scalar. So before parsing, each `${...}` is swapped for a
//! placeholder that is an ordinary scalar character run (two Unicode noncharacters around an
//! index). After parsing, placeholders in keys and string values are replaced by the
//! variables' values. A value therefore never passes through the parser and cannot add YAML
//! structure: `}`, `,`, `:` or a newline in it stay in the one scalar.
//!
//! A `${` with no `}` on its line is left as written, and the parsed scalar that holds it is
//! reported with its key path. Variables are looked up only when their scalar is reached, so
//! one in a comment is never needed.

use crate::error::{Error, Result};

/// Opens and closes a placeholder. Noncharacters are never in a config file by intent, and
/// their presence is refused, so a placeholder cannot be forged by the text.
const OPEN: char = '\u{FDD0}';
const CLOSE: char = '\u{FDD1}';

/// The `${...}` expressions of a text, by placeholder index.
pub(crate) struct Expressions(Vec<String>);

/// `text` with each `${...}` replaced by a placeholder, and the expressions replaced.
pub(crate) fn hide(text: &str) -> Result<(String, Expressions)> {
    if text.contains(OPEN) || text.contains(CLOSE) {
        return Err(Error::config(
            "the config contains the Unicode noncharacter U+FDD0 or U+FDD1, which sealbox \
             reserves; remove it",
        ));
    }
    let mut out = String::with_capacity(text.len());
    let mut exprs = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(r) = after.strip_prefix("$${") {
            // Kept for the second step, which turns it into a literal `${`.
            out.push_str("$${");
            rest = r;
        } else if let Some(r) = after.strip_prefix("${")
            && let Some(end) = r.find(['}', '\n']).filter(|e| r.as_bytes()[*e] == b'}')
        {
            let expr = &r[..end];
            // Same width as `${expr}` when the index fits, so parser columns stay right.
            let width = expr.chars().count() + 1;
            out.push(OPEN);
            out.push_str(&format!("{:0width$}", exprs.len()));
            out.push(CLOSE);
            exprs.push(expr.to_owned());
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok((out, Expressions(exprs)))
}

#[cfg(test)]
impl Expressions {
    /// None (for text that never went through [`hide`]).
    pub(crate) fn none() -> Expressions {
        Expressions(Vec::new())
    }
}

fn push_key(path: &mut String, key: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
    len
}

fn needs_expanding(s: &str) -> bool {
    s.contains('$') || s.contains(OPEN)
}

fn key_text(k: &serde_norway::Value) -> std::borrow::Cow<'_, str> {
    match k {
        serde_norway::Value::String(s) => s.as_str().into(),
        other => serde_norway::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into())
            .into(),
    }
}

/// Replaces placeholders, `${VAR}` and `$${` in every key and string value of `value`.
pub(crate) fn interpolate(
    value: &mut serde_norway::Value,
    path: &mut String,
    exprs: &Expressions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<()> {
    use serde_norway::Value;
    match value {
        Value::String(s) => {
            if needs_expanding(s) {
                *s = expand(s, path, exprs, env)?;
            }
            Ok(())
        }
        Value::Mapping(m) => {
            if !m
                .keys()
                .any(|k| matches!(k, Value::String(s) if needs_expanding(s)))
            {
                for (k, v) in m.iter_mut() {
                    let len = push_key(path, &key_text(k));
                    interpolate(v, path, exprs, env)?;
                    path.truncate(len);
                }
                return Ok(());
            }
            // A key changes: the mapping is rebuilt, in order, refusing keys that collide.
            let old = std::mem::take(m);
            for (mut k, mut v) in old {
                if let Value::String(s) = &mut k
                    && needs_expanding(s)
                {
                    *s = expand(s, path, exprs, env)?;
                }
                let len = push_key(path, &key_text(&k));
                if m.contains_key(&k) {
                    return Err(Error::config(format!(
                        "{path}: this key appears twice once variables are replaced"
                    )));
                }
                interpolate(&mut v, path, exprs, env)?;
                path.truncate(len);
                m.insert(k, v);
            }
            Ok(())
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate(v, path, exprs, env)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Tagged(t) => interpolate(&mut t.value, path, exprs, env),
        _ => Ok(()),
    }
}

/// One scalar: placeholders and `${...}` become values, `$${` a literal `${`. Values are
/// copied in as they are, never scanned again.
pub(crate) fn expand(
    s: &str,
    path: &str,
    exprs: &Expressions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String> {
    let at = if path.is_empty() { "(top level)" } else { path };
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['$', OPEN]) {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(r) = after.strip_prefix(OPEN) {
            let end = r
                .find(CLOSE)
                .ok_or_else(|| Error::internal("config placeholder without its end"))?;
            let expr = r[..end]
                .parse::<usize>()
                .ok()
                .and_then(|n| exprs.0.get(n))
                .ok_or_else(|| Error::internal("config placeholder with a bad index"))?;
            out.push_str(&resolve(expr, at, env)?);
            rest = &r[end + CLOSE.len_utf8()..];
        } else if let Some(r) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = r;
        } else if let Some(r) = after.strip_prefix("${") {
            let end = r.find('}').ok_or_else(|| {
                Error::config(format!("{at}: unterminated ${{ in value (missing '}}')"))
            })?;
            out.push_str(&resolve(&r[..end], at, env)?);
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `NAME` or `NAME:-default`.
fn resolve(expr: &str, at: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let (name, default) = match expr.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (expr, None),
    };
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(Error::config(format!(
            "{at}: ${{{name}}} is not a valid environment variable name"
        )));
    }
    match (env(name), default) {
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_owned()),
        (None, None) => Err(Error::config(format!(
            "{at}: environment variable {name} is not set"
        ))),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An environment of the given variables, for the config module's tests too.
    pub(in crate::config) fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn through_both_steps(s: &str, e: &dyn Fn(&str) -> Option<String>) -> Result<String> {
        let (hidden, exprs) = hide(s)?;
        expand(&hidden, "k", &exprs, e)
    }

    #[test]
    fn expands_variables_defaults_and_escapes() {
        let e = env(&[("A", "1"), ("B", "two"), ("C", "${A}")]);
        for run in [
            &|s: &str| expand(s, "k", &Expressions::none(), &e) as Result<String>,
            &|s: &str| through_both_steps(s, &e),
        ] as [&dyn Fn(&str) -> Result<String>; 2]
        {
            assert_eq!(run("x${A}y${B}").unwrap(), "x1ytwo");
            assert_eq!(
                run("${C:-dflt}").unwrap(),
                "${A}",
                "values are not rescanned"
            );
            assert_eq!(run("${D:-dflt}").unwrap(), "dflt");
            assert_eq!(run("$${A} costs $5").unwrap(), "${A} costs $5");
            assert_eq!(run("$$${A}").unwrap(), "$${A}");
            assert!(run("${A").is_err());
            assert!(run("${1A}").is_err());
        }
        let err = expand(
            "${MISSING}",
            "stores.main.config.role_id",
            &Expressions::none(),
            &e,
        )
        .unwrap_err();
        assert_eq!(
            err.message(),
            "stores.main.config.role_id: environment variable MISSING is not set"
        );
    }

    #[test]
    fn placeholders_keep_the_width_of_what_they_replace() {
        let (hidden, _) = hide("a: {k: ${KEY}, j: ${J}}").unwrap();
        assert_eq!(
            hidden.chars().count(),
            "a: {k: ${KEY}, j: ${J}}".chars().count()
        );
        assert!(hide("a: \u{FDD0}").is_err());
    }
}
