//! libFuzzer entry of the `mcp_call` target (`paygate_fuzz_targets::mcp_call`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paygate_fuzz_targets::mcp_call(data));
