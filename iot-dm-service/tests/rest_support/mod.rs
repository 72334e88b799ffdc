//! A hub served over HTTPS on 127.0.0.1 with development certificates, and a raw HTTP/1.1
//! client over one keep-alive TLS connection for exact requests.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::Mutex;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::wire::ServiceConnectionString;
use iot_dm_service::client::ServiceClient;
use iot_dm_service::rest::RestServer;
use iot_dm_service::tls::dev_certs::DevCerts;
use iot_dm_service::Hub;

pub const HOST: &str = "localhost";
pub const API: &str = "api-version=2021-04-12";

pub struct Served {
    pub hub: Hub,
    pub server: Option<RestServer>,
    pub certs: DevCerts,
    port: u16,
    conn: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The numeric IoT Hub error code of an error body.
    pub fn code(&self) -> u64 {
        self.json()["errorCode"].as_u64().unwrap_or(0)
    }

    pub fn message(&self) -> String {
        self.json()["Message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, String::from_utf8_lossy(&self.body))
    }
}

impl Served {
    pub async fn start() -> Served {
        Served::start_with(Hub::builder().host_name(HOST).open().await.unwrap(), None).await
    }

    pub async fn start_with(hub: Hub, max_body: Option<usize>) -> Served {
        let certs = DevCerts::generate().unwrap();
        let mut b = RestServer::builder(hub.clone())
            .listen("127.0.0.1:0".parse().unwrap())
            .tls_pem(certs.server_cert_pem(), certs.server_key_pem());
        if let Some(m) = max_body {
            b = b.max_body(m);
        }
        let server = b.start().await.unwrap();
        let port = server.local_addr().port();
        Served {
            hub,
            server: Some(server),
            certs,
            port,
            conn: Mutex::new(None),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A token of `policy` valid for an hour.
    pub fn token(&self, policy: &str) -> String {
        self.token_until(policy, Timestamp::now() + Duration::from_secs(3600))
    }

    pub fn token_until(&self, policy: &str, expiry: Timestamp) -> String {
        let cs =
            ServiceConnectionString::parse(&self.hub.service_connection_string(policy).unwrap())
                .unwrap();
        cs.sas_token(expiry).as_str().to_string()
    }

    /// A client of `policy` trusting the development CA.
    pub fn client(&self, policy: &str) -> ServiceClient {
        ServiceClient::builder(&self.hub.service_connection_string(policy).unwrap())
            .unwrap()
            .ca_pem(self.certs.ca_pem())
            .port(self.port)
            .build()
            .unwrap()
    }

    async fn connect(&self) -> SendRequest<Full<Bytes>> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let config = self.certs.client_config().unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&config))
            .connect(rustls::pki_types::ServerName::try_from(HOST).unwrap(), tcp)
            .await
            .unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        sender
    }

    /// One request with exactly these headers (plus Host and Content-Length).
    pub async fn raw(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut guard = self.conn.lock().await;
        let mut sender = match guard.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await,
        };
        if sender.ready().await.is_err() {
            sender = self.connect().await;
        }
        let mut req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", HOST);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = tokio::time::timeout(
            Duration::from_secs(20),
            sender.send_request(req.body(Full::new(body.into())).unwrap()),
        )
        .await
        .expect("answer within 20 s")
        .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        if !sender.is_closed() {
            *guard = Some(sender);
        }
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// A request signed with `policy`'s token; JSON body when given.
    pub async fn call(
        &self,
        policy: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let token = self.token(policy);
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{path}{sep}{API}");
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.raw(
            method,
            &url,
            &[
                ("authorization", &token),
                ("content-type", "application/json; charset=utf-8"),
            ],
            body,
        )
        .await
    }
}

/// Connects `device_id` (created with generated keys) through the hub's in-process endpoint
/// and answers every direct method with status 200 and the request's payload as
/// `{"echo": payload}`, until the hub closes the session.
pub async fn echo_device(hub: &Hub, device_id: &str) {
    use iot_dm_core::link::{ConnectRequest, Credentials, DeviceFrame, Endpoint as _, Message};
    use iot_dm_core::wire::{self, RequestId, SasToken, SymmetricKey};
    use iot_dm_service::hub::DeviceSpec;

    let device = hub
        .create_device(DeviceSpec::new(device_id.parse().unwrap()))
        .await
        .unwrap();
    let key = SymmetricKey::new(device.symmetric_key.primary_key.unwrap()).unwrap();
    let uri = wire::device_resource_uri(hub.host_name(), &device.device_id);
    let token = SasToken::generate(
        &uri,
        &key,
        Timestamp::now() + Duration::from_secs(3600),
        None,
    );
    let mut link = hub
        .connect(ConnectRequest {
            device_id: device.device_id.clone(),
            module_id: None,
            credentials: Credentials::Sas(token.as_str().to_string()),
            clean_session: true,
        })
        .await
        .unwrap();
    link.tx
        .send(DeviceFrame::Subscribe(vec![
            wire::topic::TWIN_RESPONSE_FILTER.to_string(),
            wire::topic::METHOD_REQUEST_FILTER.to_string(),
        ]))
        .await
        .unwrap();
    // a twin round trip: once it is answered the subscriptions are in place
    let rid = RequestId::new("1").unwrap();
    link.tx
        .send(DeviceFrame::Publish(Message::new(
            wire::topic::twin_get(&rid),
            "",
        )))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), link.rx.recv())
        .await
        .unwrap()
        .unwrap();
    tokio::spawn(async move {
        while let Some(m) = link.rx.recv().await {
            if let Some(rid) = m.topic.strip_prefix("$iothub/methods/POST/") {
                let rid = rid.rsplit("$rid=").next().unwrap_or_default().to_string();
                let payload: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                let answer = serde_json::json!({ "echo": payload }).to_string();
                let topic = format!("$iothub/methods/res/200/?$rid={rid}");
                if link
                    .tx
                    .send(DeviceFrame::Publish(Message::new(topic, answer)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    });
}

/// Creates device `id` on the served hub.
pub async fn create_device(s: &Served, id: &str) {
    s.hub
        .create_device(iot_dm_service::hub::DeviceSpec::new(id.parse().unwrap()))
        .await
        .unwrap();
}
