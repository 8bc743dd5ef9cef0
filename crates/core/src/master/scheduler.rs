//! The scheduler side of the master: SUBSCRIBE, UPDATE_FRAMEWORK, and the dispatch of every
//! other `scheduler::Call`, validated in the order Mesos checks them (reference §1.1, §1.3).
//!
//! Errors a client must see synchronously become `CallError`s (400/403). ACCEPT lives in
//! `accept.rs`, KILL / ACKNOWLEDGE / RECONCILE in `tasks.rs`. Not here: operation feedback
//! (`Offer.Operation.id`), which Agora refuses.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::allocator::{FrameworkCapabilities, FrameworkSpec};
use crate::offer_constraints::OfferConstraints;
use crate::resources::{Resource, Scalar, UNRESERVED, Value};
use agora_proto::scheduler::call::Type as CallType;
use agora_proto::v1;
use agora_proto::v1::framework_info::capability::Type as Capability;
use agora_proto::v1::offer::operation::Type as OpType;
use agora_proto::{internal, scheduler as sched};

use super::{
    CallError, ConnId, Framework, Master, Output, RegistryOp, ReqId, error_event, event,
    has_capability,
};
use crate::ids::validate_id;

pub(super) fn invalid(message: impl std::fmt::Display) -> CallError {
    CallError::BadRequest(format!("Failed to validate scheduler::Call: {message}"))
}

/// Checks that the payload the call type needs is present (Mesos `validation::scheduler::call`).
/// The HTTP shell also calls it on SUBSCRIBE, because Mesos validates the call before it looks
/// at `Accept` (reference §1.1 steps 6 and 7).
pub fn validate_call(call: &sched::Call) -> Result<(), CallError> {
    let Some(kind) = call.r#type.and_then(|t| CallType::try_from(t).ok()) else {
        return Err(invalid("Expecting 'type' to be present"));
    };
    if kind != CallType::Subscribe && call.framework_id.is_none() {
        return Err(invalid("Expecting 'framework_id' to be present"));
    }
    let present = match kind {
        CallType::Subscribe => Some(("subscribe", call.subscribe.is_some())),
        CallType::Accept => Some(("accept", call.accept.is_some())),
        CallType::Decline => Some(("decline", call.decline.is_some())),
        CallType::Kill => Some(("kill", call.kill.is_some())),
        CallType::Shutdown => Some(("shutdown", call.shutdown.is_some())),
        CallType::Acknowledge => Some(("acknowledge", call.acknowledge.is_some())),
        CallType::Reconcile => Some(("reconcile", call.reconcile.is_some())),
        CallType::Message => Some(("message", call.message.is_some())),
        CallType::Request => Some(("request", call.request.is_some())),
        CallType::AcceptInverseOffers => {
            Some(("accept_inverse_offers", call.accept_inverse_offers.is_some()))
        }
        CallType::DeclineInverseOffers => {
            Some(("decline_inverse_offers", call.decline_inverse_offers.is_some()))
        }
        CallType::UpdateFramework => Some(("update_framework", call.update_framework.is_some())),
        CallType::Unknown => return Err(invalid("Expecting 'type' to be present")),
        _ => None,
    };
    match present {
        Some((field, false)) => Err(invalid(format!("Expecting '{field}' to be present"))),
        _ => Ok(()),
    }
}

/// The roles a framework subscribes with, per the MULTI_ROLE rules of reference §2.2.
#[expect(deprecated, reason = "the single `role` is how non-MULTI_ROLE frameworks name theirs")]
pub(super) fn framework_roles(info: &v1::FrameworkInfo) -> Result<Vec<String>, String> {
    let roles: Vec<String> = if has_capability(info, Capability::MultiRole) {
        if info.role.is_some() {
            return Err(
                "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable"
                    .into(),
            );
        }
        let unique: BTreeSet<&String> = info.roles.iter().collect();
        if unique.len() != info.roles.len() {
            return Err("'FrameworkInfo.roles' contains duplicate items".into());
        }
        info.roles.clone()
    } else {
        if !info.roles.is_empty() {
            return Err("'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable".into());
        }
        vec![info.role().to_string()]
    };
    for role in &roles {
        validate_role(role)?;
    }
    Ok(roles)
}

