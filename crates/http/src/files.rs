//! The Mesos files API over a table of attachments (reference §4.4), shared by the agent (its
//! sandboxes) and the master (its log file): resolving a requested path through the table,
//! browsing a directory, reading a slice of a file with Mesos's offset and length rules,
//! finding a file to download, and the HTTP handlers of `/files/{browse,read,download,debug}`
//! and the operator API's LIST_FILES and READ_FILE answers.
//!
//! An attachment maps a virtual path to a real directory or file; the daemon builds the table
//! on every request (`Attach`) rather than keeping it, so it can never disagree with the disk.
//! Whatever a path names must lie, after following links, inside what it was resolved
//! through; `..`, paths attached to nothing and links that point out are refused. What is
//! attached (the sandbox layout, the log file) is the daemon's business, not this module's.

use std::collections::{BTreeMap, HashMap};
use std::fs::Metadata;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agora_proto::v1;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::{Refusal, refuse};

/// The most one read returns: 16 pages, as in Mesos, so that tailing clients page through
/// a large file instead of pulling it into memory at once.
pub const READ_CAP: u64 = 16 * 4096;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilesError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
}

/// The answer to a read: the data (UTF-8, lossily) and the offset it starts at.
#[derive(Debug, PartialEq, Eq)]
pub struct ReadResult {
    pub data: String,
    pub offset: u64,
}

/// One entry of a browse answer, with Mesos's `FileInfo` fields.
#[derive(Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// The requested path joined with the entry's name (virtual if the request was).
    pub path: String,
    pub nlink: u64,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// `ls -l` style, e.g. `drwxr-xr-x`.
    pub mode: String,
    /// The raw `st_mode` (type and permission bits), as the v1 `FileInfo` carries it.
    pub st_mode: u32,
    /// User and group names, or their numbers when the system knows no name.
    pub uid: String,
    pub gid: String,
}

impl FileInfo {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path,
            "nlink": self.nlink,
            "size": self.size,
            "mtime": self.mtime,
            "mode": self.mode,
            "uid": self.uid,
            "gid": self.gid,
        })
    }
}

/// The virtual path table: attached path → the real directory or file it stands for (real
/// paths, links resolved, since a resolved path must stay inside it).
pub type Attachments = BTreeMap<String, PathBuf>;

/// The entries of a directory, sorted by name; nothing if it cannot be read.
pub fn children(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    entries.sort();
    entries
}

/// A path resolved through an attachment: the real path and the sandbox it must stay in.
struct Resolved {
    real: PathBuf,
    sandbox: PathBuf,
}

/// Maps a requested path to a real path inside the sandbox it is attached through.
fn resolve(table: &Attachments, path: &str) -> Result<Resolved, FilesError> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(FilesError::BadRequest(format!("Path {path} must not contain '..'")));
            }
            part => parts.push(part),
        }
    }
    let normalized = format!("/{}", parts.join("/"));
    let not_found = || FilesError::NotFound(format!("File {path} not found"));
    // The longest attached prefix wins, as a host path and its `latest` may both match.
    let (sandbox, rest) = table
        .iter()
        .rev()
        .find_map(|(attached, sandbox)| {
            if normalized == *attached {
                Some((sandbox, ""))
            } else {
                normalized
                    .strip_prefix(attached.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .map(|rest| (sandbox, rest))
            }
        })
        .ok_or_else(not_found)?;
    // Joining "" would add a trailing slash, which a file attachment (a log) cannot take.
    let joined = if rest.is_empty() { sandbox.clone() } else { sandbox.join(rest) };
    let real = std::fs::canonicalize(joined).map_err(|_| not_found())?;
    if !real.starts_with(sandbox) {
        return Err(FilesError::BadRequest(format!("Path {path} points outside its sandbox")));
    }
    Ok(Resolved { real, sandbox: sandbox.clone() })
}

