//! The Kafka scheduler's brain, sans IO: the brokers and what happens to them when the user
//! adds, updates, starts or stops them, when an offer arrives and when a task changes state.
//!
//! Placement follows Kafka-on-Mesos: an active broker without a task takes the first offer with
//! enough cpus and memory, a port in its range, whose host satisfies its constraints relative to
//! the other brokers, once its failover delay has passed and, within its stickiness period, only
//! on its previous host. Every refusal has a reason, kept per broker so `broker list` can say why
//! a broker is not running. The clock (`now`, ms since the epoch) and new task ids come from the
//! caller; the shell turns decisions into calls and persists `State` before it answers. The
//! topics added through the framework are remembered here too, with the brokers they belong on.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::constraint::Constraint;
use crate::expr::{BrokerExpr, topic_selected};
use crate::model::{
    Broker, InputError, Metrics, Period, PortRange, Task, bad, check_bind_address, check_options,
    parse_map,
};

/// What must survive a scheduler restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<String>,
    #[serde(default)]
    pub brokers: BTreeMap<u32, Broker>,
    /// The topics added through the framework, by name: every tansu broker is its own
    /// one-node cluster, so a broker that starts later (or restarts with an in-memory store)
    /// is given them when it runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topics: BTreeMap<String, TopicSpec>,
}

/// A topic as the framework remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    pub partitions: i32,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The broker expressions it was added for (`*` for every broker); a broker any of them
    /// selects gets the topic.
    pub brokers: Vec<String>,
}

/// The parts of an offer placement looks at.
#[derive(Debug, Clone, Default)]
pub struct Offer {
    pub agent_id: String,
    pub hostname: String,
    /// Text attributes only, as Kafka-on-Mesos considers.
    pub attributes: BTreeMap<String, String>,
    pub cpus: f64,
    pub mem: f64,
    pub ports: Vec<(u64, u64)>,
    /// The persistence ids of the persistent volumes offered.
    pub volumes: Vec<String>,
}

/// What to do with an offer.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Launch {
        broker: u32,
        port: u16,
    },
    /// Decline, asking not to be offered this agent again for `refuse_ms`.
    Decline {
        refuse_ms: u64,
        reason: String,
    },
}

/// How long to refuse an agent when no broker is waiting (a start revives offers).
const IDLE_REFUSE_MS: u64 = 30_000;
/// How long to refuse an agent that some waiting broker did not like: things change quickly.
const MISMATCH_REFUSE_MS: u64 = 1_000;

/// A task's change as placement cares about it.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    Starting,
    Running {
        endpoint: Option<String>,
    },
    /// Any terminal state, with the reason to show.
    Ended {
        reason: String,
    },
}

/// The options of `broker add|update`, by their API names; absent means unchanged.
#[derive(Debug, Clone, Default)]
pub struct BrokerParams {
    cpus: Option<f64>,
    mem: Option<u64>,
    heap: Option<u64>,
    port: Option<Option<PortRange>>,
    bind_address: Option<Option<String>>,
    options: Option<BTreeMap<String, String>>,
    constraints: Option<BTreeMap<String, Constraint>>,
    failover_delay: Option<Period>,
    failover_max_delay: Option<Period>,
    failover_max_tries: Option<Option<u32>>,
    stickiness_period: Option<Period>,
    volume: Option<Option<String>>,
}

