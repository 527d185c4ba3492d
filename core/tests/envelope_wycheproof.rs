//! Wycheproof AES-GCM vectors through ring's AES-256-GCM, the AEAD the envelope uses:
//! every 256-bit-key, 96-bit-nonce, 128-bit-tag vector must seal to the expected ciphertext
//! and tag when valid, and fail to open when invalid.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use wycheproof::TestResult;
use wycheproof::aead::{TestName, TestSet};

#[test]
fn wycheproof_aes_256_gcm_vectors_pass_through_ring() {
    let set = TestSet::load(TestName::AesGcm).expect("wycheproof aes_gcm vectors");
    let (mut valid, mut invalid) = (0, 0);
    for group in set.test_groups {
        if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
            continue;
        }
        for test in group.tests {
            let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &test.key).unwrap());
            let nonce = || Nonce::try_assume_unique_for_key(&test.nonce).unwrap();
            let mut sealed = test.pt.to_vec();
            let tag = key
                .seal_in_place_separate_tag(nonce(), Aad::from(&test.aad[..]), &mut sealed)
                .unwrap();
            let mut ct_and_tag = test.ct.to_vec();
            ct_and_tag.extend_from_slice(&test.tag);
            let opened = key.open_in_place(nonce(), Aad::from(&test.aad[..]), &mut ct_and_tag);
            match test.result {
                TestResult::Valid => {
                    assert_eq!(&sealed[..], &test.ct[..], "tc {} ciphertext", test.tc_id);
                    assert_eq!(tag.as_ref(), &test.tag[..], "tc {} tag", test.tc_id);
                    assert_eq!(opened.unwrap(), &test.pt[..], "tc {} open", test.tc_id);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(
                        opened.is_err(),
                        "tc {} opened an invalid vector",
                        test.tc_id
                    );
                    invalid += 1;
                }
                TestResult::Acceptable => {}
            }
        }
    }
    // Guard against a filter that silently selects nothing.
    assert!(
        valid >= 20 && invalid >= 10,
        "only {valid} valid / {invalid} invalid vectors ran"
    );
}
