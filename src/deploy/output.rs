//! The deploy command's output: each line read from its pipes (capped in length) and sent
//! to the deploy's log, and, once the command exits, the pipes drained for as long as they
//! make progress — output written before exit is kept, a daemon holding a pipe open is not
//! waited for.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::deploy::log::{LogSender, MAX_LINE};
use crate::store::logs::Stream;

/// After the command exits, how long a reader may go without a line before it is given up
/// (a daemon the command started may hold its stdout/stderr open forever).
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);
/// The longest the readers are waited for after the command exits, even while lines keep
/// coming (a daemon the command started that keeps writing to its stdout).
const MAX_OUTPUT_DRAIN: Duration = Duration::from_secs(30);
/// The most lines of one deploy copied into the server's log at info level: a deploy that
/// prints a build's worth of output must not flood the journal. The deploy's own log keeps
/// its head and tail whatever this says.
const MAX_ECHOED_LINES: u64 = 2_000;

/// Sends each line the command writes to `stream` to the deploy's log, and to the server's
/// log under the deploy's span: at info level when `echo` (the first
/// [`MAX_ECHOED_LINES`] of the run), else at debug level.
pub(super) fn forward_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    name: Stream,
    log: LogSender,
    progress: Arc<AtomicU64>,
    echo: bool,
) -> JoinHandle<()> {
    let task = async move {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while let Ok(true) = read_line_capped(&mut reader, &mut line).await {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            // Both streams count against one limit, so its notice is written once.
            let seen = progress.fetch_add(1, Ordering::Relaxed);
            match seen {
                _ if !echo => tracing::debug!(stream = name.as_str(), "{text}"),
                n if n < MAX_ECHOED_LINES => {
                    tracing::info!(stream = name.as_str(), "{}", printable(text));
                }
                MAX_ECHOED_LINES => tracing::info!(
                    "{MAX_ECHOED_LINES} lines of output copied here; the rest is in the \
                     deploy's log only"
                ),
                _ => tracing::debug!(stream = name.as_str(), "{text}"),
            }
            log.line(name, text).await;
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()))
}

/// `text` with control characters (escape sequences, carriage returns, bells) shown as `?`:
/// a deploy's output echoes webhook data (branch names, commit messages), and must not move
/// the cursor or rewrite lines on the operator's terminal. Tabs stay.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(|c| c.is_control() && c != '\t') {
        text.chars()
            .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// Reads one line into `line`, keeping at most [`MAX_LINE`] + 1 bytes of it (the rest up to
/// the newline is read and dropped: a progress bar drawn with `\r`, or binary output, must
/// not grow a buffer without bound). `false` at the end of the stream.
async fn read_line_capped<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> io::Result<bool> {
    line.clear();
    let mut read_any = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(read_any);
        }
        read_any = true;
        let newline = buffer.iter().position(|b| *b == b'\n');
        let chunk = newline.map_or(buffer, |i| &buffer[..=i]);
        let room = (MAX_LINE + 1).saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        reader.consume(used);
        if newline.is_some() {
            return Ok(true);
        }
    }
}

/// Waits for the output readers to reach the end of their pipes, as long as they make
/// progress: output the command wrote before it exited is stored, however much, while a
/// child that keeps the pipe open (a daemon it started) is given up on after
/// [`OUTPUT_DRAIN`] of silence, or [`MAX_OUTPUT_DRAIN`] in all.
pub(super) async fn drain(readers: [Option<JoinHandle<()>>; 2], progress: &AtomicU64) {
    let deadline = tokio::time::Instant::now() + MAX_OUTPUT_DRAIN;
    for mut reader in readers.into_iter().flatten() {
        loop {
            let before = progress.load(Ordering::Relaxed);
            match tokio::time::timeout(OUTPUT_DRAIN, &mut reader).await {
                Ok(_) => break,
                Err(_)
                    if progress.load(Ordering::Relaxed) != before
                        && tokio::time::Instant::now() < deadline => {}
                Err(_) => {
                    reader.abort();
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_lines_cannot_drive_the_terminal() {
        assert_eq!(printable("plain\ttext"), "plain\ttext");
        assert_eq!(printable("\u{1b}[2J\u{1b}[Hok\r"), "?[2J?[Hok?");
    }
}
