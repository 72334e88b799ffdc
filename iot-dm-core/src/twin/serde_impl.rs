//! serde for [`Twin`] in IoT Hub's service-side JSON shape.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::metadata::{section_value, SectionOut};
use super::section::{Kind, Section};
use super::{
    AuthenticationType, Capabilities, ConnectionState, DeviceIdentity, DeviceStatus, ETag, Twin,
    X509Thumbprint,
};
use crate::clock::Timestamp;
use crate::doc::Doc;
use crate::identity::{DeviceId, ModuleId};

#[derive(Serialize)]
struct PropertiesOut<'a> {
    desired: SectionOut<'a>,
    reported: SectionOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TwinOut<'a> {
    device_id: &'a DeviceId,
    #[serde(skip_serializing_if = "Option::is_none")]
    module_id: Option<&'a ModuleId>,
    etag: &'a ETag,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_etag: Option<&'a str>,
    version: u64,
    status: DeviceStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_update_time: Option<Timestamp>,
    connection_state: ConnectionState,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_activity_time: Option<Timestamp>,
    cloud_to_device_message_count: u64,
    authentication_type: AuthenticationType,
    x509_thumbprint: &'a X509Thumbprint,
    capabilities: &'a Capabilities,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_scope: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    parent_scopes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    model_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a Doc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<PropertiesOut<'a>>,
    #[serde(skip_serializing_if = "Doc::is_empty")]
    configurations: &'a Doc,
}

impl Twin {
    /// Everything but the tags and properties when `documents` is false.
    fn out(&self, documents: bool) -> TwinOut<'_> {
        let id = &*self.identity;
        TwinOut {
            device_id: &self.device_id,
            module_id: self.module_id.as_ref(),
            etag: &self.etag,
            device_etag: id.etag.as_ref().map(ETag::as_str),
            version: self.version,
            status: id.status,
            status_reason: id.status_reason.as_deref(),
            status_update_time: id.status_update_time,
            connection_state: id.connection_state,
            last_activity_time: id.last_activity_time,
            cloud_to_device_message_count: id.cloud_to_device_message_count,
            authentication_type: id.authentication_type,
            x509_thumbprint: &id.x509_thumbprint,
            capabilities: &id.capabilities,
            device_scope: self.device_scope.as_deref(),
            parent_scopes: &self.parent_scopes,
            model_id: self.model_id.as_deref(),
            tags: documents.then_some(&self.tags),
            properties: documents.then_some(PropertiesOut {
                desired: SectionOut(&self.desired),
                reported: SectionOut(&self.reported),
            }),
            configurations: &self.configurations,
        }
    }

    /// The service-side JSON as a `serde_json::Value`: the identity fields through serde,
    /// the documents and their `$metadata` built directly.
    pub(super) fn json_value(&self) -> Value {
        let mut v = serde_json::to_value(self.out(false)).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("tags".to_string(), self.tags.to_value());
            let mut props = Map::new();
            props.insert("desired".to_string(), section_value(&self.desired));
            props.insert("reported".to_string(), section_value(&self.reported));
            m.insert("properties".to_string(), Value::Object(props));
        }
        v
    }
}

impl Serialize for Twin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.out(true).serialize(s)
    }
}

#[derive(Deserialize, Default)]
struct PropertiesIn {
    desired: Option<Value>,
    reported: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TwinIn {
    device_id: DeviceId,
    module_id: Option<ModuleId>,
    etag: Option<String>,
    device_etag: Option<ETag>,
    version: Option<u64>,
    status: Option<DeviceStatus>,
    status_reason: Option<String>,
    status_update_time: Option<Timestamp>,
    connection_state: Option<ConnectionState>,
    last_activity_time: Option<Timestamp>,
    cloud_to_device_message_count: Option<u64>,
    authentication_type: Option<AuthenticationType>,
    x509_thumbprint: Option<X509Thumbprint>,
    capabilities: Option<Capabilities>,
    device_scope: Option<String>,
    parent_scopes: Option<Vec<String>>,
    model_id: Option<String>,
    tags: Option<Value>,
    properties: Option<PropertiesIn>,
    configurations: Option<Value>,
}

fn doc_field<E: serde::de::Error>(name: &str, v: Option<Value>) -> Result<Doc, E> {
    match v {
        None | Some(Value::Null) => Ok(Doc::empty()),
        Some(v) => Doc::from_value(&v).map_err(|e| E::custom(format!("{name}: {e}"))),
    }
}

fn section_field<E: serde::de::Error>(
    kind: Kind,
    name: &str,
    v: Option<Value>,
) -> Result<Section, E> {
    match v {
        None | Some(Value::Null) => Ok(Section::new(kind, Timestamp::EPOCH)),
        Some(v) => Section::from_value(kind, &v).map_err(|e| E::custom(format!("{name}: {e}"))),
    }
}

impl<'de> Deserialize<'de> for Twin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = TwinIn::deserialize(d)?;
        let props = t.properties.unwrap_or_default();
        let version = t.version.unwrap_or(1);
        Ok(Twin {
            device_id: t.device_id,
            module_id: t.module_id,
            identity: Arc::new(DeviceIdentity {
                etag: t.device_etag,
                status: t.status.unwrap_or_default(),
                status_reason: t.status_reason,
                status_update_time: t.status_update_time,
                connection_state: t.connection_state.unwrap_or_default(),
                connection_state_updated_time: None,
                last_activity_time: t.last_activity_time,
                cloud_to_device_message_count: t.cloud_to_device_message_count.unwrap_or(0),
                authentication_type: t.authentication_type.unwrap_or_default(),
                x509_thumbprint: t.x509_thumbprint.unwrap_or_default(),
                capabilities: t.capabilities.unwrap_or_default(),
            }),
            device_scope: t.device_scope,
            parent_scopes: t.parent_scopes.unwrap_or_default(),
            model_id: t.model_id,
            etag: t
                .etag
                .map(ETag::new)
                .unwrap_or_else(|| ETag::from_version(version)),
            version,
            tags: doc_field("tags", t.tags)?,
            desired: section_field(Kind::Desired, "properties.desired", props.desired)?,
            reported: section_field(Kind::Reported, "properties.reported", props.reported)?,
            configurations: doc_field("configurations", t.configurations)?,
        })
    }
}
