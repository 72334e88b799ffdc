//! Who the device is and how it proves it.

use std::fmt;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::identity::{DeviceId, ModuleId};
use iot_dm_core::link::{ConnectRequest, Credentials as LinkCredentials};
use iot_dm_core::wire::{
    device_resource_uri, module_resource_uri, DeviceConnectionString, DeviceCredential, SasToken,
    SymmetricKey,
};

use crate::config::Options;
use crate::error::Error;

/// How the device authenticates.
#[derive(Clone)]
enum Auth {
    /// A shared access key: the client signs SAS tokens with it and renews them.
    Key {
        key: SymmetricKey,
        /// The policy name, for a policy key with DeviceConnect.
        key_name: Option<String>,
    },
    /// A ready token; it cannot be renewed.
    Token(SasToken),
    /// An X.509 certificate, identified by its thumbprints.
    X509 { sha1: String, sha256: String },
}

/// A device's (or module's) identity and credentials.
///
/// ```
/// use iot_dm_device::DeviceCredentials;
/// let creds = DeviceCredentials::from_connection_string(
///     "HostName=myhub.example.net;DeviceId=thermostat-1;SharedAccessKey=aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=",
/// )?;
/// assert_eq!(creds.device_id().as_str(), "thermostat-1");
/// assert_eq!(creds.host_name(), Some("myhub.example.net"));
/// assert!(!format!("{creds:?}").contains("aW90")); // the key never shows
/// # Ok::<(), iot_dm_device::Error>(())
/// ```
#[derive(Clone)]
pub struct DeviceCredentials {
    host: Option<String>,
    device_id: DeviceId,
    module_id: Option<ModuleId>,
    auth: Auth,
}

impl fmt::Debug for DeviceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::Key { .. } => "shared access key",
            Auth::Token(_) => "SAS token",
            Auth::X509 { .. } => "X.509",
        };
        f.debug_struct("DeviceCredentials")
            .field("host", &self.host)
            .field("device_id", &self.device_id)
            .field("module_id", &self.module_id)
            .field("auth", &auth)
            .finish()
    }
}

fn config(field: &'static str, reason: impl fmt::Display) -> Error {
    Error::Config {
        field,
        reason: reason.to_string(),
    }
}

impl DeviceCredentials {
    /// From a device or module connection string:
    /// `HostName=..;DeviceId=..[;ModuleId=..];SharedAccessKey=..`, or with
    /// `SharedAccessSignature=..` (a ready token) or `x509=true` instead of the key. For X.509,
    /// use [`DeviceCredentials::x509`], which also takes the certificate's thumbprints.
    pub fn from_connection_string(s: &str) -> Result<DeviceCredentials, Error> {
        let cs = DeviceConnectionString::parse(s).map_err(|e| config("connection string", e))?;
        let auth = match cs.credential() {
            DeviceCredential::SharedAccessKey { key, key_name } => Auth::Key {
                key: key.clone(),
                key_name: key_name.clone(),
            },
            DeviceCredential::SharedAccessSignature(token) => Auth::Token(token.clone()),
            _ => {
                return Err(config(
                    "connection string",
                    "x509=true needs the certificate thumbprints; use DeviceCredentials::x509",
                ))
            }
        };
        Ok(DeviceCredentials {
            host: Some(cs.host_name().to_string()),
            device_id: cs.device_id().clone(),
            module_id: cs.module_id().cloned(),
            auth,
        })
    }

    /// A device that signs SAS tokens with its shared access key (base64). Tokens are
    /// generated for `{host}/devices/{id}` with the configured time to live and renewed by
    /// reconnecting before they expire.
    pub fn symmetric_key(
        host: impl Into<String>,
        device_id: DeviceId,
        key: &str,
    ) -> Result<DeviceCredentials, Error> {
        let key = SymmetricKey::new(key).map_err(|e| config("shared access key", e))?;
        Ok(DeviceCredentials {
            host: Some(host.into()),
            device_id,
            module_id: None,
            auth: Auth::Key {
                key,
                key_name: None,
            },
        })
    }

    /// A device with a ready SAS token (`SharedAccessSignature sr=..&sig=..&se=..`). The
    /// client cannot renew it: once it expires the hub refuses the next reconnect and the
    /// client closes.
    pub fn sas_token(device_id: DeviceId, token: &str) -> Result<DeviceCredentials, Error> {
        let token = SasToken::parse(token).map_err(|e| config("sas token", e))?;
        Ok(DeviceCredentials {
            host: None,
            device_id,
            module_id: None,
            auth: Auth::Token(token),
        })
    }

    /// A device with an X.509 client certificate, identified by its SHA-1 and SHA-256
    /// thumbprints (hex). The certificate itself is the transport's business.
    pub fn x509(
        device_id: DeviceId,
        sha1: impl Into<String>,
        sha256: impl Into<String>,
    ) -> DeviceCredentials {
        DeviceCredentials {
            host: None,
            device_id,
            module_id: None,
            auth: Auth::X509 {
                sha1: sha1.into(),
                sha256: sha256.into(),
            },
        }
    }

