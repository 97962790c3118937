//! What a TOML or serde error means in the file's terms, and the name a typo most likely
//! meant (the nearest known one by edit distance), so an error says what to write instead.

use std::ops::Range;

/// What a TOML or serde error means in this file's terms: serde speaks of maps and
/// sequences, a reader thinks of `[[environment]]` and `command = [...]`.
pub(super) fn explain(text: &str, span: Option<Range<usize>>, message: &str) -> String {
    let line = span.map_or("", |s| {
        let start = text[..s.start.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        text[start..end].trim()
    });
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field)
    {
        let known: Vec<&str> = message.split('`').skip(3).step_by(2).collect();
        if let Some(meant) = closest(field, &known) {
            return format!("unknown field `{field}`: did you mean `{meant}`?");
        }
        return message.to_owned();
    }
    if message.starts_with("invalid type: map, expected a sequence")
        && let Some(table) = line
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .filter(|t| !t.starts_with('['))
    {
        return format!(
            "[{table}] describes a single table, but a file may have several: write \
             [[{table}]] (two brackets), once before each {table}"
        );
    }
    if message.starts_with("invalid type: string")
        && message.ends_with("expected a sequence")
        && let Some((key, value)) = line.split_once('=')
    {
        let (key, value) = (key.trim(), value.trim());
        let words = value
            .trim_matches('"')
            .split_whitespace()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        return format!(
            "`{key}` is a list, one string per word (no shell runs it): write {key} = [{words}]"
        );
    }
    message.to_owned()
}

/// The name in `known` that `typo` most likely meant: at most two edits away (or one, for
/// short names), and nearer than any other.
pub fn closest<'a>(typo: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = if typo.len() <= 4 { 1 } else { 2 };
    known
        .iter()
        .map(|name| (edit_distance(typo, name), *name))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance, over characters.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
