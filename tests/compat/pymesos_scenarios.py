#!/usr/bin/env python3
"""Compat scenarios: the real, unmodified pymesos 0.3.15 scheduler driver
drives an Agora master through failover, reconciliation, revive/suppress and
task groups.

    PY="$(scripts/setup-python.sh | tail -n 1)"
    "$PY" tests/compat/pymesos_scenarios.py SCENARIO --master HOST:PORT [--timeout SECS]

Scenarios (subcommands), each on a fresh cluster (tests/tests/compat_pymesos_scenarios.rs):

failover-first --state-file F
    Subscribes with failover_timeout 300, launches ``sleep 60``, waits for
    TASK_RUNNING and for pymesos' acknowledgement to have gone out, writes
    the FrameworkID, task id and agent id to F as JSON, and dies with
    os._exit: no TEARDOWN, the stream just breaks.

failover-second --state-file F
    A new process subscribes with the FrameworkID from F (the pymesos way:
    an ``id`` in the framework dict) and must get SUBSCRIBED with the same
    id. Implicit reconciliation must list exactly that task as TASK_RUNNING
    (source SOURCE_MASTER, reason REASON_RECONCILIATION, no uuid). It kills
    the task (TASK_KILLED, acknowledged), tears the framework down, and then
    subscribes once more with the torn-down id: that must end in an ERROR
    event, because removed frameworks can never come back.

reconcile
    Launches two ``sleep 60`` tasks and one ``echo`` task and waits until the
    echo task finished and was acknowledged. Explicit reconciliation of a
    running task answers TASK_RUNNING; of an unknown task with the real agent
    id TASK_LOST "Task is unknown to the agent"; of an unknown task without an
    agent id TASK_LOST "Task is unknown". Implicit reconciliation lists exactly
    the two running tasks. KILL of an unknown task answers with reconciliation
    (TASK_LOST "Task is unknown"). Then a second, PARTITION_AWARE framework
    gets TASK_GONE, TASK_UNKNOWN and TASK_UNKNOWN for the same three unknowns.
    Every answer has reason REASON_RECONCILIATION, source SOURCE_MASTER and no
    uuid.

revive-suppress [--quiet-secs S]
    Launches ``sleep 60``, declines the leftovers with refuse_seconds 3600 and
    sees no offer for S seconds (many allocation intervals of the dev
    cluster); REVIVE brings an offer at once (the filter is gone); SUPPRESS,
    then the offer is declined with refuse_seconds 0 and the task is killed:
    its TASK_KILLED still arrives (suppression does not stop updates) but no
    offer comes for S seconds, not even for the freed resources; REVIVE
    brings an offer again.

task-group
    ACCEPT with a LAUNCH_GROUP operation (DEFAULT executor, cpus 0.1 / mem
    32, tasks ``echo a`` and ``echo b`` of cpus 0.1 / mem 32 each): both tasks
    reach TASK_RUNNING and then TASK_FINISHED, every update carries a uuid
    and is acknowledged by pymesos. Then a group of ``exit 3`` and ``sleep
    60``: TASK_FAILED for the first and TASK_KILLED for the sleeper, because
    the default executor kills the rest of a group when one of its tasks
    fails.

Framework messages (MESSAGE in both directions) are not repeated here:
tests/compat/pymesos_scheduler.py phase 2 covers them with a pymesos executor.

pymesos' own calls are used wherever pymesos has one. Its reconcileTasks()
sends task ids only, so the one reconciliation that names an agent id is a
raw HTTP call on pymesos' stream (the Mesos-Stream-Id header it received).

Output: one line per observed event on stdout ("[time] LABEL EVENT ..."),
"ok: ..." for each passed check, "FAIL: ..." for each failed one; pymesos'
log goes to stderr. Exit status 0 = pass, 1 = a check failed, 3 = the hard
watchdog fired (--timeout plus 30 s). Waits have generous deadlines; nothing
here measures how fast the master is.
"""

import argparse
import getpass
import http.client
import json
import logging
import os
import queue
import sys
import threading
import time

T0 = time.monotonic()


def out(msg):
    sys.stdout.write("[%7.2fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


try:
    from pymesos import MesosSchedulerDriver, Scheduler
except Exception as exc:  # environment problem, not a server problem
    out("FAIL: cannot import pymesos with %s: %r -- run scripts/setup-python.sh and use "
        "the python it prints" % (sys.executable, exc))
    sys.exit(1)

TASK_CPUS = 0.1
TASK_MEM = 32.0
EXECUTOR_CPUS = 0.1
EXECUTOR_MEM = 32.0
EPS = 1e-6

TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
            "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR"}
