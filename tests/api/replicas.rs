//! Two real replicas — the binary, as child processes — on one PostgreSQL database and one
//! stateful fake GitHub: a merge and its deployment delivered through both deploy once; a
//! leader killed mid-deploy is replaced, its deploy reported per `on_interrupt`, its command
//! gone, and the queue goes on; PostgreSQL stopped under both answers 503, then both
//! recover; two replicas started together on an empty database migrate it once.
//!
//! Skipped (loudly, by the harness) without PostgreSQL's server binaries. The tests take
//! turns: each runs two or three servers and a database, and they measure failover times.
//!
//! Two more pin bugs these tests found, now fixed: a status queued while the one before it
//! completed was never sent on PostgreSQL (each key's head is now changed under one
//! advisory lock), and a leader that lost its lock with the database up ran beside its
//! successor and reported over it (now it SIGKILLs its deploys at once, only a job's owner
//! records its end, and a new leader that found jobs running holds back its first claims).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deployhook_testkit::postgres::{self as cluster, Cluster};
use serde_json::{Value, json};
use wiremock::MockServer;

use crate::checks::merged_pull_request;
use crate::fake_github::{CreatedDeployment, FakeGitHub};
use crate::helpers::{
    PostedStatus, SECRET, TOKEN, fixture_json, is_legal_order, send_signed, statuses, write_script,
};

/// The longest any wait here lasts before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);
/// A replica's log line when it takes the lead, and when it stands by.
const LEADS: &str = "this replica leads the workers";
const STANDS_BY: &str = "takes deliveries and stands by";
/// The answer's error to a delivery that could not be recorded.
const NOT_RECORDED: &str = "deployhook could not record this delivery; redeliver it later";

/// One test at a time: each runs several servers on a 2-core machine, and some measure.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the replicas of one test share: a directory (the deploy script and what it
/// writes), the fake GitHub, the database and the settings.
struct Setup {
    dir: tempfile::TempDir,
    github: MockServer,
    fake: FakeGitHub,
    database: String,
    settings: Vec<(String, String)>,
    http: reqwest::Client,
    /// Every replica's log, for failure messages.
    logs: Mutex<Vec<(String, Log)>>,
}

type Log = Arc<Mutex<Vec<(Instant, String)>>>;

impl Setup {
    /// The deploy command is a script whose body `script` writes, given the directory.
    async fn new(database: String, script: impl FnOnce(&Path) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let github = MockServer::start().await;
        let fake = FakeGitHub::mount(&github).await;
        let command = write_script(dir.path(), "deploy.sh", &script(dir.path()));
        let settings = vec![
            ("DEPLOY_COMMAND".into(), command.display().to_string()),
            ("DEPLOYHOOK_POLICY".into(), "queue".into()),
        ];
        Self {
            dir,
            github,
            fake,
            database,
            settings,
            http: reqwest::Client::new(),
            logs: Mutex::default(),
        }
    }

