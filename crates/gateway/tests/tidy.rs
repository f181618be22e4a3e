//! Tidy tests: rules of the code's shape that keep it navigable, checked on the sources (rust-analyzer's manner).
//! Each names what breaks it and where.
//!
//! - Every change of a payment's ledger row goes through `crates/gateway/src/payment.rs`.
//! - A rail is one module and one registry line: outside its module and `crates/methods/src/registry.rs`, no
//!   source of the seller's side (`core`, `methods`, `gateway`) names its module or its types.
//! - Every Rust file starts with a `//!` doc saying why it exists.
//! - No source file is over 700 lines, and no function of the engine (`crates/gateway/src/engine/`) over 80.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace")
}

/// Every `.rs` file under `dir`, recursively, skipping build output and installed packages.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && !matches!(name.to_str(), Some("target" | "node_modules")) {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

/// The lines of a file that are code: without `//` comments.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.split("//").next().unwrap_or("")))
        .filter(|(_, l)| !l.trim().is_empty())
}

#[test]
fn only_payment_rs_moves_a_ledger_row() {
    let mut found = Vec::new();
    for file in rust_files(&root().join("crates")) {
        let path = relative(&file);
        // The store implements transitions; tests set up rows as they need.
        if path.starts_with("crates/store/") || path.contains("/tests/") || path == "crates/gateway/src/payment.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        found.extend(code_lines(&text).filter(|(_, l)| l.contains(".transition(")).map(|(n, _)| format!("{path}:{n}")));
    }
    assert!(found.is_empty(), "ledger transitions outside crates/gateway/src/payment.rs: {found:?}");
}

/// Each rail: its module in `crates/methods/src`, and the names that are its own (its module path and types).
const RAILS: &[(&str, &[&str])] = &[
    ("eip3009", &["eip3009::", "Eip3009Method", "Eip3009Config"]),
    ("txhash", &["txhash::", "TxHashMethod", "TxHashConfig"]),
    ("tempo", &["tempo::", "TempoMethod", "TempoRailConfig"]),
    ("stripe", &["stripe::", "StripeMethod", "StripeRailConfig"]),
    ("lightning", &["lightning::", "LightningMethod", "LightningRailConfig"]),
    ("test_rail", &["test_rail::", "TestMethod", "TestRailConfig"]),
];

#[test]
fn a_rail_is_named_only_in_its_module_and_the_registry() {
    // `paygate facilitator` serves the EIP-3009 rail over the x402 facilitator API: it is that rail's server, not
    // part of the engine, and may name it.
    let exempt = |path: &str, rail: &str| rail == "eip3009" && path == "crates/gateway/src/facilitator.rs";
    let mut found = Vec::new();
    for krate in ["core", "methods", "gateway"] {
        for file in rust_files(&root().join("crates").join(krate).join("src")) {
            let path = relative(&file);
            let text = std::fs::read_to_string(&file).expect("readable");
            for (rail, names) in RAILS {
                let own = path == format!("crates/methods/src/{rail}.rs")
                    || path.starts_with(&format!("crates/methods/src/{rail}/"))
                    || path == "crates/methods/src/registry.rs";
                if own || exempt(&path, rail) {
                    continue;
                }
                for (n, line) in code_lines(&text) {
                    // `pub mod <rail>;` in the crate's root is the module's declaration.
                    if path == "crates/methods/src/lib.rs" && line.trim_start().starts_with("pub mod") {
                        continue;
                    }
                    if names.iter().any(|name| line.contains(name)) {
                        found.push(format!("{path}:{n} names rail {rail}: {}", line.trim()));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "rails named outside their module and the registry:\n{}", found.join("\n"));
}

#[test]
fn every_rust_file_says_why_it_exists() {
    let mut undocumented = Vec::new();
    for dir in ["crates", "fuzz"] {
        for file in rust_files(&root().join(dir)) {
            let text = std::fs::read_to_string(&file).expect("readable");
            let first = text.lines().find(|l| !l.trim().is_empty() && !l.starts_with("#![")).unwrap_or("");
            if !first.starts_with("//!") {
                undocumented.push(relative(&file));
            }
        }
    }
    assert!(undocumented.is_empty(), "files without a `//!` doc: {undocumented:?}");
}

#[test]
fn files_and_engine_functions_stay_short() {
    let mut long_files = Vec::new();
    for dir in ["crates", "fuzz"] {
        for file in rust_files(&root().join(dir)) {
            let lines = std::fs::read_to_string(&file).expect("readable").lines().count();
            if lines > 700 {
                long_files.push(format!("{} ({lines} lines)", relative(&file)));
            }
        }
    }
    assert!(long_files.is_empty(), "files over 700 lines: {long_files:?}");

    let mut long_functions = Vec::new();
    for file in rust_files(&root().join("crates/gateway/src/engine")) {
        let text = std::fs::read_to_string(&file).expect("readable");
        let lines: Vec<&str> = text.lines().collect();
        for (start, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let is_fn = ["fn ", "pub fn ", "async fn ", "pub(super) fn ", "pub(super) async fn ", "pub(crate) fn "]
                .iter()
                .chain(["pub(crate) async fn ", "pub async fn "].iter())
                .any(|p| trimmed.starts_with(p));
            if !is_fn {
                continue;
            }
            let indent = line.len() - trimmed.len();
            let end = lines[start..]
                .iter()
                .position(|l| {
                    l.get(..indent).is_some_and(|lead| lead.trim().is_empty())
                        && l.get(indent..).is_some_and(|rest| rest.starts_with('}'))
                })
                .map_or(0, |i| start + i);
            if end - start + 1 > 80 {
                long_functions.push(format!("{}:{} ({} lines)", relative(&file), start + 1, end - start + 1));
            }
        }
    }
    assert!(long_functions.is_empty(), "engine functions over 80 lines: {long_functions:?}");
}
