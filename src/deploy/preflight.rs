//! Before the first deploy: what would stop an environment's commands from starting — a
//! working directory that does not exist, a program that is not there, not executable, or
//! a script without a `#!` line (no shell runs the command, so the kernel must be able to
//! execute the file itself). `serve` logs these as warnings at start, `check-config` prints
//! them, and `check-config --strict` fails on them; without this they surface only as the
//! first deploy's `error`, after a merge.
//!
//! The program is found the way the runner's `Command` finds it: a name with a `/` is
//! taken relative to the working directory (the command runs there), a bare name is looked
//! up in the `PATH` the command gets (the environment's `env` PATH, else the server's, else
//! the runner's default), skipping files that are not executable as `execvp` does.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::EnvironmentConfig;
use crate::deploy::runner::DEFAULT_PATH;

/// One thing that would make a deploy fail to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The environment it belongs to.
    pub environment: String,
    /// What to look at and what to do, in words.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "environment {}: {}", self.environment, self.message)
    }
}

/// The problems of every environment, in order.
pub fn check_all(environments: &[EnvironmentConfig]) -> Vec<Problem> {
    let server_path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from(DEFAULT_PATH));
    environments
        .iter()
        .flat_map(|environment| {
            // As the runner sets it: the environment's own `env` PATH wins over the server's.
            let path = environment
                .env
                .0
                .get("PATH")
                .map_or_else(|| server_path.clone(), OsString::from);
            check(environment, &path)
        })
        .collect()
}

/// The problems of one environment's working directory and commands, looking bare program
/// names up in `path`.
pub fn check(environment: &EnvironmentConfig, path: &std::ffi::OsStr) -> Vec<Problem> {
    let problem = |message: String| Problem {
        environment: environment.name.to_string(),
        message,
    };
    let directory = environment.working_directory.as_deref();
    if let Some(dir) = directory.filter(|d| !d.is_dir()) {
        let what = if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        // Every command would fail the same way: one problem says it all.
        return vec![problem(format!(
            "working directory {} {what}: create it, or change `working_directory`",
            dir.display()
        ))];
    }
    let mut commands: Vec<(String, &[String])> = vec![("command".into(), &environment.command)];
    if let Some(rollback) = &environment.rollback_command {
        commands.push(("rollback_command".into(), rollback));
    }
    for (task, argv) in &environment.tasks {
        commands.push((format!("the command of task {task}"), argv));
    }
    if let Some(preview) = &environment.preview {
        commands.push(("destroy_command".into(), &preview.destroy_command));
    }
    let mut problems = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (what, argv) in commands {
        let Some(program) = argv.first() else {
            continue;
        };
        if seen.contains(&program.as_str()) {
            continue;
        }
        seen.push(program);
        if let Err(message) = check_program(program, directory, path) {
            problems.push(problem(format!("{what}: {message}")));
        }
    }
    problems
}