# Executor-driven states in the order a task may pass through them.
STATE_ORDER = {"TASK_STAGING": 0, "TASK_STARTING": 1, "TASK_RUNNING": 2}
STATE_ORDER.update((s, 3) for s in TERMINAL)

RECONCILIATION = "REASON_RECONCILIATION"


class Failed(Exception):
    """A check that cannot let the scenario go on."""


class Checks:
    """Non-fatal checks: every one prints a line, failures are collected."""

    def __init__(self):
        self.failures = []

    def fail(self, msg):
        self.failures.append(msg)
        out("FAIL: " + msg)

    def check(self, cond, msg):
        if cond:
            out("ok: " + msg)
        else:
            self.fail(msg)
        return cond

    def equal(self, actual, expected, what):
        return self.check(actual == expected, "%s: %r (expected %r)" % (what, actual, expected))


class PymesosLog(logging.Handler):
    """Collects ERROR records pymesos logs (it logs most protocol problems and
    then swallows or re-raises them). While `tolerate` is set they are only
    noted: a stream the master closes on purpose makes pymesos log one."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records = []
        self.tolerate = False

    def emit(self, record):
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += " [%s: %s]" % (type(record.exc_info[1]).__name__, record.exc_info[1])
            if self.tolerate:
                out("note: pymesos logged (expected here): %s" % text)
            else:
                self.records.append("%.2fs %s: %s" % (time.monotonic() - T0, record.name, text))
        except Exception:
            pass


PYMESOS_LOG = PymesosLog()


# -- descriptions -------------------------------------------------------------------------------

def scalar(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def offer_scalars(offer):
    totals = {}
    for r in offer.get("resources") or []:
        if r.get("type", "SCALAR") == "SCALAR" and "scalar" in r:
            totals[r["name"]] = totals.get(r["name"], 0.0) + float(r["scalar"].get("value", 0))
    return totals


def task_of(status):
    return (status.get("task_id") or {}).get("value")


def describe_status(status):
    return "task=%s state=%s reason=%s source=%s uuid=%s agent=%s executor=%s message=%r" % (
        task_of(status), status.get("state"), status.get("reason"), status.get("source"),
        "yes" if status.get("uuid") else "no", (status.get("agent_id") or {}).get("value"),
        (status.get("executor_id") or {}).get("value"), status.get("message"))


def describe_offer(offer):
    res = offer_scalars(offer)
    return "id=%s agent=%s cpus=%g mem=%g" % (
        offer["id"]["value"], offer["agent_id"]["value"], res.get("cpus", 0), res.get("mem", 0))


def current_user():
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())


def framework_info(name, failover_timeout=0.0, framework_id=None, capabilities=()):
    """A FrameworkInfo dict as a pymesos user writes it. failover_timeout 0 (pymesos would
    default to 100) so that a scenario that dies leaves nothing running behind it."""
    info = {"user": current_user(), "name": name, "failover_timeout": failover_timeout}
    if framework_id:
        info["id"] = {"value": framework_id}
    if capabilities:
        info["capabilities"] = [{"type": c} for c in capabilities]
    return info


def command_task(task_id, agent_id, command):
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": [scalar("cpus", TASK_CPUS), scalar("mem", TASK_MEM)],
        "command": {"value": command, "shell": True},
    }


# -- pymesos side: callbacks become one queue of events -----------------------------------------

class Recorder(Scheduler):
    """pymesos calls these on its IO thread; each becomes a (kind, data) on a queue that the
    scenario, on the main thread, consumes in order. pymesos sends the implicit ACKNOWLEDGE
    for an update right after statusUpdate() returns, before it reads the next event."""

    def __init__(self, label):
        self.label = label
        self.events = queue.Queue()

    def _put(self, kind, data, text=""):
        out("%s %s %s" % (self.label, kind, text))
        self.events.put((kind, data))

    def registered(self, driver, framework_id, master_info):
        self._put("SUBSCRIBED", framework_id["value"], "framework_id=%s" % framework_id["value"])

    def reregistered(self, driver, master_info):
        # pymesos calls this instead of registered() whenever its FrameworkInfo already had an
        # id: when it was given one, and when it re-subscribes after losing its stream.
        fid = driver.framework_id
        self._put("SUBSCRIBED", fid, "framework_id=%s (pymesos: reregistered)" % fid)

    def disconnected(self, driver):
        self._put("DISCONNECTED", None, "(the subscription stream closed)")

    def error(self, driver, message):
        self._put("ERROR", message, repr(message))

    def processHeartBeat(self, driver):
        self._put("HEARTBEAT", None)

    def resourceOffers(self, driver, offers):
        for offer in offers:
            self._put("OFFER", offer, describe_offer(offer))

    def offerRescinded(self, driver, offer_id):
        self._put("RESCIND", offer_id["value"], offer_id["value"])

    def statusUpdate(self, driver, status):
        self._put("UPDATE", status, describe_status(status))

    def frameworkMessage(self, driver, executor_id, agent_id, message):
        self._put("MESSAGE", message, "executor=%s agent=%s" % (
            executor_id.get("value"), agent_id.get("value")))

    def slaveLost(self, driver, agent_id):
        self._put("FAILURE", agent_id, "agent %s lost" % agent_id.get("value"))

    def executorLost(self, driver, executor_id, agent_id, status):
        self._put("FAILURE", executor_id, "executor %s on agent %s exited, status %s" % (
            executor_id.get("value"), agent_id.get("value"), status))

    def inverseOffers(self, driver, offers):
        self._put("INVERSE_OFFERS", offers, "%d (ignored)" % len(offers))


# -- main-thread side ----------------------------------------------------------------------------

SESSIONS = []


class Session:
    """One pymesos driver, and the scenario's view of its events.

    `wait()` hands events to a matcher until it returns something; events the matcher does not
    want get the default treatment: offers are declined (refuse_seconds `decline_refuse`),
    heartbeats and updates are only recorded, ERROR and a lost stream end the scenario.
    """

    def __init__(self, label, args, checks, info, deadline):
        self.label = label
        self.args = args
        self.checks = checks
        self.deadline = deadline
        self.recorder = Recorder(label)
        self.driver = MesosSchedulerDriver(self.recorder, info, args.master)
        self.framework_id = None
        self.stopping = False  # a closing stream is expected from now on
        self.stop_called = False
        self.stopped = False
        self.failover_on_cleanup = False  # stop without TEARDOWN if the scenario fails
        self.decline_refuse = 1.0
        self.forbid_offers = None  # why offers must not come now, or None
        self.history = {}  # task id -> statuses, in arrival order
        self.seen_uuids = set()  # (task id, uuid) of every update that needs an ack
        self.markers = 0
        SESSIONS.append(self)

    # ---- driving pymesos
    def start(self):
        self.driver.start()
        kind, data = self.wait("SUBSCRIBED", lambda k, d: (k, d) if k == "SUBSCRIBED" else None)
        self.framework_id = data
        return data

    def stop(self, failover=False):
        """driver.stop(): pymesos sends TEARDOWN unless failover is set."""
        self.stopping = True
        self.stop_called = True
        out("%s stopping the driver (%s)" % (
            self.label, "failover: no TEARDOWN" if failover else "pymesos sends TEARDOWN"))
        self.driver.stop(failover=failover)
        joiner = threading.Thread(target=self.driver.join, name="join", daemon=True)
        joiner.start()
        joiner.join(15)
        self.stopped = not joiner.is_alive()
        if not self.stopped:
            self.checks.fail("%s: pymesos driver did not stop within 15s" % self.label)

    def decline(self, offer, refuse_seconds):
        out("%s DECLINE %s refuse_seconds=%g" % (self.label, offer["id"]["value"], refuse_seconds))
        self.driver.declineOffer(offer["id"], filters={"refuse_seconds": refuse_seconds})

    def accept(self, offer, operations, what):
        out("%s ACCEPT %s: %s" % (self.label, offer["id"]["value"], what))
        # pymesos raises if the call is not answered with 2xx.
        self.driver.acceptOffers(offer["id"], operations, filters={"refuse_seconds": 1})
        out("%s ACCEPT answered 2xx" % self.label)

    def raw_call(self, body):
        """A scheduler call pymesos cannot express, sent on pymesos' own stream."""
        host, _, port = self.args.master.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("POST", "/api/v1/scheduler", body=json.dumps(body).encode("utf-8"),
                         headers={"Content-Type": "application/json",
                                  "Mesos-Stream-Id": self.driver.stream_id or ""})
            resp = conn.getresponse()
            text = resp.read()
        finally:
            conn.close()
        out("%s raw %s -> HTTP %d" % (self.label, body["type"], resp.status))
        if resp.status != 202:
            raise Failed("%s: raw %s answered HTTP %d %r" % (
                self.label, body["type"], resp.status, text[:300]))

    # ---- consuming events
    def _next(self, what, until=None):
        """The next event; None once `until` (monotonic) has passed; Failed at the deadline."""
        while True:
            now = time.monotonic()
            if until is not None and now >= until:
                return None
            if now >= self.deadline:
                raise Failed("%s: timed out waiting for %s; %s" % (
                    self.label, what, self.summary()))
            limit = self.deadline if until is None else min(until, self.deadline)
            try:
                return self.recorder.events.get(timeout=max(0.01, min(1.0, limit - now)))
            except queue.Empty:
                continue

    def _note(self, kind, data):
        """Bookkeeping and the checks that hold for every event."""
        if kind == "OFFER":
            if self.forbid_offers:
                raise Failed("%s: got offer %s %s" % (
                    self.label, data["id"]["value"], self.forbid_offers))
        elif kind == "UPDATE":
            task_id = task_of(data)
            self.history.setdefault(task_id, []).append(data)
            if data.get("uuid"):
                key = (task_id, data["uuid"])
                if key in self.seen_uuids:
                    self.checks.fail("%s: update %s of %s delivered twice (an acknowledgement "
                                     "was lost)" % (self.label, data.get("state"), task_id))
                self.seen_uuids.add(key)
                if not (data.get("agent_id") or {}).get("value"):
                    self.checks.fail("%s: update with uuid but no agent_id (pymesos cannot "
                                     "acknowledge it): %s" % (self.label, describe_status(data)))

    def _default(self, kind, data):
        if kind == "OFFER":
            self.decline(data, self.decline_refuse)
        elif kind == "ERROR":
            raise Failed("%s: ERROR event: %s" % (self.label, data))
        elif kind == "DISCONNECTED" and not self.stopping:
            raise Failed("%s: the subscription stream closed during the scenario" % self.label)
        elif kind == "SUBSCRIBED" and self.framework_id is not None:
            raise Failed("%s: subscribed again (pymesos lost its stream and reconnected)"
                         % self.label)

    def wait(self, what, match):
        while True:
            kind, data = self._next(what)
            self._note(kind, data)
            result = match(kind, data)
            if result is not None:
                return result
            self._default(kind, data)

    def idle(self, seconds, what):
        """Consume events for `seconds` with the default treatment."""
        out("%s watching for %.1fs: %s" % (self.label, seconds, what))
        until = time.monotonic() + seconds
        while True:
            event = self._next(what, until)
            if event is None:
                return
            self._note(*event)
            self._default(*event)

    def settle(self):
        """Wait for the next heartbeat. pymesos acknowledges an update before it reads the next
        event, so once a heartbeat that came after the update is here, the ACKNOWLEDGE of every
        earlier update has been answered by the master."""
        self.wait("a heartbeat (after the acknowledgements)",
                  lambda k, d: True if k == "HEARTBEAT" else None)

    def wait_offer(self, what, cpus=TASK_CPUS, mem=TASK_MEM):
        def match(kind, data):
            if kind != "OFFER":
                return None
            res = offer_scalars(data)
            if res.get("cpus", 0) + EPS >= cpus and res.get("mem", 0) + EPS >= mem:
                return data
            return None
        return self.wait(what, match)

    def wait_state(self, task_id, wanted):
        """The first update that put `task_id` into one of `wanted` (earlier arrivals count);
        Failed if the task ends in another terminal state."""
        def found():
            for status in self.history.get(task_id, []):
                if status.get("state") in wanted:
                    return status
                if status.get("state") in TERMINAL:
                    raise Failed("%s: %s ended %s, expected %s: %s" % (
                        self.label, task_id, status.get("state"), "/".join(sorted(wanted)),
                        describe_status(status)))
            return None
        status = found()
        while status is None:
            self.wait("%s to reach %s" % (task_id, "/".join(sorted(wanted))),
                      lambda k, d: True if k == "UPDATE" and task_of(d) == task_id else None)
            status = found()
        return status

    def wait_reconciliation(self, task_id):
        """The next reconciliation answer for `task_id` (earlier arrivals do not count)."""
        return self.wait("the reconciliation answer for %s" % task_id,
                         lambda k, d: d if k == "UPDATE" and task_of(d) == task_id
                         and d.get("reason") == RECONCILIATION else None)

    def reconcile_implicit(self):
        """Implicit reconciliation; returns {task id: answer}. An explicit reconciliation of an
        unknown marker task follows it on the same stream, so when the marker's answer is here
        every answer to the implicit one is too."""
        self.markers += 1
        marker = "reconcile-marker-%d" % self.markers
        out("%s RECONCILE implicit, then RECONCILE %s as an end marker" % (self.label, marker))
        self.driver.reconcileTasks([])
        self.driver.reconcileTasks([{"task_id": {"value": marker}}])
        answers = {}

        def match(kind, data):
            if kind != "UPDATE" or data.get("reason") != RECONCILIATION:
                return None
            task_id = task_of(data)
            if task_id == marker:
                return True
            if task_id in answers:
                self.checks.fail("%s: implicit reconciliation answered %s twice" % (
                    self.label, task_id))
            answers[task_id] = data
            return None
        self.wait("the answers to implicit reconciliation", match)
        return answers

    def summary(self):
        states = ", ".join("%s:%s" % (task_id, statuses[-1].get("state"))
                           for task_id, statuses in sorted(self.history.items()))
        return "framework=%s tasks=[%s]" % (self.framework_id, states)

    # ---- checks on statuses
    def check_sequence(self, task_id, final):
        """Executor updates of a task went forward only, ended in `final`, and all had a uuid."""
        updates = [s for s in self.history.get(task_id, []) if s.get("reason") != RECONCILIATION]
        states = [s.get("state") for s in updates]
        self.checks.check(states and states[-1] == final and
                          all(STATE_ORDER.get(a, 9) <= STATE_ORDER.get(b, 9)
                              for a, b in zip(states, states[1:])),
                          "%s: updates %s go forward and end in %s" % (task_id, states, final))
        self.checks.check(all(s.get("uuid") for s in updates),
                          "%s: every executor update carries a uuid (pymesos acknowledged it)"
                          % task_id)

    def check_reconciled(self, status, state, message, agent_id=None):
        """A reconciliation answer: the state and message of reference §5.8, reason
        REASON_RECONCILIATION, source SOURCE_MASTER, no uuid (nothing to acknowledge)."""
        expected = {"state": state, "reason": RECONCILIATION, "source": "SOURCE_MASTER",
                    "uuid": None, "message": message}
        if agent_id is not None:
            expected["agent_id"] = agent_id
        actual = {k: status.get(k) for k in expected}
        if "agent_id" in expected:
            actual["agent_id"] = (status.get("agent_id") or {}).get("value")
        wrong = {k: actual[k] for k in expected if actual[k] != expected[k]}
        self.checks.check(not wrong, "%s: reconciliation answer for %s is %s%s" % (
            self.label, task_of(status), state,
            " but %r differ from %r" % (wrong, expected) if wrong else ""))


