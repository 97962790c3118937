//! What the stand-in remembers, in memory: the deployments created through it and their
//! statuses, as the JSON objects GitHub's Deployments API answers with (and puts in its
//! webhooks), so a test or a reader can list them back. Also the other objects those
//! answers embed: the repository, and the user the token stands for.

use std::sync::Mutex;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Who the stand-in says created each deployment and status: a person (a `User`), as a
/// personal token's calls are on GitHub. deployhook runs deployments made by a person or by
/// itself, and leaves those of bots and other Apps alone.
pub const CREATOR: &str = "stand-in";

/// Deployments kept at most: the stand-in lives for a trial or a test run; past this, a
/// create is refused rather than memory growing without end.
pub const MAX_DEPLOYMENTS: usize = 10_000;
/// Statuses kept at most per deployment, for the same reason.
pub const MAX_STATUSES: usize = 1_000;

/// The deployments created so far, and their statuses.
#[derive(Debug)]
pub struct Records {
    /// The stand-in's own base URL (`http://127.0.0.1:4568`), for the objects' `url`s.
    base: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_status: u64,
    deployments: Vec<Stored>,
}

#[derive(Debug)]
struct Stored {
    repo: String,
    deployment: Value,
    /// Oldest first; listed newest first, as GitHub does.
    statuses: Vec<Value>,
}

/// What a create-deployment request asked for, checked.
#[derive(Debug)]
pub struct NewDeployment {
    pub git_ref: String,
    pub task: String,
    pub environment: String,
    pub payload: Value,
    pub description: String,
    pub production_environment: Option<bool>,
    pub transient_environment: bool,
}

/// What a create-status request asked for, checked.
#[derive(Debug)]
pub struct NewStatus {
    pub state: String,
    pub description: String,
    pub environment: Option<String>,
    pub log_url: String,
    pub environment_url: String,
}

/// Why a status could not be recorded.
#[derive(Debug, PartialEq, Eq)]
pub enum StatusRefused {
    NoDeployment,
    TooMany,
}

impl Records {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind, still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a deployment of `repo` (`owner/name`); the deployment object, or `None` at
    /// [`MAX_DEPLOYMENTS`].
    pub fn create_deployment(&self, repo: &str, new: NewDeployment) -> Option<Value> {
        let mut inner = self.lock();
        if inner.deployments.len() >= MAX_DEPLOYMENTS {
            return None;
        }
        let id = inner.deployments.len() as u64 + 1;
        let now = now();
        let url = format!("{}/repos/{repo}/deployments/{id}", self.base);
        let production = new
            .production_environment
            .unwrap_or(new.environment == "production");
        let deployment = json!({
            "url": url,
            "id": id,
            "node_id": format!("DE_standin{id}"),
            "task": new.task,
            "original_environment": new.environment,
            "environment": new.environment,
            "description": new.description,
            "created_at": now,
            "updated_at": now,
            "statuses_url": format!("{url}/statuses"),
            "repository_url": format!("{}/repos/{repo}", self.base),
            "creator": self.user(),
            "sha": commit_of(&new.git_ref),
            "ref": new.git_ref,
            "payload": new.payload,
            "transient_environment": new.transient_environment,
            "production_environment": production,
            "performed_via_github_app": null,
        });
        inner.deployments.push(Stored {
            repo: repo.to_owned(),
            deployment: deployment.clone(),
            statuses: Vec::new(),
        });
        Some(deployment)
    }

    /// Records a status of deployment `id` of `repo`: the status object and the deployment
    /// it belongs to.
    pub fn create_status(
        &self,
        repo: &str,
        id: u64,
        new: NewStatus,
    ) -> Result<(Value, Value), StatusRefused> {
        let base = self.base.clone();
        let user = self.user();
        let mut inner = self.lock();
        inner.next_status += 1;
        let status_id = inner.next_status;
        let stored =
            find_mut(&mut inner.deployments, repo, id).ok_or(StatusRefused::NoDeployment)?;
        if stored.statuses.len() >= MAX_STATUSES {
            return Err(StatusRefused::TooMany);
        }
        let deployment_url = format!("{base}/repos/{repo}/deployments/{id}");
        let environment = new
            .environment
            .unwrap_or_else(|| text(&stored.deployment["environment"]).to_owned());
        let now = now();
        let status = json!({
            "url": format!("{deployment_url}/statuses/{status_id}"),
            "id": status_id,
            "node_id": format!("DES_standin{status_id}"),
            "state": new.state,
            "creator": user,
            "description": new.description,
            "environment": environment,
            // GitHub still fills the old name of log_url.
            "target_url": new.log_url,
            "created_at": now,
            "updated_at": now,
            "deployment_url": deployment_url,
            "repository_url": format!("{base}/repos/{repo}"),
            "environment_url": new.environment_url,
            "log_url": new.log_url,
            "performed_via_github_app": null,
        });
        stored.statuses.push(status.clone());
        stored.deployment["updated_at"] = json!(now);
        Ok((status, stored.deployment.clone()))
    }

    /// The deployments of `repo`, newest first, those matching every `(field, value)`.
    pub fn deployments(&self, repo: &str, filters: &[(&str, &str)]) -> Vec<Value> {
        let inner = self.lock();
        inner
            .deployments
            .iter()
            .rev()
            .filter(|d| d.repo == repo)
            .filter(|d| filters.iter().all(|(k, v)| text(&d.deployment[*k]) == *v))
            .map(|d| d.deployment.clone())
            .collect()
    }

