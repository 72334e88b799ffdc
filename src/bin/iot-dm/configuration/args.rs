//! The `iot-dm configuration ...` command line, as clap types.

use clap::{Args, Subcommand};

/// `iot-dm configuration ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigurationCommand {
    /// Create an automatic device configuration: the desired properties (--content) every
    /// device --target selects gets, at a --priority; or the whole configuration from --file
    /// (flags override it).
    Create(ConfigurationCreateArgs),
    /// Show a configuration and its metrics (--watch: live counts).
    Show(ConfigurationShowArgs),
    /// List configurations.
    List(ConfigurationListArgs),
    /// Change the priority, target, labels or metrics of a configuration (the content cannot
    /// change).
    Update(ConfigurationUpdateArgs),
    /// Delete a configuration: its settings are removed from the devices it was applied to.
    Delete(ConfigurationDeleteArgs),
    /// Check a target condition and metric queries without storing anything.
    Test(ConfigurationTestArgs),
    /// Pause the rollout of a configuration with a rollout policy: no more devices receive it.
    Pause(ConfigurationIdArgs),
    /// Resume a paused or aborted rollout (an abort's alert clears).
    Resume(ConfigurationIdArgs),
}

/// A command that names one configuration.
#[derive(Debug, Args)]
pub struct ConfigurationIdArgs {
    /// The configuration id.
    pub id: String,
}

/// What create and update share.
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigurationFields {
    /// The target condition: a WHERE clause without WHERE (tags.site = 'north'), or * for
    /// every device.
    #[arg(long, value_name = "CONDITION")]
    pub target: Option<String>,
    /// The priority: where several configurations target a device, the higher wins.
    #[arg(long)]
    pub priority: Option<i64>,
    /// A label NAME=VALUE (repeatable).
    #[arg(long = "label", value_name = "NAME=VALUE")]
    pub labels: Vec<String>,
    /// A custom metric NAME=QUERY, counting the devices the query returns (repeatable, at most
    /// five).
    #[arg(long = "metric", value_name = "NAME=QUERY")]
    pub metrics: Vec<String>,
    /// How the content reaches the devices: a rollout policy as JSON (rate, maintenance
    /// windows, gate, abort criteria, also over a metric; inline, @FILE or -).
    #[arg(long = "rollout-policy", value_name = "JSON")]
    pub rollout_policy: Option<String>,
}

/// `configuration create`.
#[derive(Debug, Args)]
pub struct ConfigurationCreateArgs {
    /// The configuration id: lowercase letters, digits and -+%_*!'.
    pub id: String,
    /// The content: a JSON object of `properties.desired.<path>` to value (inline, @FILE or
    /// - for standard input).
    #[arg(long, value_name = "JSON")]
    pub content: Option<String>,
    /// The whole configuration as IoT Hub's JSON (@FILE, - or inline).
    #[arg(long, value_name = "JSON")]
    pub file: Option<String>,
    #[command(flatten)]
    pub fields: ConfigurationFields,
}

/// `configuration show`.
#[derive(Debug, Args)]
pub struct ConfigurationShowArgs {
    /// The configuration id.
    pub id: String,
    /// Print the metrics again whenever they change, until interrupted or --watch-timeout.
    #[arg(long)]
    pub watch: bool,
    /// Milliseconds between two looks while watching (at least 50).
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub interval_ms: u64,
    /// Stop watching after this many seconds.
    #[arg(long, value_name = "S")]
    pub watch_timeout: Option<u64>,
}

/// `configuration list`.
#[derive(Debug, Args)]
pub struct ConfigurationListArgs {
    /// At most this many.
    #[arg(long)]
    pub top: Option<usize>,
}

/// `configuration update`.
#[derive(Debug, Args)]
pub struct ConfigurationUpdateArgs {
    /// The configuration id.
    pub id: String,
    /// Update only if the configuration still has this etag (default: the one just read).
    #[arg(long)]
    pub etag: Option<String>,
    /// Drop every label and metric not given again.
    #[arg(long)]
    pub replace: bool,
    #[command(flatten)]
    pub fields: ConfigurationFields,
}

/// `configuration delete`.
#[derive(Debug, Args)]
pub struct ConfigurationDeleteArgs {
    /// The configuration id.
    pub id: String,
    /// Delete only if the configuration has this etag.
    #[arg(long)]
    pub etag: Option<String>,
}

/// `configuration test`.
#[derive(Debug, Args)]
pub struct ConfigurationTestArgs {
    /// A target condition to check.
    #[arg(long, value_name = "CONDITION")]
    pub target: Option<String>,
    /// A metric query NAME=QUERY to check (repeatable).
    #[arg(long = "metric", value_name = "NAME=QUERY")]
    pub metrics: Vec<String>,
}