/// What the allocator needs to know of a framework: its roles, suppression and activity, its
/// per-role minimum offer sizes (`offer_filters`), and the capabilities that decide what it
/// may be offered.
pub(super) fn framework_spec(
    info: &v1::FrameworkInfo,
    roles: &[String],
    suppressed: &[String],
    active: bool,
    offer_constraints: OfferConstraints,
) -> FrameworkSpec {
    let min_allocatable = info
        .offer_filters
        .iter()
        .filter_map(|(role, filters)| {
            let sets = filters.min_allocatable_resources.as_ref()?;
            let sets = sets
                .quantities
                .iter()
                .map(|set| {
                    set.quantities
                        .iter()
                        .filter(|(_, v)| v.value.is_finite() && v.value > 0.0)
                        .map(|(name, v)| {
                            let value = Value::Scalar(Scalar::from_f64(v.value));
                            Resource::new(name.clone(), UNRESERVED, value)
                        })
                        .collect()
                })
                .collect();
            Some((role.clone(), sets))
        })
        .collect();
    FrameworkSpec {
        roles: roles.to_vec(),
        suppressed_roles: suppressed.to_vec(),
        active,
        min_allocatable,
        capabilities: FrameworkCapabilities {
            gpu_resources: has_capability(info, Capability::GpuResources),
            reservation_refinement: has_capability(info, Capability::ReservationRefinement),
        },
        offer_constraints,
    }
}

pub(super) fn validate_role(role: &str) -> Result<(), String> {
    if role == "*" {
        return Ok(());
    }
    let bad = role.is_empty()
        || role.starts_with('-')
        || role.split('/').any(|part| part.is_empty() || part == "." || part == "..")
        || role.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\' || c == '*');
    if bad { Err(format!("Role '{role}' is invalid")) } else { Ok(()) }
}

