"""A Mesos framework written with pymesos (a third-party Mesos client
library) against an Agora master, through Mesos' v1 scheduler HTTP API
(`POST /api/v1/scheduler`, JSON and RecordIO).

It launches, from the first offer large enough:
  * `echo-task`, a command task (`echo`), which must finish;
  * `executor-task`, a task of a custom executor that runs
    `pymesos_executor.py` with the given Python: the executor reports
    TASK_RUNNING and sends a framework message; the framework answers with
    one of its own, and the executor finishes the task with TASK_FINISHED,
    carrying what it received;
  * `sleep-task`, a command task (`sleep 600`) that the framework kills once
    it runs, and that must end TASK_KILLED.
Then it stops the driver without failover, which tears the framework down.

Every observation is one JSON line on stdout, e.g.
  {"event": "status", "task": "echo-task", "state": "TASK_FINISHED", ...}
  {"event": "framework_message", "data": "{\"hello\": \"executor-task\", ...}", ...}
and the last line is {"event": "done", "ok": true} (exit 0), or, when not
everything happened within --timeout seconds, {"event": "done", "ok": false,
"missing": [...]} (exit 1). pymesos' own logs go to stderr.
"""

import argparse
import base64
import getpass
import json
import logging
import shlex
import sys
import threading

from pymesos import MesosSchedulerDriver, Scheduler

ECHO = "echo-task"
CUSTOM = "executor-task"
SLEEP = "sleep-task"
EXECUTOR_ID = "pymesos-executor"
# What the framework answers the executor's message with.
REPLY = "framework-hello"
# What must be seen before the framework stops.
EXPECTED = [
    "echo FINISHED",
    "custom RUNNING",
    "custom FINISHED with the framework's message",
    "executor message",
    "sleep RUNNING",
    "sleep KILLED",
]

log = logging.getLogger("pymesos_framework")
print_lock = threading.Lock()


def emit(**event):
    """One observation, one line of JSON on stdout."""
    with print_lock:
        sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
        sys.stdout.flush()


