//! The conformance checks: each provisions its own device (ids start with `conformance-`, so
//! one fixture may serve every check) and drives raw sessions over IoT Hub's device topics.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use super::{BoxError, Failure, Fixture, TwinView};
use crate::identity::DeviceId;
use crate::link::{ConnectRefused, ConnectRequest, Credentials, DeviceFrame, Link, Message};
use crate::wire::{self, topic, HubTopic, RequestId, SasToken, SymmetricKey};

/// The key the checks provision devices with.
pub const KEY: &str = "aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=";
/// Another valid key, which the checks' devices do not have.
pub const OTHER_KEY: &str = "b3RoZXIga2V5IGZvciB0aGUgc2Vjb25kIGRldmljZSE=";

/// What a check knows: its name (for failures), its fixture and its device.
struct Ctx<'a, F: ?Sized> {
    check: &'static str,
    fixture: &'a F,
    device: DeviceId,
}

impl<'a, F: Fixture + ?Sized> Ctx<'a, F> {
    /// A check on a fresh device `conformance-{suffix}`, provisioned with [`KEY`].
    async fn new(check: &'static str, fixture: &'a F, suffix: &str) -> Result<Self, Failure> {
        let ctx = Ctx::unprovisioned(check, fixture, suffix)?;
        let created = fixture.create_device(&ctx.device, KEY).await;
        ctx.backend("create a device", created)?;
        Ok(ctx)
    }

    fn unprovisioned(check: &'static str, fixture: &'a F, suffix: &str) -> Result<Self, Failure> {
        let device =
            DeviceId::new(format!("conformance-{suffix}")).map_err(|e| Failure::Mismatch {
                check,
                what: format!("device id: {e}"),
            })?;
        Ok(Ctx {
            check,
            fixture,
            device,
        })
    }

    fn mismatch(&self, what: impl Into<String>) -> Failure {
        Failure::Mismatch {
            check: self.check,
            what: what.into(),
        }
    }

    fn backend<T>(&self, what: &'static str, r: Result<T, BoxError>) -> Result<T, Failure> {
        r.map_err(|source| Failure::Backend {
            check: self.check,
            what,
            source,
        })
    }

    fn ensure(&self, ok: bool, what: impl FnOnce() -> String) -> Result<(), Failure> {
        if ok {
            Ok(())
        } else {
            Err(self.mismatch(what()))
        }
    }

    /// A connect request for this check's device with a SAS token signed with `key`.
    fn request(&self, key: &str) -> Result<ConnectRequest, Failure> {
        let key = SymmetricKey::new(key).map_err(|e| self.mismatch(format!("key: {e}")))?;
        let uri = wire::device_resource_uri(&self.fixture.host_name(), &self.device);
        let expiry = self.fixture.now() + Duration::from_secs(3600);
        let token = SasToken::generate(&uri, &key, expiry, None);
        Ok(ConnectRequest {
            device_id: self.device.clone(),
            module_id: None,
            credentials: Credentials::Sas(token.as_str().to_string()),
            clean_session: true,
        })
    }

    /// Connects the device with [`KEY`] and subscribes to `filters`.
    async fn session(&self, filters: &[&str]) -> Result<Session<'_, 'a, F>, Failure> {
        let request = self.request(KEY)?;
        let link = self
            .fixture
            .endpoint()
            .connect(request)
            .await
            .map_err(|refused| Failure::Refused {
                check: self.check,
                refused,
            })?;
        let mut s = Session {
            ctx: self,
            link,
            rid: 0,
        };
        s.send(DeviceFrame::Subscribe(
            filters.iter().map(|f| f.to_string()).collect(),
        ))
        .await?;
        Ok(s)
    }

    /// Expects the endpoint to refuse `request` as not authorized.
    async fn expect_not_authorized(&self, request: ConnectRequest) -> Result<(), Failure> {
        match self.fixture.endpoint().connect(request).await {
            Err(ConnectRefused::NotAuthorized { .. }) => Ok(()),
            Err(other) => Err(self.mismatch(format!("refused with {other:?}, not NotAuthorized"))),
            Ok(_) => Err(self.mismatch("accepted a device it must refuse")),
        }
    }