/// The entries of a directory (an empty list for a file, as in Mesos).
pub fn browse(table: &Attachments, path: &str) -> Result<Vec<FileInfo>, FilesError> {
    let resolved = resolve(table, path)?;
    if !resolved.real.is_dir() {
        return Ok(Vec::new());
    }
    let mut infos = Vec::new();
    for entry in children(&resolved.real) {
        let Some(name) = entry.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        // A link is described by its target only if the target is in the sandbox, so that
        // browsing tells nothing about files the sandbox cannot read.
        let inside =
            std::fs::canonicalize(&entry).is_ok_and(|real| real.starts_with(&resolved.sandbox));
        let metadata =
            if inside { std::fs::metadata(&entry) } else { std::fs::symlink_metadata(&entry) };
        let Ok(metadata) = metadata else {
            continue;
        };
        infos.push(file_info(format!("{}/{name}", path.trim_end_matches('/')), &metadata));
    }
    Ok(infos)
}

fn file_info(path: String, metadata: &Metadata) -> FileInfo {
    let uid = metadata.uid();
    let gid = metadata.gid();
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten();
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)).ok().flatten();
    FileInfo {
        path,
        nlink: metadata.nlink(),
        size: metadata.len(),
        mtime: metadata.mtime(),
        mode: mode_string(metadata),
        st_mode: metadata.mode(),
        uid: user.map_or_else(|| uid.to_string(), |u| u.name),
        gid: group.map_or_else(|| gid.to_string(), |g| g.name),
    }
}

/// `ls -l`'s mode column: the type letter and three `rwx` triples with the set-id and sticky
/// bits folded in.
fn mode_string(metadata: &Metadata) -> String {
    let kind = metadata.file_type();
    let mut text = String::with_capacity(10);
    text.push(if kind.is_dir() {
        'd'
    } else if kind.is_symlink() {
        'l'
    } else if kind.is_char_device() {
        'c'
    } else if kind.is_block_device() {
        'b'
    } else if kind.is_fifo() {
        'p'
    } else if kind.is_socket() {
        's'
    } else {
        '-'
    });
    text.push_str(&permissions(metadata.permissions().mode()));
    text
}

fn permissions(mode: u32) -> String {
    let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
    let special = |exec: u32, special: u32, set: char, unset: char| match (
        mode & exec != 0,
        mode & special != 0,
    ) {
        (true, true) => set,
        (false, true) => unset,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't', 'T'),
    ]
    .iter()
    .collect()
}

/// Reads a slice of a file. `offset` absent or -1 asks for the size only; an offset at or
/// past the end answers no data at the file's size; `length` absent or -1 reads to the end;
/// every read stops after `READ_CAP` bytes; other negative values are bad requests.
pub fn read(
    table: &Attachments,
    path: &str,
    offset: Option<i64>,
    length: Option<i64>,
) -> Result<ReadResult, FilesError> {
    for (name, value) in [("offset", offset), ("length", length)] {
        if let Some(v) = value
            && v < -1
        {
            return Err(FilesError::BadRequest(format!("Negative {name} provided: {v}")));
        }
    }
    let offset = match offset {
        None | Some(-1) => None,
        Some(o) => Some(o.unsigned_abs()),
    };
    let length = match length {
        None | Some(-1) => None,
        Some(l) => Some(l.unsigned_abs()),
    };
    let (size, data) = read_bytes(table, path, offset.unwrap_or(u64::MAX), length)?;
    match offset {
        Some(offset) if offset < size => {
            Ok(ReadResult { data: String::from_utf8_lossy(&data).into_owned(), offset })
        }
        _ => Ok(ReadResult { data: String::new(), offset: size }),
    }
}

/// The bytes of a file from `offset` (none at or past the end), at most `length` of them and
/// never more than `READ_CAP`, with the file's size: the operator API's READ_FILE, and what
/// `/files/read` answers in text.
pub fn read_bytes(
    table: &Attachments,
    path: &str,
    offset: u64,
    length: Option<u64>,
) -> Result<(u64, Vec<u8>), FilesError> {
    let file = regular_file(table, path, "read")?;
    let mut handle = std::fs::File::open(&file)
        .map_err(|e| FilesError::NotFound(format!("Failed to open file {path}: {e}")))?;
    let size = handle
        .metadata()
        .map_err(|e| FilesError::NotFound(format!("Failed to stat file {path}: {e}")))?
        .len();
    if offset >= size {
        return Ok((size, Vec::new()));
    }
    let length = length.unwrap_or(READ_CAP).min(READ_CAP);
    handle
        .seek(SeekFrom::Start(offset))
        .map_err(|e| FilesError::NotFound(format!("Failed to seek file {path}: {e}")))?;
    let mut buffer = Vec::new();
    handle
        .take(length)
        .read_to_end(&mut buffer)
        .map_err(|e| FilesError::NotFound(format!("Failed to read file {path}: {e}")))?;
    Ok((size, buffer))
}

