//! A small HTTPS file server on 127.0.0.1 for the firmware tests: one image, `Range`
//! requests, and a switch that cuts or stalls the next response part-way.

use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// One request the server answered.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub(crate) path: String,
    pub(crate) range: Option<String>,
    pub(crate) authorization: Option<String>,
    pub(crate) status: u16,
    /// The first byte sent.
    pub(crate) from: u64,
    /// How many bytes of the image were sent.
    pub(crate) sent: u64,
}

#[derive(Clone, Copy, Debug)]
enum Then {
    End,
    Fail,
    Stall,
}

#[derive(Default)]
struct Shared {
    image: Vec<u8>,
    log: Vec<Served>,
    /// Cut (`Fail`) or stall the next response after this many bytes.
    next: Option<(u64, Then)>,
}

/// The server; it stops with the test's runtime.
#[derive(Clone)]
pub(crate) struct FileServer {
    port: u16,
    ca_pem: String,
    shared: Arc<Mutex<Shared>>,
}

struct TestBody {
    chunk: Option<Bytes>,
    then: Then,
    /// For `Fail`: the pause between the chunk and the failure, so the chunk is flushed.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(chunk) = self.chunk.take() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match self.then {
            Then::End => Poll::Ready(None),
            Then::Fail => {
                let pause = self.pause.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep(std::time::Duration::from_millis(300)))
                });
                match pause.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(std::io::Error::other("cut by the test"))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            Then::Stall => Poll::Pending,
        }
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "firmware test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
}

impl FileServer {
    /// Serves `image` at every path.
    pub(crate) async fn start(image: Vec<u8>) -> FileServer {
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params().self_signed(&ca_key).unwrap();
        let ca_pem = ca.pem();
        let issuer = Issuer::new(ca_params(), ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared {
            image,
            ..Shared::default()
        }));
        let server = FileServer {
            port,
            ca_pem,
            shared: shared.clone(),
        };
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(answer(&shared, &req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        server
    }

    /// The PEM of the CA the server's certificate is signed by.
    pub(crate) fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The URL of artifact `name`.
    pub(crate) fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/artifacts/{name}", self.port)
    }

    /// The next response breaks off after `bytes` bytes of the image.
    pub(crate) fn cut_next_after(&self, bytes: u64) {
        self.shared.lock().unwrap().next = Some((bytes, Then::Fail));
    }

    /// The next response sends `bytes` bytes of the image, then nothing more.
    pub(crate) fn stall_next_after(&self, bytes: u64) {
        self.shared.lock().unwrap().next = Some((bytes, Then::Stall));
    }

    /// Every request answered so far.
    pub(crate) fn served(&self) -> Vec<Served> {
        self.shared.lock().unwrap().log.clone()
    }
}

fn answer(shared: &Mutex<Shared>, req: &Request<Incoming>) -> Response<TestBody> {
    let mut s = shared.lock().unwrap();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let range = header("range");
    let len = u64::try_from(s.image.len()).unwrap();
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let mut served = Served {
        path: req.uri().path().to_string(),
        range: range.clone(),
        authorization: header("authorization"),
        status: 200,
        from,
        sent: 0,
    };
    if from >= len {
        served.status = 416;
        s.log.push(served);
        let mut r = Response::new(TestBody {
            chunk: None,
            then: Then::End,
            pause: None,
        });
        *r.status_mut() = hyper::StatusCode::RANGE_NOT_SATISFIABLE;
        return r;
    }
    let (limit, then) = match s.next.take() {
        Some((n, then)) => (n.min(len - from), then),
        None => (len - from, Then::End),
    };
    let start = usize::try_from(from).unwrap();
    let end = usize::try_from(from + limit).unwrap();
    let chunk = Bytes::copy_from_slice(&s.image[start..end]);
    served.sent = limit;
    let mut builder = Response::builder().header("content-length", (len - from).to_string());
    if range.is_some() {
        served.status = 206;
        builder = builder
            .status(206)
            .header("content-range", format!("bytes {from}-{}/{len}", len - 1));
    }
    s.log.push(served);
    builder
        .body(TestBody {
            chunk: Some(chunk),
            then,
            pause: None,
        })
        .unwrap()
}
