#!/usr/bin/env python3
"""Compatibility test: the real, unmodified pymesos 0.3.15 operator drivers
(MesosOperatorMasterDriver, MesosOperatorAgentDriver) against an Agora
master and agent (Mesos v1 operator API, POSTed by pymesos to
/api/v1/operator, which Mesos routes to /api/v1).

    "$PY" tests/compat/pymesos_operator.py --master HOST:PORT --agent HOST:PORT [--timeout 120]

1. A master driver subscribes to the operator event stream (SUBSCRIBE).
2. A pymesos scheduler launches one command task ``op-1`` (``echo
   hello-operator; sleep 3``).
3. While it runs: the master driver's GET_STATE lists the task as
   TASK_RUNNING, the one agent and the framework; the agent driver's
   GET_STATE lists it among the launched tasks; LIST_FILES of its sandbox
   (the virtual path /frameworks/<fid>/executors/op-1/runs/latest) lists
   ``stdout``; READ_FILE of that file returns its size and base64 data that
   holds "hello-operator".
4. Once the task finished: the event stream delivered FRAMEWORK_ADDED, then
   TASK_ADDED for op-1, then TASK_UPDATED with TASK_RUNNING and later
   TASK_FINISHED, in that order, and nothing about op-1 after TASK_FINISHED
   but TASK_UPDATED repeats of it.

Exit status 0 = pass, 1 = a check failed ("FAIL: ..." lines), 3 = watchdog.
"""

import argparse
import base64
import getpass
import os
import sys
import threading
import time

T0 = time.monotonic()


