//! Percent-encoding rules shared by the wire formats.
//!
//! Every decoder here is lenient the way the SDKs' decoders are: hex digits may be upper- or
//! lower-case (the C SDK writes `%2f`, Python `%2F`), a `%` not followed by two hex digits is
//! kept as it is, and `+` is a plain `+`, never a space (no SDK form-encodes MQTT strings).

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

/// Python's `urllib.parse.quote(s, safe="")`: everything except ASCII letters, digits and
/// `- . _ ~` is escaped, with upper-case hex. Used for property bags, the SAS resource and
/// signature, and username query values.
pub(crate) const COMPONENT: &AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A topic path segment that devices read without always decoding it (method and input names):
/// only what would break the topic is escaped, so the C and Node SDKs, which do not decode
/// these segments, still see the plain name.
pub(crate) const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'+')
    .add(b'/')
    .add(b'?');

/// A device or module id written literally, the way the C and Node SDKs write it: only the
/// MQTT wildcards, which a topic name may not contain, are escaped.
pub(crate) const WILDCARDS: &AsciiSet = &CONTROLS.add(b'#').add(b'+');

/// Percent-encodes `s` with `set` (non-ASCII bytes are always escaped).
pub(crate) fn encode<'a>(s: &'a str, set: &'static AsciiSet) -> Cow<'a, str> {
    utf8_percent_encode(s, set).into()
}

/// The decoded text is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotUtf8;

/// Percent-decodes `s` (case-insensitive hex, stray `%` kept, `+` kept).
pub(crate) fn decode(s: &str) -> Result<Cow<'_, str>, NotUtf8> {
    percent_decode_str(s).decode_utf8().map_err(|_| NotUtf8)
}

/// Splits `s` at the first `sep`; the second part is `None` when there is no `sep`.
pub(crate) fn split_once_opt(s: &str, sep: char) -> (&str, Option<&str>) {
    match s.split_once(sep) {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

/// Longest field or key name in the formats parsed here (`SharedAccessSignature`).
const LONGEST_NAME: usize = 21;

/// A field or key name as an error shows it. Text in a name position may really be a pasted
/// secret (a base64 key or signature split at its `=` padding), which must not end up in a
/// log, so anything longer than any name, or with characters names do not have, is shown
/// only by its length.
pub(crate) fn shown_name(name: &str) -> String {
    if name.len() <= LONGEST_NAME && name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        name.to_string()
    } else {
        format!("<{} characters>", name.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_matches_python_quote_safe_empty() {
        // urllib.parse.quote("a~b-c_d.e!*'()+ ", safe="") == "a~b-c_d.e%21%2A%27%28%29%2B%20"
        assert_eq!(
            encode("a~b-c_d.e!*'()+ ", COMPONENT),
            "a~b-c_d.e%21%2A%27%28%29%2B%20"
        );
        assert_eq!(encode("$.mid", COMPONENT), "%24.mid");
        assert_eq!(encode("é/", COMPONENT), "%C3%A9%2F");
    }

    #[test]
    fn segment_keeps_method_name_punctuation() {
        assert_eq!(encode("reboot-now_1.x!", SEGMENT), "reboot-now_1.x!");
        assert_eq!(
            encode("a b/c#d+e%f?g", SEGMENT),
            "a%20b%2Fc%23d%2Be%25f%3Fg"
        );
    }

    #[test]
    fn names_that_may_be_secrets_are_hidden() {
        assert_eq!(shown_name("DeviceId"), "DeviceId");
        assert_eq!(shown_name("SharedAccessSignature"), "SharedAccessSignature");
        assert_eq!(shown_name("a/b"), "<3 characters>");
        assert_eq!(
            shown_name("aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI"),
            "<43 characters>"
        );
    }

    #[test]
    fn decode_is_lenient() {
        assert_eq!(decode("%2f%2F").unwrap(), "//");
        assert_eq!(decode("a+b").unwrap(), "a+b");
        assert_eq!(decode("100%").unwrap(), "100%");
        assert_eq!(decode("%zz").unwrap(), "%zz");
        assert_eq!(decode("%C3%A9").unwrap(), "é");
        assert_eq!(decode("%FF"), Err(NotUtf8));
    }
}