# -- scenarios -----------------------------------------------------------------------------------

def failover_first(args, checks, deadline):
    s = Session("A", args, checks, framework_info("agora-compat-failover", failover_timeout=300),
                deadline)
    s.start()
    offer = s.wait_offer("an offer")
    agent_id = offer["agent_id"]["value"]
    task_id = "failover-sleeper"
    s.accept(offer, [launch([command_task(task_id, agent_id, "sleep 60")])], "LAUNCH sleep 60")
    s.wait_state(task_id, {"TASK_RUNNING"})
    s.settle()
    if checks.failures or PYMESOS_LOG.records:
        return  # main() reports them and tears the framework down
    state = {"framework_id": s.framework_id, "task_id": task_id, "agent_id": agent_id}
    tmp = args.state_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, args.state_file)
    out("A wrote %s: %s" % (args.state_file, json.dumps(state)))
    out("A dies now with os._exit(0): no TEARDOWN, the stream just breaks")
    sys.stderr.flush()
    os._exit(0)


def failover_second(args, checks, deadline):
    with open(args.state_file) as f:
        state = json.load(f)
    fid, task_id, agent_id = state["framework_id"], state["task_id"], state["agent_id"]
    out("B read %s: %s" % (args.state_file, json.dumps(state)))

    s = Session("B", args, checks, framework_info("agora-compat-failover", failover_timeout=300,
                                                  framework_id=fid), deadline)
    checks.equal(s.start(), fid, "B subscribed with the FrameworkID of process A")

    answers = s.reconcile_implicit()
    checks.equal(sorted(answers), [task_id], "B: implicit reconciliation lists A's task")
    if task_id in answers:
        s.check_reconciled(answers[task_id], "TASK_RUNNING", "Reconciliation: Latest task state",
                           agent_id)

    out("B KILL %s" % task_id)
    s.driver.killTask({"value": task_id})
    s.wait_state(task_id, {"TASK_KILLED"})
    s.check_sequence(task_id, "TASK_KILLED")
    s.settle()
    s.stop()
    checks.check(s.stopped, "B: TEARDOWN sent and the driver stopped")

    # A removed framework can never come back (reference §5.3, §10 item 14).
    PYMESOS_LOG.tolerate = True
    c = Session("C", args, checks, framework_info("agora-compat-failover", failover_timeout=300,
                                                  framework_id=fid), deadline)
    c.stopping = True  # the master closes the stream after the ERROR
    c.failover_on_cleanup = True  # never TEARDOWN an id the master refused
    c.driver.start()
    kind, data = c.wait("SUBSCRIBED or ERROR for the torn-down id",
                        lambda k, d: (k, d) if k in ("SUBSCRIBED", "ERROR") else None)
    checks.equal(kind, "ERROR", "C: subscribing with the torn-down FrameworkID")
    checks.equal(data, "Framework has been removed", "C: ERROR message")
    c.stop(failover=True)  # no TEARDOWN for an id the master refused
    PYMESOS_LOG.tolerate = False


