//! libFuzzer entry of the `stripe_answer` target (`paygate_fuzz_targets::stripe_answer`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paygate_fuzz_targets::stripe_answer(data));