    fn set(&mut self, name: &str, value: &str) {
        self.settings.push((name.into(), value.into()));
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The runs the deploy script recorded so far.
    fn runs(&self) -> Vec<Run> {
        runs(&self.path("runs.log"))
    }

    /// Starts replica `name` without waiting for it.
    fn spawn(&self, name: &str) -> Replica {
        self.spawn_in(name, Command::new(env!("CARGO_BIN_EXE_deployhook")))
    }

    /// Starts replica `name` with `command` (the binary, or a wrapper that runs it).
    fn spawn_in(&self, name: &str, mut command: Command) -> Replica {
        let mut child = command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GITHUB_WEBHOOK_SECRET", SECRET)
            .env("GITHUB_TOKEN", TOKEN)
            .env("GITHUB_API_URL", self.github.uri())
            .env("DEPLOYHOOK_DATABASE", &self.database)
            .env("DEPLOYHOOK_LISTEN", "127.0.0.1:0")
            .env("DEPLOYHOOK_LOG_FORMAT", "json")
            .envs(self.settings.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let log: Log = Arc::default();
        let lines = log.clone();
        self.logs
            .lock()
            .unwrap()
            .push((name.to_owned(), log.clone()));
        // Reads the log to its end (the server never blocks on a full pipe), each line
        // stamped with when it came.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                lines.lock().unwrap().push((Instant::now(), line));
            }
        });
        Replica {
            name: name.to_owned(),
            pid: child.id(),
            child,
            log,
            url: String::new(),
        }
    }

    /// Starts replica `name` and waits until it listens.
    async fn start(&self, name: &str) -> Replica {
        let mut replica = self.spawn(name);
        replica.listening().await;
        replica
    }

    /// The statuses GitHub received, in order.
    async fn statuses(&self) -> Vec<PostedStatus> {
        statuses(&self.github.received_requests().await.unwrap_or_default())
    }

    /// The final statuses posted for `deployment`.
    async fn finals(&self, deployment: u64) -> Vec<PostedStatus> {
        self.statuses()
            .await
            .into_iter()
            .filter(|s| s.deployment == deployment && is_final(&s.state))
            .collect()
    }

    /// Waits for the first final status of `deployment`.
    async fn final_status(&self, deployment: u64) -> PostedStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.finals(deployment).await.into_iter().next() {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "no final status of {deployment} after {PATIENCE:?}; GitHub got {:#?}; \
                     runs: {:?}\noutbox:\n{}\n{}",
                    crate::helpers::summary(&self.github.received_requests().await.unwrap()),
                    self.runs(),
                    self.outbox(),
                    self.dump()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The outbox's rows, read with `psql` (for failure messages).
    fn outbox(&self) -> String {
        let out = Command::new("psql")
            .args(["-X", "-A", "-c"])
            .arg(
                "SELECT id, ordering_key, kind, state, head, in_flight, attempts, body \
                 FROM outbox ORDER BY id",
            )
            .arg(&self.database)
            .output();
        match out {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(err) => format!("psql: {err}"),
        }
    }

    /// Every replica's log.
    fn dump(&self) -> String {
        let mut text = String::new();
        for (name, log) in self.logs.lock().unwrap().iter() {
            text.push_str(&format!("--- {name}'s log:\n"));
            for (_, line) in log.lock().unwrap().iter() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// The deliveries the database recorded, as `hook:delivery`.
    fn recorded_deliveries(&self, cluster: &Cluster) -> HashSet<String> {
        let out = cluster
            .psql(
                database_name(&self.database),
                "SELECT hook_id || ':' || delivery_id FROM deliveries",
            )
            .unwrap();
        out.lines().map(str::to_owned).collect()
    }
}

fn database_name(url: &str) -> &str {
    let name = url.rsplit('/').next().unwrap();
    name.split('?').next().unwrap()
}

fn is_final(state: &str) -> bool {
    matches!(state, "success" | "failure" | "error" | "inactive")
}

/// `deployhook serve` as a child, its log lines stamped with when they came.
struct Replica {
    name: String,
    pid: u32,
    child: Child,
    log: Log,
    url: String,
}

impl Replica {
    /// Waits until the server listens, and takes its address from the log.
    async fn listening(&mut self) {
        let addr = eventually(&format!("{} to listen", self.name), async || {
            self.log.lock().unwrap().iter().find_map(|(_, line)| {
                let line: Value = serde_json::from_str(line).ok()?;
                line["fields"]["addr"].as_str().map(str::to_owned)
            })
        })
        .await;
        self.url = format!("http://{addr}");
    }

    /// When the first log line containing `text` came (after `after`, when given).
    fn logged(&self, text: &str, after: Option<Instant>) -> Option<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|(at, line)| line.contains(text) && after.is_none_or(|after| *at > after))
            .map(|(at, _)| *at)
    }

    /// Waits for a log line containing `text`.
    async fn line(&self, text: &str) -> Instant {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(at) = self.logged(text, None) {
                return at;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no log line with {text:?}; the log:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn log_text(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGKILL: no shutdown code runs. Returns when the signal was sent.
    fn kill(&mut self) -> Instant {
        self.child.kill().unwrap();
        let at = Instant::now();
        self.child.wait().unwrap();
        at
    }

    /// Posts a signed delivery; its status and body.
    async fn send(
        &self,
        http: &reqwest::Client,
        event: &str,
        body: &[u8],
        delivery: &str,
        hook: u64,
    ) -> (u16, Value) {
        let response = send_signed(http, &self.url, event, body, delivery, hook)
            .await
            .unwrap_or_else(|e| panic!("{}: {delivery}: {e}", self.name));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// `/readyz`: its status code and body.
    async fn readyz(&self, http: &reqwest::Client) -> (u16, Value) {
        match http
            .get(format!("{}/readyz", self.url))
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(err) => (0, Value::String(err.to_string())),
        }
    }

    /// This replica's role while it is ready, else `None`.
    async fn ready_role(&self, http: &reqwest::Client) -> Option<String> {
        let (status, body) = self.readyz(http).await;
        if status != 200 || body["status"] != "ready" {
            return None;
        }
        assert_eq!(body["checks"]["engine"], "postgres", "{body}");
        body["checks"]["replica"]["role"]
            .as_str()
            .map(str::to_owned)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` holds, up to [`PATIENCE`].
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until both replicas are ready, one leading and the other standing by; the leader
/// first.
async fn leader_and_standby<'a>(
    http: &reqwest::Client,
    a: &'a Replica,
    b: &'a Replica,
) -> (&'a Replica, &'a Replica) {
    let roles = eventually("one ready leader and one ready standby", async || {
        let roles = (a.ready_role(http).await?, b.ready_role(http).await?);
        (roles.0 != roles.1).then_some(roles)
    })
    .await;
    match (roles.0.as_str(), roles.1.as_str()) {
        ("leader", "standby") => (a, b),
        ("standby", "leader") => (b, a),
        other => panic!("roles {other:?}"),
    }
}

/// One run of the deploy script, from the lines it appended to `runs.log`:
/// `start ID PID PPID NANOS` and `end ID PID NANOS`.
#[derive(Debug, Clone)]
struct Run {
    deployment: u64,
    pid: i32,
    /// The process that started the command: the replica that ran it.
    parent: u32,
    start: u128,
    end: Option<u128>,
}

fn runs(path: &Path) -> Vec<Run> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut runs: Vec<Run> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["start", id, pid, ppid, at] => runs.push(Run {
                deployment: id.parse().unwrap(),
                pid: pid.parse().unwrap(),
                parent: ppid.parse().unwrap(),
                start: at.parse().unwrap(),
                end: None,
            }),
            ["end", _, pid, at] => {
                let pid: i32 = pid.parse().unwrap();
                let run = runs.iter_mut().rev().find(|r| r.pid == pid).unwrap();
                run.end = Some(at.parse().unwrap());
            }
            _ => {} // the script's own remarks (`overlap …`), read by the tests that write them
        }
    }
    runs
}

/// The runs of `deployment`.
fn runs_of(runs: &[Run], deployment: u64) -> Vec<Run> {
    runs.iter()
        .filter(|r| r.deployment == deployment)
        .cloned()
        .collect()
}

/// Asserts that no two finished runs overlap (all are of one repository and environment).
/// A killed run has no end: the runs after it checked themselves that it was gone
/// ([`overlaps`]).
fn assert_no_overlap(runs: &[Run]) {
    let mut spans: Vec<(u128, u128, &Run)> = runs
        .iter()
        .filter_map(|r| Some((r.start, r.end?, r)))
        .collect();
    spans.sort_by_key(|s| s.0);
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two runs of acme/widgets production overlap: {:?} and {:?}",
            pair[0].2,
            pair[1].2
        );
    }
}

/// Whether process `pid` lives (a zombie does not: it waits for its parent — here
/// possibly PID 1 — to reap it, and runs nothing).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// The process group of `pid`, from `/proc`.
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// A merge commit's SHA for pull request `number`.
fn merge_sha(number: u64) -> String {
    format!("ab{number:038}")
}

/// GitHub's `deployment` event for a deployment the fake created.
fn deployment_event(created: &CreatedDeployment) -> Vec<u8> {
    let mut event = fixture_json("deployment.created.json");
    let deployment = &mut event["deployment"];
    deployment["id"] = json!(created.id);
    deployment["sha"] = json!(created.sha);
    deployment["ref"] = json!(created.sha);
    deployment["environment"] = json!(created.environment);
    deployment["payload"]["pull_request"] = json!(created.pull_request);
    event.to_string().into_bytes()
}

/// GitHub's `deployment` event for deployment `id` (of the fixture's commit).
fn deployment(id: u64) -> Vec<u8> {
    let mut event = fixture_json("deployment.created.json");
    event["deployment"]["id"] = json!(id);
    event.to_string().into_bytes()
}

/// The deploy script of these tests: records `start ID PID PPID NANOS` and `end ID PID
/// NANOS` in `runs.log`. First it looks for the processes of the long deploys that ran
/// before (`pids-*`): one still alive is an overlap (`overlap ID PID STATE`). Deployments
/// 77xxxx are long: the first run writes its pid and a background child's (`sleep 600 &`)
/// to `pids-ID` and sleeps; a second run (on_interrupt = retry) ends at once. The others
/// take `quick` seconds.
fn script(dir: &Path, quick: &str) -> String {
    let dir = dir.display();
    format!(
        r#"id=$DEPLOYHOOK_DEPLOYMENT_ID
echo "start $id $$ $PPID $(date +%s%N)" >> '{dir}/runs.log'
for p in $(cat '{dir}'/pids-* 2>/dev/null); do
  s=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | cut -c1)
  case "$s" in ''|Z|X) ;; *) echo "overlap $id $p $s" >> '{dir}/runs.log';; esac
done
case "$id" in
  77*)
    if [ ! -e '{dir}'/pids-$id ]; then
      sleep 600 > /dev/null 2>&1 &
      echo "$$ $!" > '{dir}'/pids-$id.tmp
      mv '{dir}'/pids-$id.tmp '{dir}'/pids-$id
      sleep 300
    fi ;;
  *) sleep {quick} ;;
esac
echo "end $id $$ $(date +%s%N)" >> '{dir}/runs.log'"#
    )
}

