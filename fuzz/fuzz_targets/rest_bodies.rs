//! `cargo +nightly fuzz run rest_bodies`: see `iot_dm_fuzz::rest::bodies`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iot_dm_fuzz::rest::bodies(data));