def reconcile(args, checks, deadline):
    s = Session("R", args, checks, framework_info("agora-compat-reconcile"), deadline)
    s.start()
    offer = s.wait_offer("an offer for three tasks", cpus=3 * TASK_CPUS, mem=3 * TASK_MEM)
    agent_id = offer["agent_id"]["value"]
    sleepers = ["recon-sleep-1", "recon-sleep-2"]
    done = "recon-done"
    tasks = [command_task(t, agent_id, "sleep 60") for t in sleepers]
    tasks.append(command_task(done, agent_id, "echo done"))
    s.accept(offer, [launch(tasks)], "LAUNCH %s" % ", ".join(t["task_id"]["value"] for t in tasks))
    for t in sleepers:
        s.wait_state(t, {"TASK_RUNNING"})
    s.wait_state(done, {"TASK_FINISHED"})
    s.settle()

    out("R RECONCILE %s (running)" % sleepers[0])
    s.driver.reconcileTasks([{"task_id": {"value": sleepers[0]}}])
    s.check_reconciled(s.wait_reconciliation(sleepers[0]), "TASK_RUNNING",
                       "Reconciliation: Latest task state", agent_id)

    unknown_on_agent, unknown, unknown_kill = "ghost-on-agent", "ghost", "ghost-kill"
    out("R RECONCILE %s with agent_id %s (raw: pymesos sends task ids only)" % (
        unknown_on_agent, agent_id))
    s.raw_call({"type": "RECONCILE", "framework_id": {"value": s.framework_id},
                "reconcile": {"tasks": [{"task_id": {"value": unknown_on_agent},
                                         "agent_id": {"value": agent_id}}]}})
    s.check_reconciled(s.wait_reconciliation(unknown_on_agent), "TASK_LOST",
                       "Task is unknown to the agent")

    out("R RECONCILE %s (no agent_id)" % unknown)
    s.driver.reconcileTasks([{"task_id": {"value": unknown}}])
    s.check_reconciled(s.wait_reconciliation(unknown), "TASK_LOST", "Task is unknown")

    answers = s.reconcile_implicit()
    checks.equal(sorted(answers), sleepers,
                 "R: implicit reconciliation lists exactly the non-terminal tasks")
    for t in sleepers:
        if t in answers:
            s.check_reconciled(answers[t], "TASK_RUNNING", "Reconciliation: Latest task state",
                               agent_id)

    out("R KILL %s (unknown)" % unknown_kill)
    s.driver.killTask({"value": unknown_kill})
    s.check_reconciled(s.wait_reconciliation(unknown_kill), "TASK_LOST", "Task is unknown")

    for t in sleepers:
        out("R KILL %s" % t)
        s.driver.killTask({"value": t})
    for t in sleepers:
        s.wait_state(t, {"TASK_KILLED"})
        s.check_sequence(t, "TASK_KILLED")
    s.check_sequence(done, "TASK_FINISHED")
    s.settle()
    s.stop()

    # The same unknowns, asked by a PARTITION_AWARE framework.
    p = Session("P", args, checks,
                framework_info("agora-compat-reconcile-pa", capabilities=["PARTITION_AWARE"]),
                deadline)
    p.start()
    out("P RECONCILE %s with agent_id %s (raw)" % (unknown_on_agent, agent_id))
    p.raw_call({"type": "RECONCILE", "framework_id": {"value": p.framework_id},
                "reconcile": {"tasks": [{"task_id": {"value": unknown_on_agent},
                                         "agent_id": {"value": agent_id}}]}})
    p.check_reconciled(p.wait_reconciliation(unknown_on_agent), "TASK_GONE",
                       "Task is unknown to the agent")
    out("P RECONCILE %s (no agent_id)" % unknown)
    p.driver.reconcileTasks([{"task_id": {"value": unknown}}])
    p.check_reconciled(p.wait_reconciliation(unknown), "TASK_UNKNOWN", "Task is unknown")
    out("P KILL %s (unknown)" % unknown_kill)
    p.driver.killTask({"value": unknown_kill})
    p.check_reconciled(p.wait_reconciliation(unknown_kill), "TASK_UNKNOWN", "Task is unknown")
    checks.equal(sorted(p.reconcile_implicit()), [],
                 "P: implicit reconciliation of a framework without tasks")
    p.stop()


