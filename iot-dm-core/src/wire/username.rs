//! The MQTT CONNECT username: `{host}/{deviceId}[/{moduleId}]/?{query}`.
//!
//! What the SDKs send differs:
//!
//! * Python: `{host}/{client id}/?api-version=..&DeviceClientType=..[&model-id=..]`, query
//!   values encoded with `quote` (upper-case hex);
//! * Node: `{host}/{client id}/?api-version=..[&digital-twin-model-id=..]&DeviceClientType=..`
//!   (`encodeURIComponent`, which leaves `( ) ! * '` alone);
//! * C: `?api-version=..&DeviceClientType=..&model-id=..` with lower-case hex (`%2f`);
//! * old C SDKs: no `?` at all (`{host}/{id}/api-version=2016-11-14&DeviceClientType=..`, or
//!   just `{host}/{id}/DeviceClientType=..`).
//!
//! [`Username::parse`] therefore splits off the host and device id at the first two `/`,
//! takes an optional module id, and reads the rest, with or without a leading `?`, as an
//! unordered query whose keys (case-insensitive) and values are percent-decoded. Unknown keys
//! are kept but otherwise ignored; `api-version` may be missing.

use std::fmt;
use std::str::FromStr;

use super::encoding::{decode, encode, COMPONENT};
use crate::identity::{DeviceId, IdError, ModuleId};

/// The api-version this crate's device client sends.
pub const API_VERSION: &str = "2021-04-12";

/// A username that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsernameError {
    /// The host level is empty.
    #[error("username {username:?} has an empty host; expected {{host}}/{{deviceId}}[/{{moduleId}}]/?{{query}}")]
    EmptyHost {
        /// The username as received.
        username: String,
    },
    /// There is no device id level.
    #[error("username {username:?} has no device id; expected {{host}}/{{deviceId}}[/{{moduleId}}]/?{{query}}")]
    MissingDeviceId {
        /// The username as received.
        username: String,
    },
    /// The device id level is not a valid device id.
    #[error("username device id: {source}")]
    InvalidDeviceId {
        /// Why the id is invalid.
        source: IdError,
    },
    /// The module id level is not a valid module id.
    #[error("username module id: {source}")]
    InvalidModuleId {
        /// Why the id is invalid.
        source: IdError,
    },
    /// A query key or value does not decode to UTF-8.
    #[error("username query parameter {pair:?} is not UTF-8 once percent-decoded")]
    NotUtf8 {
        /// The parameter as written.
        pair: String,
    },
    /// A known query key appears twice.
    #[error("username query parameter {key} appears more than once; it may appear once")]
    DuplicateKey {
        /// The repeated key.
        key: &'static str,
    },
    /// The host contains a `/`.
    #[error("host {host:?} contains `/`")]
    InvalidHost {
        /// The rejected host.
        host: String,
    },
    /// The username names another client than the MQTT client id.
    #[error("username names client {username_client:?} but the MQTT client id is {client_id:?}")]
    ClientIdMismatch {
        /// `{deviceId}[/{moduleId}]` from the username.
        username_client: String,
        /// The CONNECT packet's client id.
        client_id: String,
    },
}

/// A parsed MQTT username.
///
/// ```
/// use iot_dm_core::wire::Username;
/// // the C SDK 1.3.9 (lower-case escapes, model id last)
/// let u: Username = "hub.azure-devices.net/thermostat/?api-version=2020-09-30\
///     &DeviceClientType=iothubclient%2f1.3.9%20(native%3b%20x64)\
///     &model-id=dtmi%3acom%3aexample%3aThermostat%3b1".parse()?;
/// assert_eq!(u.host(), "hub.azure-devices.net");
/// assert_eq!(u.device_id().as_str(), "thermostat");
/// assert_eq!(u.module_id(), None);
/// assert_eq!(u.api_version(), Some("2020-09-30"));
/// assert_eq!(u.device_client_type(), Some("iothubclient/1.3.9 (native; x64)"));
/// assert_eq!(u.model_id(), Some("dtmi:com:example:Thermostat;1"));
/// u.check_client_id("thermostat")?;
/// # Ok::<(), iot_dm_core::wire::UsernameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    host: String,
    device_id: DeviceId,
    module_id: Option<ModuleId>,
    api_version: Option<String>,
    device_client_type: Option<String>,
    model_id: Option<String>,
    other: Vec<(String, String)>,
}

