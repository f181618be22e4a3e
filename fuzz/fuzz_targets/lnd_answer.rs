//! libFuzzer entry of the `lnd_answer` target (`paygate_fuzz_targets::lnd_answer`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paygate_fuzz_targets::lnd_answer(data));
