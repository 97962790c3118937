//! What the commands print: it reaches an operator's terminal, and much of it was chosen by
//! strangers — a branch a pull request merged into, a deployment's ref or description on
//! GitHub, a lock's reason, a deploy's output. A terminal obeys control characters: ESC ]
//! sets its title or (OSC 52) the clipboard, ESC [ moves the cursor or clears the screen,
//! some sequences make it answer as if typed. So every command prints through here, and
//! control characters come out as visible text, `\u{1b}` or `\n` as in the server's own
//! log:
//!
//! - [`field`]: one value in a line (a table cell, a header): every control character,
//!   newline included, so a value cannot forge a row either;
//! - [`lines`]: a whole message ([`outln!`], [`errln!`], [`print_error`]): the same, but
//!   `\n` and `\t` kept, since messages have lines of their own;
//! - [`json`]: an answer printed as JSON (`audit --json`): the same characters as JSON
//!   escapes, so it stays JSON;
//! - [`LogFilter`]: a deploy's log (`log`, `deploy --follow`), which is that command's
//!   output the way `kubectl logs` is: `\r` (progress bars) and colours (SGR, `ESC [ … m`)
//!   pass; every other sequence (OSC, cursor and screen control, DCS…) is escaped.
//!
//! Bidirectional overrides (U+202E…) are escaped too: they reorder how a line reads.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Longest `ESC [ … m` passed as a colour in a deploy's log: a longer one is escaped (and
/// what a chunk's end cuts off is held back at most this long).
const MAX_SGR_BYTES: usize = 32;

/// Prints a line through [`lines`], as `println!` would.
macro_rules! outln {
    () => {
        ::std::println!()
    };
    ($($arg:tt)*) => {
        ::std::println!("{}", $crate::cli::terminal::lines(&::std::format!($($arg)*)))
    };
}

/// Prints a line on stderr through [`lines`], as `eprintln!` would.
macro_rules! errln {
    ($($arg:tt)*) => {
        ::std::eprintln!("{}", $crate::cli::terminal::lines(&::std::format!($($arg)*)))
    };
}

/// Prints through [`lines`], as `print!` would.
macro_rules! out {
    ($($arg:tt)*) => {
        ::std::print!("{}", $crate::cli::terminal::lines(&::std::format!($($arg)*)))
    };
}

pub(crate) use {errln, out, outln};

/// `error: MESSAGE` on stderr, the message through [`lines`]: how a command fails.
pub fn print_error(message: std::fmt::Arguments<'_>) {
    eprintln!("error: {}", lines(&message.to_string()));
}

/// `text` as one field of a line: every control character and bidirectional override
/// written as `\n`, `\r`, `\t` or `\u{…}`.
pub fn field(text: &str) -> Cow<'_, str> {
    escaped(text, |_| false)
}

/// `text` as lines of a message: as [`field`], but `\n` and `\t` kept.
pub fn lines(text: &str) -> Cow<'_, str> {
    escaped(text, |c| matches!(c, '\n' | '\t'))
}

/// A table's lines: each column as wide as its widest cell, header included, so a long
/// event name or repository shifts nothing; the last column (a message) is left as it is.
/// Cells should already be [`field`]s: a control character would break the alignment.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let last = header.len().saturating_sub(1);
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let pad = width - cell.chars().count();
                let _ = write!(line, "{cell}{:pad$}  ", "");
            }
        }
        line.trim_end().to_owned()
    };
    let mut lines = vec![line(&mut header.iter().copied())];
    lines.extend(
        rows.iter()
            .map(|row| line(&mut row.iter().map(String::as_str))),
    );
    lines
}

