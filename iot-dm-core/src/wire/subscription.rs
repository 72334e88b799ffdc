//! Classifying the SUBSCRIBE filters a device sends.
//!
//! IoT Hub is not a general broker: only these filters work, each exactly as written.
//!
//! | filter | SDKs |
//! |---|---|
//! | `$iothub/twin/res/#` | all |
//! | `$iothub/twin/PATCH/properties/desired/#` | all |
//! | `$iothub/methods/POST/#` | all |
//! | `devices/{d}/messages/devicebound/#` | all (device connections) |
//! | `devices/{d}/modules/{m}/inputs/#` | Python, Node, C# (module connections) |
//! | `devices/{d}/modules/{m}/#` | C (module connections) |
//!
//! The C SDK sends the first and third in one SUBSCRIBE packet; classify each filter of a
//! packet on its own.

use super::topic::{
    IdForm, TopicError, DESIRED_PATCH_FILTER, METHOD_REQUEST_FILTER, TWIN_RESPONSE_FILTER,
};
use super::topic_parse::check_identity;
use crate::identity::{DeviceId, ModuleId};

/// A subscription IoT Hub supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Subscription {
    /// `$iothub/twin/res/#`: twin GET and reported-patch responses.
    TwinResponses,
    /// `$iothub/twin/PATCH/properties/desired/#`: desired-property notifications.
    DesiredPatches,
    /// `$iothub/methods/POST/#`: direct-method requests.
    MethodRequests,
    /// `devices/{d}/messages/devicebound/#`: cloud-to-device messages.
    CloudToDevice {
        /// How the device wrote its id; build its C2D topics the same way.
        id_form: IdForm,
    },
    /// `devices/{d}/modules/{m}/inputs/#` or `devices/{d}/modules/{m}/#`: module input
    /// messages (both filters match `devices/{d}/modules/{m}/inputs/{input}/{bag}`).
    ModuleInputs {
        /// How the module wrote its ids; build its input topics the same way.
        id_form: IdForm,
    },
}

