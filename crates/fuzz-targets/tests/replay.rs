//! Replays every seed (`fuzz/corpus/<target>/`) and every input a fuzzer crashed (`fuzz/regressions/<target>/`)
//! through its target: a crash found once fails this test until it is fixed, and stays tested after.

use std::path::PathBuf;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

#[test]
fn every_seed_and_regression_runs_through_its_target_without_a_panic() {
    let mut replayed = 0;
    for (name, target) in paygate_fuzz_targets::TARGETS {
        let mut seeds = 0;
        for kind in ["corpus", "regressions"] {
            let dir = fuzz_dir().join(kind).join(name);
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let input = std::fs::read(entry.path()).expect("readable input");
                target(&input);
                replayed += 1;
                seeds += usize::from(kind == "corpus");
            }
        }
        assert!(seeds > 0, "{name} has no seed corpus in fuzz/corpus/{name}");
    }
    assert!(replayed >= paygate_fuzz_targets::TARGETS.len());
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in paygate_fuzz_targets::TARGETS {
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no binary {name}");
        let source = fuzz_dir().join(format!("fuzz_targets/{name}.rs"));
        let text = std::fs::read_to_string(&source).unwrap_or_else(|_| panic!("{}", source.display()));
        assert!(text.contains(&format!("paygate_fuzz_targets::{name}(")), "{} calls its target", source.display());
    }
}