impl BrokerParams {
    /// Reads the camelCase parameters of the REST API; an empty value unsets optional ones.
    pub fn from_params(params: &HashMap<String, String>) -> Result<BrokerParams, InputError> {
        let get = |k: &str| params.get(k).map(|v| v.trim());
        let number = |k: &str| -> Result<Option<f64>, InputError> {
            get(k)
                .map(|v| match v.parse::<f64>() {
                    Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
                    _ => Err(bad(format!("invalid {k} {v:?}: must be a positive number"))),
                })
                .transpose()
        };
        let integer = |k: &str| -> Result<Option<u64>, InputError> {
            get(k)
                .map(|v| match v.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(bad(format!("invalid {k} {v:?}: must be a positive integer"))),
                })
                .transpose()
        };
        let period = |k: &str| get(k).map(Period::parse).transpose();
        Ok(BrokerParams {
            cpus: number("cpus")?,
            mem: integer("mem")?,
            heap: integer("heap")?,
            port: get("port").map(PortRange::parse).transpose()?,
            bind_address: get("bindAddress")
                .map(|v| match v {
                    "" => Ok(None),
                    v => check_bind_address(v).map(|()| Some(v.to_string())),
                })
                .transpose()?,
            options: get("options")
                .map(|v| parse_map(v).and_then(|m| check_options(&m).map(|()| m)))
                .transpose()?,
            constraints: get("constraints").map(Constraint::parse_all).transpose()?,
            failover_delay: period("failoverDelay")?,
            failover_max_delay: period("failoverMaxDelay")?,
            failover_max_tries: get("failoverMaxTries")
                .map(|v| match v {
                    "" | "none" => Ok(None),
                    v => v.parse::<u32>().map(Some).map_err(|_| {
                        bad(format!("invalid failoverMaxTries {v:?}: must be a number or none"))
                    }),
                })
                .transpose()?,
            stickiness_period: period("stickinessPeriod")?,
            volume: get("volume").map(|v| (!v.is_empty()).then(|| v.to_string())),
        })
    }

    fn apply(&self, b: &mut Broker) {
        if let Some(v) = self.cpus {
            b.cpus = v;
        }
        if let Some(v) = self.mem {
            b.mem = v;
        }
        if let Some(v) = self.heap {
            b.heap = v;
        }
        if let Some(v) = self.port {
            b.port = v;
        }
        if let Some(v) = &self.bind_address {
            b.bind_address = v.clone();
        }
        if let Some(v) = &self.options {
            b.options = v.clone();
        }
        if let Some(v) = &self.constraints {
            b.constraints = v.clone();
        }
        if let Some(v) = self.failover_delay {
            b.failover.delay = v;
        }
        if let Some(v) = self.failover_max_delay {
            b.failover.max_delay = v;
        }
        if let Some(v) = self.failover_max_tries {
            b.failover.max_tries = v;
        }
        if let Some(v) = self.stickiness_period {
            b.stickiness.period = v;
        }
        if let Some(v) = &self.volume {
            b.volume = v.clone();
        }
    }
}

/// The scheduler core.
#[derive(Debug, Default)]
pub struct Core {
    pub state: State,
    /// Why each waiting broker did not take the last offer it saw (not persisted).
    pub reasons: BTreeMap<u32, String>,
    /// The last metrics each running broker's executor reported (not persisted).
    pub metrics: BTreeMap<u32, Metrics>,
}

impl Core {
    pub fn new(state: State) -> Core {
        Core { state, reasons: BTreeMap::new(), metrics: BTreeMap::new() }
    }

    pub fn brokers(&self) -> &BTreeMap<u32, Broker> {
        &self.state.brokers
    }

    pub fn add(&mut self, expr: &str, params: &BrokerParams) -> Result<Vec<u32>, InputError> {
        let ids = BrokerExpr::parse(expr)?.new_ids()?;
        if let Some(id) = ids.iter().find(|id| self.state.brokers.contains_key(id)) {
            return Err(bad(format!("broker {id} already exists")));
        }
        for id in &ids {
            let mut broker = Broker::new(*id);
            params.apply(&mut broker);
            check_failover(&broker)?;
            self.state.brokers.insert(*id, broker);
        }
        Ok(ids)
    }

    pub fn update(&mut self, expr: &str, params: &BrokerParams) -> Result<Vec<u32>, InputError> {
        let ids = self.select(expr)?;
        for id in &ids {
            let mut broker = self.state.brokers[id].clone();
            params.apply(&mut broker);
            check_failover(&broker)?;
            if broker.task.is_some() {
                broker.needs_restart = true;
            }
            self.state.brokers.insert(*id, broker);
        }
        Ok(ids)
    }

