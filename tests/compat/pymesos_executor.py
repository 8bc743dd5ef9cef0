#!/usr/bin/env python3
"""Custom executor used by tests/compat/pymesos_scheduler.py (phase 2).

Runs under the real, unmodified pymesos 0.3.15 ``MesosExecutorDriver`` (set up
by scripts/setup-python.sh). The agent launches it as
``<python> <abs path>/pymesos_executor.py`` with the usual executor
environment (MESOS_AGENT_ENDPOINT, MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID, ...).

Behaviour, for every launched task:
  1. sends TASK_RUNNING (each update is retried while the agent is away, for up to
     AGORA_COMPAT_EXECUTOR_RECONNECT_SECS),
  1b. waits (up to AGORA_COMPAT_EXECUTOR_MESSAGE_SECS, default 15) for a framework
      message and echoes it back as ``b"echo " + message``,
  2. sends TASK_FINISHED whose ``data`` is base64(<decoded task data, bytes
     reversed>), which proves to the scheduler that the task data arrived,
  3. after a short delay stops the driver, and the process exits.

It exits by itself when the agent's stream goes away: pymesos already does
so when the framework does not checkpoint; when it does (MESOS_CHECKPOINT set
to anything non-empty, even "0"), pymesos would reconnect forever, so this
executor exits if it is not re-subscribed within AGORA_COMPAT_EXECUTOR_RECONNECT_SECS
(default 10). It never lives longer than AGORA_COMPAT_EXECUTOR_MAX_SECS
(default 300), nor waits more than AGORA_COMPAT_EXECUTOR_REGISTER_SECS (default
30) for its first SUBSCRIBED. Diagnostics go to stderr (the sandbox's stderr).
"""

import os
import sys
import threading
import time
import traceback


def _env_float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return float(default)


RECONNECT_SECS = _env_float("AGORA_COMPAT_EXECUTOR_RECONNECT_SECS", 10)
MAX_SECS = _env_float("AGORA_COMPAT_EXECUTOR_MAX_SECS", 300)
REGISTER_SECS = _env_float("AGORA_COMPAT_EXECUTOR_REGISTER_SECS", 30)
STOP_DELAY_SECS = _env_float("AGORA_COMPAT_EXECUTOR_STOP_DELAY_SECS", 1.0)
MESSAGE_SECS = _env_float("AGORA_COMPAT_EXECUTOR_MESSAGE_SECS", 15)


def log(msg):
    sys.stderr.write("[pymesos_executor pid=%d %.3f] %s\n" % (os.getpid(), time.time(), msg))
    sys.stderr.flush()


def hard_exit(code, why):
    log("exiting (%d): %s" % (code, why))
    os._exit(code)


def start_timer(seconds, fn, *args):
    t = threading.Timer(seconds, fn, args)
    t.daemon = True
    t.start()
    return t


try:
    from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data
except Exception as exc:  # pragma: no cover - environment problem
    log("cannot import pymesos with %s: %r (run scripts/setup-python.sh and use its python)"
        % (sys.executable, exc))
    sys.exit(2)


def send_update(driver, status):
    """Sends a status update, retrying while the agent is away (a checkpointing executor
    re-subscribes to a restarted agent meanwhile). The status keeps the uuid pymesos gives it
    on the first try, so a copy the agent already took is dropped as a duplicate."""
    deadline = time.time() + RECONNECT_SECS
    while True:
        try:
            driver.sendStatusUpdate(status)
            return
        except Exception as exc:
            if time.time() > deadline:
                raise
            log("could not send %s (%r); retrying" % (status.get("state"), exc))
            time.sleep(0.5)


