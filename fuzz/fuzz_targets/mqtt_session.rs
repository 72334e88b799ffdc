//! `cargo +nightly fuzz run mqtt_session`: see `iot_dm_fuzz::mqtt::session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iot_dm_fuzz::mqtt::session(data));