/// The real path of a file to download, and the name to offer it under: the last part of
/// the requested path, as in Mesos (a link is downloaded under its own name).
pub fn download(table: &Attachments, path: &str) -> Result<(PathBuf, String), FilesError> {
    let file = regular_file(table, path, "download")?;
    let name = path.rsplit('/').find(|part| !part.is_empty()).unwrap_or_default().to_string();
    Ok((file, name))
}

/// The content type Mesos would pick for a file name: by extension, else raw bytes.
pub fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("txt" | "log") => "text/plain",
        Some("json") => "application/json",
        Some("html" | "htm") => "text/html",
        Some("css") => "text/css",
        Some("js") => "application/javascript",
        Some("xml") => "application/xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("gz" | "tgz") => "application/gzip",
        Some("tar") => "application/x-tar",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}

/// Resolves a path that must name a regular file; a directory is a bad request.
fn regular_file(table: &Attachments, path: &str, what: &str) -> Result<PathBuf, FilesError> {
    let resolved = resolve(table, path)?;
    if resolved.real.is_dir() {
        return Err(FilesError::BadRequest(format!("Cannot {what} a directory: {path}")));
    }
    Ok(resolved.real)
}

/// Builds the attachment table on a blocking thread, for each request.
pub type Source = Arc<dyn Fn() -> Attachments + Send + Sync>;

/// Runs a files operation off the async threads and maps its refusals to Mesos's codes.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FilesError> + Send + 'static,
) -> Result<T, Refusal> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(FilesError::BadRequest(m))) => Err(refuse(StatusCode::BAD_REQUEST, m)),
        Ok(Err(FilesError::NotFound(m))) => Err(refuse(StatusCode::NOT_FOUND, m)),
        Err(e) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("files API failed: {e}"))),
    }
}

/// The operator API's LIST_FILES answer.
pub async fn list_files(source: &Source, path: String) -> Result<Vec<v1::FileInfo>, Refusal> {
    let source = Arc::clone(source);
    let infos = blocking(move || browse(&source(), &path)).await?;
    Ok(infos.into_iter().map(FileInfo::into_proto).collect())
}

/// The operator API's READ_FILE answer: the file's size and the bytes read.
pub async fn read_file(
    source: &Source,
    path: String,
    offset: u64,
    length: Option<u64>,
) -> Result<(u64, Vec<u8>), Refusal> {
    let source = Arc::clone(source);
    blocking(move || read_bytes(&source(), &path, offset, length)).await
}

impl FileInfo {
    /// The v1 `FileInfo` LIST_FILES carries.
    pub fn into_proto(self) -> v1::FileInfo {
        v1::FileInfo {
            path: self.path,
            nlink: Some(i32::try_from(self.nlink).unwrap_or(i32::MAX)),
            size: Some(self.size),
            mtime: Some(v1::TimeInfo { nanoseconds: self.mtime.saturating_mul(1_000_000_000) }),
            mode: Some(self.st_mode),
            uid: Some(self.uid),
            gid: Some(self.gid),
        }
    }
}

/// `/files/{browse,read,download,debug}` and their `.json` spellings over `source`, for a
/// daemon's router whatever its state.
pub fn routes<S: Clone + Send + Sync + 'static>(source: Source) -> Router<S> {
    Router::new()
        .route("/files/browse", get(http_browse))
        .route("/files/browse.json", get(http_browse))
        .route("/files/read", get(http_read))
        .route("/files/read.json", get(http_read))
        .route("/files/download", get(http_download))
        .route("/files/download.json", get(http_download))
        .route("/files/debug", get(http_debug))
        .route("/files/debug.json", get(http_debug))
        .with_state(source)
}

/// The `path` query parameter every files endpoint but debug needs.
fn path_param(query: &HashMap<String, String>) -> Result<String, Refusal> {
    query
        .get("path")
        .cloned()
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "Expecting 'path' query parameter"))
}