    /// The same credentials for a module of the device.
    pub fn with_module(mut self, module_id: ModuleId) -> DeviceCredentials {
        self.module_id = Some(module_id);
        self
    }

    /// The hub host name, when known (it is for key-based credentials).
    pub fn host_name(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The device id.
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    /// The module id, for module identities.
    pub fn module_id(&self) -> Option<&ModuleId> {
        self.module_id.as_ref()
    }

    /// Whether the client can renew the credentials on its own.
    pub fn is_renewable(&self) -> bool {
        matches!(self.auth, Auth::Key { .. })
    }

    /// The SAS resource URI: `{host}/devices/{id}[/modules/{m}]`.
    fn resource_uri(&self, host: &str) -> String {
        match &self.module_id {
            Some(m) => module_resource_uri(host, &self.device_id, m),
            None => device_resource_uri(host, &self.device_id),
        }
    }

    /// A connect request at `now`, and when to renew its token (for renewable credentials).
    pub(crate) fn request(
        &self,
        now: Timestamp,
        opts: &Options,
    ) -> Result<(ConnectRequest, Option<Timestamp>), Error> {
        let (credentials, renew_at) = match &self.auth {
            Auth::Key { key, key_name } => {
                let host = self.host.as_deref().ok_or_else(|| {
                    config("host name", "a shared access key needs the hub host name")
                })?;
                let expiry = now + opts.sas_ttl;
                let token =
                    SasToken::generate(&self.resource_uri(host), key, expiry, key_name.as_deref());
                // renew at 80 % of the lifetime, as the C SDK does
                let renew_at = now + opts.sas_ttl.mul_f64(0.8);
                (
                    LinkCredentials::Sas(token.as_str().to_string()),
                    Some(renew_at),
                )
            }
            Auth::Token(token) => (LinkCredentials::Sas(token.as_str().to_string()), None),
            Auth::X509 { sha1, sha256 } => (
                LinkCredentials::X509 {
                    sha1: sha1.clone(),
                    sha256: sha256.clone(),
                },
                None,
            ),
        };
        let request = ConnectRequest {
            device_id: self.device_id.clone(),
            module_id: self.module_id.clone(),
            credentials,
            clean_session: opts.clean_session,
        };
        Ok((request, renew_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const KEY: &str = "aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=";

    fn opts() -> Options {
        Options {
            sas_ttl: Duration::from_secs(100),
            ..Options::default()
        }
    }

    #[test]
    fn key_credentials_sign_tokens_for_the_identity() {
        let creds = DeviceCredentials::from_connection_string(&format!(
            "HostName=hub.test;DeviceId=d1;ModuleId=m1;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert!(creds.is_renewable());
        let now = Timestamp::from_unix_secs(1_000);
        let (req, renew_at) = creds.request(now, &opts()).unwrap();
        assert_eq!(req.module_id.as_ref().map(|m| m.as_str()), Some("m1"));
        assert_eq!(renew_at, Some(Timestamp::from_unix_secs(1_080)));
        let LinkCredentials::Sas(token) = req.credentials else {
            panic!("not a SAS token")
        };
        let token = SasToken::parse(&token).unwrap();
        assert_eq!(token.resource_uri(), "hub.test/devices/d1/modules/m1");
        assert_eq!(token.expiry_unix_secs(), 1_100);
        token.verify(&SymmetricKey::new(KEY).unwrap(), now).unwrap();
    }

    #[test]
    fn ready_tokens_and_certificates_are_passed_through() {
        let device = DeviceId::new("d1").unwrap();
        let text = SasToken::generate(
            "hub.test/devices/d1",
            &SymmetricKey::new(KEY).unwrap(),
            Timestamp::from_unix_secs(5_000),
            None,
        );
        let creds = DeviceCredentials::sas_token(device.clone(), text.as_str()).unwrap();
        assert!(!creds.is_renewable());
        let (req, renew_at) = creds.request(Timestamp::EPOCH, &opts()).unwrap();
        assert_eq!(req.credentials, LinkCredentials::Sas(text.as_str().into()));
        assert_eq!(renew_at, None);

        let creds = DeviceCredentials::x509(device, "AB12", "CD34");
        let (req, _) = creds.request(Timestamp::EPOCH, &opts()).unwrap();
        assert_eq!(
            req.credentials,
            LinkCredentials::X509 {
                sha1: "AB12".into(),
                sha256: "CD34".into()
            }
        );
    }

    #[test]
    fn unusable_credentials_are_config_errors() {
        let device = DeviceId::new("d1").unwrap();
        for err in [
            DeviceCredentials::from_connection_string("HostName=h;DeviceId=d1;x509=true")
                .unwrap_err(),
            DeviceCredentials::from_connection_string("HostName=h;SharedAccessKey=AAAA")
                .unwrap_err(),
            DeviceCredentials::sas_token(device.clone(), "not a token").unwrap_err(),
            DeviceCredentials::symmetric_key("h", device, "not base64!").unwrap_err(),
        ] {
            assert!(matches!(err, Error::Config { .. }), "{err:?}");
        }
    }
}
