use super::*;
use proptest::prelude::*;
use serde_json::json;

#[test]
fn names_accept_the_allowed_alphabet() {
    for ok in [
        "reboot",
        "factoryReset",
        "a",
        "get_status-2",
        "!#%&'*+-.^_`|~",
        "A9",
    ] {
        assert_eq!(MethodName::new(ok).unwrap().as_str(), ok);
    }
    assert!(MethodName::new("m".repeat(MAX_METHOD_NAME_LEN)).is_ok());
}

#[test]
fn names_reject_with_char_and_position() {
    assert_eq!(MethodName::new(""), Err(MethodError::EmptyName));
    assert_eq!(
        MethodName::new("m".repeat(129)),
        Err(MethodError::NameTooLong {
            len: 129,
            limit: 128
        })
    );
    for ch in METHOD_NAME_EXCLUDED
        .chars()
        .chain([' ', '\t', '\u{7f}', '\n', 'é'])
    {
        let name = format!("ab{ch}c");
        assert_eq!(
            MethodName::new(name.clone()),
            Err(MethodError::InvalidNameChar {
                name,
                ch,
                position: 2
            }),
            "{ch:?}"
        );
    }
    let msg = MethodName::new("a b").unwrap_err().to_string();
    assert!(msg.contains("' '") && msg.contains("position 1"), "{msg}");
}

#[test]
fn name_serde_validates() {
    let n: MethodName = serde_json::from_str("\"reboot\"").unwrap();
    assert_eq!(serde_json::to_string(&n).unwrap(), "\"reboot\"");
    assert!(serde_json::from_str::<MethodName>("\"a/b\"").is_err());
    assert_eq!("x".parse::<MethodName>().unwrap().to_string(), "x");
}

#[test]
fn request_serializes_to_the_rest_shape() {
    let req = MethodRequest::builder("reboot")
        .payload(json!({"input1": "someInput"}))
        .response_timeout_secs(200)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let v = serde_json::to_value(&req).unwrap();
    assert_eq!(
        v,
        json!({"methodName": "reboot", "payload": {"input1": "someInput"},
               "responseTimeoutInSeconds": 200, "connectTimeoutInSeconds": 10})
    );
    let back: MethodRequest = serde_json::from_value(v).unwrap();
    assert_eq!(back, req);
    assert_eq!(back.connect_timeout(), Duration::from_secs(10));
}

#[test]
fn request_defaults_for_missing_and_null_fields() {
    for body in [
        r#"{"methodName":"m"}"#,
        r#"{"methodName":"m","payload":null,"responseTimeoutInSeconds":null,"connectTimeoutInSeconds":null}"#,
    ] {
        let req: MethodRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.payload(), &Value::Null);
        assert_eq!(req.response_timeout(), Duration::from_secs(30));
        assert_eq!(req.connect_timeout(), Duration::ZERO);
    }
    let built = MethodRequest::builder("m").build().unwrap();
    assert_eq!(built.response_timeout(), Duration::from_secs(30));
    assert_eq!(built.connect_timeout(), Duration::ZERO);
}

#[test]
fn request_timeout_bounds_are_inclusive() {
    for (resp, conn) in [(5, 0), (300, 300)] {
        let req = MethodRequest::builder("m")
            .response_timeout_secs(resp)
            .connect_timeout_secs(conn)
            .build()
            .unwrap();
        assert_eq!(req.response_timeout().as_secs(), u64::from(resp));
        assert_eq!(req.connect_timeout().as_secs(), u64::from(conn));
    }
}

#[test]
fn request_timeouts_out_of_range_are_typed() {
    let resp = |value| MethodError::TimeoutOutOfRange {
        field: "responseTimeoutInSeconds",
        value,
        min: 5,
        max: 300,
    };
    let conn = |value| MethodError::TimeoutOutOfRange {
        field: "connectTimeoutInSeconds",
        value,
        min: 0,
        max: 300,
    };
    assert_eq!(
        MethodRequest::builder("m").response_timeout_secs(4).build(),
        Err(resp(4))
    );
    assert_eq!(
        MethodRequest::builder("m")
            .response_timeout_secs(301)
            .build(),
        Err(resp(301))
    );
    assert_eq!(
        MethodRequest::builder("m")
            .connect_timeout_secs(301)
            .build(),
        Err(conn(301))
    );
    assert_eq!(
        MethodRequest::builder("m")
            .response_timeout(Duration::from_millis(5500))
            .build(),
        Err(MethodError::TimeoutNotWholeSeconds {
            field: "responseTimeoutInSeconds",
            value: Duration::from_millis(5500)
        })
    );
    // through the try_from path used by serde
    let raw = |r: Option<i64>, c: Option<i64>| RawMethodRequest {
        method_name: "m".into(),
        payload: Value::Null,
        response_timeout_in_seconds: r,
        connect_timeout_in_seconds: c,
    };
    assert_eq!(MethodRequest::try_from(raw(Some(-1), None)), Err(resp(-1)));
    assert_eq!(
        MethodRequest::try_from(raw(Some(3600), None)),
        Err(resp(3600))
    );
    assert_eq!(MethodRequest::try_from(raw(None, Some(-5))), Err(conn(-5)));
    assert_eq!(
        MethodRequest::try_from(raw(Some(i64::MAX), None)),
        Err(resp(i64::MAX))
    );
    let err = serde_json::from_str::<MethodRequest>(
        r#"{"methodName":"m","responseTimeoutInSeconds":301}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("responseTimeoutInSeconds is 301, the allowed range is 5..=300"),
        "{err}"
    );
}

