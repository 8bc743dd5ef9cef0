#!/usr/bin/env python3
"""The framework of the real-process chaos test (tests/tests/chaos.rs): the real,
unmodified pymesos 0.3.15 scheduler driver runs --tasks short command tasks
while the test SIGKILLs and restarts the master, agents and executors.

    "$PY" tests/compat/pymesos_chaos.py --master HOST:PORT --tasks 500 --seed S \
        [--timeout SECS] [--log FILE]

The framework checkpoints, is PARTITION_AWARE and has a long failover
timeout, as a framework that wants its tasks to survive crashes does. Task
``i`` is one logical task; each try of it is an attempt ``t<i>.<k>`` running
``sleep D`` (D drawn from --seed, 0.05 to 1.5 s). An attempt that ends in any
terminal state but TASK_FINISHED (its executor was killed, its launch died
with an agent or the master, ...) is tried again as a new attempt; an attempt
that is TASK_UNREACHABLE is waited for. Every non-terminal attempt that has
been quiet for a while is reconciled (explicitly, by task id, the pymesos
way), and all of them are on every (re-)subscription. Acknowledgements are
explicit, so that an acknowledgement lost to a dying master is simply sent
again by the agent's retry, and never aborts pymesos' event thread.

Checks, from the framework's point of view:
  * every logical task finished exactly once: one attempt reaches
    TASK_FINISHED, never two;
  * no attempt reaches two different terminal states;
  * no update with a uuid (from an agent) follows an attempt's terminal
    update from the agent, nor a TASK_UNKNOWN/GONE/DROPPED/LOST from the
    master (it said the task does not exist). Two things are allowed, as in
    Mesos: reconciliation answers the latest state the master knows, which
    may run ahead of the agent's update stream (a reconciled TASK_FINISHED,
    then the stream's older TASK_RUNNING); and once an attempt has ended,
    reconciliation answers (no uuid) say nothing (the master forgets a task
    whose terminal update was acknowledged, so it answers TASK_UNKNOWN);
  * no update names a task the framework never launched, and no task is
    TASK_ERROR (the launches are valid).

Exit status 0 = pass; 1 = a check failed or the deadline passed (reasons
printed as "FAIL: ..." lines, then the summary); 3 = the watchdog fired.
The summary is one JSON line starting with "SUMMARY ". Every update is
written to --log (one line each) for post-mortems.
"""

import argparse
import collections
import getpass
import json
import logging
import os
import random
import re
import sys
import threading
import time

T0 = time.monotonic()

TASK_CPUS = 0.1
TASK_MEM = 16.0
# What an offer must keep beside each task: its command executor's own share.
EXECUTOR_CPUS = 0.1
EXECUTOR_MEM = 32.0

TERMINAL = {
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR",
    "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN",
}
# The terminal states an agent or executor reports; the master answers reconciliation with
# them from its latest knowledge of a task, which may run ahead of the agent's update stream.
AGENT_TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR"}
# Offer, agent and framework ids in messages, left out when endings are counted.
IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(-[A-Z]?\d+)?")
# Reconcile an attempt that has said nothing for this long.
QUIET_SECS = 5.0


