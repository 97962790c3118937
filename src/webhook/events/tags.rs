//! `push` and `release`: what deploys an environment with `tags` or `releases`. Only the
//! fields those read; a push of a branch parses too (and is ignored by the guide).

use serde::Deserialize;

use super::{Account, Installation, Repository};

/// `push`: commits or a tag were pushed, or a ref deleted. It has no `action`.
#[derive(Debug, Deserialize)]
pub struct PushEvent {
    /// `refs/tags/v1.2.0`, or `refs/heads/main` for a branch.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// What the ref names now: all zeros when it was deleted. For an annotated tag, the tag
    /// object's id rather than its commit's (see `head_commit`).
    pub after: Option<String>,
    #[serde(default)]
    pub deleted: bool,
    /// The commit the ref names now: for a tag, the tagged commit, annotated or not.
    pub head_commit: Option<HeadCommit>,
    pub pusher: Option<Pusher>,
    pub sender: Option<Account>,
    pub repository: Option<Repository>,
    pub installation: Option<Installation>,
}

impl PushEvent {
    /// The tag's name, when a tag was pushed.
    pub fn tag(&self) -> Option<&str> {
        self.git_ref.strip_prefix("refs/tags/")
    }
}

#[derive(Debug, Deserialize)]
pub struct HeadCommit {
    pub id: String,
}

/// Who pushed, by the name of their Git account.
#[derive(Debug, Deserialize)]
pub struct Pusher {
    pub name: Option<String>,
}

/// `release`: a release was published, edited, deleted…
#[derive(Debug, Deserialize)]
pub struct ReleaseEvent {
    pub action: String,
    pub release: Release,
    pub sender: Option<Account>,
    pub repository: Option<Repository>,
    pub installation: Option<Installation>,
}

#[derive(Debug, Deserialize)]
pub struct Release {
    pub tag_name: String,
    pub name: Option<String>,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub prerelease: bool,
    pub author: Option<Account>,
}
