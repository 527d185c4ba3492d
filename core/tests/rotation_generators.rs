//! Credential generators and policy, as a specification: every generated password meets the
//! policy it was made for (property tests); characters are drawn uniformly (chi-square, with
//! a check that the same statistic catches a modulo-biased draw); tokens have their length and
//! alphabet; the SOC2 policy rejects the weak credentials the user documents show, and its
//! errors name the broken rules, never the value.

use base64::Engine as _;
use proptest::prelude::*;
use sealbox::ExposeSecret;
use sealbox::rotation::{CredentialPolicy, Generator, Violation};

fn policy(min_length: usize, classes: [bool; 4], runs: bool, words: bool) -> CredentialPolicy {
    CredentialPolicy {
        min_length,
        upper: classes[0],
        lower: classes[1],
        digit: classes[2],
        special: classes[3],
        no_repeated_runs: runs,
        no_dictionary_words: words,
        min_strength_bits: 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_generated_password_meets_its_policy(
        length in 16usize..64,
        classes in any::<[bool; 4]>(),
        runs in any::<bool>(),
        words in any::<bool>(),
    ) {
        let policy = policy(length, classes, runs, words);
        let alphabet = policy.alphabet();
        let value = Generator::Password { length, policy: policy.clone() }.generate().unwrap();
        let bytes = value.expose_secret();
        prop_assert_eq!(bytes.len(), length);
        prop_assert!(bytes.iter().all(|b| alphabet.contains(b)));
        prop_assert_eq!(policy.violations(bytes), vec![]);
        prop_assert!(value.is_locked(), "the password is in locked memory");
    }

    #[test]
    fn every_soc2_password_meets_soc2(length in 16usize..48) {
        let value = Generator::Password { length, policy: CredentialPolicy::SOC2 }
            .generate()
            .unwrap();
        prop_assert_eq!(CredentialPolicy::SOC2.violations(value.expose_secret()), vec![]);
    }

    #[test]
    fn tokens_have_their_length_and_alphabet(bytes in 16usize..96) {
        let hex = Generator::Hex { bytes }.generate().unwrap();
        prop_assert_eq!(hex.len(), 2 * bytes);
        prop_assert!(hex.expose_secret().iter().all(|b| b"0123456789abcdef".contains(b)));
        let b64 = Generator::Base64Url { bytes }.generate().unwrap();
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64.expose_secret())
            .unwrap();
        prop_assert_eq!(decoded.len(), bytes);
        let key = Generator::ApiKey { prefix: "sbk".into(), bytes }.generate().unwrap();
        let key = key.expose_secret();
        prop_assert!(key.starts_with(b"sbk_"));
        prop_assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&key[4..]).unwrap().len(),
            bytes
        );
    }
}

/// Pearson's chi-square statistic of `counts` against a uniform distribution.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

/// The chi-square value exceeded with probability 0.001 under uniformity, for `df` degrees
/// of freedom (Wilson-Hilferty).
fn critical_0_001(df: f64) -> f64 {
    let z = 3.090_232;
    let a = 2.0 / (9.0 * df);
    df * (1.0 - a + z * a.sqrt()).powi(3)
}

fn counts_over(alphabet: &[u8], draws: impl Iterator<Item = u8>) -> Vec<u64> {
    let mut counts = vec![0u64; alphabet.len()];
    for b in draws {
        counts[alphabet.iter().position(|&a| a == b).unwrap()] += 1;
    }
    counts
}

#[test]
fn password_characters_are_uniform_over_the_alphabet() {
    let policy = CredentialPolicy::length_only(40);
    let alphabet = policy.alphabet();
    let generator = Generator::Password {
        length: 40,
        policy: policy.clone(),
    };
    let mut draws = Vec::new();
    for _ in 0..2500 {
        draws.extend_from_slice(generator.generate().unwrap().expose_secret());
    }
    let counts = counts_over(&alphabet, draws.iter().copied());
    let stat = chi_square(&counts);
    let limit = critical_0_001((alphabet.len() - 1) as f64);
    assert!(
        stat < limit,
        "chi-square {stat:.1} >= {limit:.1} over {} symbols",
        alphabet.len()
    );

    // The statistic catches the bias a plain `byte % n` would have (the first 256 % n
    // symbols one draw in 256 more often), at this sample size.
    let biased = counts_over(
        &alphabet,
        (0..draws.len()).map(|i| alphabet[(i * 7919 % 256) % alphabet.len()]),
    );
    assert!(
        256 % alphabet.len() != 0 && chi_square(&biased) > limit,
        "a modulo-biased draw passes: the check could not fail"
    );
}

#[test]
fn hex_digits_are_uniform() {
    let mut draws = Vec::new();
    for _ in 0..1000 {
        draws.extend_from_slice(
            Generator::Hex { bytes: 32 }
                .generate()
                .unwrap()
                .expose_secret(),
        );
    }
    let counts = counts_over(b"0123456789abcdef", draws.into_iter());
    let stat = chi_square(&counts);
    assert!(stat < critical_0_001(15.0), "chi-square {stat:.1}");
}

#[test]
fn soc2_rejects_the_documents_weak_credentials_and_never_shows_them() {
    let soc2 = CredentialPolicy::SOC2;
    // From the user documents: a hand-written database password, a ClickHouse placeholder,
    // a Slack token placeholder, and `openssl rand -hex 32` (an API key, not a password:
    // no upper case, no special character).
    let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    for bad in [
        "secure-database-password",
        "your-secure-password",
        "xoxb-slack-bot-token",
        hex,
        "P@ssw0rd-Qx7!Zr9k",
        "Zq8!!xK2#mW4=pR6~",
        "Zq8!xK2#mW4",
    ] {
        let err = soc2.check(bad.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), sealbox::ErrorKind::InvalidInput);
        assert!(!err.to_string().contains(bad), "the error shows the value");
    }
    assert!(
        soc2.violations(b"secure-database-password")
            .contains(&Violation::DictionaryWord)
    );
    assert!(
        soc2.violations(b"P@ssw0rd-Qx7!Zr9k")
            .contains(&Violation::DictionaryWord)
    );
    assert!(
        soc2.violations(b"Zq8!!xK2#mW4=pR6~")
            .contains(&Violation::RepeatedCharacter)
    );
    assert!(
        soc2.violations(hex.as_bytes())
            .contains(&Violation::Missing("an upper-case letter"))
    );
    assert!(
        soc2.violations(b"Zq8!xK2#mW4")
            .contains(&Violation::TooShort { min: 16 })
    );
    soc2.check(b"Zq8!xK2#mW4=pR6~vT9").unwrap();
}
