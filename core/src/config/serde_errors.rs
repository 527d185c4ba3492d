//! Serde's error messages, stripped of the values they quote.
//!
//! Serde describes a wrong value by quoting it: ``invalid type: integer `5839872095347003`,
//! expected a string``, `invalid value: string "hunter2", expected a duration`, ``unknown
//! variant `hunter2` ``. Any config value might be a secret (a passphrase, a seed, an external
//! id), whatever its YAML type, so a message is rebuilt from parts that cannot hold a value:
//! the kind of the value, what was expected (the deserializer's own text) and field names.
//! A message in no known shape is replaced whole; nothing of an unrecognised message survives.

/// `message` with every value it might quote removed. The key path is added by the caller.
pub(crate) fn safe_serde_message(message: &str) -> String {
    for label in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(label) {
            let kind = value_kind(rest);
            return match expected(rest) {
                Some(what) => format!("{label}{kind}, expected {what}"),
                None => format!("{label}{kind}"),
            };
        }
    }
    if let Some(rest) = message.strip_prefix("invalid length ") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(", expected ") {
            return message.to_owned();
        }
    }
    if message.starts_with("unknown variant ") {
        return match expected(message) {
            Some(what) => format!("unknown value, expected {what}"),
            None => "unknown value".to_owned(),
        };
    }
    // Field names are the config's own keys, not values.
    for shape in ["unknown field `", "missing field `", "duplicate field `"] {
        if message.starts_with(shape) {
            return message.to_owned();
        }
    }
    "invalid value (not shown: it might be a secret)".to_owned()
}

/// What serde's `Unexpected` text describes, as one of its fixed kind names.
fn value_kind(unexpected: &str) -> &'static str {
    const KINDS: &[(&str, &str)] = &[
        ("boolean", "boolean"),
        ("integer", "integer"),
        ("floating point", "floating point number"),
        ("character", "character"),
        ("string", "string"),
        ("byte array", "byte array"),
        ("unit value", "null"),
        ("null", "null"),
        ("Option value", "optional value"),
        ("newtype struct", "value"),
        ("sequence", "sequence"),
        ("map", "mapping"),
        ("enum", "tagged value"),
        ("unit variant", "value"),
        ("newtype variant", "value"),
        ("tuple variant", "value"),
        ("struct variant", "value"),
    ];
    KINDS
        .iter()
        .find(|(prefix, _)| {
            unexpected
                .strip_prefix(prefix)
                .is_some_and(|r| r.is_empty() || r.starts_with([' ', ',']))
        })
        .map_or("value", |(_, kind)| kind)
}

/// The text after the last `, expected `: the deserializer's description of what it wanted.
/// A quoted value comes before that separator, so even a value that contains it leaves only
/// the deserializer's text after the last one.
fn expected(message: &str) -> Option<&str> {
    message
        .rfind(", expected ")
        .map(|i| &message[i + ", expected ".len()..])
}

#[cfg(test)]
mod tests {
    use super::safe_serde_message as safe;

    #[test]
    fn values_of_every_kind_are_dropped() {
        let cases = [
            (
                "invalid type: integer `5839872095347003`, expected a string",
                "invalid type: integer, expected a string",
            ),
            (
                "invalid type: floating point `5839.872095347003`, expected a string",
                "invalid type: floating point number, expected a string",
            ),
            (
                "invalid type: boolean `true`, expected a string",
                "invalid type: boolean, expected a string",
            ),
            (
                "invalid value: string \"hun\\\"ter2, expected x\", expected a duration",
                "invalid value: string, expected a duration",
            ),
            (
                "invalid type: character `x`, expected u64",
                "invalid type: character, expected u64",
            ),
            (
                "unknown variant `hunter2`, expected `strict` or `best_effort`",
                "unknown value, expected `strict` or `best_effort`",
            ),
            (
                "invalid type: sequence, expected a string",
                "invalid type: sequence, expected a string",
            ),
            (
                "invalid type: enum, expected any valid JSON value",
                "invalid type: tagged value, expected any valid JSON value",
            ),
            (
                "invalid length 3, expected a tuple of size 2",
                "invalid length 3, expected a tuple of size 2",
            ),
            ("missing field `path`", "missing field `path`"),
            (
                "unknown field `colour`, expected one of `path`, `key_file`",
                "unknown field `colour`, expected one of `path`, `key_file`",
            ),
            (
                "something custom quoting hunter2",
                "invalid value (not shown: it might be a secret)",
            ),
            (
                "invalid type: Some Other hunter2 text, expected a string",
                "invalid type: value, expected a string",
            ),
        ];
        for (raw, shown) in cases {
            assert_eq!(safe(raw), shown, "{raw}");
        }
    }
}
