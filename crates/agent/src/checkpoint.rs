//! The agent's checkpoint on disk (reference §7.3, §7.4): an embedded redb file at
//! `<work_dir>/meta/agent.redb` with the core's records (the agent's own, and the frameworks,
//! executors and tasks of checkpointing frameworks, protobuf per key) plus the process id and
//! start time of every executor the agent started, and `<work_dir>/meta/boot_id`, which tells
//! a restart from a reboot.
//!
//! The core decides what is written (`Output::Checkpoint`); the dispatcher writes it with
//! [`Store::commit`] before carrying out anything that depends on it, in one durable (fsync'd)
//! transaction per batch. [`Store::load`] reads it all back for `Agent::recover`; under
//! `--strict` a record that cannot be decoded stops the agent, otherwise it is skipped with a
//! warning. Process ids are kept for every executor, checkpointing or not, so that a restarted
//! agent can end the executors it must not keep; the start time guards against a recycled pid.

use std::path::{Path, PathBuf};

use agora_core::agent::{CheckpointKey, CheckpointRecord};
use agora_proto::internal;
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

/// Bumped whenever the layout changes incompatibly; another version is refused, not misread.
const FORMAT_VERSION: u64 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const FRAMEWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("frameworks");
const EXECUTORS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("executors");
const TASKS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tasks");
const PIDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("pids");

const FORMAT_KEY: &str = "format_version";
const AGENT_KEY: &str = "agent";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Store { path: PathBuf, source: redb::Error },
    #[error(
        "checkpoint {path}: cannot decode {what}: {source} (start with --strict=false to skip it)"
    )]
    Decode { path: PathBuf, what: String, source: prost::DecodeError },
    #[error(
        "checkpoint {path}: format version {found} is not {FORMAT_VERSION}, which this agent reads"
    )]
    Format { path: PathBuf, found: String },
    #[error(
        "checkpoint {path}: cannot read the process id of {what} (start with --strict=false to skip it)"
    )]
    Pid { path: PathBuf, what: String },
    #[error("checkpoint {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// An executor process as the agent started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorPid {
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks after boot) when it was seen running.
    pub start_time: u64,
}

/// Everything read back from the checkpoint.
#[derive(Debug, Default)]
pub struct Loaded {
    pub agent: Option<internal::AgentCheckpoint>,
    pub frameworks: Vec<internal::FrameworkCheckpoint>,
    pub executors: Vec<internal::ExecutorCheckpoint>,
    pub tasks: Vec<internal::TaskCheckpoint>,
    /// By (framework id, executor id).
    pub pids: Vec<((String, String), ExecutorPid)>,
}

