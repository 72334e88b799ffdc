//! Transport tests: option building without I/O, then real sockets against a minimal MQTT
//! peer on 127.0.0.1.

mod link;
mod peer;

use std::time::Duration;

use rumqttc::{ConnectReturnCode, Transport as RumqttTransport};

use iot_dm_core::identity::{DeviceId, ModuleId};
use iot_dm_core::link::{ConnectRefused, ConnectRequest, Credentials};

use super::connection::{connack_error, subscription_qos};
use super::{MqttTransport, DEFAULT_MAX_PACKET_SIZE, DEFAULT_PORT, DEFAULT_WEBSOCKET_PORT};
use crate::error::{Error, TransportError};

/// A throwaway self-signed test certificate (EC P-256) and its key; it secures nothing.
pub(crate) const TEST_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBkTCCATegAwIBAgIURGOn9Oh2CzKcCLl1DY7LnXph0uEwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSaW90LWRtIHRlc3QgZGV2aWNlMCAXDTI2MTEyNjEzMzQxMVoY
DzIxMjYxMTAyMTMzNDExWjAdMRswGQYDVQQDDBJpb3QtZG0gdGVzdCBkZXZpY2Uw
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQEu9pY/y1kftEE9gZzY4SQ0wHgeGxw
P4KuS2R6LFEKPxELcDkMC71fsolWOa+9FOhjoJxwj7T/xGdaVIFZlS+co1MwUTAd
BgNVHQ4EFgQUcUfDDTgOVBWixiELKM4pjwSPgU4wHwYDVR0jBBgwFoAUcUfDDTgO
VBWixiELKM4pjwSPgU4wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBF
AiEApgcpQ/Q5UJcTBqeslqwdN91fDYPDsDxyzEJafoXfPqcCIE9xUN0I9rQEv5jI
0hBk/30JXeuFPMFMWh/0jl9BwSC2
-----END CERTIFICATE-----
";
/// The private key of [`TEST_CERT_PEM`] (PKCS#8).
pub(crate) const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgA1rDHQwWqtrAFdI7
Pl4/4ZxRUFyCBdNxN5qT43ycyEahRANCAAQEu9pY/y1kftEE9gZzY4SQ0wHgeGxw
P4KuS2R6LFEKPxELcDkMC71fsolWOa+9FOhjoJxwj7T/xGdaVIFZlS+c
-----END PRIVATE KEY-----
";

pub(crate) fn request(credentials: Credentials) -> ConnectRequest {
    ConnectRequest {
        device_id: DeviceId::new("dev-1").unwrap(),
        module_id: None,
        credentials,
        clean_session: false,
    }
}

fn sas() -> Credentials {
    Credentials::Sas("SharedAccessSignature sr=hub.test%2Fdevices%2Fdev-1&sig=abc&se=1".into())
}

fn x509() -> Credentials {
    Credentials::X509 {
        sha1: "AA".into(),
        sha256: "BB".into(),
    }
}

fn config_field(err: Error) -> &'static str {
    match err {
        Error::Config { field, .. } => field,
        other => panic!("not a config error: {other:?}"),
    }
}

#[test]
fn options_for_a_device_with_sas() {
    let t = MqttTransport::builder("hub.test")
        .ca_pem(TEST_CERT_PEM)
        .keep_alive(Duration::from_secs(90))
        .device_client_type("agent/1.0 (test)")
        .build()
        .unwrap();
    assert_eq!(t.port(), DEFAULT_PORT);
    assert!(t.is_tls() && !t.is_websocket());
    let mut req = request(sas());
    req.clean_session = true;
    let opts = t.settings.mqtt_options(&req).unwrap();
    assert_eq!(opts.client_id(), "dev-1");
    assert_eq!(opts.broker_address(), ("hub.test".to_string(), 8883));
    assert_eq!(opts.keep_alive(), Duration::from_secs(90));
    assert!(opts.clean_session());
    assert!(opts.manual_acks());
    assert_eq!(opts.max_packet_size(), DEFAULT_MAX_PACKET_SIZE);
    let login = opts.credentials().unwrap();
    assert_eq!(
        login.username,
        "hub.test/dev-1/?api-version=2021-04-12&DeviceClientType=agent%2F1.0%20%28test%29"
    );
    assert!(login.password.starts_with("SharedAccessSignature sr="));
    assert!(matches!(
        opts.transport(),
        RumqttTransport::Tls(rumqttc::TlsConfiguration::Rustls(_))
    ));
}

#[test]
fn options_for_a_module_with_a_certificate_send_no_password() {
    let t = MqttTransport::builder("hub.test")
        .ca_pem(TEST_CERT_PEM)
        .client_certificate_pem(TEST_CERT_PEM, TEST_KEY_PEM)
        .model_id("dtmi:com:example:Thermostat;1")
        .build()
        .unwrap();
    let mut req = request(x509());
    req.module_id = Some(ModuleId::new("filter").unwrap());
    let opts = t.settings.mqtt_options(&req).unwrap();
    assert_eq!(opts.client_id(), "dev-1/filter");
    assert!(!opts.clean_session());
    let login = opts.credentials().unwrap();
    assert!(
        login.username.starts_with(
            "hub.test/dev-1/filter/?api-version=2021-04-12&DeviceClientType=iot-dm-device%2F"
        ),
        "{}",
        login.username
    );
    assert!(login
        .username
        .ends_with("&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1"));
    assert_eq!(login.password, "", "X.509 sends no password");
    assert_eq!(t.username(&req).unwrap(), login.username);
}

