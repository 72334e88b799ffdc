//! The WebSocket upgrade for MQTT over WebSocket (`/$iothub/websocket`, subprotocol `mqtt`).

use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use super::transport::AsyncIo;
use super::WEBSOCKET_PATH;

/// What the upgrade request asked for, and how to answer it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Upgrade {
    /// Accept; answer with `Sec-WebSocket-Protocol: mqtt` when the client offered it.
    Accept { mqtt_protocol: bool },
    /// Refuse with this status and reason.
    Refuse(StatusCode, &'static str),
}

/// Decides on an upgrade request: the path must be [`WEBSOCKET_PATH`] (any query, e.g. Java's
/// `?iothub-no-client-cert=true`, is allowed); a client offering subprotocols must offer
/// `mqtt`.
pub(crate) fn decide(path: &str, protocols: Option<&str>) -> Upgrade {
    if path != WEBSOCKET_PATH {
        return Upgrade::Refuse(
            StatusCode::NOT_FOUND,
            "MQTT over WebSocket is served at /$iothub/websocket",
        );
    }
    match protocols {
        None => Upgrade::Accept {
            mqtt_protocol: false,
        },
        Some(list)
            if list
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("mqtt")) =>
        {
            Upgrade::Accept {
                mqtt_protocol: true,
            }
        }
        Some(_) => Upgrade::Refuse(
            StatusCode::BAD_REQUEST,
            "the only WebSocket subprotocol served is mqtt",
        ),
    }
}

/// Performs the server side of the upgrade.
pub(crate) async fn accept(
    stream: Box<dyn AsyncIo>,
    max_packet_size: usize,
) -> Result<WebSocketStream<Box<dyn AsyncIo>>, tokio_tungstenite::tungstenite::Error> {
    // the signature is tungstenite's
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let protocols = req
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        match decide(req.uri().path(), protocols) {
            Upgrade::Accept { mqtt_protocol } => {
                if mqtt_protocol {
                    resp.headers_mut()
                        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
                }
                Ok(resp)
            }
            Upgrade::Refuse(status, why) => {
                tracing::debug!(path = req.uri().path(), why, "websocket upgrade refused");
                let mut err = ErrorResponse::new(Some(why.to_string()));
                *err.status_mut() = status;
                Err(err)
            }
        }
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(max_packet_size + 64))
        .max_frame_size(Some(max_packet_size + 64));
    tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_subprotocol_rules() {
        assert_eq!(
            decide("/$iothub/websocket", Some("mqtt")),
            Upgrade::Accept {
                mqtt_protocol: true
            }
        );
        assert_eq!(
            decide("/$iothub/websocket", Some("mqttv3.1, MQTT")),
            Upgrade::Accept {
                mqtt_protocol: true
            }
        );
        assert_eq!(
            decide("/$iothub/websocket", None),
            Upgrade::Accept {
                mqtt_protocol: false
            }
        );
        assert!(matches!(
            decide("/$iothub/websocket", Some("chat")),
            Upgrade::Refuse(StatusCode::BAD_REQUEST, _)
        ));
        assert!(matches!(
            decide("/mqtt", Some("mqtt")),
            Upgrade::Refuse(StatusCode::NOT_FOUND, _)
        ));
    }
}
