//! The service REST API over HTTPS: IoT Hub's data-plane routes (identity registry, twins,
//! queries, direct methods, statistics), so back ends, the official service SDKs and
//! [`ServiceClient`](crate::client::ServiceClient) manage a self-hosted [`Hub`](crate::Hub)
//! the way they manage IoT Hub, plus our lifecycle and administration routes.
//!
//! # Requests
//!
//! * Every request carries `?api-version=` with one of [`API_VERSIONS`]; a missing or unknown
//!   one is `400004 ArgumentInvalid` naming the accepted list.
//! * `Authorization: SharedAccessSignature sr={host}&sig=...&se=...&skn={policy}`, signed with
//!   a key of a shared access policy (see [`crate::access`]). Missing, malformed, expired or
//!   wrongly signed: `401003 IotHubUnauthorizedAccess`. Valid but without the right the route
//!   needs: `403000`. Over the policy's rate limit: `429001 ThrottlingException` with
//!   `Retry-After`.
//! * Bodies over [`MAX_REQUEST_BODY`] get `413001 MessageTooLarge` (artifact uploads excepted:
//!   they are streamed to disk); text that is not JSON gets
//!   `400012 DeserializationError` with serde's line and column; JSON of the wrong shape gets
//!   `400004` naming the field.
//! * Every response has a unique `x-ms-request-id`; JSON bodies are
//!   `application/json; charset=utf-8`. Errors are IoT Hub's body plus a numeric code:
//!   `{"Message":"ErrorCode:{name};{message}","ExceptionMessage":"Tracking ID:{request id}-TimeStamp:{time}","errorCode":404001}`,
//!   and the name again in the `iothub-errorcode` header.
//!
//! # IoT Hub's routes
//!
//! | route | right | answer |
//! |---|---|---|
//! | `PUT /devices/{id}` | RegistryWrite | create (no `If-Match`; `409001` if it exists) or update (`If-Match` etag or `*`) → Device |
//! | `GET /devices/{id}` | RegistryRead or RegistryWrite | Device |
//! | `DELETE /devices/{id}` | RegistryWrite | 204; `If-Match` optional |
//! | `GET /devices?top=n` | RegistryRead or RegistryWrite | `[Device]`, `x-ms-continuation` both ways |
//! | `POST /devices` | RegistryWrite | bulk of ≤ 100 `ExportImportDevice` → 200 (all succeeded) or 400 with the result |
//! | `POST /devices/query` | RegistryRead or ServiceConnect | rows; `x-ms-max-item-count`, `x-ms-continuation`, `x-ms-item-type` |
//! | `GET /twins/{id}` | RegistryRead or ServiceConnect | Twin |
//! | `PATCH /twins/{id}`, `PUT /twins/{id}` | ServiceConnect | merge or replace tags and desired properties → Twin |
//! | `POST /twins/{id}/methods` | ServiceConnect | `{"status","payload"}`; `404103` not online, `504101` timeout |
//! | `GET /statistics/devices` | RegistryRead or RegistryWrite | device counts |
//! | `GET /statistics/service` | RegistryRead or ServiceConnect | connected devices |
//! | `PUT /configurations/{id}` | RegistryWrite | create (no `If-Match`: 201, `409401` if it exists) or update (`If-Match` etag or `*`: 200; `400403` for a content change) → Configuration |
//! | `GET /configurations/{id}`, `GET /configurations?top=n` | RegistryRead or RegistryWrite | Configuration with its metrics, `[Configuration]` |
//! | `DELETE /configurations/{id}` | RegistryWrite | 204; `If-Match` optional |
//! | `POST /configurations/testQueries` | RegistryRead or RegistryWrite | `{targetConditionError, customMetricQueryErrors}` |
//!
//! # Our routes (IoT Hub has none)
//!
//! | route | right | answer |
//! |---|---|---|
//! | `POST /devices/{id}/plan` | RegistryWrite | plan with optional tags and desired properties → Twin |
//! | `POST /devices/{id}/provision` | RegistryWrite | issue credentials (optional `authentication`) → Device |
//! | `POST /devices/{id}/enable`, `/disable`, `/retire` | RegistryWrite | → Device (`disable` takes `{"reason"}`) |
//! | `POST /devices/{id}/replace` | RegistryWrite | a successor `{"deviceId","authentication"?}` takes over the retired device's twin → Device |
//! | `POST /devices/{id}/keys/regenerate` | RegistryWrite | `{"key":"primary"|"secondary"|"swap"}` → Device |
//! | `GET /archive/twins/{id}`, `POST /archive/query` | RegistryRead or ServiceConnect | archived twins of retired devices |
//! | `GET /policies`, `PUT/DELETE /policies/{name}`, `POST /policies/{name}/keys/regenerate` | all four rights | shared access policies |
//! | `GET /artifacts`, `POST /artifacts`, `PUT /artifacts/{sha256}`, `DELETE /artifacts/{sha256}` | list: RegistryRead or RegistryWrite; upload (streamed, up to the hub's `max_artifact_size`) and delete: RegistryWrite | firmware images by SHA-256 (see [`crate::artifacts`]) |
//! | `GET /artifacts/{sha256}`, `HEAD /artifacts/{sha256}` | the device's own SAS token, or RegistryRead or RegistryWrite | the image, with `Range` (206, 416) |
//! | `GET /events` | RegistryRead or ServiceConnect (telemetry: ServiceConnect) | the hub's event stream as Server-Sent Events (`types`, `devices`, `limit`, `timeout`, `Last-Event-ID`; see [`hub::EventCursor`](crate::hub::EventCursor)) |
//!
//! The whole API is described in OpenAPI 3 in `openapi/iot-dm.yaml` at the repository root;
//! [`routes`] lists the routes the server serves.
//!
//! # Performance
//!
//! `cargo bench --bench rest` at the workspace root measures the endpoint on loopback through
//! [`ServiceClient`](crate::client::ServiceClient) (keep-alive TLS connections) with an
//! in-memory hub: twin reads and updates one at a time, reads with 16 in flight, and the same
//! read on the embedded hub (measured figures: `benches/README.md`). One client can make more
//! requests per second than the built-in policies' default rate limit (2,000 requests/s each)
//! allows: give a busy back end a policy of its own.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use iot_dm_service::rest::RestServer;
//! use iot_dm_service::tls::dev_certs::DevCerts;
//! use iot_dm_service::Hub;
//!
//! let hub = Hub::builder().in_memory().open().await?;
//! let certs = DevCerts::generate()?;
//! let server = RestServer::builder(hub)
//!     .listen("127.0.0.1:0".parse()?)
//!     .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
//!     .start()
//!     .await?;
//! assert_ne!(server.local_addr().port(), 0);
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod context;
mod error;
mod handlers;
pub(crate) mod router;
mod server;
mod service;
mod stream;

pub use error::RestError;
pub use router::{routes, RouteInfo};
pub use server::{RestServer, RestServerBuilder};

/// Largest request body: 256 KiB (direct-method payloads are further limited to 128 KiB).
pub const MAX_REQUEST_BODY: usize = 256 * 1024;

/// The default most open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The `api-version` values accepted: those of IoT Hub's service API that the official service
/// SDKs send.
pub const API_VERSIONS: &[&str] = &[
    "2016-11-14",
    "2017-06-30",
    "2018-06-30",
    "2019-03-30",
    "2019-10-01",
    "2020-03-13",
    "2020-05-31-preview",
    "2020-06-30",
    "2020-09-30",
    "2021-04-12",
    "2021-11-30",
];

/// The `api-version` [`ServiceClient`](crate::client::ServiceClient) sends.
pub use crate::api::API_VERSION;
