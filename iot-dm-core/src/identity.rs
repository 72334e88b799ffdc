//! Device and module identifiers.
//!
//! IoT Hub's rule: case-sensitive, at most 128 characters, ASCII letters and digits plus
//! `- : . + % _ # * ? ! ( ) , = @ ; $ '`.

use std::fmt;
use std::str::FromStr;

use compact_str::CompactString;

/// Longest allowed device or module id, in characters.
pub const MAX_ID_LEN: usize = 128;

/// The punctuation allowed in device and module ids besides ASCII letters and digits.
pub const ID_PUNCTUATION: &str = "-:.+%_#*?!(),=@;$'";

/// An id that breaks the device id rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The id is empty.
    #[error("{what} is empty")]
    Empty {
        /// `device id` or `module id`.
        what: &'static str,
    },
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("{what} is {len} characters long, the limit is {limit}")]
    TooLong {
        /// `device id` or `module id`.
        what: &'static str,
        /// The id's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The id contains a character outside the allowed set.
    #[error("{what} {id:?} contains {ch:?} at position {position}; allowed are ASCII letters, digits and {allowed}", allowed = ID_PUNCTUATION)]
    InvalidChar {
        /// `device id` or `module id`.
        what: &'static str,
        /// The rejected id.
        id: String,
        /// The offending character.
        ch: char,
        /// Its character position (0-based).
        position: usize,
    },
}

fn validate(what: &'static str, id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty { what });
    }
    for (position, ch) in id.chars().enumerate() {
        if position >= MAX_ID_LEN {
            return Err(IdError::TooLong {
                what,
                len: id.chars().count(),
                limit: MAX_ID_LEN,
            });
        }
        if !(ch.is_ascii_alphanumeric() || ID_PUNCTUATION.contains(ch)) {
            return Err(IdError::InvalidChar {
                what,
                id: id.to_string(),
                ch,
                position,
            });
        }
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        ///
        /// Ids of up to 24 bytes are stored inline, without a heap allocation, so the copies a
        /// hub keeps of every id (map key, identity, twin) cost no memory beyond their own.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(CompactString);

        impl $name {
            /// Validates `id` and wraps it.
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                validate($what, &id)?;
                Ok($name(CompactString::from(id)))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
            pub fn into_string(self) -> String {
                self.0.into_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $name::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                $name::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                $name::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A validated device id.
    ///
    /// ```
    /// use iot_dm_core::identity::DeviceId;
    /// let id = DeviceId::new("thermostat-42")?;
    /// assert_eq!(id.as_str(), "thermostat-42");
    /// assert!(DeviceId::new("has space").is_err());
    /// # Ok::<(), iot_dm_core::identity::IdError>(())
    /// ```
    DeviceId,
    "device id"
);

id_type!(
    /// A validated module id (same rules as device ids).
    ModuleId,
    "module id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        let id = format!("aZ09{ID_PUNCTUATION}");
        assert!(DeviceId::new(id).is_ok());
        assert!(DeviceId::new("a".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_with_typed_errors() {
        assert_eq!(DeviceId::new(""), Err(IdError::Empty { what: "device id" }));
        assert_eq!(
            DeviceId::new("a".repeat(129)),
            Err(IdError::TooLong {
                what: "device id",
                len: 129,
                limit: 128
            })
        );
        for bad in ["a b", "a/b", "é", "a\u{0}", "a&b", "a<b", "a\"b"] {
            match DeviceId::new(bad) {
                Err(IdError::InvalidChar { .. }) => {}
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn short_ids_are_inline() {
        assert_eq!(std::mem::size_of::<DeviceId>(), 24);
        assert_eq!(std::mem::size_of::<Option<ModuleId>>(), 24);
        let short = DeviceId::new("dev-0000001").unwrap();
        assert!(!short.0.is_heap_allocated());
        let long = DeviceId::new("z".repeat(128)).unwrap();
        assert_eq!(long.as_str(), "z".repeat(128));
        assert_eq!(long.clone().into_string(), "z".repeat(128));
        assert!(short < long);
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<DeviceId>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<DeviceId>("\"not ok\"").is_err());
    }
}