    /// New brokers with `source`'s configuration.
    pub fn clone_broker(&mut self, expr: &str, source: &str) -> Result<Vec<u32>, InputError> {
        let source: u32 =
            source.trim().parse().map_err(|_| bad(format!("invalid source broker {source:?}")))?;
        let template = self
            .state
            .brokers
            .get(&source)
            .ok_or_else(|| bad(format!("broker {source} not found")))?;
        let mut fresh = Broker::new(0);
        fresh.cpus = template.cpus;
        fresh.mem = template.mem;
        fresh.heap = template.heap;
        fresh.port = template.port;
        fresh.bind_address = template.bind_address.clone();
        fresh.options = template.options.clone();
        fresh.constraints = template.constraints.clone();
        fresh.failover.delay = template.failover.delay;
        fresh.failover.max_delay = template.failover.max_delay;
        fresh.failover.max_tries = template.failover.max_tries;
        fresh.stickiness.period = template.stickiness.period;
        // A persistent volume belongs to one broker; clones get none.
        let ids = BrokerExpr::parse(expr)?.new_ids()?;
        if let Some(id) = ids.iter().find(|id| self.state.brokers.contains_key(id)) {
            return Err(bad(format!("broker {id} already exists")));
        }
        for id in &ids {
            self.state.brokers.insert(*id, Broker { id: *id, ..fresh.clone() });
        }
        Ok(ids)
    }

    pub fn remove(&mut self, expr: &str) -> Result<Vec<u32>, InputError> {
        let ids = self.select(expr)?;
        if let Some(id) = ids.iter().find(|id| {
            let b = &self.state.brokers[id];
            b.active || b.task.is_some()
        }) {
            return Err(bad(format!("broker {id} is active or still stopping: stop it first")));
        }
        for id in &ids {
            self.state.brokers.remove(id);
            self.reasons.remove(id);
            self.metrics.remove(id);
        }
        Ok(ids)
    }

    /// Activates brokers; their failure count starts afresh.
    pub fn start(&mut self, expr: &str) -> Result<Vec<u32>, InputError> {
        let ids = self.select(expr)?;
        for id in &ids {
            let b = self.state.brokers.get_mut(id).expect("selected ids exist");
            if !b.active {
                b.active = true;
                b.failover.failures = 0;
                b.failover.failure_time = None;
            }
        }
        Ok(ids)
    }

    /// Deactivates brokers; returns the ids and the tasks to kill.
    pub fn stop(&mut self, expr: &str) -> Result<(Vec<u32>, Vec<Task>), InputError> {
        let ids = self.select(expr)?;
        let mut kill = Vec::new();
        for id in &ids {
            let b = self.state.brokers.get_mut(id).expect("selected ids exist");
            b.active = false;
            self.reasons.remove(id);
            if let Some(task) = &mut b.task {
                task.state = "stopping".into();
                kill.push(task.clone());
            }
        }
        Ok((ids, kill))
    }

    pub fn select(&self, expr: &str) -> Result<Vec<u32>, InputError> {
        BrokerExpr::parse(expr)?.select(&self.state.brokers)
    }

    /// Places at most one waiting broker on `offer`. A launch records the task at once (state
    /// `pending`), so constraints judge later offers against it.
    pub fn offer(&mut self, offer: &Offer, now: u64, task_id: &str) -> Decision {
        let waiting: Vec<u32> = self
            .state
            .brokers
            .values()
            .filter(|b| b.active && b.task.is_none())
            .map(|b| b.id)
            .collect();
        if waiting.is_empty() {
            return Decision::Decline {
                refuse_ms: IDLE_REFUSE_MS,
                reason: "no broker to start".into(),
            };
        }
        let mut refuse_ms = u64::MAX;
        let mut reasons = Vec::new();
        for id in waiting {
            match self.fits(&self.state.brokers[&id], offer, now) {
                Ok(port) => {
                    self.reasons.remove(&id);
                    let broker = self.state.brokers.get_mut(&id).expect("waiting ids exist");
                    broker.needs_restart = false;
                    broker.task = Some(Task {
                        id: task_id.to_string(),
                        slave_id: offer.agent_id.clone(),
                        executor_id: task_id.to_string(),
                        hostname: offer.hostname.clone(),
                        endpoint: None,
                        state: "pending".into(),
                        attributes: offer.attributes.clone(),
                    });
                    return Decision::Launch { broker: id, port };
                }
                Err((reason, retry)) => {
                    let reason = format!("{}: {reason}", offer.hostname);
                    reasons.push(format!("broker {id}: {reason}"));
                    self.reasons.insert(id, reason);
                    refuse_ms = refuse_ms.min(retry.unwrap_or(MISMATCH_REFUSE_MS));
                }
            }
        }
        Decision::Decline { refuse_ms, reason: reasons.join("; ") }
    }

