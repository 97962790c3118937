//! Preview environments as the guide decides about them and the store records them: a pull
//! request's preview to open (or move to a newer head), or the previews of a pull request
//! to close; and each preview environment's slot — how many may be alive at once, and the
//! gate their deployments wait for — which the store needs to start the previews waiting
//! for room when one closes.

use crate::model::{Environment, Gate, NewDeployment, RepoName};

/// What a `pull_request` delivery (or the periodic check) does to previews.
#[derive(Debug, Clone, PartialEq)]
pub enum PreviewChange {
    /// Opened, reopened or pushed to: deploy `new` (its environment is the preview's own,
    /// `pr-42`) if there is room in `slot`, else wait for it.
    Open {
        new: Box<NewDeployment>,
        slot: PreviewSlot,
    },
    /// Closed, merged or not: tear down every preview of the pull request, and start the
    /// oldest waiting previews of their `slots` as room is made.
    Close {
        repo: RepoName,
        pull_request: u64,
        slots: Vec<PreviewSlot>,
    },
}

/// A preview environment's room, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewSlot {
    /// The `[[environment]]` table's name: what the limit counts under.
    pub config: Environment,
    /// Previews alive at once.
    pub limit: usize,
    /// The CI gate its deployments wait for, if any.
    pub gate: Option<Gate>,
}

/// The states a preview goes through, as stored.
pub mod state {
    /// No room yet: it starts when a preview of its environment closes.
    pub const WAITING: &str = "waiting";
    /// Its deployments are being created and run.
    pub const LIVE: &str = "live";
    /// Its pull request closed; its `destroy` runs.
    pub const CLOSING: &str = "closing";
    /// Destroyed (or never started): its deployments are `inactive`.
    pub const CLOSED: &str = "closed";
}
