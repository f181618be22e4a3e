//! libFuzzer entry of the `facilitator_answer` target (`paygate_fuzz_targets::facilitator_answer`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paygate_fuzz_targets::facilitator_answer(data));
