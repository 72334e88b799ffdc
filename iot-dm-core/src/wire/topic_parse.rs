//! Helpers shared by the topic parsers ([`super::DeviceTopic`], [`super::HubTopic`]).
//!
//! `$iothub/...` topics are split at the first `?`; the query is a set of `&`-separated
//! `key=value` pairs in any order whose keys are percent-decoded and compared without their
//! leading `$` (as the Python SDK does). Unknown keys are ignored. The `$rid` value is kept
//! verbatim so it can be echoed byte-for-byte. A trailing `/` before the `?` is optional.

use super::encoding::{decode, split_once_opt};
use super::property_bag::PropertyBag;
use super::request_id::RequestId;
use super::topic::{IdForm, TopicError};
use crate::identity::{DeviceId, ModuleId};

/// The `/`-separated levels of a path, without one trailing empty level.
pub(super) fn levels(path: &str) -> Vec<&str> {
    let path = path.strip_suffix('/').unwrap_or(path);
    path.split('/').collect()
}

pub(super) fn decode_level(
    topic: &str,
    what: &'static str,
    level: &str,
) -> Result<String, TopicError> {
    match decode(level) {
        Ok(s) if !s.is_empty() => Ok(s.into_owned()),
        _ => Err(TopicError::InvalidLevel {
            topic: topic.to_string(),
            what,
            level: level.to_string(),
        }),
    }
}

pub(super) fn parse_bag(topic: &str, bag: &str) -> Result<PropertyBag, TopicError> {
    // The MQTT doc's C2D example starts the bag with `?`; no SDK key starts with one.
    let bag = bag.strip_prefix('?').unwrap_or(bag);
    PropertyBag::parse(bag).map_err(|source| TopicError::PropertyBag {
        topic: topic.to_string(),
        source,
    })
}

fn describe(device: &str, module: Option<&str>) -> String {
    match module {
        Some(m) => format!("module {device}/{m}"),
        None => format!("device {device}"),
    }
}

/// Checks that the id levels `d`/`m` of `topic` name the connected identity.
pub(super) fn check_identity(
    topic: &str,
    d: &str,
    m: Option<&str>,
    device: &DeviceId,
    module: Option<&ModuleId>,
) -> Result<IdForm, TopicError> {
    let device_form = IdForm::detect(d, device.as_str());
    let form = match (m, module) {
        (None, None) => device_form,
        (Some(m), Some(module)) => match (device_form, IdForm::detect(m, module.as_str())) {
            (Some(IdForm::Literal), Some(IdForm::Literal)) => Some(IdForm::Literal),
            (Some(_), Some(_)) => Some(IdForm::Encoded),
            _ => None,
        },
        _ => None,
    };
    form.ok_or_else(|| TopicError::IdentityMismatch {
        topic: topic.to_string(),
        found: describe(
            &decode(d).unwrap_or_else(|_| d.into()),
            m.map(|m| decode(m).unwrap_or_else(|_| m.into())).as_deref(),
        ),
        expected: describe(device.as_str(), module.map(ModuleId::as_str)),
    })
}

/// The recognised keys of an `$iothub` topic query.
#[derive(Default)]
pub(super) struct Query<'a> {
    rid: Option<&'a str>,
    version: Option<&'a str>,
}

impl<'a> Query<'a> {
    pub(super) fn parse(topic: &str, query: &'a str) -> Result<Query<'a>, TopicError> {
        let mut q = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = split_once_opt(pair, '=');
            let key = decode(k).unwrap_or_else(|_| k.into());
            let (slot, name) = match key.strip_prefix('$').unwrap_or(&key) {
                "rid" => (&mut q.rid, "$rid"),
                "version" => (&mut q.version, "$version"),
                _ => continue,
            };
            if slot.is_some() {
                return Err(TopicError::DuplicateQueryKey {
                    topic: topic.to_string(),
                    key: name,
                });
            }
            *slot = Some(v.unwrap_or(""));
        }
        Ok(q)
    }

    pub(super) fn rid(&self, topic: &str) -> Result<RequestId, TopicError> {
        let rid = self.rid.ok_or_else(|| TopicError::MissingQueryKey {
            topic: topic.to_string(),
            key: "$rid",
        })?;
        RequestId::new(rid)
    }

    pub(super) fn version(&self, topic: &str) -> Result<Option<u64>, TopicError> {
        self.version
            .map(|v| {
                // `u64::from_str` accepts a leading `+`; a version is plain digits
                if v.bytes().all(|b| b.is_ascii_digit()) {
                    v.parse().ok()
                } else {
                    None
                }
                .ok_or_else(|| TopicError::InvalidVersion {
                    topic: topic.to_string(),
                    version: v.to_string(),
                })
            })
            .transpose()
    }
}
