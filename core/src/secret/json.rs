//! Fields out of a JSON object secret, without copying the document anywhere.
//!
//! `serde_json` parses the locked bytes in place, once however many fields are asked for.
//! Only the requested fields' values are
//! materialised, straight into a new locked buffer: borrowed from the document when it has no
//! escapes, from `serde_json`'s scratch buffer when it has (a documented limit), or formatted
//! there for numbers and booleans. Every other value is skipped with `IgnoredAny`, which scans
//! without copying. Errors never carry `serde_json`'s text, which can quote the input.

use std::cell::Cell;
use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use zeroize::Zeroize;

use super::{Secret, SecretString};
use crate::error::{Error, ErrorKind, Result};
use crate::memory::{LockedBuf, MemoryPolicy};

/// Longest JSON spelling of an `i64`, `u64` or `f64` (`-1.7976931348623157e308` is 23 bytes).
const NUMBER_CAPACITY: usize = 32;

/// Reads the top-level field `field` of the JSON object in `json`.
pub(super) fn field(json: &[u8], field: &str, policy: MemoryPolicy) -> Result<SecretString> {
    let mut found = fields(json, &[field], policy)?;
    found
        .pop()
        .ok_or_else(|| Error::internal("a one-field read returned no field"))
}

/// Reads the top-level fields `wanted` of the JSON object in `json` in one parse, each into
/// its own locked buffer, in the order asked. A missing field is [`ErrorKind::NotFound`]
/// naming the first one missing; no field is returned unless all are found.
pub(super) fn fields(
    json: &[u8],
    wanted: &[&str],
    policy: MemoryPolicy,
) -> Result<Vec<SecretString>> {
    if wanted.is_empty() {
        return Err(Error::invalid_input("ask for at least one JSON field"));
    }
    for (i, f) in wanted.iter().enumerate() {
        if wanted[..i].contains(f) {
            return Err(Error::invalid_input(format!(
                "the JSON field `{f}` is asked for twice"
            )));
        }
    }
    // Decide "is it an object" ourselves: for any other top-level value `serde_json` would
    // build an "invalid type" error that quotes the value into an unprotected heap string.
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(Error::invalid_input(
            "the secret is not a JSON object, so it has no fields",
        ));
    }

    let failure = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(json);
    let parsed = de.deserialize_map(ObjectVisitor {
        wanted,
        policy,
        failure: &failure,
    });
    let found = match parsed {
        Ok(found) => found,
        Err(e) => return Err(failure.take().unwrap_or_else(|| not_json(&e))),
    };
    // Trailing garbage makes the whole document invalid; `found` is wiped as it drops.
    de.end().map_err(|e| not_json(&e))?;
    if let Some(i) = found.iter().position(Option::is_none) {
        let missing = wanted[i];
        return Err(Error::not_found(format!(
            "the JSON secret has no field `{missing}`"
        )));
    }
    Ok(found.into_iter().flatten().collect())
}

/// A parse error by position only: `serde_json`'s message may quote the input.
fn not_json(e: &serde_json::Error) -> Error {
    Error::invalid_input(format!(
        "the secret is not valid JSON (line {}, column {})",
        e.line(),
        e.column()
    ))
}

/// Walks the top-level object, keeping the value of each wanted field (the last one if it
/// repeats).
struct ObjectVisitor<'a> {
    wanted: &'a [&'a str],
    policy: MemoryPolicy,
    /// Our own typed error, when a visitor had to stop the parse for a reason other than syntax.
    failure: &'a Cell<Option<Error>>,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Vec<Option<SecretString>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found: Vec<Option<SecretString>> = self.wanted.iter().map(|_| None).collect();
        while let Some(index) = map.next_key_seed(KeyIn(self.wanted))? {
            match index {
                Some(i) => {
                    // A repeated key replaces (and so wipes) the earlier value.
                    found[i] = Some(map.next_value_seed(FieldValue {
                        field: self.wanted[i],
                        policy: self.policy,
                        failure: self.failure,
                    })?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// Finds a key among the wanted field names without keeping it.
struct KeyIn<'a>(&'a [&'a str]);

impl<'de> DeserializeSeed<'de> for KeyIn<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIn<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|f| *f == key))
    }
}

/// Copies the wanted value into locked memory.
struct FieldValue<'a> {
    field: &'a str,
    policy: MemoryPolicy,
    failure: &'a Cell<Option<Error>>,
}

