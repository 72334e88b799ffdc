//! The IoT Hub topics the client speaks, as thin functions over the protocol module.
// TEMPORARY: replace with iot_dm_core::wire once it is merged.

use iot_dm_core::identity::{DeviceId, ModuleId};

/// A topic the hub publishes to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HubTopic {
    TwinResponse {
        status: u16,
        rid: String,
        version: Option<u64>,
    },
    DesiredPatch {
        version: Option<u64>,
    },
    MethodRequest {
        name: String,
        rid: String,
    },
    CloudToDevice,
}

pub(crate) fn parse(topic: &str) -> Result<HubTopic, String> {
    let (path, query) = topic.split_once('?').unwrap_or((topic, ""));
    let mut rid = None;
    let mut version = None;
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("$rid=") {
            rid = Some(v.to_string());
        } else if let Some(v) = pair.strip_prefix("$version=") {
            version = v.parse().ok();
        }
    }
    let levels: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match levels.as_slice() {
        ["$iothub", "twin", "res", status] => Ok(HubTopic::TwinResponse {
            status: status.parse().map_err(|_| topic.to_string())?,
            rid: rid.ok_or_else(|| topic.to_string())?,
            version,
        }),
        ["$iothub", "twin", "PATCH", "properties", "desired"] => {
            Ok(HubTopic::DesiredPatch { version })
        }
        ["$iothub", "methods", "POST", name] => Ok(HubTopic::MethodRequest {
            name: name.to_string(),
            rid: rid.ok_or_else(|| topic.to_string())?,
        }),
        ["devices", _, "messages", "devicebound", ..] => Ok(HubTopic::CloudToDevice),
        _ => Err(topic.to_string()),
    }
}

pub(crate) fn twin_get(rid: &str) -> String {
    format!("$iothub/twin/GET/?$rid={rid}")
}

pub(crate) fn twin_patch_reported(rid: &str) -> String {
    format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")
}

pub(crate) fn method_response(status: i32, rid: &str) -> String {
    format!("$iothub/methods/res/{status}/?$rid={rid}")
}

pub(crate) fn telemetry(device: &DeviceId, module: Option<&ModuleId>, bag: &str) -> String {
    match module {
        Some(m) => format!("devices/{device}/modules/{m}/messages/events/{bag}"),
        None => format!("devices/{device}/messages/events/{bag}"),
    }
}

pub(crate) fn subscriptions(device: &DeviceId, module: Option<&ModuleId>) -> Vec<String> {
    let mut filters = vec![
        "$iothub/twin/res/#".to_string(),
        "$iothub/twin/PATCH/properties/desired/#".to_string(),
        "$iothub/methods/POST/#".to_string(),
    ];
    if module.is_none() {
        filters.push(format!("devices/{device}/messages/devicebound/#"));
    }
    filters
}

/// A shared access key (TEMPORARY shim).
#[derive(Clone)]
pub(crate) struct Key(String);

impl Key {
    pub(crate) fn new(base64: &str) -> Result<Key, String> {
        if base64.is_empty() {
            Err("symmetric key is empty".into())
        } else {
            Ok(Key(base64.to_string()))
        }
    }
}

/// A SAS token for `resource` (TEMPORARY shim: not signed).
pub(crate) fn sas_token(
    resource: &str,
    key: &Key,
    expiry: iot_dm_core::clock::Timestamp,
    key_name: Option<&str>,
) -> String {
    let _ = &key.0;
    let mut t = format!(
        "SharedAccessSignature sr={resource}&sig=unsigned&se={}",
        expiry.unix_secs()
    );
    if let Some(n) = key_name {
        t.push_str("&skn=");
        t.push_str(n);
    }
    t
}

/// Parsed device connection string (TEMPORARY shim).
pub(crate) struct ConnectionString {
    pub(crate) host: String,
    pub(crate) device_id: DeviceId,
    pub(crate) module_id: Option<ModuleId>,
    pub(crate) key: Option<(Key, Option<String>)>,
    pub(crate) sas: Option<String>,
    pub(crate) x509: bool,
}

pub(crate) fn parse_connection_string(s: &str) -> Result<ConnectionString, String> {
    let mut host = None;
    let mut device = None;
    let mut module = None;
    let mut key = None;
    let mut key_name = None;
    let mut sas = None;
    let mut x509 = false;
    for part in s.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or("part without =")?;
        match k {
            "HostName" => host = Some(v.to_string()),
            "DeviceId" => device = Some(DeviceId::new(v).map_err(|e| e.to_string())?),
            "ModuleId" => module = Some(ModuleId::new(v).map_err(|e| e.to_string())?),
            "SharedAccessKey" => key = Some(Key::new(v)?),
            "SharedAccessKeyName" => key_name = Some(v.to_string()),
            "SharedAccessSignature" => sas = Some(v.to_string()),
            "x509" => x509 = v.eq_ignore_ascii_case("true"),
            _ => return Err(format!("unexpected key {k}")),
        }
    }
    Ok(ConnectionString {
        host: host.ok_or("missing HostName")?,
        device_id: device.ok_or("missing DeviceId")?,
        module_id: module,
        key: key.map(|k| (k, key_name)),
        sas,
        x509,
    })
}
