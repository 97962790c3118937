//! What a delivery leads to: the [`Outcome`] its answer reports and the [`Effect`] the
//! store commits with it. The guide's handlers decide both; the store records them in one
//! transaction; the workers carry the effect out.

use crate::model::checks::CheckReport;
use crate::model::deployment::{DeployJob, NewDeployment, Promotion};

/// What a delivery led to, as reported in the response body and recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Work was queued: a deployment to create or a deploy to run.
    Accepted,
    /// Recorded, nothing to do (a `deployment_status`, a `ping`).
    Recorded,
    /// Nothing to do, for the reason in the message.
    Ignored,
    /// A redelivery of a delivery already received: nothing done.
    Duplicate,
    /// Nothing deployed: it would deploy a merge older than what its environment already
    /// runs or has queued, for the reason in the message. Not the sender's error (2xx).
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Recorded => "recorded",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
            Self::Skipped => "skipped",
        }
    }
}
/// The work a delivery sets in motion.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    None,
    /// One per environment that deploys the merge; those with a gate wait for its checks.
    CreateDeployment(Vec<NewDeployment>),
    /// A check reported on a commit: record it, and settle the waits on that commit.
    Checks(CheckReport),
    /// A deploy succeeded: these environments receive the same commit after their soak.
    Promote(Vec<Promotion>),
    Deploy(DeployJob),
    /// Record the deployment as waiting for the approvals `ApprovalRule` asks for: it is
    /// queued to run only once they are given.
    AwaitApproval(DeployJob, crate::model::approval::Asked),
    /// Record the deployment as run and failed with this description, without running it.
    Refuse(DeployJob, String),
    /// A command written in a pull-request comment, for the command worker to carry out.
    Command(crate::model::CommandRequest),
    /// A pushed tag or a published release: one deployment of its commit per environment
    /// whose `tags` or `releases` take it. No merge marks: a tag is a deliberate act.
    DeployTag(Vec<crate::model::tag::TagDeploy>),
    /// Open, move or close pull requests' previews, then record the other effect (a
    /// merged pull request's deployments, or `None`).
    Preview(Vec<crate::model::preview::PreviewChange>, Box<Effect>),
}