/// The script's `overlap` lines: a run that began while a killed run's processes lived.
fn overlaps(setup: &Setup) -> Vec<String> {
    let text = std::fs::read_to_string(setup.path("runs.log")).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("overlap"))
        .map(str::to_owned)
        .collect()
}

/// The pids a long deploy wrote: its command's and its background child's.
async fn long_deploy_pids(setup: &Setup, id: u64) -> (i32, i32) {
    let path = setup.path(&format!("pids-{id}"));
    eventually(&format!("deploy {id} to start"), async || {
        let text = std::fs::read_to_string(&path).ok()?;
        let mut pids = text.split_whitespace().map(|p| p.parse().unwrap());
        Some((pids.next()?, pids.next()?))
    })
    .await
}

/// Sends `body` through each `(replica, delivery, hook)` at once; asserts every answer is
/// a 2xx and exactly one of them accepted it (the others: a duplicate, or already done).
async fn deliver_everywhere(
    http: &reqwest::Client,
    event: &str,
    body: &[u8],
    through: &[(&Replica, &str, u64)],
) -> Vec<String> {
    let sends = through
        .iter()
        .map(|(replica, delivery, hook)| replica.send(http, event, body, delivery, *hook));
    let answers = futures_util::future::join_all(sends).await;
    let mut acknowledged = Vec::new();
    for ((replica, delivery, hook), (status, body)) in through.iter().zip(&answers) {
        assert!(
            (200..300).contains(status),
            "{} answered {status} to {event} {delivery}: {body}",
            replica.name
        );
        acknowledged.push(format!("{hook}:{delivery}"));
    }
    let accepted = answers
        .iter()
        .filter(|(_, body)| body["outcome"] == "accepted")
        .count();
    assert_eq!(accepted, 1, "{event}: {answers:?}");
    acknowledged
}

