//! The tool's error type and its exit codes.

use iot_dm::service::HubError;

/// Exit code for a bad command line or bad input (a file, JSON, an id).
pub const EXIT_USAGE: i32 = 2;
/// Exit code for refused access (HTTP 401 or 403).
pub const EXIT_ACCESS: i32 = 3;
/// Exit code for something that does not exist (HTTP 404).
pub const EXIT_NOT_FOUND: i32 = 4;
/// Exit code for every other failure.
pub const EXIT_FAILURE: i32 = 1;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The command line or an input is wrong.
    #[error("{0}")]
    Usage(String),
    /// The hub refused or failed the operation.
    #[error("{0}")]
    Hub(#[from] HubError),
    /// Reading or writing a file or the terminal failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Some of a batch failed; the details were printed.
    #[error("{0}")]
    Partial(String),
    /// A followed job ended without completing (failed, cancelled), or is still going when
    /// the wait gave up.
    #[error("{0}")]
    Job(String),
}

impl CliError {
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::Usage(message.into())
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> CliError {
        CliError::Io {
            context: context.into(),
            source,
        }
    }

    /// The process exit code: 2 bad usage or input, 3 refused access, 4 not found, 1 other.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Hub(e) if e.is_unauthorized() || e.is_forbidden() => EXIT_ACCESS,
            CliError::Hub(e) if e.http_status() == 404 && !e.is_not_online() => EXIT_NOT_FOUND,
            CliError::Hub(e) if e.is_invalid_input() => EXIT_USAGE,
            CliError::Hub(_) | CliError::Io { .. } | CliError::Partial(_) | CliError::Job(_) => {
                EXIT_FAILURE
            }
        }
    }

    /// A hint printed under the message, when there is a likely fix.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            CliError::Hub(e) if e.is_unauthorized() => Some(
                "check --connection-string (or IOT_DM_CONNECTION_STRING): the key may be wrong, regenerated, or its policy deleted",
            ),
            CliError::Hub(e) if e.is_forbidden() => {
                Some("use a connection string of a policy with the needed rights (iothubowner has all)")
            }
            CliError::Hub(e) if e.is_transport() => Some(
                "is the hub running and reachable? For a self-hosted hub pass its CA with --ca (or IOT_DM_CA)",
            ),
            _ => None,
        }
    }
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_kind_of_failure() {
        let cases = [
            (CliError::usage("x"), 2),
            (
                CliError::Hub(HubError::Unauthorized {
                    message: "bad".into(),
                }),
                3,
            ),
            (
                CliError::Hub(HubError::Forbidden {
                    message: "no".into(),
                }),
                3,
            ),
            (
                CliError::Hub(HubError::DeviceNotFound {
                    device_id: "d".into(),
                }),
                4,
            ),
            (
                CliError::Hub(HubError::DeviceNotOnline {
                    device_id: "d".into(),
                }),
                1,
            ),
            (
                CliError::Hub(HubError::InvalidInput {
                    field: "f".into(),
                    message: "m".into(),
                }),
                2,
            ),
            (CliError::Hub(HubError::Closed), 1),
            (
                CliError::Hub(HubError::Remote {
                    status: 404,
                    code: 404_010,
                    message: "module".into(),
                }),
                4,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.exit_code(), code, "{err:?}");
        }
    }
}