class CompatExecutor(Executor):
    def __init__(self):
        self.registered_evt = threading.Event()
        self.stopping = False
        self._lock = threading.Lock()
        self._reconnect_timer = None
        self.message_evt = threading.Event()

    # -- connection lifecycle -------------------------------------------------
    def _cancel_reconnect_timer(self):
        with self._lock:
            if self._reconnect_timer is not None:
                self._reconnect_timer.cancel()
                self._reconnect_timer = None

    def registered(self, driver, executor_info, framework_info, agent_info):
        log("SUBSCRIBED executor_id=%s framework_id=%s agent_id=%s hostname=%s" % (
            executor_info.get("executor_id", {}).get("value"),
            framework_info.get("id", {}).get("value"),
            agent_info.get("id", {}).get("value"),
            agent_info.get("hostname")))
        self._cancel_reconnect_timer()
        self.registered_evt.set()

    def reregistered(self, driver, agent_info):
        log("re-SUBSCRIBED agent_id=%s" % agent_info.get("id", {}).get("value"))
        self._cancel_reconnect_timer()

    def disconnected(self, driver):
        if self.stopping:
            log("stream closed (stopping)")
            return
        with self._lock:
            if self._reconnect_timer is None:
                log("agent stream went away; exiting unless re-subscribed within %.0fs"
                    % RECONNECT_SECS)
                self._reconnect_timer = start_timer(
                    RECONNECT_SECS, hard_exit, 3, "agent stream gone and no re-subscription")

    def shutdown(self, driver):
        log("shutdown")

    def error(self, driver, message):
        log("ERROR event: %s" % message)

    # -- tasks ----------------------------------------------------------------
    def launchTask(self, driver, task):
        # Never block the driver's IO thread: updates are sent from a thread.
        t = threading.Thread(target=self._run_task, args=(driver, task), name="task")
        t.daemon = True
        t.start()

    def killTask(self, driver, task_id):
        log("KILL %s" % task_id.get("value"))

        def kill():
            try:
                driver.sendStatusUpdate(dict(task_id=dict(value=task_id["value"]),
                                             state="TASK_KILLED", message="killed by request"))
            except Exception:
                log("could not send TASK_KILLED:\n" + traceback.format_exc())
            finally:
                self._stop_later(driver)

        t = threading.Thread(target=kill, name="kill")
        t.daemon = True
        t.start()

    def frameworkMessage(self, driver, message):
        log("MESSAGE %r" % (message,))
        try:
            echo = b"echo " + decode_data(message)
            driver.sendFrameworkMessage(encode_data(echo))
            log("echoed %r" % echo)
        except Exception:
            log("could not echo the message:\n" + traceback.format_exc())
        self.message_evt.set()

    def _run_task(self, driver, task):
        task_id = dict(value=task["task_id"]["value"])
        log("LAUNCH %s" % task_id["value"])
        try:
            send_update(driver, dict(task_id=task_id, state="TASK_RUNNING",
                                     message="pymesos executor running the task"))
            if not self.message_evt.wait(MESSAGE_SECS):
                log("no framework message within %.0fs; finishing anyway" % MESSAGE_SECS)
            raw = task.get("data") or ""
            payload = decode_data(raw) if raw else b""
            reply = payload[::-1]
            log("task data %r -> reply %r" % (payload, reply))
            send_update(driver, dict(task_id=task_id, state="TASK_FINISHED",
                                     data=encode_data(reply),
                                     message="pymesos executor reversed %d bytes" % len(payload)))
            log("sent TASK_RUNNING and TASK_FINISHED for %s" % task_id["value"])
        except Exception:
            log("task failed:\n" + traceback.format_exc())
            try:
                driver.sendStatusUpdate(dict(task_id=task_id, state="TASK_FAILED",
                                             message="executor error: %s" % sys.exc_info()[1]))
            except Exception:
                log("could not send TASK_FAILED:\n" + traceback.format_exc())
        finally:
            self._stop_later(driver)

    def _stop_later(self, driver):
        # Give the agent a moment to acknowledge the updates, then stop.
        time.sleep(STOP_DELAY_SECS)
        pending = getattr(driver, "tasks", None)
        if pending:
            log("note: no ACKNOWLEDGED event yet for task(s) %s" % sorted(pending))
        self.stopping = True
        log("stopping driver")
        driver.stop()


def main():
    start_timer(MAX_SECS, hard_exit, 4, "max lifetime of %.0fs exceeded" % MAX_SECS)
    for name in ("MESOS_AGENT_ENDPOINT", "MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID"):
        if not os.environ.get(name):
            log("missing environment variable %s (the agent must set it)" % name)
            return 2
    log("starting: endpoint=%s framework=%s executor=%s checkpoint=%r grace=%r" % (
        os.environ["MESOS_AGENT_ENDPOINT"], os.environ["MESOS_FRAMEWORK_ID"],
        os.environ["MESOS_EXECUTOR_ID"], os.environ.get("MESOS_CHECKPOINT"),
        os.environ.get("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD")))
    executor = CompatExecutor()
    driver = MesosExecutorDriver(executor, use_addict=True)
    start_timer(REGISTER_SECS,
                lambda: executor.registered_evt.is_set()
                or hard_exit(5, "no SUBSCRIBED from the agent within %.0fs" % REGISTER_SECS))
    driver.start()
    try:
        driver.join()
        time.sleep(0.05)  # a pending pymesos IO-thread error is raised here
    except BaseException as exc:  # pymesos re-raises IO-thread errors via SIGINT
        log("driver aborted: %r" % (exc,))
        return 1
    log("driver stopped; exiting 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
