//! IoT Hub's error responses back to [`HubError`] variants.

use http::{HeaderMap, StatusCode};

use crate::HubError;

/// What the request was about, to fill the variants' fields the body does not carry.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct About<'a> {
    pub(crate) device_id: Option<&'a str>,
    pub(crate) if_match: Option<&'a str>,
    pub(crate) timeout_secs: u64,
    pub(crate) job_id: Option<&'a str>,
    pub(crate) configuration_id: Option<&'a str>,
    /// The alert rule or alert the request names.
    pub(crate) alert_id: Option<&'a str>,
}

/// IoT Hub's six-digit code for an `ErrorCode:` name (for hubs that send no `errorCode`).
fn code_of_name(name: &str) -> Option<u32> {
    Some(match name {
        "DeviceNotFound" => 404_001,
        "DeviceAlreadyExists" => 409_001,
        "PreconditionFailed" => 412_001,
        "DeviceNotOnline" => 404_103,
        "JobNotFound" => 404_002,
        "JobAlreadyExists" => 409_104,
        "ThrottlingMaxActiveJobCountExceeded" => 429_004,
        "ConfigurationNotFound" => 404_301,
        "ConfigurationAlreadyExists" => 409_401,
        "ConfigurationCountLimitExceeded" => 413_101,
        "AlertRuleNotFound" => 404_501,
        "AlertNotFound" => 404_502,
        "AlertRuleCountLimitExceeded" => 413_501,
        "GatewayTimeout" => 504_101,
        "ArgumentInvalid" => 400_004,
        "ArgumentNull" => 400_005,
        "DeserializationError" => 400_012,
        "GenericBadRequest" | "BadFormat" => 400_000,
        "IotHubUnauthorizedAccess" | "IotHubUnauthorized" => 401_003,
        "Forbidden" => 403_000,
        "ThrottlingException" | "ThrottleBacklogLimitExceeded" => 429_001,
        "MessageTooLarge" | "RequestTooLarge" => 413_001,
        "TooManyDevices" => 413_002,
        "DeviceMaximumQueueDepthExceeded" => 403_004,
        "ServiceUnavailable" => 503_001,
        "ServerError" => 500_001,
        "InsufficientStorage" => 507_001,
        _ => return None,
    })
}

