//! `iot-dm device ...`: identities and their lifecycle.

use iot_dm::service::api::ServiceApi;
use iot_dm::service::hub::{Device, DeviceSpec};

use crate::cli::{CreateArgs, DeleteArgs, DisableArgs, ListArgs, UpdateArgs, Which};
use crate::error::{CliError, CliResult};
use crate::input::{device_id, json_object_arg};
use crate::output::Out;

/// Devices fetched per list request.
const LIST_PAGE: usize = 1000;

fn opt_time(t: Option<iot_dm::core::clock::Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}

/// Prints one device: all fields with `--json`, the useful ones otherwise (never the keys).
pub fn print_device(out: &mut Out<'_>, d: &Device) -> CliResult {
    if out.json {
        return out.json_value(d);
    }
    out.fields(&[
        ("deviceId", d.device_id.to_string()),
        ("state", d.state().as_str().to_string()),
        ("status", d.identity.status.as_str().to_string()),
        (
            "statusReason",
            d.identity.status_reason.clone().unwrap_or_default(),
        ),
        (
            "connectionState",
            d.identity.connection_state.as_str().to_string(),
        ),
        ("lastActivityTime", opt_time(d.identity.last_activity_time)),
        (
            "authentication",
            d.identity.authentication_type.as_str().to_string(),
        ),
        ("iotEdge", d.identity.capabilities.iot_edge.to_string()),
        ("etag", d.etag().to_string()),
        ("generationId", d.generation_id.clone()),
    ])
}

/// `device create ID`.
pub async fn create(api: &dyn ServiceApi, out: &mut Out<'_>, args: &CreateArgs) -> CliResult {
    let Some(id) = &args.device_id else {
        return Err(CliError::usage("give a device id or --from FILE"));
    };
    let mut spec = DeviceSpec::new(device_id(id)?);
    if let Some(tags) = &args.tags {
        spec = spec.tags(json_object_arg("--tags", tags)?);
    }
    if let Some(desired) = &args.desired {
        spec = spec.desired(json_object_arg("--desired", desired)?);
    }
    if let Some(reason) = &args.disabled {
        spec = spec.disabled(reason.clone());
    }
    let device = api.create_device(spec).await?;
    print_device(out, &device)
}

/// `device show ID`.
pub async fn show(api: &dyn ServiceApi, out: &mut Out<'_>, id: &str) -> CliResult {
    let device = api.get_device(device_id(id)?.as_str()).await?;
    print_device(out, &device)
}

