//! The hub-side parser of what a device publishes: [`DeviceTopic`].

use super::encoding::split_once_opt;
use super::property_bag::PropertyBag;
use super::request_id::RequestId;
use super::topic::TopicError;
use super::topic_parse::{check_identity, levels, parse_bag, Query};
use crate::identity::{DeviceId, ModuleId};

/// A topic a device publishes to, as the hub sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceTopic {
    /// `$iothub/twin/GET/?$rid={rid}`.
    TwinGet {
        /// The request id to echo.
        rid: RequestId,
    },
    /// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`.
    TwinPatchReported {
        /// The request id to echo.
        rid: RequestId,
    },
    /// `$iothub/methods/res/{status}/?$rid={rid}`.
    MethodResponse {
        /// The status the device chose.
        status: i32,
        /// The request id of the method request.
        rid: RequestId,
    },
    /// `devices/{d}[/modules/{m}]/messages/events/{bag}`.
    Telemetry {
        /// The sending device (always the connected one).
        device: DeviceId,
        /// The sending module, for module connections.
        module: Option<ModuleId>,
        /// The message properties.
        bag: PropertyBag,
    },
}

/// What the hub-side parser expects.
const DEVICE_TOPICS: &str = "a topic a device publishes to ($iothub/twin/GET/, $iothub/twin/PATCH/properties/reported/, $iothub/methods/res/{status}/, devices/{id}[/modules/{id}]/messages/events/)";

