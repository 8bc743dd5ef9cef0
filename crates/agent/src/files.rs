//! `GET /files/read` over the sandboxes under the work directory, with Mesos's offset and
//! length semantics (reference §4.4): `offset=-1` (or absent) answers with the file's size and
//! no data, so clients can tail.
//!
//! A path is either a real path under `<work_dir>/slaves/` or the virtual
//! `/frameworks/<f>/executors/<e>/runs/<run or latest>/...` form. Whatever it names must
//! resolve, after following links, to a file inside the work directory's `slaves/` tree;
//! anything else is refused. Browsing and downloads come later.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The most one read returns, so a large file cannot exhaust memory.
const MAX_READ: u64 = 16 << 20;

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

pub(crate) fn read(
    work_dir: &Path,
    path: &str,
    offset: Option<i64>,
    length: Option<i64>,
) -> Result<ReadResult, FilesError> {
    let file = resolve(work_dir, path)?;
    let mut handle = std::fs::File::open(&file)
        .map_err(|e| FilesError::NotFound(format!("Failed to open file {path}: {e}")))?;
    let size = handle
        .metadata()
        .map_err(|e| FilesError::NotFound(format!("Failed to stat file {path}: {e}")))?
        .len();
    let offset = match offset {
        None | Some(-1) => {
            return Ok(ReadResult { data: String::new(), offset: size });
        }
        Some(o) if o < 0 => {
            return Err(FilesError::BadRequest(format!("Negative offset provided: {o}")));
        }
        Some(o) => (o as u64).min(size),
    };
    let length = match length {
        None | Some(-1) => MAX_READ,
        Some(l) if l < 0 => {
            return Err(FilesError::BadRequest(format!("Negative length provided: {l}")));
        }
        Some(l) => (l as u64).min(MAX_READ),
    };
    handle
        .seek(SeekFrom::Start(offset))
        .map_err(|e| FilesError::NotFound(format!("Failed to seek file {path}: {e}")))?;
    let mut buffer = Vec::new();
    handle
        .take(length)
        .read_to_end(&mut buffer)
        .map_err(|e| FilesError::NotFound(format!("Failed to read file {path}: {e}")))?;
    Ok(ReadResult { data: String::from_utf8_lossy(&buffer).into_owned(), offset })
}

/// Maps a requested path to a file inside `<work_dir>/slaves`, refusing escapes.
fn resolve(work_dir: &Path, path: &str) -> Result<PathBuf, FilesError> {
    let root = work_dir.join("slaves");
    let not_found = || FilesError::NotFound(format!("File {path} not found"));
    if path.split('/').any(|part| part == "..") {
        return Err(FilesError::BadRequest(format!("Path {path} must not contain '..'")));
    }
    let candidates: Vec<PathBuf> = if let Some(rest) = path.strip_prefix("/frameworks/") {
        // Virtual sandbox paths: look in every agent id this work directory has used.
        let entries = std::fs::read_dir(&root).map_err(|_| not_found())?;
        entries
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("frameworks").join(rest))
            .collect()
    } else {
        vec![PathBuf::from(path)]
    };
    let root = std::fs::canonicalize(&root).map_err(|_| not_found())?;
    for candidate in candidates {
        let Ok(real) = std::fs::canonicalize(&candidate) else {
            continue;
        };
        if !real.starts_with(&root) {
            return Err(FilesError::BadRequest(format!("Path {path} is outside the sandboxes")));
        }
        if real.is_file() {
            return Ok(real);
        }
    }
    Err(not_found())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(work_dir: &Path) -> PathBuf {
        let runs = work_dir.join("slaves/S0/frameworks/F0/executors/E0/runs");
        let run = runs.join("c1");
        std::fs::create_dir_all(&run).expect("mkdir");
        std::os::unix::fs::symlink("c1", runs.join("latest")).expect("link");
        std::fs::write(run.join("stdout"), "hello world\n").expect("write");
        run
    }

    #[test]
    fn reads_with_offsets_and_lengths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = sandbox(dir.path());
        let real = run.join("stdout").to_string_lossy().into_owned();
        let virt = "/frameworks/F0/executors/E0/runs/latest/stdout";
        for path in [real.as_str(), virt] {
            let r = |o, l| read(dir.path(), path, o, l);
            assert_eq!(r(None, None), Ok(ReadResult { data: String::new(), offset: 12 }));
            assert_eq!(r(Some(-1), None), Ok(ReadResult { data: String::new(), offset: 12 }));
            assert_eq!(r(Some(0), None).expect("read").data, "hello world\n");
            assert_eq!(r(Some(6), Some(5)).expect("read").data, "world");
            assert_eq!(r(Some(100), None), Ok(ReadResult { data: String::new(), offset: 12 }));
            assert!(matches!(r(Some(-5), None), Err(FilesError::BadRequest(_))));
        }
    }

    #[test]
    fn refuses_paths_outside_the_sandboxes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = sandbox(dir.path());
        std::fs::write(dir.path().join("secret"), "x").expect("write");
        std::os::unix::fs::symlink(dir.path().join("secret"), run.join("escape")).expect("link");
        let escape = run.join("escape").to_string_lossy().into_owned();
        let secret = dir.path().join("secret").to_string_lossy().into_owned();
        for path in [
            "/frameworks/F0/executors/E0/runs/latest/../../../../../../secret",
            escape.as_str(),
            secret.as_str(),
            "/etc/passwd",
        ] {
            assert!(read(dir.path(), path, Some(0), None).is_err(), "{path}");
        }
        assert!(matches!(
            read(dir.path(), "/frameworks/F0/nope", Some(0), None),
            Err(FilesError::NotFound(_))
        ));
    }
}