/// `device list`: every identity (or `--top`), paging through the registry.
pub async fn list(api: &dyn ServiceApi, out: &mut Out<'_>, args: &ListArgs) -> CliResult {
    let top = args.top.unwrap_or(usize::MAX);
    if top == 0 {
        return Err(CliError::usage("--top must be at least 1"));
    }
    let mut devices = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let want = (top - devices.len()).min(LIST_PAGE);
        let page = api.list_devices(continuation.as_deref(), want).await?;
        devices.extend(page.items);
        continuation = page.continuation;
        if continuation.is_none() || devices.len() >= top {
            break;
        }
    }
    devices.truncate(top);
    if out.json {
        return out.json_value(&devices);
    }
    let rows: Vec<Vec<String>> = devices
        .iter()
        .map(|d| {
            vec![
                d.device_id.to_string(),
                d.state().as_str().to_string(),
                d.identity.status.as_str().to_string(),
                d.identity.connection_state.as_str().to_string(),
                opt_time(d.identity.last_activity_time),
                d.identity.status_reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.table(
        &[
            "DEVICE ID",
            "STATE",
            "STATUS",
            "CONNECTION",
            "LAST ACTIVITY",
            "REASON",
        ],
        &rows,
    )?;
    if !out.json {
        out.line(format!("{} device(s)", devices.len()))?;
    }
    Ok(())
}

/// `device update ID`: capabilities and keys.
pub async fn update(api: &dyn ServiceApi, out: &mut Out<'_>, args: &UpdateArgs) -> CliResult {
    if args.iot_edge.is_none() && args.primary_key.is_none() && args.secondary_key.is_none() {
        return Err(CliError::usage(
            "nothing to update: give --iot-edge, --primary-key or --secondary-key (use `device enable`/`disable` for the status)",
        ));
    }
    let mut device = api.get_device(device_id(&args.device_id)?.as_str()).await?;
    if let Some(edge) = args.iot_edge {
        device.identity_mut().capabilities.iot_edge = edge;
    }
    let keys = &mut device.symmetric_key;
    if let Some(k) = &args.primary_key {
        keys.primary_key = Some(k.clone());
    }
    if let Some(k) = &args.secondary_key {
        keys.secondary_key = Some(k.clone());
    }
    let etag = args
        .etag
        .clone()
        .unwrap_or_else(|| device.etag().to_string());
    let device = api.update_device(device, Some(&etag)).await?;
    print_device(out, &device)
}

/// `device disable ID`.
pub async fn disable(api: &dyn ServiceApi, out: &mut Out<'_>, args: &DisableArgs) -> CliResult {
    let device = api
        .disable_device(device_id(&args.device_id)?.as_str(), &args.reason)
        .await?;
    print_device(out, &device)
}

/// `device enable ID`.
pub async fn enable(api: &dyn ServiceApi, out: &mut Out<'_>, id: &str) -> CliResult {
    let device = api.enable_device(device_id(id)?.as_str()).await?;
    print_device(out, &device)
}

/// `device retire ID`.
pub async fn retire(api: &dyn ServiceApi, out: &mut Out<'_>, id: &str) -> CliResult {
    let device = api.retire_device(device_id(id)?.as_str()).await?;
    print_device(out, &device)
}

/// `device delete ID`.
pub async fn delete(api: &dyn ServiceApi, out: &mut Out<'_>, args: &DeleteArgs) -> CliResult {
    let id = device_id(&args.device_id)?;
    api.delete_device(id.as_str(), args.etag.as_deref()).await?;
    if out.json {
        out.json_value(&serde_json::json!({"deviceId": id.as_str(), "deleted": true}))
    } else {
        out.line(format!("deleted {id}"))
    }
}

/// `device keys show ID`.
pub async fn keys_show(api: &dyn ServiceApi, out: &mut Out<'_>, id: &str) -> CliResult {
    let device = api.get_device(device_id(id)?.as_str()).await?;
    print_keys(out, &device)
}

/// `device keys regenerate ID WHICH`.
pub async fn keys_regenerate(
    api: &dyn ServiceApi,
    out: &mut Out<'_>,
    id: &str,
    which: Which,
) -> CliResult {
    let device = api
        .regenerate_key(device_id(id)?.as_str(), which.into())
        .await?;
    print_keys(out, &device)
}

fn print_keys(out: &mut Out<'_>, d: &Device) -> CliResult {
    let keys = &d.symmetric_key;
    if out.json {
        return out.json_value(keys);
    }
    out.fields(&[
        ("deviceId", d.device_id.to_string()),
        ("primaryKey", keys.primary_key.clone().unwrap_or_default()),
        (
            "secondaryKey",
            keys.secondary_key.clone().unwrap_or_default(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{hub, run};

    fn create_args(id: &str) -> CreateArgs {
        CreateArgs {
            device_id: Some(id.into()),
            from: None,
            tags: None,
            desired: None,
            disabled: None,
        }
    }

    #[tokio::test]
    async fn create_show_list_disable_enable_delete() {
        let hub = hub().await;
        let mut args = create_args("pump-1");
        args.tags = Some(r#"{"site":"north"}"#.into());
        let text = run(false, async |o| create(&hub, o, &args).await)
            .await
            .unwrap();
        assert!(text.contains("deviceId          pump-1"), "{text}");
        assert!(!text.contains(
            hub.get_device("pump-1")
                .unwrap()
                .symmetric_key
                .primary_key
                .as_deref()
                .unwrap()
        ));
        assert_eq!(
            serde_json::to_value(hub.get_twin("pump-1").unwrap()).unwrap()["tags"]["site"],
            "north"
        );
        run(false, async |o| {
            create(&hub, o, &create_args("pump-2")).await
        })
        .await
        .unwrap();

        let all = ListArgs { top: None };
        let text = run(false, async |o| list(&hub, o, &all).await)
            .await
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("DEVICE ID"));
        assert!(lines[1].starts_with("pump-1") && lines[2].starts_with("pump-2"));
        assert_eq!(lines[3], "2 device(s)");
        let json = run(true, async |o| {
            list(&hub, o, &ListArgs { top: Some(1) }).await
        })
        .await
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);

        let dis = DisableArgs {
            device_id: "pump-1".into(),
            reason: "maintenance".into(),
        };
        let text = run(false, async |o| disable(&hub, o, &dis).await)
            .await
            .unwrap();
        assert!(text.contains("maintenance"), "{text}");
        assert_eq!(
            hub.get_device("pump-1").unwrap().identity.status.as_str(),
            "disabled"
        );
        run(false, async |o| enable(&hub, o, "pump-1").await)
            .await
            .unwrap();
        assert_eq!(
            hub.get_device("pump-1").unwrap().identity.status.as_str(),
            "enabled"
        );

        let del = DeleteArgs {
            device_id: "pump-1".into(),
            etag: None,
        };
        assert_eq!(
            run(false, async |o| delete(&hub, o, &del).await)
                .await
                .unwrap(),
            "deleted pump-1\n"
        );
        let err = run(false, async |o| show(&hub, o, "pump-1").await)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 4);
    }

    #[tokio::test]
    async fn bad_input_fails_before_the_hub() {
        let hub = hub().await;
        let mut args = create_args("p");
        args.tags = Some("{not json".into());
        let err = run(false, async |o| create(&hub, o, &args).await)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--tags"));
        let err = run(false, async |o| create(&hub, o, &create_args("a b")).await)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(hub.device_count(), 0);
        let dup = run(false, async |o| create(&hub, o, &create_args("p")).await).await;
        dup.unwrap();
        let err = run(false, async |o| create(&hub, o, &create_args("p")).await)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("already exists"));
    }

    #[tokio::test]
    async fn update_keys_and_capabilities() {
        let hub = hub().await;
        run(false, async |o| create(&hub, o, &create_args("gw")).await)
            .await
            .unwrap();
        let before = hub.get_device("gw").unwrap();
        let args = UpdateArgs {
            device_id: "gw".into(),
            iot_edge: Some(true),
            primary_key: None,
            secondary_key: None,
            etag: None,
        };
        run(false, async |o| update(&hub, o, &args).await)
            .await
            .unwrap();
        assert!(hub.get_device("gw").unwrap().identity.capabilities.iot_edge);
        let stale = UpdateArgs {
            etag: Some(before.etag().to_string()),
            ..args
        };
        let err = run(false, async |o| update(&hub, o, &stale).await)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("precondition"), "{err}");

        let text = run(false, async |o| {
            keys_regenerate(&hub, o, "gw", Which::Primary).await
        })
        .await
        .unwrap();
        let after = hub.get_device("gw").unwrap();
        let new_key = after.symmetric_key.primary_key.unwrap();
        assert_ne!(Some(new_key.clone()), before.symmetric_key.primary_key);
        assert!(text.contains(&new_key));
        let json = run(true, async |o| keys_show(&hub, o, "gw").await)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["primaryKey"], new_key.as_str());
        run(false, async |o| retire(&hub, o, "gw").await)
            .await
            .unwrap();
        assert_eq!(hub.get_device("gw").unwrap().state().as_str(), "retired");
    }
}
