//! No credential in any output (issue 26, item 4): the PostgreSQL password given in
//! `DEPLOYHOOK_DATABASE` is in no log line at any level (`RUST_LOG=trace`), text or JSON, in
//! no error, no `/readyz` or `/metrics` answer, and not in `--help`; a value that is
//! neither a SQLite path nor a PostgreSQL URL — a libpq keyword string, another scheme's URL
//! — is refused naming what it is, and never becomes a file. The binary is run as a user
//! would run it.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use deployhook_testkit::postgres as cluster;

use crate::helpers::{SECRET, TOKEN, WAIT};

/// The passwords of the URLs below: in the credentials, and as a `password=` parameter.
const PASSWORD: &str = "Auth-Pa55-9f3e1";
const QUERY_PASSWORD: &str = "Query-Pa55-77c0a";
const ADMIN_TOKEN: &str = "credentials-admin-token-0123456789";

/// The binary with nothing of the test's environment but `PATH` and working settings, run
/// in `dir` (no `.env` of the checkout is read); `DEPLOYHOOK_DATABASE` is the caller's.
fn serve(dir: &Path, database: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deployhook"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_API_URL", "http://127.0.0.1:9")
        .env("DEPLOY_COMMAND", "/bin/true")
        .env("DEPLOYHOOK_LISTEN", "127.0.0.1:0")
        .env("DEPLOYHOOK_DATABASE", database)
        .current_dir(dir)
        .arg("serve");
    command
}