    async fn twin(&self) -> Result<TwinView, Failure> {
        let twin = self.fixture.twin(&self.device).await;
        self.backend("read the twin", twin)
    }
}

/// A raw device session.
struct Session<'c, 'a, F: ?Sized> {
    ctx: &'c Ctx<'a, F>,
    link: Link,
    rid: u64,
}

impl<F: Fixture + ?Sized> Session<'_, '_, F> {
    async fn send(&mut self, frame: DeviceFrame) -> Result<(), Failure> {
        self.link.tx.send(frame).await.map_err(|_| Failure::Closed {
            check: self.ctx.check,
            what: "the endpoint to take a frame".into(),
        })
    }

    async fn publish(&mut self, topic: String, body: impl Into<Bytes>) -> Result<(), Failure> {
        self.send(DeviceFrame::Publish(Message::new(topic, body)))
            .await
    }

    fn next_rid(&mut self) -> Result<RequestId, Failure> {
        self.rid += 1;
        RequestId::new(self.rid.to_string()).map_err(|e| self.ctx.mismatch(e.to_string()))
    }

    /// The next message, with its topic parsed.
    async fn recv(&mut self, what: &str) -> Result<(HubTopic, Message), Failure> {
        let patience = self.ctx.fixture.patience();
        let m = match tokio::time::timeout(patience, self.link.rx.recv()).await {
            Err(_) => {
                return Err(Failure::Timeout {
                    check: self.ctx.check,
                    what: what.to_string(),
                    after: patience,
                })
            }
            Ok(None) => {
                return Err(Failure::Closed {
                    check: self.ctx.check,
                    what: what.to_string(),
                })
            }
            Ok(Some(m)) => m,
        };
        let parsed = HubTopic::parse(&m.topic)
            .map_err(|e| self.ctx.mismatch(format!("{what}: unreadable topic: {e}")))?;
        Ok((parsed, m))
    }

    fn json(&self, m: &Message) -> Result<Value, Failure> {
        serde_json::from_slice(&m.payload).map_err(|e| {
            self.ctx
                .mismatch(format!("{}: body is not JSON: {e}", m.topic))
        })
    }

    /// Sends a request with a fresh request id; returns the twin response to it.
    async fn twin_request(
        &mut self,
        make: fn(&RequestId) -> String,
        body: String,
    ) -> Result<(u16, Option<u64>, Message), Failure> {
        let rid = self.next_rid()?;
        self.publish(make(&rid), body).await?;
        match self.recv("a twin response").await? {
            (
                HubTopic::TwinResponse {
                    status,
                    rid: got,
                    version,
                },
                m,
            ) if got == rid => Ok((status, version, m)),
            (_, m) => Err(self.ctx.mismatch(format!(
                "expected the twin response to request {rid}, got {}",
                m.topic
            ))),
        }
    }

    /// Twin GET: the status and the body.
    async fn get_twin(&mut self) -> Result<Value, Failure> {
        let (status, _, m) = self.twin_request(topic::twin_get, String::new()).await?;
        self.ctx
            .ensure(status == 200, || format!("twin GET answered {status}"))?;
        self.json(&m)
    }

    /// Waits for the link to end (messages before the end are skipped).
    async fn closed(mut self, after: &str) -> Result<(), Failure> {
        let patience = self.ctx.fixture.patience();
        let drained = tokio::time::timeout(patience, async {
            while self.link.rx.recv().await.is_some() {}
        });
        drained.await.map_err(|_| Failure::Timeout {
            check: self.ctx.check,
            what: format!("the link to close after {after}"),
            after: patience,
        })
    }
}

/// `doc` without `$version` and `$metadata`, and its `$version`.
fn split_version(doc: &Value) -> (Value, Option<u64>) {
    let mut doc = doc.clone();
    let version = doc.get("$version").and_then(Value::as_u64);
    if let Some(map) = doc.as_object_mut() {
        map.remove("$version");
        map.remove("$metadata");
    }
    (doc, version)
}

