#!/usr/bin/env python3
"""The framework of the master failover test (tests/tests/ha.rs): the real,
unmodified pymesos 0.3.15 scheduler driver finds the leading master through
ZooKeeper (``--master zk://...``, pymesos' kazoo detector) and must ride
through the leader's death without losing a task.

    "$PY" tests/compat/pymesos_ha.py --master zk://127.0.0.1:2181/agora \
        --long 5 --short 3 [--timeout SECS]

1. Launch --long tasks ``long-<i>`` (``sleep 600``) and --short tasks
   ``short-<i>`` (``true``); once every long task is TASK_RUNNING and every
   short one TASK_FINISHED (acknowledged), print ``READY`` (the test then
   SIGKILLs the leading master).
2. pymesos notices the new leader in ZooKeeper, subscribes again with the same
   framework id; print ``RESUBSCRIBED`` and reconcile
   every long task explicitly (retrying until each is answered).
3. Every long task must answer TASK_RUNNING and none may ever report a
   terminal state; then launch ``after-1`` (``true``) through the new leader
   and see it TASK_FINISHED; print ``PASS`` and exit 0.

Exit status 1 = a check failed ("FAIL: ..." lines) or the deadline passed;
3 = the watchdog fired.
"""

import argparse
import getpass
import logging
import os
import sys
import threading
import time
import uuid

T0 = time.monotonic()


def out(msg):
    sys.stdout.write("[%7.2fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


try:
    from pymesos import MesosSchedulerDriver, Scheduler
except Exception as exc:  # environment problem, not a server problem
    out("FAIL: cannot import pymesos: %r" % (exc,))
    sys.exit(1)

TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR",
            "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN"}


def scalar(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def offer_scalar(offer, name):
    return sum(float(r.get("scalar", {}).get("value", 0))
               for r in offer.get("resources") or [] if r.get("name") == name)


class HaScheduler(Scheduler):
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.pending = ["long-%d" % i for i in range(args.long)] + \
                       ["short-%d" % i for i in range(args.short)]
        self.state = {}
        self.failures = []
        self.subscriptions = 0
        self.phase = "launch"  # launch -> ready -> reconcile -> after -> done
        self.answered = set()
        self.done = threading.Event()

    def fail(self, why):
        with self.lock:
            self.failures.append(why)
        out("FAIL: " + why)
        self.done.set()

    # pymesos calls `registered` on the first SUBSCRIBED and `reregistered`
    # on later ones (a new leader).
    def registered(self, driver, framework_id, master_info):
        with self.lock:
            self.subscriptions += 1
        out("SUBSCRIBED framework %s" % framework_id.get("value"))

    def reregistered(self, driver, master_info):
        with self.lock:
            self.subscriptions += 1
            if self.phase != "ready":
                self.fail("subscribed again in phase %s" % self.phase)
                return
            self.phase = "reconcile"
        out("RESUBSCRIBED")
        threading.Thread(target=self.reconcile_until_answered, args=(driver,), daemon=True).start()

    def reconcile_until_answered(self, driver):
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline and not self.done.is_set():
            with self.lock:
                missing = [t for t in self.state if t.startswith("long-") and t not in self.answered]
            if not missing:
                break
            driver.reconcileTasks([{"task_id": {"value": t}} for t in missing])
            time.sleep(1.0)
        with self.lock:
            if self.phase == "reconcile" and not self.failures:
                self.phase = "after"
                self.pending.append("after-1")
                out("reconciled every long task; launching after-1 through the new leader")
        driver.reviveOffers()

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                cpus, mem = offer_scalar(offer, "cpus"), offer_scalar(offer, "mem")
                tasks = []
                while self.pending and cpus >= 0.2 and mem >= 64:
                    task_id = self.pending.pop(0)
                    command = "sleep 600" if task_id.startswith("long-") else "true"
                    tasks.append({
                        "task_id": {"value": task_id},
                        "agent_id": offer["agent_id"],
                        "name": task_id,
                        "resources": [scalar("cpus", 0.1), scalar("mem", 32)],
                        "command": {"value": command, "shell": True},
                    })
                    self.state[task_id] = "LAUNCHED"
                    cpus -= 0.2
                    mem -= 64
            if tasks:
                driver.launchTasks(offer["id"], tasks, {"refuse_seconds": 0})
            else:
                driver.declineOffer(offer["id"], {"refuse_seconds": 1})

    def statusUpdate(self, driver, update):
        task_id = update["task_id"]["value"]
        state = update["state"]
        reason = update.get("reason", "")
        out("UPDATE %s %s %s" % (task_id, state, reason))
        with self.lock:
            previous = self.state.get(task_id)
            if previous is None:
                self.fail("update for a task never launched: %s" % task_id)
                return
            if task_id.startswith("long-") and state in TERMINAL:
                self.fail("long task %s ended: %s (%s, %s)" %
                          (task_id, state, reason, update.get("message", "")))
                return
            if task_id.startswith(("short-", "after-")) and state in TERMINAL and state != "TASK_FINISHED":
                self.fail("task %s ended %s (%s)" % (task_id, state, reason))
                return
            if self.phase == "reconcile" and reason == "REASON_RECONCILIATION" and task_id.startswith("long-"):
                if state == "TASK_RUNNING":
                    self.answered.add(task_id)
            self.state[task_id] = state
            if self.phase == "launch" and all(
                (s == "TASK_RUNNING") if t.startswith("long-") else (s == "TASK_FINISHED")
                for t, s in self.state.items()
            ) and not self.pending:
                self.phase = "ready"
                out("READY")
            if task_id == "after-1" and state == "TASK_FINISHED":
                self.phase = "done"
                self.done.set()

    def error(self, driver, message):
        self.fail("ERROR event: %s" % message)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--master", required=True)
    parser.add_argument("--long", type=int, default=5)
    parser.add_argument("--short", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def watchdog():
        time.sleep(args.timeout + 60)
        out("FAIL: watchdog")
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        user = getpass.getuser()
    except Exception:
        user = "root"
    framework = {
        "user": user,
        "name": "agora-ha",
        "failover_timeout": 3600.0,
        "checkpoint": True,
        "capabilities": [{"type": "PARTITION_AWARE"}],
    }
    scheduler = HaScheduler(args)
    driver = MesosSchedulerDriver(scheduler, framework, args.master, use_addict=True)
    driver.start()
    finished = scheduler.done.wait(args.timeout * 2)
    # failover=True: leave without TEARDOWN, so the long tasks keep running for the test to
    # inspect (it tears the framework down itself).
    driver.stop(failover=True)
    if not finished:
        out("FAIL: deadline passed in phase %s (states %s)" % (scheduler.phase, scheduler.state))
        return 1
    if scheduler.failures:
        return 1
    out("PASS after %d subscriptions" % scheduler.subscriptions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
