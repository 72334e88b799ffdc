//! The query language: the parser, the printer and the evaluator.

use std::sync::OnceLock;

use iot_dm::core::query::{PageRequest, Query};
use iot_dm::core::twin::Twin;
use serde_json::json;

/// A small fleet with tags, reported properties of every JSON type, and a module twin.
fn fleet() -> &'static [Twin] {
    static FLEET: OnceLock<Vec<Twin>> = OnceLock::new();
    FLEET.get_or_init(|| {
        (0..24)
            .map(|i| {
                let site = ["north", "south", "east"][i % 3];
                let mut v = json!({
                    "deviceId": format!("d{i}"),
                    "tags": {"site": site, "floor": i, "ok": i % 2 == 0,
                              "list": [i, "x", null], "nested": {"deep": {"er": i as f64 / 3.0}}},
                    "properties": {"reported": {"fw": {"version": format!("1.{}", i % 4)},
                                                "battery": {"level": (i * 7) % 101},
                                                "inUse": i % 5 == 0, "note": null},
                                   "desired": {"interval": i * 10}},
                });
                if i % 7 == 3 {
                    v["moduleId"] = json!("m1");
                }
                serde_json::from_value(v).expect("a fixture twin")
            })
            .collect()
    })
}

/// The input is the query text (UTF-8; other bytes are replaced).
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(query) = Query::parse(&text) else {
        return;
    };
    // printing is a fixed point after one round: print(parse(print(q))) = print(q)
    let printed = query.to_string();
    let again = match Query::parse(&printed) {
        Ok(q) => q,
        Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
    };
    assert_eq!(
        again.to_string(),
        printed,
        "{text:?} prints differently once re-parsed"
    );
    let twins = fleet();
    if let Ok(rows) = query.execute(twins) {
        let reparsed = again.execute(twins).expect("the re-parsed query runs too");
        assert_eq!(
            rows, reparsed,
            "{text:?} and its print select different rows"
        );
        let _ = query.page(twins, &PageRequest::new());
        for twin in twins {
            let _ = query.matches(twin);
        }
    }
}
