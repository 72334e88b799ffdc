//! The benchmark fleet: deterministic twins of about 1 KB (realistic tags, reported
//! firmware, configuration, battery and network), shared by the benchmarks.

#![allow(dead_code)]

use serde_json::{json, Value};

/// Deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const REGIONS: [(&str, [&str; 3]); 8] = [
    ("us-west", ["Seattle", "Portland", "San Jose"]),
    ("us-east", ["Boston", "Atlanta", "Newark"]),
    ("eu-west", ["Dublin", "Amsterdam", "Paris"]),
    ("eu-north", ["Stockholm", "Oslo", "Helsinki"]),
    ("ap-south", ["Mumbai", "Chennai", "Pune"]),
    ("ap-east", ["Tokyo", "Osaka", "Seoul"]),
    ("sa-east", ["Sao Paulo", "Santiago", "Lima"]),
    ("af-south", ["Cape Town", "Nairobi", "Lagos"]),
];
const FIRMWARE: [&str; 6] = ["1.8.2", "1.9.0", "2.0.0", "2.0.1", "2.0.1", "2.1.0-beta"];

/// The JSON of twin `i`: about 1 KB of tags and properties.
pub fn twin_json(i: u64, rng: &mut Rng) -> Value {
    let (region, cities) = REGIONS[(rng.next() % REGIONS.len() as u64) as usize];
    let fw = rng.pick(&FIRMWARE);
    let interval = [15, 30, 60, 300][rng.below(4) as usize];
    let day = 1 + rng.below(28);
    json!({
        "deviceId": format!("dev-{i:07}"),
        "status": "enabled",
        "connectionState": if rng.below(4) == 0 { "Disconnected" } else { "Connected" },
        "lastActivityTime": format!("2026-10-{day:02}T12:{:02}:{:02}.123Z", rng.below(60), rng.below(60)),
        "tags": {
            "location": {
                "region": region,
                "city": rng.pick(&cities),
                "building": format!("bldg-{}", rng.below(40)),
                "floor": rng.below(12),
            },
            "customer": {
                "id": format!("cust-{:05}", rng.below(5000)),
                "tier": rng.pick(&["gold", "silver", "bronze"]),
            },
            "environment": rng.pick(&["prod", "prod", "prod", "staging", "dev"]),
            "deviceModel": {
                "manufacturer": "Contoso",
                "model": rng.pick(&["TH-200", "GW-500", "CAM-3"]),
                "hwRevision": rng.pick(&["rev-b", "rev-c"]),
            },
            "owner": format!("team-{}", rng.below(30)),
        },
        "properties": {
            "desired": {
                "config": {
                    "telemetryInterval": interval,
                    "logLevel": "info",
                    "features": {"ota": true, "diagnostics": false, "edgeCompute": false},
                },
                "firmware": {"version": "2.0.1", "url": "https://updates.example.com/fw/2.0.1.bin"},
            },
            "reported": {
                "firmware": {
                    "version": fw,
                    "lastUpdate": format!("2026-09-{day:02}T03:{:02}:00.000Z", rng.below(60)),
                    "updateStatus": rng.pick(&["current", "current", "pending", "failed"]),
                    "bootloader": "bl-1.4.2",
                },
                "config": {
                    "telemetryInterval": interval,
                    "logLevel": rng.pick(&["info", "info", "debug", "warn"]),
                    "features": {"ota": true, "diagnostics": rng.below(2) == 0, "edgeCompute": false},
                },
                "battery": {
                    "level": rng.below(101),
                    "charging": rng.below(3) == 0,
                    "health": rng.pick(&["good", "good", "fair", "poor"]),
                },
                "network": {
                    "type": rng.pick(&["wifi", "cellular", "ethernet"]),
                    "rssi": -(30 + rng.below(60) as i64),
                    "ip": format!("10.{}.{}.{}", rng.below(256), rng.below(256), 1 + rng.below(254)),
                },
                "uptimeSecs": rng.below(10_000_000),
            },
        },
    })
}