def b64(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def unb64(data):
    return base64.b64decode(data).decode("utf-8", "replace")


def scalar(name, value):
    return dict(name=name, type="SCALAR", scalar=dict(value=value))


def offered(offer, name):
    return sum(
        r.get("scalar", {}).get("value", 0.0)
        for r in offer.get("resources", [])
        if r.get("name") == name
    )


class E2EScheduler(Scheduler):
    def __init__(self, executor_command):
        self.executor_command = executor_command
        self.lock = threading.Lock()
        self.launched = False
        self.kill_sent = False
        self.reply_sent = False
        # Which of EXPECTED have been seen.
        self.seen = set()
        self.all_seen = threading.Event()
        self.framework_id = None

    def saw(self, what):
        with self.lock:
            self.seen.add(what)
            done = all(e in self.seen for e in EXPECTED)
        if done:
            self.all_seen.set()

    def missing(self):
        with self.lock:
            return [e for e in EXPECTED if e not in self.seen]

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id["value"]
        emit(
            event="registered",
            framework_id=framework_id["value"],
            master_version=master_info.get("version"),
        )

    def reregistered(self, driver, master_info):
        emit(event="reregistered")

    def disconnected(self, driver):
        emit(event="disconnected")

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                launch = not self.launched and (
                    offered(offer, "cpus") >= 0.3 and offered(offer, "mem") >= 96
                )
                if launch:
                    self.launched = True
            if not launch:
                driver.declineOffer(offer["id"], dict(refuse_seconds=3600))
                continue
            agent_id = offer["agent_id"]

            def task(name, resources, **rest):
                return dict(
                    task_id=dict(value=name),
                    agent_id=agent_id,
                    name=name,
                    resources=resources,
                    **rest
                )

            small = [scalar("cpus", 0.1), scalar("mem", 32)]
            tasks = [
                task(ECHO, small, command=dict(value="echo hello-from-pymesos")),
                task(
                    CUSTOM,
                    small,
                    executor=dict(
                        executor_id=dict(value=EXECUTOR_ID),
                        name="pymesos executor",
                        command=dict(value=self.executor_command),
                        # None of its own: Agora refuses a custom executor
                        # with resources (its tasks' resources are its).
                    ),
                ),
                task(SLEEP, small, command=dict(value="sleep 600")),
            ]
            emit(
                event="launch",
                offer=offer["id"]["value"],
                agent=agent_id["value"],
                tasks=[t["task_id"]["value"] for t in tasks],
            )
            driver.launchTasks(offer["id"], tasks, dict(refuse_seconds=3600))

    def offerRescinded(self, driver, offer_id):
        emit(event="offer_rescinded", offer=offer_id["value"])

    def statusUpdate(self, driver, update):
        task = update["task_id"]["value"]
        # Required in Mesos' TaskStatus; reported as null if missing (the
        # test fails on that), not guessed.
        state = update.get("state")
        data = update.get("data")
        emit(
            event="status",
            task=task,
            state=state,
            message=update.get("message"),
            reason=update.get("reason"),
            source=update.get("source"),
            data=unb64(data) if data else None,
        )
        if task == ECHO and state == "TASK_FINISHED":
            self.saw("echo FINISHED")
        elif task == CUSTOM and state == "TASK_RUNNING":
            self.saw("custom RUNNING")
        elif task == CUSTOM and state == "TASK_FINISHED" and data and unb64(data) == REPLY:
            self.saw("custom FINISHED with the framework's message")
        elif task == SLEEP and state == "TASK_RUNNING":
            self.saw("sleep RUNNING")
            with self.lock:
                kill = not self.kill_sent
                self.kill_sent = True
            if kill:
                emit(event="kill", task=task)
                driver.killTask(dict(value=task))
        elif task == SLEEP and state == "TASK_KILLED":
            self.saw("sleep KILLED")

    def frameworkMessage(self, driver, executor_id, agent_id, message):
        text = unb64(message)
        try:
            hello = json.loads(text)
        except ValueError:
            hello = None
        emit(
            event="framework_message",
            executor=executor_id["value"],
            agent=agent_id["value"],
            data=text,
        )
        if (
            executor_id["value"] == EXECUTOR_ID
            and isinstance(hello, dict)
            and hello.get("hello") == CUSTOM
        ):
            self.saw("executor message")
            with self.lock:
                send = not self.reply_sent
                self.reply_sent = True
            if send:
                emit(event="send_message", executor=EXECUTOR_ID, data=REPLY)
                driver.sendFrameworkMessage(executor_id, agent_id, b64(REPLY))

    def slaveLost(self, driver, agent_id):
        emit(event="agent_lost", agent=agent_id["value"])

    def executorLost(self, driver, executor_id, agent_id, status):
        emit(event="executor_lost", executor=executor_id["value"], status=status)

    def error(self, driver, message):
        emit(event="error", message=message)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", required=True, help="HOST:PORT of the master")
    parser.add_argument(
        "--executor-python", required=True, help="the Python that runs the executor"
    )
    parser.add_argument(
        "--executor-script", required=True, help="absolute path of pymesos_executor.py"
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds")
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    # The agent runs the command with /bin/sh -c.
    scheduler = E2EScheduler(
        "%s %s" % (shlex.quote(args.executor_python), shlex.quote(args.executor_script))
    )
    framework = dict(
        user=getpass.getuser(),
        name="pymesos-e2e",
        hostname="127.0.0.1",
    )
    driver = MesosSchedulerDriver(scheduler, framework, args.master)
    ok = False
    try:
        driver.start()
        ok = scheduler.all_seen.wait(args.timeout)
    except BaseException as e:  # pymesos interrupts the main thread when its IO thread dies
        emit(event="driver_failed", error="%s: %s" % (type(e).__name__, e))
    finally:
        # Not a failover: pymesos tears the framework down as its IO thread ends.
        driver.stop()
        driver.join()
        emit(event="stopped", framework_id=scheduler.framework_id)
    missing = scheduler.missing()
    emit(event="done", ok=ok and not missing, missing=missing)
    return 0 if ok and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
