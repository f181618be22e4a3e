//! libFuzzer entry of the `mpp` target (`paygate_fuzz_targets::mpp`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paygate_fuzz_targets::mpp(data));