#[tokio::test]
async fn each_merge_delivered_twice_through_different_replicas_deploys_once() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let setup = Setup::new(cluster.database(), |dir| script(dir, "0.5")).await;
    let http = &setup.http;
    let a = setup.start("A").await;
    let b = setup.start("B").await;
    leader_and_standby(http, &a, &b).await;

    const N: u64 = 5;
    let numbers: Vec<u64> = (101..101 + N).collect();
    for &number in &numbers {
        let merge = merged_pull_request(number, &merge_sha(number), "2026-03-03T14:02:11Z");
        let (x, y) = (
            format!("merge-{number}"),
            format!("merge-{number}-other-hook"),
        );
        // GitHub's redelivery (same id) through A and B, another hook's (another id)
        // through B, all at once.
        deliver_everywhere(
            http,
            "pull_request",
            &merge,
            &[(&a, &x, 1), (&b, &x, 1), (&b, &y, 2)],
        )
        .await;
    }

    // GitHub answers each deployment it creates with a `deployment` event: deliver each,
    // as it appears, through both replicas too.
    let mut delivered: HashSet<u64> = HashSet::new();
    while delivered.len() < numbers.len() {
        let created = eventually("a deployment not delivered yet", async || {
            let fresh: Vec<CreatedDeployment> = setup
                .fake
                .created()
                .into_iter()
                .filter(|d| !delivered.contains(&d.id))
                .collect();
            (!fresh.is_empty()).then_some(fresh)
        })
        .await;
        for deployment in created {
            let event = deployment_event(&deployment);
            let (x, y) = (
                format!("deployment-{}", deployment.id),
                format!("deployment-{}-other-hook", deployment.id),
            );
            deliver_everywhere(
                http,
                "deployment",
                &event,
                &[(&b, &x, 1), (&a, &x, 1), (&a, &y, 2)],
            )
            .await;
            delivered.insert(deployment.id);
        }
    }
    for id in &delivered {
        let last = setup.final_status(*id).await;
        assert_eq!(last.state, "success", "{last:?}");
    }
    // Whichever replica leads goes on for a moment: nothing more may be created or run.
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let created = setup.fake.created();
    for &number in &numbers {
        let mine: Vec<&CreatedDeployment> = created
            .iter()
            .filter(|d| d.pull_request == Some(number))
            .collect();
        assert_eq!(mine.len(), 1, "pull request #{number}: {created:?}");
        assert_eq!(
            (mine[0].environment.as_str(), mine[0].sha.as_str()),
            ("production", merge_sha(number).as_str())
        );
    }
    assert_eq!(created.len(), numbers.len(), "{created:?}");

    let runs = setup.runs();
    for id in &delivered {
        let mine = runs_of(&runs, *id);
        assert_eq!(
            mine.len(),
            1,
            "deployment {id} ran {} times: {runs:?}",
            mine.len()
        );
        assert!(mine[0].end.is_some(), "{mine:?}");
    }
    assert_eq!(runs.len(), numbers.len(), "{runs:?}");
    assert_no_overlap(&runs);
    assert_eq!(overlaps(&setup), Vec::<String>::new());

    let statuses = setup.statuses().await;
    for id in &delivered {
        let states: Vec<&str> = statuses
            .iter()
            .filter(|s| s.deployment == *id)
            .map(|s| s.state.as_str())
            .collect();
        assert!(is_legal_order(&states), "deployment {id}: {states:?}");
    }
    let leaders: HashSet<u32> = runs.iter().map(|r| r.parent).collect();
    println!(
        "{N} merges, each delivered 3 times and its deployment 3 times through 2 replicas: \
         {} deployments created, {} runs, by {} replica(s), in {:?}",
        created.len(),
        runs.len(),
        leaders.len(),
        started.elapsed()
    );
}

/// One failover's timeline, in ms since the kill.
#[derive(Debug, Default)]
struct Timeline {
    leads: Option<u128>,
    command_gone: Option<u128>,
    child_gone: Option<u128>,
    status: Option<u128>,
}

