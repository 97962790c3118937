//! The PostgreSQL engine against real servers (`deployhook_testkit::postgres`; skipped loudly
//! without the server binaries): TLS in each `sslmode` with certificates made by the
//! `openssl` command, the errors a failed connection gives, the password kept out of them,
//! and the schema migrated once by replicas starting together.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::{PgStore, redact};
use deployhook_testkit::postgres::{self as cluster, Cluster};

/// A user that must give a password (SCRAM) on the TLS cluster; every other user is
/// trusted, as on every test cluster.
const PASSWORD_USER: &str = "pw_user";
const PASSWORD: &str = "right-horse";

/// Certificates made with the `openssl` command, in a directory of the cluster's own
/// (removed with it): a CA, a server certificate it signed, and an unrelated second CA.
#[derive(Debug)]
struct Pki {
    dir: PathBuf,
}

/// What the server certificate names.
#[derive(Debug, Clone, Copy)]
enum San {
    /// `DNS:localhost, IP:127.0.0.1`.
    LocalhostAndIp,
    /// `DNS:localhost` only.
    LocalhostOnly,
}

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_localhost_and_ip]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[server_localhost_only]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

impl Pki {
    fn create(dir: PathBuf, san: San) -> Pki {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("openssl.cnf"), OPENSSL_CNF).unwrap();
        let pki = Pki { dir };
        for (name, subject) in [
            ("ca", "/CN=deployhook test CA"),
            ("other-ca", "/CN=unrelated test CA"),
        ] {
            pki.openssl(&[
                "req",
                "-x509",
                "-new",
                "-config",
                "openssl.cnf",
                "-extensions",
                "ca",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-subj",
                subject,
            ]);
        }
        pki.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "server.key",
        ]);
        pki.openssl(&[
            "req",
            "-new",
            "-config",
            "openssl.cnf",
            "-key",
            "server.key",
            "-subj",
            "/CN=localhost",
            "-out",
            "server.csr",
        ]);
        let extensions = match san {
            San::LocalhostAndIp => "server_localhost_and_ip",
            San::LocalhostOnly => "server_localhost_only",
        };
        let serial = format!("0x{:x}", rand::random::<u64>());
        pki.openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            extensions,
            "-out",
            "server.crt",
        ]);
        pki
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("running openssl");
        assert!(
            out.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The CA that signed the server's certificate.
    fn ca(&self) -> String {
        self.path("ca.pem")
    }

    /// A CA that signed nothing the server has.
    fn other_ca(&self) -> String {
        self.path("other-ca.pem")
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }
}

/// The cluster's data directory, as the server says.
fn data_directory(cluster: &Cluster) -> PathBuf {
    let out = cluster.psql("postgres", "SHOW data_directory").unwrap();
    PathBuf::from(out.trim())
}

/// A private cluster serving TLS with a certificate naming `san`, signed by its
/// [`Pki`]'s CA; [`PASSWORD_USER`] must give [`PASSWORD`]. `None` without the server.
fn tls_cluster(san: San) -> Option<(Cluster, Pki)> {
    let cluster = Cluster::start_private()?;
    let data = data_directory(&cluster);
    // Next to the data directory, in the cluster's own directory: gone with the cluster.
    let pki = Pki::create(data.parent().unwrap().join("pki"), san);
    let owner = std::fs::metadata(&data).unwrap();
    for (name, mode) in [("server.crt", 0o644), ("server.key", 0o600)] {
        let to = data.join(name);
        std::fs::copy(pki.dir.join(name), &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&to, Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    // First match wins: this user by password, everyone else trusted as before.
    let hba = data.join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .unwrap();
    cluster
        .psql(
            "postgres",
            &format!("CREATE ROLE {PASSWORD_USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}'"),
        )
        .unwrap();
    cluster
        .psql("postgres", "ALTER SYSTEM SET ssl = on")
        .unwrap();
    cluster.restart().unwrap();
    assert_eq!(cluster.psql("postgres", "SHOW ssl").unwrap().trim(), "on");
    Some((cluster, pki))
}

/// One TLS cluster (certificate for localhost and 127.0.0.1) for the tests that do not
/// restart it; it stops when the test process ends, as the shared cluster does.
fn shared_tls_cluster() -> Option<&'static (Cluster, Pki)> {
    static CLUSTER: OnceLock<Option<(Cluster, Pki)>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| tls_cluster(San::LocalhostAndIp))
        .as_ref()
}

/// `database` (a URL from [`Cluster::database`]) at `host`, with `query` for its query.
fn url(database: &str, host: &str, query: &str) -> String {
    let (base, _) = database.split_once('?').unwrap();
    let base = base.replacen("@127.0.0.1:", &format!("@{host}:"), 1);
    assert!(base.contains(host), "{base}");
    format!("{base}?{query}")
}

/// Whether the store's connections are encrypted, and with which TLS version.
async fn encryption(store: &PgStore) -> (bool, Option<String>) {
    store
        .run(true, |c| {
            c.query_row(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                [],
                |row| Ok((row.get::<_, bool>(0)?, row.get::<_, Option<String>>(1)?)),
            )
        })
        .await
        .unwrap()
}

