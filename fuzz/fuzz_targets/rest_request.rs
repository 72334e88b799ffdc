//! `cargo +nightly fuzz run rest_request`: see `iot_dm_fuzz::rest::request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iot_dm_fuzz::rest::request(data));
