//! `iot-dm firmware ...`: the hub's firmware artifact store (upload, list, delete).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncRead, ReadBuf};

use iot_dm::service::api::{ArtifactApi, ArtifactUpload};
use iot_dm::service::artifacts::{ArtifactInfo, Sha256Digest};

use crate::error::{CliError, CliResult};
use crate::output::Out;

/// `iot-dm firmware ...`.
#[derive(Debug, Subcommand)]
pub enum FirmwareCommand {
    /// Upload a firmware image (streamed from the file, with a progress bar on a terminal);
    /// prints its SHA-256, the name devices download it by.
    Upload(UploadArgs),
    /// List the stored images: SHA-256, size, upload time, name and version.
    List,
    /// Delete a stored image.
    Delete(DeleteArgs),
}

/// `firmware upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The image file.
    pub file: PathBuf,
    /// A version to list with the image.
    #[arg(long)]
    pub version: Option<String>,
    /// A name to list with the image.
    #[arg(long)]
    pub name: Option<String>,
}

/// `firmware delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The image's SHA-256 (64 hexadecimal digits).
    pub sha256: String,
}

/// Runs a `firmware` command.
pub async fn run(api: &dyn ArtifactApi, out: &mut Out<'_>, cmd: FirmwareCommand) -> CliResult {
    match cmd {
        FirmwareCommand::Upload(a) => upload(api, out, &a).await,
        FirmwareCommand::List => list(api, out).await,
        FirmwareCommand::Delete(a) => delete(api, out, &a.sha256).await,
    }
}

/// A reader that moves a progress bar by the bytes it gives.
struct Progress<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: AsyncRead + Unpin> AsyncRead for Progress<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            self.bar.inc((buf.filled().len() - before) as u64);
        }
        polled
    }
}

async fn upload(api: &dyn ArtifactApi, out: &mut Out<'_>, args: &UploadArgs) -> CliResult {
    let shown = args.file.display().to_string();
    let file = tokio::fs::File::open(&args.file)
        .await
        .map_err(|e| CliError::io(format!("opening {shown}"), e))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| CliError::io(format!("reading the size of {shown}"), e))?
        .len();
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(size);
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut reader = Progress {
        inner: file,
        bar: bar.clone(),
    };
    let mut request = ArtifactUpload::new().size(size);
    if let Some(v) = &args.version {
        request = request.version(v.clone());
    }
    if let Some(n) = &args.name {
        request = request.name(n.clone());
    }
    let result = api.upload_artifact(&mut reader, request).await;
    bar.finish_and_clear();
    let info = result?;
    if out.json {
        return out.json_value(&info);
    }
    out.line(format!(
        "uploaded {shown}: sha256 {} ({} bytes)",
        info.sha256, info.size
    ))
}

/// `firmware list`: one row per image, the digest whole (it is what devices and `delete`
/// take).
async fn list(api: &dyn ArtifactApi, out: &mut Out<'_>) -> CliResult {
    let all = api.artifacts().await?;
    if out.json {
        return out.json_value(&all);
    }
    let header = ["sha256", "size", "uploaded", "name", "version"];
    let rows: Vec<[String; 5]> = all.iter().map(row).collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let render = |cells: [&str; 5]| {
        let mut line = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 < cells.len() {
                line.push_str(&format!("{c:<w$}  "));
            } else {
                line.push_str(c);
            }
        }
        line.trim_end().to_string()
    };
    out.line(render(header))?;
    for r in &rows {
        out.line(render([&r[0], &r[1], &r[2], &r[3], &r[4]]))?;
    }
    Ok(())
}

fn row(a: &ArtifactInfo) -> [String; 5] {
    [
        a.sha256.to_string(),
        a.size.to_string(),
        a.uploaded_time.to_string(),
        a.name
            .clone()
            .unwrap_or_default()
            .replace(['\n', '\r', '\t'], " "),
        a.version
            .clone()
            .unwrap_or_default()
            .replace(['\n', '\r', '\t'], " "),
    ]
}

async fn delete(api: &dyn ArtifactApi, out: &mut Out<'_>, sha256: &str) -> CliResult {
    let digest: Sha256Digest = sha256
        .parse()
        .map_err(|e| CliError::usage(format!("{e}")))?;
    api.delete_artifact(&digest).await?;
    if out.json {
        out.json_value(&serde_json::json!({ "deleted": digest }))
    } else {
        out.line(format!("deleted firmware {digest}"))
    }
}
