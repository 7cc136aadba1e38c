// A framework for the authentication end-to-end test
// (tests/tests/authentication_java.rs): Mesos' Java MesosSchedulerDriver,
// constructed with a Protos.Credential as Spark does with
// spark.mesos.principal/spark.mesos.secret, over Agora's libmesos.so.
//
// System properties:
//   test.master     the master, host:port
//   test.principal  the credential's principal (and FrameworkInfo.principal)
//   test.secret     the credential's secret; absent: the driver gets none
//
// Prints `REGISTERED <framework id>` once registered, or `ERROR <message>`
// when the driver reports an error, or `TIMEOUT`; then stops the driver.

import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.mesos.MesosSchedulerDriver;
import org.apache.mesos.Scheduler;
import org.apache.mesos.SchedulerDriver;
import org.apache.mesos.Protos.Credential;
import org.apache.mesos.Protos.ExecutorID;
import org.apache.mesos.Protos.FrameworkID;
import org.apache.mesos.Protos.FrameworkInfo;
import org.apache.mesos.Protos.MasterInfo;
import org.apache.mesos.Protos.Offer;
import org.apache.mesos.Protos.OfferID;
import org.apache.mesos.Protos.SlaveID;
import org.apache.mesos.Protos.TaskStatus;

public class AuthFramework {
    public static void main(String[] args) throws Exception {
        String master = System.getProperty("test.master");
        String principal = System.getProperty("test.principal");
        String secret = System.getProperty("test.secret");
        CountDownLatch done = new CountDownLatch(1);

        Scheduler scheduler = new Scheduler() {
            public void registered(SchedulerDriver d, FrameworkID id, MasterInfo m) {
                System.out.println("REGISTERED " + id.getValue());
                done.countDown();
            }
            public void reregistered(SchedulerDriver d, MasterInfo m) {}
            public void resourceOffers(SchedulerDriver d, List<Offer> offers) {
                for (Offer offer : offers) {
                    d.declineOffer(offer.getId());
                }
            }
            public void offerRescinded(SchedulerDriver d, OfferID id) {}
            public void statusUpdate(SchedulerDriver d, TaskStatus s) {}
            public void frameworkMessage(SchedulerDriver d, ExecutorID e, SlaveID s, byte[] data) {}
            public void disconnected(SchedulerDriver d) {}
            public void slaveLost(SchedulerDriver d, SlaveID s) {}
            public void executorLost(SchedulerDriver d, ExecutorID e, SlaveID s, int status) {}
            public void error(SchedulerDriver d, String message) {
                System.out.println("ERROR " + message);
                done.countDown();
            }
        };

        FrameworkInfo framework = FrameworkInfo.newBuilder()
            .setUser(System.getProperty("user.name", "root"))
            .setName("libmesos-auth-test")
            .setPrincipal(principal)
            .setFailoverTimeout(0)
            .build();
        MesosSchedulerDriver driver;
        if (secret == null) {
            driver = new MesosSchedulerDriver(scheduler, framework, master);
        } else {
            Credential credential = Credential.newBuilder()
                .setPrincipal(principal)
                .setSecret(secret)
                .build();
            driver = new MesosSchedulerDriver(scheduler, framework, master, credential);
        }
        driver.start();
        if (!done.await(60, TimeUnit.SECONDS)) {
            System.out.println("TIMEOUT");
        }
        driver.stop();
        System.out.flush();
        System.exit(0);
    }
}
