//! Replays every input kept in `fuzz/corpus/` (the seeds and what the fuzzers found) through
//! the same target bodies the fuzzers run (`fuzz/src/`), so a fixed defect stays fixed without
//! a nightly toolchain. `cargo +nightly fuzz run <target>` in `fuzz/` explores further.

#![allow(clippy::unwrap_used, dead_code)]

#[path = "../fuzz/src/docs.rs"]
mod docs;
#[path = "../fuzz/src/fixture.rs"]
mod fixture;
#[path = "../fuzz/src/mqtt.rs"]
mod mqtt;
#[path = "../fuzz/src/query.rs"]
mod query;
#[path = "../fuzz/src/rest.rs"]
mod rest;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus for {target}");
    for file in &files {
        let data = std::fs::read(file).unwrap();
        run(&data);
        assert!(
            !fixture::panicked(),
            "{target}: {} made a thread panic",
            file.display()
        );
    }
    eprintln!("{target}: {} inputs replayed", files.len());
}

/// One test: the socket targets share the process's served hub.
#[test]
fn every_kept_fuzz_input_is_handled() {
    replay("twin_docs", docs::run);
    replay("query", query::run);
    replay("mqtt_connect", mqtt::connect);
    replay("mqtt_session", mqtt::session);
    replay("rest_request", rest::request);
    replay("rest_bodies", rest::bodies);
    fixture::assert_serviceable(fixture::get());
    assert!(!fixture::panicked());
}
