//! Errors of the REST endpoint: the error a request ends with ([`ApiError`], answered in IoT
//! Hub's error body) and why the server could not start ([`RestError`]).

use std::net::SocketAddr;

use http::StatusCode;

use crate::tls::TlsError;
use crate::HubError;

/// Why the REST server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestError {
    /// The TLS certificate or key could not be read or used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Binding or listening on the address failed.
    #[error("rest listener at {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// The error a request ends with: an HTTP status, IoT Hub's six-digit code and name, a message,
/// and for 429 the seconds to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: u32,
    pub(crate) name: &'static str,
    pub(crate) message: String,
    pub(crate) retry_after_secs: Option<u64>,
    /// The methods the path accepts (405 only).
    pub(crate) allow: Option<String>,
}

impl ApiError {
    pub(crate) fn new(code: u32, name: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(u16::try_from(code / 1000).unwrap_or(500))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            name,
            message: message.into(),
            retry_after_secs: None,
            allow: None,
        }
    }

    /// 400012: a body that is not the JSON the route expects.
    pub(crate) fn deserialization(what: &str, e: &serde_json::Error) -> ApiError {
        ApiError::new(
            400_012,
            "DeserializationError",
            format!("the request body is not a valid {what}: {e}"),
        )
    }

    /// 400004: an argument (header, query parameter, path segment) is invalid.
    pub(crate) fn argument(field: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            400_004,
            "ArgumentInvalid",
            format!("invalid {field}: {message}"),
        )
    }

    pub(crate) fn not_found_route(method: &http::Method, path: &str) -> ApiError {
        ApiError::new(
            404_000,
            "ResourceNotFound",
            format!("no route for {method} {path}"),
        )
    }

    pub(crate) fn method_not_allowed(method: &http::Method, path: &str, allow: String) -> ApiError {
        let mut e = ApiError::new(
            405_000,
            "MethodNotAllowed",
            format!("{method} is not allowed on {path}; allowed: {allow}"),
        );
        e.allow = Some(allow);
        e
    }

    /// The JSON error body (IoT Hub's shape plus the numeric `errorCode`).
    ///
    /// The human message carries no `;`: the Node service SDK splits `Message` on every `;`
    /// and shows only the text between the first and the second one.
    pub(crate) fn body(&self, request_id: &str, now: iot_dm_core::clock::Timestamp) -> Vec<u8> {
        let body = serde_json::json!({
            "Message": format!("ErrorCode:{};{}", self.name, self.message.replace(';', ",")),
            "ExceptionMessage": format!("Tracking ID:{request_id}-TimeStamp:{now}"),
            "errorCode": self.code,
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        let mut api = ApiError::new(e.code(), e.code_name(), e.to_string());
        if let HubError::Throttled { retry_after_secs } = e {
            api.retry_after_secs = Some(retry_after_secs.max(1));
        }
        if api.status.is_server_error() {
            tracing::warn!(code = api.code, error = %api.message, "request failed");
        }
        api
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_errors_keep_their_codes_and_throttling_its_delay() {
        let e = ApiError::from(HubError::not_found("d1"));
        assert_eq!(
            (e.status.as_u16(), e.code, e.name),
            (404, 404_001, "DeviceNotFound")
        );
        let e = ApiError::from(HubError::Throttled {
            retry_after_secs: 0,
        });
        assert_eq!((e.status.as_u16(), e.retry_after_secs), (429, Some(1)));
    }

    #[test]
    fn body_has_iot_hubs_shape() {
        let e = ApiError::argument("api-version", "missing");
        let body: serde_json::Value = serde_json::from_slice(
            &e.body("rid-1", iot_dm_core::clock::Timestamp::from_unix_secs(0)),
        )
        .unwrap();
        assert_eq!(body["errorCode"], 400_004);
        assert_eq!(
            body["Message"],
            "ErrorCode:ArgumentInvalid;invalid api-version: missing"
        );
        assert!(body["ExceptionMessage"]
            .as_str()
            .unwrap()
            .starts_with("Tracking ID:rid-1-TimeStamp:1970-01-01T00:00:00"));
    }

    #[test]
    fn message_has_one_semicolon_after_the_code_name() {
        let e = ApiError::new(
            403_000,
            "Forbidden",
            "needs [RegistryWrite]; has [RegistryRead]",
        );
        let body: serde_json::Value = serde_json::from_slice(
            &e.body("rid", iot_dm_core::clock::Timestamp::from_unix_secs(0)),
        )
        .unwrap();
        assert_eq!(
            body["Message"],
            "ErrorCode:Forbidden;needs [RegistryWrite], has [RegistryRead]"
        );
    }

    #[test]
    fn serde_errors_carry_line_and_column() {
        let err = serde_json::from_str::<serde_json::Value>("{\n  \"a\": }").unwrap_err();
        let e = ApiError::deserialization("device", &err);
        assert_eq!(e.code, 400_012);
        assert!(e.message.contains("line 2 column"), "{}", e.message);
    }
}
