//! `iot-dm twin ...`, `iot-dm query`, `iot-dm method invoke`.

use iot_dm::core::method::MethodRequest;
use iot_dm::core::query::PageRequest;
use iot_dm::core::twin::TwinPatch;
use iot_dm::service::api::ServiceApi;

use crate::cli::{InvokeArgs, QueryArgs, TwinUpdateArgs};
use crate::error::{CliError, CliResult};
use crate::input::{device_id, json_arg, json_object_arg};
use crate::output::{query_table, Out};

/// Largest query page.
const MAX_PAGE: usize = 1000;

/// `twin show ID`: the twin as JSON (a twin is a document, so both forms are JSON).
pub async fn show(api: &dyn ServiceApi, out: &mut Out<'_>, id: &str) -> CliResult {
    let twin = api.get_twin(device_id(id)?.as_str()).await?;
    out.json_value(&twin)
}

/// `twin update ID PATCH [--etag E]`: merges tags and desired properties.
pub async fn update(api: &dyn ServiceApi, out: &mut Out<'_>, args: &TwinUpdateArgs) -> CliResult {
    let id = device_id(&args.device_id)?;
    let value = json_object_arg("the twin patch", &args.patch)?;
    let patch: TwinPatch = serde_json::from_value(value).map_err(|e| {
        CliError::usage(format!(
            "the twin patch is not {{\"tags\":{{...}},\"properties\":{{\"desired\":{{...}}}}}}: {e}"
        ))
    })?;
    if patch.tags.is_none() && patch.desired.is_none() {
        return Err(CliError::usage(
            "the twin patch changes nothing: give \"tags\" and/or \"properties\":{\"desired\":...}",
        ));
    }
    let twin = api
        .update_twin(id.as_str(), &patch, args.etag.as_deref())
        .await?;
    out.json_value(&twin)
}

/// `query SQL`: pages through every row (or `--top`), then prints a table or a JSON array.
pub async fn query(api: &dyn ServiceApi, out: &mut Out<'_>, args: &QueryArgs) -> CliResult {
    if !(1..=MAX_PAGE).contains(&args.page_size) {
        return Err(CliError::usage(format!(
            "--page-size {} is out of range: 1 to {MAX_PAGE}",
            args.page_size
        )));
    }
    let top = args.top.unwrap_or(usize::MAX);
    let mut rows = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let request = PageRequest::new()
            .size(args.page_size)
            .continuation_opt(continuation.take());
        let page = if args.archive {
            api.query_archive_page(&args.sql, &request).await?
        } else {
            api.query_page(&args.sql, &request).await?
        };
        rows.extend(page.items);
        continuation = page.continuation;
        if continuation.is_none() || rows.len() >= top {
            break;
        }
    }
    rows.truncate(top);
    if out.json {
        return out.json_value(&rows);
    }
    let (columns, cells) = query_table(&rows);
    let header: Vec<&str> = columns.iter().map(String::as_str).collect();
    out.table(&header, &cells)?;
    out.line(format!("{} row(s)", rows.len()))
}

