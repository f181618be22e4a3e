//! Headless Chromium (Debian's `chromium`, or `CHROMIUM_BIN`), for tests of pages paygate serves: it loads a
//! page, runs its scripts and fetches, and returns the DOM they left.

use std::process::Command;
use std::time::Duration;

/// The DOM of `url` after its scripts ran (up to `budget` of virtual time), as HTML.
pub fn dump_dom(url: &str, budget: Duration) -> String {
    let bin = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".to_owned());
    let output = Command::new(&bin)
        .args([
            "--headless",
            // Tests may run as root, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--virtual-time-budget={}", budget.as_millis()),
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap_or_else(|_| crate::missing("chromium"));
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