impl DeviceTopic {
    /// Parses a topic published by the device or module authenticated as `device`/`module`.
    ///
    /// A telemetry topic must name exactly the connected identity (ids either literal or
    /// percent-encoded); a module may not publish as its device, nor a device as a module.
    /// Everything after `messages/events/` is the property bag, so a bag whose values were not
    /// encoded (the C SDK's default) and contain `/` still parses.
    ///
    /// ```
    /// use iot_dm_core::identity::DeviceId;
    /// use iot_dm_core::wire::{DeviceTopic, TopicError};
    /// let me = DeviceId::new("dev1")?;
    /// match DeviceTopic::parse("$iothub/twin/GET/?$rid=7c9e6679-7425-40de-944b-e07fc1f90ae7", &me, None) {
    ///     Ok(DeviceTopic::TwinGet { rid }) => assert_eq!(rid.as_str(), "7c9e6679-7425-40de-944b-e07fc1f90ae7"),
    ///     other => panic!("{other:?}"),
    /// }
    /// let t = DeviceTopic::parse("devices/dev1/messages/events/%24.mid=1&k=v", &me, None);
    /// assert!(matches!(t, Ok(DeviceTopic::Telemetry { ref bag, .. }) if bag.message_id() == Some("1")));
    /// let other = DeviceTopic::parse("devices/dev2/messages/events/", &me, None);
    /// assert!(matches!(other, Err(TopicError::IdentityMismatch { .. })));
    /// # Ok::<(), iot_dm_core::identity::IdError>(())
    /// ```
    pub fn parse(
        topic: &str,
        device: &DeviceId,
        module: Option<&ModuleId>,
    ) -> Result<DeviceTopic, TopicError> {
        let unrecognized = || TopicError::Unrecognized {
            topic: topic.to_string(),
            expected: DEVICE_TOPICS,
        };
        if topic.starts_with("$iothub/") {
            let (path, query) = split_once_opt(topic, '?');
            let query = Query::parse(topic, query.unwrap_or(""))?;
            match levels(path).as_slice() {
                ["$iothub", "twin", "GET"] => Ok(DeviceTopic::TwinGet {
                    rid: query.rid(topic)?,
                }),
                ["$iothub", "twin", "PATCH", "properties", "reported"] => {
                    Ok(DeviceTopic::TwinPatchReported {
                        rid: query.rid(topic)?,
                    })
                }
                ["$iothub", "methods", "res", status] => Ok(DeviceTopic::MethodResponse {
                    status: status.parse().map_err(|_| TopicError::InvalidStatus {
                        topic: topic.to_string(),
                        status: status.to_string(),
                        range: "-2147483648..=2147483647",
                    })?,
                    rid: query.rid(topic)?,
                }),
                _ => Err(unrecognized()),
            }
        } else if let Some(rest) = topic.strip_prefix("devices/") {
            let (d, rest) = rest.split_once('/').ok_or_else(unrecognized)?;
            let (m, rest) = match rest.strip_prefix("modules/") {
                Some(rest) => {
                    let (m, rest) = rest.split_once('/').ok_or_else(unrecognized)?;
                    (Some(m), rest)
                }
                None => (None, rest),
            };
            let bag = match rest.strip_prefix("messages/events") {
                Some("") => "",
                Some(bag) => bag.strip_prefix('/').ok_or_else(unrecognized)?,
                None => return Err(unrecognized()),
            };
            check_identity(topic, d, m, device, module)?;
            Ok(DeviceTopic::Telemetry {
                device: device.clone(),
                module: module.cloned(),
                bag: parse_bag(topic, bag)?,
            })
        } else {
            Err(unrecognized())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::topic;

    fn dev(s: &str) -> DeviceId {
        DeviceId::new(s).unwrap()
    }

    fn module(s: &str) -> ModuleId {
        ModuleId::new(s).unwrap()
    }

    fn rid(s: &str) -> RequestId {
        RequestId::new(s).unwrap()
    }

    #[test]
    fn device_twin_topics_from_each_sdk() {
        let me = dev("d1");
        let parse = |t| DeviceTopic::parse(t, &me, None).unwrap();
        // C (decimal), Node (uuid), Python (quoted uuid)
        assert_eq!(
            parse("$iothub/twin/GET/?$rid=3"),
            DeviceTopic::TwinGet { rid: rid("3") }
        );
        assert_eq!(
            parse("$iothub/twin/GET/?$rid=7c9e6679-7425-40de-944b-e07fc1f90ae7"),
            DeviceTopic::TwinGet {
                rid: rid("7c9e6679-7425-40de-944b-e07fc1f90ae7")
            }
        );
        assert_eq!(
            parse("$iothub/twin/PATCH/properties/reported/?$rid=a%2Db%20c"),
            DeviceTopic::TwinPatchReported {
                rid: rid("a%2Db%20c")
            },
            "rid kept verbatim, not decoded"
        );
        // unordered query, unknown keys ignored, encoded `$` in the key, no trailing slash
        assert_eq!(
            parse("$iothub/twin/PATCH/properties/reported?foo=bar&%24rid=9"),
            DeviceTopic::TwinPatchReported { rid: rid("9") }
        );
        assert_eq!(
            parse("$iothub/methods/res/200/?$rid=1"),
            DeviceTopic::MethodResponse {
                status: 200,
                rid: rid("1")
            }
        );
        assert_eq!(
            parse("$iothub/methods/res/-3/?$rid=1"),
            DeviceTopic::MethodResponse {
                status: -3,
                rid: rid("1")
            }
        );
    }

    #[test]
    fn device_topic_errors() {
        let me = dev("d1");
        let parse = |t| DeviceTopic::parse(t, &me, None);
        assert!(matches!(
            parse("$iothub/twin/GET/"),
            Err(TopicError::MissingQueryKey { key: "$rid", .. })
        ));
        assert_eq!(
            parse("$iothub/twin/GET/?$rid="),
            Err(TopicError::EmptyRequestId)
        );
        assert!(matches!(
            parse("$iothub/twin/GET/?$rid=1&$rid=2"),
            Err(TopicError::DuplicateQueryKey { key: "$rid", .. })
        ));
        assert!(matches!(
            parse("$iothub/methods/res/ok/?$rid=1"),
            Err(TopicError::InvalidStatus { ref status, .. }) if status == "ok"
        ));
        for t in [
            "$iothub/twin/res/200/?$rid=1",
            "$iothub/twin/PATCH/properties/desired/?$version=1",
            "$iothub/methods/POST/m/?$rid=1",
            "$iothub/twin/get/?$rid=1",
            "devices/d1/messages/devicebound/",
            "devices/d1/messages/eventsX",
            "devices/d1",
            "other/topic",
            "",
        ] {
            assert!(
                matches!(parse(t), Err(TopicError::Unrecognized { .. })),
                "{t}: {:?}",
                parse(t)
            );
        }
    }

    #[test]
    fn telemetry_from_each_sdk() {
        let me = dev("d1");
        let parse = |t| DeviceTopic::parse(t, &me, None);
        for (t, mid) in [
            ("devices/d1/messages/events/", None),
            ("devices/d1/messages/events", None),
            (
                "devices/d1/messages/events/%24.mid=m%201&%24.ct=application%2Fjson",
                Some("m 1"),
            ),
            // C without url encoding: raw `/` in a value
            (
                "devices/d1/messages/events/a=1&%24.mid=m2&%24.ct=application/json",
                Some("m2"),
            ),
        ] {
            match parse(t) {
                Ok(DeviceTopic::Telemetry {
                    device,
                    module,
                    bag,
                }) => {
                    assert_eq!(device, me);
                    assert_eq!(module, None);
                    assert_eq!(bag.message_id(), mid, "{t}");
                }
                other => panic!("{t}: {other:?}"),
            }
        }
        let Ok(DeviceTopic::Telemetry { bag, .. }) =
            parse("devices/d1/messages/events/a=1&%24.ct=application/json")
        else {
            panic!()
        };
        assert_eq!(bag.content_type(), Some("application/json"));
        assert!(matches!(
            parse("devices/d1/messages/events/=x"),
            Err(TopicError::PropertyBag { .. })
        ));
    }

    #[test]
    fn telemetry_identity_checks() {
        let d = dev("dev:1");
        let m = module("mod 1".replace(' ', "-").as_str());
        // literal (C, Node) and encoded (Python) ids both accepted
        for t in [
            "devices/dev:1/messages/events/",
            "devices/dev%3A1/messages/events/",
            "devices/dev%3a1/messages/events/",
        ] {
            assert!(DeviceTopic::parse(t, &d, None).is_ok(), "{t}");
        }
        assert_eq!(
            DeviceTopic::parse("devices/dev2/messages/events/", &d, None),
            Err(TopicError::IdentityMismatch {
                topic: "devices/dev2/messages/events/".to_string(),
                found: "device dev2".to_string(),
                expected: "device dev:1".to_string(),
            })
        );
        // a module publishes on its own topic only
        let t = "devices/dev%3A1/modules/mod-1/messages/events/%24.on=out1";
        match DeviceTopic::parse(t, &d, Some(&m)) {
            Ok(DeviceTopic::Telemetry { module, bag, .. }) => {
                assert_eq!(module, Some(m.clone()));
                assert_eq!(bag.output_name(), Some("out1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            DeviceTopic::parse(t, &d, None),
            Err(TopicError::IdentityMismatch { ref found, .. }) if found == "module dev:1/mod-1"
        ));
        assert!(matches!(
            DeviceTopic::parse("devices/dev:1/messages/events/", &d, Some(&m)),
            Err(TopicError::IdentityMismatch { .. })
        ));
        assert!(matches!(
            DeviceTopic::parse("devices/dev:1/modules/other/messages/events/", &d, Some(&m)),
            Err(TopicError::IdentityMismatch { .. })
        ));
    }

    #[test]
    fn device_builders_and_parser_agree() {
        let d = dev("d:1");
        let m = module("m1");
        let r = rid("5");
        assert_eq!(
            DeviceTopic::parse(&topic::twin_get(&r), &d, None),
            Ok(DeviceTopic::TwinGet { rid: r.clone() })
        );
        assert_eq!(
            DeviceTopic::parse(&topic::twin_patch_reported(&r), &d, None),
            Ok(DeviceTopic::TwinPatchReported { rid: r.clone() })
        );
        assert_eq!(
            DeviceTopic::parse(&topic::method_response(404, &r), &d, None),
            Ok(DeviceTopic::MethodResponse {
                status: 404,
                rid: r.clone()
            })
        );
        let mut bag = PropertyBag::new();
        bag.push("$.mid", Some("a/b")).unwrap();
        bag.push("x", None).unwrap();
        assert_eq!(
            DeviceTopic::parse(&topic::telemetry(&d, Some(&m), &bag), &d, Some(&m)),
            Ok(DeviceTopic::Telemetry {
                device: d.clone(),
                module: Some(m.clone()),
                bag: bag.clone()
            })
        );
    }
}