#[test]
fn x509_credentials_need_a_client_certificate() {
    let t = MqttTransport::builder("hub.test")
        .without_tls()
        .build()
        .unwrap();
    match t.settings.mqtt_options(&request(x509())) {
        Err(TransportError::Config { field, .. }) => assert_eq!(field, "client certificate"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // no credentials at all: no password either
    let opts = t
        .settings
        .mqtt_options(&request(Credentials::None))
        .unwrap();
    assert_eq!(opts.credentials().unwrap().password, "");
    assert!(matches!(opts.transport(), RumqttTransport::Tcp));
}

#[test]
fn websocket_urls_and_ports() {
    let t = MqttTransport::builder("hub.test")
        .ca_pem(TEST_CERT_PEM)
        .websocket(true)
        .build()
        .unwrap();
    assert_eq!(t.port(), DEFAULT_WEBSOCKET_PORT);
    assert_eq!(t.endpoint(), "wss://hub.test:443/$iothub/websocket");
    let opts = t.settings.mqtt_options(&request(sas())).unwrap();
    assert_eq!(
        opts.broker_address().0,
        "wss://hub.test:443/$iothub/websocket"
    );
    assert!(matches!(opts.transport(), RumqttTransport::Wss(_)));

    let t = MqttTransport::builder("::1")
        .without_tls()
        .websocket(true)
        .port(8080)
        .build()
        .unwrap();
    assert_eq!(t.endpoint(), "ws://[::1]:8080/$iothub/websocket");
    let opts = t.settings.mqtt_options(&request(sas())).unwrap();
    assert!(matches!(opts.transport(), RumqttTransport::Ws));
}

#[test]
fn builder_rejects_bad_options_naming_the_field() {
    let b = || MqttTransport::builder("hub.test").without_tls();
    let cases: Vec<(Result<MqttTransport, Error>, &str)> = vec![
        (
            MqttTransport::builder("").without_tls().build(),
            "host name",
        ),
        (
            MqttTransport::builder("hub.test/x").without_tls().build(),
            "host name",
        ),
        (b().port(0).build(), "port"),
        (
            b().keep_alive(Duration::from_millis(10)).build(),
            "keep alive",
        ),
        (
            b().keep_alive(Duration::from_secs(70_000)).build(),
            "keep alive",
        ),
        (b().max_packet_size(100).build(), "max packet size"),
        (b().ack_timeout(Duration::ZERO).build(), "ack timeout"),
        (
            b().network_timeout(Duration::ZERO).build(),
            "network timeout",
        ),
        (
            b().client_certificate_pem(TEST_CERT_PEM, TEST_KEY_PEM)
                .build(),
            "client certificate",
        ),
        (
            MqttTransport::builder("hub.test").ca_pem("not pem").build(),
            "ca pem",
        ),
        (
            MqttTransport::builder("hub.test")
                .ca_pem(TEST_CERT_PEM)
                .client_certificate_pem(TEST_CERT_PEM, "no key here")
                .build(),
            "client certificate key",
        ),
        (
            MqttTransport::builder("hub.test")
                .ca_pem(TEST_CERT_PEM)
                .client_certificate_pem("", TEST_KEY_PEM)
                .build(),
            "client certificate",
        ),
    ];
    for (i, (result, field)) in cases.into_iter().enumerate() {
        assert_eq!(config_field(result.unwrap_err()), field, "case {i}");
    }
    // zero keep-alive (off) is allowed
    assert!(b().keep_alive(Duration::ZERO).build().is_ok());
}

#[test]
fn debug_output_hides_secrets() {
    let b = MqttTransport::builder("hub.test")
        .ca_pem(TEST_CERT_PEM)
        .client_certificate_pem(TEST_CERT_PEM, TEST_KEY_PEM);
    assert!(!format!("{b:?}").contains("PRIVATE KEY"));
    let t = b.build().unwrap();
    let shown = format!("{t:?}");
    assert!(shown.contains("hub.test:8883"), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"));
}

#[test]
fn connack_codes_map_to_transport_errors() {
    for code in [
        ConnectReturnCode::NotAuthorized,
        ConnectReturnCode::BadUserNamePassword,
        ConnectReturnCode::BadClientId,
    ] {
        let e = connack_error(code);
        assert!(e.is_not_authorized(), "{code:?}: {e}");
        assert!(!Error::from(e).is_retryable(), "{code:?}");
    }
    let e = connack_error(ConnectReturnCode::ServiceUnavailable);
    assert!(matches!(
        e,
        TransportError::Refused(ConnectRefused::ServerUnavailable { .. })
    ));
    assert!(Error::from(e).is_retryable());
    assert!(matches!(
        connack_error(ConnectReturnCode::RefusedProtocolVersion),
        TransportError::Protocol { .. }
    ));
}

#[test]
fn subscriptions_qos() {
    use rumqttc::QoS;
    assert_eq!(subscription_qos("$iothub/twin/res/#"), QoS::AtMostOnce);
    assert_eq!(subscription_qos("$iothub/methods/POST/#"), QoS::AtMostOnce);
    assert_eq!(
        subscription_qos("devices/d1/messages/devicebound/#"),
        QoS::AtLeastOnce
    );
    assert_eq!(
        subscription_qos("devices/d1/modules/m1/inputs/#"),
        QoS::AtLeastOnce
    );
}
