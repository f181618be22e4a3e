//! `paygate serve` as its own process, for tests that signal or kill it: started on a config, its address read
//! from its log.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A running `paygate serve`.
#[derive(Debug)]
pub struct ServeProcess {
    pub child: Child,
    /// `127.0.0.1:<port>`, as it logged it.
    pub address: String,
    /// Its log lines so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl ServeProcess {
    /// Runs `BIN serve --config CONFIG` (`bin` is the test's `env!("CARGO_BIN_EXE_paygate")`) and waits for the
    /// line saying where it listens. Its log is drained in the background so it never blocks on the pipe.
    pub fn start(bin: &str, config: &Path) -> ServeProcess {
        ServeProcess::start_with(bin, config, &[])
    }

    /// [`ServeProcess::start`] with more arguments (`--log-format json`).
    pub fn start_with(bin: &str, config: &Path, args: &[&str]) -> ServeProcess {
        let mut child = Command::new(bin)
            .args(args)
            .args(["serve", "--config"])
            .arg(config)
            .env("PAYGATE_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("paygate starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let address = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("paygate exited before it listened:\n{}", log.lock().unwrap().join("\n"));
            };
            log.lock().unwrap().push(line.clone());
            if !line.contains("paygate is listening") {
                continue;
            }
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
                break json["fields"]["address"].as_str().expect("address").to_owned();
            }
            if let Some(address) = line.split("address=").nth(1) {
                break address.split_whitespace().next().expect("address").to_owned();
            }
        };
        let kept = log.clone();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|line| kept.lock().unwrap().push(line)));
        ServeProcess { child, address, log }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
