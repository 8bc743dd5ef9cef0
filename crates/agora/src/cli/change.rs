//! The commands that change the cluster: `quota set`, `reserve`, `unreserve`, `framework
//! teardown`, and `task kill` (through Agora's operator extension: the v1 operator API has
//! no such call).
//!
//! Each builds one operator call from the command line, sends it, and says in one line what
//! was done; the master's refusal (400, 409, ...) comes back with its message. Resource
//! quantities use the `--resources` syntax of `agora agent` (`cpus:1;mem:128`).

use std::collections::HashMap;
use std::process::ExitCode;

use agora_core::convert;
use agora_core::resources::Resources;
use agora_proto::master::{Call, call};
use agora_proto::v1;
use anyhow::{Context, bail};

use super::{Master, ReserveArgs, out, render, views, waiting};

/// `agora framework teardown ID`.
pub(crate) async fn teardown(master: &Master, id: &str) -> anyhow::Result<ExitCode> {
    let mut message = Call {
        teardown: Some(call::Teardown { framework_id: v1::FrameworkId { value: id.to_string() } }),
        ..Default::default()
    };
    message.set_type(call::Type::Teardown);
    master.call(&message).await?;
    out(&format!("framework {id} torn down: the master is killing its tasks\n"));
    Ok(ExitCode::SUCCESS)
}

/// `agora task kill ID`. The v1 operator API has no call that kills one task (only a task's
/// framework can, with its scheduler's KILL), so this uses Agora's operator extension, which
/// makes the master kill the task exactly as the framework's KILL would: the kill policy
/// applies and the framework hears TASK_KILLED on its own stream. The task's framework is
/// looked up first, so that an id two frameworks use is refused with both named.
pub(crate) async fn kill(master: &Master, id: &str) -> anyhow::Result<ExitCode> {
    let tasks = master.query(call::Type::GetTasks).await?;
    let found: Vec<_> = views::listed_tasks(&tasks, false)
        .into_iter()
        .filter(|t| views::task_id(t) == id)
        .collect();
    let framework = match found.as_slice() {
        [] => bail!(
            "the master at {} knows no running task '{id}'; `agora task list` lists them",
            master.address()
        ),
        [task] => views::task_framework(task).to_string(),
        several => bail!(
            "task id '{id}' is used by several frameworks ({}): the master cannot tell which to kill",
            several.iter().map(|t| views::task_framework(t)).collect::<Vec<_>>().join(", ")
        ),
    };
    let url = master.operator().await?.url().replace("/api/v1", "/api/agora/v1/kill_task");
    waiting(
        &format!("asking {url} to kill {id}"),
        master.operator().await?.kill_task(id, Some(&framework)),
    )
    .await
    .map_err(|e| master.explain(e))?;
    out(&format!(
        "task {id} of framework {framework}: kill sent; `agora task show {id}` follows its state\n"
    ));
    Ok(ExitCode::SUCCESS)
}

/// Parses `cpus:2;mem:1024` into scalar quantities by name, for quota.
pub(crate) fn scalar_quantities(text: &str) -> anyhow::Result<HashMap<String, v1::value::Scalar>> {
    let mut out = HashMap::new();
    for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = item
            .split_once(':')
            .with_context(|| format!("'{item}' is not of the form name:quantity"))?;
        let value: f64 =
            value.trim().parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0).with_context(
                || format!("the quantity of '{}' must be a number of at least 0", name.trim()),
            )?;
        out.insert(name.trim().to_string(), v1::value::Scalar { value });
    }
    Ok(out)
}

/// `agora quota set ROLE [--guarantees ...] [--limits ...] [--force]`.
pub(crate) async fn set_quota(
    master: &Master,
    role: &str,
    guarantees: Option<&str>,
    limits: Option<&str>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let guarantees = scalar_quantities(guarantees.unwrap_or("")).context("invalid --guarantees")?;
    let limits = scalar_quantities(limits.unwrap_or("")).context("invalid --limits")?;
    let summary = format!(
        "quota of role {role}: guarantees {}, limits {}\n",
        render::scalars(&guarantees),
        render::scalars(&limits)
    );
    let config = v1::quota::QuotaConfig { role: role.to_string(), guarantees, limits };
    let mut message = Call {
        update_quota: Some(call::UpdateQuota { force: Some(force), quota_configs: vec![config] }),
        ..Default::default()
    };
    message.set_type(call::Type::UpdateQuota);
    master.call(&message).await?;
    out(&summary);
    Ok(ExitCode::SUCCESS)
}

