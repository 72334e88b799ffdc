//! One hub per process, served on 127.0.0.1 over plain MQTT and plain HTTP, with a registered
//! device and a valid owner token, for the targets that go through sockets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use iot_dm::core::clock::Timestamp;
use iot_dm::core::wire::{self, SasToken, ServiceConnectionString, SymmetricKey};
use iot_dm::service::access::{AccessPolicy, Rights};
use iot_dm::service::api::AccessApi;
use iot_dm::service::hub::DeviceSpec;
use iot_dm::service::mqtt::Listener;
use iot_dm::service::{Hub, HubServer};
use rumqttc::mqttbytes::v4::{Connect, Packet};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// The hub's host name (what device tokens are signed for).
pub const HOST: &str = "fuzz.example";
/// The device the session targets connect as.
pub const DEVICE: &str = "fuzz-device";
/// How long one input may keep a connection before the target gives up on it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Fixture {
    pub runtime: Runtime,
    pub server: HubServer,
    pub mqtt: SocketAddr,
    pub rest: SocketAddr,
    /// A valid CONNECT for [`DEVICE`], encoded.
    pub connect: Vec<u8>,
    /// A valid CONNECT for a device no input can name (its id is random), for the health
    /// check: the REST targets may delete or disable [`DEVICE`].
    pub health_connect: Vec<u8>,
    /// A valid `SharedAccessSignature ...` of the `iothubowner` policy.
    pub owner_token: String,
    /// A token of a policy no input can name, for the health check: the REST targets may
    /// change the owner policy's keys.
    pub health_token: String,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();
static PANICKED: AtomicBool = AtomicBool::new(false);
static INPUTS: AtomicU64 = AtomicU64::new(0);

/// The process's fixture, started on first use.
pub fn get() -> &'static Fixture {
    FIXTURE.get_or_init(start)
}

/// Whether any thread panicked since the process started: the corpus replay's check, as a
/// panic in one of the hub's tasks does not reach the caller (under libFuzzer the panic hook
/// aborts the process instead).
pub fn panicked() -> bool {
    PANICKED.load(Ordering::SeqCst)
}

fn watch_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn start() -> Fixture {
    watch_panics();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (server, connect, health_connect, owner_token, health_token) = runtime.block_on(async {
        let hub = Hub::builder()
            .host_name(HOST)
            .open()
            .await
            .expect("an in-memory hub");
        let far = Timestamp::now() + Duration::from_secs(30 * 24 * 3600);
        let connect = connect_of(&hub, DEVICE, far).await;
        let health = format!("health-{:016x}", random_u64());
        let health_connect = connect_of(&hub, &health, far).await;
        let owner = token_of(&hub, "iothubowner", far).await;
        let watcher = format!("health-{health}");
        hub.put_access_policy(AccessPolicy::new(&watcher, Rights::REGISTRY_READ))
            .await
            .expect("the health policy");
        let health_token = token_of(&hub, &watcher, far).await;
        let server = HubServer::builder(hub)
            .mqtt_listen(Listener::Tcp, loopback())
            .rest_listen(loopback())
            .start()
            .await
            .expect("the server starts");
        (server, connect, health_connect, owner, health_token)
    });
    let mqtt = server.mqtt_addr(Listener::Tcp).expect("the MQTT listener");
    let rest = server.rest_addr().expect("the REST listener");
    Fixture {
        runtime,
        server,
        mqtt,
        rest,
        connect,
        health_connect,
        owner_token,
        health_token,
    }
}

/// A token of `policy`, valid until `expiry`.
async fn token_of(hub: &Hub, policy: &str, expiry: Timestamp) -> String {
    let cs = AccessApi::service_connection_string(hub, policy)
        .await
        .expect("the policy");
    ServiceConnectionString::parse(&cs)
        .expect("a connection string")
        .sas_token(expiry)
        .as_str()
        .to_string()
}

