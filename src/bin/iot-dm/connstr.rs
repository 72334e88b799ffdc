//! `iot-dm connection-string ...`.

use iot_dm::service::api::ServiceApi;

use crate::error::{CliError, CliResult};
use crate::input::device_id;
use crate::output::Out;

/// `connection-string device ID`: `HostName={host};DeviceId={id};SharedAccessKey={primary}`.
pub async fn device(api: &dyn ServiceApi, out: &mut Out<'_>, host: &str, id: &str) -> CliResult {
    let device = api.get_device(device_id(id)?.as_str()).await?;
    let Some(key) = device.symmetric_key.primary_key.as_deref() else {
        return Err(CliError::usage(format!(
            "device {id} has no symmetric key (its authentication is {}), so it has no key connection string",
            device.identity.authentication_type.as_str()
        )));
    };
    let cs = format!(
        "HostName={host};DeviceId={};SharedAccessKey={key}",
        device.device_id
    );
    if out.json {
        out.json_value(&serde_json::json!({ "connectionString": cs }))
    } else {
        out.line(cs)
    }
}

/// Prints a service connection string.
pub fn print_service(out: &mut Out<'_>, cs: &str) -> CliResult {
    if out.json {
        out.json_value(&serde_json::json!({ "connectionString": cs }))
    } else {
        out.line(cs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{hub, run, HOST};
    use iot_dm::service::hub::{Authentication, DeviceSpec};

    #[tokio::test]
    async fn device_connection_strings_carry_the_primary_key() {
        let hub = hub().await;
        let d = hub
            .create_device(DeviceSpec::new("pump".parse().unwrap()))
            .await
            .unwrap();
        let text = run(false, async |o| device(&hub, o, HOST, "pump").await)
            .await
            .unwrap();
        let key = d.symmetric_key.primary_key.unwrap();
        assert_eq!(
            text,
            format!("HostName={HOST};DeviceId=pump;SharedAccessKey={key}\n")
        );
        iot_dm::core::wire::DeviceConnectionString::parse(text.trim()).unwrap();

        hub.create_device(
            DeviceSpec::new("x509".parse().unwrap())
                .authentication(Authentication::self_signed("ab".repeat(20), None)),
        )
        .await
        .unwrap();
        let err = run(false, async |o| device(&hub, o, HOST, "x509").await)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("selfSigned"), "{err}");
        let err = run(false, async |o| device(&hub, o, HOST, "nope").await)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 4);
    }
}
