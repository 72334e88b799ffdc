//! Streaming serialization of property sections with their `$metadata`: written straight from
//! the document and its per-node [`Meta`](crate::doc::Meta), with timestamps formatted on the
//! stack, so printing a twin builds no intermediate `serde_json::Value` trees.

use std::cell::Cell;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::section::{Kind, Section};
use crate::clock::{civil_from_days, Timestamp, TICKS_PER_SEC};
use crate::doc::NodeRef;

/// Longest timestamp text: `YYYY-MM-DDTHH:MM:SS.fffffffZ`.
const TS_LEN: usize = 28;

/// Writes `t` as [`Timestamp`]'s `Display` does (`2016-03-30T16:24:48.789Z`: at least
/// millisecond precision, at most 7 fraction digits) into `out`, for years 0 to 9999; `None`
/// outside that range.
pub(crate) fn format_timestamp(t: Timestamp, out: &mut [u8; TS_LEN]) -> Option<&str> {
    let ticks = t.ticks();
    let secs = ticks.div_euclid(TICKS_PER_SEC);
    let frac = ticks.rem_euclid(TICKS_PER_SEC);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    if !(0..=9999).contains(&y) {
        return None;
    }
    let sod = secs.rem_euclid(86_400);
    let mut len = 0;
    let mut put = |value: i64, digits: u32, sep: u8| {
        let mut v = value;
        for i in (0..digits as usize).rev() {
            if let Some(slot) = out.get_mut(len + i) {
                *slot = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
        len += digits as usize;
        if let Some(slot) = out.get_mut(len) {
            *slot = sep;
        }
        len += 1;
    };
    put(y, 4, b'-');
    put(m, 2, b'-');
    put(d, 2, b'T');
    put(sod / 3600, 2, b':');
    put((sod / 60) % 60, 2, b':');
    put(sod % 60, 2, b'.');
    // trailing zeros past the third fraction digit are trimmed
    let mut digits = 7;
    let mut f = frac;
    while digits > 3 && f % 10 == 0 {
        f /= 10;
        digits -= 1;
    }
    put(f, digits, b'Z');
    std::str::from_utf8(out.get(..len)?).ok()
}

/// Formats timestamps, remembering the last one: the nodes of a section mostly share a few.
#[derive(Default)]
pub(crate) struct TimestampCache(Cell<Option<(i64, [u8; TS_LEN], usize)>>);

impl TimestampCache {
    /// Calls `f` with the text of `t` (`None` outside the years 0 to 9999).
    fn with<R>(&self, t: Timestamp, f: impl FnOnce(Option<&str>) -> R) -> R {
        let ticks = t.ticks();
        let (buf, len) = match self.0.get() {
            Some((cached, buf, len)) if cached == ticks => (buf, len),
            _ => {
                let mut buf = [0u8; TS_LEN];
                let Some(len) = format_timestamp(t, &mut buf).map(str::len) else {
                    return f(None);
                };
                self.0.set(Some((ticks, buf, len)));
                (buf, len)
            }
        };
        f(buf.get(..len).and_then(|b| std::str::from_utf8(b).ok()))
    }

    fn value(&self, t: Timestamp) -> Value {
        self.with(t, |text| match text {
            Some(text) => Value::String(text.to_string()),
            None => Value::String(t.to_string()),
        })
    }
}

/// A timestamp serialized as IoT Hub's ISO-8601 text without allocating.
struct TimestampOut<'a>(Timestamp, &'a TimestampCache);

impl Serialize for TimestampOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.1.with(self.0, |text| match text {
            Some(text) => s.serialize_str(text),
            None => s.collect_str(&self.0),
        })
    }
}

/// The `$metadata` object of a section node: `$lastUpdated` (and, for desired properties,
/// `$lastUpdatedVersion`), then one entry per member.
struct MetadataOut<'a> {
    node: NodeRef<'a>,
    kind: Kind,
    cache: &'a TimestampCache,
}

impl Serialize for MetadataOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let meta = self.node.meta().unwrap_or_default();
        let desired = self.kind == Kind::Desired;
        let mut map = s.serialize_map(Some(1 + usize::from(desired) + self.node.len()))?;
        map.serialize_entry("$lastUpdated", &TimestampOut(meta.last_updated, self.cache))?;
        if desired {
            map.serialize_entry("$lastUpdatedVersion", &meta.version)?;
        }
        for (k, child) in self.node.members() {
            map.serialize_entry(
                k,
                &MetadataOut {
                    node: child,
                    ..*self
                },
            )?;
        }
        map.end()
    }
}

/// A section as IoT Hub prints it: its properties, `$metadata` and `$version`.
pub(crate) struct SectionOut<'a>(pub &'a Section);

