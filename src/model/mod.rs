//! The vocabulary every layer shares: identifiers, the deployments deployhook creates and
//! runs, the approvals an environment may ask for before they run (`approval`), what a
//! delivery leads to, the order of merges, the policies a queue follows, where the database
//! is (password masked when shown), the short texts sent to GitHub, the notifications a
//! team is sent, who acts and what their role lets them do (`people`), what the audit log
//! records of what they did (`audit`), what is in each deploy (`changelog`), what a tag or release deploys (`tag`), and who a client is for the caps on what one may
//! hold.
//! Defined here, at the bottom, so that the layers above can speak of them without
//! importing one another.
//!
//! May use: nothing of the crate outside this folder.

pub mod approval;
pub mod audit;
pub mod changelog;
pub mod checks;
pub mod client;
pub mod command;
pub mod database;
pub mod deployment;
pub mod effect;
pub mod ids;
pub mod merge;
pub mod notification;
pub mod people;
pub mod policy;
pub mod preview;
pub mod rollback;
pub mod tag;
pub mod text;
pub mod window;

pub use approval::ApprovalRule;
pub use audit::{AuditAction, AuditEntry, AuditOutcome};
pub use changelog::{Change, Changelog, ChangelogState};
pub use checks::{
    CheckKind, CheckReport, CheckResult, CheckSource, CheckState, Gate, Required, Verdict,
};
pub use client::ClientKey;
pub use command::{Command, CommandRequest};
pub use database::{DatabaseLocation, InvalidDatabase};
pub use deployment::{
    DEPLOY_TASK, DeployJob, DeploymentRequest, DeploymentState, NewDeployment, Promotion,
    StatusRequest,
};
pub use effect::{Effect, Outcome};
pub use ids::{CommitSha, DeliveryId, DeploymentId, Environment, HookId, InvalidId, RepoName};
pub use merge::{Merge, MergedAt};
pub use notification::{Notification, NotificationKind};
pub use people::{Action, Actor, Grantee, Role, Via};
pub use policy::{OnInterrupt, Policy, Sync};
pub use preview::{PreviewChange, PreviewSlot};
pub use tag::TagDeploy;
pub use window::{Clearance, Hold, Schedule};