#[test]
fn request_rejects_bad_names_in_json() {
    let err = serde_json::from_str::<MethodRequest>(r#"{"methodName":"a b"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("position 1"), "{err}");
    assert!(serde_json::from_str::<MethodRequest>(r#"{"payload":1}"#).is_err());
}

#[test]
fn payload_limit_is_exact() {
    // a JSON string of n characters serializes to n + 2 bytes
    let at_limit = Value::String("x".repeat(MAX_PAYLOAD_BYTES - 2));
    assert_eq!(payload_size(&at_limit), MAX_PAYLOAD_BYTES);
    assert!(MethodRequest::builder("m")
        .payload(at_limit.clone())
        .build()
        .is_ok());
    assert!(MethodResponse::new(200, at_limit).is_ok());

    let over = Value::String("x".repeat(MAX_PAYLOAD_BYTES - 1));
    let too_large = MethodError::PayloadTooLarge {
        size: MAX_PAYLOAD_BYTES + 1,
        limit: MAX_PAYLOAD_BYTES,
    };
    assert_eq!(
        MethodRequest::builder("m").payload(over.clone()).build(),
        Err(too_large.clone())
    );
    assert_eq!(
        MethodResponse::new(200, over.clone()),
        Err(too_large.clone())
    );
    assert_eq!(encode_payload(&over), Err(too_large));
    let body = json!({"status": 200, "payload": over}).to_string();
    assert!(serde_json::from_str::<MethodResponse>(&body).is_err());
}

#[test]
fn decode_follows_the_sdks() {
    assert_eq!(decode_payload(b"").unwrap(), Value::Null);
    assert_eq!(decode_payload(b" \n").unwrap(), Value::Null);
    assert_eq!(decode_payload(b"null").unwrap(), Value::Null);
    assert_eq!(decode_payload(b"42").unwrap(), json!(42));
    assert_eq!(decode_payload(b"\"hi\"").unwrap(), json!("hi"));
    assert_eq!(
        decode_payload(br#"{"a":[1,2]}"#).unwrap(),
        json!({"a":[1,2]})
    );
    for bad in [&b"{"[..], b"nul", b"\xff\xfe", b"{} {}"] {
        match decode_payload(bad) {
            Err(MethodError::InvalidPayload { reason }) => assert!(!reason.is_empty()),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
    let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
    assert_eq!(
        decode_payload(&big),
        Err(MethodError::PayloadTooLarge {
            size: MAX_PAYLOAD_BYTES + 1,
            limit: MAX_PAYLOAD_BYTES
        })
    );
}

#[test]
fn encode_is_compact_and_round_trips() {
    assert_eq!(encode_payload(&Value::Null).unwrap(), b"null");
    let v = json!({"a": 1, "b": [true, null]});
    let bytes = encode_payload(&v).unwrap();
    assert_eq!(bytes, br#"{"a":1,"b":[true,null]}"#);
    assert_eq!(decode_payload(&bytes).unwrap(), v);
}

#[test]
fn response_shape_and_defaults() {
    let r: MethodResponse = serde_json::from_str(r#"{"status":404}"#).unwrap();
    assert_eq!(
        r,
        MethodResponse {
            status: 404,
            payload: Value::Null
        }
    );
    assert!(!r.is_success());
    let r = MethodResponse::from_device(201, b"").unwrap();
    assert!(r.is_success());
    assert_eq!(r.device_body().unwrap(), b"null");
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"status":201,"payload":null}"#
    );
    assert!(MethodResponse::from_device(200, b"{").is_err());
}

#[test]
fn deadlines_add_the_timeouts() {
    let req = MethodRequest::builder("m")
        .response_timeout_secs(60)
        .connect_timeout_secs(10)
        .build()
        .unwrap();
    let t = Timestamp::from_unix_secs(1_000);
    assert_eq!(req.response_deadline(t), Timestamp::from_unix_secs(1_060));
    assert_eq!(req.connect_deadline(t), Timestamp::from_unix_secs(1_010));
    assert_eq!(req.device_payload().unwrap(), b"null");
}

fn allowed(ch: char) -> bool {
    ch.is_ascii_graphic() && !METHOD_NAME_EXCLUDED.contains(ch)
}

proptest! {
    #[test]
    fn name_validation_matches_the_rule(s in "[ -~\t\u{e9}]{0,130}") {
        let n = s.chars().count();
        let expected_ok = (1..=MAX_METHOD_NAME_LEN).contains(&n) && s.chars().all(allowed);
        prop_assert_eq!(MethodName::new(s.clone()).is_ok(), expected_ok, "{:?}", s);
    }

    #[test]
    fn valid_requests_round_trip(
        name in "[a-zA-Z0-9_.-]{1,40}",
        resp in 5u32..=300,
        conn in 0u32..=300,
        n in any::<i64>(),
        text in ".{0,20}",
    ) {
        let req = MethodRequest::builder(name)
            .payload(json!({"n": n, "text": text}))
            .response_timeout_secs(resp)
            .connect_timeout_secs(conn)
            .build()
            .unwrap();
        let s = serde_json::to_string(&req).unwrap();
        prop_assert_eq!(serde_json::from_str::<MethodRequest>(&s).unwrap(), req.clone());
        let bytes = req.device_payload().unwrap();
        prop_assert_eq!(bytes.len(), payload_size(req.payload()));
        prop_assert_eq!(&decode_payload(&bytes).unwrap(), req.payload());
    }
}