#[tokio::test]
async fn a_killed_leader_is_replaced_and_its_deploy_reported_per_on_interrupt() {
    const RUNS: u64 = 3;
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let setup = Setup::new(cluster.database(), |dir| script(dir, "0.2")).await;
    let http = &setup.http;
    let names = ["A", "B", "C", "D"];
    let mut replicas = vec![setup.start(names[0]).await];
    replicas[0].line(LEADS).await;
    replicas.push(setup.start(names[1]).await);
    replicas[1].line(STANDS_BY).await;

    let mut acknowledged: HashSet<String> = HashSet::new();
    let mut failovers: Vec<u128> = Vec::new();
    for run in 0..RUNS {
        let (leader, standby) = (run as usize, run as usize + 1);
        let l = &replicas[leader];
        let long = 770_001 + run;
        let queued = 660_001 + run * 10;
        let after = queued + 1;
        let pr = 301 + run;

        // Acknowledged by the leader before it dies: a long deploy, which starts; a deploy
        // queued behind it; a merge.
        let (status, body) = l
            .send(
                http,
                "deployment",
                &deployment(long),
                &format!("d{long}"),
                1,
            )
            .await;
        assert_eq!(status, 202, "{body}");
        acknowledged.insert(format!("1:d{long}"));
        let (pid, child) = long_deploy_pids(&setup, long).await;
        assert_eq!(process_group(pid), Some(pid), "the command leads its group");
        assert_eq!(process_group(child), Some(pid), "its child is in its group");
        let (status, body) = l
            .send(
                http,
                "deployment",
                &deployment(queued),
                &format!("d{queued}"),
                1,
            )
            .await;
        assert_eq!(status, 202, "{body}");
        acknowledged.insert(format!("1:d{queued}"));
        let merge = merged_pull_request(pr, &merge_sha(pr), "2026-03-03T14:02:11Z");
        let (status, body) = l
            .send(http, "pull_request", &merge, &format!("m{pr}"), 1)
            .await;
        assert_eq!(status, 202, "{body}");
        acknowledged.insert(format!("1:m{pr}"));
        assert!(alive(pid) && alive(child), "the long deploy runs");

        let killed_pid = replicas[leader].pid;
        let killed = replicas[leader].kill();
        let (l, s) = (&replicas[leader], &replicas[standby]);
        let mut timeline = Timeline::default();
        let since = |at: Instant| at.duration_since(killed).as_millis();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = Instant::now();
            if timeline.leads.is_none() {
                timeline.leads = s.logged(LEADS, Some(killed)).map(since);
            }
            if timeline.command_gone.is_none() && !alive(pid) {
                timeline.command_gone = Some(since(now));
            }
            if timeline.child_gone.is_none() && !alive(child) {
                timeline.child_gone = Some(since(now));
            }
            if timeline.status.is_none() && !setup.finals(long).await.is_empty() {
                timeline.status = Some(since(Instant::now()));
            }
            if timeline.leads.is_some()
                && timeline.command_gone.is_some()
                && timeline.child_gone.is_some()
                && timeline.status.is_some()
            {
                break;
            }
            assert!(
                now < deadline,
                "run {}: after {PATIENCE:?} since {} was killed: {timeline:?}; GitHub got \
                 {:#?}\noutbox:\n{}\n{}",
                run + 1,
                l.name,
                crate::helpers::summary(&setup.github.received_requests().await.unwrap()),
                setup.outbox(),
                setup.dump()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Its group is SIGKILLed by the guard (once it sees the server gone), or by the new
        // leader's recovery (on the same host, it finds the group by the recorded identity).
        let by = if s
            .logged("left running by the previous deployhook", Some(killed))
            .is_some()
        {
            format!("{}'s recovery", s.name)
        } else {
            "the guard".to_owned()
        };
        println!(
            "run {}: SIGKILL {} (leader) at 0 ms; {} leads at {} ms; the deploy's command \
             gone at {} ms, its child at {} ms (stopped by {by}); final status of {long} \
             posted at {} ms",
            run + 1,
            l.name,
            s.name,
            timeline.leads.unwrap(),
            timeline.command_gone.unwrap(),
            timeline.child_gone.unwrap(),
            timeline.status.unwrap()
        );
        failovers.push(timeline.status.unwrap());
        let gone = timeline
            .command_gone
            .unwrap()
            .max(timeline.child_gone.unwrap());
        assert!(
            gone < 5_000,
            "the killed leader's deploy lived {gone} ms on"
        );

        let finals = setup.finals(long).await;
        assert_eq!(finals.len(), 1, "{finals:?}");
        assert_eq!(finals[0].state, "error", "{finals:?}");
        assert!(
            finals[0].description.contains("interrupted"),
            "{:?}",
            finals[0].description
        );

        // The queue goes on, on the new leader: what waited, and what comes through it.
        let (status, body) = s
            .send(
                http,
                "deployment",
                &deployment(after),
                &format!("d{after}"),
                1,
            )
            .await;
        assert_eq!(status, 202, "{body}");
        for id in [queued, after] {
            let last = setup.final_status(id).await;
            assert_eq!(last.state, "success", "deployment {id}: {last:?}");
        }
        eventually(&format!("the deployment of merge #{pr}"), async || {
            (setup.fake.created_for(pr) > 0).then_some(())
        })
        .await;
        let runs = setup.runs();
        let ran_on =
            |id: u64| -> Vec<u32> { runs_of(&runs, id).iter().map(|r| r.parent).collect() };
        assert_eq!(ran_on(long), [killed_pid], "{runs:?}");
        assert_eq!(ran_on(queued), [s.pid], "{runs:?}");
        assert_eq!(ran_on(after), [s.pid], "{runs:?}");

        // A standby for the next run.
        if run + 1 < RUNS {
            let next = setup.start(names[run as usize + 2]).await;
            next.line(STANDS_BY).await;
            replicas.push(next);
        }
    }

    // Nothing acknowledged was lost, nothing ran or was created twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let recorded = setup.recorded_deliveries(cluster);
    let missing: Vec<&String> = acknowledged.difference(&recorded).collect();
    assert!(
        missing.is_empty(),
        "acknowledged, not recorded: {missing:?}"
    );
    for pr in 301..301 + RUNS {
        assert_eq!(setup.fake.created_for(pr), 1, "{:?}", setup.fake.created());
    }
    let runs = setup.runs();
    let mut ids: Vec<u64> = runs.iter().map(|r| r.deployment).collect();
    ids.sort_unstable();
    let unique = ids.len();
    ids.dedup();
    assert_eq!(unique, ids.len(), "a deploy ran twice: {runs:?}");
    assert_no_overlap(&runs);
    assert_eq!(
        overlaps(&setup),
        Vec::<String>::new(),
        "a run began beside a killed one"
    );
    let statuses = setup.statuses().await;
    for id in ids {
        let states: Vec<&str> = statuses
            .iter()
            .filter(|s| s.deployment == id)
            .map(|s| s.state.as_str())
            .collect();
        assert!(is_legal_order(&states), "deployment {id}: {states:?}");
    }

    let mut sorted = failovers.clone();
    sorted.sort_unstable();
    println!(
        "failover (SIGKILL of the leader → the interrupted deploy's final status at GitHub), \
         {RUNS} runs: {failovers:?} ms; median {} ms; test took {:?}",
        sorted[sorted.len() / 2],
        started.elapsed()
    );
}

#[tokio::test]
async fn a_killed_leaders_deploy_runs_again_once_on_the_new_leader_under_on_interrupt_retry() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut setup = Setup::new(cluster.database(), |dir| script(dir, "0.2")).await;
    setup.set("DEPLOYHOOK_ON_INTERRUPT", "retry");
    let http = &setup.http;
    let mut a = setup.start("A").await;
    a.line(LEADS).await;
    let b = setup.start("B").await;
    b.line(STANDS_BY).await;

    let long = 770_101;
    let (status, body) = a
        .send(http, "deployment", &deployment(long), "retry-1", 1)
        .await;
    assert_eq!(status, 202, "{body}");
    let (pid, child) = long_deploy_pids(&setup, long).await;
    let killed = a.kill();
    let last = setup.final_status(long).await;
    let failover = killed.elapsed();
    assert_eq!(last.state, "success", "{last:?}");
    let leads = b.logged(LEADS, Some(killed)).expect("B leads");
    println!(
        "on_interrupt = retry: SIGKILL A at 0 ms; B leads at {} ms; deployment {long} ran \
         again and succeeded, its status posted at {} ms",
        leads.duration_since(killed).as_millis(),
        failover.as_millis()
    );
    assert!(!alive(pid) && !alive(child), "A's run still lives");

    // Nothing more runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let overlaps = overlaps(&setup);
    assert!(
        overlaps.is_empty(),
        "the second run began while A's was alive: {overlaps:?}"
    );
    let runs = runs_of(&setup.runs(), long);
    assert_eq!(runs.len(), 2, "A's run, then B's: {runs:?}");
    assert_eq!((runs[0].parent, runs[0].end), (a.pid, None), "{runs:?}");
    assert_eq!(runs[1].parent, b.pid, "{runs:?}");
    assert!(runs[1].end.is_some(), "{runs:?}");
    let finals = setup.finals(long).await;
    assert_eq!(finals.len(), 1, "{finals:?}");
    let states: Vec<String> = setup
        .statuses()
        .await
        .into_iter()
        .filter(|s| s.deployment == long)
        .map(|s| s.state)
        .collect();
    let states: Vec<&str> = states.iter().map(String::as_str).collect();
    assert!(is_legal_order(&states), "{states:?}");
}

