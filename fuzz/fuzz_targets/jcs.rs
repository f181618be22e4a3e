//! libFuzzer entry of the `jcs` target (`paygate_fuzz_targets::jcs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paygate_fuzz_targets::jcs(data));
