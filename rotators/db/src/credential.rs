//! The JSON credential a database rotator rotates, and the two strategies' choice of user.

use sealbox::rotation::Generator;
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret, SecretString};

/// Which users a rotation changes (see the crate documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// One user whose password changes in place.
    SingleUser,
    /// Two users, `NAME` and `NAME_clone`; each rotation changes the one not `CURRENT`.
    AlternatingUsers,
}

/// The users a rotator may change, and how it picks the next one.
#[derive(Clone, Debug)]
pub(crate) struct Users {
    pub(crate) user: String,
    pub(crate) strategy: Strategy,
}

impl Users {
    pub(crate) fn clone_user(&self) -> String {
        format!("{}_clone", self.user)
    }

    /// A stored value names the user to change; only this rotator's users are accepted, so a
    /// value written by someone else cannot aim `ALTER` at another account.
    pub(crate) fn check(&self, username: &str) -> Result<()> {
        let ok = username == self.user
            || (self.strategy == Strategy::AlternatingUsers && username == self.clone_user());
        if ok {
            return Ok(());
        }
        let allowed = match self.strategy {
            Strategy::SingleUser => self.user.clone(),
            Strategy::AlternatingUsers => format!("{} or {}", self.user, self.clone_user()),
        };
        Err(Error::invalid_input(format!(
            "the secret names database user {username:?}, but this rotator changes only \
             {allowed}; fix the secret's username field or the rotator's user"
        )))
    }

    /// The next value: the user the strategy picks after `current`'s, with a new password.
    pub(crate) fn next(&self, generator: &Generator, current: Option<&Secret>) -> Result<Secret> {
        let username = match (self.strategy, current) {
            (Strategy::SingleUser, _) | (Strategy::AlternatingUsers, None) => self.user.clone(),
            (Strategy::AlternatingUsers, Some(v)) => {
                let now = Login::parse(v)?;
                self.check(&now.username)?;
                if now.username == self.user {
                    self.clone_user()
                } else {
                    self.user.clone()
                }
            }
        };
        let password = generator.generate()?;
        credential_json(&username, password.expose_secret())
    }
}

/// A credential read from a secret: the user name (not secret) and the password (locked).
pub(crate) struct Login {
    pub(crate) username: String,
    pub(crate) password: SecretString,
}

impl Login {
    pub(crate) fn parse(value: &Secret) -> Result<Login> {
        let mut fields = value
            .json_fields(&["username", "password"])
            .map_err(|e| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "a database credential is a JSON object with username and password \
                         fields ({}); write the secret in that form",
                        e.message()
                    ),
                )
            })?
            .into_iter();
        let (Some(username), Some(password)) = (fields.next(), fields.next()) else {
            return Err(Error::internal("a two-field read returned fewer fields"));
        };
        Ok(Login {
            username: username.expose_secret().to_owned(),
            password,
        })
    }
}

/// `{"username":U,"password":P}` built straight into locked memory: the password is escaped
/// byte by byte into the secret's buffer, never into an ordinary string.
pub(crate) fn credential_json(username: &str, password: &[u8]) -> Result<Secret> {
    let user = serde_json::to_string(username)
        .map_err(|_| Error::internal("a user name could not be written as JSON"))?;
    let head = format!("{{\"username\":{user},\"password\":\"");
    let tail = b"\"}";
    let escaped: usize = password.iter().map(|&b| escape(b, &mut [0; 6])).sum();
    Secret::init_with(head.len() + escaped + tail.len(), |out| {
        out[..head.len()].copy_from_slice(head.as_bytes());
        let mut at = head.len();
        let mut buf = [0u8; 6];
        for &b in password {
            let n = escape(b, &mut buf);
            out[at..at + n].copy_from_slice(&buf[..n]);
            at += n;
        }
        zeroize::Zeroize::zeroize(&mut buf);
        out[at..].copy_from_slice(tail);
        Ok(())
    })
}

/// JSON string escaping of one byte (UTF-8 passes through unchanged) into `out`; its length.
fn escape(b: u8, out: &mut [u8; 6]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' | b'\\' => {
            out[0] = b'\\';
            out[1] = b;
            2
        }
        0..=0x1f => {
            out.copy_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
            6
        }
        _ => {
            out[0] = b;
            1
        }
    }
}

/// A driver's or server's message, unless it holds the password (then a note saying so).
pub(crate) fn without_password(message: &str, password: Option<&[u8]>) -> String {
    let holds = password
        .is_some_and(|p| !p.is_empty() && message.as_bytes().windows(p.len()).any(|w| w == p));
    if holds {
        "the server's message held the password and is not shown".to_owned()
    } else {
        message.chars().take(300).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_round_trips_any_password() {
        let nasty = "it's \"q\"\\ $$ ;-- \u{1}\n é";
        let v = credential_json("o'brien \"x\"", nasty.as_bytes()).unwrap();
        let login = Login::parse(&v).unwrap();
        assert_eq!(login.username, "o'brien \"x\"");
        assert_eq!(login.password.expose_secret(), nasty);
    }

    #[test]
    fn alternating_users_take_turns_and_refuse_strangers() {
        let users = Users {
            user: "app".into(),
            strategy: Strategy::AlternatingUsers,
        };
        let g = Generator::soc2_password();
        let first = users.next(&g, None).unwrap();
        assert_eq!(Login::parse(&first).unwrap().username, "app");
        let second = users.next(&g, Some(&first)).unwrap();
        assert_eq!(Login::parse(&second).unwrap().username, "app_clone");
        let third = users.next(&g, Some(&second)).unwrap();
        assert_eq!(Login::parse(&third).unwrap().username, "app");
        let stranger = credential_json("postgres", b"x").unwrap();
        let e = users.next(&g, Some(&stranger)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let single = Users {
            user: "app".into(),
            strategy: Strategy::SingleUser,
        };
        assert!(single.check("app_clone").is_err());
        assert_eq!(
            Login::parse(&single.next(&g, Some(&second)).unwrap())
                .unwrap()
                .username,
            "app"
        );
    }
}