def out(msg):
    sys.stdout.write("[%7.2fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


try:
    from pymesos import MesosOperatorAgentDriver, MesosOperatorMasterDriver
    from pymesos import MesosSchedulerDriver, Scheduler
    from pymesos.interface import OperatorMaster
except Exception as exc:
    out("FAIL: cannot import pymesos with %s: %r" % (sys.executable, exc))
    sys.exit(1)

FAILURES = []


def check(cond, msg):
    if not cond:
        FAILURES.append(msg)
        out("FAIL: " + msg)
    return cond


class Events(OperatorMaster):
    """Records the operator events in arrival order, as (kind, payload)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = []

    def _add(self, kind, payload):
        with self.lock:
            self.seen.append((kind, payload))

    def taskAdded(self, task_info):
        self._add("TASK_ADDED", task_info)

    def taskUpdated(self, task_info):
        self._add("TASK_UPDATED", task_info)

    def frameworkAdded(self, framework_info):
        self._add("FRAMEWORK_ADDED", framework_info)

    def frameworkUpdated(self, framework_info):
        self._add("FRAMEWORK_UPDATED", framework_info)

    def frameworkRemoved(self, framework_info):
        self._add("FRAMEWORK_REMOVED", framework_info)

    def agentAdded(self, agent_info):
        self._add("AGENT_ADDED", agent_info)

    def agentRemoved(self, agent_id):
        self._add("AGENT_REMOVED", agent_id)


class Subscriber(MesosOperatorMasterDriver):
    """The unmodified master driver; only its SUBSCRIBED hook also records that the
    stream is open, so that the task is launched after it."""

    subscribed = threading.Event()

    def on_subscribed(self, info):
        super(Subscriber, self).on_subscribed(info)
        self.subscribed_state = info.get("get_state")
        Subscriber.subscribed.set()


class OneTask(Scheduler):
    def __init__(self):
        self.launched = False
        self.states = []
        self.running = threading.Event()
        self.done = threading.Event()
        self.framework_id = None

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id["value"]

    def resourceOffers(self, driver, offers):
        for offer in offers:
            if self.launched:
                driver.declineOffer(offer["id"], {"refuse_seconds": 60})
                continue
            self.launched = True
            task = {
                "task_id": {"value": "op-1"},
                "agent_id": offer["agent_id"],
                "name": "op-1",
                "resources": [
                    {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                    {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
                ],
                "command": {"value": "echo hello-operator; sleep 3", "shell": True},
            }
            driver.launchTasks(offer["id"], [task], {"refuse_seconds": 60})

    def statusUpdate(self, driver, status):
        state = status["state"]
        self.states.append(state)
        out("op-1 %s" % state)
        if state == "TASK_RUNNING":
            self.running.set()
        elif state not in ("TASK_STAGING", "TASK_STARTING"):
            self.done.set()


def wait(event, what, deadline):
    if not event.wait(max(0.0, deadline - time.monotonic())):
        out("FAIL: timed out waiting for %s" % what)
        FAILURES.append(what)
        return False
    return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--master", required=True)
    p.add_argument("--agent", required=True)
    p.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args()
    watchdog = threading.Timer(args.timeout + 30, lambda: (out("FAIL: watchdog"), os._exit(3)))
    watchdog.daemon = True
    watchdog.start()
    deadline = time.monotonic() + args.timeout

    events = Events()
    subscriber = Subscriber(args.master, operator=events)
    subscriber.start()
    if not wait(Subscriber.subscribed, "SUBSCRIBED on the operator event stream", deadline):
        return 1
    state = subscriber.subscribed_state or {}
    check("get_agents" in state and len(state["get_agents"].get("agents", [])) == 1,
          "SUBSCRIBED carries the state with the one agent: %r" % (state.get("get_agents"),))

    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    sched = OneTask()
    driver = MesosSchedulerDriver(sched, {"user": user, "name": "agora-operator-compat"},
                                  args.master, use_addict=False)
    driver.start()
    if not wait(sched.running, "op-1 TASK_RUNNING", deadline):
        return 1
    fid = sched.framework_id

    master = MesosOperatorMasterDriver(args.master)
    got = master.getState()
    tasks = got.get("get_state", {}).get("get_tasks", {}).get("tasks", [])
    mine = [t for t in tasks if t["task_id"]["value"] == "op-1"]
    check(got.get("type") == "GET_STATE", "master GET_STATE answers type GET_STATE: %r" % got.get("type"))
    check(len(mine) == 1 and mine[0].get("state") == "TASK_RUNNING",
          "master GET_STATE lists op-1 as TASK_RUNNING: %r" % (mine,))
    frameworks = got.get("get_state", {}).get("get_frameworks", {}).get("frameworks", [])
    check(any(f["framework_info"].get("id", {}).get("value") == fid for f in frameworks),
          "master GET_STATE lists framework %s" % fid)
    agents = got.get("get_state", {}).get("get_agents", {}).get("agents", [])
    check(len(agents) == 1, "master GET_STATE lists one agent: %d" % len(agents))

    agent = MesosOperatorAgentDriver(args.agent)
    got = agent.getState()
    launched = got.get("get_state", {}).get("get_tasks", {}).get("launched_tasks", [])
    check(any(t["task_id"]["value"] == "op-1" for t in launched),
          "agent GET_STATE lists op-1 among launched_tasks: %r" % (got.get("get_state", {}).get("get_tasks"),))

    sandbox = "/frameworks/%s/executors/op-1/runs/latest" % fid
    listed = agent.listFiles(sandbox)
    paths = [f["path"] for f in listed.get("list_files", {}).get("file_infos", [])]
    check(any(p.endswith("/stdout") for p in paths), "LIST_FILES %s lists stdout: %r" % (sandbox, paths))
    read = agent.readFile(sandbox + "/stdout", 4096, 0).get("read_file", {})
    data = base64.b64decode(read.get("data", ""))
    check(b"hello-operator" in data, "READ_FILE stdout holds the task's output: %r" % (data[:200],))
    check(int(read.get("size", 0)) >= len(data) > 0, "READ_FILE size %r covers the data" % read.get("size"))

    wait(sched.done, "op-1 to end", deadline)
    check(sched.states[-1:] == ["TASK_FINISHED"], "op-1 finished: %r" % sched.states)
    # The event for the last update may trail the scheduler's copy a little.
    while time.monotonic() < deadline:
        with events.lock:
            if any(k == "TASK_UPDATED" and e.get("state") == "TASK_FINISHED" for k, e in events.seen):
                break
        time.sleep(0.1)

    with events.lock:
        seen = list(events.seen)
    order = []
    for kind, payload in seen:
        if kind == "FRAMEWORK_ADDED":
            if payload.get("framework_info", {}).get("id", {}).get("value") == fid:
                order.append("FRAMEWORK_ADDED")
        elif kind == "TASK_ADDED":
            if payload.get("task_id", {}).get("value") == "op-1":
                order.append("TASK_ADDED")
        elif kind == "TASK_UPDATED":
            if payload.get("status", {}).get("task_id", {}).get("value") == "op-1":
                order.append(payload.get("state"))
    out("operator events for op-1: %s" % order)
    compact = [s for i, s in enumerate(order) if i == 0 or order[i - 1] != s]
    wanted = ["FRAMEWORK_ADDED", "TASK_ADDED"]
    check(compact[:2] == wanted, "FRAMEWORK_ADDED then TASK_ADDED first: %r" % compact)
    updates = [s for s in compact[2:] if s != "TASK_STARTING" and s != "TASK_STAGING"]
    check(updates == ["TASK_RUNNING", "TASK_FINISHED"],
          "then TASK_UPDATED RUNNING and FINISHED, in order: %r" % compact)

    driver.stop()
    subscriber.stop()
    return 1 if FAILURES else 0


if __name__ == "__main__":
    code = main()
    out("PASS" if code == 0 else "FAILED (%d checks)" % len(FAILURES))
    sys.stdout.flush()
    os._exit(code)