impl Master {
    pub(super) fn subscribe(
        &mut self,
        req: ReqId,
        conn: ConnId,
        stream_id: String,
        call: sched::Call,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        if let Err(e) = validate_call(&call) {
            out.push(Output::Reply { req, result: Err(e) });
            return;
        }
        let Some(subscribe) = call.subscribe else {
            out.push(Output::Reply {
                req,
                result: Err(invalid("Expecting 'subscribe' to be present")),
            });
            return;
        };
        let mut info = subscribe.framework_info;
        if let (Some(top), Some(inner)) = (&call.framework_id, &info.id)
            && top.value != inner.value
        {
            let e = invalid("'framework_id' differs from 'subscribe.framework_info.id'");
            out.push(Output::Reply { req, result: Err(e) });
            return;
        }
        let requested_id = info.id.clone().or(call.framework_id).map(|id| id.value);
        out.push(Output::Reply { req, result: Ok(()) });

        // From here on errors travel on the stream, which then closes (reference §1.2 step 3).
        let fail = |out: &mut Vec<Output>, message: String| {
            out.push(Output::ToScheduler { conn, event: error_event(message) });
            out.push(Output::CloseScheduler { conn });
        };
        let roles = match framework_roles(&info) {
            Ok(roles) => roles,
            Err(message) => return fail(out, message),
        };
        if let Some(role) = subscribe.suppressed_roles.iter().find(|r| !roles.contains(r)) {
            return fail(
                out,
                format!("Suppressed role '{role}' is not one of the framework's roles"),
            );
        }
        let constraints = match &subscribe.offer_constraints {
            Some(c) => match OfferConstraints::from_proto(c, &roles) {
                Ok(c) => c,
                Err(message) => return fail(out, message),
            },
            None => OfferConstraints::default(),
        };
        if let Some(id) = &requested_id {
            if let Err(e) = validate_id(id) {
                return fail(out, format!("Invalid framework id: {e}"));
            }
            if self.removed_frameworks.contains(id) {
                return fail(out, "Framework has been removed".into());
            }
        }

        let id = match requested_id {
            Some(id) => id,
            None => {
                let id = format!("{}-{:04}", self.config.master_info.id, self.next_framework);
                self.next_framework += 1;
                id
            }
        };
        info.id = Some(v1::FrameworkId { value: id.clone() });

        // Checked before the old stream is touched: a refused re-subscription must leave the
        // running scheduler alone.
        if self.frameworks.get(&id).is_some_and(|f| f.info.principal != info.principal) {
            return fail(out, "Changing the framework's principal is not allowed".into());
        }
        let known = self.frameworks.contains_key(&id);
        if let Some(framework) = self.frameworks.get_mut(&id) {
            // Failover: the newest subscription wins and the old stream learns why it ends.
            if let Some(old) = framework.conn.take() {
                self.scheduler_conns.remove(&old);
                out.push(Output::ToScheduler {
                    conn: old,
                    event: error_event("Framework failed over"),
                });
                out.push(Output::CloseScheduler { conn: old });
            }
            // `user` and `checkpoint` cannot change on re-subscription; Mesos silently keeps them.
            info.user = framework.info.user.clone();
            info.checkpoint = framework.info.checkpoint;
            if framework.info != info {
                out.push(Output::Persist(RegistryOp::UpdateFramework(
                    internal::RegistryFramework {
                        framework_info: info.clone(),
                        removed_time: None,
                    },
                )));
            }
            framework.info = info.clone();
            framework.recovered = false;
            framework.conn = Some(conn);
            framework.stream_id = Some(stream_id);
            framework.disconnected_at = None;
            let offers: Vec<String> = framework.offers.iter().cloned().collect();
            for offer_id in offers {
                self.remove_offer(&offer_id, None, false, now, out);
            }
            // A re-subscription may change the roles (reference §1.3, SUBSCRIBE); this also
            // activates the framework.
            self.allocator
                .set_framework(&id, &framework_spec(&info, &roles, &[], true, constraints.clone()));
            self.allocator.revive(&id, &[]);
            if !subscribe.suppressed_roles.is_empty() {
                self.allocator.suppress(&id, &subscribe.suppressed_roles);
            }
        } else {
            self.allocator.set_framework(
                &id,
                &framework_spec(&info, &roles, &subscribe.suppressed_roles, true, constraints),
            );
            out.push(Output::Persist(RegistryOp::AddFramework(internal::RegistryFramework {
                framework_info: info.clone(),
                removed_time: None,
            })));
            self.frameworks.insert(
                id.clone(),
                Framework {
                    id: id.clone(),
                    info,
                    conn: Some(conn),
                    stream_id: Some(stream_id),
                    disconnected_at: None,
                    offers: BTreeSet::new(),
                    tasks: Default::default(),
                    completed_tasks: Default::default(),
                    executors: Default::default(),
                    recovered: false,
                    registered_time: Some(now),
                    view: Default::default(),
                },
            );
        }
        self.scheduler_conns.insert(conn, id.clone());
        self.emit_framework(&id, !known, out);

        let mut subscribed = event(sched::event::Type::Subscribed);
        subscribed.subscribed = Some(sched::event::Subscribed {
            framework_id: v1::FrameworkId { value: id },
            heartbeat_interval_seconds: Some(self.config.heartbeat_interval.as_secs_f64()),
            master_info: Some(self.config.master_info.clone()),
        });
        out.push(Output::ToScheduler { conn, event: subscribed });
        out.push(Output::ToScheduler { conn, event: event(sched::event::Type::Heartbeat) });
        self.allocate(now, out);
    }

    pub(super) fn scheduler_closed(&mut self, conn: ConnId, now: Duration, out: &mut Vec<Output>) {
        let Some(id) = self.scheduler_conns.remove(&conn) else {
            return;
        };
        let Some(framework) = self.frameworks.get_mut(&id) else {
            return;
        };
        if framework.conn != Some(conn) {
            return;
        }
        framework.conn = None;
        framework.stream_id = None;
        framework.disconnected_at = Some(now);
        let offers: Vec<String> = framework.offers.iter().cloned().collect();
        for offer_id in offers {
            self.remove_offer(&offer_id, None, false, now, out);
        }
        self.allocator.deactivate_framework(&id);
        self.emit_framework(&id, false, out);
        self.expire_failovers(now, out);
    }

