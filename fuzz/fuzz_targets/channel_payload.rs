//! libFuzzer entry of the `channel_payload` target (`paygate_fuzz_targets::channel_payload`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paygate_fuzz_targets::channel_payload(data));
