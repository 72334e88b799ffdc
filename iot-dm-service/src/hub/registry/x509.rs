//! X.509 device authentication: thumbprints of self-signed certificates, and certificates
//! chained to a registered certification authority (CA).
//!
//! A device registered as `certificateAuthority` connects with a TLS client certificate whose
//! chain leads to one of the hub's registered CA certificates (at most [`MAX_CAS`], as in IoT
//! Hub), that is valid now and allowed for client authentication, and whose subject common
//! name (CN) is the device id. Registered CAs are stored durably and survive restarts.

use std::time::Duration;

use async_trait::async_trait;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};
use sha1::Digest as _;

use iot_dm_core::identity::DeviceId;

use crate::api::CertificateApi;
use crate::hub::engine::{MetaCollection, MetaRecord};
use crate::hub::error::HubError;
use crate::hub::Hub;

/// Most CA certificates a hub registers.
pub const MAX_CAS: usize = 25;

/// A registered CA certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaCertificate {
    /// The name it was registered under.
    pub name: String,
    /// SHA-256 thumbprint (upper-case hex).
    pub sha256_thumbprint: String,
    /// The certificate, PEM.
    pub pem: String,
}

/// A registered CA with its DER.
#[derive(Debug)]
pub(crate) struct CaEntry {
    ca: CaCertificate,
    der: Vec<u8>,
}

impl CaEntry {
    fn new(name: &str, pem: String) -> Result<CaEntry, HubError> {
        let der = parse_pem(&pem)?;
        let (_, sha256) = thumbprints(&der);
        Ok(CaEntry {
            ca: CaCertificate {
                name: name.to_string(),
                sha256_thumbprint: sha256,
                pem,
            },
            der,
        })
    }
}

impl MetaRecord for CaEntry {
    const PREFIX: &'static str = "ca/";
    const WHAT: &'static str = "CA certificate";

    fn name(&self) -> &str {
        &self.ca.name
    }

    /// Stored as its PEM text.
    fn encode(&self) -> Result<Vec<u8>, HubError> {
        Ok(self.ca.pem.as_bytes().to_vec())
    }

    fn decode(name: &str, bytes: &[u8]) -> Result<Self, HubError> {
        let pem = String::from_utf8(bytes.to_vec()).map_err(|_| HubError::Internal {
            message: "not text".into(),
        })?;
        CaEntry::new(name, pem)
    }
}

/// The registered CAs, by name.
pub(crate) type CaRegistry = MetaCollection<CaEntry>;

/// SHA-1 and SHA-256 thumbprints of a DER certificate, upper-case hex (IoT Hub's form).
pub fn thumbprints(der: &[u8]) -> (String, String) {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02X}")).collect::<String>();
    (
        hex(&sha1::Sha1::digest(der)),
        hex(&sha2::Sha256::digest(der)),
    )
}

/// The one certificate in `pem`, as DER.
fn parse_pem(pem: &str) -> Result<Vec<u8>, HubError> {
    use rustls_pki_types::pem::PemObject;
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes());
    let first = certs
        .next()
        .ok_or_else(|| HubError::invalid("certificate", "no PEM certificate found"))?
        .map_err(|e| HubError::invalid("certificate", format!("unreadable PEM: {e}")))?;
    if certs.next().is_some() {
        return Err(HubError::invalid(
            "certificate",
            "exactly one certificate expected",
        ));
    }
    webpki::anchor_from_trusted_cert(&first)
        .map_err(|e| HubError::invalid("certificate", format!("not a usable certificate: {e}")))?;
    Ok(first.to_vec())
}

/// Reads one DER TLV: (tag, content, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subject common name of a DER certificate.
pub(crate) fn subject_common_name(der: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    let (SEQUENCE, cert, _) = tlv(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // optional [0] version, then serial, signature algorithm, issuer, validity, subject
    let (tag, _, r) = tlv(rest)?;
    rest = if tag == 0xA0 { tlv(r)?.2 } else { r };
    for _ in 0..3 {
        rest = tlv(rest)?.2;
    }
    let (SEQUENCE, subject, _) = tlv(rest)? else {
        return None;
    };
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (SET, set, next) = tlv(rdns)? else {
            return None;
        };
        rdns = next;
        let mut attrs = set;
        while !attrs.is_empty() {
            let (SEQUENCE, attr, next) = tlv(attrs)? else {
                return None;
            };
            attrs = next;
            let (0x06, oid, value) = tlv(attr)? else {
                return None;
            };
            if oid == CN_OID {
                let (tag, text, _) = tlv(value)?;
                // UTF8String, PrintableString, TeletexString, IA5String
                return match tag {
                    0x0C | 0x13 | 0x14 | 0x16 => String::from_utf8(text.to_vec()).ok(),
                    _ => None,
                };
            }
        }
    }
    None
}