/// Registers `id` and returns a valid CONNECT for it, encoded.
async fn connect_of(hub: &Hub, id: &str, expiry: Timestamp) -> Vec<u8> {
    let device = hub
        .create_device(DeviceSpec::new(id.parse().expect("a device id")))
        .await
        .expect("the device");
    let key = device
        .authentication()
        .symmetric_key
        .primary_key
        .clone()
        .expect("a generated key");
    let key = SymmetricKey::new(key).expect("a valid key");
    let token = SasToken::generate(
        &wire::device_resource_uri(HOST, &device.device_id),
        &key,
        expiry,
        None,
    );
    let mut c = Connect::new(id);
    c.keep_alive = 60;
    c.set_login(
        format!("{HOST}/{id}/?api-version=2021-04-12"),
        token.as_str(),
    );
    let mut out = BytesMut::new();
    Packet::Connect(c)
        .write(&mut out, usize::MAX)
        .expect("CONNECT encodes");
    out.to_vec()
}

/// A random number from the standard library's randomly keyed hasher.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Writes `bytes` to a new connection to `addr`, closes the sending side, and returns what the
/// hub sent until it closed. `None` when the connection was reset (what was in flight may be
/// lost then) or did not close within [`IO_TIMEOUT`].
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await.expect("the hub accepts");
    let _ = s.set_nodelay(true);
    let io = async {
        // the hub may close before reading everything: that is an answer too
        let _ = s.write_all(bytes).await;
        let _ = s.shutdown().await;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok().map(|_| out)
    };
    tokio::time::timeout(IO_TIMEOUT, io).await.ok().flatten()
}

/// Sends an HTTP request on a new connection to `addr` and returns the first response (head
/// and body, as its `content-length` or chunking says), or what came before the server closed.
/// When nothing comes back within 30 ms (an incomplete request), the sending side is closed,
/// which ends the request. `None` when the connection was reset or nothing ended within
/// [`IO_TIMEOUT`].
pub async fn http_exchange(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await.expect("the hub accepts");
    let _ = s.set_nodelay(true);
    let io = async {
        let _ = s.write_all(bytes).await;
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut closed_ours = false;
        loop {
            if let Some(n) = response_len(&out) {
                out.truncate(n);
                return Some(out);
            }
            let read = if closed_ours || !out.is_empty() {
                s.read(&mut chunk).await
            } else {
                match tokio::time::timeout(Duration::from_millis(30), s.read(&mut chunk)).await {
                    Ok(r) => r,
                    Err(_) => {
                        closed_ours = true;
                        let _ = s.shutdown().await;
                        continue;
                    }
                }
            };
            match read {
                Ok(0) => return Some(out),
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(IO_TIMEOUT, io).await.ok().flatten()
}

/// The length of the first whole HTTP response in `buf`, once it is all there.
fn response_len(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        let body = &buf[head_end..];
        return body
            .windows(5)
            .position(|w| w == b"0\r\n\r\n")
            .map(|at| head_end + at + 5);
    }
    let length = match header("content-length:") {
        Some(v) => v.parse::<usize>().ok()?,
        None if head.starts_with("http/1.1 1")
            || head.contains(" 204 ")
            || head.contains(" 304 ") =>
        {
            0
        }
        // no length: the body runs to the close
        None => return None,
    };
    (buf.len() >= head_end + length).then_some(head_end + length)
}

/// Counts one input; every 256th, checks that the hub still serves a device and a back end
/// (a failure here means an earlier input broke it for everyone).
pub fn count_input(f: &Fixture) {
    let n = INPUTS.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_multiple_of(256) {
        assert_serviceable(f);
    }
}

/// Panics unless a valid CONNECT is accepted and `GET /statistics/service` answers 200 (for
/// the device and the policy no input can name).
pub fn assert_serviceable(f: &Fixture) {
    f.runtime.block_on(async {
        let mut s = TcpStream::connect(f.mqtt).await.expect("the hub accepts");
        s.write_all(&f.health_connect).await.expect("CONNECT sent");
        let mut ack = [0u8; 4];
        tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut ack))
            .await
            .expect("a CONNACK in time")
            .expect("a CONNACK");
        assert_eq!(ack, [0x20, 2, 0, 0], "a valid device is accepted");
        let request = format!(
            "GET /statistics/service?api-version=2021-04-12 HTTP/1.1\r\nhost: {HOST}\r\n\
             authorization: {}\r\nconnection: close\r\n\r\n",
            f.health_token
        );
        let answer = http_exchange(f.rest, request.as_bytes())
            .await
            .expect("a REST answer in time");
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "the REST API serves: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
    });
}
