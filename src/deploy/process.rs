//! The deploy command's process group: stopping it (SIGTERM, a grace period, SIGKILL to the
//! whole group, so children and grandchildren go too), and recognising a group left
//! running by a previous deployhook, so the next start can stop it — by the leader's boot
//! and start time, never by a pid alone.

use std::time::Duration;

use tokio::process::Child;

/// Between SIGTERM and SIGKILL when a deploy times out: time for it to clean up.
pub(super) const KILL_GRACE: Duration = Duration::from_secs(10);

/// SIGTERM to the command's process group, then SIGKILL after [`KILL_GRACE`] (or at once
/// when `hurry` is cancelled).
pub(super) async fn stop_group(child: &mut Child, hurry: &tokio_util::sync::CancellationToken) {
    let Some(pid) = child.id() else {
        return; // already reaped
    };
    tracing::warn!(pid, "sending SIGTERM to the deploy's process group");
    signal_group(pid, libc::SIGTERM);
    tokio::select! {
        waited = tokio::time::timeout(KILL_GRACE, child.wait()) => {
            if waited.is_err() {
                tracing::warn!(pid, "deploy still running after SIGTERM; sending SIGKILL");
            }
        }
        () = hurry.cancelled() => {}
    }
    // Children may outlive the leader; SIGKILL the group whatever the leader did.
    signal_group(pid, libc::SIGKILL);
    let _ = child.wait().await;
}

/// A shell loop that watches this server and the command's process group, once a second:
/// when the server is gone (SIGKILLed, crashed), it SIGKILLs the group, so that a deploy
/// never outlives the server that runs it (another replica may be about to run the same
/// environment); when the group is gone, it exits. It ignores the terminal's signals and
/// sits in a group of its own, so a Ctrl-C meant for the server does not end it first.
const GUARD: &str = r#"trap "" INT HUP
while kill -s 0 "$1" 2>/dev/null && kill -s 0 -- "-$2" 2>/dev/null; do sleep 1; done
kill -s 0 "$1" 2>/dev/null || kill -s KILL -- "-$2" 2>/dev/null
exit 0"#;

/// Starts the guard of the process group `pgid` (see [`GUARD`]). Not waited for: the
/// runtime reaps it once it exits.
pub(super) fn guard_group(pgid: u32) {
    let spawned = tokio::process::Command::new("/bin/sh")
        .args(["-c", GUARD, "deployhook-guard"])
        .arg(std::process::id().to_string())
        .arg(pgid.to_string())
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(false)
        .spawn();
    if let Err(err) = spawned {
        tracing::warn!(
            pgid,
            "could not start the guard that stops this deploy if deployhook dies: {err}"
        );
    }
}

/// A process's identity: this boot's id and the process's start time. A pid alone may name
/// another process after the first exits, or after a reboot.
pub fn process_identity(pid: u32) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, start time; counted after the command name, which may hold spaces.
    let start = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?;
    Some(format!("{}:{start}", boot.trim()))
}

/// SIGKILLs a deploy command's process group left running by a previous deployhook, if its
/// leader is still the very process that was recorded. Returns whether it did.
pub fn kill_leftover(pgid: u32, identity: &str) -> bool {
    if process_identity(pgid).as_deref() != Some(identity) {
        return false;
    }
    signal_group(pgid, libc::SIGKILL);
    true
}

fn signal_group(pgid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. The group id is
    // the pid of a child we spawned with `process_group(0)`. A group id stays taken while
    // any member lives; once none does, the call finds nobody (ESRCH). Naming an unrelated
    // group would need the pid space to wrap within the grace period.
    unsafe {
        libc::kill(-pgid, signal);
    }
}