impl Hub {
    /// The registered CA certificates, sorted by name.
    pub fn ca_certificates(&self) -> Vec<CaCertificate> {
        self.inner
            .cas
            .read()
            .values()
            .map(|e| e.ca.clone())
            .collect()
    }

    /// Checks a client certificate chain (device certificate first) for a CA-signed device.
    pub(crate) fn verify_ca_chain(
        &self,
        device: &DeviceId,
        chain: &[Vec<u8>],
    ) -> Result<(), String> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or("no client certificate was presented")?;
        let cas = self.inner.cas.read();
        if cas.is_empty() {
            return Err("the hub has no registered CA certificate".into());
        }
        let ca_ders: Vec<CertificateDer<'_>> = cas
            .values()
            .map(|e| CertificateDer::from(e.der.as_slice()))
            .collect();
        let anchors = ca_ders
            .iter()
            .map(webpki::anchor_from_trusted_cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("a registered CA is unusable: {e}"))?;
        let leaf_der = CertificateDer::from(leaf.as_slice());
        let ee = webpki::EndEntityCert::try_from(&leaf_der)
            .map_err(|e| format!("unreadable client certificate: {e}"))?;
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|d| CertificateDer::from(d.as_slice()))
            .collect();
        let secs = u64::try_from(self.now().unix_secs()).unwrap_or(0);
        let algs = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all;
        ee.verify_for_usage(
            algs,
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(secs)),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| format!("certificate chain not accepted: {e:?}"))?;
        match subject_common_name(leaf) {
            Some(cn) if cn == device.as_str() => Ok(()),
            Some(cn) => Err(format!(
                "certificate common name {cn:?} is not the device id {device}"
            )),
            None => Err("the certificate has no subject common name".into()),
        }
    }
}

/// The CA certificates of the embedded hub; the list stays a synchronous inherent method for
/// in-process callers.
#[async_trait]
impl CertificateApi for Hub {
    /// Registers a CA certificate (PEM) under `name`; devices registered as
    /// `certificateAuthority` may then connect with certificates it issued (directly or through
    /// intermediates the device sends). Replaces a CA of the same name.
    async fn add_ca_certificate(&self, name: &str, pem: &str) -> Result<CaCertificate, HubError> {
        if name.is_empty()
            || name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(HubError::invalid(
                "name",
                "1 to 128 ASCII letters, digits, '-', '_' or '.'",
            ));
        }
        let entry = CaEntry::new(name, pem.to_string())?;
        self.inner
            .cas
            .put_with(
                &self.inner.committer,
                |cas| {
                    if !cas.contains_key(name) && cas.len() >= MAX_CAS {
                        return Err(HubError::invalid(
                            "name",
                            format!("the hub already has {MAX_CAS} CA certificates"),
                        ));
                    }
                    Ok(entry)
                },
                |e| e.ca.clone(),
            )
            .await
    }

    async fn ca_certificates(&self) -> Result<Vec<CaCertificate>, HubError> {
        Ok(Hub::ca_certificates(self))
    }

    /// Removes a registered CA certificate; devices it vouched for can no longer connect.
    async fn remove_ca_certificate(&self, name: &str) -> Result<(), HubError> {
        self.inner
            .cas
            .delete_with(&self.inner.committer, name, |ca, _| match ca {
                Some(_) => Ok(()),
                None => Err(HubError::invalid(
                    "name",
                    format!("no CA certificate named {name:?}"),
                )),
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_cn(cn: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Contoso");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_the_subject_common_name() {
        assert_eq!(
            subject_common_name(&cert_with_cn("pump-42")).as_deref(),
            Some("pump-42")
        );
        assert_eq!(subject_common_name(b"not der"), None);
        assert_eq!(subject_common_name(&[]), None);
        let mut truncated = cert_with_cn("x");
        truncated.truncate(40);
        assert_eq!(subject_common_name(&truncated), None);
    }

    #[test]
    fn thumbprints_are_upper_case_hex() {
        let (s1, s256) = thumbprints(b"abc");
        assert_eq!(s1, "A9993E364706816ABA3E25717850C26C9CD0D89D");
        assert_eq!(s256.len(), 64);
    }
}
