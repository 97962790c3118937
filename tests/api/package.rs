//! What the Debian package ships, checked before `cargo deb` runs: the man pages and shell
//! completions made from the CLI (committed, so a plain `cargo deb` finds them; stale
//! ones fail here), the service's env file (every setting of `.env.example`), the unit,
//! every asset `Cargo.toml` names, and `--version`. The installed package itself is
//! tested by `scripts/package-check` (CI).
//!
//! After a change to the CLI: `DEPLOYHOOK_BLESS=1 cargo test --test api package` rewrites
//! the generated files; review and commit them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The CLI with the bare version number: the generated files must not change with each
/// commit (`--version` adds the commit; see `build.rs`).
fn cli() -> clap::Command {
    let mut cmd = deployhook::cli::Cli::command().version(env!("CARGO_PKG_VERSION"));
    cmd.build();
    cmd
}

/// Every file generated from the CLI, by path under the checkout: one man page for
/// `deployhook` and one per command (`deployhook-serve.1`, as git does), and the
/// completion scripts of the shells Debian has directories for.
fn generated() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let cmd = cli();
    files.insert("contrib/man/deployhook.1".to_owned(), man(cmd.clone()));
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        // clap takes static names; a test's few leaked strings cost nothing.
        let name: &'static str = format!("deployhook-{}", sub.get_name()).leak();
        let page = sub.clone().name(name).bin_name(name.replacen('-', " ", 1));
        files.insert(format!("contrib/man/{name}.1"), man(page));
    }
    for (shell, path) in [
        ("bash", "contrib/completions/deployhook.bash"),
        ("zsh", "contrib/completions/_deployhook"),
        ("fish", "contrib/completions/deployhook.fish"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_deployhook"))
            .args(["completions", shell])
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success(), "completions {shell}: {out:?}");
        files.insert(path.to_owned(), out.stdout);
    }
    files
}

fn man(cmd: clap::Command) -> Vec<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page).unwrap();
    page
}

#[test]
fn the_man_pages_and_completions_are_those_the_cli_makes() {
    let files = generated();
    let bless = std::env::var_os("DEPLOYHOOK_BLESS").is_some();
    let mut stale = Vec::new();
    for (path, content) in &files {
        let on_disk = std::fs::read(root().join(path)).ok();
        if on_disk.as_deref() == Some(content.as_slice()) {
            continue;
        }
        if bless {
            let full = root().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        } else {
            stale.push(path.clone());
        }
    }
    // A page of a command that no longer exists would be shipped too.
    for dir in ["contrib/man", "contrib/completions"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy());
            if !files.contains_key(&path) {
                if bless {
                    std::fs::remove_file(root().join(&path)).unwrap();
                } else {
                    stale.push(format!("{path} (no such command)"));
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "out of date with the CLI: {stale:?}; run DEPLOYHOOK_BLESS=1 cargo test --test api package"
    );
    // The pages say something: the serve page lists its settings with their variables.
    let serve = String::from_utf8_lossy(&files["contrib/man/deployhook-serve.1"]).into_owned();
    assert!(serve.contains("GITHUB_WEBHOOK_SECRET") && serve.contains(".SH OPTIONS"));
    let top = String::from_utf8_lossy(&files["contrib/man/deployhook.1"]).into_owned();
    assert!(top.contains("deployhook\\-serve(1)") && top.contains("deployhook\\-rollback(1)"));
}

/// The names a settings file sets or shows commented out, in order.
fn settings(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.strip_prefix("# ").unwrap_or(line);
            let (name, _) = line.split_once('=')?;
            let setting = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            setting.then(|| name.to_owned())
        })
        .collect()
}

#[test]
fn the_service_env_file_has_every_setting_of_env_example_in_its_order() {
    let example = settings(&read(".env.example"));
    let service = settings(&read("debian/env"));
    assert!(example.len() > 30, "{example:?}");
    assert_eq!(service, example, "debian/env and .env.example differ");
    // And the service's own paths, not the checkout's.
    let env = read("debian/env");
    assert!(env.contains("\nDEPLOYHOOK_DATABASE=/var/lib/deployhook/deployhook.db\n"));
    assert!(
        env.contains("\nDEPLOY_COMMAND=\n"),
        "no deploy command of the checkout"
    );
    assert!(!env.contains("examples/deploy.sh\n"));
}

#[test]
fn the_unit_runs_the_packaged_binary_hardened_and_lets_deploys_finish() {
    let unit = read("debian/deployhook.service");
    for line in [
        "ExecStart=/usr/bin/deployhook --env-file /etc/deployhook/env serve",
        "User=deployhook",
        "WorkingDirectory=/var/lib/deployhook",
        "KillMode=mixed",
        "LimitNOFILE=65536",
        "TimeoutStopSec=120",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line} missing from the unit"
        );
    }
    let readme = read("README.md");
    assert!(readme.contains("debian/deployhook.service"));
}

/// Every source `[package.metadata.deb]` names exists, so `cargo deb` cannot fail (or
/// ship less) on a missing file; globs must match something.
#[test]
fn every_asset_of_the_package_exists() {
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().unwrap();
    assert!(assets.len() >= 8);
    for asset in assets {
        let source = asset[0].as_str().unwrap();
        if source.starts_with("target/") {
            continue;
        }
        let matches = matching(&root(), source);
        assert!(matches > 0, "{source}: no such file");
    }
    for script in ["debian/postinst", "debian/postrm"] {
        let text = read(script);
        assert!(text.starts_with("#!/bin/sh\n") && text.contains("#DEBHELPER#"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(root().join(script))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o111, 0o111, "{script} must be executable");
    }
}

/// Files matching `pattern`: a path, or a directory and `*.ext` (all the manifest uses).
fn matching(root: &Path, pattern: &str) -> usize {
    match pattern.rsplit_once("/*") {
        Some((dir, ext)) => std::fs::read_dir(root.join(dir))
            .map(|entries| {
                entries
                    .filter(|e| {
                        e.as_ref()
                            .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(ext))
                    })
                    .count()
            })
            .unwrap_or(0),
        None => usize::from(root.join(pattern).is_file()),
    }
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = Command::new(env!("CARGO_BIN_EXE_deployhook"))
        .arg("--version")
        .env_clear()
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    let version = format!("deployhook {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&version), "{text}");
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success());
    match head {
        // A checkout: exactly its commit.
        Some(head) => {
            let commit = String::from_utf8(head.stdout).unwrap();
            assert_eq!(text.trim(), format!("{version}{})", commit.trim()));
        }
        None => assert!(text.trim().ends_with(')'), "{text}"),
    }
}
