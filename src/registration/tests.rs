//! Refusal paths that need no HSM (the happy path runs on a real token in `tests/`).

use super::*;

#[test]
fn statuses_and_codes_are_distinct_per_check() {
    let cases = [
        (RegError::MissingApiKey, 401, "api-key-missing"),
        (RegError::WrongApiKey, 403, "api-key-invalid"),
        (
            RegError::UnsupportedMediaType,
            415,
            "unsupported-media-type",
        ),
        (RegError::TooLarge(1), 413, "too-large"),
        (RegError::BadStream("x".into()), 400, "invalid-stream"),
        (
            RegError::BadSignature("x".into()),
            400,
            "invalid-request-signature",
        ),
        (RegError::WeakDeviceKey(2048), 400, "device-key-too-weak"),
        (RegError::BadRequestId, 400, "invalid-request-id"),
        (RegError::ExpiredRequestId, 400, "request-id-expired"),
        (
            RegError::UnknownModel {
                brand: "b".into(),
                model: "m".into(),
            },
            404,
            "unknown-model",
        ),
        (
            RegError::ModelNotAllowed("m".into()),
            403,
            "model-not-allowed",
        ),
        (RegError::BadModel("x".into()), 400, "invalid-model"),
        (
            RegError::NoSigningPolicy("x".into()),
            409,
            "no-signing-policy",
        ),
        (
            RegError::KeyUnavailable("x".into()),
            503,
            "signing-key-unavailable",
        ),
        (RegError::SerialRequired("m".into()), 400, "serial-required"),
        (RegError::RequestIdUsed, 409, "request-id-used"),
        (RegError::SerialTaken("s".into()), 409, "duplicate-serial"),
        (
            RegError::LogUnavailable(LogError::WriterStopped),
            503,
            "database-unavailable",
        ),
        (
            RegError::Signing(SignError::Overloaded {
                retry_after: Duration::from_secs(3),
            }),
            503,
            "overloaded",
        ),
        (
            RegError::Signing(SignError::RateLimited {
                retry_after: Duration::from_secs(2),
            }),
            503,
            "rate-limited",
        ),
        (
            RegError::Signing(SignError::Unavailable("x".into())),
            503,
            "hsm-unavailable",
        ),
    ];
    let mut codes = std::collections::HashSet::new();
    for (e, status, code) in cases {
        assert_eq!(e.status(), status, "{e:?}");
        assert_eq!(e.code(), code, "{e:?}");
        assert!(codes.insert(code), "duplicate code {code}");
        assert_eq!(e.retry_after().is_some(), status == 503, "{e:?}");
        // Only the signer's configured shedding is load shed (logged at debug), not faults.
        assert_eq!(
            e.is_load_shed(),
            matches!(code, "overloaded" | "rate-limited"),
            "{e:?}"
        );
    }
    assert_eq!(
        RegError::Signing(SignError::Overloaded {
            retry_after: Duration::from_secs(3)
        })
        .retry_after(),
        Some(Duration::from_secs(3))
    );
}

#[test]
fn media_type_check_ignores_parameters_and_case() {
    assert!(is_assertion_media_type(Some(
        "application/x.ubuntu.assertion"
    )));
    assert!(is_assertion_media_type(Some(
        "Application/X.Ubuntu.Assertion; charset=utf-8"
    )));
    assert!(!is_assertion_media_type(Some("application/json")));
    assert!(!is_assertion_media_type(None));
}