impl Subscription {
    /// Classifies a SUBSCRIBE filter sent by the device or module authenticated as
    /// `device`/`module`.
    ///
    /// A filter for another identity gives [`TopicError::IdentityMismatch`] (a module may not
    /// subscribe to its device's C2D messages, nor a device to module inputs); any other
    /// filter gives [`TopicError::UnknownFilter`].
    ///
    /// ```
    /// use iot_dm_core::identity::DeviceId;
    /// use iot_dm_core::wire::{IdForm, Subscription, TopicError};
    /// let me = DeviceId::new("dev1")?;
    /// assert_eq!(Subscription::classify("$iothub/twin/res/#", &me, None), Ok(Subscription::TwinResponses));
    /// assert_eq!(
    ///     Subscription::classify("devices/dev1/messages/devicebound/#", &me, None),
    ///     Ok(Subscription::CloudToDevice { id_form: IdForm::Literal }),
    /// );
    /// assert!(matches!(
    ///     Subscription::classify("devices/dev2/messages/devicebound/#", &me, None),
    ///     Err(TopicError::IdentityMismatch { .. }),
    /// ));
    /// assert!(matches!(Subscription::classify("#", &me, None), Err(TopicError::UnknownFilter { .. })));
    /// # Ok::<(), iot_dm_core::identity::IdError>(())
    /// ```
    pub fn classify(
        filter: &str,
        device: &DeviceId,
        module: Option<&ModuleId>,
    ) -> Result<Subscription, TopicError> {
        let unknown = || TopicError::UnknownFilter {
            filter: filter.to_string(),
        };
        match filter {
            TWIN_RESPONSE_FILTER => return Ok(Subscription::TwinResponses),
            DESIRED_PATCH_FILTER => return Ok(Subscription::DesiredPatches),
            METHOD_REQUEST_FILTER => return Ok(Subscription::MethodRequests),
            _ => {}
        }
        let rest = filter.strip_prefix("devices/").ok_or_else(unknown)?;
        let (d, rest) = rest.split_once('/').ok_or_else(unknown)?;
        if rest == "messages/devicebound/#" {
            let id_form = check_identity(filter, d, None, device, module)?;
            return Ok(Subscription::CloudToDevice { id_form });
        }
        let rest = rest.strip_prefix("modules/").ok_or_else(unknown)?;
        let (m, rest) = rest.split_once('/').ok_or_else(unknown)?;
        if rest == "inputs/#" || rest == "#" {
            let id_form = check_identity(filter, d, Some(m), device, module)?;
            return Ok(Subscription::ModuleInputs { id_form });
        }
        Err(unknown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::topic;

    fn dev(s: &str) -> DeviceId {
        DeviceId::new(s).unwrap()
    }

    #[test]
    fn sdk_filters_for_devices() {
        let me = dev("myDevice");
        let ok = |f| Subscription::classify(f, &me, None);
        // the C SDK's one SUBSCRIBE packet with two filters, then the desired filter
        assert_eq!(ok("$iothub/twin/res/#"), Ok(Subscription::TwinResponses));
        assert_eq!(
            ok("$iothub/methods/POST/#"),
            Ok(Subscription::MethodRequests)
        );
        assert_eq!(
            ok("$iothub/twin/PATCH/properties/desired/#"),
            Ok(Subscription::DesiredPatches)
        );
        assert_eq!(
            ok("devices/myDevice/messages/devicebound/#"),
            Ok(Subscription::CloudToDevice {
                id_form: IdForm::Literal
            })
        );
        assert_eq!(
            ok(&topic::c2d_filter(&me)),
            Ok(Subscription::CloudToDevice {
                id_form: IdForm::Literal
            })
        );
    }

    #[test]
    fn python_encodes_ids_in_filters() {
        let me = dev("dev:1+x");
        // Python: "devices/" + quote(device_id, safe="") + "/messages/devicebound/#"
        assert_eq!(
            Subscription::classify("devices/dev%3A1%2Bx/messages/devicebound/#", &me, None),
            Ok(Subscription::CloudToDevice {
                id_form: IdForm::Encoded
            })
        );
        assert_eq!(
            Subscription::classify(&topic::c2d_filter(&me), &me, None),
            Ok(Subscription::CloudToDevice {
                id_form: IdForm::Encoded
            })
        );
    }

    #[test]
    fn sdk_filters_for_modules() {
        let d = dev("dev1");
        let m = ModuleId::new("mod1").unwrap();
        for filter in [
            "devices/dev1/modules/mod1/inputs/#", // Python, Node, C#
            "devices/dev1/modules/mod1/#",        // C
        ] {
            assert_eq!(
                Subscription::classify(filter, &d, Some(&m)),
                Ok(Subscription::ModuleInputs {
                    id_form: IdForm::Literal
                }),
                "{filter}"
            );
            assert!(matches!(
                Subscription::classify(filter, &d, None),
                Err(TopicError::IdentityMismatch { .. })
            ));
        }
        assert_eq!(
            Subscription::classify(&topic::module_input_filter(&d, &m), &d, Some(&m)),
            Ok(Subscription::ModuleInputs {
                id_form: IdForm::Literal
            })
        );
        assert_eq!(
            Subscription::classify("$iothub/methods/POST/#", &d, Some(&m)),
            Ok(Subscription::MethodRequests)
        );
        assert!(matches!(
            Subscription::classify("devices/dev1/modules/other/inputs/#", &d, Some(&m)),
            Err(TopicError::IdentityMismatch { .. })
        ));
        assert!(matches!(
            Subscription::classify("devices/dev1/messages/devicebound/#", &d, Some(&m)),
            Err(TopicError::IdentityMismatch { .. })
        ));
    }

    #[test]
    fn rejects_everything_else() {
        let me = dev("d1");
        for filter in [
            "#",
            "+/#",
            "$iothub/#",
            "$iothub/twin/res/+",
            "$iothub/twin/res",
            "$iothub/twin/PATCH/properties/reported/#",
            "$iothub/credentials/res/#",
            "devices/d1/messages/events/#",
            "devices/d1/messages/devicebound",
            "devices/d1/messages/devicebound/+",
            "devices/+/messages/devicebound/#",
            "devices/d1/modules/m1/outputs/#",
            "devices/d1",
            "",
        ] {
            match Subscription::classify(filter, &me, None) {
                Err(TopicError::UnknownFilter { filter: f }) => assert_eq!(f, filter),
                // a wildcard in the id level is another identity, also refused
                Err(TopicError::IdentityMismatch { .. }) if filter.starts_with("devices/+") => {}
                other => panic!("{filter}: {other:?}"),
            }
        }
    }
}