def revive_suppress(args, checks, deadline):
    quiet = args.quiet_secs
    s = Session("S", args, checks, framework_info("agora-compat-revive"), deadline)
    s.start()
    offer = s.wait_offer("an offer")
    agent_id = offer["agent_id"]["value"]
    task_id = "suppress-sleeper"
    s.accept(offer, [launch([command_task(task_id, agent_id, "sleep 60")])], "LAUNCH sleep 60")
    s.wait_state(task_id, {"TASK_RUNNING"})

    offer = s.wait_offer("an offer of the leftovers")
    s.decline(offer, 3600)
    s.forbid_offers = "after DECLINE with refuse_seconds 3600"
    s.idle(quiet, "no offers while the 3600s filter holds")
    checks.check(True, "S: no offer for %.1fs after DECLINE with refuse_seconds 3600" % quiet)

    out("S REVIVE")
    s.forbid_offers = None
    s.driver.reviveOffers()
    offer = s.wait_offer("an offer after REVIVE (it clears the 3600s filter)")
    checks.check(True, "S: REVIVE brought an offer although the filter had an hour to go")

    out("S SUPPRESS")
    s.driver.suppressOffers()
    s.forbid_offers = "while suppressed"
    s.decline(offer, 0)  # no filter: from now on only the suppression keeps offers away
    out("S KILL %s (its resources come free while suppressed)" % task_id)
    s.driver.killTask({"value": task_id})
    s.wait_state(task_id, {"TASK_KILLED"})
    checks.check(True, "S: TASK_KILLED arrived while suppressed (updates are not suppressed)")
    s.check_sequence(task_id, "TASK_KILLED")
    s.idle(quiet, "no offers while suppressed")
    checks.check(True, "S: no offer for %.1fs while suppressed, not even of freed resources"
                 % quiet)

    out("S REVIVE")
    s.forbid_offers = None
    s.driver.reviveOffers()
    leftover_cpus = offer_scalars(offer).get("cpus", 0)
    offer = s.wait_offer("an offer after REVIVE (unsuppressed)")
    checks.check(True, "S: REVIVE after SUPPRESS brought an offer")
    checks.check(offer_scalars(offer).get("cpus", 0) >= leftover_cpus + TASK_CPUS - EPS,
                 "S: the offer after REVIVE has the killed task's cpus back (%s)"
                 % describe_offer(offer))
    s.decline(offer, 0)
    s.settle()
    s.stop()


