use super::*;
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000;
const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

fn secrets(list: &[&str]) -> Vec<SecretString> {
    list.iter()
        .map(|s| SecretString::from(s.to_string()))
        .collect()
}

#[test]
fn a_stripe_cli_style_header_verifies() {
    let h = header("whsec_test", NOW, BODY);
    assert_eq!(
        verify(&h, BODY, &secrets(&["whsec_test"]), NOW, 300),
        Ok(NOW)
    );
}

#[test]
fn known_vector_matches_openssl() {
    // printf '1700000000.hello' | openssl dgst -sha256 -hmac whsec_abc
    assert_eq!(
        sign("whsec_abc", NOW, b"hello"),
        "143e3a972876cf7aeb5ed09be39f63a5a566902ec1d418b8d00865c9d9ea7f9b"
    );
}

#[test]
fn every_bad_header_kind_is_rejected_with_its_code() {
    let good = sign("whsec_test", NOW, BODY);
    let cases: Vec<(String, &str, &str)> = vec![
        ("".into(), "missing_signature", "empty"),
        ("   ".into(), "missing_signature", "blank"),
        (format!("v1={good}"), "malformed_signature", "no timestamp"),
        (format!("t={NOW}"), "malformed_signature", "no v1"),
        (
            format!("t={NOW},v0={good}"),
            "malformed_signature",
            "only v0",
        ),
        (
            format!("t=abc,v1={good}"),
            "malformed_signature",
            "timestamp not a number",
        ),
        (
            format!("t=-5,v1={good}"),
            "malformed_signature",
            "negative timestamp",
        ),
        (
            format!("t={NOW},t={NOW},v1={good}"),
            "malformed_signature",
            "two timestamps",
        ),
        (
            format!("t={NOW},garbage,v1={good}"),
            "malformed_signature",
            "element without =",
        ),
        (
            format!("t={NOW},v1=nothex"),
            "signature_mismatch",
            "v1 not hex",
        ),
        (
            format!("t={NOW},v1={}", "0".repeat(64)),
            "signature_mismatch",
            "wrong signature",
        ),
        (
            format!("t={},v1={good}", NOW + 1),
            "signature_mismatch",
            "signature for another timestamp",
        ),
        // The length bound on the timestamp, at its edge (cargo-mutants moved it and no
        // case noticed): 18 digits is a number, out of tolerance; 19 is refused as
        // malformed before any parse, even where it would fit an i64.
        (
            header("whsec_test", 111_111_111_111_111_111, BODY),
            "timestamp_out_of_tolerance",
            "18-digit timestamp, signed",
        ),
        (
            header("whsec_test", 1_111_111_111_111_111_111, BODY),
            "malformed_signature",
            "19-digit timestamp, signed",
        ),
    ];
    for (h, code, why) in cases {
        let err = verify(&h, BODY, &secrets(&["whsec_test"]), NOW, 300).unwrap_err();
        assert_eq!(err.code(), code, "{why}: {h}");
    }
}

#[test]
fn a_tampered_body_or_wrong_secret_does_not_verify() {
    let h = header("whsec_test", NOW, BODY);
    let mut tampered = BODY.to_vec();
    tampered.push(b'\n');
    assert_eq!(
        verify(&h, &tampered, &secrets(&["whsec_test"]), NOW, 300),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(&h, BODY, &secrets(&["whsec_other"]), NOW, 300),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(&h, BODY, &[], NOW, 300),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn any_configured_secret_and_any_v1_position_verifies() {
    let good = sign("whsec_new", NOW, BODY);
    let h = format!(" t={NOW} , v1={} ,v0=abc, v1={good} ,x=y", "ab".repeat(32));
    assert_eq!(
        verify(&h, BODY, &secrets(&["whsec_old", "whsec_new"]), NOW, 300),
        Ok(NOW)
    );
}

#[test]
fn tolerance_is_inclusive_in_both_directions() {
    let s = secrets(&["whsec_test"]);
    for (t, ok) in [
        (NOW - 300, true),
        (NOW + 300, true),
        (NOW - 301, false),
        (NOW + 301, false),
    ] {
        let got = verify(&header("whsec_test", t, BODY), BODY, &s, NOW, 300);
        assert_eq!(got.is_ok(), ok, "t = now {:+}", t - NOW);
        if !ok {
            assert_eq!(got, Err(SignatureError::OutOfTolerance));
        }
    }
}

/// Headers made of the pieces a real one has, in any order and number, so the parser's
/// deeper branches (repeated keys, empty values, odd spacing, huge numbers) are reached.
fn header_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("t=".to_owned()),
        Just("v1=".to_owned()),
        Just("v0=".to_owned()),
        Just(",".to_owned()),
        Just(" ".to_owned()),
        Just("=".to_owned()),
        "[0-9]{0,25}",
        "-[0-9]{1,20}",
        "[0-9a-f]{0,70}",
        ".{0,4}",
    ];
    proptest::collection::vec(piece, 0..16).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn header_shaped_input_never_panics_and_fails_with_a_known_code(h in header_like()) {
        if let Err(e) = verify(&h, BODY, &secrets(&["whsec_test"]), NOW, 300) {
            prop_assert!(["missing_signature", "malformed_signature", "timestamp_out_of_tolerance", "signature_mismatch"].contains(&e.code()), "{}", e.code());
        }
    }

    #[test]
    fn arbitrary_headers_never_panic(h in ".{0,300}", body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = verify(&h, &body, &secrets(&["whsec_test"]), NOW, 300);
    }

    #[test]
    fn a_correctly_signed_body_always_verifies(
        body in proptest::collection::vec(any::<u8>(), 0..2000),
        secret in "whsec_[A-Za-z0-9]{1,40}",
        skew in -300i64..=300,
    ) {
        let h = header(&secret, NOW + skew, &body);
        prop_assert_eq!(verify(&h, &body, &secrets(&["whsec_x", &secret]), NOW, 300), Ok(NOW + skew));
    }
}