impl Username {
    /// Parses a username leniently (see the module docs).
    pub fn parse(username: &str) -> Result<Username, UsernameError> {
        let (host, rest) =
            username
                .split_once('/')
                .ok_or_else(|| UsernameError::MissingDeviceId {
                    username: username.to_string(),
                })?;
        if host.is_empty() {
            return Err(UsernameError::EmptyHost {
                username: username.to_string(),
            });
        }
        let (device, rest) = rest.split_once('/').unwrap_or((rest, ""));
        if device.is_empty() || device.starts_with('?') {
            return Err(UsernameError::MissingDeviceId {
                username: username.to_string(),
            });
        }
        let device_id =
            DeviceId::new(device).map_err(|source| UsernameError::InvalidDeviceId { source })?;
        let (module, query) = split_module(rest);
        let module_id = module
            .map(ModuleId::new)
            .transpose()
            .map_err(|source| UsernameError::InvalidModuleId { source })?;
        let mut parsed = Username {
            host: host.to_string(),
            device_id,
            module_id,
            api_version: None,
            device_client_type: None,
            model_id: None,
            other: Vec::new(),
        };
        parsed.read_query(query.strip_prefix('?').unwrap_or(query))?;
        Ok(parsed)
    }

    fn read_query(&mut self, query: &str) -> Result<(), UsernameError> {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let not_utf8 = |_| UsernameError::NotUtf8 {
                pair: pair.to_string(),
            };
            let key = decode(k).map_err(not_utf8)?;
            let value = decode(v).map_err(not_utf8)?.into_owned();
            let (slot, name) = if key.eq_ignore_ascii_case("api-version") {
                (&mut self.api_version, "api-version")
            } else if key.eq_ignore_ascii_case("DeviceClientType") {
                (&mut self.device_client_type, "DeviceClientType")
            } else if key.eq_ignore_ascii_case("model-id")
                || key.eq_ignore_ascii_case("digital-twin-model-id")
            {
                (&mut self.model_id, "model-id")
            } else {
                self.other.push((key.into_owned(), value));
                continue;
            };
            if slot.is_some() {
                return Err(UsernameError::DuplicateKey { key: name });
            }
            *slot = Some(value);
        }
        Ok(())
    }

    /// A builder for the username a device sends, with `api-version` [`API_VERSION`].
    ///
    /// ```
    /// use iot_dm_core::identity::{DeviceId, ModuleId};
    /// use iot_dm_core::wire::Username;
    /// let u = Username::builder("hub.azure-devices.net", DeviceId::new("dev1")?)
    ///     .device_client_type("iot-dm/0.1.0 (rust; linux)")
    ///     .build()?;
    /// assert_eq!(
    ///     u.to_string(),
    ///     "hub.azure-devices.net/dev1/?api-version=2021-04-12&DeviceClientType=iot-dm%2F0.1.0%20%28rust%3B%20linux%29",
    /// );
    /// let m = Username::builder("hub.azure-devices.net", DeviceId::new("dev1")?)
    ///     .module(ModuleId::new("filter")?)
    ///     .model_id("dtmi:com:example:Thermostat;1")
    ///     .build()?;
    /// assert_eq!(
    ///     m.to_string(),
    ///     "hub.azure-devices.net/dev1/filter/?api-version=2021-04-12&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1",
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(host: impl Into<String>, device_id: DeviceId) -> UsernameBuilder {
        UsernameBuilder {
            username: Username {
                host: host.into(),
                device_id,
                module_id: None,
                api_version: Some(API_VERSION.to_string()),
                device_client_type: None,
                model_id: None,
                other: Vec::new(),
            },
        }
    }

    /// The hub host name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The device id.
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    /// The module id, for module connections.
    pub fn module_id(&self) -> Option<&ModuleId> {
        self.module_id.as_ref()
    }

    /// `api-version`, if sent.
    pub fn api_version(&self) -> Option<&str> {
        self.api_version.as_deref()
    }

    /// `DeviceClientType` (the SDK's user agent), decoded.
    pub fn device_client_type(&self) -> Option<&str> {
        self.device_client_type.as_deref()
    }

    /// `model-id` (or Node's older `digital-twin-model-id`), decoded.
    pub fn model_id(&self) -> Option<&str> {
        self.model_id.as_deref()
    }

    /// The other query parameters, decoded, in order.
    pub fn unknown_params(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.other.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The MQTT client id this username implies: `{deviceId}` or `{deviceId}/{moduleId}`.
    pub fn client_id(&self) -> String {
        match &self.module_id {
            Some(m) => format!("{}/{m}", self.device_id),
            None => self.device_id.to_string(),
        }
    }

    /// Checks that the CONNECT packet's client id names the same device or module.
    pub fn check_client_id(&self, client_id: &str) -> Result<(), UsernameError> {
        let expected = self.client_id();
        if expected == client_id {
            Ok(())
        } else {
            Err(UsernameError::ClientIdMismatch {
                username_client: expected,
                client_id: client_id.to_string(),
            })
        }
    }
}

