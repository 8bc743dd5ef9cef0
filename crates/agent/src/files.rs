//! The files API over the sandboxes (reference §4.4): browsing a directory, reading a slice of
//! a file with Mesos's offset and length rules, finding a file to download, and the table of
//! virtual paths that `/files/debug` shows.
//!
//! Every request path is resolved through the attachments, as in Mesos: each sandbox is
//! attached at its host path, at the host path of `.../runs/latest` and at the virtual
//! `/frameworks/<f>/executors/<e>/runs/latest`. The attachments are read from the work
//! directory on each request rather than kept in memory, so they can never disagree with the
//! disk (a sandbox removed by garbage collection simply stops resolving). Whatever a path names
//! must lie, after following links, inside the sandbox it was resolved through; `..`, paths
//! attached to nothing and links that point out are refused. HTTP lives in `http.rs`.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The most one read returns: 16 pages, as in Mesos, so that tailing clients page through
/// a large file instead of pulling it into memory at once.
pub(crate) const READ_CAP: u64 = 16 * 4096;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FilesError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
}

/// The answer to a read: the data (UTF-8, lossily) and the offset it starts at.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReadResult {
    pub(crate) data: String,
    pub(crate) offset: u64,
}

/// One entry of a browse answer, with Mesos's `FileInfo` fields.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FileInfo {
    /// The requested path joined with the entry's name (virtual if the request was).
    pub(crate) path: String,
    pub(crate) nlink: u64,
    pub(crate) size: u64,
    /// Seconds since the epoch.
    pub(crate) mtime: i64,
    /// `ls -l` style, e.g. `drwxr-xr-x`.
    pub(crate) mode: String,
    /// The raw `st_mode` (type and permission bits), as the v1 `FileInfo` carries it.
    pub(crate) st_mode: u32,
    /// User and group names, or their numbers when the system knows no name.
    pub(crate) uid: String,
    pub(crate) gid: String,
}

