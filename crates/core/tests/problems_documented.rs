//! `docs/problems.md` documents every problem type of the catalog and every `reason` the sources pass to
//! `Rejection::new`, so operators can look up anything paygate answers.

use std::path::{Path, PathBuf};

use paygate_core::reject::RejectKind;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The second argument of every `Rejection::new(kind, "reason", ...)` call whose reason is a literal.
fn reasons_in_sources() -> Vec<String> {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root().join("crates")).expect("crates dir").flatten() {
        let src = krate.path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    let mut reasons = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (at, _) in text.match_indices("Rejection::new(") {
            let args = &text[at + "Rejection::new(".len()..];
            let Some((_, rest)) = args.split_once(',') else { continue };
            let rest = rest.trim_start();
            if let Some(literal) = rest.strip_prefix('"').and_then(|r| r.split_once('"')).map(|(l, _)| l) {
                reasons.push(literal.to_owned());
            }
        }
    }
    assert!(reasons.len() > 20, "the scan found the rejections ({})", reasons.len());
    reasons
}

#[test]
fn every_type_and_reason_is_documented() {
    let doc = std::fs::read_to_string(root().join("docs/problems.md")).expect("docs/problems.md");
    let mut missing = Vec::new();
    for kind in RejectKind::all() {
        if !doc.contains(&format!("`{}`", kind.type_uri())) {
            missing.push(kind.type_uri().to_owned());
        }
    }
    for reason in reasons_in_sources() {
        if !doc.contains(&format!("`{reason}`")) {
            missing.push(reason);
        }
    }
    assert!(missing.is_empty(), "not in docs/problems.md: {missing:?}");
}
