//! `cargo +nightly fuzz run mqtt_connect`: see `iot_dm_fuzz::mqtt::connect`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iot_dm_fuzz::mqtt::connect(data));
