//! libFuzzer entry of the `x402` target (`paygate_fuzz_targets::x402`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paygate_fuzz_targets::x402(data));