/// The whole numbers in a message, in order (for counts and limits).
fn numbers(message: &str) -> Vec<usize> {
    message
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn without_prefix(message: String, prefix: &str) -> String {
    match message.strip_prefix(prefix) {
        Some(rest) => rest.to_string(),
        None => message,
    }
}

/// The error a non-success response stands for.
pub(crate) fn from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    about: About<'_>,
) -> HubError {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name).or_else(|| j.get(name.to_ascii_lowercase())))
            .cloned()
    };
    let raw_message = field("Message")
        .and_then(|m| m.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(512).collect());
    // "ErrorCode:{Name};{message}"
    let (name, message) = match raw_message
        .strip_prefix("ErrorCode:")
        .and_then(|r| r.split_once(';'))
    {
        Some((n, m)) => (Some(n.trim().to_string()), m.trim().to_string()),
        None => (None, raw_message.clone()),
    };
    let name = name.or_else(|| {
        headers
            .get("iothub-errorcode")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let code = field("errorCode")
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|c| u32::try_from(c).ok())
        .filter(|c| *c >= 100_000)
        .or_else(|| name.as_deref().and_then(code_of_name))
        .unwrap_or(0);
    let device_id = || about.device_id.unwrap_or_default().to_string();
    let nums = numbers(&message);
    match code {
        404_001 => HubError::DeviceNotFound {
            device_id: device_id(),
        },
        409_001 => HubError::DeviceAlreadyExists {
            device_id: device_id(),
        },
        412_001 => HubError::PreconditionFailed {
            expected: about.if_match.unwrap_or_default().to_string(),
            actual: String::new(),
        },
        404_103 => HubError::DeviceNotOnline {
            device_id: device_id(),
        },
        404_002 => HubError::JobNotFound {
            job_id: about.job_id.unwrap_or_default().to_string(),
        },
        409_104 => HubError::JobAlreadyExists {
            job_id: about.job_id.unwrap_or_default().to_string(),
        },
        404_301 => HubError::ConfigurationNotFound {
            id: about.configuration_id.unwrap_or_default().to_string(),
        },
        409_401 => HubError::ConfigurationAlreadyExists {
            id: about.configuration_id.unwrap_or_default().to_string(),
        },
        413_101 => HubError::TooManyConfigurations {
            limit: nums.last().copied().unwrap_or(0),
        },
        404_501 => HubError::AlertRuleNotFound {
            id: about.alert_id.unwrap_or_default().to_string(),
        },
        404_502 => HubError::AlertNotFound {
            id: about.alert_id.unwrap_or_default().to_string(),
        },
        413_501 => HubError::TooManyAlertRules {
            limit: nums.last().copied().unwrap_or(0),
        },
        429_004 => HubError::TooManyActiveJobs {
            limit: nums.last().copied().unwrap_or(0),
        },
        504_101 => HubError::GatewayTimeout {
            device_id: device_id(),
            timeout_secs: about.timeout_secs,
        },
        400_000 | 400_004 | 400_005 | 400_012 => {
            // our hub's messages read "invalid {field}: {message}"
            let (field, message) = match message
                .strip_prefix("invalid ")
                .and_then(|r| r.split_once(": "))
            {
                Some((f, m)) if !f.contains(' ') => (f.to_string(), m.to_string()),
                _ => ("request".to_string(), message),
            };
            HubError::InvalidInput { field, message }
        }
        // our hub's messages carry the variant's own prefix: keep it once
        401_003 => HubError::Unauthorized {
            message: without_prefix(message, "unauthorized: "),
        },
        403_000 => HubError::Forbidden {
            message: without_prefix(message, "forbidden: "),
        },
        429_001 => throttled(headers),
        413_001 => HubError::RequestTooLarge {
            size: nums.first().copied().unwrap_or(0),
            limit: nums.get(1).copied().unwrap_or(0),
        },
        413_002 => HubError::TooManyDevices {
            count: nums.first().copied().unwrap_or(0),
            limit: nums.get(1).copied().unwrap_or(0),
        },
        403_004 => HubError::QueueFull {
            device_id: device_id(),
            limit: nums.last().copied().unwrap_or(0),
        },
        503_001 => HubError::Closed,
        _ if status == StatusCode::UNAUTHORIZED => HubError::Unauthorized { message },
        _ if status == StatusCode::TOO_MANY_REQUESTS => throttled(headers),
        _ => HubError::Remote {
            status: status.as_u16(),
            code,
            message,
        },
    }
}

