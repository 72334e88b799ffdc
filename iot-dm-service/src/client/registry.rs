//! [`RegistryApi`] over the registry, lifecycle and statistics routes: one request per method.

use async_trait::async_trait;
use http::Method;
use serde_json::{json, Value};

use iot_dm_core::twin::Twin;

use super::codec::{body, continuation, device, key_name, parse, twin_body};
use super::errors::About;
use super::{path, Answer, ServiceClient};
use crate::api::{RegistryApi, RegistryStatistics, ServiceStatistics};
use crate::hub::{
    Authentication, BulkResult, Device, DevicePage, DeviceSpec, HubError, ImportDevice, KeyKind,
};

/// A device from its JSON. Azure IoT Hub sends no `lifecycle` (ours): it is derived from
/// `status`, `statusReason` and `statusUpdatedTime`.
fn device_from(mut value: Value) -> Result<Device, HubError> {
    if let Some(obj) = value.as_object_mut() {
        if !obj.contains_key("lifecycle") {
            let state = obj.get("status").cloned().unwrap_or(json!("enabled"));
            let since = obj
                .get("statusUpdatedTime")
                .filter(|t| t.is_string())
                .cloned()
                .unwrap_or(json!("0001-01-01T00:00:00Z"));
            let reason = obj.get("statusReason").cloned().unwrap_or(Value::Null);
            let reason = if state == "disabled" {
                reason
            } else {
                Value::Null
            };
            obj.insert(
                "lifecycle".into(),
                json!({"state": state, "statusReason": reason, "since": since}),
            );
        }
    }
    serde_json::from_value(value).map_err(|e| HubError::Transport {
        message: format!("the hub answered a device that does not parse: {e}"),
    })
}

fn parse_device(answer: &Answer) -> Result<Device, HubError> {
    device_from(parse(answer, "device")?)
}

fn parse_devices(answer: &Answer) -> Result<Vec<Device>, HubError> {
    let values: Vec<Value> = parse(answer, "device list")?;
    values.into_iter().map(device_from).collect()
}

impl ServiceClient {
    async fn lifecycle(
        &self,
        device_id: &str,
        action: &str,
        payload: Option<Value>,
    ) -> Result<Answer, HubError> {
        let payload = match payload {
            Some(p) => body(&p)?,
            None => None,
        };
        self.call(
            Method::POST,
            &path(&["devices", device_id, action], &[]),
            &[],
            payload,
            device(device_id),
        )
        .await
    }
}

#[async_trait]
impl RegistryApi for ServiceClient {
    async fn create_device(&self, spec: DeviceSpec) -> Result<Device, HubError> {
        let id = spec.device_id.as_str();
        let mut b = json!({
            "deviceId": id,
            "status": if spec.disabled_reason.is_some() { "disabled" } else { "enabled" },
            "capabilities": spec.capabilities,
        });
        if let Some(r) = &spec.disabled_reason {
            b["statusReason"] = json!(r);
        }
        if let Some(a) = &spec.authentication {
            b["authentication"] = json!(a);
        }
        if let Some(t) = &spec.tags {
            b["tags"] = t.clone();
        }
        if let Some(d) = &spec.desired {
            b["properties"] = json!({ "desired": d });
        }
        let answer = self
            .call(
                Method::PUT,
                &path(&["devices", id], &[]),
                &[],
                body(&b)?,
                device(id),
            )
            .await?;
        parse_device(&answer)
    }

    async fn get_device(&self, device_id: &str) -> Result<Device, HubError> {
        device_from(
            self.get_json(&["devices", device_id], device(device_id), "device")
                .await?,
        )
    }

    async fn update_device(
        &self,
        update: Device,
        if_match: Option<&str>,
    ) -> Result<Device, HubError> {
        let id = update.device_id.to_string();
        let if_match = if_match.unwrap_or("*");
        let answer = self
            .call(
                Method::PUT,
                &path(&["devices", &id], &[]),
                &[("if-match", if_match.to_string())],
                body(&update)?,
                About {
                    device_id: Some(&id),
                    if_match: Some(if_match),
                    timeout_secs: 0,
                    ..About::default()
                },
            )
            .await?;
        parse_device(&answer)
    }

