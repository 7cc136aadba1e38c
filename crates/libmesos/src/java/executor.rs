//! `org.apache.mesos.MesosExecutorDriver`'s native methods, and the thread
//! that calls the Java `Executor` back.

use agora_proto::v1;
use jni::JNIEnv;
use jni::objects::{GlobalRef, JByteArray, JObject, JValue};
use jni::sys::jobject;
use prost::Message;

use super::{
    CallbackTarget, JniResult, Registry, byte_array, class_ref, connect_timeout, decode_one, guard,
    parse_java, remember_vm, required,
};
use crate::executor::{Callback, ExecutorConfig, ExecutorDriver};
use crate::status::DriverStatus;

/// What the callback thread needs from Java, looked up on a Java thread.
struct JavaSide {
    driver: GlobalRef,
    executor: GlobalRef,
    executor_info: GlobalRef,
    framework_info: GlobalRef,
    slave_info: GlobalRef,
    task_info: GlobalRef,
    task_id: GlobalRef,
}

type Entry = super::Entry<ExecutorDriver, JavaSide>;

static DRIVERS: Registry<Entry> = Registry::new("executor");

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosExecutorDriver_initialize<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
) {
    guard(&mut env, "initialize", (), |env| {
        remember_vm(env)?;
        let executor = env
            .get_field(&this, "executor", "Lorg/apache/mesos/Executor;")?
            .l()?;
        let java = JavaSide {
            driver: env.new_global_ref(&this)?,
            executor: env.new_global_ref(&executor)?,
            executor_info: class_ref(env, "org/apache/mesos/Protos$ExecutorInfo")?,
            framework_info: class_ref(env, "org/apache/mesos/Protos$FrameworkInfo")?,
            slave_info: class_ref(env, "org/apache/mesos/Protos$SlaveInfo")?,
            task_info: class_ref(env, "org/apache/mesos/Protos$TaskInfo")?,
            task_id: class_ref(env, "org/apache/mesos/Protos$TaskID")?,
        };
        // A missing variable is reported through `error(...)` once started,
        // as the application expects to hear of it there.
        let config = ExecutorConfig::from_env(|name| std::env::var(name).ok(), connect_timeout());
        let (tx, rx) = std::sync::mpsc::channel();
        let driver = ExecutorDriver::new(config, tx);
        DRIVERS.register(env, &this, Entry::new(driver, rx, java), "__executor")
    })
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosExecutorDriver_finalize<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
) {
    guard(&mut env, "finalize", (), |env| DRIVERS.remove(env, &this))
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosExecutorDriver_start<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
) -> jobject {
    DRIVERS.start(&mut env, &this, deliver, ExecutorDriver::start)
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosExecutorDriver_stop<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "stop", |_, d| Ok(d.stop()))
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosExecutorDriver_abort<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "abort", |_, d| Ok(d.abort()))
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosExecutorDriver_join<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "join", |_, d| Ok(d.join()))
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosExecutorDriver_sendStatusUpdate<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
    status: JObject<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "sendStatusUpdate", |env, d| {
        let status = required(
            decode_one::<v1::TaskStatus>(env, &status)?,
            "the TaskStatus",
        )?;
        Ok(d.send_status_update(&status))
    })
}

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosExecutorDriver_sendFrameworkMessage<'local>(
    mut env: JNIEnv<'local>,
    this: JObject<'local>,
    data: JByteArray<'local>,
) -> jobject {
    DRIVERS.with_driver(&mut env, &this, "sendFrameworkMessage", |env, d| {
        let data = byte_array(env, &data)?;
        Ok(d.send_framework_message(data))
    })
}

impl CallbackTarget for ExecutorDriver {
    type Callback = Callback;

    fn ended(&self) -> bool {
        matches!(self.status(), DriverStatus::Stopped | DriverStatus::Aborted)
    }

    fn delivers(&self, callback: &Callback) -> bool {
        ExecutorDriver::delivers(self, callback)
    }

