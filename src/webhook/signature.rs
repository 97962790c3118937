//! Webhook signatures: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
//!
//! Verification runs over the exact bytes received (never a re-serialised body) and compares
//! in constant time through `hmac`'s `verify_slice`. Several secrets may be configured at once
//! so a secret can be rotated without dropping deliveries.

use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header value's prefix for SHA-256 signatures.
const PREFIX: &str = "sha256=";

/// Why a signature header did not verify. The messages say what to check and never reveal the
/// expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "X-Hub-Signature-256 must look like `sha256=<64 hex digits>`; \
         check that the webhook has a secret set in GitHub"
    )]
    Malformed,
    #[error(
        "X-Hub-Signature-256 does not match the body: secret mismatch, \
         or a proxy changed the body on the way"
    )]
    Mismatch,
}

/// The configured webhook secrets (one, or several during a rotation).
#[derive(Clone)]
pub struct WebhookSecrets(Vec<SecretString>);

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecrets([{} redacted])", self.0.len())
    }
}

impl WebhookSecrets {
    /// Splits a comma-separated list; surrounding spaces and empty entries are dropped.
    /// Returns `None` when no secret is left.
    pub fn from_list(list: &str) -> Option<Self> {
        let secrets: Vec<SecretString> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| SecretString::from(s.to_owned()))
            .collect();
        (!secrets.is_empty()).then_some(Self(secrets))
    }

    /// Checks `header` against `body` with every secret; succeeds when one matches.
    pub fn verify(&self, body: &[u8], header: &str) -> Result<(), SignatureError> {
        let digest = header
            .strip_prefix(PREFIX)
            .and_then(|h| hex::decode(h).ok())
            .filter(|d| d.len() == 32)
            .ok_or(SignatureError::Malformed)?;
        // No early exit on a match: every configured secret is tried, so the time taken does
        // not tell which one matched.
        let mut matched = false;
        for secret in &self.0 {
            matched |= verify_one(secret.expose_secret().as_bytes(), body, &digest);
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

fn verify_one(secret: &[u8], body: &[u8], digest: &[u8]) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(digest).is_ok()
}

/// The `X-Hub-Signature-256` header value GitHub would send for `body` signed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published test vector ("Validating webhook deliveries").
    const DOCS_SECRET: &str = "It's a Secret to Everybody";
    const DOCS_BODY: &[u8] = b"Hello, World!";
    const DOCS_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn docs_secrets() -> WebhookSecrets {
        WebhookSecrets::from_list(DOCS_SECRET).unwrap()
    }

    #[test]
    fn sign_reproduces_githubs_published_vector() {
        assert_eq!(sign(DOCS_SECRET.as_bytes(), DOCS_BODY), DOCS_SIGNATURE);
    }

    #[test]
    fn verify_accepts_githubs_published_vector() {
        assert_eq!(docs_secrets().verify(DOCS_BODY, DOCS_SIGNATURE), Ok(()));
    }

    #[test]
    fn verify_rejects_a_wrong_secret_or_a_tampered_body_as_mismatch() {
        let wrong = WebhookSecrets::from_list("it's a secret to everybody").unwrap();
        assert_eq!(
            wrong.verify(DOCS_BODY, DOCS_SIGNATURE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            docs_secrets().verify(b"Hello, World!\n", DOCS_SIGNATURE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            docs_secrets().verify(b"Hello, World?", DOCS_SIGNATURE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn verify_rejects_headers_that_are_not_sha256_hex_as_malformed() {
        let bare_hex = DOCS_SIGNATURE.trim_start_matches(PREFIX);
        let truncated = &DOCS_SIGNATURE[..DOCS_SIGNATURE.len() - 2];
        let sha1_prefix = format!("sha1={bare_hex}");
        let not_hex = format!("sha256={}", "z".repeat(64));
        for header in ["", "sha256=", bare_hex, truncated, &sha1_prefix, &not_hex] {
            assert_eq!(
                docs_secrets().verify(DOCS_BODY, header),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
    }

    #[test]
    fn verify_accepts_any_of_several_secrets_for_rotation() {
        let secrets =
            WebhookSecrets::from_list(" old-secret , It's a Secret to Everybody,").unwrap();
        assert_eq!(secrets.verify(DOCS_BODY, DOCS_SIGNATURE), Ok(()));
        let old = sign(b"old-secret", DOCS_BODY);
        assert_eq!(secrets.verify(DOCS_BODY, &old), Ok(()));
    }

    #[test]
    fn an_empty_secret_list_is_no_secret() {
        assert!(WebhookSecrets::from_list("").is_none());
        assert!(WebhookSecrets::from_list(" , ,").is_none());
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let shown = format!("{:?}", docs_secrets());
        assert!(!shown.contains("Secret to Everybody"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn signature_error_messages_never_contain_the_expected_value() {
        let expected_hex = DOCS_SIGNATURE.trim_start_matches(PREFIX);
        for err in [SignatureError::Malformed, SignatureError::Mismatch] {
            assert!(!err.to_string().contains(expected_hex));
        }
    }
}
