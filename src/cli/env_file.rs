//! The settings file read before the command line: `--env-file FILE` when given (the
//! Debian service's `/etc/deployhook/env`, and an operator's `sudo deployhook --env-file
//! /etc/deployhook/env locks` on the same host, parsed the same way), else `.env` in the
//! working directory when there is one. Variables already in the environment win.
//!
//! It is read before clap parses, so that its values count as environment ones; the flag
//! is found by a scan of the arguments here, and declared on [`super::Cli`] for `--help`.
//! An error names the file and the line, never the line's text: it may hold a secret.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The value of `--env-file` among `args` (the program name first), if any: `--env-file
/// FILE` or `--env-file=FILE`, anywhere before a `--`.
pub fn from_args(args: impl IntoIterator<Item = OsString>) -> Option<PathBuf> {
    let mut args = args.into_iter().skip(1);
    let mut found = None;
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--env-file" {
            found = args.next().map(PathBuf::from);
        } else if let Some(value) = arg.to_str().and_then(|a| a.strip_prefix("--env-file=")) {
            found = Some(PathBuf::from(value));
        }
    }
    found
}

/// Loads `file`, or `.env` when none is named and one exists. The error says which file
/// and which line is wrong, without the line.
pub fn load(file: Option<&Path>) -> Result<(), String> {
    let path = file.map_or_else(|| PathBuf::from(".env"), Path::to_path_buf);
    match dotenvy::from_path(&path) {
        Ok(()) => Ok(()),
        Err(dotenvy::Error::Io(err))
            if file.is_none() && err.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(())
        }
        Err(dotenvy::Error::LineParse(text, at)) => Err(format!(
            "could not read {}: {} is not KEY=value (values with spaces, $, \\ or quotes go in single quotes: KEY='a b'); its text is not shown, it may hold a secret",
            path.display(),
            locate(&path, &text, at).map_or_else(
                || "a line".to_owned(),
                |(line, column)| format!("line {line}, column {column},")
            ),
        )),
        Err(dotenvy::Error::Io(err)) => Err(format!("could not read {}: {err}", path.display())),
        Err(err) => Err(format!(
            "could not read {}: {}",
            path.display(),
            describe(&err)
        )),
    }
}

/// Where in `path` dotenvy's error is: the 1-based line and column. dotenvy reports the
/// text it failed on — the whole line for a bad name, only the value for a bad value —
/// and an index into that text, not a line number.
fn locate(path: &Path, text: &str, at: usize) -> Option<(usize, usize)> {
    let content = std::fs::read_to_string(path).ok()?;
    let first = text.lines().next().filter(|t| !t.is_empty())?;
    content.lines().enumerate().find_map(|(i, line)| {
        let offset = line.find(first)?;
        Some((i + 1, line[..offset].chars().count() + at + 1))
    })
}

/// dotenvy's other errors, without echoing values (`EnvVar` names the variable only).
fn describe(err: &dotenvy::Error) -> String {
    match err {
        dotenvy::Error::EnvVar(e) => e.to_string(),
        _ => "not a settings file of KEY=value lines".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_flag_is_found_in_both_spellings_and_not_after_a_double_dash() {
        let found = |list: &[&str]| from_args(args(list));
        assert_eq!(found(&["dh", "serve"]), None);
        assert_eq!(
            found(&["dh", "--env-file", "/etc/deployhook/env", "serve"]),
            Some(PathBuf::from("/etc/deployhook/env"))
        );
        assert_eq!(
            found(&["dh", "locks", "--env-file=/x/env"]),
            Some(PathBuf::from("/x/env"))
        );
        assert_eq!(found(&["dh", "replay", "--", "--env-file", "x"]), None);
        // A value that merely looks like the flag is the program's first argument only.
        assert_eq!(found(&["--env-file", "serve"]), None);
    }

    #[test]
    fn a_malformed_line_is_named_by_number_and_its_secret_is_not_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        // Nothing before the bad line sets a variable: tests share the process environment.
        std::fs::write(&path, "# settings\n\nSECRET Hunter2Secret\n").unwrap();
        let err = load(Some(&path)).unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(!err.contains("Hunter2Secret"), "{err}");
    }

    #[test]
    fn a_malformed_value_is_named_by_line_and_column_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        // An unquoted value with a space: dotenvy reports the value alone.
        std::fs::write(
            &path,
            "# settings\n\n\nDEPLOYHOOK_ENV_FILE_TEST=Hunter2 Secret\n",
        )
        .unwrap();
        let err = load(Some(&path)).unwrap_err();
        assert!(err.contains("line 4, column"), "{err}");
        assert!(!err.contains("Hunter2"), "{err}");
    }

    #[test]
    fn a_named_file_that_is_missing_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = load(Some(&missing)).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }
}
