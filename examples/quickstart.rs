//! The quick start: a tour of what iot-dm does today.
//!
//! Run with `cargo run --example quickstart`.

use iot_dm::core::clock::{Clock, SystemClock};
use iot_dm::core::twin::{Twin, TwinLimits};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = SystemClock;
    let limits = TwinLimits::default();

    // plan: twins with tags that place devices in groups
    let regions = ["us-west", "us-east", "eu-north"];
    let mut fleet = Vec::new();
    for i in 0..9 {
        let mut twin = Twin::created_at(format!("sensor-{i:02}").parse()?, clock.now());
        twin.patch_tags(
            &json!({"location": {"region": regions[i % 3]}, "model": "th-200"}),
            Some("*"),
            &limits,
        )?;
        fleet.push(twin);
    }

    // configure: desired properties; monitor: reported properties
    for (i, twin) in fleet.iter_mut().enumerate() {
        twin.patch_desired(
            &json!({"telemetry": {"intervalSecs": 60}}),
            clock.now(),
            &limits,
        )?;
        let fw = if i % 4 == 0 { "2.0.1" } else { "1.9.0" };
        twin.patch_reported(
            &json!({"firmware": {"version": fw}, "battery": 90 - i}),
            clock.now(),
            &limits,
        )?;
    }

    println!(
        "{:<10} {:<9} {:<8} {:>7} {:>8} {:>9}  etag",
        "device", "region", "firmware", "version", "desired", "reported"
    );
    for t in &fleet {
        let region = t
            .tags()
            .get_path(&["location", "region"])
            .map(|n| n.to_value());
        let fw = t
            .reported()
            .doc()
            .get_path(&["firmware", "version"])
            .map(|n| n.to_value());
        println!(
            "{:<10} {:<9} {:<8} {:>7} {:>8} {:>9}  {}",
            t.device_id,
            region.as_ref().and_then(|v| v.as_str()).unwrap_or("-"),
            fw.as_ref().and_then(|v| v.as_str()).unwrap_or("-"),
            t.version(),
            t.desired().version(),
            t.reported().version(),
            t.etag()
        );
    }

    // bad input gets a typed error and changes nothing
    let twin = &mut fleet[0];
    let before = twin.clone();
    if let Err(err) = twin.patch_desired(&json!({"bad key": 1}), clock.now(), &limits) {
        println!("\nrefused patch: {err}");
    }
    assert_eq!(*twin, before);

    println!(
        "\nservice-side twin of {}:\n{}",
        twin.device_id,
        serde_json::to_string_pretty(&twin)?
    );
    Ok(())
}
