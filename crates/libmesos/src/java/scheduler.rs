//! `org.apache.mesos.MesosSchedulerDriver`'s native methods, and the thread
//! that calls the Java `Scheduler` back.

use agora_proto::mesos_v0 as v0;
use agora_proto::v1;
use jni::JNIEnv;
use jni::objects::{GlobalRef, JByteArray, JObject, JValue};
use jni::sys::{jboolean, jobject};
use prost::Message;
use tracing::error;

use super::{
    CallbackTarget, JniError, JniResult, Registry, byte_array, class_ref, collection_bytes,
    connect_timeout, decode_all, decode_one, guard, parse_java, remember_vm, required,
};
use crate::convert;
use crate::scheduler::{Callback, DriverConfig, SchedulerDriver};
use crate::status::DriverStatus;

/// What the callback thread needs from Java, looked up on a Java thread.
struct JavaSide {
    driver: GlobalRef,
    scheduler: GlobalRef,
    array_list: GlobalRef,
    framework_id: GlobalRef,
    master_info: GlobalRef,
    offer: GlobalRef,
    offer_id: GlobalRef,
    task_status: GlobalRef,
    executor_id: GlobalRef,
    slave_id: GlobalRef,
}

type Entry = super::Entry<SchedulerDriver, JavaSide>;

static DRIVERS: Registry<Entry> = Registry::new("scheduler");

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_initialize<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
) {
    guard(&mut env, "initialize", (), |env| {
        remember_vm(env)?;
        let scheduler = env
            .get_field(&this, "scheduler", "Lorg/apache/mesos/Scheduler;")?
            .l()?;
        let framework = env
            .get_field(
                &this,
                "framework",
                "Lorg/apache/mesos/Protos$FrameworkInfo;",
            )?
            .l()?;
        let master = env.get_field(&this, "master", "Ljava/lang/String;")?.l()?;
        let implicit = env.get_field(&this, "implicitAcknowledgements", "Z")?.z()?;
        let credential = credential_of(env, &this)?;
        let master: String = if master.is_null() {
            String::new()
        } else {
            env.get_string(&master.into())?.into()
        };
        let framework_v0 = required(
            decode_one::<v1::FrameworkInfo>(env, &framework)?,
            "the FrameworkInfo",
        )?;
        let framework: v1::FrameworkInfo =
            convert::from_v0(&framework_v0).map_err(|e| JniError::Other(e.to_string()))?;
        let java = JavaSide {
            driver: env.new_global_ref(&this)?,
            scheduler: env.new_global_ref(&scheduler)?,
            array_list: class_ref(env, "java/util/ArrayList")?,
            framework_id: class_ref(env, "org/apache/mesos/Protos$FrameworkID")?,
            master_info: class_ref(env, "org/apache/mesos/Protos$MasterInfo")?,
            offer: class_ref(env, "org/apache/mesos/Protos$Offer")?,
            offer_id: class_ref(env, "org/apache/mesos/Protos$OfferID")?,
            task_status: class_ref(env, "org/apache/mesos/Protos$TaskStatus")?,
            executor_id: class_ref(env, "org/apache/mesos/Protos$ExecutorID")?,
            slave_id: class_ref(env, "org/apache/mesos/Protos$SlaveID")?,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let driver = SchedulerDriver::new(
            DriverConfig {
                framework,
                master,
                implicit_acknowledgements: implicit,
                connect_timeout: connect_timeout(),
                credential,
            },
            tx,
        );
        DRIVERS.register(env, &this, Entry::new(driver, rx, java), "__scheduler")
    })
}

/// The driver's `credential` field (the constructors that take a
/// `Protos.Credential`; null for the others). A `Protos.Credential` without
/// a secret is not sent: it could not authenticate.
fn credential_of(
    env: &mut JNIEnv<'_>,
    this: &JObject<'_>,
) -> JniResult<Option<agora_auth::credentials::Credential>> {
    let field = env.get_field(this, "credential", "Lorg/apache/mesos/Protos$Credential;");
    let object = match field {
        Ok(value) => value.l()?,
        Err(_) => {
            // A driver class without the field: no credential.
            env.exception_clear()?;
            return Ok(None);
        }
    };
    let Some(bytes) = super::message_bytes(env, &object)? else {
        return Ok(None);
    };
    let credential = match v0::Credential::decode(bytes.as_slice()) {
        Ok(credential) => credential,
        Err(e) => {
            error!(error = %e, "the driver's Credential cannot be decoded; registering without it");
            return Ok(None);
        }
    };
    Ok(credential
        .secret
        .filter(|secret| !secret.is_empty())
        .map(|secret| agora_auth::credentials::Credential::new(credential.principal, secret)))
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_finalize<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
) {
    guard(&mut env, "finalize", (), |env| DRIVERS.remove(env, &this))
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_start<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
) -> jobject {
    DRIVERS.start(&mut env, &this, deliver, SchedulerDriver::start)
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_stop<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
    failover: jboolean,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "stop", |_, d| Ok(d.stop(failover != 0)))
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_abort<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "abort", |_, d| Ok(d.abort()))
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_join<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "join", |_, d| Ok(d.join()))
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_requestResources<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
    requests: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "requestResources", |env, d| {
        let requests: Vec<v0::Request> = collection_bytes(env, &requests)?
            .iter()
            .filter_map(|b| v0::Request::decode(b.as_slice()).ok())
            .collect();
        Ok(d.request_resources(&requests))
    })
}