    async fn delete_device(&self, device_id: &str, if_match: Option<&str>) -> Result<(), HubError> {
        let headers: Vec<(&'static str, String)> = if_match
            .map(|m| vec![("if-match", m.to_string())])
            .unwrap_or_default();
        self.call(
            Method::DELETE,
            &path(&["devices", device_id], &[]),
            &headers,
            None,
            About {
                device_id: Some(device_id),
                if_match,
                timeout_secs: 0,
                ..About::default()
            },
        )
        .await?;
        Ok(())
    }

    async fn list_devices(
        &self,
        continuation_token: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, HubError> {
        let headers: Vec<(&'static str, String)> = continuation_token
            .map(|c| vec![("x-ms-continuation", c.to_string())])
            .unwrap_or_default();
        let answer = self
            .call(
                Method::GET,
                &path(&["devices"], &[("top", limit.to_string())]),
                &headers,
                None,
                About::default(),
            )
            .await?;
        Ok(DevicePage {
            items: parse_devices(&answer)?,
            continuation: continuation(&answer),
        })
    }

    async fn bulk(&self, devices: Vec<ImportDevice>) -> Result<BulkResult, HubError> {
        let answer = self
            .send(
                Method::POST,
                &path(&["devices"], &[]),
                &[],
                body(&devices)?,
                std::time::Duration::ZERO,
            )
            .await?;
        // a partly failed bulk call is a 400 carrying the result
        if answer.status.is_success() || answer.status == http::StatusCode::BAD_REQUEST {
            if let Ok(result) = serde_json::from_slice::<BulkResult>(&answer.body) {
                return Ok(result);
            }
        }
        if answer.status.is_success() {
            return parse(&answer, "bulk result");
        }
        Err(super::errors::from_response(
            answer.status,
            &answer.headers,
            &answer.body,
            About::default(),
        ))
    }

    async fn regenerate_key(&self, device_id: &str, which: KeyKind) -> Result<Device, HubError> {
        let answer = self
            .call(
                Method::POST,
                &path(&["devices", device_id, "keys", "regenerate"], &[]),
                &[],
                body(&json!({ "key": key_name(which) }))?,
                device(device_id),
            )
            .await?;
        parse_device(&answer)
    }

    async fn plan_device(&self, spec: DeviceSpec) -> Result<Twin, HubError> {
        let id = spec.device_id.as_str();
        let mut b = twin_body(spec.tags.as_ref(), spec.desired.as_ref());
        b["capabilities"] = json!(spec.capabilities);
        let answer = self.lifecycle(id, "plan", Some(b)).await?;
        parse(&answer, "twin")
    }

    async fn provision_device(
        &self,
        device_id: &str,
        auth: Option<Authentication>,
    ) -> Result<Device, HubError> {
        let b = auth.map(|a| json!({ "authentication": a }));
        let answer = self.lifecycle(device_id, "provision", b).await?;
        parse_device(&answer)
    }

    async fn enable_device(&self, device_id: &str) -> Result<Device, HubError> {
        let answer = self.lifecycle(device_id, "enable", None).await?;
        parse_device(&answer)
    }

    async fn disable_device(&self, device_id: &str, reason: &str) -> Result<Device, HubError> {
        let answer = self
            .lifecycle(device_id, "disable", Some(json!({ "reason": reason })))
            .await?;
        parse_device(&answer)
    }

    async fn retire_device(&self, device_id: &str) -> Result<Device, HubError> {
        let answer = self.lifecycle(device_id, "retire", None).await?;
        parse_device(&answer)
    }

    async fn replace_device(
        &self,
        retired_id: &str,
        successor: DeviceSpec,
    ) -> Result<Device, HubError> {
        let mut b = json!({ "deviceId": successor.device_id.as_str() });
        if let Some(a) = &successor.authentication {
            b["authentication"] = json!(a);
        }
        let answer = self.lifecycle(retired_id, "replace", Some(b)).await?;
        parse_device(&answer)
    }

    async fn registry_statistics(&self) -> Result<RegistryStatistics, HubError> {
        self.get_json(
            &["statistics", "devices"],
            About::default(),
            "registry statistics",
        )
        .await
    }

    async fn service_statistics(&self) -> Result<ServiceStatistics, HubError> {
        self.get_json(
            &["statistics", "service"],
            About::default(),
            "service statistics",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_devices_without_lifecycle_parse() {
        // IoT Hub's device JSON, as its REST reference shows it
        let azure = json!({
            "deviceId": "d1", "generationId": "638000000000000000", "etag": "MA==",
            "connectionState": "Disconnected", "status": "disabled", "statusReason": "stolen",
            "connectionStateUpdatedTime": "0001-01-01T00:00:00Z",
            "statusUpdatedTime": "2024-05-01T10:00:00.1234567Z",
            "lastActivityTime": "0001-01-01T00:00:00Z", "cloudToDeviceMessageCount": 0,
            "authentication": {"symmetricKey": {"primaryKey": "a2V5a2V5a2V5a2V5a2V5a2V5", "secondaryKey": "a2V5a2V5a2V5a2V5a2V5a2V5"},
                               "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null},
                               "type": "sas"},
            "capabilities": {"iotEdge": false}
        });
        let d = device_from(azure).unwrap();
        assert_eq!(d.state(), iot_dm_core::lifecycle::LifecycleState::Disabled);
        assert_eq!(d.lifecycle.status_reason(), Some("stolen"));
        assert!(device_from(json!({"deviceId": 5}))
            .unwrap_err()
            .is_transport());
    }
}
