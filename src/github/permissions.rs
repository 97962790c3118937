//! What GitHub says a person may do: their permission on a repository
//! (`GET /repos/{repo}/collaborators/{login}/permission`) and whether they belong to a team
//! (`GET /orgs/{org}/teams/{slug}/memberships/{login}`), asked with deployhook's own
//! credentials and kept for a short while. The cache is what bounds how long a person
//! removed from a repository keeps their access: one `ttl` at most. Per replica, in
//! memory: each asks GitHub itself, so none can be told a stale answer by another.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::github::{GitHubClient, GitHubError};
use crate::model::{RepoName, Role};

/// Answers kept at most: past it the cache starts over, so a flood of names cannot grow it.
const MAX_ENTRIES: usize = 10_000;

/// Answers kept with when they were got.
type Cache<K, V> = Mutex<HashMap<K, (V, Instant)>>;

/// Permissions and team memberships, from GitHub, cached for `ttl`.
#[derive(Debug)]
pub struct Permissions {
    client: GitHubClient,
    ttl: Duration,
    roles: Cache<(String, String), Role>,
    teams: Cache<(String, String, String), bool>,
    /// App mode: the client acting for each repository's installation.
    clients: Cache<String, GitHubClient>,
}

#[derive(Deserialize)]
struct PermissionBody {
    permission: String,
}

#[derive(Deserialize)]
struct MembershipBody {
    state: String,
}

impl Permissions {
    pub fn new(client: GitHubClient, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            roles: Mutex::default(),
            teams: Mutex::default(),
            clients: Mutex::default(),
        }
    }

    /// `login`'s role on `repo`: [`Role::None`] when GitHub knows no such collaborator.
    pub async fn role(&self, login: &str, repo: &RepoName) -> Result<Role, GitHubError> {
        if !crate::model::people::valid_login(login) {
            return Ok(Role::None);
        }
        let key = (
            login.to_ascii_lowercase(),
            repo.as_ref().to_ascii_lowercase(),
        );
        if let Some(role) = fresh(&self.roles, &key, self.ttl) {
            return Ok(role);
        }
        let path = format!("/repos/{repo}/collaborators/{login}/permission");
        let Some(client) = self.client_for(repo).await? else {
            return Ok(Role::None);
        };
        let role = match client
            .send("collaborator_permission", Method::GET, &path, None::<&()>)
            .await
        {
            Ok(response) => {
                let body: PermissionBody = response.json().await.map_err(GitHubError::Decode)?;
                Role::from_github(&body.permission)
            }
            // Not a user, or not one GitHub shows this token: no access.
            Err(err) if not_found(&err) => Role::None,
            Err(err) => return Err(err),
        };
        // On a public repository GitHub answers `read` for every account: read counts only
        // for a collaborator (directly, through a team, or as an organisation member).
        let role = if role == Role::Read && !self.collaborator(&client, login, repo).await? {
            Role::None
        } else {
            role
        };
        keep(&self.roles, key, role);
        Ok(role)
    }

    /// Whether `login` is an active member of `org`'s team `slug`. Asked with the
    /// credentials that reach `repo` (in App mode, its installation, which must be allowed
    /// to read the organisation's members).
    pub async fn in_team(
        &self,
        org: &str,
        slug: &str,
        login: &str,
        repo: &RepoName,
    ) -> Result<bool, GitHubError> {
        if !crate::model::people::valid_login(login) {
            return Ok(false);
        }
        let key = (org.to_owned(), slug.to_owned(), login.to_ascii_lowercase());
        if let Some(member) = fresh(&self.teams, &key, self.ttl) {
            return Ok(member);
        }
        let path = format!("/orgs/{org}/teams/{slug}/memberships/{login}");
        let Some(client) = self.client_for(repo).await? else {
            return Ok(false);
        };
        let member = match client
            .send("team_membership", Method::GET, &path, None::<&()>)
            .await
        {
            Ok(response) => {
                let body: MembershipBody = response.json().await.map_err(GitHubError::Decode)?;
                // `pending`: invited, not yet a member.
                body.state == "active"
            }
            Err(err) if not_found(&err) => false,
            Err(err) => return Err(err),
        };
        keep(&self.teams, key, member);
        Ok(member)
    }

    /// Forgets every answer: the next question goes to GitHub.
    pub fn forget(&self) {
        lock(&self.roles).clear();
        lock(&self.teams).clear();
    }

    /// Whether `login` is a collaborator of `repo` (`204`) or not (`404`).
    async fn collaborator(
        &self,
        client: &GitHubClient,
        login: &str,
        repo: &RepoName,
    ) -> Result<bool, GitHubError> {
        let path = format!("/repos/{repo}/collaborators/{login}");
        match client
            .send("collaborator", Method::GET, &path, None::<&()>)
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if not_found(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// The client that reaches `repo`; `None` when, in App mode, the App is not installed
    /// there (any more): nobody has access through deployhook then.
    async fn client_for(&self, repo: &RepoName) -> Result<Option<GitHubClient>, GitHubError> {
        if !self.client.is_app() {
            return Ok(Some(self.client.clone()));
        }
        let key = repo.as_ref().to_ascii_lowercase();
        if let Some(client) = fresh(&self.clients, &key, self.ttl) {
            return Ok(Some(client));
        }
        let client = match self.client.for_repository(repo).await {
            Ok(client) => client,
            Err(err) if not_found(&err) => return Ok(None),
            Err(err) => return Err(err),
        };
        keep(&self.clients, key, client.clone());
        Ok(Some(client))
    }
}

fn not_found(err: &GitHubError) -> bool {
    matches!(err, GitHubError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn fresh<K: std::hash::Hash + Eq, V: Clone>(
    cache: &Cache<K, V>,
    key: &K,
    ttl: Duration,
) -> Option<V> {
    let cache = lock(cache);
    let (value, at) = cache.get(key)?;
    (at.elapsed() < ttl).then(|| value.clone())
}

fn keep<K: std::hash::Hash + Eq, V>(cache: &Cache<K, V>, key: K, value: V) {
    let mut cache = lock(cache);
    if cache.len() >= MAX_ENTRIES {
        cache.clear();
    }
    cache.insert(key, (value, Instant::now()));
}
