//! The master's registry store: the records of `agora.internal.v1.Registry` (admitted agents,
//! frameworks and removed framework ids, weights, quota, the last master) in an embedded redb
//! file under `--work_dir`, one table per kind of record, protobuf bytes per key.
//!
//! `Store::open` reads the whole registry back for `Master::recover`; `Store::commit` applies
//! every `RegistryOp` of one dispatcher batch in a single write transaction, committed with
//! `Durability::Immediate` (fsync'd when it returns): that is the group commit. Both block on
//! disk; the dispatcher calls them off the async runtime. This module does not decide what to
//! persist (the core does) nor when to reply (the dispatcher does); `--registry=in_memory`
//! simply has no store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agora_core::master::RegistryOp;
use agora_proto::{internal, v1};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

pub mod zk;

/// The file under `--work_dir` that holds the registry.
pub const FILE_NAME: &str = "registry.redb";
/// Bumped whenever the layout below changes incompatibly; a store of another version is
/// refused rather than misread.
const FORMAT_VERSION: u64 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
const FRAMEWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("frameworks");
const WEIGHTS: TableDefinition<&str, &[u8]> = TableDefinition::new("weights");
const QUOTAS: TableDefinition<&str, &[u8]> = TableDefinition::new("quotas");

const FORMAT_KEY: &str = "format_version";
const MASTER_KEY: &str = "master";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {path}: {source}")]
    Store { path: PathBuf, source: redb::Error },
    #[error("registry {path}: cannot decode {table} record {key:?}: {source}")]
    Decode { path: PathBuf, table: &'static str, key: String, source: prost::DecodeError },
    #[error(
        "registry {path}: format version {found} is not {FORMAT_VERSION}, which this master reads"
    )]
    Format { path: PathBuf, found: String },
    #[error("registry in ZooKeeper: cannot open a session: {0}")]
    Connect(String),
    #[error("registry in ZooKeeper: cannot {what}: {source}")]
    ZooKeeper { what: String, source: agora_leader::zk::Error },
    #[error(
        "registry in ZooKeeper: this master is no longer the leader (its candidacy {node} is gone), so it may not write"
    )]
    Deposed { node: String },
}

/// See the module documentation.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
    /// Durable write transactions since opening (one per group commit).
    commits: AtomicU64,
}

impl Store {
    /// Opens (or creates) the store at `path`, checks its format, reads the registry back and
    /// records `master` as the master that writes from now on.
    pub fn open(
        path: &Path,
        master: &v1::MasterInfo,
    ) -> Result<(Store, internal::Registry), RegistryError> {
        let store_error = |source: redb::Error| RegistryError::Store { path: path.into(), source };
        let db = Database::create(path).map_err(|e| store_error(e.into()))?;
        let store = Store { db, path: path.to_path_buf(), commits: AtomicU64::new(0) };
        let registry = store.read()?;
        store.write(|txn| {
            let mut meta = txn.open_table(META)?;
            meta.insert(FORMAT_KEY, FORMAT_VERSION.to_le_bytes().as_slice())?;
            meta.insert(MASTER_KEY, master.encode_to_vec().as_slice())?;
            Ok(())
        })?;
        Ok((store, registry))
    }

    /// How many group commits this store made since it was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Applies `ops` in order in one durable write transaction.
    pub fn commit(&self, ops: &[RegistryOp]) -> Result<(), RegistryError> {
        self.write(|txn| {
            let mut agents = txn.open_table(AGENTS)?;
            let mut frameworks = txn.open_table(FRAMEWORKS)?;
            let mut weights = txn.open_table(WEIGHTS)?;
            let mut quotas = txn.open_table(QUOTAS)?;
            for write in writes(ops) {
                let table = match write.table {
                    Table::Agents => &mut agents,
                    Table::Frameworks => &mut frameworks,
                    Table::Weights => &mut weights,
                    Table::Quotas => &mut quotas,
                };
                match &write.value {
                    Some(value) => {
                        table.insert(write.key.as_str(), value.as_slice())?;
                    }
                    None => {
                        table.remove(write.key.as_str())?;
                    }
                }
            }
            Ok(())
        })?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `body` in a write transaction and commits it durably.
    fn write(
        &self,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), RegistryError> {
        let run = || -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            // The default, stated because the invariant depends on it: `commit` returns only
            // once the data is on disk.
            txn.set_durability(redb::Durability::Immediate)?;
            body(&txn)?;
            txn.commit()?;
            Ok(())
        };
        run().map_err(|source| RegistryError::Store { path: self.path.clone(), source })
    }