impl FileInfo {
    pub(crate) fn to_json(&self) -> serde_json::Value {
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

/// The virtual path table: attached path → the sandbox directory it stands for.
pub(crate) fn attachments(work_dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut table = BTreeMap::new();
    // Which run each virtual `latest` path came from, so that of several agent ids that ran
    // the same executor the newest run wins.
    let mut newest: BTreeMap<String, std::time::SystemTime> = BTreeMap::new();
    for agent in children(&work_dir.join("slaves")) {
        for framework in children(&agent.join("frameworks")) {
            for executor in children(&framework.join("executors")) {
                let runs = executor.join("runs");
                for run in children(&runs) {
                    let Ok(real) = std::fs::canonicalize(&run) else {
                        continue;
                    };
                    if !real.is_dir() {
                        continue;
                    }
                    if run.file_name().is_some_and(|n| n == "latest") {
                        let (Some(f), Some(e)) = (framework.file_name(), executor.file_name())
                        else {
                            continue;
                        };
                        let virtual_path = format!(
                            "/frameworks/{}/executors/{}/runs/latest",
                            f.to_string_lossy(),
                            e.to_string_lossy()
                        );
                        let modified = std::fs::metadata(&real)
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH);
                        if newest.get(&virtual_path).is_none_or(|seen| *seen < modified) {
                            newest.insert(virtual_path.clone(), modified);
                            table.insert(virtual_path, real.clone());
                        }
                    }
                    table.insert(run.to_string_lossy().into_owned(), real);
                }
            }
        }
    }
    table
}

/// The entries of a directory, sorted by name; nothing if it cannot be read.
fn children(dir: &Path) -> Vec<PathBuf> {
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
fn resolve(work_dir: &Path, path: &str) -> Result<Resolved, FilesError> {
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
    let table = attachments(work_dir);
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
    let real = std::fs::canonicalize(sandbox.join(rest)).map_err(|_| not_found())?;
    if !real.starts_with(sandbox) {
        return Err(FilesError::BadRequest(format!("Path {path} points outside its sandbox")));
    }
    Ok(Resolved { real, sandbox: sandbox.clone() })
}

/// The entries of a directory (an empty list for a file, as in Mesos).
pub(crate) fn browse(work_dir: &Path, path: &str) -> Result<Vec<FileInfo>, FilesError> {
    let resolved = resolve(work_dir, path)?;
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
pub(crate) fn read(
    work_dir: &Path,
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
    let (size, data) = read_bytes(work_dir, path, offset.unwrap_or(u64::MAX), length)?;
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
pub(crate) fn read_bytes(
    work_dir: &Path,
    path: &str,
    offset: u64,
    length: Option<u64>,
) -> Result<(u64, Vec<u8>), FilesError> {
    let file = regular_file(work_dir, path, "read")?;
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
pub(crate) fn download(work_dir: &Path, path: &str) -> Result<(PathBuf, String), FilesError> {
    let file = regular_file(work_dir, path, "download")?;
    let name = path.rsplit('/').find(|part| !part.is_empty()).unwrap_or_default().to_string();
    Ok((file, name))
}

/// The content type Mesos would pick for a file name: by extension, else raw bytes.
pub(crate) fn content_type(name: &str) -> &'static str {
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
fn regular_file(work_dir: &Path, path: &str, what: &str) -> Result<PathBuf, FilesError> {
    let resolved = resolve(work_dir, path)?;
    if resolved.real.is_dir() {
        return Err(FilesError::BadRequest(format!("Cannot {what} a directory: {path}")));
    }
    Ok(resolved.real)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A work directory with one sandbox `c1` (the latest run) holding `stdout`, a
    /// subdirectory, and an older run `c0`.
    fn sandbox(work_dir: &Path) -> PathBuf {
        let runs = work_dir.join("slaves/S0/frameworks/F0/executors/E0/runs");
        let run = runs.join("c1");
        std::fs::create_dir_all(run.join("sub")).expect("mkdir");
        std::fs::create_dir_all(runs.join("c0")).expect("mkdir");
        std::os::unix::fs::symlink("c1", runs.join("latest")).expect("link");
        std::fs::write(run.join("stdout"), "hello world\n").expect("write");
        std::fs::write(runs.join("c0/stdout"), "old\n").expect("write");
        run
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    /// A canonical work directory, as the agent uses (tmp may be a link).
    fn work_dir(dir: &tempfile::TempDir) -> PathBuf {
        std::fs::canonicalize(dir.path()).expect("canonical")
    }

    #[test]
    fn attachments_cover_host_paths_latest_and_virtual_paths() {
        let dir = tempdir();
        let work = work_dir(&dir);
        let run = sandbox(&work);
        let table = attachments(&work);
        let runs = run.parent().expect("runs");
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let expected: BTreeMap<String, PathBuf> = [
            (s(&runs.join("c0")), runs.join("c0")),
            (s(&run), run.clone()),
            (s(&runs.join("latest")), run.clone()),
            ("/frameworks/F0/executors/E0/runs/latest".to_string(), run.clone()),
        ]
        .into_iter()
        .collect();
        assert_eq!(table, expected);
    }

    #[test]
    fn reads_with_offsets_and_lengths() {
        let dir = tempdir();
        let work = work_dir(&dir);
        let run = sandbox(&work);
        let real = run.join("stdout").to_string_lossy().into_owned();
        let latest = run.parent().expect("runs").join("latest/stdout");
        let latest = latest.to_string_lossy().into_owned();
        let virt = "/frameworks/F0/executors/E0/runs/latest/stdout";
        let ok = |data: &str, offset| Ok(ReadResult { data: data.into(), offset });
        for path in [real.as_str(), latest.as_str(), virt] {
            let r = |o, l| read(&work, path, o, l);
            assert_eq!(r(None, None), ok("", 12));
            assert_eq!(r(Some(-1), None), ok("", 12));
            assert_eq!(r(Some(-1), Some(3)), ok("", 12));
            assert_eq!(r(Some(0), None), ok("hello world\n", 0));
            assert_eq!(r(Some(0), Some(-1)), ok("hello world\n", 0));
            assert_eq!(r(Some(6), Some(5)), ok("world", 6));
            assert_eq!(r(Some(6), Some(0)), ok("", 6));
            assert_eq!(r(Some(10), Some(100)), ok("d\n", 10));
            assert_eq!(r(Some(12), None), ok("", 12));
            assert_eq!(r(Some(100), None), ok("", 12));
            assert!(matches!(r(Some(-2), None), Err(FilesError::BadRequest(_))));
            assert!(matches!(r(Some(0), Some(-2)), Err(FilesError::BadRequest(_))));
        }
    }

    #[test]
    fn reads_are_capped_at_sixteen_pages() {
        let dir = tempdir();
        let work = work_dir(&dir);
        let run = sandbox(&work);
        std::fs::write(run.join("big"), vec![b'x'; 100_000]).expect("write");
        let path = "/frameworks/F0/executors/E0/runs/latest/big";
        let cap = usize::try_from(READ_CAP).expect("small");
        assert_eq!(read(&work, path, Some(0), None).expect("read").data.len(), cap);
        assert_eq!(read(&work, path, Some(0), Some(200_000)).expect("read").data.len(), cap);
        assert_eq!(read(&work, path, Some(90_000), None).expect("read").data.len(), 10_000);
    }

    #[test]
    fn directories_cannot_be_read_or_downloaded() {
        let dir = tempdir();
        let work = work_dir(&dir);
        sandbox(&work);
        let path = "/frameworks/F0/executors/E0/runs/latest/sub";
        assert!(matches!(read(&work, path, Some(0), None), Err(FilesError::BadRequest(_))));
        assert!(matches!(download(&work, path), Err(FilesError::BadRequest(_))));
        let (file, name) =
            download(&work, "/frameworks/F0/executors/E0/runs/latest/stdout").expect("download");
        assert_eq!(name, "stdout");
        assert_eq!(std::fs::read_to_string(file).expect("read"), "hello world\n");
        // A link inside the sandbox downloads under its own name.
        let run = work.join("slaves/S0/frameworks/F0/executors/E0/runs/c1");
        std::os::unix::fs::symlink("stdout", run.join("alias")).expect("link");
        let (file, name) =
            download(&work, "/frameworks/F0/executors/E0/runs/latest/alias").expect("download");
        assert_eq!((file, name.as_str()), (run.join("stdout"), "alias"));
    }

    #[test]
    fn browses_directories_with_mesos_fields() {
        let dir = tempdir();
        let work = work_dir(&dir);
        let run = sandbox(&work);
        std::fs::set_permissions(run.join("stdout"), std::fs::Permissions::from_mode(0o640))
            .expect("chmod");
        let root = "/frameworks/F0/executors/E0/runs/latest/";
        let infos = browse(&work, root).expect("browse");
        let paths: Vec<&str> = infos.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/frameworks/F0/executors/E0/runs/latest/stdout",
                "/frameworks/F0/executors/E0/runs/latest/sub"
            ]
        );
        let stdout = &infos[0];
        assert_eq!((stdout.size, stdout.nlink, stdout.mode.as_str()), (12, 1, "-rw-r-----"));
        assert!(stdout.mtime > 1_600_000_000);
        assert!(!stdout.uid.is_empty() && !stdout.gid.is_empty());
        assert!(infos[1].mode.starts_with('d'));
        let json = stdout.to_json();
        for key in ["path", "nlink", "size", "mtime", "mode", "uid", "gid"] {
            assert!(json.get(key).is_some(), "{key}");
        }
        // A file browses to nothing, a missing path is not found.
        assert_eq!(browse(&work, &format!("{root}stdout")), Ok(Vec::new()));
        assert!(matches!(browse(&work, &format!("{root}nope")), Err(FilesError::NotFound(_))));
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
    fn refuses_paths_outside_the_sandboxes() {
        let dir = tempdir();
        let work = work_dir(&dir);
        let run = sandbox(&work);
        std::fs::write(work.join("secret"), "x").expect("write");
        std::os::unix::fs::symlink(work.join("secret"), run.join("escape")).expect("link");
        // A link into another run is outside the sandbox the path names, too.
        let sibling = run.parent().expect("runs").join("c0/stdout");
        std::os::unix::fs::symlink(&sibling, run.join("sibling")).expect("link");
        std::os::unix::fs::symlink("/", run.join("root")).expect("link");
        let escape = run.join("escape").to_string_lossy().into_owned();
        let root = "/frameworks/F0/executors/E0/runs/latest";
        let bad = |r: Result<ReadResult, FilesError>| matches!(r, Err(FilesError::BadRequest(_)));
        for path in [
            format!("{root}/../../../../../../secret"),
            format!("{root}/sub/../stdout"),
            escape.clone(),
            format!("{root}/escape"),
            format!("{root}/sibling"),
            format!("{root}/root/etc/passwd"),
        ] {
            assert!(bad(read(&work, &path, Some(0), None)), "{path}");
            assert!(download(&work, &path).is_err(), "{path}");
        }
        assert!(matches!(browse(&work, &format!("{root}/root")), Err(FilesError::BadRequest(_))));
        // Paths attached to nothing do not exist as far as the API is concerned.
        let secret = work.join("secret").to_string_lossy().into_owned();
        let slaves = work.join("slaves").to_string_lossy().into_owned();
        for path in [secret.as_str(), slaves.as_str(), "/etc/passwd", "/frameworks/F0/nope", ""] {
            assert!(
                matches!(read(&work, path, Some(0), None), Err(FilesError::NotFound(_))),
                "{path}"
            );
        }
        // The listing shows a link that points out as the link itself, not its target.
        let infos = browse(&work, root).expect("browse");
        let escape_info = infos.iter().find(|i| i.path.ends_with("/escape")).expect("escape");
        assert!(escape_info.mode.starts_with('l'), "{}", escape_info.mode);
    }

    #[test]
    fn content_types_follow_extensions() {
        assert_eq!(content_type("stdout"), "application/octet-stream");
        assert_eq!(content_type("a.JSON"), "application/json");
        assert_eq!(content_type("x.log"), "text/plain");
    }
}
