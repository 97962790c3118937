use proptest::prelude::*;

use super::*;

#[test]
fn sqlite_paths_and_postgres_urls_are_accepted() {
    for sqlite in [
        "deployhook.db",
        "/var/lib/deployhook/deployhook.db",
        ":memory:",
        "./host=x.db",
        "data/my file.db",
    ] {
        let location = DatabaseLocation::parse(sqlite).unwrap();
        assert!(!location.is_postgres(), "{sqlite}");
        assert_eq!(location.expose_secret(), sqlite);
        assert_eq!(location.to_string(), sqlite);
    }
    for url in [
        "postgres://app:s3cret@db/deployhook",
        "postgresql://app@db:5432/deployhook?sslmode=verify-full",
    ] {
        let location: DatabaseLocation = url.parse().unwrap();
        assert!(location.is_postgres(), "{url}");
        assert_eq!(location.expose_secret(), url);
    }
}

#[test]
fn display_and_debug_never_show_the_password() {
    let location =
        DatabaseLocation::parse("postgres://app:s3cret@db/deployhook?password=s3cret").unwrap();
    assert_eq!(
        location.to_string(),
        "postgres://app:***@db/deployhook?password=***"
    );
    let debug = format!("{location:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("app:***@db"), "{debug}");
}

#[test]
fn a_libpq_keyword_string_is_refused_naming_its_keywords_not_their_values() {
    for (value, keys) in [
        (
            "host=db.example user=app password=s3cret dbname=deployhook",
            "host=, user=, password=, dbname=",
        ),
        ("password = s3cret host=db", "password=, host="),
        ("dbname=deployhook", "dbname="),
        ("/data/x.db sslmode=require", "sslmode="),
    ] {
        let err = DatabaseLocation::parse(value).unwrap_err();
        assert_eq!(
            err,
            InvalidDatabase::KeywordString {
                keys: keys.to_owned()
            },
            "{value}"
        );
        let message = err.to_string();
        assert!(!message.contains("s3cret"), "{message}");
        assert!(
            message.contains("postgres://USER:PASSWORD@HOST"),
            "{message}"
        );
    }
}

#[test]
fn another_schemes_url_is_refused_naming_the_scheme_not_the_password() {
    for (value, scheme, says) in [
        ("mysql://u:s3cret@h/db", "mysql", "mysql:// URL"),
        (
            "sqlite:///var/lib/deployhook.db",
            "sqlite",
            "without the scheme",
        ),
        (
            "file:///var/lib/deployhook.db",
            "file",
            "without the scheme",
        ),
        ("http://u:s3cret@h/", "http", "http:// URL"),
        ("POSTGRES://u:s3cret@h/db", "POSTGRES", "lower case"),
    ] {
        let err = DatabaseLocation::parse(value).unwrap_err();
        assert!(
            matches!(&err, InvalidDatabase::Scheme { scheme: s, .. } if s == scheme),
            "{value}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(says), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
    assert_eq!(DatabaseLocation::parse(" "), Err(InvalidDatabase::Empty));
}

#[test]
fn redact_masks_a_password_in_either_reading_of_the_url() {
    let cases = [
        // An `@` in a query password: the credentials end at the first `@` there.
        (
            "postgres://app@db/x?sslmode=require&password=ab@cdefgh",
            "postgres://app@db/x?sslmode=require&password=***",
        ),
        // No credentials; an `@` in another parameter after the password.
        (
            "postgres://db/x?password=s3cret&application_name=a@b",
            "postgres://db/x?password=***&application_name=a@b",
        ),
        // A parameter name percent-encoded is still a password.
        (
            "postgres://db/x?pass%77ord=s3cret",
            "postgres://db/x?pass%77ord=***",
        ),
        (
            "postgres://db/x?sslpassword=s3cret",
            "postgres://db/x?sslpassword=***",
        ),
    ];
    for (url, shown) in cases {
        assert_eq!(redact(url), shown, "{url}");
    }
}

/// A password made of anything, with a marker inside: no piece holding the marker shows.
fn password() -> impl Strategy<Value = String> {
    ("[a-z0-9@/?:=%#.+ -]{0,8}", "[a-z0-9@/?:=%#.+ -]{0,8}").prop_map(|(a, b)| format!("{a}Q9Z{b}"))
}

proptest! {
    #[test]
    fn no_piece_of_a_password_in_the_credentials_shows(password in password()) {
        let url = format!("postgres://app:{password}@db.example:5432/deployhook?sslmode=require");
        let shown = redact(&url);
        prop_assert_eq!(shown, "postgres://app:***@db.example:5432/deployhook?sslmode=require");
    }

    #[test]
    fn no_piece_of_a_password_in_the_query_shows(password in password()) {
        // `&` ends a parameter's value in every reading: a password holding one is written
        // percent-encoded.
        let url = format!("postgres://app@db.example/deployhook?password={password}&sslmode=require");
        let shown = DatabaseLocation::parse(&url).unwrap().to_string();
        prop_assert!(!shown.contains("Q9Z"), "{}", shown);
    }
}
