#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ceremony_os_fuzz::fuzz("allowed-signers", data));
