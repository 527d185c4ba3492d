//! sealbox names <-> GCP secret ids, and sealbox stages <-> GCP version aliases.
//!
//! **Ids.** A GCP secret id is 1 to 255 characters of `[A-Za-z0-9_-]`; a sealbox name is a
//! `/`-separated path that may also hold `.+=@_`. The mapping is one-to-one and keeps the
//! common case readable: letters, digits and `-` stay as they are, `/` becomes `__`, and every
//! other character becomes `_` and two upper-case hex digits (`_` is `_5F`, `.` is `_2E`):
//! `predis/prod/db_password` is the id `predis__prod__db_5Fpassword`. Every `_` in an id
//! starts a two-character escape, so decoding is unambiguous; an id that does not decode
//! (most ids with a bare `_` made by other tools) is not a sealbox name and is left out of
//! `list`. Because each character has its own code and no code is a prefix of another, a
//! name prefix maps to an id prefix, which is what `list(prefix)` filters on.
//!
//! **Stages.** `CURRENT`, `PENDING`, `PREVIOUS` are the aliases `current`, `pending`,
//! `previous`; a custom stage is an alias of the same spelling. GCP aliases start with a
//! letter, are at most 63 characters and cannot be `latest` or `NEW`: custom stages outside
//! that are refused. Aliases other tools made that sealbox cannot represent (`Current`, or
//! characters a stage cannot hold) are skipped when reading.

use sealbox::store::{SecretName, Stage};
use sealbox::{Error, Result};

/// GCP's limit on a secret id.
pub const MAX_ID_LEN: usize = 255;

/// The alias of `CURRENT`.
pub const CURRENT: &str = "current";
/// The alias of `PENDING`.
pub const PENDING: &str = "pending";
/// The alias of `PREVIOUS`.
pub const PREVIOUS: &str = "previous";

/// The GCP secret id of a full sealbox path (prefix included).
pub fn secret_id(path: &str) -> Result<String> {
    let mut out = String::with_capacity(path.len() + 8);
    for b in path.bytes() {
        match b {
            b'/' => out.push_str("__"),
            b if b.is_ascii_alphanumeric() || b == b'-' => out.push(b as char),
            b => {
                out.push('_');
                out.push_str(&format!("{b:02X}"));
            }
        }
    }
    if out.len() > MAX_ID_LEN {
        return Err(Error::invalid_input(format!(
            "secret name {path} is too long for GCP Secret Manager: its id would be {} \
             characters, GCP allows {MAX_ID_LEN} ('/' takes two, '_', '.', '+', '=' and '@' \
             three); use a shorter name or prefix",
            out.len()
        )));
    }
    Ok(out)
}

/// The sealbox path an id encodes, or `None` when the id is not one [`secret_id`] makes.
pub fn path_of_id(id: &str) -> Option<String> {
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(id.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'_' {
            if !(b.is_ascii_alphanumeric() || b == b'-') {
                return None;
            }
            out.push(b as char);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'_') => {
                out.push('/');
                i += 2;
            }
            Some(_) => {
                let hex = id.get(i + 1..i + 3)?;
                // Upper-case only, so each character has exactly one spelling.
                if !hex
                    .bytes()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h))
                {
                    return None;
                }
                let c = u8::from_str_radix(hex, 16).ok()?;
                if c.is_ascii_alphanumeric() || c == b'-' || c == b'/' || !c.is_ascii() {
                    return None;
                }
                out.push(c as char);
                i += 3;
            }
            None => return None,
        }
    }
    Some(out)
}

/// The sealbox name under `prefix` that `id` encodes, if any.
pub fn name_of_id(id: &str, prefix: Option<&str>) -> Option<SecretName> {
    let path = path_of_id(id)?;
    let rest = match prefix {
        Some(p) => path.strip_prefix(p)?.strip_prefix('/')?,
        None => path.as_str(),
    };
    SecretName::new(rest).ok()
}

/// The GCP alias of a stage.
pub fn to_alias(stage: &Stage) -> Result<&str> {
    Ok(match stage {
        Stage::Current => CURRENT,
        Stage::Pending => PENDING,
        Stage::Previous => PREVIOUS,
        Stage::Custom(label) => {
            let named = [CURRENT, PENDING, PREVIOUS, "latest", "new"];
            let ok = label.len() <= 63
                && label.starts_with(|c: char| c.is_ascii_alphabetic())
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && !named.iter().any(|n| n.eq_ignore_ascii_case(label));
            if !ok {
                return Err(Error::invalid_input(format!(
                    "stage {label:?} cannot be a GCP version alias: an alias starts with a \
                     letter, has at most 63 letters, digits, '_' or '-', and is not latest, NEW \
                     or a spelling of current, pending or previous"
                )));
            }
            label
        }
    })
}

