//! Pins that `/master/state` writes the same bytes since agents and frameworks stream: the
//! renders they had before (through `serde_json::Value` trees) are kept here as the reference,
//! and a snapshot with every optional field set one way or the other goes through both. It
//! tests only the render, not the snapshot (the core's tests cover that).

use super::tests::scalar;
use super::*;

fn task(id: &str, time: f64) -> v1::Task {
    v1::Task {
        task_id: Some(v1::TaskId { value: id.into() }),
        framework_id: Some(v1::FrameworkId { value: "f".into() }),
        statuses: vec![v1::TaskStatus { timestamp: Some(time), ..Default::default() }],
        ..Default::default()
    }
}

/// The renders of agents and frameworks as they were before they streamed (through
/// `serde_json::Value` trees), kept here to pin that the streamed ones write the same bytes.
mod before {
    use super::super::*;

    fn old_seconds(time: Option<&v1::TimeInfo>) -> Value {
        time.map_or(Value::Null, |t| json!(t.nanoseconds as f64 / 1e9))
    }

    pub(super) fn old_framework_json(
        f: &response::get_frameworks::Framework,
        by: &ByFramework<'_>,
        full: bool,
    ) -> Result<Value, serde_json::Error> {
        let info = &f.framework_info;
        let id = info.id.as_ref().map_or("", |i| i.value.as_str());
        let (multi, roles) = framework_roles(info);
        let mut o = serde_json::Map::new();
        o.insert("id".into(), json!(id));
        o.insert("name".into(), json!(info.name));
        o.insert("user".into(), json!(info.user));
        o.insert("hostname".into(), json!(info.hostname.clone().unwrap_or_default()));
        o.insert("webui_url".into(), json!(info.webui_url.clone().unwrap_or_default()));
        o.insert("active".into(), json!(f.active));
        o.insert("connected".into(), json!(f.connected));
        o.insert("recovered".into(), json!(f.recovered));
        o.insert("failover_timeout".into(), json!(info.failover_timeout()));
        o.insert("checkpoint".into(), json!(info.checkpoint()));
        o.insert("registered_time".into(), old_seconds(f.registered_time.as_ref()));
        o.insert(
            "unregistered_time".into(),
            old_seconds(f.unregistered_time.as_ref()).as_f64().map_or(json!(0), |v| json!(v)),
        );
        if let Some(t) = &f.reregistered_time {
            o.insert("reregistered_time".into(), old_seconds(Some(t)));
        }
        if let Some(p) = &info.principal {
            o.insert("principal".into(), json!(p));
        }
        let capabilities: Vec<&str> =
            info.capabilities.iter().map(|c| c.r#type().as_str_name()).collect();
        o.insert("capabilities".into(), json!(capabilities));
        if multi {
            o.insert("roles".into(), json!(roles));
        } else {
            o.insert("role".into(), json!(roles.first()));
        }
        o.insert("used_resources".into(), flat(&f.allocated_resources));
        o.insert("offered_resources".into(), flat(&f.offered_resources));
        o.insert(
            "resources".into(),
            flat(&[f.allocated_resources.clone(), f.offered_resources.clone()].concat()),
        );
        if let Some(l) = &info.labels {
            o.insert("labels".into(), labels(l));
        }
        if full {
            o.insert("unreachable_tasks".into(), json!([]));
            let offers: Vec<Value> = f
                .offers
                .iter()
                .map(|offer| {
                    json!({
                        "id": offer.id.value,
                        "framework_id": offer.framework_id.value,
                        "slave_id": offer.agent_id.value,
                        "resources": flat(&offer.resources),
                    })
                })
                .collect();
            o.insert("offers".into(), json!(offers));
            let executors: Vec<Value> = by
                .executors
                .get(id)
                .map(|es| {
                    es.iter()
                        .map(|e| {
                            let mut v = agora_proto::to_json_value(&e.executor_info);
                            if let Value::Object(m) = &mut v {
                                m.insert("slave_id".into(), json!(e.agent_id.value));
                                m.insert("resources".into(), flat(&e.executor_info.resources));
                            }
                            v
                        })
                        .collect()
                })
                .unwrap_or_default();
            o.insert("executors".into(), json!(executors));
        }
        Ok(Value::Object(o))
    }

    pub(super) fn old_slave_json(a: &response::get_agents::Agent) -> Value {
        let info = &a.agent_info;
        let mut reserved: BTreeMap<String, Vec<v1::Resource>> = BTreeMap::new();
        let mut unreserved = Vec::new();
        for r in &a.total_resources {
            match reservation_role(r) {
                Some(role) => reserved.entry(role).or_default().push(r.clone()),
                None => unreserved.push(r.clone()),
            }
        }
        let reserved: serde_json::Map<String, Value> =
            reserved.into_iter().map(|(role, rs)| (role, flat(&rs))).collect();
        json!({
            "id": info.id.as_ref().map_or("", |i| i.value.as_str()),
            "hostname": info.hostname,
            "port": info.port(),
            "pid": a.pid.clone().unwrap_or_default(),
            "attributes": attributes(&info.attributes),
            "registered_time": old_seconds(a.registered_time.as_ref()),
            "reregistered_time": old_seconds(a.reregistered_time.as_ref()),
            "resources": flat(&a.total_resources),
            "used_resources": flat(&a.allocated_resources),
            "offered_resources": flat(&a.offered_resources),
            "reserved_resources": reserved,
            "unreserved_resources": flat(&unreserved),
            "active": a.active,
            "deactivated": a.deactivated.unwrap_or(false),
            "version": a.version,
            "capabilities": [],
        })
    }
}

fn time(seconds: f64) -> Option<v1::TimeInfo> {
    Some(v1::TimeInfo { nanoseconds: (seconds * 1e9) as i64 })
}

fn reserved(name: &str, value: f64, role: &str, refined: bool) -> v1::Resource {
    let mut r = scalar(name, value);
    if refined {
        r.reservations =
            vec![v1::resource::ReservationInfo { role: Some(role.into()), ..Default::default() }];
    } else {
        #[expect(deprecated, reason = "the pre-refinement format is rendered too")]
        {
            r.role = Some(role.into());
        }
    }
    r
}

/// Agents and frameworks with every optional field set one way or the other.
fn rich_snapshot() -> StateSnapshot {
    let mut ports = v1::Resource {
        name: "ports".into(),
        ranges: Some(v1::value::Ranges {
            range: vec![v1::value::Range { begin: 31000, end: 32000 }],
        }),
        ..Default::default()
    };
    ports.set_type(v1::value::Type::Ranges);
    let mut revocable = scalar("cpus", 0.5);
    revocable.revocable = Some(Default::default());
    let total = vec![
        scalar("cpus", 4.0),
        scalar("mem", 1024.0),
        ports,
        revocable,
        reserved("cpus", 1.0, "web", true),
        reserved("mem", 64.0, "db", false),
    ];
    let attribute = |name: &str| v1::Attribute { name: name.into(), ..Default::default() };
    let attributes = vec![
        v1::Attribute { scalar: Some(v1::value::Scalar { value: 3.0 }), ..attribute("level") },
        v1::Attribute { text: Some(v1::value::Text { value: "r1".into() }), ..attribute("rack") },
        v1::Attribute {
            set: Some(v1::value::Set { item: vec!["a".into(), "b".into()] }),
            ..attribute("zones")
        },
    ];
    let agent = |n: u32, active: bool| response::get_agents::Agent {
        agent_info: v1::AgentInfo {
            id: Some(v1::AgentId { value: format!("S{n}") }),
            hostname: format!("agent{n}"),
            port: Some(5051),
            attributes: if n == 0 { attributes.clone() } else { Vec::new() },
            ..Default::default()
        },
        active,
        version: "1.11.0".into(),
        pid: Some(format!("slave(1)@10.0.0.{n}:5051")),
        registered_time: time(1.5),
        reregistered_time: if n == 0 { time(2.25) } else { None },
        total_resources: total.clone(),
        allocated_resources: vec![scalar("cpus", 1.0)],
        offered_resources: vec![scalar("mem", 128.0)],
        deactivated: if n == 0 { None } else { Some(true) },
        ..Default::default()
    };
    let mut multi = v1::FrameworkInfo {
        user: "alice".into(),
        name: "multi".into(),
        id: Some(v1::FrameworkId { value: "F0".into() }),
        roles: vec!["web".into(), "db".into()],
        principal: Some("p".into()),
        hostname: Some("h".into()),
        webui_url: Some("http://h".into()),
        checkpoint: Some(true),
        failover_timeout: Some(7.5),
        labels: Some(v1::Labels {
            labels: vec![v1::Label { key: "k".into(), value: Some("v".into()) }],
        }),
        ..Default::default()
    };
    let mut capability = v1::framework_info::Capability::default();
    capability.set_type(v1::framework_info::capability::Type::MultiRole);
    multi.capabilities = vec![capability];
    #[expect(deprecated, reason = "a single-role framework names its role this way")]
    let single = v1::FrameworkInfo {
        user: "bob".into(),
        name: "single".into(),
        id: Some(v1::FrameworkId { value: "F1".into() }),
        role: Some("web".into()),
        ..Default::default()
    };
    let offer = v1::Offer {
        id: v1::OfferId { value: "O1".into() },
        framework_id: v1::FrameworkId { value: "F0".into() },
        agent_id: v1::AgentId { value: "S0".into() },
        resources: vec![scalar("mem", 128.0)],
        ..Default::default()
    };
    let frameworks = vec![
        response::get_frameworks::Framework {
            framework_info: multi,
            active: true,
            connected: true,
            registered_time: time(1.0),
            reregistered_time: time(3.0),
            unregistered_time: time(4.0),
            offers: vec![offer],
            allocated_resources: vec![scalar("cpus", 1.0)],
            offered_resources: vec![scalar("mem", 128.0)],
            recovered: false,
            ..Default::default()
        },
        response::get_frameworks::Framework {
            framework_info: single,
            recovered: true,
            ..Default::default()
        },
    ];
    let executor = response::get_executors::Executor {
        executor_info: v1::ExecutorInfo {
            executor_id: v1::ExecutorId { value: "E".into() },
            framework_id: Some(v1::FrameworkId { value: "F0".into() }),
            resources: vec![scalar("cpus", 0.1)],
            ..Default::default()
        },
        agent_id: v1::AgentId { value: "S0".into() },
    };
    let mut running = task("t1", 1.0);
    running.framework_id = Some(v1::FrameworkId { value: "F0".into() });
    let mut done = task("t2", 2.0);
    done.framework_id = Some(v1::FrameworkId { value: "F1".into() });
    StateSnapshot {
        master_info: v1::MasterInfo {
            id: "M".into(),
            hostname: Some("master".into()),
            pid: Some("master@10.0.0.1:5050".into()),
            port: 5050,
            ..Default::default()
        },
        start_time: Duration::from_secs(100),
        state: StateView {
            tasks: vec![std::sync::Arc::new(running)],
            completed_tasks: vec![std::sync::Arc::new(done)],
            executors: response::GetExecutors {
                executors: vec![executor],
                orphan_executors: Vec::new(),
            },
            frameworks: frameworks.into_iter().map(std::sync::Arc::new).collect(),
            completed_frameworks: Vec::new(),
            agents: vec![std::sync::Arc::new(agent(0, true)), std::sync::Arc::new(agent(1, false))],
            recovered_agents: vec![v1::AgentInfo {
                id: Some(v1::AgentId { value: "S9".into() }),
                hostname: "gone".into(),
                ..Default::default()
            }],
        },
        flags: vec![("port".into(), "5050".into())],
    }
}

#[test]
fn streamed_agents_and_frameworks_write_the_bytes_the_value_trees_wrote() {
    let snapshot = rich_snapshot();
    let state = &snapshot.state;
    let by = ByFramework::of(state);
    for a in &state.agents {
        assert_eq!(
            serde_json::to_string(&LegacySlave(a)).expect("serializes"),
            serde_json::to_string(&before::old_slave_json(a)).expect("serializes"),
        );
    }
    for f in &state.frameworks {
        for full in [false, true] {
            assert_eq!(
                serde_json::to_string(&FrameworkFields {
                    f,
                    executors: by
                        .executors
                        .get(f.framework_info.id.as_ref().map_or("", |i| i.value.as_str()))
                        .cloned()
                        .unwrap_or_default(),
                    full,
                })
                .expect("serializes"),
                serde_json::to_string(&before::old_framework_json(f, &by, full).expect("renders"))
                    .expect("serializes"),
            );
        }
    }

    // The whole document: the small fields and `slaves` in sorted order, as one value
    // wrote them, then `frameworks`.
    let body = render_state(&snapshot).expect("renders");
    let mut doc: Value = serde_json::from_slice(&body).expect("valid JSON");
    let fields = doc.as_object_mut().expect("an object");
    fields.remove("frameworks");
    let slaves = state.agents.iter().map(|a| before::old_slave_json(a)).collect();
    fields.insert("slaves".into(), Value::Array(slaves));
    let frameworks: Vec<FullFramework<'_>> = state
        .frameworks
        .iter()
        .map(|f| FullFramework::of(f, &by))
        .collect::<Result<_, _>>()
        .expect("renders");
    let mut expected = serde_json::to_vec(&doc).expect("serializes");
    expected.pop();
    expected.extend_from_slice(b",\"frameworks\":");
    expected.extend(serde_json::to_vec(&frameworks).expect("serializes"));
    expected.push(b'}');
    assert_eq!(String::from_utf8_lossy(&body), String::from_utf8_lossy(&expected));
}