/// Twin GET returns the device's view of the twin: the desired and reported documents with
/// their versions, as the back end has them.
pub async fn twin_get_returns_the_twin<F: Fixture + ?Sized>(fixture: &F) -> Result<(), Failure> {
    let ctx = Ctx::new("twin GET", fixture, "twin-get").await?;
    let desired = json!({"mode": "eco", "target": {"low": 18, "high": 22}});
    let set = fixture.update_desired(&ctx.device, &desired).await;
    let version = ctx.backend("update desired properties", set)?;
    let mut s = ctx.session(&[topic::TWIN_RESPONSE_FILTER]).await?;
    let body = s.get_twin().await?;
    let want = ctx.twin().await?;
    ctx.ensure(want.desired_version == version, || {
        format!(
            "the back end reports desired version {} after an update to {version}",
            want.desired_version
        )
    })?;
    for (part, doc, doc_version) in [
        ("desired", &want.desired, want.desired_version),
        ("reported", &want.reported, want.reported_version),
    ] {
        let got = split_version(&body[part]);
        ctx.ensure(got == (doc.clone(), Some(doc_version)), || {
            format!(
                "twin GET {part} is {}, the twin has {doc} at version {doc_version}",
                body[part]
            )
        })?;
    }
    ctx.ensure(want.desired == desired, || {
        format!("desired is {}, set {desired}", want.desired)
    })
}

/// A reported PATCH is answered 204 with the new reported version, once; the change shows
/// in twin GET and at the back end.
pub async fn reported_patch_is_acknowledged_and_visible<F: Fixture + ?Sized>(
    fixture: &F,
) -> Result<(), Failure> {
    let ctx = Ctx::new("reported PATCH", fixture, "reported-patch").await?;
    let before = ctx.twin().await?.reported_version;
    let mut s = ctx.session(&[topic::TWIN_RESPONSE_FILTER]).await?;
    for (i, patch) in [json!({"fw": "1.0"}), json!({"fw": "1.1", "battery": 93})]
        .into_iter()
        .enumerate()
    {
        let want = before + 1 + i as u64;
        let (status, version, m) = s
            .twin_request(topic::twin_patch_reported, patch.to_string())
            .await?;
        ctx.ensure(status == 204 && version == Some(want), || {
            format!("reported PATCH answered {status} with version {version:?}, expected 204 with {want}")
        })?;
        ctx.ensure(m.payload.is_empty(), || "a 204 answer has a body".into())?;
    }
    let expected = json!({"fw": "1.1", "battery": 93});
    let body = s.get_twin().await?;
    let got = split_version(&body["reported"]);
    ctx.ensure(got == (expected.clone(), Some(before + 2)), || {
        format!("twin GET reported is {}", body["reported"])
    })?;
    let twin = ctx.twin().await?;
    ctx.ensure(
        twin.reported == expected && twin.reported_version == before + 2,
        || {
            format!(
                "the back end has reported {} at version {}",
                twin.reported, twin.reported_version
            )
        },
    )
}

/// A burst of service-side desired updates reaches the device as notifications in version
/// order, each with the merge patch and its `$version`.
pub async fn desired_notifications_arrive_in_version_order<F: Fixture + ?Sized>(
    fixture: &F,
) -> Result<(), Failure> {
    let ctx = Ctx::new("desired notifications", fixture, "desired-order").await?;
    let mut s = ctx
        .session(&[topic::TWIN_RESPONSE_FILTER, topic::DESIRED_PATCH_FILTER])
        .await?;
    // answered only once the subscriptions before it are in place
    s.get_twin().await?;
    let mut versions = Vec::new();
    for step in 0..10 {
        let set = fixture
            .update_desired(&ctx.device, &json!({"step": step}))
            .await;
        versions.push(ctx.backend("update desired properties", set)?);
    }
    ctx.ensure(versions.windows(2).all(|w| w[0] < w[1]), || {
        format!("the back end returned versions {versions:?}")
    })?;
    for (step, want) in versions.into_iter().enumerate() {
        let (topic, m) = s.recv("a desired-property notification").await?;
        ctx.ensure(
            topic
                == HubTopic::DesiredPatch {
                    version: Some(want),
                },
            || {
                format!(
                    "notification {step} came on {}, expected version {want}",
                    m.topic
                )
            },
        )?;
        let body = s.json(&m)?;
        ctx.ensure(body == json!({"step": step, "$version": want}), || {
            format!("notification {step} is {body}")
        })?;
    }
    Ok(())
}