    fn name(callback: &Callback) -> &'static str {
        callback.name()
    }

    fn delivered(&self, callback: &Callback) {
        match callback {
            Callback::Error(_) => self.abort_after_error(),
            Callback::Shutdown => self.stop_after_shutdown(),
            _ => {}
        }
    }

    fn failed(&self) {
        self.abort_after_error();
    }
}

const DRIVER_SIG: &str = "Lorg/apache/mesos/ExecutorDriver;";

fn deliver(env: &mut JNIEnv<'_>, java: &JavaSide, callback: &Callback) -> JniResult<()> {
    let driver = java.driver.as_obj();
    let executor = java.executor.as_obj();
    match callback {
        Callback::Registered {
            executor: info,
            framework,
            slave,
        } => {
            let info = parse_java(
                env,
                &java.executor_info,
                "org/apache/mesos/Protos$ExecutorInfo",
                &info.encode_to_vec(),
            )?;
            let framework = parse_java(
                env,
                &java.framework_info,
                "org/apache/mesos/Protos$FrameworkInfo",
                &framework.encode_to_vec(),
            )?;
            let slave = parse_java(
                env,
                &java.slave_info,
                "org/apache/mesos/Protos$SlaveInfo",
                &slave.encode_to_vec(),
            )?;
            env.call_method(
                executor,
                "registered",
                format!(
                    "({DRIVER_SIG}Lorg/apache/mesos/Protos$ExecutorInfo;Lorg/apache/mesos/Protos$FrameworkInfo;Lorg/apache/mesos/Protos$SlaveInfo;)V"
                ),
                &[
                    JValue::Object(driver),
                    JValue::Object(&info),
                    JValue::Object(&framework),
                    JValue::Object(&slave),
                ],
            )?;
        }
        Callback::Reregistered(slave) => {
            let slave = parse_java(
                env,
                &java.slave_info,
                "org/apache/mesos/Protos$SlaveInfo",
                &slave.encode_to_vec(),
            )?;
            env.call_method(
                executor,
                "reregistered",
                format!("({DRIVER_SIG}Lorg/apache/mesos/Protos$SlaveInfo;)V"),
                &[JValue::Object(driver), JValue::Object(&slave)],
            )?;
        }
        Callback::Disconnected => {
            env.call_method(
                executor,
                "disconnected",
                format!("({DRIVER_SIG})V"),
                &[JValue::Object(driver)],
            )?;
        }
        Callback::Launch(task) => {
            let task = parse_java(
                env,
                &java.task_info,
                "org/apache/mesos/Protos$TaskInfo",
                &task.encode_to_vec(),
            )?;
            env.call_method(
                executor,
                "launchTask",
                format!("({DRIVER_SIG}Lorg/apache/mesos/Protos$TaskInfo;)V"),
                &[JValue::Object(driver), JValue::Object(&task)],
            )?;
        }
        Callback::Kill(task_id) => {
            let task_id = parse_java(
                env,
                &java.task_id,
                "org/apache/mesos/Protos$TaskID",
                &task_id.encode_to_vec(),
            )?;
            env.call_method(
                executor,
                "killTask",
                format!("({DRIVER_SIG}Lorg/apache/mesos/Protos$TaskID;)V"),
                &[JValue::Object(driver), JValue::Object(&task_id)],
            )?;
        }
        Callback::Message(data) => {
            let data = env.byte_array_from_slice(data)?;
            env.call_method(
                executor,
                "frameworkMessage",
                format!("({DRIVER_SIG}[B)V"),
                &[JValue::Object(driver), JValue::Object(&data)],
            )?;
        }
        Callback::Shutdown => {
            env.call_method(
                executor,
                "shutdown",
                format!("({DRIVER_SIG})V"),
                &[JValue::Object(driver)],
            )?;
        }
        Callback::Error(message) => {
            let text = env.new_string(message)?;
            env.call_method(
                executor,
                "error",
                format!("({DRIVER_SIG}Ljava/lang/String;)V"),
                &[JValue::Object(driver), JValue::Object(&text)],
            )?;
        }
    }
    Ok(())
}