/// Whether `program` can be executed as the runner would; if not, why and what to do.
fn check_program(
    program: &str,
    directory: Option<&Path>,
    path: &std::ffi::OsStr,
) -> Result<(), String> {
    let file = if program.contains('/') {
        let file = PathBuf::from(program);
        match directory {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file,
        }
    } else {
        match std::env::split_paths(path)
            .map(|dir| dir.join(program))
            // As execvp: the first that is an executable file, not merely the first file.
            .find(|candidate| {
                std::fs::metadata(candidate)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            }) {
            Some(found) => found,
            None => {
                return Err(format!(
                    "{program} is not found in PATH ({}): give its full path",
                    path.to_string_lossy()
                ));
            }
        }
    };
    let shown = file.display();
    let metadata = std::fs::metadata(&file).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => {
            let relative = if program.contains('/') && Path::new(program).is_relative() {
                match directory {
                    Some(_) => " (relative paths start in the working directory)",
                    None => " (relative paths start in deployhook's working directory)",
                }
            } else {
                ""
            };
            format!("{shown} does not exist{relative}")
        }
        _ => format!("{shown} cannot be read: {err}"),
    })?;
    if metadata.is_dir() {
        return Err(format!("{shown} is a directory, not a program"));
    }
    if metadata.permissions().mode() & 0o111 == 0 {
        return Err(format!("{shown} is not executable: chmod +x {shown}"));
    }
    let mut head = [0u8; 256];
    let read = std::fs::File::open(&file)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|err| format!("{shown} cannot be read: {err}"))?;
    let head = &head[..read];
    if head.starts_with(b"\x7fELF") {
        return Ok(());
    }
    let Some(line) = head.strip_prefix(b"#!") else {
        return Err(format!(
            "{shown} is neither a binary nor a script with a #! line (such as #!/bin/sh): \
             no shell runs the command, so it cannot start"
        ));
    };
    let line = String::from_utf8_lossy(line);
    let interpreter = line.lines().next().unwrap_or("").split_whitespace().next();
    match interpreter {
        Some(interpreter) if Path::new(interpreter).is_file() => Ok(()),
        Some(interpreter) => Err(format!(
            "{shown} starts with #!{interpreter}, which does not exist here"
        )),
        None => Err(format!("{shown} has an empty #! line")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Environment;

    fn environment(command: &[&str], dir: Option<&Path>) -> EnvironmentConfig {
        let mut environment = EnvironmentConfig::new(
            Environment::parse("staging").unwrap(),
            command.iter().map(|s| (*s).to_owned()).collect(),
        );
        environment.working_directory = dir.map(Path::to_path_buf);
        environment
    }

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        file
    }

    fn messages(environment: &EnvironmentConfig) -> Vec<String> {
        check(environment, std::ffi::OsStr::new(DEFAULT_PATH))
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn a_runnable_script_and_a_program_from_path_pass() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "deploy.sh", "#!/bin/sh\necho hi\n", 0o755);
        let script = environment(&["./deploy.sh", "staging"], Some(dir.path()));
        assert_eq!(messages(&script), Vec::<String>::new());
        let from_path = environment(&["sh", "-c", "true"], None);
        assert_eq!(messages(&from_path), Vec::<String>::new());
    }

    #[test]
    fn each_reason_a_command_cannot_start_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "plain.sh", "#!/bin/sh\n", 0o644);
        write(dir.path(), "no-shebang.sh", "echo hi\n", 0o755);
        write(dir.path(), "odd.sh", "#!/no/such/interpreter\n", 0o755);
        let cases = [
            (
                "./missing.sh",
                "missing.sh does not exist (relative paths start in the working directory)",
            ),
            ("./plain.sh", "is not executable: chmod +x"),
            (
                "./no-shebang.sh",
                "neither a binary nor a script with a #! line",
            ),
            (
                "./odd.sh",
                "starts with #!/no/such/interpreter, which does not exist here",
            ),
            (
                "no-such-program-here",
                "no-such-program-here is not found in PATH",
            ),
        ];
        for (program, expected) in cases {
            let found = messages(&environment(&[program], Some(dir.path())));
            assert_eq!(found.len(), 1, "{program}: {found:?}");
            assert!(found[0].contains(expected), "{program}: {found:?}");
            assert!(
                found[0].starts_with("environment staging: command: "),
                "{found:?}"
            );
        }
    }

    #[test]
    fn a_missing_working_directory_is_one_problem_naming_the_setting() {
        let found = messages(&environment(
            &["./deploy.sh"],
            Some(Path::new("/srv/no-such-dir")),
        ));
        assert_eq!(
            found,
            [
                "environment staging: working directory /srv/no-such-dir does not exist: create \
              it, or change `working_directory`"
            ]
        );
    }

    #[test]
    fn rollback_and_task_commands_are_checked_too() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "deploy.sh", "#!/bin/sh\n", 0o755);
        let mut env = environment(&["./deploy.sh"], Some(dir.path()));
        env.rollback_command = Some(vec!["./rollback.sh".into()]);
        env.tasks
            .insert("migrate".into(), vec!["./migrate.sh".into()]);
        let found = messages(&env);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("rollback_command: ") && found[0].contains("rollback.sh"));
        assert!(
            found[1].contains("the command of task migrate: ") && found[1].contains("migrate.sh")
        );
    }

    #[test]
    fn a_bare_name_is_found_in_the_environments_own_path_skipping_non_executables() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(first.path(), "site-deploy", "#!/bin/sh\n", 0o644);
        write(second.path(), "site-deploy", "#!/bin/sh\n", 0o755);
        let mut env = environment(&["site-deploy"], None);
        let path = format!("{}:{}", first.path().display(), second.path().display());
        env.env.0.insert("PATH".into(), path);
        assert_eq!(check_all(std::slice::from_ref(&env)), Vec::<Problem>::new());
        env.env
            .0
            .insert("PATH".into(), first.path().display().to_string());
        let found = check_all(&[env]);
        assert!(
            found[0]
                .message
                .contains("site-deploy is not found in PATH"),
            "{found:?}"
        );
    }
}
