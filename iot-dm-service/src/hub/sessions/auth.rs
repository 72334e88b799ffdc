//! Device authentication: SAS tokens and X.509 certificates against the registry.

use iot_dm_core::clock::Timestamp;
use iot_dm_core::link::{ConnectRefused, ConnectRequest, Credentials};
use iot_dm_core::twin::{AuthenticationType, DeviceStatus, X509Thumbprint};
use iot_dm_core::wire::{self, SasToken, SymmetricKey};

use crate::hub::registry::thumbprints;
use crate::hub::Hub;

fn refuse(reason: impl Into<String>) -> ConnectRefused {
    ConnectRefused::NotAuthorized {
        reason: reason.into(),
    }
}

/// A self-signed device's certificate, by its SHA-1 or SHA-256 thumbprint, against either of
/// the registered ones (compared without regard to case).
fn self_signed(
    registered: &X509Thumbprint,
    sha1: &str,
    sha256: &str,
) -> Result<Option<Timestamp>, ConnectRefused> {
    let ok = [
        &registered.primary_thumbprint,
        &registered.secondary_thumbprint,
    ]
    .into_iter()
    .flatten()
    .any(|want| want.eq_ignore_ascii_case(sha1) || want.eq_ignore_ascii_case(sha256));
    if ok {
        Ok(None)
    } else {
        Err(refuse("certificate thumbprint does not match"))
    }
}

impl Hub {
    /// Checks a device's credentials against the registry; returns when they expire.
    pub(crate) fn authenticate(
        &self,
        req: &ConnectRequest,
    ) -> Result<Option<Timestamp>, ConnectRefused> {
        let id = req.device_id.as_str();
        if req.module_id.is_some() {
            return Err(refuse("module identities are not supported"));
        }
        let device = self
            .get_device(id)
            .map_err(|_| refuse(format!("unknown device {id}")))?;
        if !device.state().can_connect() || device.identity.status != DeviceStatus::Enabled {
            return Err(refuse(format!(
                "device {id} is {}",
                device.state().as_str()
            )));
        }
        let auth = device.authentication();
        match (&req.credentials, auth.kind) {
            (Credentials::Sas(token), AuthenticationType::Sas) => {
                let token = SasToken::parse(token).map_err(|e| refuse(e.to_string()))?;
                if token.key_name().is_some() {
                    return Err(refuse("policy tokens cannot open device sessions here"));
                }
                // the resource must be this hub's host name, optionally with this device's path
                token
                    .check_resource(&wire::device_resource_uri(self.host_name(), &req.device_id))
                    .map_err(|e| refuse(e.to_string()))?;
                let now = self.now();
                let keys = [
                    &auth.symmetric_key.primary_key,
                    &auth.symmetric_key.secondary_key,
                ];
                let mut last_err = refuse("no key");
                for key in keys.into_iter().flatten() {
                    let key = SymmetricKey::new(key.clone()).map_err(|e| refuse(e.to_string()))?;
                    match token.verify(&key, now) {
                        Ok(()) => return Ok(Some(token.expiry())),
                        Err(e) => last_err = refuse(e.to_string()),
                    }
                }
                Err(last_err)
            }
            (Credentials::X509 { sha1, sha256 }, AuthenticationType::SelfSigned) => {
                self_signed(&auth.x509_thumbprint, sha1, sha256)
            }
            (Credentials::X509Chain(chain), AuthenticationType::SelfSigned) => {
                let (sha1, sha256) = chain
                    .first()
                    .map(|der| thumbprints(der))
                    .ok_or_else(|| refuse("no client certificate was presented"))?;
                self_signed(&auth.x509_thumbprint, &sha1, &sha256)
            }
            (Credentials::X509Chain(chain), AuthenticationType::CertificateAuthority) => {
                self.verify_ca_chain(&req.device_id, chain)
                    .map_err(refuse)?;
                Ok(None)
            }
            (_, kind) => Err(refuse(format!(
                "device {id} authenticates with {}, which these credentials are not",
                kind.as_str()
            ))),
        }
    }
}
