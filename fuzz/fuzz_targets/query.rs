//! `cargo +nightly fuzz run query`: see `iot_dm_fuzz::query::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iot_dm_fuzz::query::run(data));
