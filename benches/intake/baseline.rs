//! The intake benchmark's baseline servers: this same executable, re-run with
//! `--baseline-server KIND`, a bare handler that verifies the signature and parses the
//! JSON (`ignored`: only checks it is well-formed; `value`: into a `serde_json::Value`;
//! `durable`: well-formed, then answers once a sync to disk covers the delivery's id).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use deployhook::webhook::signature::WebhookSecrets;
use serde_json::Value;

use crate::common::SECRET;
use crate::common::process::ServerProcess;

/// Starts this executable as the baseline server `kind` (see the module's header) and
/// reads the address it listens on from its first line.
pub fn start(kind: &str) -> ServerProcess {
    let mut child = Command::new(std::env::current_exe().expect("this executable"))
        .args(["--baseline-server", kind])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the baseline starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the baseline's address");
    let addr = line
        .trim()
        .trim_start_matches("listening ")
        .parse()
        .expect("the baseline's address");
    ServerProcess::new(child, addr)
}

#[derive(Clone, Copy, PartialEq)]
enum Baseline {
    WellFormed,
    Value,
    Durable,
}

/// Delivery ids for the journal thread to write, each with whom to tell once synced.
type Journal = std::sync::mpsc::Sender<(String, tokio::sync::oneshot::Sender<()>)>;

struct BaselineState {
    secrets: WebhookSecrets,
    kind: Baseline,
    /// For [`Baseline::Durable`].
    journal: Option<Journal>,
}

/// Serves the baseline `kind` (`value`, `durable`, else the well-formed check) until
/// killed, after printing the address it listens on.
pub async fn serve(kind: Option<&str>) {
    let kind = match kind {
        Some("value") => Baseline::Value,
        Some("durable") => Baseline::Durable,
        _ => Baseline::WellFormed,
    };
    let secrets = WebhookSecrets::from_list(SECRET).expect("a secret");
    let journal = (kind == Baseline::Durable).then(start_journal);
    let app = Router::new()
        .route("/event_handler", post(baseline_handler))
        .layer(axum::extract::DefaultBodyLimit::max(25 * 1024 * 1024))
        .with_state(Arc::new(BaselineState {
            secrets,
            kind,
            journal,
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    println!("listening {}", listener.local_addr().expect("an address"));
    axum::serve(listener, app)
        .await
        .expect("the baseline server");
}

/// The least a durable handler must do: write, then sync, once for all who wait (group
/// commit), on a thread of its own. The journal is a ring in a file written out in full
/// beforehand, as a database's log is once it has grown: syncing an append that grows the
/// file would also commit its new size, which costs more than the least.
fn start_journal() -> Journal {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    const RING: u64 = 16 * 1024 * 1024;
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-intake-journal");
    let mut file = std::fs::File::create(path).expect("a journal file");
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..RING / zeros.len() as u64 {
        file.write_all(&zeros).expect("a journal written out");
    }
    file.sync_all().expect("a journal on disk");
    let (append, appended): (Journal, _) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut waiting = Vec::new();
        let mut buffer = Vec::new();
        let mut offset = 0;
        while let Ok(first) = appended.recv() {
            waiting.push(first);
            waiting.extend(appended.try_iter());
            for (id, _) in &waiting {
                buffer.extend_from_slice(id.as_bytes());
                buffer.push(b'\n');
            }
            if offset + buffer.len() as u64 > RING {
                offset = 0;
            }
            file.write_all_at(&buffer, offset).expect("a journal write");
            offset += buffer.len() as u64;
            file.sync_data().expect("a journal sync");
            buffer.clear();
            for (_, done) in waiting.drain(..) {
                let _ = done.send(());
            }
        }
    });
    append
}

async fn baseline_handler(
    State(state): State<Arc<BaselineState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let secrets = &state.secrets;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if secrets
        .verify(&body, header("x-hub-signature-256"))
        .is_err()
    {
        return (StatusCode::UNAUTHORIZED, "bad signature");
    }
    let json = if header("content-type").starts_with("application/x-www-form-urlencoded") {
        let form: HashMap<String, String> = match serde_urlencoded::from_bytes(&body) {
            Ok(form) => form,
            Err(_) => return (StatusCode::BAD_REQUEST, "bad form"),
        };
        form.get("payload")
            .cloned()
            .unwrap_or_default()
            .into_bytes()
    } else {
        body.to_vec()
    };
    let parsed = if state.kind == Baseline::Value {
        serde_json::from_slice::<Value>(&json).map(drop)
    } else {
        serde_json::from_slice::<serde::de::IgnoredAny>(&json).map(drop)
    };
    if parsed.is_err() {
        return (StatusCode::BAD_REQUEST, "bad json");
    }
    if let Some(journal) = &state.journal {
        let (done, synced) = tokio::sync::oneshot::channel();
        let id = header("x-github-delivery").to_owned();
        journal.send((id, done)).expect("the journal thread");
        synced.await.expect("a sync");
    }
    (StatusCode::OK, "ok")
}
