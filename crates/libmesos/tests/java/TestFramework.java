// A Mesos framework for libmesos' end-to-end test (tests/tests/libmesos_java.rs):
// Mesos' own Java bindings (MesosSchedulerDriver) over Agora's libmesos.so,
// against a real Agora master with two agents.
//
// System properties:
//   test.master            the master, host:port
//   test.executor.command  the shell command that starts TestExecutor
//   test.library           libmesos.so, for the executor's environment
//   test.messages          "true": framework messages must go both ways
//
// Prints one line per observation: `OK <check> ...` or `FAIL <check> ...`,
// `STATUS <task> <state> ...` for every update, `FRAMEWORK <id>` for the main
// framework, and `DONE <failures>` last. Exits 0 only when every check passed.
// Every wait is a latch with a deadline: nothing here can hang the test.

import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.mesos.MesosSchedulerDriver;
import org.apache.mesos.Scheduler;
import org.apache.mesos.SchedulerDriver;
import org.apache.mesos.Protos.CommandInfo;
import org.apache.mesos.Protos.Environment;
import org.apache.mesos.Protos.ExecutorID;
import org.apache.mesos.Protos.ExecutorInfo;
import org.apache.mesos.Protos.Filters;
import org.apache.mesos.Protos.FrameworkID;
import org.apache.mesos.Protos.FrameworkInfo;
import org.apache.mesos.Protos.MasterInfo;
import org.apache.mesos.Protos.Offer;
import org.apache.mesos.Protos.OfferID;
import org.apache.mesos.Protos.Resource;
import org.apache.mesos.Protos.SlaveID;
import org.apache.mesos.Protos.Status;
import org.apache.mesos.Protos.TaskID;
import org.apache.mesos.Protos.TaskInfo;
import org.apache.mesos.Protos.TaskState;
import org.apache.mesos.Protos.TaskStatus;
import org.apache.mesos.Protos.Value;

public class TestFramework {
    static final AtomicInteger FAILURES = new AtomicInteger();
    /// How long any one condition is waited for.
    static final long WAIT_S = 60;

    static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static void check(boolean ok, String what) {
        if (ok) {
            say("OK " + what);
        } else {
            FAILURES.incrementAndGet();
            say("FAIL " + what);
        }
    }

