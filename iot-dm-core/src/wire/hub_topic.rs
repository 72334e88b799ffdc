//! The device-side parser of what the hub publishes: [`HubTopic`].

use super::encoding::split_once_opt;
use super::property_bag::PropertyBag;
use super::request_id::RequestId;
use super::topic::TopicError;
use super::topic_parse::{decode_level, levels, parse_bag, Query};

/// What the device-side parser expects.
const HUB_TOPICS: &str = "a topic IoT Hub publishes to ($iothub/twin/res/{status}/, $iothub/twin/PATCH/properties/desired/, $iothub/methods/POST/{name}/, devices/{id}/messages/devicebound/, devices/{id}/modules/{id}/inputs/{name}/)";

/// A topic the hub publishes to, as the device sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubTopic {
    /// `$iothub/twin/res/{status}/?$rid={rid}[&$version={version}]`.
    TwinResponse {
        /// The HTTP-like status (200, 204, 400, 429, ...).
        status: u16,
        /// The id of the request this answers.
        rid: RequestId,
        /// The new reported `$version` (sent with 204 answers to patches).
        version: Option<u64>,
    },
    /// `$iothub/twin/PATCH/properties/desired/?$version={version}`.
    DesiredPatch {
        /// The desired `$version` (the hub always sends it; the body carries it too).
        version: Option<u64>,
    },
    /// `$iothub/methods/POST/{name}/?$rid={rid}`.
    MethodRequest {
        /// The method name, percent-decoded.
        name: String,
        /// The request id to echo in the response.
        rid: RequestId,
    },
    /// `devices/{d}/messages/devicebound/{bag}`.
    CloudToDevice {
        /// The message properties.
        bag: PropertyBag,
    },
    /// `devices/{d}/modules/{m}/inputs/{input}/{bag}`.
    ModuleInput {
        /// The input name, percent-decoded.
        input: String,
        /// The message properties.
        bag: PropertyBag,
    },
}