/// The wire resources of a (un)reservation: `text` as unreserved quantities, each carrying one
/// dynamic reservation for `role` (the post-refinement format the operator API takes).
pub(crate) fn reservation(
    text: &str,
    role: &str,
    principal: Option<&str>,
) -> anyhow::Result<Vec<v1::Resource>> {
    if role.is_empty() || role == "*" {
        bail!("--role must name a role: '*' holds the unreserved resources");
    }
    let parsed = Resources::parse(text).context("invalid resources")?;
    if parsed.is_empty() {
        bail!("no resources given");
    }
    let mut wire = convert::resources_to_proto(&parsed, None);
    for resource in &mut wire {
        #[expect(deprecated, reason = "a static reservation shows in the pre-refinement role")]
        let static_role = resource.role.as_deref().is_some_and(|r| r != "*");
        if static_role || resource.reservation.is_some() || !resource.reservations.is_empty() {
            bail!(
                "write the resources without a role (`cpus:1`, not `cpus(r):1`) and name it with --role"
            );
        }
        #[expect(
            deprecated,
            reason = "the pre-refinement role field must not be set beside reservations"
        )]
        {
            resource.role = None;
        }
        let mut info = v1::resource::ReservationInfo {
            role: Some(role.to_string()),
            principal: principal.map(str::to_string),
            ..Default::default()
        };
        info.set_type(v1::resource::reservation_info::Type::Dynamic);
        resource.reservations = vec![info];
    }
    Ok(wire)
}

/// `agora reserve` (`reserve = true`) and `agora unreserve`.
pub(crate) async fn reserve(args: &ReserveArgs, reserve: bool) -> anyhow::Result<ExitCode> {
    let resources = reservation(&args.resources, &args.role, args.principal.as_deref())?;
    let agent_id = v1::AgentId { value: args.agent_id.clone() };
    let summary = render::resources(&resources);
    let mut message = Call::default();
    if reserve {
        message.reserve_resources =
            Some(call::ReserveResources { agent_id, resources, source: Vec::new() });
        message.set_type(call::Type::ReserveResources);
    } else {
        message.unreserve_resources = Some(call::UnreserveResources { agent_id, resources });
        message.set_type(call::Type::UnreserveResources);
    }
    let master = Master::new(&args.target)?;
    master.call(&message).await?;
    let done = if reserve { "reserved" } else { "unreserved" };
    out(&format!("{done} {summary} for role {} on agent {}\n", args.role, args.agent_id));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_quantities_are_scalars_by_name() {
        let parsed = scalar_quantities("cpus:2; mem:1024").expect("valid");
        assert_eq!(parsed["cpus"].value, 2.0);
        assert_eq!(parsed["mem"].value, 1024.0);
        assert!(scalar_quantities("").expect("empty is no quota").is_empty());
        for bad in ["cpus", "cpus:x", "cpus:-1"] {
            assert!(scalar_quantities(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reservations_are_dynamic_for_the_named_role() {
        let wire = reservation("cpus:1;mem:128", "eng", Some("ops")).expect("valid");
        let json = agora_proto::to_json(&wire[0]);
        assert!(
            json.contains(r#""reservations":[{"principal":"ops","role":"eng","type":"DYNAMIC"}]"#),
            "{json}"
        );
        assert_eq!(render::resources(&wire), "cpus 1, mem 128MiB");
        assert!(reservation("cpus:1", "*", None).is_err());
        assert!(reservation("cpus(eng):1", "eng", None).is_err());
        assert!(reservation("", "eng", None).is_err());
    }
}
