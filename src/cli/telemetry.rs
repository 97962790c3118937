//! Logging: human-readable lines by default, one JSON object per line with
//! `DEPLOYHOOK_LOG_FORMAT=json`, filtered by `RUST_LOG` (default `info`; `warn` for `try`).
//!
//! A log line may quote what a stranger sent (an environment name in a status, a refused
//! header), so in text logs every control character inside a line is written escaped
//! (`\n`, `\u{1b}`…): one event is one line, and no payload can forge another. JSON logs
//! are escaped by the encoding itself.

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::LogFormat;

/// Installs the global subscriber. Logs go to stderr, leaving stdout to commands' output.
/// `default_level` applies when `RUST_LOG` is unset: `info`, or `warn` for `try`, whose
/// own lines tell the story and whose server would repeat them.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colours for a terminal only: escape codes garble files and journald.
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.with_writer(OneLinePerEvent { ansi }).init(),
        LogFormat::Json => builder
            .with_writer(std::io::stderr)
            .json()
            .with_current_span(true)
            .init(),
    }
}

/// Stderr, with the control characters inside each event escaped. The text formatter hands
/// each event over in one write, ending in its newline.
#[derive(Debug, Clone, Copy)]
struct OneLinePerEvent {
    /// Whether the formatter's own colour codes (ESC) pass through.
    ansi: bool,
}

impl<'a> MakeWriter<'a> for OneLinePerEvent {
    type Writer = EscapingWriter<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter {
            inner: io::stderr(),
            ansi: self.ansi,
        }
    }
}

/// Writes through to `inner`, escaping control characters but a final newline.
#[derive(Debug)]
pub struct EscapingWriter<W> {
    inner: W,
    ansi: bool,
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(&escape_line(buf, self.ansi))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `line` with every control character but a trailing newline (and, when `ansi`, ESC)
/// written as an escape.
fn escape_line(line: &[u8], ansi: bool) -> Vec<u8> {
    let (body, newline) = match line.strip_suffix(b"\n") {
        Some(body) => (body, true),
        None => (line, false),
    };
    let mut out = Vec::with_capacity(line.len());
    for &byte in body {
        match byte {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.push(b'\t'),
            0x1b if ansi => out.push(byte),
            0x00..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{{{byte:x}}}").as_bytes()),
            _ => out.push(byte),
        }
    }
    if newline {
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newline_inside_an_event_cannot_start_another_line() {
        let line = b"INFO deployment 1 of acme/w to prod\nERROR forged is success\n";
        let escaped = String::from_utf8(escape_line(line, false)).unwrap();
        assert_eq!(
            escaped,
            "INFO deployment 1 of acme/w to prod\\nERROR forged is success\n"
        );
        assert_eq!(
            escape_line(b"a\x1b[31mb\r\x00", false),
            b"a\\u{1b}[31mb\\r\\u{0}"
        );
        assert_eq!(
            escape_line(b"\x1b[2mINFO\x1b[0m x\n", true),
            b"\x1b[2mINFO\x1b[0m x\n"
        );
    }
}