    /// Everything the store holds.
    pub fn read(&self) -> Result<internal::Registry, RegistryError> {
        let store_error =
            |source: redb::Error| RegistryError::Store { path: self.path.clone(), source };
        let txn = self.db.begin_read().map_err(|e| store_error(e.into()))?;
        let mut registry = internal::Registry::default();
        let Some(meta) = open(&txn, META).map_err(store_error)? else {
            // A new store.
            return Ok(registry);
        };
        match meta.get(FORMAT_KEY).map_err(|e| store_error(e.into()))? {
            Some(version) if version.value() == FORMAT_VERSION.to_le_bytes().as_slice() => {}
            Some(version) => {
                let found = match <[u8; 8]>::try_from(version.value()) {
                    Ok(bytes) => u64::from_le_bytes(bytes).to_string(),
                    Err(_) => format!("{:?}", version.value()),
                };
                return Err(RegistryError::Format { path: self.path.clone(), found });
            }
            None => {
                return Err(RegistryError::Format {
                    path: self.path.clone(),
                    found: "none".into(),
                });
            }
        }
        if let Some(master) = meta.get(MASTER_KEY).map_err(|e| store_error(e.into()))? {
            registry.master = Some(self.decode("meta", MASTER_KEY, master.value())?);
        }
        registry.agents = self.records(&txn, AGENTS, "agents")?;
        registry.frameworks = self.records(&txn, FRAMEWORKS, "frameworks")?;
        registry.weights = self.records(&txn, WEIGHTS, "weights")?;
        registry.quotas = self.records(&txn, QUOTAS, "quotas")?;
        Ok(registry)
    }

    /// Every record of a table, in key order.
    fn records<M: Message + Default>(
        &self,
        txn: &redb::ReadTransaction,
        table: TableDefinition<&str, &[u8]>,
        name: &'static str,
    ) -> Result<Vec<M>, RegistryError> {
        let store_error =
            |source: redb::Error| RegistryError::Store { path: self.path.clone(), source };
        let Some(table) = open(txn, table).map_err(store_error)? else {
            return Ok(Vec::new());
        };
        let mut records = Vec::new();
        for entry in table.iter().map_err(|e| store_error(e.into()))? {
            let (key, value) = entry.map_err(|e| store_error(e.into()))?;
            records.push(self.decode(name, key.value(), value.value())?);
        }
        Ok(records)
    }

    fn decode<M: Message + Default>(
        &self,
        table: &'static str,
        key: &str,
        bytes: &[u8],
    ) -> Result<M, RegistryError> {
        M::decode(bytes).map_err(|source| RegistryError::Decode {
            path: self.path.clone(),
            table,
            key: key.to_string(),
            source,
        })
    }
}

/// Where the dispatcher commits: the embedded store or ZooKeeper.
#[derive(Clone)]
pub enum Backend {
    Embedded(Arc<Store>),
    ZooKeeper(Arc<zk::ZkStore>),
}

impl Backend {
    /// Applies one batch durably.
    pub async fn commit(&self, ops: Vec<RegistryOp>) -> Result<(), String> {
        match self {
            Backend::Embedded(store) => {
                let store = store.clone();
                // The write blocks on fsync; on a blocking thread the runtime's workers stay
                // free for the HTTP handlers.
                match tokio::task::spawn_blocking(move || store.commit(&ops)).await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(e) => Err(format!("the registry write did not finish: {e}")),
                }
            }
            Backend::ZooKeeper(store) => store.commit(&ops).await.map_err(|e| e.to_string()),
        }
    }
}