impl Serialize for SectionOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sec = self.0;
        let root = sec.doc.root();
        let mut map = s.serialize_map(Some(root.len() + 2))?;
        for (k, v) in root.members() {
            map.serialize_entry(k, &v)?;
        }
        map.serialize_entry(
            "$metadata",
            &MetadataOut {
                node: root,
                kind: sec.kind,
                cache: &TimestampCache::default(),
            },
        )?;
        map.serialize_entry("$version", &sec.version)?;
        map.end()
    }
}

/// The `$metadata` object of `node` as a `serde_json::Value`, built directly (each object
/// from its sorted entries in one go).
pub(crate) fn metadata_value(node: NodeRef<'_>, kind: Kind, cache: &TimestampCache) -> Value {
    let meta = node.meta().unwrap_or_default();
    let mut entries: Vec<(String, Value)> = Vec::with_capacity(node.len() + 2);
    entries.push(("$lastUpdated".to_string(), cache.value(meta.last_updated)));
    if kind == Kind::Desired {
        entries.push(("$lastUpdatedVersion".to_string(), Value::from(meta.version)));
    }
    for (k, child) in node.members() {
        entries.push((k.to_string(), metadata_value(child, kind, cache)));
    }
    Value::Object(entries.into_iter().collect::<Map<String, Value>>())
}

/// The section as IoT Hub prints it, as a `serde_json::Value` built directly.
pub(crate) fn section_value(sec: &Section) -> Value {
    let root = sec.doc.root();
    let mut entries: Vec<(String, Value)> = Vec::with_capacity(root.len() + 2);
    for (k, v) in root.members() {
        entries.push((k.to_string(), v.to_value()));
    }
    let cache = TimestampCache::default();
    entries.push((
        "$metadata".to_string(),
        metadata_value(root, sec.kind, &cache),
    ));
    entries.push(("$version".to_string(), Value::from(sec.version)));
    Value::Object(entries.into_iter().collect::<Map<String, Value>>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fmt(t: Timestamp) -> Option<String> {
        let mut buf = [0u8; TS_LEN];
        format_timestamp(t, &mut buf).map(str::to_string)
    }

    #[test]
    fn formats_like_display() {
        for text in [
            "2016-03-30T16:24:48.789Z",
            "1970-01-01T00:00:00.000Z",
            "0001-01-01T00:00:00.000Z",
            "9999-12-31T23:59:59.9999999Z",
            "2024-02-29T12:00:00.12Z",
            "1969-12-31T23:59:59.0000001Z",
        ] {
            let t: Timestamp = text.parse().unwrap();
            assert_eq!(fmt(t), Some(t.to_string()), "{text}");
        }
        assert_eq!(
            fmt(Timestamp::from_unix_secs(0)).as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
        assert_eq!(
            fmt(Timestamp::from_ticks(1234)).as_deref(),
            Some("1970-01-01T00:00:00.0001234Z")
        );
    }

    #[test]
    fn years_outside_four_digits_fall_back_to_display() {
        let far = Timestamp::from_ticks(i64::MAX);
        assert_eq!(fmt(far), None);
        assert_eq!(fmt(Timestamp::from_ticks(i64::MIN)), None);
        let cache = TimestampCache::default();
        let v = serde_json::to_value(TimestampOut(far, &cache)).unwrap();
        assert_eq!(v, serde_json::Value::String(far.to_string()));
        assert_eq!(cache.value(far), serde_json::Value::String(far.to_string()));
        let v = serde_json::to_value(TimestampOut(Timestamp::NEVER, &cache)).unwrap();
        assert_eq!(v, "0001-01-01T00:00:00.000Z");
        // the cache answers for the timestamp it holds only
        let t1 = Timestamp::from_unix_secs(1);
        assert_eq!(cache.value(t1), "1970-01-01T00:00:01.000Z");
        assert_eq!(cache.value(t1), "1970-01-01T00:00:01.000Z");
        assert_eq!(cache.value(Timestamp::EPOCH), "1970-01-01T00:00:00.000Z");
    }

    proptest! {
        #[test]
        fn agrees_with_display(ticks in Timestamp::NEVER.ticks()..=2_534_023_007_999_999_999i64) {
            let t = Timestamp::from_ticks(ticks);
            prop_assert_eq!(fmt(t), Some(t.to_string()));
        }

        #[test]
        fn agrees_with_display_on_whole_milliseconds(ms in -62_135_596_800_000i64..=253_402_300_799_999) {
            let t = Timestamp::from_unix_millis(ms);
            prop_assert_eq!(fmt(t), Some(t.to_string()));
        }
    }
}