def launch(tasks):
    return {"type": "LAUNCH", "launch": {"task_infos": tasks}}


def launch_group(framework_id, executor_id, tasks):
    return {"type": "LAUNCH_GROUP", "launch_group": {
        "executor": {
            "type": "DEFAULT",
            "executor_id": {"value": executor_id},
            "framework_id": {"value": framework_id},
            "resources": [scalar("cpus", EXECUTOR_CPUS), scalar("mem", EXECUTOR_MEM)],
        },
        "task_group": {"tasks": tasks},
    }}


def task_group(args, checks, deadline):
    s = Session("G", args, checks, framework_info("agora-compat-task-group"), deadline)
    s.start()
    need_cpus, need_mem = EXECUTOR_CPUS + 2 * TASK_CPUS, EXECUTOR_MEM + 2 * TASK_MEM

    groups = [
        ("group-exec-1", [("group1-a", "echo a", "TASK_FINISHED"),
                          ("group1-b", "echo b", "TASK_FINISHED")]),
        ("group-exec-2", [("group2-fail", "exit 3", "TASK_FAILED"),
                          ("group2-sleep", "sleep 60", "TASK_KILLED")]),
    ]
    for executor_id, members in groups:
        offer = s.wait_offer("an offer for a task group", cpus=need_cpus, mem=need_mem)
        agent_id = offer["agent_id"]["value"]
        tasks = [command_task(t, agent_id, cmd) for t, cmd, _ in members]
        s.accept(offer, [launch_group(s.framework_id, executor_id, tasks)],
                 "LAUNCH_GROUP executor %s (DEFAULT) tasks %s" % (
                     executor_id, ", ".join("%s: %s" % (t, cmd) for t, cmd, _ in members)))
        for t, _, final in members:
            s.wait_state(t, {final})
        for t, _, final in members:
            s.check_sequence(t, final)
            if final == "TASK_FINISHED":
                states = [st.get("state") for st in s.history[t]]
                checks.check("TASK_RUNNING" in states, "%s: TASK_RUNNING before %s" % (t, final))
            for st in s.history[t]:
                eid = (st.get("executor_id") or {}).get("value")
                if eid is not None and eid != executor_id:
                    checks.fail("%s: update names executor %s, not %s" % (t, eid, executor_id))
        s.settle()
    s.stop()


