"""A Mesos executor written with pymesos (a third-party Mesos client
library), run by an Agora agent as a framework's custom executor.

pymesos' MesosExecutorDriver reads MESOS_AGENT_ENDPOINT, MESOS_FRAMEWORK_ID,
MESOS_EXECUTOR_ID, MESOS_CHECKPOINT, ... from the environment the agent gives
it and speaks Mesos' v1 executor HTTP API (`POST /api/v1/executor`, JSON and
RecordIO) to the agent.

What it does with a task: TASK_RUNNING, then a framework message to the
scheduler (JSON: the task's id, and the ids the agent's SUBSCRIBED event
gave), then it waits for a framework message
from the scheduler and finishes the task with TASK_FINISHED, carrying what it
received (in the status' `message` and, base64, its `data`), so that the
scheduler can tell its message arrived. A kill answers TASK_KILLED. The
executor exits when the agent shuts it down (its framework was torn down).

Logs go to stderr (the sandbox's `stderr` file).
"""

import base64
import json
import logging
import os
import sys
import threading

from pymesos import Executor, MesosExecutorDriver

log = logging.getLogger("pymesos_executor")


def b64(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def unb64(data):
    return base64.b64decode(data).decode("utf-8", "replace")


class MessageExecutor(Executor):
    def __init__(self):
        self.lock = threading.Lock()
        # Tasks launched and not yet over, by id: each waits for a message.
        self.waiting = {}
        # What the agent's SUBSCRIBED event said (see `registered`).
        self.subscribed = None

    def registered(self, driver, executor_info, framework_info, agent_info):
        # Told to the scheduler with the first message, so that it can check
        # the SUBSCRIBED event against what it launched (an absent field is
        # reported as null rather than failing here).
        self.subscribed = dict(
            executor_id=executor_info.get("executor_id", {}).get("value"),
            framework_id=framework_info.get("id", {}).get("value"),
            agent_id=agent_info.get("id", {}).get("value"),
            agent_hostname=agent_info.get("hostname"),
        )
        log.info("registered: %s", self.subscribed)

    def reregistered(self, driver, agent_info):
        log.info("re-registered with agent %s", agent_info["id"]["value"])

    def disconnected(self, driver):
        log.info("disconnected from the agent")

    def launchTask(self, driver, task):
        task_id = task["task_id"]
        log.info("launching task %s", task_id["value"])
        with self.lock:
            self.waiting[task_id["value"]] = task_id
        driver.sendStatusUpdate(dict(task_id=task_id, state="TASK_RUNNING"))
        hello = dict(hello=task_id["value"], subscribed=self.subscribed)
        driver.sendFrameworkMessage(b64(json.dumps(hello, sort_keys=True)))

    def frameworkMessage(self, driver, message):
        text = unb64(message)
        log.info("framework message: %s", text)
        with self.lock:
            waiting = list(self.waiting.values())
            self.waiting.clear()
        for task_id in waiting:
            driver.sendStatusUpdate(
                dict(
                    task_id=task_id,
                    state="TASK_FINISHED",
                    message="received: " + text,
                    data=b64(text),
                )
            )

    def killTask(self, driver, task_id):
        log.info("killing task %s", task_id["value"])
        with self.lock:
            self.waiting.pop(task_id["value"], None)
        driver.sendStatusUpdate(dict(task_id=task_id, state="TASK_KILLED"))

    def shutdown(self, driver):
        log.info("shutting down")

    def error(self, driver, message):
        log.error("error from the agent: %s", message)


# The agent gives every executor a token (Mesos' executor authentication,
# always on in Agora) and refuses calls that do not carry it. pymesos 0.3.15
# does not send it, so this driver adds `Authorization: Bearer <token>` to
# the SUBSCRIBE request it writes by hand and to every other call.
TOKEN = os.environ.get("MESOS_EXECUTOR_AUTHENTICATION_TOKEN")


class AuthenticatedExecutorDriver(MesosExecutorDriver):
    def gen_request(self):
        request = super().gen_request()
        if not TOKEN:
            return request
        head, sep, body = request.partition(b"\r\n\r\n")
        return head + ("\r\nAuthorization: Bearer %s" % TOKEN).encode("ascii") + sep + body

    def _send(self, body, path="/api/v1/executor", method="POST", headers=None):
        headers = dict(headers or {})
        if TOKEN:
            headers["Authorization"] = "Bearer " + TOKEN
        return super()._send(body, path=path, method=method, headers=headers)


def main():
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    driver = AuthenticatedExecutorDriver(MessageExecutor())
    driver.run()
    log.info("driver stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
