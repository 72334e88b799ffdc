//! Parser tests: grammar, canonical printing, error kinds and positions, static rules.
use super::*;

fn parse(text: &str) -> Statement {
    match parse_statement(text) {
        Ok(s) => s,
        Err(e) => panic!("{text}: {e}"),
    }
}

fn fail(text: &str) -> (ParseErrorKind, usize, usize) {
    match parse_statement(text) {
        Ok(s) => panic!("{text} parsed as {s}"),
        Err(QueryError::Parse { kind, position, .. }) => (kind, position.line, position.column),
        Err(e) => panic!("{text}: unexpected {e}"),
    }
}

fn canon(text: &str) -> String {
    parse(text).to_string()
}

#[test]
fn reference_examples_parse() {
    for (text, printed) in [
        (
            "SELECT * FROM devices WHERE tags.location.region = 'US' AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
            "SELECT * FROM devices WHERE tags.location.region = 'US' AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.connectivity IN ['wired','wifi']",
            "SELECT * FROM devices WHERE properties.reported.connectivity IN ['wired', 'wifi']",
        ),
        (
            "SELECT * FROM devices WHERE is_defined(properties.reported.connectivity)",
            "SELECT * FROM devices WHERE IS_DEFINED(properties.reported.connectivity)",
        ),
        (
            "SELECT COUNT() AS totalNumberOfDevices FROM devices",
            "SELECT COUNT() AS totalNumberOfDevices FROM devices",
        ),
        (
            "SELECT properties.reported.telemetryConfig.status AS status,\n    COUNT() AS numberOfDevices\n  FROM devices\n  GROUP BY properties.reported.telemetryConfig.status",
            "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
        ),
        (
            "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId='d' AND devices.jobs.jobType='scheduleUpdateTwin' AND devices.jobs.status='completed' AND devices.jobs.createdTimeUtc > '2016-09-01'",
            "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'd' AND devices.jobs.jobType = 'scheduleUpdateTwin' AND devices.jobs.status = 'completed' AND devices.jobs.createdTimeUtc > '2016-09-01'",
        ),
        (
            "SELECT deviceId FROM devices WHERE configurations.[[cfgId]].status = 'Applied'",
            "SELECT deviceId FROM devices WHERE configurations.cfgId.status = 'Applied'",
        ),
        (
            "SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled' AND connectionState = 'Disconnected'",
            "SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled' AND connectionState = 'Disconnected'",
        ),
        (
            "SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning' AND deviceId IN ['device1', 'device2']",
            "SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning' AND deviceId IN ['device1', 'device2']",
        ),
    ] {
        assert_eq!(canon(text), printed);
    }
}

#[test]
fn keywords_are_case_insensitive() {
    assert_eq!(
        canon("select top 5 * from DEVICES.Modules where not a = 1 or b <> 2 and c nin [1]"),
        "SELECT TOP 5 * FROM devices.modules WHERE NOT a = 1 OR b != 2 AND c NIN [1]"
    );
    assert_eq!(
        canon("Select x As y, Count() aS n From devices Group By x"),
        "SELECT x AS y, COUNT() AS n FROM devices GROUP BY x"
    );
}

#[test]
fn precedence() {
    let st = parse("SELECT * FROM devices WHERE a OR b AND NOT c = 1 + 2 * -3");
    let Some(Expr::Binary { op, right, .. }) = st.condition else {
        panic!("binary expected");
    };
    assert_eq!(op, BinaryOp::Or);
    assert_eq!(right.to_string(), "b AND NOT c = 1 + 2 * -3");
    let Expr::Binary { op, right, .. } = *right else {
        panic!("binary expected");
    };
    assert_eq!(op, BinaryOp::And);
    let Expr::Not(inner) = *right else {
        panic!("not expected");
    };
    let Expr::Binary { op, right, .. } = *inner else {
        panic!("binary expected");
    };
    assert_eq!(op, BinaryOp::Eq);
    assert_eq!(
        *right,
        Expr::Binary {
            op: BinaryOp::Add,
            left: Box::new(Expr::Literal(Literal::Int(1))),
            right: Box::new(Expr::Binary {
                op: BinaryOp::Mul,
                left: Box::new(Expr::Literal(Literal::Int(2))),
                right: Box::new(Expr::Literal(Literal::Int(-3))),
            }),
        }
    );
    assert_eq!(
        canon("SELECT * FROM devices WHERE (a - b) - (c - d) = ((x))"),
        "SELECT * FROM devices WHERE a - b - (c - d) = x"
    );
}