/// Splits the text after `{host}/{deviceId}/` into an optional module id and the query.
fn split_module(rest: &str) -> (Option<&str>, &str) {
    if rest.is_empty() || rest.starts_with('?') {
        return (None, rest);
    }
    let slash = rest.find('/');
    let question = rest.find('?');
    match slash {
        Some(s) if question.is_none_or(|q| s < q) => {
            let (candidate, after) = (&rest[..s], &rest[s + 1..]);
            // `{module}/?query` is the modern form; an old C query never has a raw `/`
            // before its first `=`, so a candidate with `=` or `&` is really a query
            let looks_like_query = candidate.contains(['=', '&']);
            if !looks_like_query || after.is_empty() || after.starts_with('?') {
                (Some(candidate), after)
            } else {
                (None, rest)
            }
        }
        _ if question.is_none() && !rest.contains(['=', '&']) => (Some(rest), ""),
        _ => (None, rest),
    }
}

impl fmt::Display for Username {
    /// The canonical form: `{host}/{deviceId}[/{moduleId}]/?api-version=..&DeviceClientType=..&model-id=..`
    /// followed by any other parameters, values encoded like Python's `quote`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/", self.host, self.client_id())?;
        let known = [
            ("api-version", &self.api_version),
            ("DeviceClientType", &self.device_client_type),
            ("model-id", &self.model_id),
        ];
        let pairs = known
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
            .chain(self.unknown_params());
        for (i, (k, v)) in pairs.enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            write!(f, "{}={}", encode(k, COMPONENT), encode(v, COMPONENT))?;
        }
        Ok(())
    }
}

impl FromStr for Username {
    type Err = UsernameError;
    fn from_str(s: &str) -> Result<Self, UsernameError> {
        Username::parse(s)
    }
}

/// Builds the username a device sends; see [`Username::builder`].
#[derive(Debug, Clone)]
pub struct UsernameBuilder {
    username: Username,
}

impl UsernameBuilder {
    /// Connect as this module of the device.
    pub fn module(mut self, module: ModuleId) -> Self {
        self.username.module_id = Some(module);
        self
    }

    /// Send this api-version instead of [`API_VERSION`]; `None` sends none.
    pub fn api_version(mut self, version: Option<&str>) -> Self {
        self.username.api_version = version.map(str::to_string);
        self
    }

    /// Send this user agent as `DeviceClientType`.
    pub fn device_client_type(mut self, agent: impl Into<String>) -> Self {
        self.username.device_client_type = Some(agent.into());
        self
    }

    /// Send this Plug and Play model id as `model-id`.
    pub fn model_id(mut self, model_id: impl Into<String>) -> Self {
        self.username.model_id = Some(model_id.into());
        self
    }