/// Everything `pipe` says, read to its end on a thread (the server never blocks on a full
/// pipe, however much `trace` writes).
fn drain(pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = { pipe }.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The address the server listens on, from its log (written to the file `log`), once it
/// says so.
fn wait_for_address(log: &Path, child: &mut Child) -> String {
    let until = Instant::now() + WAIT * 3;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("webhook URL: http://").nth(1) {
            return rest.split("/event_handler").next().unwrap().to_owned();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the server exited ({status}) before listening:\n{text}");
        }
        assert!(Instant::now() < until, "the server did not listen:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.0 GET of `path`: the answer, head and body.
fn get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// `serve` on `database` at `RUST_LOG=trace` in `format` until it listens; `/readyz` and
/// `/metrics` asked; then SIGTERM. Its whole output (stdout, then stderr) and the answers.
fn serve_and_stop(database: &str, format: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = serve(dir.path(), database)
        .env("RUST_LOG", "trace")
        .env("DEPLOYHOOK_LOG_FORMAT", format)
        .env("DEPLOYHOOK_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    let addr = wait_for_address(&log, &mut child);
    let mut answers = String::new();
    for path in ["/readyz", "/metrics"] {
        answers.push_str(&get(&addr, path));
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let output = stdout.join().unwrap() + &std::fs::read_to_string(&log).unwrap();
    (output, answers)
}

#[test]
fn the_postgres_password_is_in_no_log_line_at_trace_level_text_or_json() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    // The test server trusts every local connection: the passwords are taken and unused.
    let url = cluster.database().replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}@"),
        1,
    ) + &format!("&password={QUERY_PASSWORD}");
    for format in ["text", "json"] {
        let (output, answers) = serve_and_stop(&url, format);
        assert!(
            output.contains("deployhook listening"),
            "{format}: {output}"
        );
        // The database is named, masked: the operator still sees which one it is.
        assert!(
            output.contains(&format!("postgres:***@127.0.0.1:{}", cluster.port())),
            "{format}: no masked URL in the log"
        );
        assert!(answers.contains(r#""database":"ok""#), "{answers}");
        for secret in [PASSWORD, QUERY_PASSWORD] {
            let lines: Vec<&str> = output.lines().filter(|l| l.contains(secret)).collect();
            assert!(
                lines.is_empty(),
                "{format}: the password is logged: {lines:#?}"
            );
            assert!(!answers.contains(secret), "{answers}");
        }
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn the_postgres_password_is_not_in_the_error_when_the_database_cannot_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let url = format!(
        "postgres://app:{PASSWORD}@127.0.0.1:{port}/deployhook?sslmode=disable&password={QUERY_PASSWORD}"
    );
    for format in ["text", "json"] {
        let output = serve(dir.path(), &url)
            .env("RUST_LOG", "trace")
            .env("DEPLOYHOOK_LOG_FORMAT", format)
            .output()
            .unwrap();
        let text = all_of(&output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(
            text.contains(&format!(
                "could not connect to postgres://app:***@127.0.0.1:{port}"
            )),
            "{text}"
        );
        assert!(
            !text.contains(PASSWORD) && !text.contains(QUERY_PASSWORD),
            "{text}"
        );
    }
}

fn all_of(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn help_does_not_show_the_database_password_set_in_the_environment() {
    let url = format!("postgres://app:{PASSWORD}@db.example/deployhook");
    for command in ["serve", "redeliver"] {
        let output = Command::new(env!("CARGO_BIN_EXE_deployhook"))
            .env_clear()
            .env("DEPLOYHOOK_DATABASE", &url)
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = all_of(&output);
        assert!(help.contains("DEPLOYHOOK_DATABASE"), "{help}");
        assert!(
            !help.contains(PASSWORD),
            "{command} --help shows it:\n{help}"
        );
    }
}

/// Runs `serve` on `database` in a fresh directory, stopped after [`WAIT`] if it did not
/// exit by itself (it started: a refusal would have ended it); its output, and the files
/// the directory holds afterwards.
fn serve_in_empty_dir(database: &str) -> (Output, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = serve(dir.path(), database)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let until = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let output = Output {
        status: child.wait().unwrap(),
        stdout: std::fs::read(&stdout).unwrap(),
        stderr: std::fs::read(&stderr).unwrap(),
    };
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    (output, files)
}

#[test]
fn a_libpq_keyword_string_is_refused_and_no_file_is_made_of_it() {
    let keywords = format!("host=127.0.0.1 user=deployhook password={PASSWORD} dbname=deployhook");
    let (output, files) = serve_in_empty_dir(&keywords);
    let text = all_of(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "DEPLOYHOOK_DATABASE is a libpq keyword string (host=, user=, password=, dbname=): \
             deployhook takes PostgreSQL settings as a URL only"
        ),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(files.is_empty(), "files made: {files:?}");
}

#[test]
fn another_schemes_url_is_refused_naming_the_scheme_and_no_file_is_made() {
    for (database, says) in [
        (
            format!("mysql://app:{PASSWORD}@db.example/deployhook"),
            "DEPLOYHOOK_DATABASE is a mysql:// URL, which deployhook cannot use",
        ),
        (
            "sqlite:///var/lib/deployhook/deployhook.db".to_owned(),
            "for SQLite give the file's path itself, without the scheme",
        ),
        (
            format!("https://app:{PASSWORD}@db.example/"),
            "DEPLOYHOOK_DATABASE is a https:// URL",
        ),
    ] {
        let (output, files) = serve_in_empty_dir(&database);
        let text = all_of(&output);
        assert_eq!(output.status.code(), Some(1), "{database}: {text}");
        assert!(text.contains(says), "{database}: {text}");
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(files.is_empty(), "{database}: files made: {files:?}");
    }
    // `redeliver` reads the same setting: refused before GitHub is asked anything.
    let output = Command::new(env!("CARGO_BIN_EXE_deployhook"))
        .env_clear()
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_API_URL", "http://127.0.0.1:9")
        .env(
            "DEPLOYHOOK_DATABASE",
            format!("mysql://app:{PASSWORD}@db.example/deployhook"),
        )
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .args(["redeliver", "--repo", "acme/widgets", "--hook-id", "1"])
        .output()
        .unwrap();
    let text = all_of(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("is a mysql:// URL"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}