#[test]
fn constants() {
    assert_eq!(
        canon("SELECT * FROM devices WHERE x IN [0x10, -0x10, 1.50, -2e3, \"a\\\"b\", 'c\\'d', true, FALSE, Null, [1, [2]]]"),
        "SELECT * FROM devices WHERE x IN [16, -16, 1.5, -2000.0, 'a\"b', 'c\\'d', true, false, null, [1, [2]]]"
    );
    assert_eq!(
        canon("SELECT * FROM devices WHERE x = 9223372036854775807 OR x = -9223372036854775808 OR x = 9223372036854775808"),
        "SELECT * FROM devices WHERE x = 9223372036854775807 OR x = -9223372036854775808 OR x = 9.223372036854776e18"
    );
    assert_eq!(
        canon("SELECT * FROM devices WHERE x = undefined"),
        "SELECT * FROM devices WHERE x = undefined"
    );
}

#[test]
fn error_positions_and_kinds() {
    let (k, l, c) = fail("SELECT * FRM devices");
    assert_eq!(
        k,
        ParseErrorKind::Unexpected {
            expected: "',' or FROM",
            found: "\"FRM\"".into()
        }
    );
    assert_eq!((l, c), (1, 10));
    let (k, l, c) = fail("SELECT *\nFROM devices\nWHERE foo(x) = 1");
    assert_eq!(k, ParseErrorKind::UnknownFunction { name: "foo".into() });
    assert_eq!((l, c), (3, 7));
    let (k, _, c) = fail("SELECT * FROM devices WHERE STARTSWITH(deviceId)");
    assert_eq!(
        k,
        ParseErrorKind::WrongArgumentCount {
            function: "STARTSWITH",
            expected: 2,
            found: 1
        }
    );
    assert_eq!(c, 29);
    let (k, ..) = fail("SELECT COUNT(x) FROM devices");
    assert_eq!(
        k,
        ParseErrorKind::WrongArgumentCount {
            function: "COUNT",
            expected: 0,
            found: 1
        }
    );
    let (k, ..) = fail("SELECT SUM() FROM devices");
    assert!(matches!(
        k,
        ParseErrorKind::WrongArgumentCount {
            function: "SUM",
            expected: 1,
            found: 0
        }
    ));
    let (k, ..) = fail("SELECT * FROM devices WHERE COUNT() > 1");
    assert_eq!(k, ParseErrorKind::AggregateNotAllowed { function: "COUNT" });
    let (k, ..) = fail("SELECT * FROM devices WHERE x IN 'a'");
    assert!(matches!(
        k,
        ParseErrorKind::Unexpected {
            expected: "an array constant after IN/NIN",
            ..
        }
    ));
    let (k, ..) = fail("SELECT * FROM devices WHERE x IN [undefined]");
    assert_eq!(k, ParseErrorKind::UndefinedInArray);
    let (k, ..) = fail("SELECT * FROM devices WHERE x IN [y]");
    assert!(matches!(
        k,
        ParseErrorKind::Unexpected {
            expected: "a constant",
            ..
        }
    ));
    let (k, ..) = fail("SELECT TOP -1 * FROM devices");
    assert!(matches!(k, ParseErrorKind::InvalidTop { .. }));
    let (k, ..) = fail("SELECT TOP 1.5 * FROM devices");
    assert!(matches!(k, ParseErrorKind::InvalidTop { .. }));
    let (k, ..) = fail("SELECT * FROM twins");
    assert!(matches!(
        k,
        ParseErrorKind::Unexpected {
            expected: "devices, devices.modules or devices.jobs",
            ..
        }
    ));
    let (k, ..) = fail("SELECT * FROM devices.things");
    assert!(matches!(
        k,
        ParseErrorKind::Unexpected {
            expected: "modules or jobs",
            ..
        }
    ));
    let (k, ..) = fail("SELECT * FROM devices WHERE");
    assert!(
        matches!(k, ParseErrorKind::Unexpected { expected: "an expression", ref found } if found == "end of query")
    );
    let (k, ..) = fail("SELECT * FROM devices WHERE (a = 1");
    assert!(matches!(
        k,
        ParseErrorKind::Unexpected {
            expected: "')'",
            ..
        }
    ));
    let (k, ..) = fail("SELECT * FROM devices WHERE a = 1 b");
    assert!(matches!(
        k,
        ParseErrorKind::Unexpected {
            expected: "end of query",
            ..
        }
    ));
    let (k, ..) = fail("SELECT * FROM devices WHERE tags. = 1");
    assert!(matches!(
        k,
        ParseErrorKind::Unexpected {
            expected: "a name or [[quoted name]] after '.'",
            ..
        }
    ));
    let (k, ..) = fail("SELECT * FROM devices WHERE select = 1");
    assert!(matches!(
        k,
        ParseErrorKind::Unexpected {
            expected: "an expression",
            ..
        }
    ));
    let (k, ..) = fail("SELECT x AS from FROM devices");
    assert!(matches!(
        k,
        ParseErrorKind::Unexpected {
            expected: "an alias name",
            ..
        }
    ));
    let (k, ..) = fail("SELECT * FROM devices WHERE a ! b");
    assert_eq!(k, ParseErrorKind::UnexpectedChar { ch: '!' });
}

