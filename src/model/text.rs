//! Short human texts sent to GitHub: deployment and status descriptions are limited to 140
//! characters, and GitHub rejects longer ones with 422, so every one goes through here.

/// GitHub's limit on a deployment's or a status's `description`.
pub const MAX_DESCRIPTION_CHARS: usize = 140;

/// `text` on one line, cut to [`MAX_DESCRIPTION_CHARS`] characters with an ellipsis when it
/// is longer. Counts characters, not bytes, so it never splits a UTF-8 sequence.
pub fn description(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_DESCRIPTION_CHARS {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// `text` then `tail`, within [`MAX_DESCRIPTION_CHARS`]: `text` is cut (with an ellipsis)
/// and never `tail`, when `tail` says what matters most (that a failed verification rolled
/// back; insights count automatic rollbacks by it).
pub fn description_ending(text: &str, tail: &str) -> String {
    let tail = description(tail);
    let room = MAX_DESCRIPTION_CHARS.saturating_sub(tail.chars().count());
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= room {
        return format!("{one_line}{tail}");
    }
    let mut cut: String = one_line.chars().take(room.saturating_sub(1)).collect();
    cut.push('…');
    format!("{cut}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_text_is_cut_before_its_tail() {
        let why = format!(
            "verification failed: GET https://{}/healthz answered 502",
            "a".repeat(150)
        );
        let text = description_ending(&why, "; rolled back to 6f1e3c9");
        assert_eq!(text.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(
            text.starts_with("verification failed: GET https://aaa"),
            "{text}"
        );
        assert!(text.ends_with("…; rolled back to 6f1e3c9"), "{text}");
        assert_eq!(description_ending("short", "; tail"), "short; tail");
    }

    #[test]
    fn short_text_is_kept_on_one_line() {
        assert_eq!(
            description("exit code 3\nafter  42s"),
            "exit code 3 after 42s"
        );
    }

    #[test]
    fn long_text_is_cut_to_140_characters_with_an_ellipsis() {
        let cut = description(&"é".repeat(300));
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with('…'));
        assert_eq!(description(&"x".repeat(140)).chars().count(), 140);
        assert!(!description(&"x".repeat(140)).ends_with('…'));
    }
}
