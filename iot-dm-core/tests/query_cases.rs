//! The query language case table: query text, fixture twins, expected rows (or error).

use iot_dm_core::query::{Collection, ParseErrorKind, Query, QueryError};
use iot_dm_core::twin::Twin;
use serde_json::{json, Value};

/// The fleet every case runs against: five device twins and two module twins.
fn fleet() -> Vec<Twin> {
    [
        json!({
            "deviceId": "d1",
            "status": "enabled",
            "connectionState": "Connected",
            "lastActivityTime": "2024-05-10T07:11:30.9707312Z",
            "tags": {"location": {"region": "US", "plant": "Redmond43"}, "env": "prod", "floor": 3,
                     "roles": ["gateway", "edge"]},
            "properties": {
                "desired": {
                    "telemetryConfig": {"sendFrequencyInSecs": 300},
                    "$metadata": {
                        "$lastUpdated": "2016-03-30T16:24:48.789Z",
                        "$lastUpdatedVersion": 4,
                        "telemetryConfig": {
                            "$lastUpdated": "2016-03-30T16:24:48.789Z",
                            "$lastUpdatedVersion": 4,
                            "sendFrequencyInSecs": {"$lastUpdated": "2016-03-30T16:24:48.789Z", "$lastUpdatedVersion": 4}
                        }
                    },
                    "$version": 4
                },
                "reported": {
                    "connectivity": "wired",
                    "telemetryConfig": {"sendFrequencyInSecs": 300, "status": "Success"},
                    "fw": "1.0.0",
                    "battery": 80,
                    "enabled": true,
                    "$version": 7
                }
            }
        }),
        json!({
            "deviceId": "d2",
            "status": "disabled",
            "connectionState": "Disconnected",
            "tags": {"location": {"region": "US", "plant": "Austin"}, "env": "dev", "floor": 1.5},
            "properties": {"reported": {
                "connectivity": "wifi",
                "telemetryConfig": {"sendFrequencyInSecs": 30, "status": "Pending"},
                "fw": "2.0.1",
                "battery": 15,
                "enabled": false
            }}
        }),
        json!({
            "deviceId": "d3",
            "status": "enabled",
            "connectionState": "Disconnected",
            "lastActivityTime": "2021-05-07T00:50:38.0543092Z",
            "tags": {"location": {"region": "EU"}, "env": "prod", "floor": 3.0},
            "properties": {"reported": {
                "connectivity": "cellular",
                "telemetryConfig": {"sendFrequencyInSecs": 60, "status": "Success"},
                "fw": "2.0.1",
                "battery": 55.5,
                "nullable": null
            }}
        }),
        json!({
            "deviceId": "d4",
            "tags": {"location": {"region": "EU"}, "env": null},
            "properties": {"reported": {
                "connectivity": {"type": "cellular"},
                "telemetryConfig": {"status": "Error"},
                "battery": "n/a"
            }},
            "configurations": {"cfg-1": {"status": "Applied"}}
        }),
        json!({"deviceId": "d5", "modelId": "dtmi:com:example:Thermostat;1"}),
        json!({"deviceId": "d1", "moduleId": "mod-a", "tags": {"env": "prod"},
               "properties": {"reported": {"status": "scanning"}}}),
        json!({"deviceId": "d2", "moduleId": "mod-b",
               "properties": {"reported": {"status": "idle"}}}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).unwrap_or_else(|e| panic!("fixture: {e}")))
    .collect()
}

/// What a case expects.
enum Expect {
    /// `SELECT *` rows, identified by `deviceId` (and `moduleId` as `d/m`).
    Ids(&'static [&'static str]),
    /// Exact rows.
    Rows(Value),
    /// A parse error of this kind.
    Parse(fn(&ParseErrorKind) -> bool),
    /// Another error.
    Fails(fn(&QueryError) -> bool),
}

use Expect::*;

fn id_of(row: &Value) -> String {
    let d = row["deviceId"].as_str().unwrap_or("?");
    match row.get("moduleId").and_then(Value::as_str) {
        Some(m) => format!("{d}/{m}"),
        None => d.to_string(),
    }
}

const ALL: &[&str] = &["d1", "d2", "d3", "d4", "d5"];
const NONE: &[&str] = &[];