/// `launchTasks(OfferID, Collection<TaskInfo>, Filters)`.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_launchTasks__Lorg_apache_mesos_Protos_00024OfferID_2Ljava_util_Collection_2Lorg_apache_mesos_Protos_00024Filters_2<
    'local,
>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
    offer_id: JObject<'local>,
    tasks: JObject<'local>,
    filters: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "launchTasks", |env, d| {
        let offer_ids: Vec<_> = decode_one::<v1::OfferId>(env, &offer_id)?
            .into_iter()
            .collect();
        let tasks = decode_all::<v1::TaskInfo>(collection_bytes(env, &tasks)?);
        let filters = decode_one::<v1::Filters>(env, &filters)?;
        Ok(d.launch_tasks(&offer_ids, &tasks, filters.as_ref()))
    })
}

/// `launchTasks(Collection<OfferID>, Collection<TaskInfo>, Filters)`.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_launchTasks__Ljava_util_Collection_2Ljava_util_Collection_2Lorg_apache_mesos_Protos_00024Filters_2<
    'local,
>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
    offer_ids: JObject<'local>,
    tasks: JObject<'local>,
    filters: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "launchTasks", |env, d| {
        let offer_ids = decode_all::<v1::OfferId>(collection_bytes(env, &offer_ids)?);
        let tasks = decode_all::<v1::TaskInfo>(collection_bytes(env, &tasks)?);
        let filters = decode_one::<v1::Filters>(env, &filters)?;
        Ok(d.launch_tasks(&offer_ids, &tasks, filters.as_ref()))
    })
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_acceptOffers<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
    offer_ids: JObject<'local>,
    operations: JObject<'local>,
    filters: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "acceptOffers", |env, d| {
        let offer_ids = decode_all::<v1::OfferId>(collection_bytes(env, &offer_ids)?);
        let operations: Vec<v0::offer::Operation> = collection_bytes(env, &operations)?
            .iter()
            .filter_map(|b| match v0::offer::Operation::decode(b.as_slice()) {
                Ok(op) => Some(op),
                Err(e) => {
                    error!(error = %e, "malformed Offer.Operation from Java; ignored");
                    None
                }
            })
            .collect();
        let filters = decode_one::<v1::Filters>(env, &filters)?;
        Ok(d.accept_offers(&offer_ids, &operations, filters.as_ref()))
    })
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_declineOffer<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
    offer_id: JObject<'local>,
    filters: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "declineOffer", |env, d| {
        let offer_id = required(decode_one::<v1::OfferId>(env, &offer_id)?, "the OfferID")?;
        let filters = decode_one::<v1::Filters>(env, &filters)?;
        Ok(d.decline_offer(&offer_id, filters.as_ref()))
    })
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_reviveOffers<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(
        &mut env,
        &this,
        "reviveOffers",
        |_, d| Ok(d.revive_offers()),
    )
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_suppressOffers<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "suppressOffers", |_, d| {
        Ok(d.suppress_offers())
    })
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_killTask<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
    task_id: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "killTask", |env, d| {
        let task_id = required(decode_one::<v1::TaskId>(env, &task_id)?, "the TaskID")?;
        Ok(d.kill_task(&task_id))
    })
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_acknowledgeStatusUpdate<
    'local,