SCENARIOS = {
    "failover-first": failover_first,
    "failover-second": failover_second,
    "reconcile": reconcile,
    "revive-suppress": revive_suppress,
    "task-group": task_group,
}


# -- plumbing ------------------------------------------------------------------------------------

def wait_for_master(master, deadline):
    """Poll GET /version until the master answers, so pymesos' reconnect backoff (2s doubling
    to 15s) does not eat the time budget while the master starts."""
    host, _, port = master.rpartition(":")
    last = None
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("GET", "/version")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200:
                out("master is up: GET /version -> %s" % json.loads(body)["version"])
                return
            last = "HTTP %d" % resp.status
        except Exception as exc:
            last = "%s: %s" % (type(exc).__name__, exc)
        finally:
            conn.close()
        time.sleep(0.2)
    raise Failed("master %s not reachable (last: %s)" % (master, last))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for name in SCENARIOS:
        sp = sub.add_parser(name, help="see the module docstring")
        sp.add_argument("--master", required=True, help="HOST:PORT of the master")
        sp.add_argument("--timeout", type=float, default=120.0,
                        help="time limit of the scenario in seconds (default 120)")
        sp.add_argument("--verbose", action="store_true", help="pymesos DEBUG logging")
        if name.startswith("failover-"):
            sp.add_argument("--state-file", required=True,
                            help="JSON file the first process writes and the second reads")
        if name == "revive-suppress":
            sp.add_argument("--quiet-secs", type=float, default=3.0,
                            help="how long no offer may come while filtered or suppressed "
                                 "(default 3; the dev cluster allocates every 100ms)")
    args = p.parse_args(argv)
    master = args.master
    for prefix in ("http://", "https://"):
        if master.startswith(prefix):
            master = master[len(prefix):]
    args.master = master.rstrip("/")
    if ":" not in args.master:
        args.master += ":5050"  # as pymesos does
    return args


