//! The built-in scalar functions: names, aliases and arity.

/// A built-in scalar function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Function {
    /// `IS_DEFINED(x)`: x is not `undefined` (true for `null`).
    IsDefined,
    /// `IS_NULL(x)`: x is `null`.
    IsNull,
    /// `IS_BOOL(x)`: x is `true` or `false`.
    IsBool,
    /// `IS_NUMBER(x)`: x is a number.
    IsNumber,
    /// `IS_STRING(x)`: x is a string.
    IsString,
    /// `IS_OBJECT(x)`: x is an object.
    IsObject,
    /// `IS_ARRAY(x)`: x is an array.
    IsArray,
    /// `IS_PRIMITIVE(x)`: x is a string, number, Boolean or `null`.
    IsPrimitive,
    /// `STARTSWITH(s, prefix)` (also spelled `STARTS_WITH`).
    StartsWith,
    /// `ENDSWITH(s, suffix)` (also spelled `ENDS_WITH`).
    EndsWith,
    /// `CONTAINS(s, fragment)`.
    Contains,
    /// `LOWER(s)`.
    Lower,
    /// `UPPER(s)`.
    Upper,
    /// `LENGTH(s)`: the number of characters.
    Length,
}

impl Function {
    /// Every function, for lookups and tests.
    pub const ALL: [Function; 14] = [
        Function::IsDefined,
        Function::IsNull,
        Function::IsBool,
        Function::IsNumber,
        Function::IsString,
        Function::IsObject,
        Function::IsArray,
        Function::IsPrimitive,
        Function::StartsWith,
        Function::EndsWith,
        Function::Contains,
        Function::Lower,
        Function::Upper,
        Function::Length,
    ];

    /// The canonical (upper-case) name.
    pub fn name(self) -> &'static str {
        match self {
            Function::IsDefined => "IS_DEFINED",
            Function::IsNull => "IS_NULL",
            Function::IsBool => "IS_BOOL",
            Function::IsNumber => "IS_NUMBER",
            Function::IsString => "IS_STRING",
            Function::IsObject => "IS_OBJECT",
            Function::IsArray => "IS_ARRAY",
            Function::IsPrimitive => "IS_PRIMITIVE",
            Function::StartsWith => "STARTSWITH",
            Function::EndsWith => "ENDSWITH",
            Function::Contains => "CONTAINS",
            Function::Lower => "LOWER",
            Function::Upper => "UPPER",
            Function::Length => "LENGTH",
        }
    }

    /// The function called `name` (case-insensitive; `STARTS_WITH`/`ENDS_WITH` accepted).
    pub fn from_name(name: &str) -> Option<Function> {
        if name.eq_ignore_ascii_case("STARTS_WITH") {
            return Some(Function::StartsWith);
        }
        if name.eq_ignore_ascii_case("ENDS_WITH") {
            return Some(Function::EndsWith);
        }
        Function::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// How many arguments the function takes.
    pub fn arity(self) -> usize {
        match self {
            Function::StartsWith | Function::EndsWith | Function::Contains => 2,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        for f in Function::ALL {
            assert_eq!(Function::from_name(&f.name().to_lowercase()), Some(f));
        }
        assert_eq!(
            Function::from_name("starts_with"),
            Some(Function::StartsWith)
        );
        assert_eq!(Function::from_name("nope"), None);
        assert_eq!(Function::Contains.arity(), 2);
        assert_eq!(Function::Lower.arity(), 1);
    }
}