impl FieldValue<'_> {
    /// Stops the parse with our own error; `field` picks it up from `failure`.
    fn fail<E: de::Error>(&self, error: Error) -> E {
        self.failure.set(Some(error));
        E::custom("field value rejected")
    }

    fn not_scalar<E: de::Error>(&self, what: &str) -> E {
        self.fail(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the JSON field `{}` is {what}, not a string, number or boolean",
                self.field
            ),
        ))
    }

    fn copy<E: de::Error>(&self, bytes: &[u8]) -> Result<SecretString, E> {
        let mut buf = LockedBuf::alloc(bytes.len(), self.policy).map_err(|e| self.fail(e))?;
        buf.as_mut_slice().copy_from_slice(bytes);
        // The bytes came from a `str`: valid UTF-8.
        Ok(SecretString {
            inner: Secret { buf },
        })
    }

    fn number<E: de::Error>(&self, n: fmt::Arguments<'_>) -> Result<SecretString, E> {
        let buf = LockedBuf::alloc(NUMBER_CAPACITY, self.policy).map_err(|e| self.fail(e))?;
        let mut w = LockedWriter { buf, len: 0 };
        if w.write_fmt(n).is_err() {
            return Err(self.fail(Error::internal(
                "a JSON number did not fit its locked buffer",
            )));
        }
        let LockedWriter { mut buf, len } = w;
        buf.truncate(len);
        // Digits, signs, '.', 'e' and "inf"/"NaN" are ASCII: valid UTF-8.
        Ok(SecretString {
            inner: Secret { buf },
        })
    }
}

