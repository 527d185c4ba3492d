//! Rotation schedules: how old a key may get before it is due for rotation.
//!
//! Defaults: master key 90 days, KEK 90 days, DEK 30 days, session keys 24 hours.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

const DAY: u64 = 24 * 60 * 60;

/// A maximum key age.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPeriod(#[serde(with = "humantime_serde")] pub Duration);

impl RotationPeriod {
    /// A period of `days` days.
    pub const fn days(days: u64) -> RotationPeriod {
        RotationPeriod(Duration::from_secs(days * DAY))
    }

    /// A period of `hours` hours.
    pub const fn hours(hours: u64) -> RotationPeriod {
        RotationPeriod(Duration::from_secs(hours * 60 * 60))
    }

    /// When a key created at `created` falls due (saturating far in the future).
    pub fn due_at(&self, created: SystemTime) -> Option<SystemTime> {
        created.checked_add(self.0)
    }

    /// Whether a key created at `created` is due at `now`. A key whose creation time lies in
    /// the future (clock skew) is not due.
    pub fn due_for_rotation(&self, created: SystemTime, now: SystemTime) -> bool {
        match now.duration_since(created) {
            Ok(age) => age >= self.0,
            Err(_) => false,
        }
    }
}

/// The kinds of keys with a rotation period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// The master key of a [`super::KeyProvider`].
    Master,
    /// A namespace's key-encryption key.
    Kek,
    /// A secret's data-encryption key.
    Dek,
    /// A short-lived session key (e.g. the sealed-in-memory cache key).
    Session,
}

impl KeyRole {
    /// `"master"`, `"kek"`, `"dek"` or `"session"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyRole::Master => "master",
            KeyRole::Kek => "kek",
            KeyRole::Dek => "dek",
            KeyRole::Session => "session",
        }
    }
}

/// Rotation periods per key role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationSchedule {
    /// Master key (default 90 days).
    pub master: RotationPeriod,
    /// KEKs (default 90 days).
    pub kek: RotationPeriod,
    /// DEKs (default 30 days).
    pub dek: RotationPeriod,
    /// Session keys (default 24 hours).
    pub session: RotationPeriod,
}

impl Default for RotationSchedule {
    fn default() -> Self {
        RotationSchedule {
            master: RotationPeriod::days(90),
            kek: RotationPeriod::days(90),
            dek: RotationPeriod::days(30),
            session: RotationPeriod::hours(24),
        }
    }
}

impl RotationSchedule {
    /// The period of `role`.
    pub fn period(&self, role: KeyRole) -> RotationPeriod {
        match role {
            KeyRole::Master => self.master,
            KeyRole::Kek => self.kek,
            KeyRole::Dek => self.dek,
            KeyRole::Session => self.session,
        }
    }

    /// Whether a key of `role` created at `created` is due at `now`.
    pub fn due_for_rotation(&self, role: KeyRole, created: SystemTime, now: SystemTime) -> bool {
        self.period(role).due_for_rotation(created, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let s = RotationSchedule::default();
        assert_eq!(s.master.0, Duration::from_secs(90 * DAY));
        assert_eq!(s.dek.0, Duration::from_secs(30 * DAY));
        assert_eq!(s.session.0, Duration::from_secs(DAY));
    }

    #[test]
    fn due_exactly_at_the_period_and_not_before() {
        let s = RotationSchedule::default();
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let day = Duration::from_secs(DAY);
        assert!(!s.due_for_rotation(KeyRole::Dek, created, created + 29 * day));
        assert!(s.due_for_rotation(KeyRole::Dek, created, created + 30 * day));
        assert!(!s.due_for_rotation(KeyRole::Master, created, created + 89 * day));
        assert!(s.due_for_rotation(KeyRole::Master, created, created + 90 * day));
        assert!(!s.due_for_rotation(
            KeyRole::Session,
            created,
            created + day - Duration::from_secs(1)
        ));
        assert!(s.due_for_rotation(KeyRole::Session, created, created + day));
        // Clock skew: created in the future is never due.
        assert!(!s.due_for_rotation(KeyRole::Session, created + 400 * day, created));
    }

    #[test]
    fn schedule_reads_from_config_text() {
        let s: RotationSchedule = serde_json::from_str(
            r#"{"master":"90days","kek":"90days","dek":"7days","session":"1h"}"#,
        )
        .unwrap();
        assert_eq!(s.dek, RotationPeriod::days(7));
        assert_eq!(s.session, RotationPeriod::hours(1));
    }
}