def main(argv=None):
    args = parse_args(argv)
    deadline = T0 + args.timeout

    def watchdog():
        time.sleep(args.timeout + 30)
        out("FAIL: hard watchdog: still running 30s after the %.0fs timeout" % args.timeout)
        os._exit(3)

    threading.Thread(target=watchdog, name="watchdog", daemon=True).start()

    pylog = logging.getLogger("pymesos")
    pylog.addHandler(PYMESOS_LOG)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        stream=sys.stderr)

    checks = Checks()
    out("scenario %s: master=%s timeout=%.0fs user=%s" % (
        args.scenario, args.master, args.timeout, current_user()))
    try:
        wait_for_master(args.master, deadline)
        SCENARIOS[args.scenario](args, checks, deadline)
    except Failed as exc:
        checks.fail(str(exc))
    except BaseException as exc:  # incl. errors pymesos re-raises from its IO thread
        checks.fail("aborted: %s: %s" % (type(exc).__name__, exc))
    finally:
        for s in SESSIONS:
            if not s.stop_called:
                s.stop(failover=s.failover_on_cleanup)

    for record in PYMESOS_LOG.records:
        checks.failures.append("pymesos logged an error at " + record)
    if checks.failures:
        for s in SESSIONS:
            out("%s state: %s" % (s.label, s.summary()))
        out("RESULT: FAIL (%d problem(s)):" % len(checks.failures))
        for f in checks.failures:
            out("  - " + f)
        return 1
    out("RESULT: PASS (%s)" % args.scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main())
