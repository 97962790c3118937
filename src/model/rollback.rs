//! A rollback's marks in a deployment's payload, as deployhook's rollback writes them:
//! `rollback: true`, and `rolled_back`, the commit it replaced. Whoever can create a
//! deployment on GitHub writes the payload, so `rolled_back` counts only when it is a
//! commit (7 to 40 hex digits): other text would reach logs, pages and notifications as
//! if deployhook had written it.

use serde_json::Value;

/// Whether the payload marks a rollback.
pub fn is_rollback(payload: &Value) -> bool {
    payload.get("rollback") == Some(&Value::Bool(true))
}

/// The commit a rollback replaced, when the payload names one.
pub fn rolled_back(payload: &Value) -> Option<String> {
    let sha = payload.get("rolled_back")?.as_str()?;
    let commit = (7..=40).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit());
    commit.then(|| sha.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_a_commit_counts_as_what_was_rolled_back() {
        let sha = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";
        assert_eq!(
            rolled_back(&json!({"rolled_back": sha})).as_deref(),
            Some(sha)
        );
        assert_eq!(
            rolled_back(&json!({"rolled_back": "0a1b2c3"})).as_deref(),
            Some("0a1b2c3")
        );
        for forged in [
            json!({"rolled_back": "0a1b2c3\nINFO forged line"}),
            json!({"rolled_back": "main"}),
            json!({"rolled_back": "0a1b2c"}),
            json!({"rolled_back": format!("{sha}0")}),
            json!({"rolled_back": 12345678}),
            json!({}),
        ] {
            assert_eq!(rolled_back(&forged), None, "{forged}");
        }
        assert!(is_rollback(&json!({"rollback": true})));
        assert!(!is_rollback(&json!({"rollback": "true"})));
    }
}