/// The kinds of record the registry keeps, one table (or znode subtree) each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    Agents,
    Frameworks,
    Weights,
    Quotas,
}

impl Table {
    pub(crate) const ALL: [Table; 4] =
        [Table::Agents, Table::Frameworks, Table::Weights, Table::Quotas];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Agents => "agents",
            Table::Frameworks => "frameworks",
            Table::Weights => "weights",
            Table::Quotas => "quotas",
        }
    }
}

/// One record written (`Some` bytes) or removed (`None`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Write {
    pub(crate) table: Table,
    pub(crate) key: String,
    pub(crate) value: Option<Vec<u8>>,
}

/// What `ops` do to the records, in order: the one mapping from the core's operations to
/// keys and values, shared by both stores.
pub(crate) fn writes(ops: &[RegistryOp]) -> Vec<Write> {
    let put =
        |table, key: &str, value: Vec<u8>| Write { table, key: key.into(), value: Some(value) };
    let mut writes = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            RegistryOp::AdmitAgent(record) | RegistryOp::UpdateAgent(record) => {
                let id = record.agent_info.id.as_ref().map_or("", |a| a.value.as_str());
                writes.push(put(Table::Agents, id, record.encode_to_vec()));
            }
            RegistryOp::AddFramework(record)
            | RegistryOp::UpdateFramework(record)
            | RegistryOp::RemoveFramework(record) => {
                let id = record.framework_info.id.as_ref().map_or("", |f| f.value.as_str());
                writes.push(put(Table::Frameworks, id, record.encode_to_vec()));
            }
            RegistryOp::ForgetFramework(id) => {
                writes.push(Write { table: Table::Frameworks, key: id.clone(), value: None });
            }
            RegistryOp::UpdateWeights(list) => {
                for weight in list {
                    let role = weight.role.as_deref().unwrap_or_default();
                    writes.push(put(Table::Weights, role, weight.encode_to_vec()));
                }
            }
            RegistryOp::UpdateQuota(quota) => {
                writes.push(put(Table::Quotas, &quota.role, quota.encode_to_vec()));
            }
            RegistryOp::RemoveQuota(role) => {
                writes.push(Write { table: Table::Quotas, key: role.clone(), value: None });
            }
        }
    }
    writes
}

/// Puts records of one table into the registry message.
pub(crate) fn decode_into(
    registry: &mut internal::Registry,
    table: Table,
    bytes: &[u8],
) -> Result<(), prost::DecodeError> {
    match table {
        Table::Agents => registry.agents.push(Message::decode(bytes)?),
        Table::Frameworks => registry.frameworks.push(Message::decode(bytes)?),
        Table::Weights => registry.weights.push(Message::decode(bytes)?),
        Table::Quotas => registry.quotas.push(Message::decode(bytes)?),
    }
    Ok(())
}