    /// Waits up to WAIT_S, or 5 s once a check has failed: the rest of the
    /// run still reports, without adding a minute per later check.
    static boolean await(CountDownLatch latch) {
        long seconds = FAILURES.get() == 0 ? WAIT_S : 5;
        try {
            return latch.await(seconds, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    static String text(byte[] data) {
        return new String(data, StandardCharsets.UTF_8);
    }

    static FrameworkInfo framework(String name) {
        return FrameworkInfo.newBuilder()
            .setUser(System.getProperty("user.name", "root"))
            .setName(name)
            .setFailoverTimeout(0)
            .build();
    }

    static Resource scalar(String name, double value) {
        return Resource.newBuilder()
            .setName(name)
            .setType(Value.Type.SCALAR)
            .setScalar(Value.Scalar.newBuilder().setValue(value))
            .build();
    }

    /// Runs `run()` on its own thread; the status it returned, or null when
    /// it did not return in time.
    static Status runWithDeadline(SchedulerDriver driver) {
        AtomicReference<Status> result = new AtomicReference<>();
        Thread t = new Thread(() -> result.set(driver.run()), "run");
        t.setDaemon(true);
        t.start();
        try {
            t.join(WAIT_S * 1000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return result.get();
    }

    /// A scheduler that only records `error(...)` and fails on registration.
    static class ErrorOnly implements Scheduler {
        final AtomicReference<String> error = new AtomicReference<>();
        final CountDownLatch errored = new CountDownLatch(1);
        final boolean throwOnRegistered;
        final CountDownLatch registered = new CountDownLatch(1);

        ErrorOnly(boolean throwOnRegistered) {
            this.throwOnRegistered = throwOnRegistered;
        }

        public void registered(SchedulerDriver d, FrameworkID id, MasterInfo m) {
            registered.countDown();
            if (throwOnRegistered) {
                throw new RuntimeException("thrown by the test's registered callback");
            }
        }
        public void reregistered(SchedulerDriver d, MasterInfo m) {}
        public void resourceOffers(SchedulerDriver d, List<Offer> offers) {
            for (Offer o : offers) {
                d.declineOffer(o.getId());
            }
        }
        public void offerRescinded(SchedulerDriver d, OfferID id) {}
        public void statusUpdate(SchedulerDriver d, TaskStatus s) {}
        public void frameworkMessage(SchedulerDriver d, ExecutorID e, SlaveID s, byte[] data) {}
        public void disconnected(SchedulerDriver d) {}
        public void slaveLost(SchedulerDriver d, SlaveID s) {}
        public void executorLost(SchedulerDriver d, ExecutorID e, SlaveID s, int status) {}
        public void error(SchedulerDriver d, String message) {
            error.set(message);
            errored.countDown();
        }
    }

    static void badMaster(String name, String master) {
        ErrorOnly sched = new ErrorOnly(false);
        MesosSchedulerDriver driver = new MesosSchedulerDriver(sched, framework(name), master);
        long started = System.nanoTime();
        Status status = runWithDeadline(driver);
        long ms = (System.nanoTime() - started) / 1_000_000;
        check(status == Status.DRIVER_ABORTED,
            name + " run returned " + status + " after " + ms + " ms");
        // As in libmesos, the driver aborts first and then calls error():
        // run() may return before the callback has run.
        boolean called = false;
        try {
            called = sched.errored.await(30, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        String error = sched.error.get();
        check(called && error != null && !error.isEmpty(), name + " error callback: " + error);
        driver.stop();
    }

    static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    /// The main scheduler: records everything, drives the checks.
    static class Main implements Scheduler {
        final String executorCommand;
        final String library;
        final AtomicReference<String> frameworkId = new AtomicReference<>();
        final CountDownLatch registered = new CountDownLatch(1);
        final AtomicBoolean launched = new AtomicBoolean();
        final AtomicBoolean suppressed = new AtomicBoolean();
        final AtomicBoolean revived = new AtomicBoolean();
        final CountDownLatch offerAfterRevive = new CountDownLatch(1);
        final AtomicReference<Status> acceptStatus = new AtomicReference<>();
        final AtomicReference<Status> declineStatus = new AtomicReference<>();
        final Map<String, List<TaskState>> states = new ConcurrentHashMap<>();
        final Map<String, CountDownLatch> latches = new ConcurrentHashMap<>();
        final AtomicReference<String> execData = new AtomicReference<>();
        final AtomicReference<SlaveID> execSlave = new AtomicReference<>();
        final CountDownLatch reconciled = new CountDownLatch(1);
        final AtomicBoolean reconciling = new AtomicBoolean();
        final CountDownLatch helloFromExecutor = new CountDownLatch(1);
        final CountDownLatch pong = new CountDownLatch(1);
        final AtomicInteger acknowledged = new AtomicInteger();
        final AtomicReference<String> error = new AtomicReference<>();

        Main(String executorCommand, String library) {
            this.executorCommand = executorCommand;
            this.library = library;
        }

        CountDownLatch latch(String task, TaskState state) {
            return latches.computeIfAbsent(task + " " + state, k -> new CountDownLatch(1));
        }

        public void registered(SchedulerDriver d, FrameworkID id, MasterInfo m) {
            frameworkId.set(id.getValue());
            say("OK registered " + id.getValue() + " master=" + m.getHostname() + ":" + m.getPort());
            registered.countDown();
        }

        public void reregistered(SchedulerDriver d, MasterInfo m) {
            say("NOTE reregistered");
        }

        TaskInfo.Builder task(String id, Offer offer) {
            return TaskInfo.newBuilder()
                .setName(id)
                .setTaskId(TaskID.newBuilder().setValue(id))
                .setSlaveId(offer.getSlaveId())
                .addResources(scalar("cpus", 0.1))
                .addResources(scalar("mem", 32));
        }

        public void resourceOffers(SchedulerDriver d, List<Offer> offers) {
            for (Offer offer : offers) {
                if (revived.get()) {
                    offerAfterRevive.countDown();
                }
                if (!launched.compareAndSet(false, true)) {
                    Status s = d.declineOffer(offer.getId(),
                        Filters.newBuilder().setRefuseSeconds(1).build());
                    declineStatus.compareAndSet(null, s);
                    continue;
                }
                ExecutorInfo executor = ExecutorInfo.newBuilder()
                    .setExecutorId(ExecutorID.newBuilder().setValue("test-executor"))
                    .setName("libmesos test executor")
                    .setCommand(CommandInfo.newBuilder()
                        .setValue(executorCommand)
                        .setEnvironment(Environment.newBuilder().addVariables(
                            Environment.Variable.newBuilder()
                                .setName("MESOS_NATIVE_JAVA_LIBRARY").setValue(library))))
                    .build();
                List<TaskInfo> tasks = Arrays.asList(
                    task("cmd", offer).setCommand(CommandInfo.newBuilder().setValue("echo hello from cmd")).build(),
                    task("sleeper", offer).setCommand(CommandInfo.newBuilder().setValue("sleep 600")).build(),
                    // Agora gives a custom executor its tasks' resources
                    // (it refuses ExecutorInfo resources): room for a JVM.
                    task("exec-1", offer).setExecutor(executor)
                        .clearResources().addResources(scalar("cpus", 0.2)).addResources(scalar("mem", 256))
                        .build());
                Offer.Operation launch = Offer.Operation.newBuilder()
                    .setType(Offer.Operation.Type.LAUNCH)
                    .setLaunch(Offer.Operation.Launch.newBuilder().addAllTaskInfos(tasks))
                    .build();
                Status s = d.acceptOffers(Collections.singletonList(offer.getId()),
                    Collections.singletonList(launch), Filters.newBuilder().setRefuseSeconds(1).build());
                acceptStatus.set(s);
                say("NOTE launched on " + offer.getHostname() + ": " + s);
            }
        }

        public void offerRescinded(SchedulerDriver d, OfferID id) {}

        public void statusUpdate(SchedulerDriver d, TaskStatus s) {
            String task = s.getTaskId().getValue();
            say("STATUS " + task + " " + s.getState()
                + " reason=" + (s.hasReason() ? s.getReason().toString() : "none")
                + " source=" + s.getSource() + " agent=" + s.getSlaveId().getValue()
                + " message=" + s.getMessage().replace('\n', ' '));
            states.computeIfAbsent(task, k -> Collections.synchronizedList(new ArrayList<>()))
                .add(s.getState());
            if (task.equals("exec-1") && s.getState() == TaskState.TASK_FINISHED) {
                execData.set(s.getData().toStringUtf8());
            }
            if (task.equals("exec-1")) {
                execSlave.set(s.getSlaveId());
            }
            if (reconciling.get() && s.getReason() == TaskStatus.Reason.REASON_RECONCILIATION
                && task.equals("sleeper") && s.getState() == TaskState.TASK_RUNNING) {
                reconciled.countDown();
            }
            latch(task, s.getState()).countDown();
            // Explicit acknowledgements: every update with a uuid.
            if (s.hasUuid()) {
                Status a = d.acknowledgeStatusUpdate(s);
                if (a == Status.DRIVER_RUNNING) {
                    acknowledged.incrementAndGet();
                }
            }
        }

        public void frameworkMessage(SchedulerDriver d, ExecutorID e, SlaveID s, byte[] data) {
            String message = text(data);
            say("MESSAGE from " + e.getValue() + ": " + message);
            if (message.startsWith("hello-from-")) {
                helloFromExecutor.countDown();
            }
            if (message.equals("pong:ping")) {
                pong.countDown();
            }
        }

        public void disconnected(SchedulerDriver d) {
            say("NOTE disconnected");
        }

        public void slaveLost(SchedulerDriver d, SlaveID s) {}

        public void executorLost(SchedulerDriver d, ExecutorID e, SlaveID s, int status) {
            say("NOTE executorLost " + e.getValue() + " " + status);
        }

        public void error(SchedulerDriver d, String message) {
            error.set(message);
            say("FAIL error callback: " + message);
            FAILURES.incrementAndGet();
        }
    }

    static void mainRun(String master, boolean messages) {
        Main sched = new Main(System.getProperty("test.executor.command"),
            System.getProperty("test.library"));
        MesosSchedulerDriver driver =
            new MesosSchedulerDriver(sched, framework("libmesos-java-test"), master, false);
        check(driver.start() == Status.DRIVER_RUNNING, "start");
        Status again = driver.start();
        check(again == Status.DRIVER_RUNNING, "start-twice answers " + again);
        check(await(sched.registered), "registered within " + WAIT_S + " s");
        say("FRAMEWORK " + sched.frameworkId.get());

        check(await(sched.latch("cmd", TaskState.TASK_FINISHED)), "command task finished");
        check(sched.acceptStatus.get() == Status.DRIVER_RUNNING, "acceptOffers answered " + sched.acceptStatus.get());
        check(await(sched.latch("exec-1", TaskState.TASK_RUNNING)), "executor task running");
        check(await(sched.latch("exec-1", TaskState.TASK_FINISHED)), "executor task finished");
        check("result-exec-1".equals(sched.execData.get()), "executor task data " + sched.execData.get());

        check(await(sched.latch("sleeper", TaskState.TASK_RUNNING)), "sleeper running");
        sched.reconciling.set(true);
        Status r = driver.reconcileTasks(Collections.emptyList());
        check(r == Status.DRIVER_RUNNING, "reconcileTasks answered " + r);
        check(await(sched.reconciled), "reconciliation reported the sleeper running");
        Status k = driver.killTask(TaskID.newBuilder().setValue("sleeper").build());
        check(k == Status.DRIVER_RUNNING, "killTask answered " + k);
        check(await(sched.latch("sleeper", TaskState.TASK_KILLED)), "sleeper killed");

        SlaveID slave = sched.execSlave.get();
        if (slave != null) {
            Status m = driver.sendFrameworkMessage(
                ExecutorID.newBuilder().setValue("test-executor").build(), slave,
                "ping".getBytes(StandardCharsets.UTF_8));
            check(m == Status.DRIVER_RUNNING, "sendFrameworkMessage answered " + m);
        }
        if (messages) {
            check(await(sched.helloFromExecutor), "framework message from the executor");
            check(await(sched.pong), "framework message to the executor answered");
        } else {
            say("SKIP framework messages (not expected to reach their destination)");
        }

        Status sup = driver.suppressOffers();
        check(sup == Status.DRIVER_RUNNING, "suppressOffers answered " + sup);
        sched.revived.set(true);
        Status rev = driver.reviveOffers();
        check(rev == Status.DRIVER_RUNNING, "reviveOffers answered " + rev);
        check(await(sched.offerAfterRevive), "an offer after reviveOffers");
        check(sched.declineStatus.get() == Status.DRIVER_RUNNING,
            "declineOffer with filters answered " + sched.declineStatus.get());
        check(sched.acknowledged.get() >= 5, "explicit acknowledgements sent: " + sched.acknowledged.get());

        Status stop = driver.stop(false);
        check(stop == Status.DRIVER_STOPPED, "stop(false) answered " + stop);
        TaskID id = TaskID.newBuilder().setValue("x").build();
        OfferID offer = OfferID.newBuilder().setValue("x").build();
        Status[] after = {
            driver.start(),
            driver.stop(false),
            driver.abort(),
            driver.killTask(id),
            driver.declineOffer(offer),
            driver.reviveOffers(),
            driver.suppressOffers(),
            driver.reconcileTasks(Collections.emptyList()),
            driver.launchTasks(Collections.singletonList(offer), Collections.emptyList()),
            driver.acknowledgeStatusUpdate(TaskStatus.newBuilder().setTaskId(id)
                .setState(TaskState.TASK_RUNNING).build()),
        };
        boolean allStopped = true;
        for (Status s : after) {
            allStopped &= s == Status.DRIVER_STOPPED;
        }
        check(allStopped, "every call after stop answers DRIVER_STOPPED: " + Arrays.toString(after));
        Status joined = driver.join();
        check(joined == Status.DRIVER_STOPPED, "join returned " + joined);
    }

    static void throwingCallback(String master) {
        ErrorOnly sched = new ErrorOnly(true);
        MesosSchedulerDriver driver =
            new MesosSchedulerDriver(sched, framework("libmesos-java-throwing"), master);
        check(driver.start() == Status.DRIVER_RUNNING, "throwing: start");
        check(await(sched.registered), "throwing: registered");
        AtomicReference<Status> joined = new AtomicReference<>();
        Thread t = new Thread(() -> joined.set(driver.join()), "join");
        t.setDaemon(true);
        t.start();
        try {
            t.join(WAIT_S * 1000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        check(joined.get() == Status.DRIVER_ABORTED, "throwing callback aborts: join returned " + joined.get());
        Status stop = driver.stop();
        check(stop == Status.DRIVER_ABORTED, "throwing: stop after abort answered " + stop);
    }

    public static void main(String[] args) throws Exception {
        String master = System.getProperty("test.master");
        boolean messages = Boolean.parseBoolean(System.getProperty("test.messages", "false"));
        // The library marks itself loaded and reports the Mesos API it implements.
        org.apache.mesos.MesosNativeLibrary.load();
        org.apache.mesos.MesosNativeLibrary.Version v = org.apache.mesos.MesosNativeLibrary.version();
        say("OK version " + v.major + "." + v.minor + "." + v.patch);
        badMaster("bad-master", "nonsense:::");
        badMaster("unreachable-master", "127.0.0.1:" + freePort());
        mainRun(master, messages);
        throwingCallback(master);
        // Still alive after a callback threw: the JVM goes on and exits normally.
        say("DONE " + FAILURES.get());
        System.exit(FAILURES.get() == 0 ? 0 : 1);
    }
}
