//! MQTT topic-filter matching that also works for `$iothub/...` topics.
//!
//! The MQTT 3.1.1 rule that a wildcard at the first level does not match a `$` topic is
//! deliberately not applied: IoT Hub devices subscribe to `$iothub/twin/res/#` and expect
//! `$iothub/twin/res/200/?$rid=1` to match it (rumqttc's `matches` says no).

/// Whether `topic` matches the subscription `filter`.
///
/// * `+` matches exactly one level (which may be empty);
/// * `#` must be the last level and matches the parent level and everything below it
///   (`a/#` matches `a`, `a/` and `a/b/c`);
/// * any other level must be equal byte-for-byte.
///
/// A malformed filter (`#` not last, or a wildcard sharing its level with other characters)
/// never matches. `$` topics are matched like any other.
///
/// ```
/// use iot_dm_core::wire::topic_matches;
/// assert!(topic_matches("$iothub/twin/res/#", "$iothub/twin/res/200/?$rid=1"));
/// assert!(topic_matches("devices/+/messages/devicebound/#", "devices/d1/messages/devicebound/a=1"));
/// assert!(!topic_matches("$iothub/methods/POST/#", "$iothub/twin/res/200/?$rid=1"));
/// ```
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if !is_valid_filter(filter) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            literal => {
                if topic_levels.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

/// Whether `filter` is a well-formed MQTT topic filter: non-empty, `#` only as the whole last
/// level, `+` only as a whole level.
///
/// ```
/// use iot_dm_core::wire::is_valid_filter;
/// assert!(is_valid_filter("$iothub/methods/POST/#"));
/// assert!(!is_valid_filter("a/#/b"));
/// assert!(!is_valid_filter("a/b+"));
/// ```
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        match level {
            "#" if !last => return false,
            "#" | "+" => {}
            other if other.contains(['#', '+']) => return false,
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn iothub_filters() {
        let cases = [
            ("$iothub/twin/res/#", "$iothub/twin/res/200/?$rid=1", true),
            (
                "$iothub/twin/res/#",
                "$iothub/twin/res/204/?$rid=1&$version=3",
                true,
            ),
            (
                "$iothub/twin/res/#",
                "$iothub/twin/PATCH/properties/desired/?$version=2",
                false,
            ),
            (
                "$iothub/twin/PATCH/properties/desired/#",
                "$iothub/twin/PATCH/properties/desired/?$version=2",
                true,
            ),
            (
                "$iothub/methods/POST/#",
                "$iothub/methods/POST/reboot/?$rid=1",
                true,
            ),
            (
                "$iothub/methods/POST/#",
                "$iothub/methods/res/200/?$rid=1",
                false,
            ),
            (
                "devices/d1/messages/devicebound/#",
                "devices/d1/messages/devicebound/",
                true,
            ),
            (
                "devices/d1/messages/devicebound/#",
                "devices/d1/messages/devicebound",
                true,
            ),
            (
                "devices/d1/messages/devicebound/#",
                "devices/d2/messages/devicebound/",
                false,
            ),
            (
                "devices/d1/modules/m1/#",
                "devices/d1/modules/m1/inputs/in1/a=b",
                true,
            ),
            ("+/twin/res/#", "$iothub/twin/res/200/?$rid=1", true),
            ("#", "$iothub/twin/res/200", true),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(
                topic_matches(filter, topic),
                expected,
                "{filter} vs {topic}"
            );
        }
    }

    #[test]
    fn plus_and_hash_edges() {
        assert!(topic_matches("a/+", "a/"));
        assert!(!topic_matches("a/+", "a"));
        assert!(topic_matches("a/#", "a"));
        assert!(topic_matches("+/+", "/"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(!topic_matches("a/b/c", "a/b"));
        // malformed filters never match
        assert!(!topic_matches("a/#/c", "a/b/c"));
        assert!(!topic_matches("a/b#", "a/b#"));
        assert!(!topic_matches("a+/b", "a+/b"));
        assert!(!topic_matches("", ""));
    }

    fn level() -> impl Strategy<Value = String> {
        // topic levels without wildcards or separators; `$` included on purpose
        "[a-zA-Z0-9$?=&.%-]{0,6}"
    }

    fn topic() -> impl Strategy<Value = String> {
        // a topic name is at least one character long
        prop::collection::vec(level(), 1..6)
            .prop_map(|v| v.join("/"))
            .prop_filter("non-empty", |t| !t.is_empty())
    }

    proptest! {
        #[test]
        fn topic_matches_itself(t in topic()) {
            prop_assert!(topic_matches(&t, &t));
        }

        #[test]
        fn hash_matches_everything(t in topic()) {
            prop_assert!(topic_matches("#", &t));
        }

        #[test]
        fn prefix_hash_matches_extensions(t in topic(), rest in prop::collection::vec(level(), 0..4)) {
            let mut full = t.clone();
            for r in &rest {
                full.push('/');
                full.push_str(r);
            }
            let filter = format!("{t}/#");
            prop_assert!(topic_matches(&filter, &full));
        }

        #[test]
        fn plus_is_exactly_one_level(x in level(), y in level()) {
            let one = format!("a/{x}/c");
            let two = format!("a/{x}/{y}/c");
            let short = format!("a/{x}");
            let other = format!("b/{x}/c");
            prop_assert!(topic_matches("a/+/c", &one));
            prop_assert!(!topic_matches("a/+/c", &two));
            prop_assert!(!topic_matches("a/+/c", &short));
            prop_assert!(!topic_matches("a/+/c", &other));
        }

        #[test]
        fn different_topic_does_not_match(a in topic(), b in topic()) {
            prop_assert_eq!(topic_matches(&a, &b), a == b);
        }
    }
}
