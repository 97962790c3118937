//! Deploy logs: capturing a run's output durably, bounded, and serving it at
//! `GET /deployments/{id}/log?token=…` — live while the deploy runs, complete afterwards.
//!
//! Output goes through a [`LogWriter`], which batches lines into the database a few times a
//! second (one commit per batch, not per line) and keeps each run within its limit: the
//! first half of the limit is kept as it came, and past it only the most recent half, so
//! both how a deploy began and how it ended survive a runaway script. Readers wait on a
//! [`LogHub`] signal instead of polling the database in a tight loop.
//!
//! Links to a log are unguessable: see [`links`].

pub mod links;

pub use links::{LogKey, LogLinks};

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::DeploymentId;
use crate::store::logs::{self, JobState, LogLine, Stream};
use crate::store::{Store, StoreError, now_ms};

/// How long the writer gathers lines before committing them.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Lines one commit takes at most.
const MAX_BATCH_LINES: usize = 1024;
/// Lines waiting to be stored at most, per run; past it the command waits (see
/// [`LogSender::line`]).
const LOG_BUFFER: usize = 4 * MAX_BATCH_LINES;
/// Lines are stored up to this many bytes; longer ones are cut and marked.
pub const MAX_LINE: usize = 8 * 1024;
/// What a stored line costs against the run's limit besides its text (time, stream).
const LINE_OVERHEAD: usize = 32;
/// Lines one read of the log endpoint takes from the database.
const READ_BATCH: usize = 2000;
/// The longest a live reader waits for a signal before looking at the database anyway.
const READ_POLL: Duration = Duration::from_secs(2);

/// Tells live readers that lines were committed or a job finished.
#[derive(Debug, Clone)]
pub struct LogHub(Arc<watch::Sender<u64>>);

impl Default for LogHub {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl LogHub {
    pub fn notify(&self) {
        self.0
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Where a run's output goes; cheap to clone (one per output stream).
#[derive(Debug, Clone)]
pub struct LogSender(mpsc::Sender<(Stream, i64, String)>);

impl LogSender {
    /// Queues a line; `text` is cut at [`MAX_LINE`] bytes. Waits while [`LOG_BUFFER`] lines
    /// are already waiting to be stored: a command that prints faster than the database
    /// takes its output then blocks on its full pipe, instead of filling the server's memory.
    pub async fn line(&self, stream: Stream, text: &str) {
        let text = if text.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{} […line cut at {MAX_LINE} bytes]", &text[..end])
        } else {
            text.to_owned()
        };
        // The writer outlives every sender; a send fails only if it died, and then the
        // line is lost from the stored log but still in the server log.
        let _ = self.0.send((stream, now_ms(), text)).await;
    }
}

/// Stores one run's output; see the module documentation.
#[derive(Debug)]
pub struct LogWriter {
    task: JoinHandle<()>,
}

impl LogWriter {
    /// Starts the writer of `deployment`'s log, keeping about `limit` bytes. A deployment
    /// run again (`on_interrupt = "retry"`) goes on after its earlier run's lines.
    pub async fn start(
        store: Store,
        hub: LogHub,
        deployment: DeploymentId,
        limit: usize,
    ) -> (Self, LogSender) {
        let (writer, sender, first_seq) = Self::open(store, hub, deployment, limit).await;
        if first_seq > 0 {
            let note = "--- this deployment runs again: deployhook restarted during its earlier run \
                        (on_interrupt = \"retry\") ---";
            sender.line(Stream::Deployhook, note).await;
        }
        (writer, sender)
    }

    /// Starts a writer that goes on after the lines `deployment` has already: its
    /// verification's, after the command's (with a limit of its own).
    pub async fn resume(
        store: Store,
        hub: LogHub,
        deployment: DeploymentId,
        limit: usize,
    ) -> (Self, LogSender) {
        let (writer, sender, _) = Self::open(store, hub, deployment, limit).await;
        (writer, sender)
    }

    async fn open(
        store: Store,
        hub: LogHub,
        deployment: DeploymentId,
        limit: usize,
    ) -> (Self, LogSender, i64) {
        let first_seq = match store.read(move |c| logs::next_seq(c, deployment)).await {
            Ok(seq) => seq,
            Err(err) => {
                tracing::warn!("could not read the end of the deploy's earlier log: {err}");
                0
            }
        };
        let (sender, receiver) = mpsc::channel(LOG_BUFFER);
        let bounds = Bounds::new(limit);
        let task = tokio::spawn(write_lines(
            store, hub, deployment, receiver, bounds, first_seq,
        ));
        (Self { task }, LogSender(sender), first_seq)
    }