impl<'de> DeserializeSeed<'de> for FieldValue<'_> {
    type Value = SecretString;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<SecretString, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldValue<'_> {
    type Value = SecretString;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<SecretString, E> {
        self.copy(v.as_bytes())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretString, E> {
        self.copy(v.as_bytes())
    }

    fn visit_string<E: de::Error>(self, mut v: String) -> Result<SecretString, E> {
        let copied = self.copy(v.as_bytes());
        v.zeroize();
        copied
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<SecretString, E> {
        self.copy(if v { b"true" } else { b"false" })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SecretString, E> {
        self.number(format_args!("{v}"))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SecretString, E> {
        self.number(format_args!("{v}"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<SecretString, E> {
        // `Debug` is the shortest round-trip spelling and keeps an exponent for huge values
        // (`1e300`), where `Display` would print 301 digits.
        self.number(format_args!("{v:?}"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<SecretString, E> {
        Err(self.not_scalar("null"))
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<SecretString, A::Error> {
        Err(self.not_scalar("an object"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _seq: A) -> Result<SecretString, A::Error> {
        Err(self.not_scalar("an array"))
    }
}

/// `fmt::Write` straight into a locked buffer, so a formatted number is never assembled in a
/// heap `String`.
struct LockedWriter {
    buf: LockedBuf,
    len: usize,
}

impl fmt::Write for LockedWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self
            .buf
            .as_mut_slice()
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    const DB: &str = r#"{"username":"app","password":"s3cr3t-pw","host":"db.internal","port":5432,"tls":true,"ratio":1.5,"neg":-7,"big":1e300,"none":null,"tags":["a"],"opts":{"x":1}}"#;

    fn get(json: &str, f: &str) -> Result<String> {
        field(json.as_bytes(), f, MemoryPolicy::BestEffort).map(|s| s.expose_secret().to_owned())
    }

    #[test]
    fn strings_numbers_and_booleans_come_back_in_json_spelling() {
        assert_eq!(get(DB, "username").unwrap(), "app");
        assert_eq!(get(DB, "password").unwrap(), "s3cr3t-pw");
        assert_eq!(get(DB, "host").unwrap(), "db.internal");
        assert_eq!(get(DB, "port").unwrap(), "5432");
        assert_eq!(get(DB, "tls").unwrap(), "true");
        assert_eq!(get(DB, "ratio").unwrap(), "1.5");
        assert_eq!(get(DB, "neg").unwrap(), "-7");
        assert_eq!(get(DB, "big").unwrap(), "1e300");
        assert_eq!(
            get(r#"{"min":-9223372036854775808}"#, "min").unwrap(),
            "-9223372036854775808"
        );
        assert_eq!(
            get(r#"{"f":-1.7976931348623157e308}"#, "f").unwrap(),
            "-1.7976931348623157e308"
        );
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        assert_eq!(
            get(r#"{"p":"a\"b\\c\u00e9\n"}"#, "p").unwrap(),
            "a\"b\\c\u{e9}\n"
        );
        assert_eq!(get(r#"{"p\u0061ss":"x"}"#, "pass").unwrap(), "x");
        assert_eq!(get(r#"{"p":""}"#, "p").unwrap(), "");
    }

    #[test]
    fn whitespace_and_the_last_of_repeated_keys_are_handled() {
        assert_eq!(
            get(" \n{ \"a\" : \"1\" , \"a\":\"2\" }\n", "a").unwrap(),
            "2"
        );
    }

    #[test]
    fn a_missing_field_is_not_found_and_names_the_field() {
        let e = get(DB, "token").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("`token`"));
    }

    fn get_all(json: &str, wanted: &[&str]) -> Result<Vec<String>> {
        fields(json.as_bytes(), wanted, MemoryPolicy::BestEffort).map(|v| {
            v.iter()
                .map(|s| s.expose_secret().to_owned())
                .collect::<Vec<_>>()
        })
    }

    #[test]
    fn several_fields_come_back_in_the_order_asked() {
        assert_eq!(
            get_all(DB, &["port", "username", "password", "host"]).unwrap(),
            ["5432", "app", "s3cr3t-pw", "db.internal"]
        );
    }

    #[test]
    fn one_missing_field_fails_the_whole_read_and_is_named() {
        let e = get_all(DB, &["username", "token", "password"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("`token`"), "{e}");
        assert!(!format!("{e} {e:?}").contains("s3cr3t"), "{e:?}");
    }

    #[test]
    fn no_fields_or_a_field_asked_twice_is_invalid_input() {
        assert_eq!(
            get_all(DB, &[]).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let e = get_all(DB, &["host", "port", "host"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("`host`"), "{e}");
    }

    #[test]
    fn a_non_scalar_among_several_is_invalid_input_naming_it() {
        let e = get_all(DB, &["password", "opts"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("`opts`"), "{e}");
    }

    #[test]
    fn null_objects_and_arrays_are_invalid_input() {
        for f in ["none", "tags", "opts"] {
            assert_eq!(
                get(DB, f).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{f}"
            );
        }
    }

    #[test]
    fn non_objects_and_broken_json_are_invalid_input_without_quoting_it() {
        for doc in [
            r#""hunter2-value""#,
            r#"["hunter2-value"]"#,
            "hunter2-value",
            "",
            r#"{"password":"hunter2-value""#,
            r#"{"password":"hunter2-value"} trailing-hunter2-value"#,
            r#"{"password":hunter2-value}"#,
            r#"{"password":"hunter2-value",}"#,
        ] {
            let e = get(doc, "password").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{doc}");
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(std::error::Error::source(&e).is_none());
        }
    }

    #[test]
    fn numbers_are_written_straight_into_locked_memory() {
        let mut w = LockedWriter {
            buf: LockedBuf::alloc(4, MemoryPolicy::BestEffort).unwrap(),
            len: 0,
        };
        assert!(write!(w, "{}", 1234).is_ok());
        assert!(write!(w, "5").is_err(), "overflow must fail, not panic");
    }
}