/// See the module documentation.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// `<work_dir>/meta`, where the checkpoint lives.
    pub fn dir(work_dir: &Path) -> PathBuf {
        work_dir.join("meta")
    }

    /// Opens (or creates) the checkpoint under `work_dir`.
    pub fn open(work_dir: &Path) -> Result<Self, CheckpointError> {
        let dir = Self::dir(work_dir);
        std::fs::create_dir_all(&dir)
            .map_err(|source| CheckpointError::Io { path: dir.clone(), source })?;
        let path = dir.join("agent.redb");
        let db = Database::create(&path)
            .map_err(|e| CheckpointError::Store { path: path.clone(), source: e.into() })?;
        let store = Self { db, path };
        store.write(|txn| {
            let mut meta = txn.open_table(META)?;
            if meta.get(FORMAT_KEY)?.is_none() {
                meta.insert(FORMAT_KEY, FORMAT_VERSION.to_le_bytes().as_slice())?;
            }
            Ok(())
        })?;
        Ok(store)
    }

    /// Reads everything back. With `strict`, a record that cannot be decoded is an error;
    /// without, it is skipped with a warning.
    pub fn load(&self, strict: bool) -> Result<Loaded, CheckpointError> {
        let store_error =
            |source: redb::Error| CheckpointError::Store { path: self.path.clone(), source };
        let txn = self.db.begin_read().map_err(|e| store_error(e.into()))?;
        let mut loaded = Loaded::default();
        let meta = txn.open_table(META).map_err(|e| store_error(e.into()))?;
        match meta.get(FORMAT_KEY).map_err(|e| store_error(e.into()))? {
            Some(v) if v.value() == FORMAT_VERSION.to_le_bytes().as_slice() => {}
            other => {
                let found =
                    other.map_or_else(|| "none".to_string(), |v| format!("{:?}", v.value()));
                return Err(CheckpointError::Format { path: self.path.clone(), found });
            }
        }
        if let Some(agent) = meta.get(AGENT_KEY).map_err(|e| store_error(e.into()))? {
            loaded.agent = self.decode(strict, "the agent's record".into(), agent.value())?;
        }
        if let Some(table) = open_table(&txn, FRAMEWORKS).map_err(store_error)? {
            for entry in table.iter().map_err(|e| store_error(e.into()))? {
                let (key, value) = entry.map_err(|e| store_error(e.into()))?;
                let what = format!("framework {}", key.value());
                loaded.frameworks.extend(self.decode(strict, what, value.value())?);
            }
        }
        if let Some(table) = open_table(&txn, EXECUTORS).map_err(store_error)? {
            for entry in table.iter().map_err(|e| store_error(e.into()))? {
                let (key, value) = entry.map_err(|e| store_error(e.into()))?;
                let (f, e) = key.value();
                let what = format!("executor {e} of framework {f}");
                loaded.executors.extend(self.decode(strict, what, value.value())?);
            }
        }
        if let Some(table) = open_table(&txn, TASKS).map_err(store_error)? {
            for entry in table.iter().map_err(|e| store_error(e.into()))? {
                let (key, value) = entry.map_err(|e| store_error(e.into()))?;
                let (f, t) = key.value();
                let what = format!("task {t} of framework {f}");
                loaded.tasks.extend(self.decode(strict, what, value.value())?);
            }
        }
        if let Some(table) = open_table(&txn, PIDS).map_err(store_error)? {
            for entry in table.iter().map_err(|e| store_error(e.into()))? {
                let (key, value) = entry.map_err(|e| store_error(e.into()))?;
                let (f, e) = key.value();
                match decode_pid(value.value()) {
                    Some(pid) => loaded.pids.push(((f.to_string(), e.to_string()), pid)),
                    None if strict => {
                        return Err(CheckpointError::Pid {
                            path: self.path.clone(),
                            what: format!("executor {e} of framework {f}"),
                        });
                    }
                    None => tracing::warn!(
                        framework_id = f,
                        executor_id = e,
                        "skipping an unreadable pid"
                    ),
                }
            }
        }
        Ok(loaded)
    }

    /// A record, or `None` (after a warning) if it cannot be decoded and `strict` is off.
    fn decode<M: Message + Default>(
        &self,
        strict: bool,
        what: String,
        bytes: &[u8],
    ) -> Result<Option<M>, CheckpointError> {
        match M::decode(bytes) {
            Ok(record) => Ok(Some(record)),
            Err(source) if strict => {
                Err(CheckpointError::Decode { path: self.path.clone(), what, source })
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), %what, "skipping a record that cannot be decoded: {e}");
                Ok(None)
            }
        }
    }

    /// Applies the core's records in order, in one durable transaction.
    pub fn commit(
        &self,
        records: &[(CheckpointKey, Option<CheckpointRecord>)],
    ) -> Result<(), CheckpointError> {
        self.write(|txn| {
            let mut meta = txn.open_table(META)?;
            let mut frameworks = txn.open_table(FRAMEWORKS)?;
            let mut executors = txn.open_table(EXECUTORS)?;
            let mut tasks = txn.open_table(TASKS)?;
            for (key, record) in records {
                let bytes = record.as_ref().map(|r| match r {
                    CheckpointRecord::Agent(m) => m.encode_to_vec(),
                    CheckpointRecord::Framework(m) => m.encode_to_vec(),
                    CheckpointRecord::Executor(m) => m.encode_to_vec(),
                    CheckpointRecord::Task(m) => m.encode_to_vec(),
                });
                match (key, bytes) {
                    (CheckpointKey::Agent, Some(b)) => {
                        meta.insert(AGENT_KEY, b.as_slice())?;
                    }
                    (CheckpointKey::Agent, None) => {
                        meta.remove(AGENT_KEY)?;
                    }
                    (CheckpointKey::Framework(f), Some(b)) => {
                        frameworks.insert(f.as_str(), b.as_slice())?;
                    }
                    (CheckpointKey::Framework(f), None) => {
                        frameworks.remove(f.as_str())?;
                    }
                    (CheckpointKey::Executor(f, e), Some(b)) => {
                        executors.insert((f.as_str(), e.as_str()), b.as_slice())?;
                    }
                    (CheckpointKey::Executor(f, e), None) => {
                        executors.remove((f.as_str(), e.as_str()))?;
                    }
                    (CheckpointKey::Task(f, t), Some(b)) => {
                        tasks.insert((f.as_str(), t.as_str()), b.as_slice())?;
                    }
                    (CheckpointKey::Task(f, t), None) => {
                        tasks.remove((f.as_str(), t.as_str()))?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Records the process of an executor that just started (`None`: it is gone).
    pub fn set_pid(
        &self,
        framework_id: &str,
        executor_id: &str,
        pid: Option<ExecutorPid>,
    ) -> Result<(), CheckpointError> {
        self.write(|txn| {
            let mut pids = txn.open_table(PIDS)?;
            match pid {
                Some(pid) => {
                    pids.insert((framework_id, executor_id), encode_pid(pid).as_slice())?;
                }
                None => {
                    pids.remove((framework_id, executor_id))?;
                }
            }
            Ok(())
        })
    }

    /// Runs `body` in a write transaction and commits it durably: it returns once the data is
    /// on disk.
    fn write(
        &self,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), CheckpointError> {
        let run = || -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(redb::Durability::Immediate)?;
            body(&txn)?;
            txn.commit()?;
            Ok(())
        };
        run().map_err(|source| CheckpointError::Store { path: self.path.clone(), source })
    }
}

/// The table, or `None` if nothing was ever written to it.
fn open_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, redb::Error> {
    match txn.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => {
            let _ = table.name();
            Err(e.into())
        }
    }
}

fn encode_pid(pid: ExecutorPid) -> [u8; 12] {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&pid.pid.to_le_bytes());
    bytes[4..].copy_from_slice(&pid.start_time.to_le_bytes());
    bytes
}

fn decode_pid(bytes: &[u8]) -> Option<ExecutorPid> {
    let pid = i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let start_time = u64::from_le_bytes(bytes.get(4..12)?.try_into().ok()?);
    (bytes.len() == 12).then_some(ExecutorPid { pid, start_time })
}

/// This boot of the machine (`/proc/sys/kernel/random/boot_id`).
pub fn current_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string())
}

