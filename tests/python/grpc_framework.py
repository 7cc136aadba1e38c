"""A minimal Agora framework in Python, over stubs that stock protoc made.

Subscribes, launches `echo hi` on the first offer that fits, acknowledges
every status update, and tears down once the task is TASK_FINISHED. Prints
one JSON object per line for each step, so a test can follow what happened:

    {"event": "subscribed", "framework_id": "..."}
    {"event": "offers", "count": 1}
    {"event": "launched", "task_id": "...", "agent_id": "..."}
    {"event": "update", "task_id": "...", "state": "TASK_RUNNING", "acknowledged": true}
    {"event": "teardown"}

Exits 0 after the teardown; on anything else prints {"event": "error", ...}
and exits 1.

Usage: grpc_framework.py --stubs DIR --master HOST:PORT [--deadline SECONDS]
"""

import argparse
import getpass
import json
import sys


def emit(**fields):
    print(json.dumps(fields), flush=True)


def scalar_resource(offer, name, amount, mesos_pb2):
    """`amount` of the offer's scalar resource `name`, keeping its role and
    allocation info; None when the offer has less."""
    for resource in offer.resources:
        if resource.name == name and resource.HasField("scalar") and resource.scalar.value >= amount:
            wanted = mesos_pb2.Resource()
            wanted.CopyFrom(resource)
            wanted.scalar.value = amount
            return wanted
    return None


def run(stubs, master, deadline):
    sys.path.insert(0, stubs)
    import grpc
    from agora.v1 import mesos_pb2, scheduler_pb2, scheduler_pb2_grpc

    Call = scheduler_pb2.Call
    Event = scheduler_pb2.Event

    channel = grpc.insecure_channel(master)
    scheduler = scheduler_pb2_grpc.SchedulerStub(channel)
    subscribe = Call(
        type=Call.SUBSCRIBE,
        subscribe=Call.Subscribe(
            framework_info=mesos_pb2.FrameworkInfo(
                user=getpass.getuser(), name="python-grpc-framework"
            )
        ),
    )
    # The deadline covers the whole subscription: the stream is cancelled
    # when it passes, which ends the loop below with an error.
    events = scheduler.Subscribe(subscribe, timeout=deadline)
    framework_id = None
    metadata = None
    launched = None

    def send(call_type, **payload):
        call = Call(framework_id=framework_id, type=call_type, **payload)
        scheduler.Send(call, metadata=metadata, timeout=10)

    for event in events:
        if event.type == Event.SUBSCRIBED:
            framework_id = event.subscribed.framework_id
            # Agora's stream id travels as metadata on every other call.
            metadata = [("agora-stream-id", event.subscribed.stream_id)]
            emit(event="subscribed", framework_id=framework_id.value)
        elif event.type == Event.OFFERS:
            offers = list(event.offers.offers)
            emit(event="offers", count=len(offers))
            unused = []
            for offer in offers:
                cpus = scalar_resource(offer, "cpus", 0.1, mesos_pb2)
                mem = scalar_resource(offer, "mem", 32, mesos_pb2)
                if launched is not None or cpus is None or mem is None:
                    unused.append(offer.id)
                    continue
                task = mesos_pb2.TaskInfo(
                    name="hi",
                    task_id=mesos_pb2.TaskID(value="python-echo-hi"),
                    agent_id=offer.agent_id,
                    resources=[cpus, mem],
                    command=mesos_pb2.CommandInfo(value="echo hi"),
                )
                launch = mesos_pb2.Offer.Operation(
                    type=mesos_pb2.Offer.Operation.LAUNCH,
                    launch=mesos_pb2.Offer.Operation.Launch(task_infos=[task]),
                )
                send(Call.ACCEPT, accept=Call.Accept(offer_ids=[offer.id], operations=[launch]))
                launched = task.task_id.value
                emit(event="launched", task_id=launched, agent_id=offer.agent_id.value)
            if unused:
                send(Call.DECLINE, decline=Call.Decline(offer_ids=unused))
        elif event.type == Event.UPDATE:
            status = event.update.status
            acknowledged = status.HasField("uuid")
            if acknowledged:
                send(
                    Call.ACKNOWLEDGE,
                    acknowledge=Call.Acknowledge(
                        agent_id=status.agent_id, task_id=status.task_id, uuid=status.uuid
                    ),
                )
            state = mesos_pb2.TaskState.Name(status.state)
            emit(
                event="update",
                task_id=status.task_id.value,
                state=state,
                acknowledged=acknowledged,
            )
            if status.task_id.value == launched and state == "TASK_FINISHED":
                send(Call.TEARDOWN)
                emit(event="teardown")
                events.cancel()
                return 0
        elif event.type == Event.ERROR:
            emit(event="error", message=event.error.message)
            return 1
    emit(event="error", message="the event stream ended before TASK_FINISHED")
    return 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--stubs", required=True, help="directory of the generated *_pb2 modules")
    parser.add_argument("--master", required=True, help="the master's HOST:PORT")
    parser.add_argument("--deadline", type=float, default=60.0)
    args = parser.parse_args()
    try:
        return run(args.stubs, args.master, args.deadline)
    except Exception as error:  # noqa: BLE001 - any failure is reported as a line
        emit(event="error", message=f"{type(error).__name__}: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