    /// The port `broker` would get from `offer`, or why not (with how soon to ask again).
    fn fits(&self, broker: &Broker, offer: &Offer, now: u64) -> Result<u16, (String, Option<u64>)> {
        if let Some(expires) = broker.failover.delay_expires()
            && now < expires
        {
            let left = expires - now;
            return Err((format!("failover delay, {}s left", left.div_ceil(1000)), Some(left)));
        }
        if let Some(host) = broker.stickiness.sticky_host(now)
            && host != offer.hostname
        {
            return Err((format!("sticky to host {host}"), None));
        }
        if let Some(volume) = &broker.volume
            && !offer.volumes.contains(volume)
        {
            return Err((format!("volume {volume} not offered"), None));
        }
        if offer.cpus + 1e-9 < broker.cpus {
            return Err((format!("cpus {:.2} < {:.2}", offer.cpus, broker.cpus), None));
        }
        if offer.mem + 1e-9 < broker.mem as f64 {
            return Err((format!("mem {:.0} < {}", offer.mem, broker.mem), None));
        }
        let port = offer
            .ports
            .iter()
            .find_map(|(begin, end)| {
                let (lo, hi) = match broker.port {
                    Some(range) => ((*begin).max(range.start.into()), (*end).min(range.end.into())),
                    None => (*begin, *end),
                };
                (lo <= hi && lo > 0).then_some(lo)
            })
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| {
                let wanted = broker.port.map_or("any".to_string(), |p| p.to_string());
                (format!("no suitable port (wanted {wanted})"), None)
            })?;
        for (attr, constraint) in &broker.constraints {
            let value = if attr == "hostname" {
                Some(offer.hostname.as_str())
            } else {
                offer.attributes.get(attr).map(String::as_str)
            };
            let others: Vec<&str> = self
                .state
                .brokers
                .values()
                .filter(|b| b.id != broker.id)
                .filter_map(|b| b.task.as_ref())
                .filter_map(|t| {
                    if attr == "hostname" {
                        Some(t.hostname.as_str())
                    } else {
                        t.attributes.get(attr).map(String::as_str)
                    }
                })
                .collect();
            if !constraint.matches(value, &others) {
                return Err((
                    format!(
                        "{attr}={} doesn't match {attr}={constraint}",
                        value.unwrap_or("<none>")
                    ),
                    None,
                ));
            }
        }
        Ok(port)
    }

    /// Applies a task's change; returns false when the task belongs to no broker (the shell
    /// then kills it, so that no orphan broker keeps a port).
    pub fn task_event(&mut self, task_id: &str, event: TaskEvent, now: u64) -> bool {
        let Some(broker) = self
            .state
            .brokers
            .values_mut()
            .find(|b| b.task.as_ref().is_some_and(|t| t.id == task_id))
        else {
            return false;
        };
        let task = broker.task.as_mut().expect("found by its task");
        match event {
            TaskEvent::Starting => {
                if task.state == "pending" {
                    task.state = "starting".into();
                }
            }
            TaskEvent::Running { endpoint } => {
                if task.state != "stopping" {
                    task.state = "running".into();
                }
                if endpoint.is_some() {
                    task.endpoint = endpoint;
                }
                broker.failover.failures = 0;
                broker.failover.failure_time = None;
                broker.failover.last_error = None;
            }
            TaskEvent::Ended { reason } => {
                self.metrics.remove(&broker.id);
                let stopping = task.state == "stopping" || !broker.active;
                broker.stickiness.hostname = Some(task.hostname.clone());
                broker.stickiness.stop_time = Some(now);
                broker.task = None;
                broker.needs_restart = false;
                if !stopping {
                    broker.failover.failures += 1;
                    broker.failover.failure_time = Some(now);
                    broker.failover.last_error = Some(reason.clone());
                    if broker.failover.exceeded_max_tries() {
                        broker.active = false;
                        self.reasons.insert(
                            broker.id,
                            format!(
                                "deactivated after {} failures: {reason}",
                                broker.failover.failures
                            ),
                        );
                    } else {
                        self.reasons.insert(broker.id, format!("task ended: {reason}"));
                    }
                }
            }
        }
        true
    }

    /// Remembers topics added for the brokers `broker` selects (an expression); adding a known
    /// topic again extends it to those brokers, with the new partition count and options.
    pub fn remember_topics(
        &mut self,
        names: &[String],
        partitions: i32,
        options: &BTreeMap<String, String>,
        broker: &str,
    ) -> Result<(), InputError> {
        BrokerExpr::parse(broker)?;
        for name in names {
            let spec = self.state.topics.entry(name.clone()).or_insert_with(|| TopicSpec {
                partitions,
                options: BTreeMap::new(),
                brokers: Vec::new(),
            });
            spec.partitions = partitions;
            spec.options.extend(options.clone());
            if !spec.brokers.iter().any(|b| b == broker) {
                spec.brokers.push(broker.to_string());
            }
        }
        Ok(())
    }

    /// Forgets the remembered topics `expr` selects; returns their names.
    pub fn forget_topics(&mut self, expr: &[String]) -> Vec<String> {
        let names: Vec<String> =
            self.state.topics.keys().filter(|t| topic_selected(expr, t)).cloned().collect();
        for name in &names {
            self.state.topics.remove(name);
        }
        names
    }

    /// Applies `options` to the remembered topics `expr` selects (an empty value removes the
    /// option); returns their names.
    pub fn update_topics(
        &mut self,
        expr: &[String],
        options: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let mut names = Vec::new();
        for (name, spec) in &mut self.state.topics {
            if !topic_selected(expr, name) {
                continue;
            }
            for (k, v) in options {
                if v.is_empty() {
                    spec.options.remove(k);
                } else {
                    spec.options.insert(k.clone(), v.clone());
                }
            }
            names.push(name.clone());
        }
        names
    }

    /// The remembered topics that belong on `broker`.
    pub fn topics_for(&self, broker: u32) -> Vec<(String, TopicSpec)> {
        let Some(b) = self.state.brokers.get(&broker) else { return Vec::new() };
        self.state
            .topics
            .iter()
            .filter(|(_, spec)| {
                spec.brokers.iter().any(|e| BrokerExpr::parse(e).is_ok_and(|e| e.covers(b)))
            })
            .map(|(name, spec)| (name.clone(), spec.clone()))
            .collect()
    }

    /// Keeps the metrics the executor `executor_id` (named like its task) reported; false when
    /// no broker runs there any more (a late report).
    pub fn metrics_reported(&mut self, executor_id: &str, metrics: Metrics) -> bool {
        let Some(broker) = self
            .state
            .brokers
            .values()
            .find(|b| b.task.as_ref().is_some_and(|t| t.executor_id == executor_id))
        else {
            return false;
        };
        self.metrics.insert(broker.id, metrics);
        true
    }

    /// The broker whose current task is `task_id`.
    pub fn broker_of_task(&self, task_id: &str) -> Option<u32> {
        self.state
            .brokers
            .values()
            .find(|b| b.task.as_ref().is_some_and(|t| t.id == task_id))
            .map(|b| b.id)
    }

    /// The tasks the framework believes exist, to reconcile after a restart.
    pub fn known_tasks(&self) -> Vec<(String, String)> {
        self.state
            .brokers
            .values()
            .filter_map(|b| b.task.as_ref().map(|t| (t.id.clone(), t.slave_id.clone())))
            .collect()
    }
}

