//! libFuzzer entry of the `config` target (`paygate_fuzz_targets::config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paygate_fuzz_targets::config(data));
