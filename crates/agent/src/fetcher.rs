//! The fetcher (reference §7.6): before an executor starts, every URI of its CommandInfo is
//! fetched, in order, into its sandbox. `http://` URIs are downloaded, `file://` URIs and
//! absolute paths are copied; `executable` makes the file 0755 and skips extraction; `extract`
//! (on by default) unpacks `.tar`, `.tar.gz`/`.tgz` (in process) and `.zip` (with the system
//! `unzip`, as Mesos does) into the sandbox, keeping the archive; `output_file` renames;
//! `cache` keeps one copy per (user, URI) under the cache directory so that it is downloaded
//! once.
//!
//! Not done: `https://` (the agent has no TLS stack), `ftp://` and Hadoop URIs, paths relative
//! to `--frameworks_home`, `.tar.bz2`/`.tar.xz`/`.gz`, evicting cache entries
//! (`--fetcher_cache_size`). Giving the fetched files to the task's user is the launcher's
//! (it chowns the whole sandbox after the fetch).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_proto::v1::command_info::Uri;
use tokio::io::AsyncWriteExt;

/// Mesos aborts a download that makes no progress for a minute (`--fetcher_stall_timeout`).
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one URI could not be fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("https is not supported by this agent (it has no TLS stack); use http:// or a file")]
    Https,
    #[error("unsupported URI scheme '{0}' (http://, file:// and absolute paths are supported)")]
    Scheme(String),
    #[error("relative path '{0}' (only absolute paths are supported, not --frameworks_home)")]
    Relative(String),
    #[error("cannot tell a file name from the URI; set output_file")]
    NoName,
    #[error("output_file '{0}' must be a relative path that stays inside the sandbox")]
    OutputFile(String),
    #[error("{0}")]
    Http(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("cannot extract {path}: {message}")]
    Extract { path: String, message: String },
    #[error("the fetch was interrupted: {0}")]
    Interrupted(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FetchError {
    let context = context.into();
    move |source| FetchError::Io { context, source }
}

/// Fetches URIs into sandboxes; one per agent, shared by all launches.
#[derive(Debug)]
pub(crate) struct Fetcher {
    cache_dir: PathBuf,
    client: reqwest::Client,
    /// One lock per cache entry, so that launches sharing a cached URI download it once
    /// instead of racing each other.
    entries: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl Fetcher {
    pub(crate) fn new(cache_dir: PathBuf) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(STALL_TIMEOUT)
            .build()?;
        Ok(Self { cache_dir, client, entries: Mutex::new(HashMap::new()) })
    }

    /// Fetches every URI in order into `sandbox` (created if needed). The first failure stops
    /// the fetch; its message names the URI, since it becomes the task's status message.
    pub(crate) async fn fetch_all(
        &self,
        uris: &[Uri],
        sandbox: &Path,
        user: Option<&str>,
    ) -> Result<(), String> {
        if uris.is_empty() {
            return Ok(());
        }
        tokio::fs::create_dir_all(sandbox)
            .await
            .map_err(|e| format!("cannot create sandbox {}: {e}", sandbox.display()))?;
        for uri in uris {
            self.fetch(uri, sandbox, user)
                .await
                .map_err(|e| format!("Failed to fetch '{}': {e}", uri.value))?;
            tracing::debug!(uri = %uri.value, sandbox = %sandbox.display(), "fetched");
        }
        Ok(())
    }

    async fn fetch(&self, uri: &Uri, sandbox: &Path, user: Option<&str>) -> Result<(), FetchError> {
        let source = Source::parse(&uri.value)?;
        let target = sandbox.join(output_name(uri)?);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io(format!("cannot create {}", parent.display())))?;
        }
        if uri.cache() {
            let entry = self.cache_dir.join(cache_key(user, &uri.value));
            let lock = self.entry_lock(&entry);
            let _held = lock.lock().await;
            if !tokio::fs::try_exists(&entry).await.unwrap_or(false) {
                tokio::fs::create_dir_all(&self.cache_dir)
                    .await
                    .map_err(io(format!("cannot create {}", self.cache_dir.display())))?;
                self.download(&source, &entry).await?;
            }
            tokio::fs::copy(&entry, &target)
                .await
                .map_err(io(format!("cannot copy {} from the cache", entry.display())))?;
        } else {
            self.download(&source, &target).await?;
        }
        let (executable, extract) = (uri.executable(), uri.extract());
        let sandbox = sandbox.to_path_buf();
        tokio::task::spawn_blocking(move || finish(&target, &sandbox, executable, extract))
            .await
            .map_err(|e| FetchError::Interrupted(e.to_string()))?
    }

    fn entry_lock(&self, entry: &Path) -> Arc<tokio::sync::Mutex<()>> {
        // A poisoned map only means another fetch panicked while inserting; the map is still
        // a valid cache of locks.
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.entry(entry.to_path_buf()).or_default().clone()
    }

    /// Writes `source` to `to` through a temporary name, so that a half-written file is never
    /// taken for a whole one (which matters for cache entries).
    async fn download(&self, source: &Source, to: &Path) -> Result<(), FetchError> {
        let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let part = to.with_file_name(format!(".{name}.fetching"));
        let result = match source {
            Source::Local(path) => tokio::fs::copy(path, &part)
                .await
                .map(drop)
                .map_err(io(format!("cannot copy {}", path.display()))),
            Source::Http(url) => self.http_get(url, &part).await,
        };
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
        tokio::fs::rename(&part, to).await.map_err(io(format!("cannot rename to {}", to.display())))
    }

    async fn http_get(&self, url: &str, to: &Path) -> Result<(), FetchError> {
        let mut response =
            self.client.get(url).send().await.map_err(|e| FetchError::Http(chain(&e)))?;
        if !response.status().is_success() {
            return Err(FetchError::Http(format!(
                "the server answered HTTP {}",
                response.status()
            )));
        }
        let mut file = tokio::fs::File::create(to)
            .await
            .map_err(io(format!("cannot create {}", to.display())))?;
        while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Http(chain(&e)))? {
            file.write_all(&chunk).await.map_err(io(format!("cannot write {}", to.display())))?;
        }
        // A tokio file finishes its last write in the background; flushing waits for it.
        file.flush().await.map_err(io(format!("cannot write {}", to.display())))
    }
}