    /// Every call but SUBSCRIBE, checked in the order of reference §1.1.
    pub(super) fn scheduler_call(
        &mut self,
        stream_id: Option<String>,
        call: sched::Call,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        validate_call(&call)?;
        if call.r#type() == CallType::Subscribe {
            return Err(invalid("SUBSCRIBE must be sent as a streaming request"));
        }
        let framework_id = call.framework_id.as_ref().map(|f| f.value.clone()).unwrap_or_default();
        let Some(framework) = self.frameworks.get(&framework_id) else {
            return Err(CallError::BadRequest("Framework cannot be found".into()));
        };
        if framework.conn.is_none() {
            return Err(CallError::Forbidden("Framework is not subscribed".into()));
        }
        let Some(given) = stream_id else {
            return Err(CallError::BadRequest(
                "All non-subscribe calls should include the 'Mesos-Stream-Id' header".into(),
            ));
        };
        if framework.stream_id.as_deref() != Some(given.as_str()) {
            return Err(CallError::BadRequest(format!(
                "The stream ID '{given}' included in this request didn't match the stream ID \
                 currently associated with framework ID {framework_id}"
            )));
        }

        match call.r#type() {
            CallType::Teardown => self.remove_framework(&framework_id, now, out),
            CallType::Accept => {
                let accept = call.accept.unwrap_or_default();
                // GROW/SHRINK_VOLUME and the disk operations are not implemented; refusing the whole call loses nothing,
                // where dropping an operation silently would.
                if accept.operations.iter().any(|op| op.id.is_some()) {
                    return Err(invalid(
                        "Operation feedback ('Offer.Operation.id') is not supported by this \
                         version of Agora",
                    ));
                }
                if let Some(op) = accept.operations.iter().find(|op| {
                    !matches!(
                        op.r#type(),
                        OpType::Launch
                            | OpType::LaunchGroup
                            | OpType::Reserve
                            | OpType::Unreserve
                            | OpType::Create
                            | OpType::Destroy
                    )
                }) {
                    return Err(CallError::BadRequest(format!(
                        "Offer operation {} is not supported by this version of Agora",
                        op.r#type().as_str_name()
                    )));
                }
                self.accept(&framework_id, accept, now, out);
            }
            CallType::Decline => {
                let decline = call.decline.unwrap_or_default();
                let refuse = self.refuse_duration(decline.filters.as_ref());
                for offer_id in decline.offer_ids {
                    if self
                        .offers
                        .get(&offer_id.value)
                        .is_some_and(|o| o.framework_id == framework_id)
                    {
                        self.remove_offer(&offer_id.value, refuse, false, now, out);
                    }
                }
            }
            CallType::Revive => {
                let roles = call.revive.map(|r| r.roles).unwrap_or_default();
                self.allocator.revive(&framework_id, &roles);
                self.allocate(now, out);
            }
            CallType::Suppress => {
                let roles = call.suppress.map(|s| s.roles).unwrap_or_default();
                self.allocator.suppress(&framework_id, &roles);
            }
            CallType::Kill => {
                let kill = call.kill.unwrap_or_default();
                self.kill(&framework_id, kill, now, out);
            }
            CallType::Acknowledge => {
                let ack = call.acknowledge.unwrap_or_default();
                let parts =
                    (ack.agent_id.value.clone(), ack.task_id.value.clone(), ack.uuid.clone());
                self.acknowledge(&framework_id, ack)?;
                self.forward_acknowledgement(&framework_id, &parts, out);
            }
            CallType::Reconcile => {
                let reconcile = call.reconcile.unwrap_or_default();
                self.reconcile(&framework_id, reconcile, now, out);
            }
            CallType::Message => {
                let message = call.message.unwrap_or_default();
                let (Some(agent_id), Some(executor_id), Some(data)) =
                    (message.agent_id, message.executor_id, message.data)
                else {
                    return Err(invalid(
                        "Expecting 'message.agent_id', 'message.executor_id' and 'message.data' \
                         to be present",
                    ));
                };
                // Best effort, as in Mesos: a message for an agent that is not connected is
                // dropped.
                if let Some(conn) = self.agents.get(&agent_id.value).and_then(|a| a.conn) {
                    let mut e = internal::AgentEvent::default();
                    e.set_type(internal::agent_event::Type::FrameworkMessage);
                    e.framework_message = Some(internal::agent_event::FrameworkMessage {
                        framework_id: v1::FrameworkId { value: framework_id.clone() },
                        executor_id,
                        data,
                    });
                    out.push(Output::ToAgent { conn, event: e });
                }
            }
            CallType::Shutdown => {
                let shutdown = call.shutdown.unwrap_or_default();
                if let Some(conn) = self.agents.get(&shutdown.agent_id.value).and_then(|a| a.conn) {
                    let mut e = internal::AgentEvent::default();
                    e.set_type(internal::agent_event::Type::ShutdownExecutor);
                    e.shutdown_executor = Some(internal::agent_event::ShutdownExecutor {
                        framework_id: v1::FrameworkId { value: framework_id.clone() },
                        executor_id: shutdown.executor_id,
                    });
                    out.push(Output::ToAgent { conn, event: e });
                }
            }
            CallType::UpdateFramework => {
                let update = call.update_framework.unwrap_or_default();
                self.update_framework(&framework_id, update, now, out)?;
            }
            // Mesos's allocator ignores REQUEST, and without maintenance there are no inverse
            // offers to answer, so these are accepted and have no effect, as in Mesos.
            CallType::Request | CallType::AcceptInverseOffers | CallType::DeclineInverseOffers => {}
            other => {
                return Err(CallError::BadRequest(format!(
                    "Call type {} is not supported by this version of Agora",
                    other.as_str_name()
                )));
            }
        }
        Ok(())
    }

    /// UPDATE_FRAMEWORK (reference §1.3): replaces the FrameworkInfo atomically. Offers for
    /// roles the framework leaves are rescinded, roles that stop being suppressed get their
    /// filters cleared, and the suppressed set becomes exactly `suppressed_roles`.
    fn update_framework(
        &mut self,
        framework_id: &str,
        update: sched::call::UpdateFramework,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        let Some(mut info) = update.framework_info else {
            return Err(invalid("Expecting 'update_framework.framework_info' to be present"));
        };
        let Some(framework) = self.frameworks.get(framework_id) else {
            return Err(CallError::BadRequest("Framework cannot be found".into()));
        };
        if info.id.as_ref().is_none_or(|id| id.value != framework_id) {
            return Err(invalid(
                "'framework_info.id' must be set and equal to 'framework_id' of the call",
            ));
        }
        let old = &framework.info;
        for (field, changed) in [
            ("principal", info.principal != old.principal),
            ("user", info.user != old.user),
            ("checkpoint", info.checkpoint() != old.checkpoint()),
        ] {
            if changed {
                return Err(invalid(format!("Updating 'FrameworkInfo.{field}' is unsupported")));
            }
        }
        let roles = framework_roles(&info).map_err(invalid)?;
        if let Some(role) = update.suppressed_roles.iter().find(|r| !roles.contains(r)) {
            return Err(invalid(format!(
                "Suppressed role '{role}' is not one of the framework's roles"
            )));
        }
        let constraints = match &update.offer_constraints {
            Some(c) => OfferConstraints::from_proto(c, &roles).map_err(invalid)?,
            None => OfferConstraints::default(),
        };
        // A framework keeps its capabilities' effects on launched tasks, and its stream.
        info.id = Some(v1::FrameworkId { value: framework_id.to_string() });
        let gone: Vec<String> = framework
            .offers
            .iter()
            .filter(|o| self.offers.get(*o).is_some_and(|offer| !roles.contains(&offer.role)))
            .cloned()
            .collect();
        let active = framework.conn.is_some();
        for offer_id in gone {
            self.remove_offer(&offer_id, None, true, now, out);
        }
        // The allocator clears the filters of roles that stop being suppressed.
        self.allocator.set_framework(
            framework_id,
            &framework_spec(&info, &roles, &update.suppressed_roles, active, constraints),
        );
        if let Some(framework) = self.frameworks.get_mut(framework_id)
            && framework.info != info
        {
            framework.info = info.clone();
            out.push(Output::Persist(RegistryOp::UpdateFramework(internal::RegistryFramework {
                framework_info: info,
                removed_time: None,
            })));
        }
        self.allocate(now, out);
        Ok(())
    }
}