>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
    status: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "acknowledgeStatusUpdate", |env, d| {
        let status = required(
            decode_one::<v1::TaskStatus>(env, &status)?,
            "the TaskStatus",
        )?;
        Ok(d.acknowledge_status_update(&status))
    })
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_sendFrameworkMessage<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
    executor_id: JObject<'local>,
    slave_id: JObject<'local>,
    data: JByteArray<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "sendFrameworkMessage", |env, d| {
        let executor_id = required(
            decode_one::<v1::ExecutorId>(env, &executor_id)?,
            "the ExecutorID",
        )?;
        let slave_id = required(decode_one::<v1::AgentId>(env, &slave_id)?, "the SlaveID")?;
        let data = byte_array(env, &data)?;
        Ok(d.send_framework_message(&executor_id, &slave_id, data))
    })
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosSchedulerDriver_reconcileTasks<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
    statuses: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "reconcileTasks", |env, d| {
        let statuses = decode_all::<v1::TaskStatus>(collection_bytes(env, &statuses)?);
        Ok(d.reconcile_tasks(&statuses))
    })
}

impl CallbackTarget for SchedulerDriver {
    type Callback = Callback;

    fn ended(&self) -> bool {
        matches!(self.status(), DriverStatus::Stopped | DriverStatus::Aborted)
    }

    fn delivers(&self, callback: &Callback) -> bool {
        SchedulerDriver::delivers(self, callback)
    }

    fn name(callback: &Callback) -> &'static str {
        match callback {
            Callback::Registered { .. } => "registered",
            Callback::Reregistered(_) => "reregistered",
            Callback::Offers(_) => "resourceOffers",
            Callback::Rescinded(_) => "offerRescinded",
            Callback::Status(_) => "statusUpdate",
            Callback::Message { .. } => "frameworkMessage",
            Callback::Disconnected => "disconnected",
            Callback::SlaveLost(_) => "slaveLost",
            Callback::ExecutorLost { .. } => "executorLost",
            Callback::Error(_) => "error",
        }
    }

    fn delivered(&self, _: &Callback) {
        // An error aborted the driver before it was queued; nothing to do.
    }

    fn failed(&self) {
        self.abort_after_error();
    }
}

const DRIVER_SIG: &str = "Lorg/apache/mesos/SchedulerDriver;";

