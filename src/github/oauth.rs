//! GitHub's side of signing a person in (the OAuth web flow of an OAuth App, or of a
//! GitHub App's user authorization: the same endpoints): the address the browser is sent
//! to, the exchange of the code GitHub gives back for a token, and the one question asked
//! with that token — who is this (`GET /user`). The token is then dropped: deployhook asks
//! about permissions with its own credentials, so it keeps no person's token.

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::SignInConfig;
use crate::github::client::http_client;
use crate::github::error::cause;

/// Why a sign-in did not give a login.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// GitHub refused the code: expired, used, or for another app (`bad_verification_code`).
    #[error("GitHub refused the sign-in: {0}")]
    Refused(String),
    #[error("could not reach GitHub to finish the sign-in: {0}")]
    Unreachable(String),
    #[error("GitHub's answer could not be read: {0}")]
    Unreadable(String),
}

/// The OAuth client deployhook signs people in as.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    http: reqwest::Client,
    config: SignInConfig,
    api_url: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    /// Wrapped as a secret at once (see `exchange`).
    access_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

impl OAuthApp {
    pub fn new(config: &SignInConfig, api_url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: http_client()?,
            config: config.clone(),
            api_url: api_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Where the browser goes to sign in: GitHub's authorize page for this client, with
    /// `state` to be checked on the way back. No scope: a person's public identity is all
    /// deployhook reads.
    pub fn authorize_url(&self, state: &str, redirect_uri: Option<&str>) -> String {
        let mut query = vec![
            ("client_id", self.config.client_id.as_str()),
            ("state", state),
            ("allow_signup", "false"),
        ];
        if let Some(uri) = redirect_uri {
            query.push(("redirect_uri", uri));
        }
        let query = serde_urlencoded::to_string(query).unwrap_or_default();
        format!("{}/login/oauth/authorize?{query}", self.config.web_url)
    }

    /// The login of the person whose `code` GitHub gave back.
    pub async fn login(
        &self,
        code: &str,
        redirect_uri: Option<&str>,
    ) -> Result<String, SignInError> {
        let token = self.exchange(code, redirect_uri).await?;
        let mut bearer =
            reqwest::header::HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
                .map_err(|_| SignInError::Unreadable("a token not fit for a header".into()))?;
        bearer.set_sensitive(true);
        let answer = self
            .http
            .get(format!("{}/user", self.api_url))
            .header(AUTHORIZATION, bearer)
            .send()
            .await
            .map_err(|e| SignInError::Unreachable(cause(&e)))?;
        if !answer.status().is_success() {
            return Err(SignInError::Refused(format!(
                "GET /user answered {}",
                answer.status()
            )));
        }
        let user: User = answer
            .json()
            .await
            .map_err(|e| SignInError::Unreadable(e.to_string()))?;
        if !crate::model::people::valid_login(&user.login) {
            return Err(SignInError::Unreadable(
                "GET /user named no valid login".into(),
            ));
        }
        Ok(user.login)
    }

    async fn exchange(
        &self,
        code: &str,
        redirect_uri: Option<&str>,
    ) -> Result<SecretString, SignInError> {
        let mut form = vec![
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.config.client_secret.expose_secret()),
            ("code", code),
        ];
        if let Some(uri) = redirect_uri {
            form.push(("redirect_uri", uri));
        }
        let body = serde_urlencoded::to_string(form)
            .map_err(|e| SignInError::Unreadable(e.to_string()))?;
        let answer = self
            .http
            .post(format!("{}/login/oauth/access_token", self.config.web_url))
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| SignInError::Unreachable(cause(&e)))?;
        if !answer.status().is_success() {
            return Err(SignInError::Refused(format!(
                "the token exchange answered {}",
                answer.status()
            )));
        }
        let answer: TokenAnswer = answer
            .json()
            .await
            .map_err(|e| SignInError::Unreadable(e.to_string()))?;
        match (answer.access_token, answer.error) {
            (Some(token), None) => Ok(SecretString::from(token)),
            (_, error) => {
                let said = answer
                    .error_description
                    .or(error)
                    .unwrap_or_else(|| "no token".into());
                Err(SignInError::Refused(
                    said.chars().filter(|c| !c.is_control()).take(200).collect(),
                ))
            }
        }
    }
}
