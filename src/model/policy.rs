//! The settings that configuration, the command line and the store share: how a queue of
//! deployments is run ([`Policy`]), what becomes of a deploy interrupted by a restart
//! ([`OnInterrupt`]), and how hard a commit works to reach the disk ([`Sync`]).

/// What to do when several deployments of one repository and environment are waiting.
/// Whichever it is, an automatic deploy never deploys a merge older than one its
/// environment already runs or has queued (see `store::merges::marks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Run each, oldest first.
    Queue,
    /// Run only the newest; the older ones are marked `inactive`, naming it.
    #[default]
    Latest,
}

/// What to do at start with a job that was running when deployhook stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnInterrupt {
    /// Report it as `error`: deploy commands need not be safe to run twice.
    #[default]
    Error,
    /// Queue it again.
    Retry,
}

/// How hard a commit works to reach the disk before a delivery is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sync {
    /// Sync the log to disk at every commit: an acknowledged delivery survives a crash of
    /// deployhook, of the machine, and a power cut. One sync serves every batch committed
    /// while the previous sync ran.
    Full,
    /// Write the log at every commit, sync it at checkpoints: an acknowledged delivery
    /// survives a crash or kill of deployhook; a crash of the machine or a power cut may
    /// lose the last moments' deliveries (GitHub shows them, and they can be redelivered).
    Normal,
}