#[test]
fn static_rules() {
    let (k, _, c) = fail("SELECT deviceId, COUNT() AS n FROM devices");
    assert_eq!(
        k,
        ParseErrorKind::NotGrouped {
            item: "deviceId".into()
        }
    );
    assert_eq!(c, 8);
    let (k, ..) = fail("SELECT tags.a, COUNT() FROM devices GROUP BY tags.b");
    assert!(matches!(k, ParseErrorKind::NotGrouped { .. }));
    let (k, ..) = fail("SELECT * FROM devices GROUP BY tags.b");
    assert_eq!(k, ParseErrorKind::StarWithGroupBy);
    let (k, _, c) = fail("SELECT tags.x, properties.reported.x FROM devices");
    assert_eq!(k, ParseErrorKind::DuplicateName { name: "x".into() });
    assert_eq!(c, 16);
    let (k, ..) = fail("SELECT deviceId AS a, status AS a FROM devices");
    assert_eq!(k, ParseErrorKind::DuplicateName { name: "a".into() });
    let (k, ..) = fail("SELECT deviceId FROM devices.jobs");
    assert_eq!(k, ParseErrorKind::JobsSelectStarOnly);
    // Grouped paths match with system names in any case.
    parse("SELECT Properties.Reported.fw AS fw, COUNT() AS n FROM devices GROUP BY properties.reported.fw");
    // Unnamed items are numbered.
    parse("SELECT COUNT(), SUM(tags.n), tags.k FROM devices GROUP BY tags.k");
}

#[test]
fn limits() {
    let long = format!(
        "SELECT * FROM devices WHERE deviceId = '{}'",
        "a".repeat(super::super::MAX_QUERY_CHARS)
    );
    assert!(matches!(
        parse_statement(&long),
        Err(QueryError::TooLong { limit: 8192, .. })
    ));
    let deep = format!(
        "SELECT * FROM devices WHERE {}a{}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    let (k, ..) = fail(&deep);
    assert_eq!(k, ParseErrorKind::TooDeep { limit: MAX_NESTING });
    let chain = format!(
        "SELECT * FROM devices WHERE a{}",
        " + a".repeat(MAX_EXPR_DEPTH + 1)
    );
    let (k, ..) = fail(&chain);
    assert_eq!(
        k,
        ParseErrorKind::TooDeep {
            limit: MAX_EXPR_DEPTH
        }
    );
    // A long OR chain within the limits parses.
    let ors = (0..300)
        .map(|i| format!("deviceId = 'd{i}'"))
        .collect::<Vec<_>>()
        .join(" OR ");
    parse(&format!("SELECT * FROM devices WHERE {ors}"));
}

#[test]
fn conditions() {
    let e = parse_condition("tags.environment = 'prod' AND properties.reported.x > 3");
    assert!(e.is_ok());
    assert!(parse_condition("tags.environment = ").is_err());
    assert!(parse_condition("SELECT * FROM devices").is_err());
}
