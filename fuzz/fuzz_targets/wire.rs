#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| logmon_tests::fuzz::run("wire", data));