#[tokio::test]
async fn postgres_restarted_mid_run_answers_503_then_recovers() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start_private() else {
        return;
    };
    let setup = Setup::new(cluster.database(), |dir| script(dir, "0.2")).await;
    let http = &setup.http;
    let a = setup.start("A").await;
    let b = setup.start("B").await;
    leader_and_standby(http, &a, &b).await;

    // A merge deployed before the database goes away.
    let deploy_merge = async |number: u64| -> u64 {
        let merge = merged_pull_request(number, &merge_sha(number), "2026-03-03T14:02:11Z");
        let id = format!("m{number}");
        deliver_everywhere(http, "pull_request", &merge, &[(&a, &id, 1), (&b, &id, 1)]).await;
        let created = eventually(&format!("the deployment of #{number}"), async || {
            setup
                .fake
                .created()
                .into_iter()
                .find(|d| d.pull_request == Some(number))
        })
        .await;
        let id = format!("d{}", created.id);
        let event = deployment_event(&created);
        deliver_everywhere(http, "deployment", &event, &[(&b, &id, 1), (&a, &id, 1)]).await;
        let last = setup.final_status(created.id).await;
        assert_eq!(last.state, "success", "{last:?}");
        created.id
    };
    let first = deploy_merge(401).await;

    cluster.stop().unwrap();
    let stopped = Instant::now();
    let merge = merged_pull_request(402, &merge_sha(402), "2026-03-03T14:02:11Z");
    for replica in [&a, &b] {
        let (status, body) = replica.send(http, "pull_request", &merge, "m402", 1).await;
        assert_eq!(status, 503, "{}: {body}", replica.name);
        assert_eq!(body["error"], NOT_RECORDED, "{}: {body}", replica.name);
        let (status, body) = replica.readyz(http).await;
        assert_eq!(status, 503, "{}: {body}", replica.name);
        assert_eq!(body["status"], "not ready", "{body}");
    }
    println!(
        "PostgreSQL stopped: both replicas answered 503 {NOT_RECORDED:?} within {} ms",
        stopped.elapsed().as_millis()
    );

    cluster.start().unwrap();
    let restarted = Instant::now();
    let (leader, _) = leader_and_standby(http, &a, &b).await;
    let ready = restarted.elapsed();
    assert!(
        ready < Duration::from_secs(20),
        "ready again after {ready:?}"
    );
    println!(
        "PostgreSQL started again: both replicas ready ({} leads) {} ms later",
        leader.name,
        ready.as_millis()
    );

    // GitHub's Redeliver of what was refused, then its deployment: deployed once.
    let second = deploy_merge(402).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for number in [401, 402] {
        assert_eq!(
            setup.fake.created_for(number),
            1,
            "{:?}",
            setup.fake.created()
        );
    }
    let runs = setup.runs();
    for id in [first, second] {
        assert_eq!(runs_of(&runs, id).len(), 1, "deployment {id}: {runs:?}");
    }
    assert_eq!(runs.len(), 2, "{runs:?}");
    let finals: Vec<PostedStatus> = setup
        .statuses()
        .await
        .into_iter()
        .filter(|s| is_final(&s.state))
        .collect();
    assert_eq!(finals.len(), 2, "{finals:?}");
}

#[tokio::test]
async fn two_replicas_started_at_once_on_an_empty_database_migrate_once() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let setup = Setup::new(cluster.database(), |dir| script(dir, "0.2")).await;
    let started = Instant::now();
    let (mut a, mut b) = (setup.spawn("A"), setup.spawn("B"));
    a.listening().await;
    b.listening().await;
    let (leader, standby) = leader_and_standby(&setup.http, &a, &b).await;
    println!(
        "started together on an empty database: both ready in {} ms, {} leads, {} stands by",
        started.elapsed().as_millis(),
        leader.name,
        standby.name
    );
    let database = database_name(&setup.database);
    let versions = cluster
        .psql(database, "SELECT version FROM schema_version")
        .unwrap();
    assert_eq!(versions.lines().count(), 1, "{versions:?}");
    let replicas = cluster
        .psql(database, "SELECT count(*) FROM replicas")
        .unwrap();
    assert_eq!(replicas.trim(), "2", "{replicas:?}");
    for replica in [&a, &b] {
        assert!(
            !replica.log_text().contains("\"ERROR\""),
            "{}:\n{}",
            replica.name,
            replica.log_text()
        );
    }
}

/// The leader's lock: `pg_advisory_lock`'s 64-bit key as `pg_locks` shows it.
const LEADER_LOCK_CLASSID: u32 = 0x6465_706c;
const LEADER_LOCK_OBJID: u32 = 0x6f79_0002;

