//! Who runs a command: the name recorded on what it does (a lock, a rollback, a manual
//! deployment's `deploy_user`, the Slack message about it). `$SUDO_USER` under sudo, `$USER` when it is set; where
//! it is not (cron, containers, systemd units), the operating system's name for the
//! current uid, and failing that the uid itself: a record should name a person or an
//! account someone can look up, never a constant that names nobody.

use std::ffi::CStr;

/// The longest buffer the password database's answer may need (its entries are short; a
/// directory service's can be long).
const MAX_PASSWD_BUFFER: usize = 1 << 20;

/// Under `sudo`, the person who ran it (`$SUDO_USER`); else `$USER`, else the account of
/// the current uid, else `uid N`. On a server the admin commands run as
/// `sudo deployhook --env-file /etc/deployhook/env lock …`, where `$USER` is `root`.
pub fn name() -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|u| !u.trim().is_empty());
    let by_sudo = (uid() == 0)
        .then(|| var("SUDO_USER"))
        .flatten()
        .filter(|u| u != "root");
    by_sudo
        .or_else(|| var("USER"))
        .or_else(account)
        .unwrap_or_else(|| format!("uid {}", uid()))
}

/// `explicit` (`--by`) when given, else [`name`].
pub fn name_or(explicit: Option<&str>) -> String {
    explicit
        .filter(|by| !by.trim().is_empty())
        .map_or_else(name, str::to_owned)
}

fn uid() -> libc::uid_t {
    // SAFETY: getuid(2) takes nothing, cannot fail and touches no memory of ours.
    unsafe { libc::getuid() }
}

/// The current uid's login name from the password database (`/etc/passwd`, or whatever
/// NSS is configured to ask); `None` when it has no entry (a container's arbitrary uid).
fn account() -> Option<String> {
    let uid = uid();
    let mut buffer = vec![0u8; 1024];
    loop {
        // SAFETY: `passwd` is plain data (integers and pointers), valid zeroed.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to memory we own and that outlives the call; the buffer's
        // length is passed with it. The reentrant variant shares no static state.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &raw mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &raw mut found,
            )
        };
        if rc == libc::ERANGE && buffer.len() < MAX_PASSWD_BUFFER {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if rc != 0 || found.is_null() || entry.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success `pw_name` points at a NUL-terminated string inside `buffer`,
        // which is still alive here.
        let name = unsafe { CStr::from_ptr(entry.pw_name) };
        let name = name.to_string_lossy().trim().to_owned();
        return (!name.is_empty()).then_some(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_of_the_current_uid_is_the_one_id_names() {
        let id = std::process::Command::new("id").arg("-un").output();
        let Some(id) = id.ok().filter(|o| o.status.success()) else {
            return; // no `id`, or a uid without a name: nothing to compare with
        };
        let expected = String::from_utf8_lossy(&id.stdout).trim().to_owned();
        assert_eq!(account().as_deref(), Some(expected.as_str()));
    }

    #[test]
    fn an_explicit_name_wins_and_an_empty_one_does_not_count() {
        assert_eq!(name_or(Some("alice")), "alice");
        assert_eq!(name_or(Some("  ")), name());
        assert!(!name().is_empty());
        assert_ne!(name(), "deployhook-cli");
    }
}
