// A custom Mesos executor for libmesos' end-to-end test
// (tests/tests/libmesos_java.rs), started by an Agora agent as the command of
// TestFramework's ExecutorInfo. It answers every task RUNNING then FINISHED
// (with `data` = "result-<task id>"), then stays idle until it is shut
// down (the framework's teardown), sends a framework message per task,
// answers a framework message with "pong:<message>", ends a killed task
// TASK_KILLED, and exits once the driver stops (after `shutdown`).
//
// One line per observation on standard output (the sandbox's `stdout`):
// `EXEC <what> ...`. Exit status 0 when `run()` returned DRIVER_STOPPED.

import java.nio.charset.StandardCharsets;

import org.apache.mesos.protobuf.ByteString;
import org.apache.mesos.Executor;
import org.apache.mesos.ExecutorDriver;
import org.apache.mesos.MesosExecutorDriver;
import org.apache.mesos.Protos.ExecutorInfo;
import org.apache.mesos.Protos.FrameworkInfo;
import org.apache.mesos.Protos.SlaveInfo;
import org.apache.mesos.Protos.Status;
import org.apache.mesos.Protos.TaskID;
import org.apache.mesos.Protos.TaskInfo;
import org.apache.mesos.Protos.TaskState;
import org.apache.mesos.Protos.TaskStatus;

public class TestExecutor implements Executor {
    static void say(String line) {
        System.out.println("EXEC " + line);
        System.out.flush();
    }

    static byte[] bytes(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }

    static TaskStatus status(TaskID id, TaskState state, String data) {
        TaskStatus.Builder b = TaskStatus.newBuilder().setTaskId(id).setState(state);
        if (data != null) {
            b.setData(ByteString.copyFrom(bytes(data)));
        }
        return b.build();
    }

    @Override
    public void registered(ExecutorDriver driver, ExecutorInfo executor, FrameworkInfo framework,
                           SlaveInfo slave) {
        say("registered " + executor.getExecutorId().getValue() + " framework=" + framework.getName()
            + " agent=" + slave.getHostname());
    }

    @Override
    public void reregistered(ExecutorDriver driver, SlaveInfo slave) {
        say("reregistered " + slave.getHostname());
    }

    @Override
    public void disconnected(ExecutorDriver driver) {
        say("disconnected");
    }

    @Override
    public void launchTask(ExecutorDriver driver, TaskInfo task) {
        String id = task.getTaskId().getValue();
        say("launch " + id);
        // Calls back into the driver from inside the callback, as real
        // executors do.
        Status running = driver.sendStatusUpdate(status(task.getTaskId(), TaskState.TASK_RUNNING, null));
        Status message = driver.sendFrameworkMessage(bytes("hello-from-" + id));
        Status finished = driver.sendStatusUpdate(
            status(task.getTaskId(), TaskState.TASK_FINISHED, "result-" + id));
        say("sent " + id + " running=" + running + " message=" + message + " finished=" + finished);
    }

    @Override
    public void killTask(ExecutorDriver driver, TaskID taskId) {
        say("kill " + taskId.getValue());
        driver.sendStatusUpdate(status(taskId, TaskState.TASK_KILLED, null));
    }

    @Override
    public void frameworkMessage(ExecutorDriver driver, byte[] data) {
        String text = new String(data, StandardCharsets.UTF_8);
        say("message " + text);
        driver.sendFrameworkMessage(bytes("pong:" + text));
    }

    @Override
    public void shutdown(ExecutorDriver driver) {
        say("shutdown");
    }

    @Override
    public void error(ExecutorDriver driver, String message) {
        say("error " + message);
    }

    public static void main(String[] args) {
        MesosExecutorDriver driver = new MesosExecutorDriver(new TestExecutor());
        Status status = driver.run();
        say("run returned " + status);
        System.exit(status == Status.DRIVER_STOPPED ? 0 : 1);
    }
}