impl HubTopic {
    /// Parses a topic the hub published to this device or module.
    ///
    /// ```
    /// use iot_dm_core::wire::HubTopic;
    /// let t = HubTopic::parse("$iothub/twin/res/204/?$rid=4&$version=12")?;
    /// assert!(matches!(t, HubTopic::TwinResponse { status: 204, version: Some(12), .. }));
    /// let t = HubTopic::parse("$iothub/methods/POST/set%20point/?$rid=1")?;
    /// assert!(matches!(t, HubTopic::MethodRequest { ref name, .. } if name == "set point"));
    /// # Ok::<(), iot_dm_core::wire::TopicError>(())
    /// ```
    pub fn parse(topic: &str) -> Result<HubTopic, TopicError> {
        let unrecognized = || TopicError::Unrecognized {
            topic: topic.to_string(),
            expected: HUB_TOPICS,
        };
        if topic.starts_with("$iothub/") {
            let (path, query) = split_once_opt(topic, '?');
            let query = Query::parse(topic, query.unwrap_or(""))?;
            match levels(path).as_slice() {
                ["$iothub", "twin", "res", status] => Ok(HubTopic::TwinResponse {
                    status: status.parse().map_err(|_| TopicError::InvalidStatus {
                        topic: topic.to_string(),
                        status: status.to_string(),
                        range: "0..=65535",
                    })?,
                    rid: query.rid(topic)?,
                    version: query.version(topic)?,
                }),
                ["$iothub", "twin", "PATCH", "properties", "desired"] => {
                    Ok(HubTopic::DesiredPatch {
                        version: query.version(topic)?,
                    })
                }
                ["$iothub", "methods", "POST", name] => Ok(HubTopic::MethodRequest {
                    name: decode_level(topic, "method name", name)?,
                    rid: query.rid(topic)?,
                }),
                _ => Err(unrecognized()),
            }
        } else if let Some(rest) = topic.strip_prefix("devices/") {
            let (_device, rest) = rest.split_once('/').ok_or_else(unrecognized)?;
            if let Some(bag) = rest.strip_prefix("messages/devicebound") {
                let bag = match bag {
                    "" => "",
                    bag => bag.strip_prefix('/').ok_or_else(unrecognized)?,
                };
                return Ok(HubTopic::CloudToDevice {
                    bag: parse_bag(topic, bag)?,
                });
            }
            let rest = rest.strip_prefix("modules/").ok_or_else(unrecognized)?;
            let (_module, rest) = rest.split_once('/').ok_or_else(unrecognized)?;
            let rest = rest.strip_prefix("inputs/").ok_or_else(unrecognized)?;
            let (input, bag) = split_once_opt(rest, '/');
            Ok(HubTopic::ModuleInput {
                input: decode_level(topic, "input name", input)?,
                bag: parse_bag(topic, bag.unwrap_or(""))?,
            })
        } else {
            Err(unrecognized())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{DeviceId, ModuleId};
    use crate::wire::{topic, IdForm};

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
    fn hub_topics() {
        assert_eq!(
            HubTopic::parse("$iothub/twin/res/200/?$rid=3").unwrap(),
            HubTopic::TwinResponse {
                status: 200,
                rid: rid("3"),
                version: None
            }
        );
        assert_eq!(
            HubTopic::parse("$iothub/twin/res/204/?$version=12&$rid=4").unwrap(),
            HubTopic::TwinResponse {
                status: 204,
                rid: rid("4"),
                version: Some(12)
            }
        );
        assert_eq!(
            HubTopic::parse("$iothub/twin/PATCH/properties/desired/?$version=23").unwrap(),
            HubTopic::DesiredPatch { version: Some(23) }
        );
        assert_eq!(
            HubTopic::parse("$iothub/methods/POST/getMaxMinReport/?$rid=1").unwrap(),
            HubTopic::MethodRequest {
                name: "getMaxMinReport".to_string(),
                rid: rid("1")
            }
        );
        let HubTopic::CloudToDevice { bag } = HubTopic::parse(
            "devices/d1/messages/devicebound/%24.to=%2Fdevices%2Fd1%2Fmessages%2FdeviceBound&iothub-ack=full&prop1&prop2=&prop3=a%20string",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(bag.to(), Some("/devices/d1/messages/deviceBound"));
        assert_eq!(bag.get("prop1"), Some(None));
        assert_eq!(bag.get("prop2"), Some(Some("")));
        assert_eq!(bag.get("prop3"), Some(Some("a string")));
        assert_eq!(
            HubTopic::parse("devices/d1/messages/devicebound/?prop1").unwrap(),
            HubTopic::CloudToDevice {
                bag: PropertyBag::parse("prop1").unwrap()
            },
            "the MQTT doc's `/?` form"
        );
        assert_eq!(
            HubTopic::parse("devices/d1/messages/devicebound").unwrap(),
            HubTopic::CloudToDevice {
                bag: PropertyBag::new()
            }
        );
        assert_eq!(
            HubTopic::parse("devices/d1/modules/m1/inputs/in%201/a=b").unwrap(),
            HubTopic::ModuleInput {
                input: "in 1".to_string(),
                bag: PropertyBag::parse("a=b").unwrap()
            }
        );
        assert_eq!(
            HubTopic::parse("devices/d1/modules/m1/inputs/in1").unwrap(),
            HubTopic::ModuleInput {
                input: "in1".to_string(),
                bag: PropertyBag::new()
            }
        );
    }

    #[test]
    fn hub_topic_errors() {
        assert!(matches!(
            HubTopic::parse("$iothub/twin/res/2000000/?$rid=1"),
            Err(TopicError::InvalidStatus { .. })
        ));
        assert!(matches!(
            HubTopic::parse("$iothub/twin/res/204/?$rid=1&$version=-1"),
            Err(TopicError::InvalidVersion { ref version, .. }) if version == "-1"
        ));
        assert!(matches!(
            HubTopic::parse("$iothub/twin/PATCH/properties/desired/?$version=+1"),
            Err(TopicError::InvalidVersion { .. })
        ));
        assert!(matches!(
            HubTopic::parse("$iothub/methods/POST/m/"),
            Err(TopicError::MissingQueryKey { key: "$rid", .. })
        ));
        assert!(matches!(
            HubTopic::parse("$iothub/methods/POST/%FF/?$rid=1"),
            Err(TopicError::InvalidLevel {
                what: "method name",
                ..
            })
        ));
        assert!(matches!(
            HubTopic::parse("devices/d1/modules/m1/inputs//x"),
            Err(TopicError::InvalidLevel {
                what: "input name",
                ..
            })
        ));
        for t in [
            "$iothub/twin/GET/?$rid=1",
            "$iothub/methods/res/200/?$rid=1",
            "devices/d1/messages/events/",
            "devices/d1/modules/m1/outputs/x",
            "devices/d1/messages/deviceboundX",
            "nope",
        ] {
            assert!(
                matches!(HubTopic::parse(t), Err(TopicError::Unrecognized { .. })),
                "{t}"
            );
        }
    }

    #[test]
    fn hub_builders_and_parser_agree() {
        let d = dev("d:1");
        let m = module("m1");
        let r = rid("5");
        let mut bag = PropertyBag::new();
        bag.push("$.mid", Some("a/b")).unwrap();
        bag.push("x", None).unwrap();
        assert_eq!(
            HubTopic::parse(&topic::twin_response(204, &r, Some(9))),
            Ok(HubTopic::TwinResponse {
                status: 204,
                rid: r.clone(),
                version: Some(9)
            })
        );
        assert_eq!(
            HubTopic::parse(&topic::desired_patch(7)),
            Ok(HubTopic::DesiredPatch { version: Some(7) })
        );
        assert_eq!(
            HubTopic::parse(&topic::method_request("a b/c%d", &r)),
            Ok(HubTopic::MethodRequest {
                name: "a b/c%d".to_string(),
                rid: r.clone()
            })
        );
        for form in [IdForm::Literal, IdForm::Encoded] {
            assert_eq!(
                HubTopic::parse(&topic::c2d(&d, &bag, form)),
                Ok(HubTopic::CloudToDevice { bag: bag.clone() })
            );
            assert_eq!(
                HubTopic::parse(&topic::module_input(&d, &m, "in/1", &bag, form)),
                Ok(HubTopic::ModuleInput {
                    input: "in/1".to_string(),
                    bag: bag.clone()
                })
            );
        }
    }
}
