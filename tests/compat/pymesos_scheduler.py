#!/usr/bin/env python3
"""Compatibility test: the real, unmodified pymesos 0.3.15 scheduler driver
against an Agora master (Mesos v1 HTTP scheduler API).

    PY="$(scripts/setup-python.sh)"
    "$PY" tests/compat/pymesos_scheduler.py --master 127.0.0.1:5050 \
        [--tasks 20] [--per-offer 3] [--executor-python "$PY"] [--timeout 120]

Exit status 0 = pass; 1 = a check failed (reasons printed as "FAIL: ..."
lines); 3 = the hard watchdog fired. Every offer, launch and status update
is printed on one line to stdout; pymesos' own log goes to stderr.

Phase 1: subscribe (user = current user, name "agora-compat", no role); on
each offer launch up to --per-offer not-yet-launched command tasks
``task-<i>`` (cpus 0.1, mem 32, ``echo task-<i> && exit 0``) with
refuse_seconds 0; decline offers that are not needed (refuse_seconds 1).
Checks: every task reaches TASK_FINISHED; no task ever reports a state other
than STAGING/STARTING/RUNNING/FINISHED; launches used >= ceil(N/K) distinct
offer ids and no offer id is ever offered twice; every update carries a
``uuid`` and an ``agent_id`` (pymesos needs both to acknowledge) naming the
agent the task was launched on; pymesos acknowledges implicitly, and no
update is ever re-delivered with the same (task_id, uuid) -- in particular
not within --dup-window seconds after the last TASK_FINISHED (the agent
retries unacknowledged updates, so a duplicate means an ack was lost).

Phase 2: REVIVE, then launch one task with a custom executor
(tests/compat/pymesos_executor.py under --executor-python, executor_id
"pyexec-1") whose task data is base64 of a greeting; on its TASK_RUNNING send the
executor a framework MESSAGE, which it echoes back as a MESSAGE event (both
directions of MESSAGE); expect TASK_FINISHED whose data decodes to the greeting
reversed; same ack /
duplicate checks. Finally ``driver.stop()`` sends TEARDOWN.

Any ERROR logged by pymesos itself (unparseable event, missing event
sub-object, failed call, failed TEARDOWN, dropped stream) also fails the test.
"""

import argparse
import getpass
import http.client
import json
import logging
import math
import os
import shlex
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
EXECUTOR_SCRIPT = os.path.join(HERE, "pymesos_executor.py")

T0 = time.monotonic()

TASK_CPUS = 0.1
TASK_MEM = 32.0
EXECUTOR_CPUS = 0.1
EXECUTOR_MEM = 32.0
EPS = 1e-6

# Allowed states and their order; anything else is a failure in this test.
STATE_ORDER = {"TASK_STAGING": 0, "TASK_STARTING": 1, "TASK_RUNNING": 2, "TASK_FINISHED": 3}

EXECUTOR_ID = "pyexec-1"
EXECUTOR_TASK_ID = "pyexec-task-1"


def out(msg):
    sys.stdout.write("[%7.2fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


try:
    from pymesos import MesosSchedulerDriver, Scheduler, decode_data, encode_data
except Exception as exc:  # environment problem, not a server problem
    out("FAIL: cannot import pymesos with %s: %r -- run scripts/setup-python.sh and use "
        "the python it prints" % (sys.executable, exc))
    sys.exit(1)


class Failed(Exception):
    pass


class AlreadyFailed(Failed):
    """Raised to stop waiting once a failure has been recorded (and printed)."""


def scalar(name, value):
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def offer_scalars(offer):
    totals = {}
    for r in offer.get("resources") or []:
        if r.get("type", "SCALAR") == "SCALAR" and "scalar" in r:
            totals[r["name"]] = totals.get(r["name"], 0.0) + float(r["scalar"].get("value", 0))
    return totals


def short(s, n=12):
    s = "%s" % (s,)
    return s if len(s) <= n else s[:n] + "..."


def current_user():
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())


