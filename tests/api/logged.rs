//! The binary run as a child whose log (stderr) is collected line by line, for the tests
//! that read what deployhook logs as an operator's journal would hold it (`logs`,
//! `operator`). The child is killed when this is dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Logged {
    pub child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Logged {
    /// Starts `command` (stdout discarded) and collects its stderr.
    pub fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Self { child, log }
    }

    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The first line containing `text`, waiting up to `wait` for it; the whole log in
    /// the failure when none comes.
    pub fn line(&self, text: &str, wait: Duration) -> String {
        let until = Instant::now() + wait;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(text)) {
                return line;
            }
            assert!(
                Instant::now() < until,
                "no log line with {text:?}; the log:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