/// A table of a read transaction, or `None` if nothing was ever written to it.
fn open(
    txn: &redb::ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
) -> Result<Option<redb::ReadOnlyTable<&'static str, &'static [u8]>>, redb::Error> {
    match txn.open_table(table) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(id: &str) -> v1::MasterInfo {
        v1::MasterInfo { id: id.into(), ip: 1, port: 5050, ..Default::default() }
    }

    fn agent(id: &str, hostname: &str) -> internal::RegistryAgent {
        internal::RegistryAgent {
            agent_info: v1::AgentInfo {
                id: Some(v1::AgentId { value: id.into() }),
                hostname: hostname.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn framework(id: &str, removed: Option<i64>) -> internal::RegistryFramework {
        internal::RegistryFramework {
            framework_info: v1::FrameworkInfo {
                id: Some(v1::FrameworkId { value: id.into() }),
                user: "alice".into(),
                name: id.into(),
                ..Default::default()
            },
            removed_time: removed.map(|nanoseconds| v1::TimeInfo { nanoseconds }),
        }
    }

    #[test]
    fn a_new_store_is_empty_and_remembers_its_master() -> Result<(), RegistryError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let (store, registry) = Store::open(&path, &master("m1"))?;
        assert_eq!(registry, internal::Registry::default());
        drop(store);
        let (_, registry) = Store::open(&path, &master("m2"))?;
        assert_eq!(registry.master.map(|m| m.id), Some("m1".to_string()));
        Ok(())
    }

    #[test]
    fn one_commit_applies_a_batch_in_order_and_survives_reopening() -> Result<(), RegistryError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let (store, _) = Store::open(&path, &master("m1"))?;
        let mut quota = internal::RegistryQuota { role: "batch".into(), ..Default::default() };
        quota.limits.insert("cpus".into(), v1::value::Scalar { value: 8.0 });
        // One group commit: later operations of the batch win over earlier ones.
        store.commit(&[
            RegistryOp::AdmitAgent(agent("a1", "old-name")),
            RegistryOp::AdmitAgent(agent("a2", "h2")),
            RegistryOp::UpdateAgent(agent("a1", "h1")),
            RegistryOp::AddFramework(framework("f1", None)),
            RegistryOp::AddFramework(framework("f2", None)),
            RegistryOp::RemoveFramework(framework("f2", Some(42))),
            RegistryOp::AddFramework(framework("f3", None)),
            RegistryOp::UpdateWeights(vec![
                v1::WeightInfo { weight: 2.0, role: Some("batch".into()) },
                v1::WeightInfo { weight: 3.0, role: Some("web".into()) },
            ]),
            RegistryOp::UpdateQuota(quota.clone()),
            RegistryOp::UpdateQuota(internal::RegistryQuota {
                role: "gone".into(),
                ..Default::default()
            }),
        ])?;
        store.commit(&[
            RegistryOp::ForgetFramework("f3".into()),
            RegistryOp::RemoveQuota("gone".into()),
            RegistryOp::UpdateWeights(vec![v1::WeightInfo {
                weight: 0.5,
                role: Some("web".into()),
            }]),
        ])?;
        drop(store);

        let (_, registry) = Store::open(&path, &master("m2"))?;
        assert_eq!(registry.agents, vec![agent("a1", "h1"), agent("a2", "h2")]);
        assert_eq!(registry.frameworks, vec![framework("f1", None), framework("f2", Some(42))]);
        assert_eq!(
            registry.weights,
            vec![
                v1::WeightInfo { weight: 2.0, role: Some("batch".into()) },
                v1::WeightInfo { weight: 0.5, role: Some("web".into()) },
            ]
        );
        assert_eq!(registry.quotas, vec![quota]);
        Ok(())
    }

    #[test]
    fn a_store_of_another_format_or_with_bad_records_is_refused() -> Result<(), RegistryError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let (store, _) = Store::open(&path, &master("m1"))?;
        store.write(|txn| {
            txn.open_table(AGENTS)?.insert("a1", [0xff, 0xff, 0xff].as_slice())?;
            Ok(())
        })?;
        drop(store);
        assert!(matches!(
            Store::open(&path, &master("m2")),
            Err(RegistryError::Decode { table: "agents", .. })
        ));

        let (store, _) = Store::open(&dir.path().join("other.redb"), &master("m1"))?;
        store.write(|txn| {
            txn.open_table(META)?.insert(FORMAT_KEY, 99u64.to_le_bytes().as_slice())?;
            Ok(())
        })?;
        drop(store);
        let refused = Store::open(&dir.path().join("other.redb"), &master("m2"));
        assert!(matches!(refused, Err(RegistryError::Format { ref found, .. }) if found == "99"));
        Ok(())
    }

    #[test]
    fn a_second_master_cannot_open_the_same_store() -> Result<(), RegistryError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let (_store, _) = Store::open(&path, &master("m1"))?;
        assert!(matches!(Store::open(&path, &master("m2")), Err(RegistryError::Store { .. })));
        Ok(())
    }
}