class PymesosErrors(logging.Handler):
    """Collects ERROR records logged by pymesos (it logs, then swallows or
    re-raises, most protocol problems)."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records = []
        self.active = False  # errors before the first SUBSCRIBED are only noted

    def emit(self, record):
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += " [%s: %s]" % (type(record.exc_info[1]).__name__, record.exc_info[1])
            if self.active:
                self.records.append((time.monotonic() - T0, record.name, text))
            else:
                out("note: before SUBSCRIBED pymesos logged: %s" % text)
        except Exception:
            pass


class CompatScheduler(Scheduler):
    def __init__(self, args, errors):
        self.args = args
        self.errors = errors
        self.lock = threading.RLock()
        self.phase = "phase1"  # phase1 -> quiet -> phase2 -> done
        self.stopping = False
        self.framework_id = None
        self.failures = []
        self.heartbeats = 0
        # offers
        self.offer_ids_seen = set()
        self.offers_total = 0
        self.launch_offers = {"phase1": set(), "phase2": set()}
        # tasks
        self.pending = ["task-%d" % i for i in range(args.tasks)]
        self.launched = {}  # task_id -> agent_id
        self.states = {}  # task_id -> list of states (non-duplicate updates)
        self.last_finished_at = None
        self.seen = {}  # (task_id, uuid) -> count
        self.duplicates = []
        # phase 2
        self.greeting = ("hello agora from pymesos %s" % uuid.uuid4().hex[:8]).encode("ascii")
        self.exec_task_launched = False
        self.exec_reply = None
        # framework messages: scheduler -> executor -> scheduler
        self.ping = b"ping " + self.greeting
        self.ping_sent = False
        self.echo = None

    # -- bookkeeping ------------------------------------------------------------
    def fail(self, msg):
        with self.lock:
            self.failures.append(msg)
        out("FAIL: " + msg)

    def finished(self, task_id):
        st = self.states.get(task_id)
        return bool(st) and st[-1] == "TASK_FINISHED"

    def phase1_done(self):
        with self.lock:
            return not self.pending and all(self.finished(t) for t in self.launched
                                            if t != EXECUTOR_TASK_ID)

    def phase2_done(self):
        with self.lock:
            return self.finished(EXECUTOR_TASK_ID) and self.echo is not None

    def progress(self):
        with self.lock:
            fin = sum(1 for t in self.states if self.finished(t))
            unfinished = ["%s:%s" % (t, (self.states.get(t) or ["(no update)"])[-1])
                          for t in sorted(self.launched) if not self.finished(t)]
            return ("phase=%s subscribed=%s offers=%d launched=%d finished=%d not-launched=%d "
                    "heartbeats=%d unfinished=[%s]" % (
                        self.phase, bool(self.framework_id), self.offers_total, len(self.launched),
                        fin, len(self.pending), self.heartbeats, ", ".join(unfinished[:10])))

    # -- pymesos callbacks (run on pymesos' IO thread) ---------------------------
    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id.get("value")
        self.errors.active = True
        out("SUBSCRIBED framework_id=%s master=%s:%s version=%s" % (
            self.framework_id, master_info.get("hostname"), master_info.get("port"),
            master_info.get("version")))

    def reregistered(self, driver, master_info):
        self.fail("re-subscribed (the subscription stream was lost and pymesos reconnected)")

    def disconnected(self, driver):
        if self.framework_id is None:
            out("note: not connected yet (pymesos retries with backoff)")
        elif not self.stopping:
            self.fail("subscription stream closed while the test was running "
                      "(pymesos would now re-subscribe)")

    def processHeartBeat(self, driver):
        self.heartbeats += 1
        if self.heartbeats == 1:
            out("HEARTBEAT (first)")

    def error(self, driver, message):
        self.fail("ERROR event from master: %s" % message)

    def slaveLost(self, driver, agent_id):
        self.fail("FAILURE event: agent %s lost" % agent_id.get("value"))

    def executorLost(self, driver, executor_id, agent_id, status):
        eid = executor_id.get("value")
        out("FAILURE executor %s on agent %s exited, status %s" % (
            eid, agent_id.get("value"), status))
        # Mesos reports only custom executors' exits; a command task's executor exit is
        # its task's terminal update, never a FAILURE event.
        if eid != "pyexec-1":
            self.fail("FAILURE event for command executor %s" % eid)

    def offerRescinded(self, driver, offer_id):
        out("RESCIND offer %s" % offer_id.get("value"))

    def frameworkMessage(self, driver, executor_id, agent_id, message):
        out("MESSAGE from executor %s on agent %s: %r" % (
            executor_id.get("value"), agent_id.get("value"), message))
        try:
            echo = decode_data(message)
        except Exception as exc:
            self.fail("MESSAGE data %r is not base64: %s" % (message, exc))
            return
        expected = b"echo " + self.ping
        with self.lock:
            if executor_id.get("value") != EXECUTOR_ID:
                self.fail("MESSAGE from unexpected executor %r" % executor_id)
            elif echo != expected:
                self.fail("MESSAGE %r != expected %r" % (echo, expected))
            else:
                out("framework message round trip OK")
                self.echo = echo

    def inverseOffers(self, driver, offers):
        out("INVERSE_OFFERS %d (ignored)" % len(offers))

    def resourceOffers(self, driver, offers):
        for offer in offers:
            try:
                self._handle_offer(driver, offer)
            except Exception as exc:
                self.fail("handling offer %s: %s: %s" % (
                    offer.get("id", {}).get("value"), type(exc).__name__, exc))

    def _handle_offer(self, driver, offer):
        offer_id = offer["id"]["value"]
        agent_id = offer["agent_id"]["value"]
        res = offer_scalars(offer)
        cpus, mem = res.get("cpus", 0.0), res.get("mem", 0.0)
        tasks = []
        with self.lock:
            self.offers_total += 1
            if offer_id in self.offer_ids_seen:
                self.fail("offer id %s was offered twice" % offer_id)
            self.offer_ids_seen.add(offer_id)
            phase = self.phase
            if phase == "phase1" and self.pending:
                fit = int(min((cpus + EPS) / TASK_CPUS, (mem + EPS) / TASK_MEM))
                n = max(0, min(self.args.per_offer, len(self.pending), fit))
                for task_id in self.pending[:n]:
                    tasks.append({
                        "name": "agora-compat %s" % task_id,
                        "task_id": {"value": task_id},
                        "agent_id": {"value": agent_id},
                        "resources": [scalar("cpus", TASK_CPUS), scalar("mem", TASK_MEM)],
                        "command": {"value": "echo %s && exit 0" % task_id, "shell": True},
                    })
                    self.launched[task_id] = agent_id
                del self.pending[:n]
            elif phase == "phase2" and not self.exec_task_launched:
                if cpus + EPS >= TASK_CPUS + EXECUTOR_CPUS and mem + EPS >= TASK_MEM + EXECUTOR_MEM:
                    command = "%s %s" % (shlex.quote(self.args.executor_python),
                                         shlex.quote(EXECUTOR_SCRIPT))
                    tasks.append({
                        "name": "agora-compat pymesos-executor task",
                        "task_id": {"value": EXECUTOR_TASK_ID},
                        "agent_id": {"value": agent_id},
                        "resources": [scalar("cpus", TASK_CPUS), scalar("mem", TASK_MEM)],
                        "data": encode_data(self.greeting),
                        "executor": {
                            "executor_id": {"value": EXECUTOR_ID},
                            "name": "agora-compat pymesos executor",
                            "command": {"value": command, "shell": True},
                            "resources": [scalar("cpus", EXECUTOR_CPUS),
                                          scalar("mem", EXECUTOR_MEM)],
                        },
                    })
                    self.launched[EXECUTOR_TASK_ID] = agent_id
                    self.exec_task_launched = True
            if tasks:
                self.launch_offers["phase2" if phase == "phase2" else "phase1"].add(offer_id)
        desc = "OFFER %s agent=%s cpus=%g mem=%g" % (offer_id, agent_id, cpus, mem)
        if tasks:
            out("%s -> LAUNCH %s" % (desc, ",".join(t["task_id"]["value"] for t in tasks)))
            driver.launchTasks({"value": offer_id}, tasks, filters={"refuse_seconds": 0})
        else:
            out("%s -> DECLINE" % desc)
            driver.declineOffer({"value": offer_id}, filters={"refuse_seconds": 1})

    def statusUpdate(self, driver, status):
        # pymesos acknowledges right after this returns (implicit acks).
        try:
            self._handle_update(status)
            self._maybe_ping(driver, status)
        except Exception as exc:
            self.fail("handling status update %r: %s: %s" % (dict(status), type(exc).__name__, exc))

    def _handle_update(self, status):
        task_id = (status.get("task_id") or {}).get("value")
        state = status.get("state")
        uid = status.get("uuid")
        agent_id = (status.get("agent_id") or {}).get("value")
        data = status.get("data")
        out("UPDATE %s %s source=%s reason=%s agent=%s executor=%s uuid=%s%s%s" % (
            task_id, state, status.get("source", "-"), status.get("reason", "-"), agent_id,
            (status.get("executor_id") or {}).get("value", "-"), short(uid),
            " data=%s" % short(data, 24) if data else "",
            " message=%r" % status["message"] if status.get("message") else ""))
        with self.lock:
            if task_id not in self.launched:
                self.fail("update for unknown task %r" % task_id)
                return
            if uid is None:
                self.fail("%s %s has no uuid: pymesos will not acknowledge it (Mesos always "
                          "sets uuid on updates that come from an executor)" % (task_id, state))
            elif not agent_id:
                self.fail("%s %s has a uuid but no agent_id: pymesos' implicit ACKNOWLEDGE "
                          "needs status.agent_id (it raises KeyError)" % (task_id, state))
            if uid is not None:
                key = (task_id, uid)
                self.seen[key] = self.seen.get(key, 0) + 1
                if self.seen[key] > 1:
                    self.duplicates.append((time.monotonic(), task_id, state, uid))
                    self.fail("duplicate delivery #%d of %s %s uuid=%s: the previous one was "
                              "acknowledged, so the agent should not have retried it" % (
                                  self.seen[key], task_id, state, uid))
                    return
            if agent_id and agent_id != self.launched[task_id]:
                self.fail("%s: update names agent %s but the task was launched on %s" % (
                    task_id, agent_id, self.launched[task_id]))
            history = self.states.setdefault(task_id, [])
            if state not in STATE_ORDER:
                self.fail("%s reached %s (reason=%s, message=%r)" % (
                    task_id, state, status.get("reason"), status.get("message")))
            elif history and history[-1] in STATE_ORDER and \
                    STATE_ORDER[state] < STATE_ORDER[history[-1]]:
                self.fail("%s went from %s back to %s" % (task_id, history[-1], state))
            elif history and history[-1] == "TASK_FINISHED":
                self.fail("%s got another update %s after TASK_FINISHED" % (task_id, state))
            history.append(state)
            if state == "TASK_FINISHED":
                self.last_finished_at = time.monotonic()
                if task_id == EXECUTOR_TASK_ID:
                    self._check_executor_reply(history, data)

    def _maybe_ping(self, driver, status):
        """Once the custom executor runs, send it a framework message it must echo back."""
        if status.get("state") != "TASK_RUNNING" or \
                (status.get("task_id") or {}).get("value") != EXECUTOR_TASK_ID:
            return
        with self.lock:
            if self.ping_sent:
                return
            self.ping_sent = True
        agent_id = (status.get("agent_id") or {}).get("value")
        out("MESSAGE to executor %s on agent %s: %r" % (EXECUTOR_ID, agent_id, self.ping))
        driver.sendFrameworkMessage({"value": EXECUTOR_ID}, {"value": agent_id},
                                    encode_data(self.ping))

    def _check_executor_reply(self, history, data):
        if "TASK_RUNNING" not in history[:-1]:
            self.fail("%s: TASK_FINISHED arrived without an earlier TASK_RUNNING (got %s)" % (
                EXECUTOR_TASK_ID, history))
        if not data:
            self.fail("%s: TASK_FINISHED has no data (the agent must forward TaskStatus.data "
                      "from the executor)" % EXECUTOR_TASK_ID)
            return
        try:
            reply = decode_data(data)
        except Exception as exc:
            self.fail("%s: TASK_FINISHED data %r is not base64: %s" % (EXECUTOR_TASK_ID, data, exc))
            return
        self.exec_reply = reply
        expected = self.greeting[::-1]
        if reply != expected:
            self.fail("%s: executor reply %r != expected %r (greeting reversed)" % (
                EXECUTOR_TASK_ID, reply, expected))
        else:
            out("executor reply OK: %r" % reply)


def wait_for(sched, cond, what, deadline, poll=0.1):
    while not cond():
        if sched.failures:
            raise AlreadyFailed(what)
        if time.monotonic() >= deadline:
            raise Failed("timed out waiting for %s; %s" % (what, sched.progress()))
        time.sleep(poll)


def quiet_window(sched, what, deadline):
    """Wait --dup-window seconds after the last TASK_FINISHED, failing on duplicates."""
    with sched.lock:
        start = sched.last_finished_at or time.monotonic()
        dups_before = len(sched.duplicates)
    until = start + sched.args.dup_window
    if until > deadline:
        raise Failed("not enough time left for the %.1fs duplicate window (%s)" % (
            sched.args.dup_window, what))
    out("waiting %.1fs for retransmissions (%s)" % (max(0.0, until - time.monotonic()), what))
    wait_for(sched, lambda: time.monotonic() >= until, "the duplicate window", deadline)
    if len(sched.duplicates) != dups_before:
        raise Failed("duplicate updates during the window")
    out("no duplicate updates within %.1fs of the last TASK_FINISHED (%s)" % (
        sched.args.dup_window, what))


def wait_for_master(master, deadline):
    """Poll GET /version until it answers, so pymesos' reconnect backoff (2s
    doubling to 15s) does not eat the time budget while the master starts.
    Also checks what pymesos needs from it: a purely numeric dotted version."""
    host, _, port = master.rpartition(":")
    last = None
    while True:
        conn = None
        try:
            conn = http.client.HTTPConnection(host or master, int(port or 5050), timeout=5)
            conn.request("GET", "/version")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200:
                version = json.loads(body.decode("utf-8"))["version"]
                try:
                    tuple(int(n) for n in version.split("."))
                except Exception:
                    raise Failed("GET /version returned version %r: pymesos needs purely numeric "
                                 "dotted components (it does int() on each)" % (version,))
                out("master is up: GET /version -> %s" % version)
                return
            last = "HTTP %d %r" % (resp.status, body[:200])
        except Failed:
            raise
        except (ValueError, KeyError) as exc:
            raise Failed("GET /version answered 200 but not JSON with a \"version\" field: %s" % exc)
        except Exception as exc:
            last = "%s: %s" % (type(exc).__name__, exc)
        finally:
            if conn is not None:
                conn.close()
        if time.monotonic() >= deadline:
            raise Failed("master %s not reachable: GET /version kept failing (last: %s)"
                         % (master, last))
        time.sleep(0.2)


def join_with_timeout(driver, seconds):
    t = threading.Thread(target=driver.join, name="join")
    t.daemon = True
    t.start()
    t.join(seconds)
    return not t.is_alive()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--master", required=True, help="HOST:PORT of the master")
    p.add_argument("--tasks", type=int, default=20, help="number of command tasks (default 20)")
    p.add_argument("--per-offer", type=int, default=3,
                   help="max tasks launched per offer (default 3)")
    p.add_argument("--executor-python", default=sys.executable,
                   help="python interpreter the agent runs the custom executor with "
                        "(default: this interpreter, %(default)s)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="overall time limit in seconds (default 120)")
    p.add_argument("--dup-window", type=float, default=3.0,
                   help="seconds to watch for retransmitted updates after the last "
                        "TASK_FINISHED (default 3)")
    p.add_argument("--skip-executor", action="store_true",
                   help="run phase 1 only (no custom executor)")
    p.add_argument("--verbose", action="store_true", help="pymesos DEBUG logging")
    args = p.parse_args(argv)
    if args.tasks < 1 or args.per_offer < 1:
        p.error("--tasks and --per-offer must be >= 1")
    master = args.master
    for prefix in ("http://", "https://"):
        if master.startswith(prefix):
            master = master[len(prefix):]
    master = master.rstrip("/")
    if ":" not in master:
        master += ":5050"  # as pymesos does
    args.master = master
    return args


def main(argv=None):
    args = parse_args(argv)
    deadline = T0 + args.timeout

    def watchdog():
        time.sleep(args.timeout + 30)
        out("FAIL: hard watchdog: still running %.0fs after the %.0fs timeout" % (
            30, args.timeout))
        os._exit(3)

    threading.Thread(target=watchdog, name="watchdog", daemon=True).start()

    pylog = logging.getLogger("pymesos")
    errors = PymesosErrors()
    pylog.addHandler(errors)
    if args.verbose:
        pylog.setLevel(logging.DEBUG)

    sched = CompatScheduler(args, errors)
    framework = {"user": current_user(), "name": "agora-compat"}
    out("pymesos scheduler test: master=%s tasks=%d per-offer=%d timeout=%.0fs user=%s" % (
        args.master, args.tasks, args.per_offer, args.timeout, framework["user"]))
    driver = MesosSchedulerDriver(sched, framework, args.master, use_addict=True)

    error = None
    stopped = False
    try:
        wait_for_master(args.master, deadline)
        driver.start()
        wait_for(sched, lambda: sched.framework_id is not None,
                 "SUBSCRIBED (is the master at %s up?)" % args.master, deadline)

        # ---- phase 1: N command tasks, at most K per offer -----------------------
        wait_for(sched, sched.phase1_done, "all %d tasks to finish" % args.tasks, deadline)
        with sched.lock:
            sched.phase = "quiet"
            used = len(sched.launch_offers["phase1"])
        need = int(math.ceil(args.tasks / float(args.per_offer)))
        out("phase 1: %d tasks finished using %d offers (>= %d needed)" % (args.tasks, used, need))
        if used < need:
            sched.fail("tasks were launched from only %d distinct offers, expected >= %d"
                       % (used, need))
        quiet_window(sched, "phase 1", deadline)

        # ---- phase 2: custom pymesos executor ------------------------------------
        if not args.skip_executor:
            with sched.lock:
                sched.phase = "phase2"
            out("phase 2: REVIVE, then launch %s with executor %s (%s)" % (
                EXECUTOR_TASK_ID, EXECUTOR_ID, args.executor_python))
            driver.reviveOffers()
            wait_for(sched, sched.phase2_done,
                     "%s to finish (see the executor's stderr in its sandbox)" % EXECUTOR_TASK_ID,
                     deadline)
            quiet_window(sched, "phase 2", deadline)
        with sched.lock:
            sched.phase = "done"
    except AlreadyFailed:
        pass
    except Failed as exc:
        error = str(exc)
    except BaseException as exc:  # incl. errors pymesos re-raises from its IO thread
        error = "aborted: %s: %s" % (type(exc).__name__, exc)
    finally:
        sched.stopping = True
        out("stopping the driver (pymesos sends TEARDOWN if subscribed)")
        try:
            driver.stop()
            stopped = join_with_timeout(driver, 15)
        except BaseException as exc:
            sched.fail("driver.stop() raised %s: %s" % (type(exc).__name__, exc))

    if not stopped:
        sched.fail("pymesos driver did not stop within 15s")
    if error:
        sched.failures.append(error)
    for t, name, text in errors.records:
        sched.failures.append("pymesos logged an error at %.2fs (%s): %s" % (t, name, text))

    if sched.failures:
        out("progress: " + sched.progress())
        out("RESULT: FAIL (%d problem(s)):" % len(sched.failures))
        for f in sched.failures:
            out("  - " + f)
        return 1
    out("RESULT: PASS (%d command tasks%s, %d offers, %d heartbeats)" % (
        args.tasks, "" if args.skip_executor else " + 1 executor task",
        sched.offers_total, sched.heartbeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