/// `method invoke ID NAME [--payload JSON] [--timeout S]`.
pub async fn invoke(api: &dyn ServiceApi, out: &mut Out<'_>, args: &InvokeArgs) -> CliResult {
    let id = device_id(&args.device_id)?;
    let mut builder = MethodRequest::builder(args.name.clone())
        .response_timeout_secs(args.timeout)
        .connect_timeout_secs(args.connect_timeout);
    if let Some(p) = &args.payload {
        builder = builder.payload(json_arg("--payload", p)?);
    }
    let request = builder
        .build()
        .map_err(|e| CliError::usage(format!("method request: {e}")))?;
    let response = api.invoke_method(id.as_str(), &request).await?;
    if out.json {
        return out.json_value(&response);
    }
    out.line(format!("status: {}", response.status))?;
    out.json_value(&response.payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{hub, run};
    use iot_dm::service::hub::DeviceSpec;
    use serde_json::Value;

    #[tokio::test]
    async fn update_then_show_and_query() {
        let hub = hub().await;
        for id in ["a", "b", "c"] {
            hub.create_device(DeviceSpec::new(id.parse().unwrap()))
                .await
                .unwrap();
        }
        let args = TwinUpdateArgs {
            device_id: "b".into(),
            patch: r#"{"tags":{"site":"north"},"properties":{"desired":{"rate":5}}}"#.into(),
            etag: None,
        };
        let text = run(false, async |o| update(&hub, o, &args).await)
            .await
            .unwrap();
        let twin: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(twin["tags"]["site"], "north");
        assert_eq!(twin["properties"]["desired"]["rate"], 5);
        let shown: Value = serde_json::from_str(
            &run(false, async |o| show(&hub, o, "b").await)
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(shown["etag"], twin["etag"]);

        let stale = TwinUpdateArgs {
            etag: Some("AAAAAAAAAAE=".into()),
            ..args
        };
        let err = run(false, async |o| update(&hub, o, &stale).await)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("recondition"), "{err}");

        // pages of 1 through 3 devices
        let q = QueryArgs {
            sql: "SELECT deviceId, tags.site FROM devices".into(),
            page_size: 1,
            top: None,
            archive: false,
        };
        let json = run(true, async |o| query(&hub, o, &q).await).await.unwrap();
        let rows: Vec<Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(rows.len(), 3);
        let text = run(false, async |o| query(&hub, o, &q).await)
            .await
            .unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("b ") && l.ends_with("north")),
            "{text}"
        );
        assert!(text.ends_with("3 row(s)\n"));
        let top = QueryArgs { top: Some(2), ..q };
        let json = run(true, async |o| query(&hub, o, &top).await)
            .await
            .unwrap();
        assert_eq!(serde_json::from_str::<Vec<Value>>(&json).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn bad_patches_queries_and_methods_are_usage_errors() {
        let hub = hub().await;
        hub.create_device(DeviceSpec::new("d".parse().unwrap()))
            .await
            .unwrap();
        for patch in ["{oops", "[]", "{}", r#"{"tags":5}"#] {
            let args = TwinUpdateArgs {
                device_id: "d".into(),
                patch: patch.into(),
                etag: None,
            };
            let err = run(false, async |o| update(&hub, o, &args).await)
                .await
                .unwrap_err();
            assert_eq!(err.exit_code(), 2, "{patch}: {err}");
        }
        let q = QueryArgs {
            sql: "SELEKT * FROM devices".into(),
            page_size: 100,
            top: None,
            archive: false,
        };
        let err = run(false, async |o| query(&hub, o, &q).await)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        let q = QueryArgs { page_size: 0, ..q };
        let err = run(false, async |o| query(&hub, o, &q).await)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("--page-size"));

        let m = InvokeArgs {
            device_id: "d".into(),
            name: "reboot".into(),
            payload: Some("{bad".into()),
            timeout: 30,
            connect_timeout: 0,
        };
        let err = run(false, async |o| invoke(&hub, o, &m).await)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let m = InvokeArgs {
            payload: None,
            timeout: 301,
            ..m
        };
        let err = run(false, async |o| invoke(&hub, o, &m).await)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        // not connected: the hub says so (not a usage error, not "not found")
        let m = InvokeArgs { timeout: 5, ..m };
        let err = run(false, async |o| invoke(&hub, o, &m).await)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 1, "{err}");
        assert!(err.to_string().contains("not online"), "{err}");
    }

    #[cfg(feature = "device")]
    #[tokio::test]
    async fn invoke_prints_the_device_answer() {
        use iot_dm::core::method::MethodResponse;
        use iot_dm::device::{DeviceClient, DeviceCredentials, InMemoryTransport};
        use std::sync::Arc;

        let hub = hub().await;
        let d = hub
            .create_device(DeviceSpec::new("pump".parse().unwrap()))
            .await
            .unwrap();
        let key = d.symmetric_key.primary_key.unwrap();
        let creds =
            DeviceCredentials::symmetric_key(crate::test_util::HOST, d.device_id, &key).unwrap();
        let client = DeviceClient::builder(creds, InMemoryTransport::new(Arc::new(hub.clone())))
            .connect()
            .await
            .unwrap();
        client.on_method("reboot", |call| async move {
            MethodResponse::new(201, serde_json::json!({"echo": call.payload})).unwrap()
        });
        let m = InvokeArgs {
            device_id: "pump".into(),
            name: "reboot".into(),
            payload: Some(r#"{"delay":3}"#.into()),
            timeout: 5,
            connect_timeout: 0,
        };
        let text = run(false, async |o| invoke(&hub, o, &m).await)
            .await
            .unwrap();
        assert!(text.starts_with("status: 201\n"), "{text}");
        let json = run(true, async |o| invoke(&hub, o, &m).await)
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status": 201, "payload": {"echo": {"delay": 3}}})
        );
    }
}
