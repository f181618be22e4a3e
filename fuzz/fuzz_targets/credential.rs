//! libFuzzer entry of the `credential` target (`paygate_fuzz_targets::credential`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paygate_fuzz_targets::credential(data));