    /// Waits until every line sent before all senders were dropped is committed.
    pub async fn finish(self) {
        let _ = self.task.await;
    }
}

async fn write_lines(
    store: Store,
    hub: LogHub,
    deployment: DeploymentId,
    mut receiver: mpsc::Receiver<(Stream, i64, String)>,
    mut bounds: Bounds,
    first_seq: i64,
) {
    let mut seq = first_seq;
    let mut open = true;
    while open {
        let Some(first) = receiver.recv().await else {
            break;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + FLUSH_INTERVAL;
        while batch.len() < MAX_BATCH_LINES {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(line)) => batch.push(line),
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut lines = Vec::with_capacity(batch.len());
        let mut drop: Option<(i64, i64)> = None;
        for (stream, at, text) in batch {
            if let Some(dropped) = bounds.add(seq, text.len() + LINE_OVERHEAD) {
                drop = Some((drop.map_or(dropped.0, |d| d.0), dropped.1));
            }
            lines.push(LogLine {
                seq,
                at,
                stream,
                text,
            });
            seq += 1;
        }
        let written = store
            .write(move |c| logs::append(c, deployment, &lines, drop))
            .await;
        if let Err(err) = written {
            tracing::warn!("could not store deploy output: {err}");
        }
        hub.notify();
    }
}

/// Keeps a run's stored output within its limit: a head kept whole, then a tail window.
#[derive(Debug)]
struct Bounds {
    head_left: usize,
    tail_limit: usize,
    tail: VecDeque<(i64, usize)>,
    tail_bytes: usize,
}

impl Bounds {
    fn new(limit: usize) -> Self {
        Self {
            head_left: limit / 2,
            tail_limit: limit - limit / 2,
            tail: VecDeque::new(),
            tail_bytes: 0,
        }
    }

    /// Accounts for line `seq` of `bytes`; returns the range of lines to delete for it.
    fn add(&mut self, seq: i64, bytes: usize) -> Option<(i64, i64)> {
        if self.tail.is_empty() && bytes <= self.head_left {
            self.head_left -= bytes;
            return None;
        }
        self.head_left = 0;
        self.tail.push_back((seq, bytes));
        self.tail_bytes += bytes;
        let mut dropped: Option<(i64, i64)> = None;
        // The newest line always stays, however long.
        while self.tail_bytes > self.tail_limit && self.tail.len() > 1 {
            let (old, size) = self.tail.pop_front().expect("not empty");
            self.tail_bytes -= size;
            dropped = Some((dropped.map_or(old, |d| d.0), old));
        }
        dropped
    }
}

/// Renders stored lines as the endpoint's text: `time stream | text`, and a note where lines
/// were dropped. `previous` is the seq of the line rendered before these, if any.
pub fn render(lines: &[LogLine], mut previous: Option<i64>) -> String {
    let mut out = String::new();
    for line in lines {
        let expected = previous.map_or(0, |p| p + 1);
        if line.seq > expected {
            out.push_str(&format!(
                "[… {} lines omitted: the log keeps its beginning and its end …]\n",
                line.seq - expected
            ));
        }
        let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(line.at).unwrap_or(0));
        out.push_str(&format!(
            "{} {:<10} | {}\n",
            humantime::format_rfc3339_millis(at),
            line.stream.as_str(),
            line.text
        ));
        previous = Some(line.seq);
    }
    out
}

/// What the endpoint found for a deployment.
pub enum Found {
    NoLog,
    Log(futures_util::stream::BoxStream<'static, Result<Bytes, Infallible>>),
}

impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoLog => "NoLog",
            Self::Log(_) => "Log(..)",
        })
    }
}

/// The log of `deployment` as a stream of text chunks: what is stored, then, while the deploy
/// is queued or runs, each new batch as it is committed, until the job finishes or
/// `shutdown` is cancelled.
pub async fn open(
    store: Store,
    hub: &LogHub,
    deployment: DeploymentId,
    shutdown: CancellationToken,
) -> Result<Found, StoreError> {
    let mut signal = hub.subscribe();
    signal.borrow_and_update();
    let (lines, state) = store
        .read(move |c| logs::read_after(c, deployment, None, READ_BATCH))
        .await?;
    if state == JobState::Unknown && lines.is_empty() {
        return Ok(Found::NoLog);
    }
    let reader = Reader {
        store,
        deployment,
        signal,
        shutdown,
        last: None,
        pending: Some((lines, state)),
        done: false,
    };
    Ok(Found::Log(Box::pin(futures_util::stream::unfold(
        reader,
        Reader::next_chunk,
    ))))
}

/// The state of one streaming read of a log.
struct Reader {
    store: Store,
    deployment: DeploymentId,
    signal: watch::Receiver<u64>,
    shutdown: CancellationToken,
    /// The seq of the last line sent.
    last: Option<i64>,
    /// A read done but not yet sent.
    pending: Option<(Vec<LogLine>, JobState)>,
    done: bool,
}

impl Reader {
    /// The next chunk of text, waiting for one while the deploy may still write; `None`
    /// once the log is complete.
    async fn next_chunk(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if self.done {
            return None;
        }
        loop {
            let (lines, state) = match self.pending.take() {
                Some(read) => read,
                None => {
                    // Marked seen before reading: a commit after this read wakes the wait.
                    self.signal.borrow_and_update();
                    let (id, after) = (self.deployment, self.last);
                    match self
                        .store
                        .read(move |c| logs::read_after(c, id, after, READ_BATCH))
                        .await
                    {
                        Ok(read) => read,
                        Err(err) => {
                            self.done = true;
                            let note = format!("[deployhook: could not read the log: {err}]\n");
                            return Some((Ok(Bytes::from(note)), self));
                        }
                    }
                }
            };
            if !lines.is_empty() {
                let text = render(&lines, self.last);
                self.last = lines.last().map(|l| l.seq);
                return Some((Ok(Bytes::from(text)), self));
            }
            if matches!(state, JobState::Finished | JobState::Unknown) {
                return None;
            }
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    self.done = true;
                    let note = "[deployhook is restarting; reload to read the rest]\n";
                    return Some((Ok(Bytes::from_static(note.as_bytes())), self));
                }
                _ = self.signal.changed() => {}
                () = tokio::time::sleep(READ_POLL) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