/// The sealbox stage of a GCP alias, or `None` for aliases sealbox does not represent.
pub fn from_alias(alias: &str) -> Option<Stage> {
    match alias {
        CURRENT => Some(Stage::Current),
        PENDING => Some(Stage::Pending),
        PREVIOUS => Some(Stage::Previous),
        // `Stage::from_str` reads "Current" as CURRENT; the alias "Current" is another alias.
        other
            if [CURRENT, PENDING, PREVIOUS]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(other)) =>
        {
            None
        }
        other => other.parse::<Stage>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_readable_for_paths_and_escape_the_rest() {
        assert_eq!(
            secret_id("predis/prod/database/password").unwrap(),
            "predis__prod__database__password"
        );
        assert_eq!(secret_id("db_password").unwrap(), "db_5Fpassword");
        assert_eq!(secret_id("a.b+c=d@e").unwrap(), "a_2Eb_2Bc_3Dd_40e");
        assert_eq!(secret_id("api-key").unwrap(), "api-key");
    }

    #[test]
    fn every_name_round_trips_and_distinct_names_get_distinct_ids() {
        // Every name of up to 4 characters over an alphabet with each kind of character.
        let alphabet = ['a', 'Z', '0', '-', '_', '.', '/', '+', '=', '@'];
        let mut names = vec![String::new()];
        let mut seen = std::collections::HashMap::new();
        for _ in 0..4 {
            names = names
                .iter()
                .flat_map(|n| alphabet.iter().map(move |c| format!("{n}{c}")))
                .collect();
            for n in &names {
                if SecretName::new(n).is_err() {
                    continue;
                }
                let id = secret_id(n).unwrap();
                assert!(
                    id.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                    "{id}"
                );
                assert_eq!(path_of_id(&id).as_deref(), Some(n.as_str()), "{n}");
                if let Some(other) = seen.insert(id.clone(), n.clone()) {
                    panic!("{n} and {other} share the id {id}");
                }
            }
        }
        assert!(seen.len() > 1000, "{}", seen.len());
    }

    #[test]
    fn a_name_prefix_is_an_id_prefix() {
        let name = "predis/prod/db_password";
        for cut in 0..name.len() {
            let prefix = secret_id(&name[..cut]).unwrap();
            assert!(secret_id(name).unwrap().starts_with(&prefix), "{cut}");
        }
    }

    #[test]
    fn ids_other_tools_made_mostly_do_not_decode() {
        assert_eq!(path_of_id("db_password"), None);
        assert_eq!(path_of_id("trailing_"), None);
        assert_eq!(path_of_id("lower_2e"), None);
        assert_eq!(
            path_of_id("letter_41"),
            None,
            "escaped A has one spelling: A"
        );
        assert_eq!(path_of_id("my-secret").as_deref(), Some("my-secret"));
        assert_eq!(
            name_of_id("predis__prod__x", Some("predis/prod"))
                .unwrap()
                .as_str(),
            "x"
        );
        assert_eq!(name_of_id("predis__prodx", Some("predis/prod")), None);
    }

    #[test]
    fn long_names_are_refused_with_the_limit() {
        let err = secret_id("a/".repeat(100).trim_end_matches('/')).unwrap_err();
        assert_eq!(err.kind(), sealbox::ErrorKind::InvalidInput);
        assert!(err.message().contains("255"), "{err}");
    }

    #[test]
    fn stages_map_to_aliases_and_back() {
        for (stage, alias) in [
            (Stage::Current, "current"),
            (Stage::Pending, "pending"),
            (Stage::Previous, "previous"),
            (Stage::Custom("blue".into()), "blue"),
            (Stage::Custom("Canary-2".into()), "Canary-2"),
        ] {
            assert_eq!(to_alias(&stage).unwrap(), alias);
            assert_eq!(from_alias(alias), Some(stage));
        }
        for bad in ["latest", "NEW", "1st", "_x", "Current", &"x".repeat(64)] {
            assert!(to_alias(&Stage::Custom(bad.into())).is_err(), "{bad}");
        }
        assert_eq!(from_alias("Current"), None);
        assert_eq!(from_alias("has space"), None);
    }
}