/// An error with its causes, since reqwest's own message leaves out why (refused, timed out).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Where a URI's bytes come from.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    Http(String),
    Local(PathBuf),
}

impl Source {
    fn parse(value: &str) -> Result<Self, FetchError> {
        if value.starts_with("http://") {
            return Ok(Self::Http(value.to_string()));
        }
        if value.starts_with("https://") {
            return Err(FetchError::Https);
        }
        let path = value.strip_prefix("file://").unwrap_or(value);
        if path.starts_with('/') {
            return Ok(Self::Local(PathBuf::from(path)));
        }
        match value.split_once("://") {
            Some((scheme, _)) => Err(FetchError::Scheme(scheme.to_string())),
            None => Err(FetchError::Relative(value.to_string())),
        }
    }
}

/// The path, relative to the sandbox, that a URI is fetched to: `output_file` if given, else
/// the last segment of the URI's path (without query or fragment).
fn output_name(uri: &Uri) -> Result<PathBuf, FetchError> {
    if let Some(output) = uri.output_file.as_deref().filter(|o| !o.is_empty()) {
        let path = PathBuf::from(output);
        // Anything but plain names could write outside the sandbox.
        if path.components().all(|c| matches!(c, Component::Normal(_))) {
            return Ok(path);
        }
        return Err(FetchError::OutputFile(output.to_string()));
    }
    let value = uri.value.as_str();
    let without_scheme = value.split_once("://").map_or(value, |(_, rest)| rest);
    let path = without_scheme.split(['?', '#']).next().unwrap_or_default();
    let name = match path.rsplit_once('/') {
        Some((_, name)) => name,
        None if value.contains("://") => "",
        None => path,
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(FetchError::NoName);
    }
    Ok(PathBuf::from(name))
}

/// The cache file of a URI fetched for `user`: a stable hash (FNV-1a), so that the name is
/// the same after the agent restarts and needs no escaping.
fn cache_key(user: Option<&str>, uri: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user.unwrap_or_default().bytes().chain([0]).chain(uri.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Archive {
    Tar,
    TarGz,
    Zip,
}

fn archive_kind(path: &Path) -> Option<Archive> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some(Archive::TarGz)
    } else if name.ends_with(".tar") {
        Some(Archive::Tar)
    } else if name.ends_with(".zip") {
        Some(Archive::Zip)
    } else {
        None
    }
}

/// What happens to a fetched file: made executable, or unpacked into the sandbox if it is an
/// archive and extraction is wanted.
fn finish(
    target: &Path,
    sandbox: &Path,
    executable: bool,
    extract: bool,
) -> Result<(), FetchError> {
    if executable {
        return std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("cannot make {} executable", target.display())));
    }
    match archive_kind(target) {
        Some(kind) if extract => unpack(target, sandbox, kind)
            .map_err(|message| FetchError::Extract { path: target.display().to_string(), message }),
        _ => Ok(()),
    }
}

fn unpack(archive: &Path, into: &Path, kind: Archive) -> Result<(), String> {
    let open = || std::fs::File::open(archive).map_err(|e| e.to_string());
    // The tar crate refuses entries that would land outside `into` (`..`, absolute paths).
    match kind {
        Archive::Tar => tar::Archive::new(open()?).unpack(into).map_err(|e| e.to_string()),
        Archive::TarGz => tar::Archive::new(flate2::read::GzDecoder::new(open()?))
            .unpack(into)
            .map_err(|e| e.to_string()),
        Archive::Zip => {
            let output = std::process::Command::new("unzip")
                .arg("-o")
                .arg("-q")
                .arg(archive)
                .arg("-d")
                .arg(into)
                .output()
                .map_err(|e| match e.kind() {
                    ErrorKind::NotFound => "the `unzip` program is needed for .zip archives".into(),
                    _ => format!("cannot run unzip: {e}"),
                })?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "unzip failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests;
