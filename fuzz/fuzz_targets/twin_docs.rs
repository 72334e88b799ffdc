//! `cargo +nightly fuzz run twin_docs`: see `iot_dm_fuzz::docs::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iot_dm_fuzz::docs::run(data));