async fn connect_err(url: &str) -> String {
    match PgStore::connect(url).await {
        Ok(store) => panic!("{url} connected: {store:?}"),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_encrypted((ssl, version): (bool, Option<String>), url: &str) {
    assert!(ssl, "{url}: not encrypted");
    let version = version.unwrap_or_default();
    assert!(
        version == "TLSv1.3" || version == "TLSv1.2",
        "{url}: TLS version {version:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_servers_ca_connects_encrypted() {
    let Some((cluster, pki)) = shared_tls_cluster() else {
        return;
    };
    let database = cluster.database();
    // By name, and by address (the certificate names both).
    for host in ["localhost", "127.0.0.1"] {
        let url = url(
            &database,
            host,
            &format!("sslmode=verify-full&sslrootcert={}", pki.ca()),
        );
        let store = PgStore::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:#}"));
        assert_encrypted(encryption(&store).await, &url);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_and_verify_ca_refuse_a_certificate_from_another_ca_saying_why() {
    let Some((cluster, pki)) = shared_tls_cluster() else {
        return;
    };
    let database = cluster.database();
    for mode in ["verify-full", "verify-ca"] {
        let url = url(
            &database,
            "localhost",
            &format!("sslmode={mode}&sslrootcert={}", pki.other_ca()),
        );
        let error = connect_err(&url).await;
        assert!(error.contains("could not connect to"), "{mode}: {error}");
        // rustls's words: "invalid peer certificate: UnknownIssuer".
        assert!(
            error.contains("invalid peer certificate") && error.contains("UnknownIssuer"),
            "{mode}: the cause is lost: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_name_and_verify_ca_does_not() {
    let Some((cluster, pki)) = tls_cluster(San::LocalhostOnly) else {
        return;
    };
    let database = cluster.database();
    let query = |mode: &str| format!("sslmode={mode}&sslrootcert={}", pki.ca());

    // The certificate names localhost, not 127.0.0.1.
    let by_address = url(&database, "127.0.0.1", &query("verify-full"));
    let error = connect_err(&by_address).await;
    assert!(
        error.contains("invalid peer certificate")
            && error.contains("certificate not valid for name \"127.0.0.1\""),
        "{error}"
    );
    let by_name = url(&database, "localhost", &query("verify-full"));
    let store = PgStore::connect(&by_name)
        .await
        .unwrap_or_else(|e| panic!("{by_name}: {e:#}"));
    assert_encrypted(encryption(&store).await, &by_name);

    // verify-ca: the chain is checked, the name is not.
    let chain_only = url(&database, "127.0.0.1", &query("verify-ca"));
    let store = PgStore::connect(&chain_only)
        .await
        .unwrap_or_else(|e| panic!("{chain_only}: {e:#}"));
    assert_encrypted(encryption(&store).await, &chain_only);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_and_prefer_encrypt_without_checking_whose_certificate_it_is() {
    let Some((cluster, pki)) = shared_tls_cluster() else {
        return;
    };
    let database = cluster.database();
    for query in [
        format!("sslmode=require&sslrootcert={}", pki.other_ca()),
        "sslmode=require".to_owned(),
        "sslmode=prefer".to_owned(),
        // No sslmode: libpq's default, prefer.
        String::new(),
    ] {
        let url = url(&database, "127.0.0.1", &query);
        let store = PgStore::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:#}"));
        assert_encrypted(encryption(&store).await, &url);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_connects_unencrypted_to_a_server_that_offers_tls() {
    let Some((cluster, _)) = shared_tls_cluster() else {
        return;
    };
    let url = url(&cluster.database(), "127.0.0.1", "sslmode=disable");
    let store = PgStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e:#}"));
    assert_eq!(encryption(&store).await, (false, None), "{url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_says_so_and_never_shows_the_password() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    for (url, shown) in [
        (
            format!("postgres://postgres:s3cret@127.0.0.1:{port}/db?sslmode=disable"),
            format!("postgres://postgres:***@127.0.0.1:{port}/db?sslmode=disable"),
        ),
        (
            format!("postgres://postgres@127.0.0.1:{port}/db?password=s3cret&sslmode=require"),
            format!("postgres://postgres@127.0.0.1:{port}/db?password=***&sslmode=require"),
        ),
    ] {
        let error = connect_err(&url).await;
        assert!(error.to_lowercase().contains("refused"), "{error}");
        assert!(error.contains(&shown), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_says_so_and_never_shows_the_password() {
    let Some((cluster, _)) = shared_tls_cluster() else {
        return;
    };
    let database = cluster.database();
    let as_user = |password: &str, query: &str| {
        url(&database, "127.0.0.1", query).replacen(
            "postgres://postgres@",
            &format!("postgres://{PASSWORD_USER}:{password}@"),
            1,
        )
    };
    for query in ["sslmode=disable", "sslmode=require"] {
        let error = connect_err(&as_user("wrong-horse", query)).await;
        assert!(
            error.contains(&format!(
                "password authentication failed for user \"{PASSWORD_USER}\""
            )),
            "{query}: {error}"
        );
        assert!(error.contains(&format!("{PASSWORD_USER}:***@")), "{error}");
        assert!(!error.contains("wrong-horse"), "{error}");

        let right = as_user(PASSWORD, query);
        PgStore::connect(&right)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e:#}"));
    }
}

#[test]
fn redact_masks_the_password_wherever_it_is() {
    assert_eq!(
        redact("postgres://app:pa/ss@db/x"),
        "postgres://app:***@db/x"
    );
    assert_eq!(
        redact("postgres://app:p?a@ss@db/x?sslmode=require"),
        "postgres://app:***@db/x?sslmode=require"
    );
    assert_eq!(
        redact("postgres://app:s3cret@db.example:5432/deployhook?sslmode=require"),
        "postgres://app:***@db.example:5432/deployhook?sslmode=require"
    );
    assert_eq!(
        redact("postgres://app@db/deployhook?sslmode=require&password=s3cret&application_name=x"),
        "postgres://app@db/deployhook?sslmode=require&password=***&application_name=x"
    );
    assert_eq!(
        redact("postgresql://app:s3cret@db/deployhook?password=s3cret"),
        "postgresql://app:***@db/deployhook?password=***"
    );
    // An `@` in the password (unescaped): the host is after the last one.
    assert_eq!(
        redact("postgres://app:s3@cret@db/deployhook"),
        "postgres://app:***@db/deployhook"
    );
    // An empty password is masked too: that there is one is not for the log either.
    assert_eq!(redact("postgres://app:@db/x"), "postgres://app:***@db/x");
    for unchanged in [
        "postgres://app@db.example:5432/deployhook?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        "postgres://db/deployhook",
        "postgres://app@db",
        "not a url",
    ] {
        assert_eq!(redact(unchanged), unchanged);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_the_schema_once() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let url = cluster.database();
    let (first, second) = tokio::join!(PgStore::connect(&url), PgStore::connect(&url));
    let first = first.unwrap_or_else(|e| panic!("{e:#}"));
    second.unwrap_or_else(|e| panic!("{e:#}"));
    let rows: i64 = first
        .run(true, |c| {
            c.query_row("SELECT count(*) FROM schema_version", [], |r| r.get(0))
        })
        .await
        .unwrap();
    assert_eq!(rows, 1);
    let version: i64 = first
        .run(true, |c| {
            c.query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        })
        .await
        .unwrap();
    assert_eq!(
        version,
        i64::try_from(crate::store::SCHEMA_VERSION).unwrap()
    );
}

/// A database made at version 11 is upgraded one version at a time (12, 13: the merge
/// marks, 14: the audit log, 15: personal tokens, 16: approvals), to the state SQLite's
/// migrations make; one at a version no script starts from is refused, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_at_version_11_is_upgraded_and_an_older_one_refused() {
    use crate::store::schema::merge_order::tests::{assert_upgraded, on_record_before_13};
    use crate::store::waits::tests::sources::{CHECK_RESULTS_AT_11, DROP_AFTER_13};
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let url = cluster.database();
    let store = PgStore::connect(&url).await.unwrap();
    // Back to version 11: what 12 (check results per source), 13 (the merge marks) and the
    // later versions add goes, and the record is as 11 kept it.
    store
        .run(false, |c| {
            c.execute_batch(&format!(
                "{DROP_AFTER_13} DROP TABLE merge_marks; ALTER TABLE merges DROP COLUMN merged_at;
                 {CHECK_RESULTS_AT_11}
                 UPDATE schema_version SET version = 11"
            ))?;
            on_record_before_13(c);
            Ok(())
        })
        .await
        .unwrap();
    let upgraded = PgStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let checked = upgraded
        .run(true, |c| {
            let version: i64 =
                c.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?;
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                assert_upgraded(c);
                // 16: approvals.
                assert_eq!(crate::store::approvals::waiting(c).unwrap(), []);
                assert_eq!(crate::store::approvals::next_deadline(c).unwrap(), None);
            }));
            Ok((version, checked))
        })
        .await
        .unwrap();
    assert_eq!(
        checked.0,
        i64::try_from(crate::store::SCHEMA_VERSION).unwrap()
    );
    if let Err(panic) = checked.1 {
        std::panic::resume_unwind(panic);
    }
    // 14: the audit log takes an entry and gives it back.
    let audited = upgraded
        .run(false, |c| {
            Ok(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                || crate::store::audit::tests::assert_audit_works(c),
            )))
        })
        .await
        .unwrap();
    if let Err(panic) = audited {
        std::panic::resume_unwind(panic);
    }
    upgraded
        .run(false, |c| {
            c.execute("UPDATE schema_version SET version = 10", [])
        })
        .await
        .unwrap();
    let refused = PgStore::connect(&url).await.unwrap_err();
    let refused = format!("{refused:#}");
    let expected = format!(
        "at schema version 10; this deployhook knows no PostgreSQL migration from it to {}",
        crate::store::SCHEMA_VERSION
    );
    assert!(refused.contains(&expected), "{refused}");
}
