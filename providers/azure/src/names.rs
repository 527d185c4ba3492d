//! sealbox names <-> Key Vault secret names, and the tags sealbox keeps on versions.
//!
//! Key Vault allows `[0-9a-zA-Z-]{1,127}` and compares names without regard to case. sealbox
//! names use letters, digits, `/` and `-_.+=@`. The encoding keeps letters and digits and uses
//! `-` as an escape, always followed by one character:
//!
//! | sealbox | Key Vault |
//! |---------|-----------|
//! | `/`     | `--`      |
//! | `-`     | `-0`      |
//! | `_`     | `-1`      |
//! | `.`     | `-2`      |
//! | `+`     | `-3`      |
//! | `=`     | `-4`      |
//! | `@`     | `-5`      |
//!
//! so `predis/prod/db-password` is `predis--prod--db-0password`. Decoding reads left to right and
//! is exact; a Key Vault name that is not a valid encoding (a lone `-`, `-9`) is not a sealbox
//! name, and `list` skips it. An encoded name longer than 127 characters is refused with
//! `InvalidInput` before any call.
//!
//! **Case.** Two sealbox names that differ only in case (`Db/pw`, `db/pw`) map to one Key
//! Vault secret. Every version sealbox writes carries the exact sealbox name in the tag
//! [`TAG_NAME`]; a write whose name differs from that tag is refused with `Conflict`, and a read
//! through the other spelling is `NotFound`, so the two names never share values.

use sealbox::store::{SecretName, Stage};
use sealbox::{Error, Result};

/// Key Vault's limit on a secret name.
pub const MAX_NAME: usize = 127;

/// Tag holding the stages of a version, comma-separated (`CURRENT`, `PREVIOUS,blue`).
pub const TAG_STAGE: &str = "sealbox-stage";
/// Tag holding the exact sealbox name (Key Vault names are case-insensitive).
pub const TAG_NAME: &str = "sealbox-name";
/// Tag holding the secret's description (copied to each new version).
pub const TAG_DESCRIPTION: &str = "sealbox-description";
/// Tag holding a hash of the idempotency token a version was written with.
pub const TAG_TOKEN: &str = "sealbox-idem";
/// Content type of values sealbox stored base64-encoded (values that are not UTF-8).
pub const CONTENT_TYPE_BASE64: &str = "application/vnd.sealbox.base64";

const TABLE: [(u8, u8); 7] = [
    (b'/', b'-'),
    (b'-', b'0'),
    (b'_', b'1'),
    (b'.', b'2'),
    (b'+', b'3'),
    (b'=', b'4'),
    (b'@', b'5'),
];

/// The Key Vault name of `full` (the name with the store prefix already applied).
pub fn encode(full: &str) -> Result<String> {
    let mut out = String::with_capacity(full.len() + 8);
    for b in full.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else if let Some((_, code)) = TABLE.iter().find(|(c, _)| *c == b) {
            out.push('-');
            out.push(*code as char);
        } else {
            return Err(Error::invalid_input(format!(
                "secret name {full:?} has a character Key Vault names cannot encode"
            )));
        }
    }
    if out.len() > MAX_NAME {
        return Err(Error::invalid_input(format!(
            "secret name {full:?} is {} characters once encoded for Key Vault (`/` is `--`, \
             `-_.+=@` take two characters each); Key Vault allows {MAX_NAME}. Use a shorter \
             name or prefix",
            out.len()
        )));
    }
    Ok(out)
}

/// The sealbox name a Key Vault name encodes, or `None` when it is not an encoding.
pub fn decode(kv: &str) -> Option<String> {
    let mut out = String::with_capacity(kv.len());
    let mut bytes = kv.bytes();
    while let Some(b) = bytes.next() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else if b == b'-' {
            let code = bytes.next()?;
            let (c, _) = TABLE.iter().find(|(_, k)| *k == code)?;
            out.push(*c as char);
        } else {
            return None;
        }
    }
    Some(out)
}

/// `prefix/name` (or `name`).
pub fn full_name(prefix: Option<&str>, name: &SecretName) -> String {
    match prefix {
        Some(p) => format!("{p}/{name}"),
        None => name.to_string(),
    }
}

/// The stages in a [`TAG_STAGE`] value; unknown or malformed labels are ignored.
pub fn parse_stages(tag: Option<&str>) -> Vec<Stage> {
    tag.unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The [`TAG_STAGE`] value for `stages` (empty when none).
pub fn format_stages(stages: &[Stage]) -> String {
    let mut labels: Vec<&str> = stages.iter().map(Stage::as_str).collect();
    labels.sort_unstable();
    labels.dedup();
    labels.join(",")
}

/// The [`TAG_TOKEN`] value for an idempotency token: a SHA-256 prefix, never the token.
pub fn token_tag(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    hex::encode(&d.as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allowed_character_round_trips_and_the_encoding_is_key_vault_safe() {
        let name = "a/B-c_d.e+f=g@h/9";
        let kv = encode(name).unwrap();
        assert_eq!(kv, "a--B-0c-1d-2e-3f-4g-5h--9");
        assert!(kv.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert_eq!(decode(&kv).as_deref(), Some(name));
    }

    #[test]
    fn names_that_are_not_encodings_decode_to_nothing() {
        for kv in ["trailing-", "bad-9code", "x-y"] {
            assert_eq!(decode(kv), None, "{kv}");
        }
        assert_eq!(decode("plain").as_deref(), Some("plain"));
    }

    #[test]
    fn distinct_names_never_share_an_encoding() {
        // `-` escapes are one character each, so `a/-` and `a-/` stay apart.
        let names = ["a/-", "a-/", "a--", "a//", "a-0", "a_0"];
        let mut seen = std::collections::BTreeSet::new();
        for n in names {
            assert!(seen.insert(encode(n).unwrap()), "{n}");
        }
    }

    #[test]
    fn a_name_too_long_once_encoded_is_refused_with_a_reason() {
        let name = "a/".repeat(50) + "b";
        let err = encode(&name).unwrap_err();
        assert_eq!(err.kind(), sealbox::ErrorKind::InvalidInput);
        assert!(err.message().contains("127"), "{err}");
    }

    #[test]
    fn stages_tag_round_trips_sorted() {
        let stages = vec![
            Stage::Previous,
            Stage::Custom("blue".into()),
            Stage::Current,
        ];
        let tag = format_stages(&stages);
        assert_eq!(tag, "CURRENT,PREVIOUS,blue");
        let back = parse_stages(Some(&tag));
        assert_eq!(back.len(), 3);
        assert!(back.contains(&Stage::Current) && back.contains(&Stage::Previous));
    }
}