/// Whether the machine rebooted since the boot id under `meta/` was written (`false` for a
/// new work directory). A boot id that cannot be read counts as a reboot: then no recorded
/// pid is trusted.
pub fn boot_id_changed(work_dir: &Path) -> Result<bool, CheckpointError> {
    let path = Store::dir(work_dir).join("boot_id");
    let Some(current) = current_boot_id() else {
        return Ok(true);
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim() != current),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(CheckpointError::Io { path, source }),
    }
}

/// Records this boot's id under `meta/`, atomically (a torn write would look like a reboot).
pub fn record_boot_id(work_dir: &Path) -> Result<(), CheckpointError> {
    let path = Store::dir(work_dir).join("boot_id");
    let staged = Store::dir(work_dir).join("boot_id.new");
    let current = current_boot_id().unwrap_or_default();
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&staged)?;
        std::io::Write::write_all(&mut file, format!("{current}\n").as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&staged, &path)
    };
    write().map_err(|source| CheckpointError::Io { path: path.clone(), source })
}

/// The start time of a live (not zombie) process, field 22 of `/proc/<pid>/stat`.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted after
    // the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); field 22 is 19 further on.
    fields.nth(18)?.parse().ok()
}

/// Whether `pid` is still the process that was recorded.
pub fn is_alive(pid: ExecutorPid) -> bool {
    process_start_time(pid.pid) == Some(pid.start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_pids_survive_a_reopen_and_deletes_stick() {
        let dir = tempfile::tempdir().expect("tempdir");
        let task = internal::TaskCheckpoint {
            framework_id: "f".into(),
            task_id: "t".into(),
            ..Default::default()
        };
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .commit(&[
                    (
                        CheckpointKey::Task("f".into(), "t".into()),
                        Some(CheckpointRecord::Task(task.clone())),
                    ),
                    (
                        CheckpointKey::Task("f".into(), "u".into()),
                        Some(CheckpointRecord::Task(task.clone())),
                    ),
                    (CheckpointKey::Task("f".into(), "u".into()), None),
                ])
                .expect("commit");
            store.set_pid("f", "e", Some(ExecutorPid { pid: 42, start_time: 7 })).expect("pid");
            store.set_pid("f", "gone", Some(ExecutorPid { pid: 43, start_time: 8 })).expect("pid");
            store.set_pid("f", "gone", None).expect("pid");
        }
        let loaded = Store::open(dir.path()).expect("reopen").load(true).expect("load");
        assert_eq!(loaded.tasks, vec![task]);
        assert_eq!(
            loaded.pids,
            vec![(("f".into(), "e".into()), ExecutorPid { pid: 42, start_time: 7 })]
        );
        assert!(loaded.agent.is_none());
    }

    #[test]
    fn a_damaged_record_stops_a_strict_agent_and_is_skipped_otherwise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .write(|txn| {
                let mut tasks = txn.open_table(TASKS)?;
                tasks.insert(("f", "t"), [0xff_u8, 0xff, 0xff].as_slice())?;
                Ok(())
            })
            .expect("write");
        let error = store.load(true).expect_err("strict");
        assert!(error.to_string().contains("task t of framework f"), "{error}");
        assert!(store.load(false).expect("lenient").tasks.is_empty());
    }

    #[test]
    fn the_boot_id_tells_a_reboot_from_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(Store::dir(dir.path())).expect("meta");
        assert!(!boot_id_changed(dir.path()).expect("first"), "a new work dir is no reboot");
        record_boot_id(dir.path()).expect("record");
        assert!(!boot_id_changed(dir.path()).expect("same boot"));
        std::fs::write(Store::dir(dir.path()).join("boot_id"), "another-boot\n").expect("write");
        assert!(boot_id_changed(dir.path()).expect("rebooted"));
        record_boot_id(dir.path()).expect("record");
        assert!(!boot_id_changed(dir.path()).expect("recorded again"));
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = i32::try_from(std::process::id()).expect("pid");
        let start_time = process_start_time(pid).expect("our own stat");
        assert!(is_alive(ExecutorPid { pid, start_time }));
        assert!(!is_alive(ExecutorPid { pid, start_time: start_time + 1 }));
    }
}