/// Nanoseconds since the epoch, as the script's `date +%s%N`.
fn wall_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A leader that loses its lock while the database is up — its lock's session ended by the
/// server (`pg_terminate_backend`, an idle or failover proxy, a cut of that one connection)
/// — learns it at its next renewal and SIGKILLs its deploys then; the standby, leading by
/// then, reports the job `error` and holds back its claims long enough that the next deploy
/// of the same repository and environment starts only after the old one is gone; the old
/// leader's own report of the job is fenced off (it is no longer the job's owner). B runs in
/// a PID namespace of its own, standing in for another host: on one host, B's recovery would
/// kill A's command itself and hide what this checks.
#[tokio::test]
async fn a_leader_cut_off_from_its_lock_never_runs_beside_its_successor_nor_reports_twice() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let setup = Setup::new(cluster.database(), |dir| {
        let dir = dir.display();
        format!(
            r#"id=$DEPLOYHOOK_DEPLOYMENT_ID
echo "start $id $$ $PPID $(date +%s%N)" >> '{dir}/runs.log'
case "$id" in
  77*)
    trap 'sleep 3; echo "end $id $$ $(date +%s%N)" >> "{dir}/runs.log"; exit 1' TERM
    sleep 300 ;;
  *) sleep 0.2 ;;
esac
echo "end $id $$ $(date +%s%N)" >> '{dir}/runs.log'"#
        )
    })
    .await;
    let http = &setup.http;
    // B on "another host": a PID namespace of its own, where A's processes are not to be
    // seen (on one host, B's recovery SIGKILLs the group A recorded, which hides the bug).
    let other_host = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"];
    if !Command::new(other_host[0])
        .args(&other_host[1..])
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("SKIPPED: `unshare --pid` is not allowed here (it needs CAP_SYS_ADMIN)");
        return;
    }
    let a = setup.start("A").await;
    a.line(LEADS).await;
    let mut wrapped = Command::new(other_host[0]);
    wrapped
        .args(&other_host[1..])
        .arg(env!("CARGO_BIN_EXE_deployhook"));
    let mut b = setup.spawn_in("B", wrapped);
    b.listening().await;
    b.line(STANDS_BY).await;

    let (long, queued) = (770_201, 660_201);
    for id in [long, queued] {
        let (status, body) = a
            .send(http, "deployment", &deployment(id), &format!("d{id}"), 1)
            .await;
        assert_eq!(status, 202, "{body}");
        if id == long {
            eventually("the long deploy to start", async || {
                (!runs_of(&setup.runs(), long).is_empty()).then_some(())
            })
            .await;
        }
    }

    // The server ends A's lock session; A and its connection pool are otherwise fine.
    let sql = format!(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d \
         ON d.oid = l.database WHERE l.locktype = 'advisory' AND l.granted \
         AND l.classid = {LEADER_LOCK_CLASSID} AND l.objid = {LEADER_LOCK_OBJID} \
         AND d.datname = '{}'",
        database_name(&setup.database)
    );
    let cut_wall = wall_nanos();
    let cut = Instant::now();
    let ended = cluster.psql("postgres", &sql).unwrap();
    assert_eq!(
        ended.trim(),
        "t",
        "A's lock session was not found: {ended:?}"
    );

    // A SIGKILLs its command the moment it learns it lost the lead: watch for the process
    // to go (within this poll's 10 ms of its death), and for both final statuses.
    let a_pid = runs_of(&setup.runs(), long)[0].pid;
    let deadline = Instant::now() + PATIENCE;
    let mut a_gone_wall = None;
    while a_gone_wall.is_none()
        || setup.finals(long).await.is_empty()
        || setup.finals(queued).await.is_empty()
    {
        if a_gone_wall.is_none() && !Path::new(&format!("/proc/{a_pid}")).exists() {
            a_gone_wall = Some(wall_nanos());
        }
        assert!(
            Instant::now() < deadline,
            "no final statuses, or A's command still runs; statuses {:?}; runs {:?}\nA's log:\n{}\nB's log:\n{}",
            setup.statuses().await,
            setup.runs(),
            a.log_text(),
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let a_gone_wall = a_gone_wall.unwrap();
    let a_lost = a.line("lost the lead").await;
    let b_leads = b.line(LEADS).await;
    // Anything A would still record comes within a moment.
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let runs = setup.runs();
    let (a_run, b_run) = (&runs_of(&runs, long)[0], &runs_of(&runs, queued)[0]);
    let ms = |nanos: u128| (nanos as i128 - cut_wall as i128) / 1_000_000;
    let finals = setup.finals(long).await;
    println!(
        "lock session ended at 0 ms; {} leads at {} ms; A says it lost the lead at {} ms; \
         A's deploy {long} (pid {}) seen gone at {} ms; deploy {queued} starts on {} at {} ms; \
         final statuses of {long}: {:?}",
        b.name,
        b_leads.duration_since(cut).as_millis(),
        a_lost.duration_since(cut).as_millis(),
        a_run.pid,
        ms(a_gone_wall),
        if b_run.parent == a.pid { "A" } else { "B" },
        ms(b_run.start),
        finals
            .iter()
            .map(|s| format!("{} {:?}", s.state, s.description))
            .collect::<Vec<_>>()
    );
    assert!(
        b_run.start >= a_gone_wall,
        "deploy {queued} started on the new leader {} ms before the old leader's deploy \
         {long} of the same repository and environment was gone",
        (a_gone_wall - b_run.start) / 1_000_000
    );
    assert_eq!(finals.len(), 1, "two final statuses for {long}: {finals:?}");
}

/// A deployment's statuses wait in the outbox behind their key's `head`, decided at insert
/// time by "is another row of this key pending?". Under PostgreSQL's READ COMMITTED, the
/// outbox worker completing the head (DELETE, then promote the oldest pending row) and the
/// deploy worker queueing the next status (EXISTS) could each miss the other's write, and
/// leave the key with no head: its statuses never sent. The heads' advisory lock makes the
/// second wait for the first's commit.
#[tokio::test]
async fn a_status_queued_while_the_one_before_it_completes_is_sent_too() {
    use deployhook::model::{DeployJob, DeploymentState};
    use deployhook::store::{Store, outbox};
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let database = cluster.database();
    let store = Store::connect(&database, deployhook::model::Sync::Full, 0)
        .await
        .unwrap();
    let job = DeployJob {
        id: 990_001.into(),
        repo: "acme/widgets".parse().unwrap(),
        environment: "production".parse().unwrap(),
        sha: "6f1e3c9a2b4d5e6f708192a3b4c5d6e7f8091a2b".parse().unwrap(),
        git_ref: "main".into(),
        task: "deploy".into(),
        deploy_user: "octo-dev".into(),
        payload: "{}".into(),
        environment_url: None,
        log_url: None,
        installation: None,
    };
    let queued = job.clone();
    store
        .write(move |c| outbox::enqueue_status(c, &queued, DeploymentState::Queued, "queued", 1))
        .await
        .unwrap();
    let taken = store.write(|c| outbox::take_due(c, 2, 10)).await.unwrap();
    assert_eq!(taken.len(), 1, "{taken:?}");
    let head = taken[0].id;

    // GitHub took the `queued` status: the outbox worker records it, and commits just after
    // the deploy worker queued `in_progress`.
    let (deleted, is_deleted) = std::sync::mpsc::channel();
    let (commit, may_commit) = std::sync::mpsc::channel::<()>();
    let completing = tokio::spawn(store.write(move |c| {
        outbox::complete(c, head)?;
        deleted.send(()).unwrap();
        may_commit.recv().unwrap();
        Ok(())
    }));
    tokio::task::spawn_blocking(move || is_deleted.recv().unwrap())
        .await
        .unwrap();
    // The deploy worker queues `in_progress` meanwhile: it waits for the completion to
    // commit (the heads' lock), then sees the old head gone and becomes the head itself.
    let queuing = tokio::spawn(store.write(move |c| {
        outbox::enqueue_status(c, &job, DeploymentState::InProgress, "running", 3)
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !queuing.is_finished(),
        "queued beside the completion, not after it"
    );
    commit.send(()).unwrap();
    completing.await.unwrap().unwrap();
    queuing.await.unwrap().unwrap();

    let due = store.write(|c| outbox::take_due(c, 10, 10)).await.unwrap();
    assert_eq!(
        due.len(),
        1,
        "the in_progress status is pending but not its key's head: never sent"
    );
}

/// A leader killed while a deploy is being verified: the new leader takes the
/// verification over (the job stays `verifying` in the database, owned by the dead one),
/// checks on, and the deployment is reported `success` exactly once.
#[tokio::test]
async fn a_verification_cut_by_a_lead_change_is_resumed_by_the_new_leader_and_reported_once() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut setup = Setup::new(cluster.database(), |_| "echo deployed".to_owned()).await;
    let health = MockServer::start().await;
    let failing = wiremock::Mock::given(wiremock::matchers::path("/health"))
        .respond_with(wiremock::ResponseTemplate::new(503));
    failing.mount(&health).await;
    let command = setup.path("deploy.sh").display().to_string();
    let config = format!(
        "[[environment]]\nname = \"production\"\nrepositories = [\"acme/widgets\"]\n\
         command = [{command:?}]\n\n[environment.verify]\nurl = \"{}/health\"\n\
         interval = \"100ms\"\nhold_for = \"1s\"\ntimeout = \"60s\"\n",
        health.uri()
    );
    std::fs::write(setup.path("deployhook.toml"), config).unwrap();
    // The environment comes from the file: the single-environment variables would clash.
    setup
        .settings
        .retain(|(name, _)| name != "DEPLOY_COMMAND" && name != "DEPLOYHOOK_POLICY");
    let file = setup.path("deployhook.toml").display().to_string();
    setup.set("DEPLOYHOOK_CONFIG", &file);
    let http = &setup.http;
    let mut first = setup.start("A").await;
    first.line(LEADS).await;
    let second = setup.start("B").await;
    second.line(STANDS_BY).await;

    let (status, body) = first
        .send(http, "deployment", &deployment(880_001), "d1", 1)
        .await;
    assert_eq!(status, 202, "{body}");
    eventually("the verifying status", async || {
        let told = setup.statuses().await;
        told.iter()
            .any(|s| s.deployment == 880_001 && s.description.starts_with("verifying: "))
            .then_some(())
    })
    .await;
    let killed = first.kill();
    second.line(LEADS).await;
    assert!(second.logged(LEADS, Some(killed)).is_some());
    health.reset().await;
    wiremock::Mock::given(wiremock::matchers::path("/health"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&health)
        .await;
    let last = setup.final_status(880_001).await;
    assert_eq!(last.state, "success", "{last:?}");
    // Another second or so: a second report would have come by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(setup.finals(880_001).await.len(), 1);
    let told: Vec<String> = setup
        .statuses()
        .await
        .into_iter()
        .filter(|s| s.deployment == 880_001)
        .map(|s| s.state)
        .collect();
    let order: Vec<&str> = told.iter().map(String::as_str).collect();
    assert!(is_legal_order(&order), "{order:?}");
    assert!(
        second
            .logged("resuming the verification of deploy 880001", Some(killed))
            .is_some(),
        "{}",
        second.log_text()
    );
}
