//! The test harness's own tests (`deployhook_testkit::postgres`): a database per test on the
//! shared server, and private servers that stop, start, restart, survive a taken port and
//! clean up when dropped. Skipped loudly without PostgreSQL's server, as every PostgreSQL
//! test is.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use deployhook_testkit::postgres::{Cluster, shared};

fn databases(cluster: &Cluster) -> Vec<String> {
    let out = cluster
        .psql("postgres", "SELECT datname FROM pg_database")
        .unwrap();
    out.lines().map(str::to_owned).collect()
}

fn refuses(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    matches!(
        TcpStream::connect_timeout(&address, Duration::from_secs(1)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

fn name_of(url: &str) -> &str {
    let path = url.rsplit_once('/').unwrap().1;
    path.split_once('?').unwrap().0
}

#[test]
fn the_shared_cluster_gives_each_test_a_database_of_its_own() {
    let Some(cluster) = shared() else { return };
    assert!(std::ptr::eq(cluster, shared().unwrap()), "started once");
    let (first, second) = (cluster.database(), cluster.database());
    assert_ne!(first, second);
    let prefix = format!("postgres://postgres@127.0.0.1:{}/", cluster.port());
    for url in [&first, &second] {
        assert!(
            url.starts_with(&prefix) && url.ends_with("?sslmode=disable"),
            "{url}"
        );
    }
    let listed = databases(cluster);
    for url in [&first, &second] {
        assert!(
            listed.iter().any(|d| d == name_of(url)),
            "{url} in {listed:?}"
        );
    }
    // Empty, and usable.
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";
    assert_eq!(cluster.psql(name_of(&first), tables).unwrap().trim(), "0");
}

#[test]
fn a_private_cluster_stops_starts_and_restarts_on_its_port_with_its_data() {
    let Some(cluster) = Cluster::start_private() else {
        return;
    };
    let port = cluster.port();
    let url = cluster.database();
    let name = name_of(&url);
    cluster.psql(name, "CREATE TABLE kept (n int)").unwrap();

    cluster.stop().unwrap();
    assert!(
        refuses(port),
        "stopped, port {port} still accepts connections"
    );
    let error = format!("{:#}", cluster.psql(name, "SELECT 1").unwrap_err());
    assert!(
        error.contains("last lines of"),
        "the log is quoted: {error}"
    );

    cluster.start().unwrap();
    assert!(!refuses(port));
    cluster.psql(name, "INSERT INTO kept VALUES (1)").unwrap();

    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port);
    assert_eq!(
        cluster.psql(name, "SELECT n FROM kept").unwrap().trim(),
        "1"
    );
}

#[test]
fn a_start_on_a_taken_port_fails_quoting_the_log() {
    let Some(cluster) = Cluster::start_private() else {
        return;
    };
    cluster.stop().unwrap();
    let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, cluster.port())).unwrap();
    let error = format!("{:#}", cluster.start().unwrap_err());
    assert!(error.contains("was taken"), "{error}");
    assert!(error.contains("Address already in use"), "{error}");
    drop(squatter);
    cluster.start().unwrap();
    cluster.psql("postgres", "SELECT 1").unwrap();
}

#[test]
fn dropping_a_private_cluster_stops_it_and_removes_its_directory() {
    let Some(cluster) = Cluster::start_private() else {
        return;
    };
    let (port, base) = (cluster.port(), cluster.base().to_path_buf());
    assert!(base.join("data/postmaster.pid").is_file());
    drop(cluster);
    assert!(!base.exists(), "{} is still there", base.display());
    assert!(
        refuses(port),
        "dropped, port {port} still accepts connections"
    );
}
