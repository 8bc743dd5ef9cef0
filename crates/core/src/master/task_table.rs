//! A framework's active tasks by id, indexed by the agent that runs them.
//!
//! Agent events (registration, removal, a returned partition, a volume check) need the tasks
//! of one agent. Walking every task of every framework for each of them made a failover at
//! 10,000 agents and 100,000 tasks quadratic: each re-registration scanned all 100,000. The
//! index makes it a lookup. It stays true because the table is the only way to add or remove
//! a task, and a task never moves to another agent (`get_mut` hands out a task whose
//! `agent_id` callers must not change; a relaunch elsewhere is a new task).
//!
//! The table also keeps what its unreleased tasks hold, summed as they come, change and go
//! (a framework's view shows it; summing every task again for each snapshot of a busy master
//! cost more than the rest of the view). `get_mut` hands out a guard that takes the task's
//! resources out of the sum and puts them back, as they are then, when it is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Deref, DerefMut};

use super::Task;
use crate::resources::{Resources, Tally};

#[derive(Debug, Default)]
pub(super) struct TaskTable {
    tasks: BTreeMap<String, Task>,
    by_agent: BTreeMap<String, BTreeSet<String>>,
    /// The resources of every task not `released`.
    held: Tally,
}

impl TaskTable {
    /// Adds the task, replacing one with the same id.
    pub(super) fn insert(&mut self, task_id: String, task: Task) {
        self.remove(&task_id);
        self.by_agent.entry(task.agent_id.clone()).or_default().insert(task_id.clone());
        if !task.released {
            self.held.add(&task.resources);
        }
        self.tasks.insert(task_id, task);
    }

    pub(super) fn remove(&mut self, task_id: &str) -> Option<Task> {
        let task = self.tasks.remove(task_id)?;
        if !task.released {
            self.held.take_back(&task.resources);
        }
        if let Some(ids) = self.by_agent.get_mut(&task.agent_id) {
            ids.remove(task_id);
            if ids.is_empty() {
                self.by_agent.remove(&task.agent_id);
            }
        }
        Some(task)
    }

    /// The task, to change its state; its `agent_id` must stay as it is (see the module doc).
    pub(super) fn get_mut(&mut self, task_id: &str) -> Option<TaskMut<'_>> {
        let task = self.tasks.get_mut(task_id)?;
        if !task.released {
            self.held.take_back(&task.resources);
        }
        Some(TaskMut { task, held: &mut self.held })
    }

    /// What the tasks that are not `released` hold, summed.
    pub(super) fn held(&self) -> Resources {
        self.held.sum()
    }

    /// The tasks on `agent_id`, in task id order.
    pub(super) fn on_agent<'a>(
        &'a self,
        agent_id: &str,
    ) -> impl Iterator<Item = (&'a String, &'a Task)> + 'a {
        self.by_agent
            .get(agent_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tasks.get_key_value(id))
    }
}

#[cfg(test)]
impl TaskTable {
    /// Panics unless the agent index lists exactly the tasks there are, each under its
    /// agent; the core's test harness calls it after every input.
    pub(super) fn assert_indexed(&self) {
        let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, task) in &self.tasks {
            expected.entry(task.agent_id.clone()).or_default().insert(id.clone());
        }
        assert_eq!(self.by_agent, expected, "tasks by agent");
        let mut held = Resources::new();
        for task in self.tasks.values().filter(|t| !t.released) {
            held += &task.resources;
        }
        assert_eq!(self.held(), held, "resources held by tasks");
    }
}

/// A task borrowed to change, out of the table's sum until the borrow ends.
pub(super) struct TaskMut<'a> {
    task: &'a mut Task,
    held: &'a mut Tally,
}

impl Deref for TaskMut<'_> {
    type Target = Task;

    fn deref(&self) -> &Task {
        self.task
    }
}

impl DerefMut for TaskMut<'_> {
    fn deref_mut(&mut self) -> &mut Task {
        self.task
    }
}

impl Drop for TaskMut<'_> {
    fn drop(&mut self) {
        if !self.task.released {
            self.held.add(&self.task.resources);
        }
    }
}

impl Deref for TaskTable {
    type Target = BTreeMap<String, Task>;

    fn deref(&self) -> &Self::Target {
        &self.tasks
    }
}

impl<'a> IntoIterator for &'a TaskTable {
    type Item = (&'a String, &'a Task);
    type IntoIter = std::collections::btree_map::Iter<'a, String, Task>;

    fn into_iter(self) -> Self::IntoIter {
        self.tasks.iter()
    }
}

/// The entries of a `(agent, id)`-keyed map that belong to `agent_id`, found by range rather
/// than by a walk of the whole map.
pub(super) fn on_agent<'a, V>(
    map: &'a BTreeMap<(String, String), V>,
    agent_id: &str,
) -> impl Iterator<Item = (&'a (String, String), &'a V)> + 'a {
    let agent = agent_id.to_string();
    map.range((agent.clone(), String::new())..).take_while(move |((a, _), _)| *a == agent)
}
