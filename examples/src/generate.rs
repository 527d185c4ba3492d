//! Generating the example's secrets straight into locked memory: a password, a hex token and a
//! JSON database secret, each built in place so no copy of the value is left on the heap.

use sealbox::{Error, ExposeSecret, Result, Secret};

const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// `len` characters drawn uniformly from `[A-Za-z0-9]` (about 5.95 bits each).
pub fn password(len: usize) -> Result<Secret> {
    Secret::init_with(len, |dst| {
        let mut filled = 0;
        while filled < len {
            let random = Secret::random(2 * len)?;
            for &b in random.expose_secret() {
                // 248 = 4 * 62: rejecting the top 8 byte values keeps every character equally
                // likely (no modulo bias).
                if b < 248 && filled < len {
                    dst[filled] = ALPHANUMERIC[usize::from(b % 62)];
                    filled += 1;
                }
            }
        }
        Ok(())
    })
}

/// `bytes` random bytes as lowercase hex (`2 * bytes` characters), like `openssl rand -hex`.
pub fn hex_token(bytes: usize) -> Result<Secret> {
    let random = Secret::random(bytes)?;
    Secret::init_with(2 * bytes, |dst| {
        for (pair, &b) in dst.chunks_exact_mut(2).zip(random.expose_secret()) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0x0f)];
        }
        Ok(())
    })
}

/// `{"username":..,"password":..,"host":..,"port":..}`, the shape platform teams store for
/// database credentials. `password` must need no JSON escaping (as [`password`] guarantees).
pub fn database_json(username: &str, password: &Secret, host: &str, port: u16) -> Result<Secret> {
    let pw = password.expose_secret();
    if pw.iter().any(|b| !b.is_ascii_alphanumeric()) {
        return Err(Error::invalid_input(
            "database_json takes an alphanumeric password",
        ));
    }
    let head = format!(r#"{{"username":{},"password":""#, json_string(username));
    let tail = format!(r#"","host":{},"port":{port}}}"#, json_string(host));
    Secret::init_with(head.len() + pw.len() + tail.len(), |dst| {
        let (a, rest) = dst.split_at_mut(head.len());
        let (b, c) = rest.split_at_mut(pw.len());
        a.copy_from_slice(head.as_bytes());
        b.copy_from_slice(pw);
        c.copy_from_slice(tail.as_bytes());
        Ok(())
    })
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_alphanumeric_and_differ() {
        let a = password(24).unwrap();
        let b = password(24).unwrap();
        assert_eq!(a.len(), 24);
        assert!(a.expose_secret().iter().all(u8::is_ascii_alphanumeric));
        assert!(!a.ct_eq(&b));
    }

    #[test]
    fn tokens_are_hex() {
        let t = hex_token(32).unwrap();
        assert_eq!(t.len(), 64);
        assert!(t.expose_secret().iter().all(|b| HEX.contains(b)));
    }

    #[test]
    fn database_secrets_are_json_with_the_four_fields() {
        let pw = password(16).unwrap();
        let s = database_json("predis", &pw, "db.internal", 5432).unwrap();
        let v: serde_json::Value = serde_json::from_slice(s.expose_secret()).unwrap();
        assert_eq!(v["username"], "predis");
        assert_eq!(
            v["password"].as_str().unwrap().as_bytes(),
            pw.expose_secret()
        );
        assert_eq!(v["host"], "db.internal");
        assert_eq!(v["port"], 5432);
    }
}
