//! What an event looks like on the stream: its type name, the device it is about, its JSON
//! data, and the bytes it is counted as in the retention ring.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use iot_dm_core::events::EventType;
use iot_dm_core::identity::DeviceId;

use super::Recorded;
use crate::hub::{Actor, HubEvent};

/// The type of an event.
pub(crate) fn event_type(event: &HubEvent) -> EventType {
    match event {
        HubEvent::Connected { .. } => EventType::DeviceConnected,
        HubEvent::Disconnected { .. } => EventType::DeviceDisconnected,
        HubEvent::TwinChanged { .. } => EventType::TwinChanged,
        HubEvent::IdentityCreated { .. } => EventType::IdentityCreated,
        HubEvent::IdentityUpdated { .. } => EventType::IdentityUpdated,
        HubEvent::IdentityDeleted { .. } => EventType::IdentityDeleted,
        HubEvent::Lifecycle { .. } => EventType::LifecycleChanged,
        HubEvent::Telemetry { .. } => EventType::Telemetry,
        HubEvent::JobProgress { .. } => EventType::JobProgress,
        HubEvent::ConfigurationMetrics { .. } => EventType::ConfigurationMetrics,
        HubEvent::Alert { .. } => EventType::Alert,
    }
}

/// The device an event is about (none for a job's or an alert's).
pub(crate) fn device_id(event: &HubEvent) -> Option<&DeviceId> {
    match event {
        HubEvent::Connected { device_id }
        | HubEvent::Disconnected { device_id, .. }
        | HubEvent::TwinChanged { device_id, .. }
        | HubEvent::IdentityCreated { device_id }
        | HubEvent::IdentityUpdated { device_id }
        | HubEvent::IdentityDeleted { device_id }
        | HubEvent::Lifecycle { device_id, .. }
        | HubEvent::Telemetry { device_id, .. } => Some(device_id),
        HubEvent::JobProgress { .. }
        | HubEvent::ConfigurationMetrics { .. }
        | HubEvent::Alert { .. } => None,
    }
}

/// The bytes an event is counted as: its record and what it owns on the heap, roughly.
pub(crate) fn approx_size(event: &HubEvent) -> usize {
    let owned = match event {
        HubEvent::Disconnected { reason, .. } => reason.len(),
        HubEvent::TwinChanged {
            actor: Actor::Job(id) | Actor::Configuration(id),
            ..
        } => id.len(),
        HubEvent::Telemetry {
            properties, body, ..
        } => {
            body.len()
                + properties
                    .iter()
                    .map(|(k, v)| 48 + k.len() + v.map_or(0, str::len))
                    .sum::<usize>()
        }
        HubEvent::JobProgress { job_id, .. } => job_id.len(),
        HubEvent::ConfigurationMetrics {
            configuration_id,
            metrics,
            ..
        } => {
            configuration_id.len()
                + metrics
                    .iter()
                    .map(|(name, _)| 32 + name.len())
                    .sum::<usize>()
        }
        HubEvent::Alert { alert, .. } => {
            std::mem::size_of::<iot_dm_core::alert::Alert>()
                + alert.id.len()
                + alert.rule_id.len()
                + alert.acknowledged.as_ref().map_or(0, |a| a.1.len())
        }
        _ => 0,
    };
    let device = device_id(event).map_or(0, |d| d.as_str().len());
    // the record, its Arc and the ring's slot
    std::mem::size_of::<Recorded>() + 24 + device + owned
}

fn actor(a: &Actor) -> Value {
    match a {
        Actor::Device => json!({"kind": "device"}),
        Actor::Service => json!({"kind": "service"}),
        Actor::Job(id) => json!({"kind": "job", "id": id}),
        Actor::Configuration(id) => json!({"kind": "configuration", "id": id}),
    }
}

/// The event's JSON data: `id`, `type`, `time`, `deviceId` when about a device, and the fields
/// of its type (see the OpenAPI document's `HubStreamEvent`).
pub(crate) fn to_json(r: &Recorded) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), r.id.into());
    m.insert("type".into(), event_type(&r.event).as_str().into());
    m.insert("time".into(), r.time.to_string().into());
    if let Some(d) = device_id(&r.event) {
        m.insert("deviceId".into(), d.as_str().into());
    }
    let fields = match &r.event {
        HubEvent::Connected { .. }
        | HubEvent::IdentityCreated { .. }
        | HubEvent::IdentityUpdated { .. }
        | HubEvent::IdentityDeleted { .. } => json!({}),
        HubEvent::Disconnected { reason, .. } => json!({"reason": reason}),
        HubEvent::TwinChanged {
            actor: who,
            version,
            desired_version,
            reported_version,
            ..
        } => json!({
            "actor": actor(who),
            "version": version,
            "desiredVersion": desired_version,
            "reportedVersion": reported_version,
        }),
        HubEvent::Lifecycle {
            event, from, to, ..
        } => json!({"event": event, "from": from, "to": to}),
        HubEvent::Telemetry {
            properties,
            body,
            size,
            ..
        } => {
            let props: Map<String, Value> = properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.map_or(Value::Null, Value::from)))
                .collect();
            let mut t = json!({
                "properties": props,
                "size": size,
                "truncated": body.len() < *size,
            });
            match std::str::from_utf8(body) {
                Ok(text) => t["body"] = text.into(),
                Err(_) => {
                    t["bodyBase64"] = base64::engine::general_purpose::STANDARD
                        .encode(body)
                        .into()
                }
            }
            t
        }
        HubEvent::JobProgress {
            job_id,
            status,
            statistics,
        } => json!({"jobId": job_id, "status": status, "statistics": statistics}),
        HubEvent::ConfigurationMetrics {
            configuration_id,
            targeted,
            applied,
            metrics,
        } => json!({
            "configurationId": configuration_id,
            "systemMetrics": {"targetedCount": targeted, "appliedCount": applied},
            "metrics": metrics
                .iter()
                .map(|(name, n)| (name.clone(), Value::from(*n)))
                .collect::<Map<String, Value>>(),
        }),
        HubEvent::Alert { change, alert } => {
            json!({"change": change.as_str(), "alert": alert.to_json()})
        }
    };
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    Value::Object(m)
}
