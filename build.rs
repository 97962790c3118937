//! Build script: records the commit the binary is built from, for `deployhook --version`.
//!
//! A deploy server is asked "which build is this?" after every upgrade; the version number
//! alone does not say which commit between two releases is running. The commit comes from
//! `DEPLOYHOOK_BUILD_COMMIT` when set (builds from a source tarball, distribution
//! packaging), else from `git` in the checkout, else it is `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DEPLOYHOOK_BUILD_COMMIT");
    let commit = std::env::var("DEPLOYHOOK_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(commit_from_git)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=DEPLOYHOOK_COMMIT={}", commit.trim());
}

/// The checked-out commit, abbreviated; and the files whose change means a new commit
/// (HEAD, the branch it names, packed refs), so the script reruns only on a commit or a
/// checkout, not on every edit.
fn commit_from_git() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let git_dir = PathBuf::from(git(&["rev-parse", "--git-dir"])?);
    let common_dir = PathBuf::from(git(&["rev-parse", "--git-common-dir"])?);
    let head = git_dir.join("HEAD");
    watch(&head);
    watch(&common_dir.join("packed-refs"));
    if let Ok(text) = std::fs::read_to_string(&head)
        && let Some(branch) = text.trim().strip_prefix("ref: ")
    {
        watch(&common_dir.join(branch));
    }
    Some(commit)
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