async fn http_browse(
    State(source): State<Source>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let path = path_param(&query)?;
    let infos = blocking(move || browse(&source(), &path)).await?;
    let entries: Vec<serde_json::Value> = infos.iter().map(FileInfo::to_json).collect();
    Ok(axum::Json(entries).into_response())
}

async fn http_read(
    State(source): State<Source>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let path = path_param(&query)?;
    let number = |key: &str| -> Result<Option<i64>, Refusal> {
        match query.get(key) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    format!("Failed to parse {key}: '{text}' is not a number"),
                )
            }),
        }
    };
    let offset = number("offset")?;
    let length = number("length")?;
    let read = blocking(move || read(&source(), &path, offset, length)).await?;
    Ok(axum::Json(serde_json::json!({ "data": read.data, "offset": read.offset })).into_response())
}

/// The file as an attachment, streamed in chunks so that a large file costs little memory.
async fn http_download(
    State(source): State<Source>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let path = path_param(&query)?;
    let requested = path.clone();
    let (real, name) = blocking(move || download(&source(), &path)).await?;
    let file = tokio::fs::File::open(&real).await.map_err(|e| {
        refuse(StatusCode::NOT_FOUND, format!("Failed to open file {requested}: {e}"))
    })?;
    // The stream ends after an error, so a failing disk cannot keep it spinning.
    let chunks = futures::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buffer = vec![0; 64 * 1024];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buffer)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    // Quotes would end the header's quoted string early and control characters are not
    // allowed in a header at all; a task chooses its file names.
    let quoted: String = name
        .chars()
        .map(|c| if c == '"' || c == '\\' || c.is_control() { '_' } else { c })
        .collect();
    let headers = [
        (header::CONTENT_TYPE, content_type(&name).to_string()),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{quoted}\"")),
    ];
    Ok((headers, Body::from_stream(chunks)).into_response())
}

/// The virtual path table: attached path → real path.
async fn http_debug(State(source): State<Source>) -> Result<Response, Refusal> {
    let table = blocking(move || Ok(source())).await?;
    let table: serde_json::Map<String, serde_json::Value> = table
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v.to_string_lossy().into_owned())))
        .collect();
    Ok(axum::Json(table).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_can_be_attached_on_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = std::fs::canonicalize(dir.path()).expect("canonical");
        let log = real.join("agora-master.INFO");
        std::fs::write(&log, "line one\nline two\n").expect("write");
        std::fs::write(real.join("other"), "secret").expect("write");
        let table: Attachments = [("/master/log".to_string(), log.clone())].into_iter().collect();
        let whole = read(&table, "/master/log", Some(0), None).expect("read");
        assert_eq!(whole, ReadResult { data: "line one\nline two\n".into(), offset: 0 });
        assert_eq!(
            read_bytes(&table, "/master/log", 5, Some(3)).expect("read"),
            (18, b"one".to_vec())
        );
        // A file browses to nothing, as in Mesos; what is not attached is not found.
        assert_eq!(browse(&table, "/master/log"), Ok(Vec::new()));
        assert!(matches!(
            read(&table, "/master/log/x", Some(0), None),
            Err(FilesError::NotFound(_))
        ));
        assert!(matches!(read(&table, "/master", Some(0), None), Err(FilesError::NotFound(_))));
        assert_eq!(download(&table, "/master/log").expect("download"), (log, "log".to_string()));
    }

    #[test]
    fn mode_strings_fold_in_special_bits() {
        assert_eq!(permissions(0o755), "rwxr-xr-x");
        assert_eq!(permissions(0o4755), "rwsr-xr-x");
        assert_eq!(permissions(0o2644), "rw-r-Sr--");
        assert_eq!(permissions(0o1777), "rwxrwxrwt");
        assert_eq!(permissions(0o1776), "rwxrwxrwT");
        assert_eq!(permissions(0), "---------");
    }

    #[test]
    fn content_types_follow_extensions() {
        assert_eq!(content_type("stdout"), "application/octet-stream");
        assert_eq!(content_type("a.JSON"), "application/json");
        assert_eq!(content_type("x.log"), "text/plain");
    }
}