fn cases() -> Vec<(&'static str, Expect)> {
    vec![
        // ---- the reference examples ----
        ("SELECT * FROM devices", Ids(ALL)),
        ("SELECT * FROM devices WHERE tags.location.region = 'US'", Ids(&["d1", "d2"])),
        (
            "SELECT * FROM devices WHERE tags.location.region = 'US' AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
            Ids(&["d1"]),
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.connectivity IN ['wired','wifi']",
            Ids(&["d1", "d2"]),
        ),
        (
            "SELECT * FROM devices WHERE is_defined(properties.reported.connectivity)",
            Ids(&["d1", "d2", "d3", "d4"]),
        ),
        (
            "SELECT COUNT() AS totalNumberOfDevices FROM devices",
            Rows(json!([{"totalNumberOfDevices": 5}])),
        ),
        (
            "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
            Rows(json!([
                {"numberOfDevices": 1},
                {"numberOfDevices": 1, "status": "Error"},
                {"numberOfDevices": 1, "status": "Pending"},
                {"numberOfDevices": 2, "status": "Success"}
            ])),
        ),
        (
            "SELECT deviceId FROM devices WHERE configurations.[[cfg-1]].status = 'Applied'",
            Rows(json!([{"deviceId": "d4"}])),
        ),
        (
            "SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled' AND connectionState = 'Disconnected'",
            // d4 and d5 are enabled and disconnected by default, and have no activity time.
            Rows(json!([
                {"deviceId": "d3", "lastActivityTime": "2021-05-07T00:50:38.0543092Z"},
                {"deviceId": "d4"},
                {"deviceId": "d5"}
            ])),
        ),
        (
            "SELECT LastActivityTime FROM devices WHERE status = 'enabled'",
            Rows(json!([
                {"lastActivityTime": "2024-05-10T07:11:30.9707312Z"},
                {"lastActivityTime": "2021-05-07T00:50:38.0543092Z"},
                {},
                {}
            ])),
        ),
        ("SELECT * FROM devices.modules", Ids(&["d1/mod-a", "d2/mod-b"])),
        (
            "SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning'",
            Ids(&["d1/mod-a"]),
        ),
        (
            "SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning' AND deviceId IN ['d2', 'd3']",
            Ids(NONE),
        ),
        (
            "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId='d' AND devices.jobs.jobType='scheduleUpdateTwin' AND devices.jobs.status='completed' AND devices.jobs.createdTimeUtc > '2016-09-01'",
            Fails(|e| matches!(e, QueryError::UnsupportedCollection { collection: Collection::Jobs })),
        ),
        // ---- comparison operators ----
        ("SELECT * FROM devices WHERE properties.reported.battery = 80", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE tags.floor = 3.0", Ids(&["d1", "d3"])),
        ("SELECT * FROM devices WHERE tags.env != 'prod'", Ids(&["d2"])),
        ("SELECT * FROM devices WHERE tags.env <> 'prod'", Ids(&["d2"])),
        ("SELECT * FROM devices WHERE properties.reported.battery < 55.5", Ids(&["d2"])),
        ("SELECT * FROM devices WHERE properties.reported.battery > 55.5", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE properties.reported.battery <= 55.5", Ids(&["d2", "d3"])),
        ("SELECT * FROM devices WHERE properties.reported.battery >= 55.5", Ids(&["d1", "d3"])),
        ("SELECT * FROM devices WHERE tags.location.region < 'F'", Ids(&["d3", "d4"])),
        ("SELECT * FROM devices WHERE properties.reported.enabled = true", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE properties.reported.enabled < true", Ids(&["d2"])),
        ("SELECT * FROM devices WHERE tags.env = null", Ids(&["d4"])),
        // ---- logic ----
        (
            "SELECT * FROM devices WHERE tags.env = 'dev' OR tags.location.region = 'EU'",
            Ids(&["d2", "d3", "d4"]),
        ),
        (
            "SELECT * FROM devices WHERE (tags.env = 'dev' OR tags.env = 'prod') AND tags.location.region = 'US'",
            Ids(&["d1", "d2"]),
        ),
        ("SELECT * FROM devices WHERE NOT (tags.env = 'prod')", Ids(&["d2"])),
        ("SELECT * FROM devices WHERE NOT IS_DEFINED(tags.env)", Ids(&["d5"])),
        ("SELECT * FROM devices WHERE NOT NOT (deviceId = 'd2')", Ids(&["d2"])),
        // undefined OR true is true; undefined AND false is false, so NOT gives true.
        ("SELECT * FROM devices WHERE tags.nothing = 1 OR deviceId = 'd5'", Ids(&["d5"])),
        ("SELECT * FROM devices WHERE NOT (tags.nothing = 1 AND deviceId = 'd5')", Ids(&["d1", "d2", "d3", "d4"])),
        ("SELECT * FROM devices WHERE true", Ids(ALL)),
        ("SELECT * FROM devices WHERE false", Ids(NONE)),
        // Conditions that are not exactly true keep nothing.
        ("SELECT * FROM devices WHERE properties.reported.battery", Ids(NONE)),
        ("SELECT * FROM devices WHERE 'true'", Ids(NONE)),
        ("SELECT * FROM devices WHERE null", Ids(NONE)),
        // ---- IN / NIN ----
        ("SELECT * FROM devices WHERE properties.reported.battery IN [80, 15]", Ids(&["d1", "d2"])),
        (
            "SELECT * FROM devices WHERE properties.reported.connectivity NIN ['wired']",
            Ids(&["d2", "d3"]),
        ),
        ("SELECT * FROM devices WHERE tags.floor IN ['3', 1.5]", Ids(&["d2"])),
        ("SELECT * FROM devices WHERE tags.floor IN [3]", Ids(&["d1", "d3"])),
        ("SELECT * FROM devices WHERE tags.env IN [null, 'dev']", Ids(&["d2", "d4"])),
        ("SELECT * FROM devices WHERE tags.nothing NIN [1]", Ids(NONE)),
        ("SELECT * FROM devices WHERE deviceId IN []", Ids(NONE)),
        // ---- arithmetic ----
        ("SELECT * FROM devices WHERE properties.reported.battery + 20 = 100", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE properties.reported.battery - 5 = 10", Ids(&["d2"])),
        ("SELECT * FROM devices WHERE tags.floor * 2 = 3", Ids(&["d2"])),
        (
            "SELECT * FROM devices WHERE properties.reported.telemetryConfig.sendFrequencyInSecs / 60 = 5",
            Ids(&["d1"]),
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.telemetryConfig.sendFrequencyInSecs / 60 = 0.5",
            Ids(&["d2"]),
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.telemetryConfig.sendFrequencyInSecs % 7 = 6",
            Ids(&["d1"]),
        ),
        ("SELECT * FROM devices WHERE NOT (properties.reported.battery / 0 = 0)", Ids(NONE)),
        ("SELECT * FROM devices WHERE -properties.reported.battery = -80", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE 1 + 2 * 3 = 7 AND deviceId = 'd1'", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE (1 + 2) * 3 = 9 AND deviceId = 'd1'", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE properties.reported.battery = 0x50", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE tags.env + 'x' = 'prodx'", Ids(NONE)),
        // ---- string constants ----
        ("SELECT * FROM devices WHERE tags.location.plant = 'Redmond\\u0034\\u0033'", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE tags.location.plant = \"Austin\"", Ids(&["d2"])),
        // ---- functions ----
        ("SELECT * FROM devices WHERE IS_NULL(tags.env)", Ids(&["d4"])),
        ("SELECT * FROM devices WHERE IS_DEFINED(tags.env)", Ids(&["d1", "d2", "d3", "d4"])),
        ("SELECT * FROM devices WHERE IS_DEFINED(properties.reported.nullable)", Ids(&["d3"])),
        ("SELECT * FROM devices WHERE IS_BOOL(properties.reported.enabled)", Ids(&["d1", "d2"])),
        ("SELECT * FROM devices WHERE IS_NUMBER(properties.reported.battery)", Ids(&["d1", "d2", "d3"])),
        ("SELECT * FROM devices WHERE IS_STRING(properties.reported.battery)", Ids(&["d4"])),
        ("SELECT * FROM devices WHERE IS_OBJECT(properties.reported.connectivity)", Ids(&["d4"])),
        ("SELECT * FROM devices WHERE IS_ARRAY(tags.roles)", Ids(&["d1"])),
        (
            "SELECT * FROM devices WHERE IS_PRIMITIVE(properties.reported.connectivity)",
            Ids(&["d1", "d2", "d3"]),
        ),
        ("SELECT * FROM devices WHERE STARTSWITH(properties.reported.fw, '2.')", Ids(&["d2", "d3"])),
        ("SELECT * FROM devices WHERE starts_with(properties.reported.fw, '1.')", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE ENDSWITH(deviceId, '3')", Ids(&["d3"])),
        ("SELECT * FROM devices WHERE CONTAINS(tags.location.plant, 'mond')", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE LOWER(tags.location.region) = 'us'", Ids(&["d1", "d2"])),
        ("SELECT * FROM devices WHERE UPPER(properties.reported.connectivity) = 'WIFI'", Ids(&["d2"])),
        ("SELECT * FROM devices WHERE LENGTH(tags.location.plant) = 6", Ids(&["d2"])),
        ("SELECT * FROM devices WHERE STARTSWITH(properties.reported.battery, '8')", Ids(NONE)),
        // ---- type mismatches and undefined paths ----
        ("SELECT * FROM devices WHERE properties.reported.battery = '80'", Ids(NONE)),
        // Only d4's battery is a string.
        ("SELECT * FROM devices WHERE properties.reported.battery != '80'", Ids(&["d4"])),
        (
            "SELECT * FROM devices WHERE properties.reported.connectivity = properties.reported.connectivity",
            Ids(&["d1", "d2", "d3"]),
        ),
        ("SELECT * FROM devices WHERE tags.location = tags.location", Ids(NONE)),
        ("SELECT * FROM devices WHERE tags.nothing = 1", Ids(NONE)),
        ("SELECT * FROM devices WHERE NOT (tags.nothing = 1)", Ids(NONE)),
        ("SELECT * FROM devices WHERE tags.env = undefined", Ids(NONE)),
        ("SELECT * FROM devices WHERE tags.env != undefined", Ids(NONE)),
        ("SELECT * FROM devices WHERE tags.Location.region = 'US'", Ids(NONE)),
        // ---- system properties, $version, $metadata ----
        ("SELECT * FROM devices WHERE DEVICEID = 'd1'", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE status = 'disabled'", Ids(&["d2"])),
        ("SELECT * FROM devices WHERE connectionState = 'Connected'", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE authenticationType = 'sas' AND version = 1", Ids(ALL)),
        ("SELECT * FROM devices WHERE cloudToDeviceMessageCount = 0", Ids(ALL)),
        ("SELECT * FROM devices WHERE capabilities.iotEdge = false AND deviceId = 'd1'", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE x509Thumbprint.primaryThumbprint = null AND deviceId = 'd2'", Ids(&["d2"])),
        ("SELECT * FROM devices WHERE modelId = 'dtmi:com:example:Thermostat;1'", Ids(&["d5"])),
        ("SELECT * FROM devices WHERE lastActivityTime > '2022'", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE properties.reported.$version = 7", Ids(&["d1"])),
        ("SELECT * FROM devices WHERE properties.desired.$version >= 4", Ids(&["d1"])),
        (
            "SELECT * FROM devices WHERE properties.desired.$metadata.telemetryConfig.$lastUpdated = '2016-03-30T16:24:48.789Z'",
            Ids(&["d1"]),
        ),
        (
            "SELECT * FROM devices WHERE properties.desired.$metadata.telemetryConfig.sendFrequencyInSecs.$lastUpdatedVersion = 4",
            Ids(&["d1"]),
        ),
        ("SELECT * FROM devices WHERE properties.reported.$metadata.$lastUpdatedVersion = 7", Ids(NONE)),
        ("SELECT * FROM devices.modules WHERE moduleId = 'mod-b'", Ids(&["d2/mod-b"])),
        ("SELECT * FROM devices WHERE IS_DEFINED(moduleId)", Ids(NONE)),
        // ---- projections ----
        (
            "SELECT deviceId AS id, tags.location.region AS region FROM devices WHERE tags.env = 'prod'",
            Rows(json!([{"id": "d1", "region": "US"}, {"id": "d3", "region": "EU"}])),
        ),
        (
            "SELECT deviceId, properties.reported.fw FROM devices WHERE IS_DEFINED(properties.reported.fw)",
            Rows(json!([
                {"deviceId": "d1", "fw": "1.0.0"},
                {"deviceId": "d2", "fw": "2.0.1"},
                {"deviceId": "d3", "fw": "2.0.1"}
            ])),
        ),
        (
            "SELECT tags.location FROM devices WHERE deviceId = 'd1'",
            Rows(json!([{"location": {"region": "US", "plant": "Redmond43"}}])),
        ),
        (
            "SELECT deviceId, properties.reported.battery * 2, LOWER(tags.env) FROM devices WHERE deviceId = 'd1'",
            Rows(json!([{"deviceId": "d1", "$1": 160, "$2": "prod"}])),
        ),
        (
            "SELECT deviceId, tags.env FROM devices WHERE tags.location.region = 'EU'",
            Rows(json!([{"deviceId": "d3", "env": "prod"}, {"deviceId": "d4", "env": null}])),
        ),
        (
            "SELECT 'x' AS k, [1, 'a', [true]] AS arr, 2.5 AS f FROM devices WHERE deviceId = 'd1'",
            Rows(json!([{"k": "x", "arr": [1, "a", [true]], "f": 2.5}])),
        ),
        (
            "SELECT moduleId, deviceId FROM devices.modules",
            Rows(json!([{"deviceId": "d1", "moduleId": "mod-a"}, {"deviceId": "d2", "moduleId": "mod-b"}])),
        ),
        (
            "SELECT properties.reported.$version AS v, properties.desired.$metadata.$lastUpdated AS t FROM devices WHERE deviceId = 'd1'",
            Rows(json!([{"v": 7, "t": "2016-03-30T16:24:48.789Z"}])),
        ),
        (
            "SELECT capabilities, status FROM devices WHERE deviceId = 'd2'",
            Rows(json!([{"capabilities": {"iotEdge": false}, "status": "disabled"}])),
        ),
        // ---- TOP ----
        ("SELECT TOP 2 * FROM devices", Ids(&["d1", "d2"])),
        ("SELECT TOP 0 * FROM devices", Ids(NONE)),
        (
            "SELECT TOP 1 deviceId FROM devices WHERE tags.location.region = 'EU'",
            Rows(json!([{"deviceId": "d3"}])),
        ),
        // ---- aggregates and GROUP BY ----
        (
            "SELECT COUNT() AS n FROM devices WHERE tags.env = 'prod'",
            Rows(json!([{"n": 2}])),
        ),
        ("SELECT COUNT() AS n FROM devices WHERE false", Rows(json!([{"n": 0}]))),
        ("SELECT COUNT() FROM devices", Rows(json!([{"$1": 5}]))),
        ("SELECT COUNT() AS n FROM devices.modules", Rows(json!([{"n": 2}]))),
        (
            "SELECT SUM(properties.reported.battery) AS s, AVG(properties.reported.battery) AS a, MIN(properties.reported.battery) AS lo, MAX(properties.reported.battery) AS hi FROM devices",
            Rows(json!([{"s": 150.5, "a": 150.5 / 3.0, "lo": 15, "hi": "n/a"}])),
        ),
        (
            "SELECT AVG(tags.nothing) AS a, SUM(tags.nothing) AS s, MAX(tags.nothing) AS m, COUNT() AS n FROM devices",
            Rows(json!([{"s": 0, "n": 5}])),
        ),
        (
            "SELECT tags.env AS env, COUNT() AS n FROM devices GROUP BY tags.env",
            Rows(json!([
                {"n": 1},
                {"env": null, "n": 1},
                {"env": "dev", "n": 1},
                {"env": "prod", "n": 2}
            ])),
        ),
        (
            "SELECT tags.location.region AS r, tags.env AS e, COUNT() AS n FROM devices GROUP BY tags.location.region, tags.env",
            Rows(json!([
                {"n": 1},
                {"r": "EU", "e": null, "n": 1},
                {"r": "EU", "e": "prod", "n": 1},
                {"r": "US", "e": "dev", "n": 1},
                {"r": "US", "e": "prod", "n": 1}
            ])),
        ),
        (
            "SELECT tags.location.region AS region, SUM(properties.reported.telemetryConfig.sendFrequencyInSecs) AS total, MAX(properties.reported.fw) AS newest FROM devices WHERE IS_DEFINED(tags.location.region) GROUP BY tags.location.region",
            Rows(json!([
                {"region": "EU", "total": 60, "newest": "2.0.1"},
                {"region": "US", "total": 330, "newest": "2.0.1"}
            ])),
        ),
        (
            "SELECT TOP 1 tags.location.region AS region, COUNT() AS n FROM devices WHERE IS_DEFINED(tags.location.region) GROUP BY tags.location.region",
            Rows(json!([{"region": "EU", "n": 2}])),
        ),
        (
            "SELECT tags.floor AS floor, COUNT() AS n FROM devices WHERE IS_DEFINED(tags.floor) GROUP BY tags.floor",
            Rows(json!([{"floor": 1.5, "n": 1}, {"floor": 3, "n": 2}])),
        ),
        (
            "SELECT properties.reported.connectivity AS c, COUNT() AS n FROM devices WHERE IS_DEFINED(properties.reported.connectivity) GROUP BY properties.reported.connectivity",
            Rows(json!([
                {"c": "cellular", "n": 1},
                {"c": "wifi", "n": 1},
                {"c": "wired", "n": 1},
                {"c": {"type": "cellular"}, "n": 1}
            ])),
        ),
        (
            "SELECT tags.env FROM devices GROUP BY tags.env",
            Rows(json!([{}, {"env": null}, {"env": "dev"}, {"env": "prod"}])),
        ),
        (
            "SELECT tags.env AS env, COUNT() AS n FROM devices.modules GROUP BY tags.env",
            Rows(json!([{"n": 1}, {"env": "prod", "n": 1}])),
        ),
        (
            "SELECT Properties.Reported.fw AS fw, COUNT() AS n FROM devices WHERE IS_DEFINED(properties.reported.fw) GROUP BY properties.reported.fw",
            Rows(json!([{"fw": "1.0.0", "n": 1}, {"fw": "2.0.1", "n": 2}])),
        ),
        ("SELECT tags.env AS env, COUNT() AS n FROM devices WHERE false GROUP BY tags.env", Rows(json!([]))),
        // ---- errors ----
        (
            "SELECT * FROM devices WHERE FOO(deviceId)",
            Parse(|k| matches!(k, ParseErrorKind::UnknownFunction { name } if name == "FOO")),
        ),
        (
            "SELECT * FROM devices WHERE IS_DEFINED(tags.a, tags.b)",
            Parse(|k| matches!(k, ParseErrorKind::WrongArgumentCount { function: "IS_DEFINED", expected: 1, found: 2 })),
        ),
        (
            "SELECT * FROM devices WHERE CONTAINS(deviceId)",
            Parse(|k| matches!(k, ParseErrorKind::WrongArgumentCount { function: "CONTAINS", expected: 2, found: 1 })),
        ),
        (
            "SELECT AVG(tags.a, tags.b) AS a FROM devices",
            Parse(|k| matches!(k, ParseErrorKind::WrongArgumentCount { function: "AVG", .. })),
        ),
        (
            "SELECT * FROM devices WHERE COUNT() = 1",
            Parse(|k| matches!(k, ParseErrorKind::AggregateNotAllowed { function: "COUNT" })),
        ),
        (
            "SELECT deviceId, COUNT() AS n FROM devices GROUP BY tags.env",
            Parse(|k| matches!(k, ParseErrorKind::NotGrouped { .. })),
        ),
        (
            "SELECT * FROM devices GROUP BY tags.env",
            Parse(|k| matches!(k, ParseErrorKind::StarWithGroupBy)),
        ),
        (
            "SELECT tags.x, properties.desired.x FROM devices",
            Parse(|k| matches!(k, ParseErrorKind::DuplicateName { name } if name == "x")),
        ),
        (
            "SELECT * FROM devices WHERE tags.env = 'prod",
            Parse(|k| matches!(k, ParseErrorKind::UnterminatedString { quote: '\'' })),
        ),
        (
            "SELECT * FROM devices WHERE tags.env = 'a\\x'",
            Parse(|k| matches!(k, ParseErrorKind::InvalidEscape { .. })),
        ),
        (
            "SELECT * FROM devices WHERE tags.env IN ['a', undefined]",
            Parse(|k| matches!(k, ParseErrorKind::UndefinedInArray)),
        ),
        (
            "SELECT * FROM devices WHERE tags.env ==",
            Parse(|k| matches!(k, ParseErrorKind::Unexpected { .. })),
        ),
        (
            "SELECT * FROM devices WHERE configurations.[[cfg.status = 1",
            Parse(|k| matches!(k, ParseErrorKind::UnterminatedQuotedName)),
        ),
        (
            "SELECT deviceId FROM devices.jobs",
            Parse(|k| matches!(k, ParseErrorKind::JobsSelectStarOnly)),
        ),
        ("SELECT * FROM devices WHERE x = 0x", Parse(|k| matches!(k, ParseErrorKind::InvalidNumber { .. }))),
    ]
}

#[test]
fn case_table() {
    let twins = fleet();
    let cases = cases();
    assert!(cases.len() >= 80, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (text, expect) in &cases {
        let result = Query::parse(text).and_then(|q| q.execute(&twins));
        let ok = match (expect, &result) {
            (Ids(ids), Ok(rows)) => rows.iter().map(id_of).collect::<Vec<_>>() == *ids,
            (Rows(Value::Array(want)), Ok(rows)) => rows == want,
            (Parse(f), Err(QueryError::Parse { kind, .. })) => f(kind),
            (Fails(f), Err(e)) => f(e),
            _ => false,
        };
        if !ok {
            let got = match &result {
                Ok(rows) => match expect {
                    Ids(_) => format!("{:?}", rows.iter().map(id_of).collect::<Vec<_>>()),
                    _ => Value::Array(rows.clone()).to_string(),
                },
                Err(e) => format!("error: {e}"),
            };
            failures.push(format!("{text}\n    got {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `SELECT *` rows are the twins' service-side JSON.
#[test]
fn select_star_yields_twin_json() {
    let twins = fleet();
    let rows = Query::parse("SELECT * FROM devices WHERE deviceId = 'd4'")
        .and_then(|q| q.execute(&twins))
        .unwrap_or_default();
    assert_eq!(rows, vec![twins[3].to_json()]);
    assert_eq!(
        rows[0]["configurations"]["cfg-1"]["status"],
        json!("Applied")
    );
}

/// `matches` applies the WHERE clause alone, whatever the collection.
#[test]
fn matches_is_the_where_clause_alone() {
    let twins = fleet();
    let q = Query::parse("SELECT * FROM devices WHERE tags.env = 'prod'")
        .unwrap_or_else(|e| panic!("{e}"));
    let hits: Vec<String> = twins
        .iter()
        .filter(|t| q.matches(t))
        .map(|t| {
            format!(
                "{}/{:?}",
                t.device_id,
                t.module_id.as_ref().map(|m| m.as_str())
            )
        })
        .collect();
    assert_eq!(hits, ["d1/None", "d3/None", "d1/Some(\"mod-a\")"]);
    let everything =
        Query::parse("SELECT COUNT() AS n FROM devices").unwrap_or_else(|e| panic!("{e}"));
    assert!(twins.iter().all(|t| everything.matches(t)));
}

/// Errors carry line:column and a caret snippet.
#[test]
fn error_messages_show_position_and_caret() {
    let err =
        Query::parse("SELECT *\nFROM devices\nWHERE tags.env = 'prod' AND BOGUS(1)").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown function BOGUS at 3:29\nWHERE tags.env = 'prod' AND BOGUS(1)\n                            ^"
    );
    let long = format!(
        "SELECT * FROM devices WHERE deviceId = '{}'",
        "x".repeat(8192)
    );
    assert_eq!(
        Query::parse(&long).unwrap_err().to_string(),
        format!(
            "query text is {} characters long, the limit is 8192",
            long.chars().count()
        )
    );
}