    pub fn deployment(&self, repo: &str, id: u64) -> Option<Value> {
        let mut inner = self.lock();
        find_mut(&mut inner.deployments, repo, id).map(|d| d.deployment.clone())
    }

    /// The statuses of deployment `id`, newest first; `None` when there is no such deployment.
    pub fn statuses(&self, repo: &str, id: u64) -> Option<Vec<Value>> {
        let mut inner = self.lock();
        let stored = find_mut(&mut inner.deployments, repo, id)?;
        Some(stored.statuses.iter().rev().cloned().collect())
    }

    /// Every deployment of any repository, oldest first, each with its statuses (oldest
    /// first): what `try` watches.
    pub fn all(&self) -> Vec<(Value, Vec<String>)> {
        let inner = self.lock();
        inner
            .deployments
            .iter()
            .map(|d| {
                let states = d.statuses.iter().map(|s| text(&s["state"]).to_owned());
                (d.deployment.clone(), states.collect())
            })
            .collect()
    }

    /// The repository object GitHub embeds in its answers and webhooks, for `owner/name`.
    pub fn repository(&self, repo: &str) -> Value {
        let (owner, name) = repo.split_once('/').unwrap_or((repo, repo));
        json!({
            "id": small_id(repo),
            "node_id": format!("R_standin{}", small_id(repo)),
            "name": name,
            "full_name": repo,
            "private": false,
            "owner": account(&self.base, owner, "Organization"),
            "html_url": format!("https://github.com/{repo}"),
            "url": format!("{}/repos/{repo}", self.base),
            "deployments_url": format!("{}/repos/{repo}/deployments", self.base),
            "default_branch": "main",
        })
    }

    /// The user the stand-in's token stands for.
    pub fn user(&self) -> Value {
        account(&self.base, CREATOR, "User")
    }
}

fn find_mut<'a>(deployments: &'a mut [Stored], repo: &str, id: u64) -> Option<&'a mut Stored> {
    let index = usize::try_from(id).ok()?.checked_sub(1)?;
    deployments.get_mut(index).filter(|d| d.repo == repo)
}

fn account(base: &str, login: &str, kind: &str) -> Value {
    json!({
        "login": login,
        "id": small_id(login),
        "node_id": format!("U_standin{}", small_id(login)),
        "url": format!("{base}/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
        "type": kind,
        "site_admin": false,
    })
}

/// The commit a ref names. The stand-in has no repository: a full SHA is its own commit,
/// and any other ref (a branch, a tag) gets a made-up one, the same each time.
pub fn commit_of(git_ref: &str) -> String {
    let is_sha = git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit());
    if is_sha {
        return git_ref.to_ascii_lowercase();
    }
    hex::encode(Sha256::digest(git_ref.as_bytes()))[..40].to_owned()
}

/// A stable id for a name, in the range GitHub's ids take.
fn small_id(name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()) % 1_000_000_000 + 1
}

pub fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Now, as GitHub writes times: `2026-03-03T14:02:11Z`.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(git_ref: &str, environment: &str) -> NewDeployment {
        NewDeployment {
            git_ref: git_ref.into(),
            task: "deploy".into(),
            environment: environment.into(),
            payload: json!({}),
            description: String::new(),
            production_environment: None,
            transient_environment: false,
        }
    }

    #[test]
    fn deployments_get_sequential_ids_and_a_commit_for_their_ref() {
        let records = Records::new("http://127.0.0.1:4568/");
        let sha = "6F1E3C9A2B4D5E6F708192A3B4C5D6E7F8091A2B";
        let first = records
            .create_deployment("acme/widgets", new(sha, "production"))
            .unwrap();
        let second = records
            .create_deployment("acme/widgets", new("main", "staging"))
            .unwrap();
        assert_eq!(
            (first["id"].as_u64(), second["id"].as_u64()),
            (Some(1), Some(2))
        );
        assert_eq!(first["sha"], sha.to_ascii_lowercase());
        assert_eq!(second["sha"].as_str().unwrap().len(), 40);
        assert_eq!(first["production_environment"], true);
        assert_eq!(second["production_environment"], false);
        assert_eq!(first["creator"]["type"], "User");
        assert_eq!(
            first["statuses_url"],
            "http://127.0.0.1:4568/repos/acme/widgets/deployments/1/statuses"
        );
        let staging = records.deployments("acme/widgets", &[("environment", "staging")]);
        assert_eq!(staging, [second]);
        assert!(records.deployments("acme/other", &[]).is_empty());
    }

    #[test]
    fn statuses_belong_to_their_deployment_and_list_newest_first() {
        let records = Records::new("http://127.0.0.1:4568");
        records.create_deployment("acme/widgets", new("main", "production"));
        let status = |state: &str| NewStatus {
            state: state.into(),
            description: String::new(),
            environment: None,
            log_url: String::new(),
            environment_url: String::new(),
        };
        let (queued, deployment) = records
            .create_status("acme/widgets", 1, status("queued"))
            .unwrap();
        assert_eq!(queued["environment"], "production");
        assert_eq!(deployment["id"], 1);
        records
            .create_status("acme/widgets", 1, status("success"))
            .unwrap();
        let states: Vec<Value> = records
            .statuses("acme/widgets", 1)
            .unwrap()
            .iter()
            .map(|s| s["state"].clone())
            .collect();
        assert_eq!(states, [json!("success"), json!("queued")]);
        assert_eq!(
            records.create_status("acme/other", 1, status("success")),
            Err(StatusRefused::NoDeployment)
        );
        assert_eq!(
            records.create_status("acme/widgets", 2, status("success")),
            Err(StatusRefused::NoDeployment)
        );
    }
}
