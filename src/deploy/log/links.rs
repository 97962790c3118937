//! Log links are unguessable: the token is an HMAC of the deployment id under a key
//! generated once per database ([`LogKey`]), so anyone who can guess a deployment id (they
//! are sequential) still cannot read its log; a wrong token is answered like a missing log.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::DeploymentId;
use crate::store::logs;
use crate::store::{Store, StoreError};

/// Bytes of the token in a log link (hex doubles it): 128 bits cannot be guessed.
const TOKEN_BYTES: usize = 16;
/// The settings row holding the link key.
const KEY_SETTING: &str = "log_link_key";

/// The key that signs log links, generated once per database.
#[derive(Clone)]
pub struct LogKey([u8; 32]);

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogKey([REDACTED])")
    }
}

impl LogKey {
    /// The database's key, created on first use.
    pub async fn load_or_create(store: &Store) -> Result<Self, StoreError> {
        let bytes = store
            .write(|c| logs::setting_or_insert(c, KEY_SETTING, random_key))
            .await?;
        let mut key = [0; 32];
        let n = bytes.len().min(32);
        key[..n].copy_from_slice(&bytes[..n]);
        Ok(Self(key))
    }

    /// The key's bytes, to derive other keys from (the dashboard's sessions).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn mac(&self, deployment: DeploymentId) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key size");
        mac.update(format!("deployhook log v1:{deployment}").as_bytes());
        mac
    }

    /// The token of `deployment`'s log link.
    pub fn token(&self, deployment: DeploymentId) -> String {
        hex::encode(&self.mac(deployment).finalize().into_bytes()[..TOKEN_BYTES])
    }

    /// Whether `token` is `deployment`'s, compared in constant time.
    pub fn verify(&self, deployment: DeploymentId, token: &str) -> bool {
        match hex::decode(token) {
            Ok(bytes) if bytes.len() == TOKEN_BYTES => {
                self.mac(deployment).verify_truncated_left(&bytes).is_ok()
            }
            _ => false,
        }
    }
}

/// A 256-bit key from the operating system's randomness: `uuid`'s v4 ids draw 122 random
/// bits each from `getrandom`; three of them (366 bits) are hashed down to 32 bytes.
fn random_key() -> Vec<u8> {
    use sha2::Digest;
    let mut digest = Sha256::new();
    for _ in 0..3 {
        digest.update(uuid::Uuid::new_v4().as_bytes());
    }
    digest.finalize().to_vec()
}

/// Builds log links.
#[derive(Debug, Clone)]
pub struct LogLinks {
    pub key: LogKey,
    /// Without a trailing slash; `None` when `DEPLOYHOOK_PUBLIC_URL` is unset.
    pub public_url: Option<String>,
}

impl LogLinks {
    /// `/deployments/{id}/log?token=…`
    pub fn path(&self, deployment: DeploymentId) -> String {
        format!(
            "/deployments/{deployment}/log?token={}",
            self.key.token(deployment)
        )
    }

    /// The full link statuses carry, when the public URL is known.
    pub fn url(&self, deployment: DeploymentId) -> Option<String> {
        let base = self.public_url.as_deref()?;
        Some(format!("{base}{}", self.path(deployment)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_own_deployment_only() {
        let key = LogKey([7; 32]);
        let (a, b) = (DeploymentId::from(880_001), DeploymentId::from(880_002));
        let token = key.token(a);
        assert_eq!(token.len(), TOKEN_BYTES * 2);
        assert!(key.verify(a, &token));
        assert!(!key.verify(b, &token));
        assert!(!key.verify(a, &token[..30]));
        assert!(!key.verify(a, "not hex at all"));
        assert!(!LogKey([8; 32]).verify(a, &token), "another key's token");
        assert_eq!(format!("{key:?}"), "LogKey([REDACTED])");
    }
}
