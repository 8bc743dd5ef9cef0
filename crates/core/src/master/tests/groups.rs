//! Master tests of LAUNCH_GROUP: a valid group reaches the agent in one RUN_TASK_GROUP with
//! its executor, and an invalid one fails as a whole with REASON_TASK_GROUP_INVALID.

use agora_proto::v1::executor_info::Type as ExecutorType;
use agora_proto::v1::task_status::Reason;

use super::*;

fn default_executor(id: &str, resources: &str) -> v1::ExecutorInfo {
    let mut e = v1::ExecutorInfo {
        executor_id: v1::ExecutorId { value: id.into() },
        resources: convert::resources_to_proto(&res(resources), None),
        ..Default::default()
    };
    e.set_type(ExecutorType::Default);
    e
}

fn launch_group(executor: v1::ExecutorInfo, tasks: Vec<v1::TaskInfo>) -> v1::offer::Operation {
    let mut op = v1::offer::Operation::default();
    op.set_type(v1::offer::operation::Type::LaunchGroup);
    op.launch_group = Some(v1::offer::operation::LaunchGroup {
        executor,
        task_group: v1::TaskGroupInfo { tasks },
    });
    op
}

impl Cluster {
    fn launch_group(&mut self, op: v1::offer::Operation) -> Vec<Output> {
        let offer_id = self.offer.id.value.clone();
        let (result, out) = self.h.call(&self.fid, accept(&[&offer_id], vec![op], None));
        assert_eq!(result, Ok(()));
        out
    }
}

#[test]
fn a_valid_group_runs_as_one_unit_on_its_executor() {
    let mut c = cluster(framework("f"));
    let aid = c.aid.clone();
    let op = launch_group(
        default_executor("ex", "cpus:0.1;mem:32"),
        vec![task("a", &aid, "cpus:1;mem:64"), task("b", &aid, "cpus:1;mem:64")],
    );
    let out = c.launch_group(op);
    assert!(updates(&out, c.fconn).is_empty(), "{out:?}");
    let runs: Vec<_> =
        agent_events(&out, c.aconn).into_iter().filter_map(|e| e.run_task_group).collect();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.task_group.tasks.len(), 2);
    assert_eq!(run.executor.framework_id.as_ref().map(|f| f.value.as_str()), Some(&*c.fid));
    assert_eq!(run.framework_info.id.as_ref().map(|f| f.value.as_str()), Some(&*c.fid));
    let mut states = c.h.master.tasks();
    states.sort();
    assert_eq!(
        states.iter().map(|(_, t, s)| (t.as_str(), *s)).collect::<Vec<_>>(),
        vec![("a", v1::TaskState::TaskStaging), ("b", v1::TaskState::TaskStaging)]
    );

    // A second group on the same executor does not pay for the executor again, and the
    // executor shows in the next offer.
    c.h.advance(10.0);
    let offer = offers(&c.h.tick(), c.fconn).pop().expect("the rest comes back");
    assert_eq!(offer.executor_ids, vec![v1::ExecutorId { value: "ex".into() }]);
    assert_eq!(offered(&offer), res("cpus:1.9;mem:864"));
}

#[test]
fn an_invalid_group_fails_as_a_whole() {
    let aid = "S0";
    let with_executor = {
        let mut t = task("b", aid, "cpus:1");
        t.command = None;
        t.executor = Some(default_executor("ex", "cpus:0.1;mem:32"));
        t
    };
    let mut custom_without_command = default_executor("ex", "cpus:0.1;mem:32");
    custom_without_command.set_type(ExecutorType::Custom);
    let mut untyped = default_executor("ex", "cpus:0.1;mem:32");
    untyped.r#type = None;
    let cases: Vec<(v1::ExecutorInfo, Vec<v1::TaskInfo>, &str)> = vec![
        (default_executor("ex", "cpus:0.1;mem:32"), vec![], "empty"),
        (
            default_executor("ex", "cpus:0.1;mem:32"),
            vec![task("a", aid, "cpus:1"), task("a", aid, "cpus:1")],
            "duplicate task ID",
        ),
        (
            default_executor("ex", "cpus:0.1;mem:32"),
            vec![task("a", aid, "cpus:1"), with_executor],
            "'TaskInfo.executor' must not be set",
        ),
        (
            default_executor("ex", "cpus:0.1;mem:32"),
            vec![task("a", aid, "cpus:3"), task("b", aid, "cpus:1")],
            "more than available",
        ),
        (default_executor("ex", "cpus:0.1"), vec![task("a", aid, "cpus:1")], "'cpus' and 'mem'"),
        (custom_without_command, vec![task("a", aid, "cpus:1")], "must be set for 'CUSTOM'"),
        (untyped, vec![task("a", aid, "cpus:1")], "'DEFAULT' or 'CUSTOM'"),
    ];
    for (executor, tasks, expected) in cases {
        let mut c = cluster(framework("f"));
        let tasks: Vec<v1::TaskInfo> = tasks
            .into_iter()
            .map(|mut t| {
                t.agent_id.value = c.aid.clone();
                t
            })
            .collect();
        let count = tasks.len();
        let out = c.launch_group(launch_group(executor, tasks));
        let statuses = updates(&out, c.fconn);
        assert_eq!(statuses.len(), count, "{expected}");
        for status in statuses {
            assert_eq!(status.state(), v1::TaskState::TaskError, "{expected}");
            assert_eq!(status.reason(), Reason::TaskGroupInvalid, "{expected}");
            assert!(status.message().contains(expected), "{expected}: {:?}", status.message);
        }
        assert!(agent_events(&out, c.aconn).iter().all(|e| e.run_task_group.is_none()));
        assert!(c.h.master.tasks().is_empty(), "{expected}");
    }
}