fn check_failover(b: &Broker) -> Result<(), InputError> {
    if b.failover.delay > b.failover.max_delay {
        return Err(bad(format!(
            "broker {}: failover delay {} is longer than max delay {}",
            b.id, b.failover.delay, b.failover.max_delay
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BrokerParams {
        let map = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        BrokerParams::from_params(&map).expect("valid params")
    }

    fn offer(host: &str, rack: &str, port: u64) -> Offer {
        Offer {
            agent_id: format!("agent-{host}"),
            hostname: host.into(),
            attributes: [("rack".to_string(), rack.to_string())].into(),
            cpus: 4.0,
            mem: 4096.0,
            ports: vec![(port, port + 10)],
            volumes: Vec::new(),
        }
    }

    fn small() -> BrokerParams {
        params(&[
            ("cpus", "0.5"),
            ("mem", "256"),
            ("failoverDelay", "1s"),
            ("failoverMaxDelay", "4s"),
        ])
    }

    fn launched(d: &Decision) -> u32 {
        match d {
            Decision::Launch { broker, .. } => *broker,
            other => panic!("expected a launch, got {other:?}"),
        }
    }

    #[test]
    fn unique_hostnames_spread_brokers() {
        let mut core = Core::default();
        core.add("0..2", &params(&[("constraints", "hostname=unique"), ("mem", "256")]))
            .expect("add");
        core.start("*").expect("start");
        assert_eq!(launched(&core.offer(&offer("h1", "r1", 31000), 0, "t0")), 0);
        // The same host again: brokers 1 and 2 refuse it, each with its reason.
        match core.offer(&offer("h1", "r1", 31000), 0, "t1") {
            Decision::Decline { reason, refuse_ms } => {
                assert!(
                    reason.contains("broker 1: h1: hostname=h1 doesn't match hostname=unique"),
                    "{reason}"
                );
                assert_eq!(refuse_ms, MISMATCH_REFUSE_MS);
            }
            other => panic!("{other:?}"),
        }
        assert!(core.reasons[&2].contains("unique"));
        assert_eq!(launched(&core.offer(&offer("h2", "r1", 31000), 0, "t1")), 1);
        assert_eq!(launched(&core.offer(&offer("h3", "r2", 31000), 0, "t2")), 2);
        assert!(core.reasons.is_empty());
        match core.offer(&offer("h4", "r1", 31000), 0, "t3") {
            Decision::Decline { refuse_ms, .. } => assert_eq!(refuse_ms, IDLE_REFUSE_MS),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resources_and_ports_are_checked() {
        let mut core = Core::default();
        core.add("0", &params(&[("cpus", "8"), ("port", "9092")])).expect("add");
        core.start("0").expect("start");
        let Decision::Decline { reason, .. } = core.offer(&offer("h1", "r1", 31000), 0, "t") else {
            panic!("8 cpus do not fit in 4")
        };
        assert!(reason.contains("cpus 4.00 < 8.00"), "{reason}");
        core.update("0", &params(&[("cpus", "1"), ("mem", "1024")])).expect("update");
        let Decision::Decline { reason, .. } = core.offer(&offer("h1", "r1", 31000), 0, "t") else {
            panic!("port 9092 is not offered")
        };
        assert!(reason.contains("no suitable port (wanted 9092)"), "{reason}");
        assert_eq!(
            core.offer(&offer("h1", "r1", 9090), 0, "t"),
            Decision::Launch { broker: 0, port: 9092 }
        );
    }

    #[test]
    fn failures_back_off_and_stick_to_the_host() {
        let mut core = Core::default();
        core.add("0", &small()).expect("add");
        core.start("0").expect("start");
        launched(&core.offer(&offer("h1", "r1", 31000), 0, "t0"));
        assert!(core.task_event("t0", TaskEvent::Starting, 10));
        assert!(core.task_event(
            "t0",
            TaskEvent::Running { endpoint: Some("h1:31000".into()) },
            20
        ));
        assert_eq!(
            core.brokers()[&0].task.as_ref().and_then(|t| t.endpoint.clone()).as_deref(),
            Some("h1:31000")
        );
        // First failure: 1 s delay.
        assert!(core.task_event("t0", TaskEvent::Ended { reason: "killed".into() }, 1_000));
        assert_eq!(core.brokers()[&0].state_word(), "failed 1");
        assert_eq!(core.brokers()[&0].failover.last_error.as_deref(), Some("killed"));
        let Decision::Decline { refuse_ms, reason } =
            core.offer(&offer("h1", "r1", 31000), 1_500, "t1")
        else {
            panic!("within the delay")
        };
        assert_eq!(refuse_ms, 500);
        assert!(reason.contains("failover delay, 1s left"), "{reason}");
        // After the delay, only the previous host will do.
        let Decision::Decline { reason, .. } = core.offer(&offer("h2", "r1", 31000), 2_000, "t1")
        else {
            panic!("sticky")
        };
        assert!(reason.contains("sticky to host h1"), "{reason}");
        launched(&core.offer(&offer("h1", "r1", 31000), 2_000, "t1"));
        // A second failure without running in between doubles the delay, up to the max.
        core.task_event("t1", TaskEvent::Ended { reason: "failed".into() }, 3_000);
        assert_eq!(core.brokers()[&0].failover.delay_expires(), Some(5_000));
        // Running resets the count.
        launched(&core.offer(&offer("h1", "r1", 31000), 5_000, "t2"));
        core.task_event("t2", TaskEvent::Running { endpoint: None }, 5_100);
        assert_eq!(core.brokers()[&0].failover.failures, 0);
    }

    #[test]
    fn stickiness_expires() {
        let mut core = Core::default();
        core.add("0", &params(&[("stickinessPeriod", "10s"), ("mem", "256")])).expect("add");
        core.start("0").expect("start");
        launched(&core.offer(&offer("h1", "r1", 31000), 0, "t0"));
        let (_, kill) = core.stop("0").expect("stop");
        assert_eq!(kill.len(), 1);
        core.task_event("t0", TaskEvent::Ended { reason: "killed".into() }, 1_000);
        assert_eq!(core.brokers()[&0].failover.failures, 0, "a stop is not a failure");
        core.start("0").expect("start");
        assert!(matches!(
            core.offer(&offer("h2", "r1", 31000), 5_000, "t1"),
            Decision::Decline { .. }
        ));
        launched(&core.offer(&offer("h2", "r1", 31000), 11_000, "t1"));
    }

    #[test]
    fn a_volume_must_be_offered() {
        let mut core = Core::default();
        core.add("0", &params(&[("volume", "kafka-0"), ("mem", "256")])).expect("add");
        core.start("0").expect("start");
        let Decision::Decline { reason, .. } = core.offer(&offer("h1", "r1", 31000), 0, "t") else {
            panic!("no volume in the offer")
        };
        assert!(reason.contains("volume kafka-0 not offered"), "{reason}");
        let mut with_volume = offer("h1", "r1", 31000);
        with_volume.volumes = vec!["kafka-0".into()];
        launched(&core.offer(&with_volume, 0, "t"));
    }

    #[test]
    fn max_tries_deactivate() {
        let mut core = Core::default();
        core.add(
            "0",
            &params(&[("failoverMaxTries", "2"), ("failoverDelay", "1ms"), ("mem", "1")]),
        )
        .expect("add");
        core.start("0").expect("start");
        for (n, now) in [(0, 0), (1, 100)] {
            let id = format!("t{n}");
            launched(&core.offer(&offer("h1", "r1", 31000), now, &id));
            core.task_event(&id, TaskEvent::Ended { reason: "boom".into() }, now + 1);
        }
        assert!(!core.brokers()[&0].active);
        assert!(core.reasons[&0].contains("deactivated after 2 failures: boom"));
    }

    #[test]
    fn user_errors_are_clear() {
        let mut core = Core::default();
        core.add("0", &BrokerParams::default()).expect("add");
        assert_eq!(
            core.add("0", &BrokerParams::default()).expect_err("dup").0,
            "broker 0 already exists"
        );
        assert_eq!(core.start("5").expect_err("unknown").0, "broker 5 not found");
        core.start("0").expect("start");
        assert!(core.remove("0").expect_err("active").0.contains("stop it first"));
        let bad_params = [
            ("port", "70000"),
            ("cpus", "-1"),
            ("mem", "lots"),
            ("constraints", "hostname=sometimes"),
            ("failoverDelay", "soon"),
            ("options", "novalue"),
            ("options", "num.partitions=3"),
            ("bindAddress", "if:"),
        ];
        for (k, v) in bad_params {
            let map = [(k.to_string(), v.to_string())].into();
            assert!(BrokerParams::from_params(&map).is_err(), "{k}={v}");
        }
        let e = core.update("0", &params(&[("failoverDelay", "1h")])).expect_err("delay > max");
        assert!(e.0.contains("longer than max delay"), "{e}");
    }

    #[test]
    fn topics_are_remembered_for_the_brokers_they_were_added_for() {
        let mut core = Core::default();
        core.add("0..2", &params(&[("mem", "256")])).expect("add");
        core.start("*").expect("start");
        launched(&core.offer(&offer("h1", "r1", 31000), 0, "t0"));
        launched(&core.offer(&offer("h2", "r2", 31000), 0, "t1"));
        let names = |v: Vec<(String, TopicSpec)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let opts = parse_map("retention.ms=1000").expect("valid");
        core.remember_topics(&["all".into()], 2, &opts, "*").expect("remember");
        core.remember_topics(&["one".into()], 1, &BTreeMap::new(), "1").expect("remember");
        core.remember_topics(&["racked".into()], 1, &BTreeMap::new(), "*[rack=r2]").expect("r2");
        assert!(core.remember_topics(&["x".into()], 1, &BTreeMap::new(), "0..").is_err());
        assert_eq!(names(core.topics_for(0)), ["all"]);
        assert_eq!(names(core.topics_for(1)), ["all", "one", "racked"]);
        assert_eq!(names(core.topics_for(2)), ["all"], "a broker without a task has no rack");
        assert_eq!(core.broker_of_task("t1"), Some(1));
        // Added again for broker 0: both brokers get it.
        core.remember_topics(&["one".into()], 3, &BTreeMap::new(), "0").expect("extend");
        assert_eq!(core.state.topics["one"].brokers, ["1", "0"]);
        assert_eq!(core.state.topics["one"].partitions, 3);
        let changed = core.update_topics(&["a*".into()], &parse_map("retention.ms=").expect("ok"));
        assert_eq!(changed, ["all"]);
        assert!(core.state.topics["all"].options.is_empty(), "an empty value removes");
        assert_eq!(core.forget_topics(&["*".into()]), ["all", "one", "racked"]);
        assert!(core.topics_for(1).is_empty());
        let json = serde_json::to_value(&core.state).expect("serializes");
        assert!(json.get("topics").is_none(), "no topics, no field: old state files still load");
    }

    #[test]
    fn clone_copies_configuration_and_updates_mark_restarts() {
        let mut core = Core::default();
        core.add("0", &params(&[("cpus", "2"), ("options", "log.dirs=d")])).expect("add");
        assert_eq!(core.clone_broker("1..2", "0").expect("clone"), [1, 2]);
        assert_eq!(core.brokers()[&2].cpus, 2.0);
        assert_eq!(core.brokers()[&2].options["log.dirs"], "d");
        assert!(!core.brokers()[&2].active);
        core.start("0").expect("start");
        launched(&core.offer(&offer("h1", "r1", 31000), 0, "t0"));
        core.update("0", &params(&[("mem", "512")])).expect("update");
        assert!(core.brokers()[&0].needs_restart);
        assert!(!core.task_event("other", TaskEvent::Starting, 0), "unknown tasks are reported");
        assert_eq!(core.known_tasks(), [("t0".to_string(), "agent-h1".to_string())]);
        let m = Metrics { timestamp: 5, topics: 1, partitions: 2, rss_bytes: 3, cpu_seconds: 0.5 };
        assert!(core.metrics_reported("t0", m.clone()));
        assert!(!core.metrics_reported("gone", m.clone()), "late reports are dropped");
        assert_eq!(core.metrics[&0], m);
        core.task_event("t0", TaskEvent::Ended { reason: "killed".into() }, 10);
        assert!(core.metrics.is_empty(), "an ended task's metrics go with it");
    }
}
