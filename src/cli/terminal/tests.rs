use proptest::prelude::*;

use super::*;

#[test]
fn a_field_shows_every_control_character_and_keeps_the_rest() {
    assert_eq!(
        field("rel\u{1b}]0;PWNED\u{7}\u{1b}[31mred"),
        r"rel\u{1b}]0;PWNED\u{7}\u{1b}[31mred"
    );
    assert_eq!(field("a\nb\r\tc\u{7f}"), r"a\nb\r\tc\u{7f}");
    // C1 (an 8-bit CSI) and a right-to-left override.
    assert_eq!(field("x\u{9b}2Jy\u{202e}z"), r"x\u{9b}2Jy\u{202e}z");
    assert!(matches!(field("déploiement → prod"), Cow::Borrowed(_)));
}

#[test]
fn lines_keep_their_line_breaks_and_tabs_only() {
    assert_eq!(
        lines("2 problems:\n  - a\tb\r\u{1b}[2J"),
        "2 problems:\n  - a\tb\\r\\u{1b}[2J"
    );
}

fn filtered(chunks: &[&[u8]]) -> String {
    let mut filter = LogFilter::default();
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(filter.push(chunk));
    }
    out.extend(filter.finish());
    String::from_utf8(out).unwrap()
}

#[test]
fn a_logs_colours_pass_and_every_other_sequence_is_shown() {
    let log: &[u8] =
        b"ok \x1b[32;1mgreen\x1b[0m \x1b]0;PWNED\x07 \x1b]52;c;ZXZpbA==\x07 \x1b[2J\r\n";
    assert_eq!(
        filtered(&[log]),
        "ok \u{1b}[32;1mgreen\u{1b}[0m \\u{1b}]0;PWNED\\u{7} \\u{1b}]52;c;ZXZpbA==\\u{7} \\u{1b}[2J\r\n"
    );
    // Not UTF-8: shown as bytes, never passed (0x9b alone is a CSI to an 8-bit terminal).
    assert_eq!(filtered(&[b"a\x9b2Jb\xff"]), r"a\x9b2Jb\xff");
    // UTF-8 C1 and text.
    assert_eq!(filtered(&["é\u{9b}2J✓".as_bytes()]), r"é\u{9b}2J✓");
    // A colour sequence longer than any real one is not passed.
    let long = format!("\x1b[{}m", "1;".repeat(40));
    assert!(filtered(&[long.as_bytes()]).starts_with(r"\u{1b}["));
}

#[test]
fn a_sequence_or_character_cut_by_a_chunks_end_is_held_back_not_broken() {
    let mut filter = LogFilter::default();
    assert_eq!(filter.push(b"a \x1b[3"), b"a ");
    assert_eq!(filter.push(b"1mred \xe2\x9c"), b"\x1b[31mred ");
    assert_eq!(filter.push(b"\x93 \x1b"), "✓ ".as_bytes());
    assert_eq!(filter.push(b"]0;x\x07"), br"\u{1b}]0;x\u{7}");
    // The log ends inside a sequence: what is held is shown, not dropped.
    assert_eq!(filter.push(b"\x1b[1"), b"");
    assert_eq!(filter.finish(), br"\u{1b}[1");
}

/// Bytes a hostile or merely colourful log is made of.
fn log_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop_oneof![
        Just(b"\x1b".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"31".to_vec()),
        Just(b";".to_vec()),
        Just(b"m".to_vec()),
        Just(b"\x07".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just("é✓".as_bytes().to_vec()),
        Just("\u{9b}".as_bytes().to_vec()),
        Just(b"\xe2".to_vec()),
        Just(b"\xff".to_vec()),
        Just(b"text".to_vec()),
    ];
    prop::collection::vec(pieces, 0..40).prop_map(|pieces| pieces.concat())
}

/// Whether `out` could drive a terminal beyond line breaks, tabs, `\r` and colours.
fn drives_the_terminal(out: &str) -> bool {
    let bytes = out.as_bytes();
    bytes.iter().enumerate().any(|(i, &byte)| match byte {
        b'\n' | b'\t' | b'\r' => false,
        0x1b => {
            let rest = &bytes[i + 1..];
            let params = rest
                .iter()
                .skip(1)
                .take_while(|b| b.is_ascii_digit() || matches!(b, b';' | b':'))
                .count();
            !(rest.first() == Some(&b'[') && rest.get(1 + params) == Some(&b'm'))
        }
        byte => byte < 0x20 || byte == 0x7f,
    }) || out.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c))
}

proptest! {
    /// However the server's chunks cut the log, the terminal gets the same text, and
    /// nothing in it but colours can act on the terminal.
    #[test]
    fn chunks_cut_anywhere_print_the_same_inert_text(
        log in log_bytes(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let whole = filtered(&[&log]);
        prop_assert!(!drives_the_terminal(&whole), "{:?}", whole);
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(log.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for cut in at {
            chunks.push(&log[from..cut]);
            from = cut;
        }
        chunks.push(&log[from..]);
        prop_assert_eq!(filtered(&chunks), whole);
    }
}

/// Every command prints through this module: a `println!` elsewhere in `cli/` (or in
/// `main.rs`) would let a stored value reach the terminal raw again.
#[test]
fn no_command_prints_around_the_escaping() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("main.rs")];
    for entry in std::fs::read_dir(src.join("cli")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("terminal.rs") {
            files.push(path);
        }
    }
    assert!(files.len() > 10, "{files:?}");
    for file in files {
        let code = std::fs::read_to_string(&file).unwrap();
        for (n, line) in code.lines().enumerate() {
            let raw = [
                "println!",
                "print!",
                "eprintln!",
                "eprint!",
                "stdout().write",
            ]
            .iter()
            .any(|m| {
                line.match_indices(m)
                    .any(|(i, _)| !line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
            });
            assert!(!raw, "{}:{}: {line}", file.display(), n + 1);
        }
    }
}

#[test]
fn a_tables_columns_stay_aligned_whatever_the_lengths() {
    let rows = vec![
        vec![
            "ping".to_owned(),
            "acme/widgets".to_owned(),
            "pong".to_owned(),
        ],
        vec![
            "deployment_status.created".to_owned(),
            "a-very-long-organisation/a-long-repository".to_owned(),
            "recorded: deployment 880001 is success".to_owned(),
        ],
    ];
    let lines = table(&["EVENT", "REPOSITORY", "MESSAGE"], &rows);
    assert_eq!(
        lines,
        [
            "EVENT                      REPOSITORY                                  MESSAGE",
            "ping                       acme/widgets                                pong",
            "deployment_status.created  a-very-long-organisation/a-long-repository  recorded: deployment 880001 is success",
        ]
    );
    assert_eq!(table(&["A", "B"], &[]), ["A  B"]);
}

#[test]
fn json_is_printed_with_what_a_terminal_obeys_escaped_and_still_reads_back() {
    let value = serde_json::json!({
        "detail": "a\u{1b}]52;c;b3du\u{7}b\u{9b}2J\u{7f}\u{202e}evil",
        "n": 1,
    });
    let printed = json(&value);
    assert!(
        !printed.chars().any(|c| c != '\n' && is_unsafe(c)),
        "{printed:?}"
    );
    assert!(printed.contains("\\u001b]52"), "{printed}");
    assert!(
        printed.contains("\\u009b") && printed.contains("\\u202e"),
        "{printed}"
    );
    let back: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(back, value);
}