/// `value` as indented JSON, every character a terminal could act on written as a JSON
/// escape (`\u001b`): still JSON that reads back to the same value, and harmless to print.
/// (serde_json escapes C0 controls itself, not DEL, C1 or bidirectional overrides; a raw
/// newline in its output is its own indentation.)
pub fn json(value: &serde_json::Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) && c != '\n' {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

fn escaped(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            _ if !is_unsafe(c) || keep(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// Whether a terminal could act on `c` rather than show it: C0, DEL, C1, and the
/// bidirectional marks and overrides.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// A deploy's log on its way to the terminal, chunk by chunk as the server streams it:
/// text, `\n`, `\t`, `\r` and colours pass; every other control character or sequence is
/// written escaped; bytes that are not UTF-8 are written `\x..`. A character or colour
/// sequence cut by a chunk's end is held back until the next chunk completes it.
#[derive(Debug, Default)]
pub struct LogFilter {
    held: Vec<u8>,
}

/// What the bytes at an ESC are.
enum Escape {
    /// `ESC [ digits;… m`, this many bytes long.
    Colour(usize),
    /// Not a colour sequence.
    Other,
    /// Cut by the chunk's end: it may still become a colour.
    Unfinished,
}

impl LogFilter {
    /// What of `chunk` (after what was held back) may be written now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(chunk);
        self.drain(false)
    }

    /// The rest, once the log has ended.
    pub fn finish(&mut self) -> Vec<u8> {
        self.drain(true)
    }

    fn drain(&mut self, end: bool) -> Vec<u8> {
        let bytes = std::mem::take(&mut self.held);
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let used = match rest[0] {
                0x1b => match colour(rest) {
                    Escape::Colour(n) => {
                        out.extend_from_slice(&rest[..n]);
                        n
                    }
                    Escape::Unfinished if !end => break,
                    _ => {
                        out.extend_from_slice(b"\\u{1b}");
                        1
                    }
                },
                b'\n' | b'\t' | b'\r' => {
                    out.push(rest[0]);
                    1
                }
                byte if byte < 0x80 && !is_unsafe(char::from(byte)) => {
                    out.push(byte);
                    1
                }
                byte if byte < 0x80 => {
                    out.extend_from_slice(format!("\\u{{{byte:x}}}").as_bytes());
                    1
                }
                lead => match utf8_char(rest, lead) {
                    Some(Ok((c, n))) => {
                        if is_unsafe(c) {
                            out.extend_from_slice(format!("\\u{{{:x}}}", u32::from(c)).as_bytes());
                        } else {
                            out.extend_from_slice(&rest[..n]);
                        }
                        n
                    }
                    None if !end => break,
                    _ => {
                        out.extend_from_slice(format!("\\x{lead:02x}").as_bytes());
                        1
                    }
                },
            };
            i += used;
        }
        self.held = bytes[i..].to_vec();
        out
    }
}

/// The character starting with `lead` (not ASCII) and its length; `Some(Err)` when the
/// bytes are not UTF-8, `None` when the chunk ends before it does.
fn utf8_char(bytes: &[u8], lead: u8) -> Option<Result<(char, usize), ()>> {
    let width = match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Some(Err(())),
    };
    let Some(candidate) = bytes.get(..width) else {
        // Only a prefix is here: whether it is valid so far decides between waiting and
        // escaping (an invalid byte after the lead will not become valid).
        return match std::str::from_utf8(bytes) {
            Err(e) if e.error_len().is_none() => None,
            _ => Some(Err(())),
        };
    };
    match std::str::from_utf8(candidate) {
        Ok(s) => s.chars().next().map(|c| Ok((c, width))),
        Err(_) => Some(Err(())),
    }
}

/// What the bytes starting with ESC are.
fn colour(bytes: &[u8]) -> Escape {
    match bytes.get(1) {
        None => return Escape::Unfinished,
        Some(b'[') => {}
        Some(_) => return Escape::Other,
    }
    for (i, &byte) in bytes.iter().enumerate().skip(2).take(MAX_SGR_BYTES - 2) {
        match byte {
            b'0'..=b'9' | b';' | b':' => {}
            b'm' => return Escape::Colour(i + 1),
            _ => return Escape::Other,
        }
    }
    if bytes.len() < MAX_SGR_BYTES {
        Escape::Unfinished
    } else {
        Escape::Other
    }
}

#[cfg(test)]
mod tests;