/// A direct method request reaches the device with its name and payload, and the device's
/// answer returns to the caller.
pub async fn direct_method_round_trip<F: Fixture + ?Sized>(fixture: &F) -> Result<(), Failure> {
    let ctx = Ctx::new("direct method", fixture, "method").await?;
    let mut s = ctx
        .session(&[topic::TWIN_RESPONSE_FILTER, topic::METHOD_REQUEST_FILTER])
        .await?;
    s.get_twin().await?;
    let payload = json!({"delay": 5});
    let caller = fixture.invoke_method(&ctx.device, "reboot", &payload);
    let device = async {
        let (topic, m) = s.recv("the method request").await?;
        let HubTopic::MethodRequest { name, rid } = topic else {
            return Err(ctx.mismatch(format!("expected a method request, got {}", m.topic)));
        };
        ctx.ensure(name == "reboot", || format!("method name {name}"))?;
        let body = s.json(&m)?;
        ctx.ensure(body == payload, || format!("method payload {body}"))?;
        let answer = json!({"rebooting": true, "in": 5});
        s.publish(wire::topic::method_response(201, &rid), answer.to_string())
            .await
    };
    let (answered, served) = tokio::join!(caller, device);
    served?;
    let (status, body) = ctx.backend("invoke a method", answered)?;
    ctx.ensure(
        status == 201 && body == json!({"rebooting": true, "in": 5}),
        || format!("the caller got {status} {body}"),
    )
}

/// Connecting as a device the endpoint does not know is refused as not authorized.
pub async fn unknown_device_is_not_authorized<F: Fixture + ?Sized>(
    fixture: &F,
) -> Result<(), Failure> {
    let ghost = Ctx::unprovisioned("unknown device", fixture, "ghost")?;
    ghost.expect_not_authorized(ghost.request(KEY)?).await?;
    // a known device with the same credentials gets in
    let known = Ctx::new("unknown device", fixture, "known").await?;
    known.session(&[]).await.map(drop)
}

/// A SAS token signed with a key the device does not have is refused as not authorized.
pub async fn wrong_key_is_not_authorized<F: Fixture + ?Sized>(fixture: &F) -> Result<(), Failure> {
    let ctx = Ctx::new("wrong key", fixture, "wrong-key").await?;
    ctx.expect_not_authorized(ctx.request(OTHER_KEY)?).await?;
    ctx.session(&[]).await.map(drop)
}

/// Subscribing to another device's topics ends the session.
pub async fn refused_subscription_closes_the_link<F: Fixture + ?Sized>(
    fixture: &F,
) -> Result<(), Failure> {
    let subscribe = |other: &str| {
        DeviceFrame::Subscribe(vec![format!("devices/{other}/messages/devicebound/#")])
    };
    closes_after(fixture, "refused subscription", "bad-subscribe", subscribe).await
}

/// Publishing on another device's topic ends the session.
pub async fn protocol_violation_closes_the_link<F: Fixture + ?Sized>(
    fixture: &F,
) -> Result<(), Failure> {
    let publish = |other: &str| {
        let topic = format!("devices/{other}/messages/events/");
        DeviceFrame::Publish(Message::new(topic, "{}"))
    };
    closes_after(fixture, "protocol violation", "bad-frame", publish).await
}

/// A working session sends `violation(another device)`; the endpoint must end the session.
async fn closes_after<F: Fixture + ?Sized>(
    fixture: &F,
    check: &'static str,
    suffix: &str,
    violation: impl Fn(&str) -> DeviceFrame,
) -> Result<(), Failure> {
    let ctx = Ctx::new(check, fixture, suffix).await?;
    let other = Ctx::new(check, fixture, &format!("{suffix}-other")).await?;
    let mut s = ctx.session(&[topic::TWIN_RESPONSE_FILTER]).await?;
    s.get_twin().await?;
    let frame = violation(other.device.as_str());
    let what = format!("{frame:?}");
    // a transport may already fail the send: the link is closed
    if s.send(frame).await.is_err() {
        return Ok(());
    }
    s.closed(&what).await
}
