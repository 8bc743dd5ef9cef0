//! The agent's attachments for the files API (reference §4.4): each sandbox is attached at its
//! host path, at the host path of `.../runs/latest` and at the virtual
//! `/frameworks/<f>/executors/<e>/runs/latest`. The table is read from the work directory on
//! each request, so a sandbox removed by garbage collection simply stops resolving. Resolving,
//! reading and browsing are `agora_http::files`, which the master shares for its log.

use std::collections::BTreeMap;
use std::path::Path;

use agora_http::files::{Attachments, children};

/// The virtual path table: attached path → the sandbox directory it stands for.
pub(crate) fn attachments(work_dir: &Path) -> Attachments {
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

#[cfg(test)]
mod tests {
    use super::*;
    use agora_http::files::{FilesError, READ_CAP, ReadResult};
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    // The shared functions take the attachment table; these read it from the work directory
    // as the agent's handlers do.
    fn read(
        work: &Path,
        path: &str,
        offset: Option<i64>,
        length: Option<i64>,
    ) -> Result<ReadResult, FilesError> {
        agora_http::files::read(&attachments(work), path, offset, length)
    }
    fn download(work: &Path, path: &str) -> Result<(PathBuf, String), FilesError> {
        agora_http::files::download(&attachments(work), path)
    }
    fn browse(work: &Path, path: &str) -> Result<Vec<agora_http::files::FileInfo>, FilesError> {
        agora_http::files::browse(&attachments(work), path)
    }

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
}
