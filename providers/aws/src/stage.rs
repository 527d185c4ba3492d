//! sealbox stages <-> AWS staging labels.
//!
//! `CURRENT`, `PENDING`, `PREVIOUS` are AWS's `AWSCURRENT`, `AWSPENDING`, `AWSPREVIOUS`; custom
//! labels pass through unchanged. Custom labels that start with `AWS` are refused, so the
//! mapping stays one-to-one and no caller can spell a reserved label by accident.

use sealbox::store::Stage;
use sealbox::{Error, Result};

/// AWS's label for `CURRENT`.
pub const AWS_CURRENT: &str = "AWSCURRENT";
/// AWS's label for `PENDING`.
pub const AWS_PENDING: &str = "AWSPENDING";
/// AWS's label for `PREVIOUS`.
pub const AWS_PREVIOUS: &str = "AWSPREVIOUS";

/// The AWS label for a sealbox stage.
pub fn to_label(stage: &Stage) -> Result<&str> {
    Ok(match stage {
        Stage::Current => AWS_CURRENT,
        Stage::Pending => AWS_PENDING,
        Stage::Previous => AWS_PREVIOUS,
        Stage::Custom(label) => {
            if label.len() >= 3 && label[..3].eq_ignore_ascii_case("AWS") {
                return Err(Error::invalid_input(format!(
                    "stage {label:?}: labels starting with AWS are reserved by AWS Secrets \
                     Manager; use CURRENT, PENDING or PREVIOUS, or another name"
                )));
            }
            label
        }
    })
}

/// The sealbox stage for an AWS label. Labels written by other tools that sealbox cannot
/// represent (longer than 64 characters or with other characters) are skipped.
pub fn from_label(label: &str) -> Option<Stage> {
    match label {
        AWS_CURRENT => Some(Stage::Current),
        AWS_PENDING => Some(Stage::Pending),
        AWS_PREVIOUS => Some(Stage::Previous),
        // `Stage::from_str` would read "current" as CURRENT; an AWS label "current" is custom.
        other
            if other.eq_ignore_ascii_case("CURRENT")
                || other.eq_ignore_ascii_case("PENDING")
                || other.eq_ignore_ascii_case("PREVIOUS") =>
        {
            None
        }
        other => other.parse::<Stage>().ok(),
    }
}

/// Every label in `labels` that maps to a sealbox stage, in order.
pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a String>) -> Vec<Stage> {
    labels.into_iter().filter_map(|l| from_label(l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_stages_map_to_aws_labels_and_back() {
        for (stage, label) in [
            (Stage::Current, "AWSCURRENT"),
            (Stage::Pending, "AWSPENDING"),
            (Stage::Previous, "AWSPREVIOUS"),
        ] {
            assert_eq!(to_label(&stage).unwrap(), label);
            assert_eq!(from_label(label), Some(stage));
        }
    }

    #[test]
    fn custom_labels_pass_through() {
        let canary = Stage::Custom("canary".into());
        assert_eq!(to_label(&canary).unwrap(), "canary");
        assert_eq!(from_label("canary"), Some(canary));
    }

    #[test]
    fn reserved_and_unrepresentable_labels_are_refused() {
        let err = to_label(&Stage::Custom("AWSCURRENT".into())).unwrap_err();
        assert_eq!(err.kind(), sealbox::ErrorKind::InvalidInput);
        assert!(to_label(&Stage::Custom("awsfoo".into())).is_err());
        assert_eq!(from_label("current"), None);
        assert_eq!(from_label("has space"), None);
        assert_eq!(from_label(&"x".repeat(65)), None);
    }
}