    /// The username; fails if the host is empty or contains `/`.
    pub fn build(self) -> Result<Username, UsernameError> {
        let host = &self.username.host;
        if host.is_empty() {
            return Err(UsernameError::EmptyHost {
                username: self.username.to_string(),
            });
        }
        if host.contains('/') {
            return Err(UsernameError::InvalidHost { host: host.clone() });
        }
        Ok(self.username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Username {
        Username::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn python_sdk_usernames() {
        // azure-iot-device 2.14.0's username formula (pipeline_stages_iothub_mqtt.py) with its
        // user agent for Python 3.11.7 on Linux x86_64
        let u = parse("myhub.azure-devices.net/dev-01/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0%283.11.7%3BLinux%20%231%20SMP%20PREEMPT_DYNAMIC%3Bx86_64%29");
        assert_eq!(u.host(), "myhub.azure-devices.net");
        assert_eq!(u.device_id().as_str(), "dev-01");
        assert_eq!(u.module_id(), None);
        assert_eq!(u.api_version(), Some("2019-10-01"));
        assert_eq!(
            u.device_client_type(),
            Some("azure-iot-device-iothub-py/2.14.0(3.11.7;Linux #1 SMP PREEMPT_DYNAMIC;x86_64)")
        );
        assert_eq!(u.model_id(), None);
        // Plug and Play module: api-version 2020-09-30 and model-id last
        let u = parse("myhub.azure-devices.net/dev-01/mod-a/?api-version=2020-09-30&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0%283.11.7%3BLinux%20%231%20SMP%20PREEMPT_DYNAMIC%3Bx86_64%29&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1");
        assert_eq!(u.module_id().map(ModuleId::as_str), Some("mod-a"));
        assert_eq!(u.api_version(), Some("2020-09-30"));
        assert_eq!(u.model_id(), Some("dtmi:com:example:Thermostat;1"));
        assert_eq!(u.client_id(), "dev-01/mod-a");
        u.check_client_id("dev-01/mod-a").unwrap();
    }

    #[test]
    fn node_sdk_usernames() {
        // host + '/' + clientId + '/' + '?api-version=2021-04-12' + modelIdPart
        //   + '&DeviceClientType=' + encodeURIComponent(userAgent)
        let agent =
            "azure-iot-device%2F1.18.3%20(node%20v18.17.1%3B%20Linux%205.15.0-91-generic%3B%20x64)";
        let u = parse(&format!(
            "myhub.azure-devices.net/dev-01/?api-version=2021-04-12&DeviceClientType={agent}"
        ));
        assert_eq!(u.api_version(), Some("2021-04-12"));
        assert_eq!(
            u.device_client_type(),
            Some("azure-iot-device/1.18.3 (node v18.17.1; Linux 5.15.0-91-generic; x64)")
        );
        // Node's model id part is not encoded and comes before DeviceClientType
        let u = parse(&format!("myhub.azure-devices.net/dev-01/?api-version=2021-04-12&digital-twin-model-id=dtmi:com:example:Thermostat;1&DeviceClientType={agent}"));
        assert_eq!(u.model_id(), Some("dtmi:com:example:Thermostat;1"));
        assert!(u.device_client_type().is_some());
    }

    #[test]
    fn c_sdk_usernames() {
        // the C SDK 1.3.9 wire trace (IoT Central thermostat sample), lower-case escapes
        let u = parse("myhub.azure-devices.net/thermostat1/?api-version=2020-09-30&DeviceClientType=iothubclient%2f1.3.9%20(native%3b%20WindowsProduct%3a0x00000004%206.2%3b%20x64%3b%20%7b...%7d)&model-id=dtmi%3acom%3aexample%3aThermostat%3b1");
        assert_eq!(u.device_id().as_str(), "thermostat1");
        assert_eq!(u.api_version(), Some("2020-09-30"));
        assert_eq!(
            u.device_client_type(),
            Some("iothubclient/1.3.9 (native; WindowsProduct:0x00000004 6.2; x64; {...})")
        );
        assert_eq!(u.model_id(), Some("dtmi:com:example:Thermostat;1"));
        // C module form: "{host}/{device}/{module}/" then "?api-version=..."
        let u = parse("myhub.azure-devices.net/d1/m1/?api-version=2020-09-30&DeviceClientType=iothubclient%2f1.3.9");
        assert_eq!(u.module_id().map(ModuleId::as_str), Some("m1"));
    }

    #[test]
    fn old_c_sdk_usernames_without_question_mark() {
        // 2016-2018 C SDKs (issue Azure/azure-iot-sdk-c#373)
        let u = parse("myhub.azure-devices.net/dev1/api-version=2016-11-14&DeviceClientType=iothubclient%2f1.1.27%20(Linux%3b%20armv7l)");
        assert_eq!(u.device_id().as_str(), "dev1");
        assert_eq!(u.module_id(), None);
        assert_eq!(u.api_version(), Some("2016-11-14"));
        assert_eq!(
            u.device_client_type(),
            Some("iothubclient/1.1.27 (Linux; armv7l)")
        );
        // the oldest: "%s.%s/%s/DeviceClientType=%s%%2F%s"
        let u = parse("myhub.azure-devices.net/dev1/DeviceClientType=iothubclient%2F1.0.0");
        assert_eq!(u.module_id(), None);
        assert_eq!(u.api_version(), None);
        assert_eq!(u.device_client_type(), Some("iothubclient/1.0.0"));
        // a raw `/` in an old-form value does not turn the query into a module id
        let u = parse("h/dev1/api-version=2016-11-14&DeviceClientType=custom/1.0");
        assert_eq!(u.module_id(), None);
        assert_eq!(u.device_client_type(), Some("custom/1.0"));
    }

    #[test]
    fn lenient_forms() {
        // the docs' minimal form, no query, no trailing slash, any key case and order
        for s in [
            "h.net/d1/?api-version=2021-04-12",
            "h.net/d1/?API-VERSION=2021-04-12",
            "h.net/d1/?foo=1&api-version=2021-04-12&&",
        ] {
            assert_eq!(parse(s).api_version(), Some("2021-04-12"), "{s}");
        }
        for s in ["h.net/d1", "h.net/d1/", "h.net/d1/?"] {
            let u = parse(s);
            assert_eq!(u.device_id().as_str(), "d1");
            assert_eq!(u.module_id(), None);
            assert_eq!(u.api_version(), None);
        }
        for s in ["h.net/d1/m1", "h.net/d1/m1/", "h.net/d1/m1/?"] {
            assert_eq!(
                parse(s).module_id().map(ModuleId::as_str),
                Some("m1"),
                "{s}"
            );
        }
        // module ids may contain `=`; with the modern `/?` they still parse
        assert_eq!(
            parse("h/d1/a=b/?api-version=1")
                .module_id()
                .map(ModuleId::as_str),
            Some("a=b")
        );
        let u = parse("h/d1/?x=%7E&flag&api-version=1");
        assert_eq!(
            u.unknown_params().collect::<Vec<_>>(),
            [("x", "~"), ("flag", "")]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            Username::parse("justahost"),
            Err(UsernameError::MissingDeviceId {
                username: "justahost".to_string()
            })
        );
        assert!(matches!(
            Username::parse("/d1/?api-version=1"),
            Err(UsernameError::EmptyHost { .. })
        ));
        assert!(matches!(
            Username::parse("h//?api-version=1"),
            Err(UsernameError::MissingDeviceId { .. })
        ));
        assert!(matches!(
            Username::parse("h/?api-version=1"),
            Err(UsernameError::MissingDeviceId { .. })
        ));
        assert!(matches!(
            Username::parse("h/bad id/?api-version=1"),
            Err(UsernameError::InvalidDeviceId { .. })
        ));
        assert!(matches!(
            Username::parse("h/d1/bad<m/?api-version=1"),
            Err(UsernameError::InvalidModuleId { .. })
        ));
        assert_eq!(
            Username::parse("h/d1/?api-version=1&api-version=2"),
            Err(UsernameError::DuplicateKey { key: "api-version" })
        );
        assert_eq!(
            Username::parse("h/d1/?model-id=a&digital-twin-model-id=b"),
            Err(UsernameError::DuplicateKey { key: "model-id" })
        );
        assert_eq!(
            Username::parse("h/d1/?DeviceClientType=%FF"),
            Err(UsernameError::NotUtf8 {
                pair: "DeviceClientType=%FF".to_string()
            })
        );
        assert_eq!(
            parse("h/d1/m1/").check_client_id("d1"),
            Err(UsernameError::ClientIdMismatch {
                username_client: "d1/m1".to_string(),
                client_id: "d1".to_string()
            })
        );
    }

    #[test]
    fn builder_and_round_trip() {
        let d = DeviceId::new("dev-01").unwrap();
        let u = Username::builder("myhub.azure-devices.net", d.clone())
            .device_client_type("iot-dm/0.1.0")
            .build()
            .unwrap();
        assert_eq!(
            u.to_string(),
            "myhub.azure-devices.net/dev-01/?api-version=2021-04-12&DeviceClientType=iot-dm%2F0.1.0"
        );
        assert_eq!(parse(&u.to_string()), u);
        let bare = Username::builder("h", d.clone())
            .api_version(None)
            .build()
            .unwrap();
        assert_eq!(bare.to_string(), "h/dev-01/");
        assert_eq!(parse(&bare.to_string()), bare);
        assert!(matches!(
            Username::builder("", d.clone()).build(),
            Err(UsernameError::EmptyHost { .. })
        ));
        assert_eq!(
            Username::builder("a/b", d).build(),
            Err(UsernameError::InvalidHost {
                host: "a/b".to_string()
            })
        );
        // every SDK form re-renders canonically and parses back to the same value
        let c = parse("h/d1/api-version=2016-11-14&DeviceClientType=iothubclient%2f1.1.27%20(Linux%3b%20armv7l)&x=1");
        assert_eq!(
            c.to_string(),
            "h/d1/?api-version=2016-11-14&DeviceClientType=iothubclient%2F1.1.27%20%28Linux%3B%20armv7l%29&x=1"
        );
        assert_eq!(parse(&c.to_string()), c);
    }
}