def out(msg):
    sys.stdout.write("[%7.2fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


try:
    from pymesos import MesosSchedulerDriver, Scheduler
except Exception as exc:  # environment problem, not a server problem
    out("FAIL: cannot import pymesos with %s: %r -- run scripts/setup-python.sh" % (sys.executable, exc))
    sys.exit(1)


def scalar(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def offer_scalars(offer):
    totals = {}
    for r in offer.get("resources") or []:
        if r.get("type", "SCALAR") == "SCALAR" and "scalar" in r:
            totals[r["name"]] = totals.get(r["name"], 0.0) + float(r["scalar"].get("value", 0))
    return totals


class Attempt(object):
    def __init__(self, logical, agent_id):
        self.logical = logical
        self.agent_id = agent_id
        self.state = "TASK_STAGING"
        self.terminal = None
        # Whether the terminal state came from the agent's update stream (with a uuid) rather
        # than from a reconciliation answer.
        self.terminal_by_agent = False
        self.heard = time.monotonic()


class Chaos(Scheduler):
    def __init__(self, args, log):
        self.args = args
        self.log = log
        rng = random.Random(args.seed)
        self.durations = [round(rng.uniform(0.05, 1.5), 2) for _ in range(args.tasks)]
        self.lock = threading.RLock()
        self.pending = collections.deque(range(args.tasks))
        self.tries = [0] * args.tasks
        self.attempts = {}
        self.finished = {}
        self.failures = []
        self.states = collections.Counter()
        # How attempts that did not finish ended: "STATE REASON: message" -> count.
        self.endings = collections.Counter()
        self.subscriptions = 0
        self.reconciled = 0
        self.call_errors = 0

    # -- helpers -----------------------------------------------------------

    def fail(self, msg):
        with self.lock:
            self.failures.append(msg)
        out("FAIL: " + msg)

    def call(self, what, fn, *args):
        """A driver call that may fail while the master is down; the protocol recovers
        (offers come again, the agent re-sends unacknowledged updates, the next
        reconciliation asks again)."""
        try:
            fn(*args)
        except Exception as exc:
            with self.lock:
                self.call_errors += 1
            self.log.write("[%7.2fs] %s failed: %s\n" % (time.monotonic() - T0, what, repr(exc)[:200]))

    def outstanding(self, quiet_only):
        now = time.monotonic()
        with self.lock:
            return [aid for aid, a in self.attempts.items()
                    if a.terminal is None and (not quiet_only or now - a.heard > QUIET_SECS)]

    def reconcile(self, driver, quiet_only):
        ids = self.outstanding(quiet_only)
        if ids:
            with self.lock:
                self.reconciled += len(ids)
            self.call("reconcile", driver.reconcileTasks, [{"task_id": {"value": i}} for i in ids])

    # -- pymesos callbacks ------------------------------------------------------

    def registered(self, driver, framework_id, master_info):
        with self.lock:
            self.subscriptions += 1
        out("registered as %s" % framework_id.get("value"))
        self.reconcile(driver, False)

    def reregistered(self, driver, master_info):
        with self.lock:
            self.subscriptions += 1
        out("re-registered (%d outstanding attempts)" % len(self.outstanding(False)))
        self.reconcile(driver, False)

    def resourceOffers(self, driver, offers):
        for offer in offers:
            have = offer_scalars(offer)
            cpus = have.get("cpus", 0.0)
            mem = have.get("mem", 0.0)
            tasks = []
            with self.lock:
                while self.pending and cpus >= TASK_CPUS + EXECUTOR_CPUS and mem >= TASK_MEM + EXECUTOR_MEM:
                    logical = self.pending.popleft()
                    self.tries[logical] += 1
                    aid = "t%d.%d" % (logical, self.tries[logical])
                    self.attempts[aid] = Attempt(logical, offer["agent_id"]["value"])
                    tasks.append({
                        "task_id": {"value": aid},
                        "agent_id": offer["agent_id"],
                        "name": aid,
                        "resources": [scalar("cpus", TASK_CPUS), scalar("mem", TASK_MEM)],
                        "command": {"value": "sleep %s" % self.durations[logical], "shell": True},
                    })
                    cpus -= TASK_CPUS + EXECUTOR_CPUS
                    mem -= TASK_MEM + EXECUTOR_MEM
            if tasks:
                self.log.write("[%7.2fs] launch %s on %s\n" % (
                    time.monotonic() - T0, " ".join(t["task_id"]["value"] for t in tasks),
                    offer["agent_id"]["value"]))
                self.call("launch", driver.launchTasks, offer["id"], tasks, {"refuse_seconds": 0})
            else:
                self.call("decline", driver.declineOffer, offer["id"], {"refuse_seconds": 1})

    def statusUpdate(self, driver, status):
        aid = status["task_id"]["value"]
        state = status.get("state")
        has_uuid = bool(status.get("uuid"))
        revive = False
        with self.lock:
            self.states[state] += 1
            self.log.write("[%7.2fs] %s %s %s reason=%s source=%s %s\n" % (
                time.monotonic() - T0, aid, state,
                "uuid=%s" % status["uuid"][:8] if has_uuid else "(no uuid)",
                status.get("reason"), status.get("source"), status.get("message", "")))
            attempt = self.attempts.get(aid)
            if attempt is None:
                self.fail("update for a task this framework never launched: %s %s" % (aid, state))
            elif state == "TASK_ERROR":
                self.fail("%s is TASK_ERROR: %s" % (aid, status.get("message")))
            else:
                attempt.heard = time.monotonic()
                if attempt.terminal is not None and not has_uuid:
                    # A reconciliation answer for an attempt that has ended meanwhile: the
                    # master forgets a task once its terminal update is acknowledged, so it
                    # may well answer TASK_UNKNOWN now. It says nothing new.
                    pass
                elif state in TERMINAL:
                    if attempt.terminal is None:
                        attempt.terminal = state
                        attempt.terminal_by_agent = has_uuid
                        if state != "TASK_FINISHED":
                            message = IDS.sub("<id>", status.get("message", ""))
                            self.endings["%s %s: %s" % (state, status.get("reason"), message)] += 1
                        revive = self.ended(aid, attempt, state)
                    elif attempt.terminal != state:
                        self.fail("%s was %s, now %s (%s)" % (
                            aid, attempt.terminal, state, status.get("message", "")))
                elif attempt.terminal is not None and (
                        attempt.terminal_by_agent or attempt.terminal not in AGENT_TERMINAL):
                    # An agent's update after the agent's own terminal one, or after the
                    # master said the task does not exist. (After a terminal state the master
                    # answered from its latest knowledge, the older updates of the agent's
                    # stream still come, as in Mesos: they are not checked.)
                    self.fail("%s was %s, then an agent sent %s" % (aid, attempt.terminal, state))
                attempt.state = state
        if has_uuid:
            self.call("acknowledge", driver.acknowledgeStatusUpdate, status)
        if revive:
            self.call("revive", driver.reviveOffers)

    def ended(self, aid, attempt, state):
        """An attempt ended: a finish counts, anything else tries the task again. Returns
        whether offers are needed again."""
        logical = attempt.logical
        if state == "TASK_FINISHED":
            if logical in self.finished:
                self.fail("task %d finished twice: as %s and as %s" % (logical, self.finished[logical], aid))
            else:
                self.finished[logical] = aid
            return False
        if logical in self.finished or logical in self.pending:
            return False
        if any(a.logical == logical and a.terminal is None for a in self.attempts.values()):
            return False
        self.pending.append(logical)
        return True

    def disconnected(self, driver):
        self.log.write("[%7.2fs] disconnected\n" % (time.monotonic() - T0))

    def error(self, driver, message):
        self.fail("ERROR event: %s" % message)

    # -- the loop ---------------------------------------------------------------

    def summary(self):
        with self.lock:
            relaunches = sum(self.tries) - len([t for t in self.tries if t > 0])
            return {
                "tasks": self.args.tasks,
                "finished": len(self.finished),
                "attempts": len(self.attempts),
                "relaunches": relaunches,
                "subscriptions": self.subscriptions,
                "reconciled": self.reconciled,
                "call_errors": self.call_errors,
                "states": dict(self.states),
                "endings": dict(self.endings),
                "failures": len(self.failures),
            }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--master", required=True)
    p.add_argument("--tasks", type=int, default=500)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--log", default=os.devnull)
    args = p.parse_args()

    # Watchdog: whatever happens, never hang the test.
    watchdog = threading.Timer(args.timeout + 60, lambda: (out("FAIL: watchdog fired"), os._exit(3)))
    watchdog.daemon = True
    watchdog.start()

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = open(args.log, "w", buffering=1)
    sched = Chaos(args, log)
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    framework = {
        "user": user,
        "name": "agora-chaos",
        "failover_timeout": 3600.0,
        "checkpoint": True,
        "capabilities": [{"type": "PARTITION_AWARE"}],
    }
    driver = MesosSchedulerDriver(sched, framework, args.master, use_addict=False,
                                  implicit_acknowledgements=False)
    driver.start()
    deadline = time.monotonic() + args.timeout
    last_progress = 0.0
    ok = False
    try:
        while time.monotonic() < deadline:
            time.sleep(0.5)
            with sched.lock:
                done = len(sched.finished)
                waiting = len(sched.pending)
            if done == args.tasks:
                ok = True
                break
            sched.reconcile(driver, True)
            if waiting:
                sched.call("revive", driver.reviveOffers)
            if time.monotonic() - last_progress >= 5:
                last_progress = time.monotonic()
                out("progress: %d/%d finished, %d waiting for offers, %d attempts" % (
                    done, args.tasks, waiting, len(sched.attempts)))
        if ok:
            # Late duplicates or contradictions would show up now.
            time.sleep(2)
        else:
            sched.fail("deadline: %d of %d tasks finished; unfinished: %s" % (
                len(sched.finished), args.tasks,
                sorted(set(range(args.tasks)) - set(sched.finished))[:20]))
    except KeyboardInterrupt:  # pymesos' event thread died and interrupted us
        sched.fail("the pymesos driver's thread aborted (see stderr)")
    try:
        driver.stop()
        driver.join()
    except Exception as exc:
        out("note: stopping the driver: %r" % (exc,))
    print("SUMMARY " + json.dumps(sched.summary(), sort_keys=True))
    sys.stdout.flush()
    log.close()
    os._exit(0 if not sched.failures else 1)


if __name__ == "__main__":
    main()