fn throttled(headers: &HeaderMap) -> HubError {
    HubError::Throttled {
        retry_after_secs: headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, body: &str) -> HubError {
        from_response(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
            About {
                device_id: Some("d1"),
                if_match: Some("\"x\""),
                timeout_secs: 7,
                job_id: Some("j1"),
                configuration_id: Some("c1"),
                alert_id: Some("a1"),
            },
        )
    }

    #[test]
    fn codes_map_to_variants() {
        let b = |code: u32, name: &str, msg: &str| {
            format!(
                r#"{{"Message":"ErrorCode:{name};{msg}","ExceptionMessage":"t","errorCode":{code}}}"#
            )
        };
        assert!(map(404, &b(404_001, "DeviceNotFound", "x")).is_not_found());
        assert!(map(409, &b(409_001, "DeviceAlreadyExists", "x")).is_conflict());
        assert!(map(412, &b(412_001, "PreconditionFailed", "x")).is_precondition_failed());
        assert!(map(404, &b(404_103, "DeviceNotOnline", "x")).is_not_online());
        assert!(matches!(
            map(404, &b(404_002, "JobNotFound", "x")),
            HubError::JobNotFound { job_id } if job_id == "j1"
        ));
        assert!(matches!(
            map(404, &b(404_301, "ConfigurationNotFound", "x")),
            HubError::ConfigurationNotFound { id } if id == "c1"
        ));
        assert!(matches!(
            map(409, &b(409_401, "ConfigurationAlreadyExists", "x")),
            HubError::ConfigurationAlreadyExists { id } if id == "c1"
        ));
        assert!(matches!(
            map(
                413,
                &b(
                    413_101,
                    "ConfigurationCountLimitExceeded",
                    "the limit is 100"
                )
            ),
            HubError::TooManyConfigurations { limit: 100 }
        ));
        assert!(matches!(
            map(404, &b(404_501, "AlertRuleNotFound", "x")),
            HubError::AlertRuleNotFound { id } if id == "a1"
        ));
        assert!(matches!(
            map(404, &b(404_502, "AlertNotFound", "x")),
            HubError::AlertNotFound { id } if id == "a1"
        ));
        assert!(matches!(
            map(
                413,
                &b(
                    413_501,
                    "AlertRuleCountLimitExceeded",
                    "too many alert rules: the limit is 7, delete one first"
                )
            ),
            HubError::TooManyAlertRules { limit: 7 }
        ));
        // a hub that sends only the name
        assert!(matches!(
            map(404, r#"{"Message":"ErrorCode:AlertNotFound;gone"}"#),
            HubError::AlertNotFound { id } if id == "a1"
        ));
        assert!(matches!(
            map(409, &b(409_104, "JobAlreadyExists", "x")),
            HubError::JobAlreadyExists { job_id } if job_id == "j1"
        ));
        let e = map(
            429,
            &b(
                429_004,
                "ThrottlingMaxActiveJobCountExceeded",
                "the limit is 3",
            ),
        );
        assert!(
            matches!(e, HubError::TooManyActiveJobs { limit: 3 }),
            "{e:?}"
        );
        assert!(e.is_throttled());
        assert!(matches!(
            map(504, &b(504_101, "GatewayTimeout", "x")),
            HubError::GatewayTimeout {
                timeout_secs: 7,
                ..
            }
        ));
        match map(
            400,
            &b(
                400_004,
                "ArgumentInvalid",
                "invalid top: 0 is outside 1..=1000",
            ),
        ) {
            HubError::InvalidInput { field, message } => {
                assert_eq!(field, "top");
                assert_eq!(message, "0 is outside 1..=1000");
            }
            other => panic!("{other:?}"),
        }
        assert!(map(401, &b(401_003, "IotHubUnauthorizedAccess", "x")).is_unauthorized());
        assert!(map(403, &b(403_000, "Forbidden", "x")).is_forbidden());
        // the hub's message already carries the variant's prefix: printed once
        let e = map(
            401,
            &b(
                401_003,
                "IotHubUnauthorizedAccess",
                "unauthorized: bad signature",
            ),
        );
        assert_eq!(e.to_string(), "unauthorized: bad signature");
        let e = map(
            403,
            &b(403_000, "Forbidden", "forbidden: needs RegistryWrite"),
        );
        assert_eq!(e.to_string(), "forbidden: needs RegistryWrite");
        assert!(matches!(
            map(
                413,
                &b(
                    413_002,
                    "TooManyDevices",
                    "too many devices: 101, the limit is 100"
                )
            ),
            HubError::TooManyDevices {
                count: 101,
                limit: 100
            }
        ));
        assert!(matches!(
            map(503, &b(503_001, "ServiceUnavailable", "x")),
            HubError::Closed
        ));
        assert!(matches!(
            map(500, &b(500_001, "ServerError", "boom")),
            HubError::Remote {
                status: 500,
                code: 500_001,
                ..
            }
        ));
    }

    #[test]
    fn name_only_bodies_and_bare_statuses() {
        // IoT Hub itself sends no numeric code
        assert!(map(
            404,
            r#"{"Message":"ErrorCode:DeviceNotFound;gone","ExceptionMessage":""}"#
        )
        .is_not_found());
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "3".parse().unwrap());
        let e = from_response(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            b"",
            About::default(),
        );
        assert!(matches!(
            e,
            HubError::Throttled {
                retry_after_secs: 3
            }
        ));
        let e = from_response(
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            b"",
            About::default(),
        );
        assert!(e.is_unauthorized());
        let e = from_response(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>",
            About::default(),
        );
        assert!(matches!(
            e,
            HubError::Remote {
                status: 502,
                code: 0,
                ..
            }
        ));
    }
}
