//! Reading what the user gives: JSON arguments (inline, `@FILE` or `-`) and device ids.

use std::io::Read;

use serde_json::Value;

use iot_dm::core::identity::DeviceId;

use crate::error::{CliError, CliResult};

/// The text of an argument that may be inline, `@FILE`, or `-` for standard input.
pub fn text_arg(what: &str, arg: &str) -> CliResult<String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::io(format!("reading {what} from standard input"), e))?;
        Ok(s)
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("cannot read {what} from {path}: {e}")))
    } else {
        Ok(arg.to_string())
    }
}

/// Parses JSON, naming the argument and serde's line and column on failure.
pub fn json_arg(what: &str, arg: &str) -> CliResult<Value> {
    let text = text_arg(what, arg)?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::usage(format!("{what} is not valid JSON: {e}")))
}

/// A JSON object argument.
pub fn json_object_arg(what: &str, arg: &str) -> CliResult<Value> {
    let v = json_arg(what, arg)?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(CliError::usage(format!(
            "{what} must be a JSON object, got {v}"
        )))
    }
}

/// A device id, checked locally so a typo fails before reaching the hub.
pub fn device_id(id: &str) -> CliResult<DeviceId> {
    id.parse()
        .map_err(|e| CliError::usage(format!("device id {id:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_json_names_the_argument_and_position() {
        let err = json_arg("--payload", "{\"a\": }").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(
            msg.contains("--payload") && msg.contains("line 1 column 7"),
            "{msg}"
        );
        assert_eq!(json_arg("p", "[1]").unwrap(), serde_json::json!([1]));
        assert!(json_object_arg("patch", "[1]").is_err());
    }

    #[test]
    fn files_are_read_with_at() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, r#"{"tags":{"a":1}}"#).unwrap();
        let v = json_object_arg("patch", &format!("@{}", path.display())).unwrap();
        assert_eq!(v["tags"]["a"], 1);
        let err = json_arg("patch", "@/nonexistent/file.json").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("/nonexistent/file.json"));
    }

    #[test]
    fn device_ids_are_checked() {
        device_id("pump-1").unwrap();
        assert_eq!(device_id("bad id/with slash").unwrap_err().exit_code(), 2);
    }
}