fn deliver(env: &mut JNIEnv<'_>, java: &JavaSide, callback: &Callback) -> JniResult<()> {
    let driver = java.driver.as_obj();
    let scheduler = java.scheduler.as_obj();
    match callback {
        Callback::Registered {
            framework_id,
            master,
        } => {
            let id = parse_java(
                env,
                &java.framework_id,
                "org/apache/mesos/Protos$FrameworkID",
                &framework_id.encode_to_vec(),
            )?;
            let master = parse_java(
                env,
                &java.master_info,
                "org/apache/mesos/Protos$MasterInfo",
                &master.encode_to_vec(),
            )?;
            env.call_method(
                scheduler,
                "registered",
                format!(
                    "({DRIVER_SIG}Lorg/apache/mesos/Protos$FrameworkID;Lorg/apache/mesos/Protos$MasterInfo;)V"
                ),
                &[
                    JValue::Object(driver),
                    JValue::Object(&id),
                    JValue::Object(&master),
                ],
            )?;
        }
        Callback::Reregistered(master) => {
            let master = parse_java(
                env,
                &java.master_info,
                "org/apache/mesos/Protos$MasterInfo",
                &master.encode_to_vec(),
            )?;
            env.call_method(
                scheduler,
                "reregistered",
                format!("({DRIVER_SIG}Lorg/apache/mesos/Protos$MasterInfo;)V"),
                &[JValue::Object(driver), JValue::Object(&master)],
            )?;
        }
        Callback::Offers(offers) => {
            let list = env.new_object(&java.array_list, "()V", &[])?;
            for offer in offers {
                let offer = parse_java(
                    env,
                    &java.offer,
                    "org/apache/mesos/Protos$Offer",
                    &offer.encode_to_vec(),
                )?;
                env.call_method(
                    &list,
                    "add",
                    "(Ljava/lang/Object;)Z",
                    &[JValue::Object(&offer)],
                )?;
                env.delete_local_ref(offer)?;
            }
            env.call_method(
                scheduler,
                "resourceOffers",
                format!("({DRIVER_SIG}Ljava/util/List;)V"),
                &[JValue::Object(driver), JValue::Object(&list)],
            )?;
        }
        Callback::Rescinded(offer_id) => {
            let id = parse_java(
                env,
                &java.offer_id,
                "org/apache/mesos/Protos$OfferID",
                &offer_id.encode_to_vec(),
            )?;
            env.call_method(
                scheduler,
                "offerRescinded",
                format!("({DRIVER_SIG}Lorg/apache/mesos/Protos$OfferID;)V"),
                &[JValue::Object(driver), JValue::Object(&id)],
            )?;
        }
        Callback::Status(status) => {
            let status = parse_java(
                env,
                &java.task_status,
                "org/apache/mesos/Protos$TaskStatus",
                &status.encode_to_vec(),
            )?;
            env.call_method(
                scheduler,
                "statusUpdate",
                format!("({DRIVER_SIG}Lorg/apache/mesos/Protos$TaskStatus;)V"),
                &[JValue::Object(driver), JValue::Object(&status)],
            )?;
        }
        Callback::Message {
            executor_id,
            slave_id,
            data,
        } => {
            let executor = parse_java(
                env,
                &java.executor_id,
                "org/apache/mesos/Protos$ExecutorID",
                &executor_id.encode_to_vec(),
            )?;
            let slave = parse_java(
                env,
                &java.slave_id,
                "org/apache/mesos/Protos$SlaveID",
                &slave_id.encode_to_vec(),
            )?;
            let data = env.byte_array_from_slice(data)?;
            env.call_method(
                scheduler,
                "frameworkMessage",
                format!(
                    "({DRIVER_SIG}Lorg/apache/mesos/Protos$ExecutorID;Lorg/apache/mesos/Protos$SlaveID;[B)V"
                ),
                &[
                    JValue::Object(driver),
                    JValue::Object(&executor),
                    JValue::Object(&slave),
                    JValue::Object(&data),
                ],
            )?;
        }
        Callback::Disconnected => {
            env.call_method(
                scheduler,
                "disconnected",
                format!("({DRIVER_SIG})V"),
                &[JValue::Object(driver)],
            )?;
        }
        Callback::SlaveLost(slave_id) => {
            let slave = parse_java(
                env,
                &java.slave_id,
                "org/apache/mesos/Protos$SlaveID",
                &slave_id.encode_to_vec(),
            )?;
            env.call_method(
                scheduler,
                "slaveLost",
                format!("({DRIVER_SIG}Lorg/apache/mesos/Protos$SlaveID;)V"),
                &[JValue::Object(driver), JValue::Object(&slave)],
            )?;
        }
        Callback::ExecutorLost {
            executor_id,
            slave_id,
            status,
        } => {
            let executor = parse_java(
                env,
                &java.executor_id,
                "org/apache/mesos/Protos$ExecutorID",
                &executor_id.encode_to_vec(),
            )?;
            let slave = parse_java(
                env,
                &java.slave_id,
                "org/apache/mesos/Protos$SlaveID",
                &slave_id.encode_to_vec(),
            )?;
            env.call_method(
                scheduler,
                "executorLost",
                format!(
                    "({DRIVER_SIG}Lorg/apache/mesos/Protos$ExecutorID;Lorg/apache/mesos/Protos$SlaveID;I)V"
                ),
                &[
                    JValue::Object(driver),
                    JValue::Object(&executor),
                    JValue::Object(&slave),
                    JValue::Int(*status),
                ],
            )?;
        }
        Callback::Error(message) => {
            let text = env.new_string(message)?;
            env.call_method(
                scheduler,
                "error",
                format!("({DRIVER_SIG}Ljava/lang/String;)V"),
                &[JValue::Object(driver), JValue::Object(&text)],
            )?;
        }
    }
    Ok(())
}
