//! sealbox values <-> the JSON maps KV stores.
//!
//! A KV secret's data is a JSON object; a sealbox value is bytes. The mapping is the Vault
//! CLI's habit (`vault kv put secret/x value=...`), so other Vault clients read what sealbox
//! writes and the other way round:
//!
//! - sealbox writes UTF-8 text as `{"value": "<text>"}` and any other bytes as
//!   `{"value_base64": "<standard base64>"}`;
//! - sealbox reads `{"value": "<string>"}` and `{"value_base64": "<string>"}` (one key
//!   only) back as those bytes, and any other object (`{"username": ..., "password": ...}`
//!   written by another tool) as that object's compact JSON, keys sorted, so `#password`
//!   selects a field of it.
//!
//! Memory: the JSON passes through vaultrs and serde as ordinary heap strings, which sealbox
//! cannot wipe; the bytes handed back are in locked memory.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// The key of a text value.
pub const VALUE_KEY: &str = "value";
/// The key of a binary value.
pub const VALUE_BASE64_KEY: &str = "value_base64";

/// The data map sealbox writes for `value`.
pub fn encode(value: &Secret) -> Value {
    let bytes = value.expose_secret();
    let mut map = Map::with_capacity(1);
    match std::str::from_utf8(bytes) {
        Ok(text) => map.insert(VALUE_KEY.into(), Value::String(text.to_owned())),
        Err(_) => map.insert(
            VALUE_BASE64_KEY.into(),
            Value::String(STANDARD.encode(bytes)),
        ),
    };
    Value::Object(map)
}

/// Wipes the strings of a data map [`encode`] made, once it is sent (the request body vaultrs
/// serialised from it is out of reach).
pub fn wipe(data: &mut Value) {
    if let Value::Object(map) = data {
        for v in map.values_mut() {
            if let Value::String(s) = v {
                zeroize::Zeroize::zeroize(s);
            }
        }
    }
}

/// The sealbox value of a KV secret's data. `what` names the secret and version for errors
/// (built only when one happens).
pub fn decode(data: Value, what: impl Fn() -> String) -> Result<Secret> {
    let Value::Object(mut map) = data else {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!("{}: Vault returned data that is not a JSON object", what()),
        ));
    };
    if map.len() == 1 {
        if let Some(Value::String(s)) = map.get_mut(VALUE_KEY) {
            let owned = Zeroizing::new(std::mem::take(s).into_bytes());
            return Secret::from_zeroizing(owned);
        }
        if let Some(Value::String(s)) = map.get(VALUE_BASE64_KEY) {
            let decoded = Zeroizing::new(STANDARD.decode(s.as_bytes()).map_err(|_| {
                Error::new(
                    ErrorKind::Integrity,
                    format!("{}: {VALUE_BASE64_KEY} is not standard base64", what()),
                )
            })?);
            return Secret::from_zeroizing(decoded);
        }
    }
    // serde_json's map is ordered by key: the same object always reads as the same bytes.
    let json =
        Zeroizing::new(serde_json::to_vec(&Value::Object(map)).map_err(|_| {
            Error::internal(format!("{}: re-encoding Vault's JSON failed", what()))
        })?);
    Secret::from_zeroizing(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: &[u8]) -> Secret {
        Secret::from_mut_slice(&mut b.to_vec()).unwrap()
    }

    #[test]
    fn text_and_binary_round_trip_byte_for_byte() {
        for v in [
            &b"pw-1"[..],
            br#"{"b":1,"a":2}"#,
            b"",
            &[0, 255, 254, 128, 10],
            "é\u{0}".as_bytes(),
        ] {
            let data = encode(&secret(v));
            let back = decode(data, || "x".into()).unwrap();
            assert_eq!(back.expose_secret(), v);
        }
        assert_eq!(
            encode(&secret(&[255, 0])),
            serde_json::json!({"value_base64": "/wA="})
        );
    }

    #[test]
    fn objects_other_tools_wrote_read_as_sorted_json() {
        let data = serde_json::json!({"username": "app", "password": "pw", "port": 5432});
        let s = decode(data, || "x".into()).unwrap();
        assert_eq!(
            s.expose_secret(),
            br#"{"password":"pw","port":5432,"username":"app"}"#
        );
        assert_eq!(s.json_field("password").unwrap().expose_secret(), "pw");
        // Two keys, one of them "value": an object, not a text value.
        let both = serde_json::json!({"value": "a", "other": "b"});
        assert_eq!(
            decode(both, || "x".into()).unwrap().expose_secret(),
            br#"{"other":"b","value":"a"}"#
        );
    }

    #[test]
    fn bad_base64_is_an_integrity_error_without_the_data() {
        let err = decode(serde_json::json!({"value_base64": "%%secretish%%"}), || {
            "x v1".into()
        })
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity);
        assert!(!err.message().contains("secretish"), "{err}");
    }
}
