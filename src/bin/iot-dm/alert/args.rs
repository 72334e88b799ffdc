//! The `iot-dm alert ...` command line, as clap types.

use clap::{Args, Subcommand, ValueEnum};

/// `iot-dm alert ...`.
#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Alert rules: when more than a threshold of a scope's devices match a condition.
    #[command(subcommand)]
    Rule(RuleCommand),
    /// List the alerts rules raised, oldest first (--watch: a live table).
    List(AlertListArgs),
    /// Show one alert.
    Show(AlertIdArgs),
    /// Acknowledge an alert (active or cleared); a second acknowledgement keeps the first.
    Ack(AlertAckArgs),
}

/// `iot-dm alert rule ...`.
#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Create or replace a rule from flags, or from --file (flags override it).
    Put(RulePutArgs),
    /// Show a rule.
    Show(RuleIdArgs),
    /// List the rules.
    List,
    /// Delete a rule: its active alert, if any, clears.
    Delete(RuleIdArgs),
}

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeverityArg {
    /// Worth knowing.
    Info,
    /// Worth a look.
    Warning,
    /// Act now.
    Critical,
}

impl SeverityArg {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SeverityArg::Info => "info",
            SeverityArg::Warning => "warning",
            SeverityArg::Critical => "critical",
        }
    }
}

/// Which alerts to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// Raised and not cleared.
    Active,
    /// Cleared.
    Cleared,
}

/// `alert rule put`.
#[derive(Debug, Args)]
pub struct RulePutArgs {
    /// The rule id: lowercase letters, digits and -+%_*!'.
    pub id: String,
    /// The condition: a WHERE clause without WHERE over twins
    /// (properties.reported.update.state = 'failed'); for --job, over the device's job
    /// record, naming only status and jobId (status = 'failed').
    #[arg(long, value_name = "CONDITION")]
    pub condition: Option<String>,
    /// Count only the devices this configuration targets.
    #[arg(long, value_name = "ID", conflicts_with = "job")]
    pub configuration: Option<String>,
    /// Count only this job's devices.
    #[arg(long, value_name = "ID")]
    pub job: Option<String>,
    /// Holds when more than N devices match.
    #[arg(long, value_name = "N", conflicts_with = "percent")]
    pub count: Option<u64>,
    /// Holds when more than P percent (0 <= P < 100) of the scope's devices match.
    #[arg(long, value_name = "P")]
    pub percent: Option<f64>,
    /// Seconds the rule must hold before raising, and stop holding before clearing.
    #[arg(long = "for", value_name = "SECS")]
    pub for_seconds: Option<u64>,
    /// How bad the alert is (default: the file's, else warning).
    #[arg(long, value_enum)]
    pub severity: Option<SeverityArg>,
    /// What the alert means, for people.
    #[arg(long)]
    pub description: Option<String>,
    /// The whole rule as JSON (@FILE, - or inline).
    #[arg(long, value_name = "JSON")]
    pub file: Option<String>,
}

/// A rule id.
#[derive(Debug, Args)]
pub struct RuleIdArgs {
    /// The rule id.
    pub id: String,
}

/// An alert id.
#[derive(Debug, Args)]
pub struct AlertIdArgs {
    /// The alert id (its rule id and the raise time in Unix milliseconds).
    pub id: String,
}

/// `alert list`.
#[derive(Debug, Args)]
pub struct AlertListArgs {
    /// Only the alerts in this state (default: every alert).
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// Keep the table current, redrawn whenever it changes, until Ctrl-C or --watch-timeout.
    #[arg(long)]
    pub watch: bool,
    /// Milliseconds between two looks while watching (at least 50).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub interval_ms: u64,
    /// Stop watching after this many seconds.
    #[arg(long, value_name = "S")]
    pub watch_timeout: Option<u64>,
}

/// `alert ack`.
#[derive(Debug, Args)]
pub struct AlertAckArgs {
    /// The alert id.
    pub id: String,
    /// Who acknowledges (default: the connection string's policy).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}
