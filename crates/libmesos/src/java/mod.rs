//! The JNI boundary: Java objects in and out, panics and exceptions kept on
//! their own side, and the process-wide pieces (the JVM handle, the tokio
//! runtime, logging).
//!
//! Invariants:
//! - no panic unwinds into the JVM: every export runs inside [`guard`];
//! - a Java exception raised by a callback is described, cleared, and
//!   aborts the driver (as libmesos does); one raised by a lookup inside an
//!   export is left pending, so the Java caller sees it;
//! - no Rust lock is held while Java code runs (callbacks re-enter the
//!   driver: Spark launches tasks from inside `resourceOffers`);
//! - drivers are found by an id stored in the Java object's `__driver`
//!   field, never by a raw pointer, so a stale or forged value is an error,
//!   not memory corruption.

pub(crate) mod executor;
mod queue;
pub(crate) mod scheduler;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use jni::objects::{GlobalRef, JByteArray, JClass, JObject, JValue};
use jni::sys::{JNI_VERSION_1_8, jint, jobject};
use jni::{JNIEnv, JavaVM};
use tracing::{error, info};

use crate::convert;
use crate::scheduler::decode_or_log;
use crate::status::DriverStatus;

/// Errors inside an export or a callback.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JniError {
    /// A JNI call failed (often with a Java exception pending).
    #[error("jni: {0}")]
    Jni(#[from] jni::errors::Error),
    /// Anything else, in words.
    #[error("{0}")]
    Other(String),
}

pub(crate) type JniResult<T> = Result<T, JniError>;

static JVM: OnceLock<JavaVM> = OnceLock::new();
static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

/// Environment variable with a `tracing` filter for the library's log
/// (standard error), default `info`.
pub const LOG_ENV: &str = "AGORA_LIBMESOS_LOG";
/// Environment variable: seconds a driver keeps trying to register before
/// it reports an error (default 30).
pub const CONNECT_TIMEOUT_ENV: &str = "AGORA_LIBMESOS_CONNECT_TIMEOUT";

fn init_logging() {
    let filter = std::env::var(LOG_ENV).unwrap_or_else(|_| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A host process may already have a subscriber: then it gets our events.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// The shared tokio runtime the drivers' sessions run on.
pub(crate) fn runtime() -> JniResult<&'static tokio::runtime::Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("libmesos")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the libmesos runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| JniError::Other(e.clone()))
}

pub(crate) fn connect_timeout() -> Duration {
    std::env::var(CONNECT_TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .and_then(agora_core::time::duration_from_secs)
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(30))
}

pub(crate) fn remember_vm(env: &JNIEnv<'_>) -> JniResult<&'static JavaVM> {
    if let Some(vm) = JVM.get() {
        return Ok(vm);
    }
    let vm = env.get_java_vm()?;
    Ok(JVM.get_or_init(|| vm))
}

/// Runs an export's body: a panic becomes a `RuntimeException`, an error
/// is logged (and a Java exception it left pending is thrown on return).
pub(crate) fn guard<'local, T>(
    env: &mut JNIEnv<'local>,
    what: &str,
    fallback: T,
    body: impl FnOnce(&mut JNIEnv<'local>) -> JniResult<T>,
) -> T {
    match catch_unwind(AssertUnwindSafe(|| body(env))) {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => {
            error!(call = what, error = %e, "libmesos call failed");
            if !env.exception_check().unwrap_or(true) {
                let _ = env.throw_new(
                    "java/lang/IllegalStateException",
                    format!("libmesos: {what} failed: {e}"),
                );
            }
            fallback
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            error!(call = what, %message, "libmesos panicked");
            if !env.exception_check().unwrap_or(true) {
                let _ = env.throw_new(
                    "java/lang/RuntimeException",
                    format!("libmesos: internal error in {what}: {message}"),
                );
            }
            fallback
        }
    }
}

/// The `Protos.Status` constant for `status`, as a raw local reference.
pub(crate) fn status_object(env: &mut JNIEnv<'_>, status: DriverStatus) -> JniResult<jobject> {
    let value = env.get_static_field(
        "org/apache/mesos/Protos$Status",
        status.java_name(),
        "Lorg/apache/mesos/Protos$Status;",
    )?;
    Ok(value.l()?.into_raw())
}

/// The driver id kept in a Java driver's `__driver` field.
pub(crate) fn driver_id(env: &mut JNIEnv<'_>, this: &JObject<'_>) -> JniResult<i64> {
    Ok(env.get_field(this, "__driver", "J")?.j()?)
}

/// A Java protobuf message's bytes (`toByteArray()`); `None` for null.
pub(crate) fn message_bytes(
    env: &mut JNIEnv<'_>,
    message: &JObject<'_>,
) -> JniResult<Option<Vec<u8>>> {
    if message.is_null() {
        return Ok(None);
    }
    let array = env.call_method(message, "toByteArray", "()[B", &[])?.l()?;
    let array = JByteArray::from(array);
    let bytes = env.convert_byte_array(&array)?;
    env.delete_local_ref(array)?;
    Ok(Some(bytes))
}

/// The bytes of every message in a `java.util.Collection`; null is empty.
pub(crate) fn collection_bytes(
    env: &mut JNIEnv<'_>,
    collection: &JObject<'_>,
) -> JniResult<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    if collection.is_null() {
        return Ok(out);
    }
    let iterator = env
        .call_method(collection, "iterator", "()Ljava/util/Iterator;", &[])?
        .l()?;
    while env.call_method(&iterator, "hasNext", "()Z", &[])?.z()? {
        let item = env
            .call_method(&iterator, "next", "()Ljava/lang/Object;", &[])?
            .l()?;
        if let Some(bytes) = message_bytes(env, &item)? {
            out.push(bytes);
        }
        env.delete_local_ref(item)?;
    }
    env.delete_local_ref(iterator)?;
    Ok(out)
}

/// A Java `byte[]` argument's contents; null is empty.
pub(crate) fn byte_array(env: &mut JNIEnv<'_>, array: &JByteArray<'_>) -> JniResult<Vec<u8>> {
    if array.is_null() {
        return Ok(Vec::new());
    }
    Ok(env.convert_byte_array(array)?)
}

/// A class looked up now (on a Java thread, with its class loader) and
/// kept for native threads, whose class loader cannot see it.
pub(crate) fn class_ref(env: &mut JNIEnv<'_>, name: &str) -> JniResult<GlobalRef> {
    let class = env.find_class(name)?;
    let global = env.new_global_ref(&class)?;
    env.delete_local_ref(class)?;
    Ok(global)
}

/// `Class.parseFrom(bytes)` for one of Mesos' protobuf classes.
pub(crate) fn parse_java<'local>(
    env: &mut JNIEnv<'local>,
    class: &GlobalRef,
    java_type: &str,
    bytes: &[u8],
) -> JniResult<JObject<'local>> {
    let array = env.byte_array_from_slice(bytes)?;
    let signature = format!("([B)L{java_type};");
    let value = env
        .call_static_method(class, "parseFrom", signature, &[JValue::Object(&array)])?
        .l()?;
    env.delete_local_ref(array)?;
    Ok(value)
}

/// Clears a pending Java exception after describing it on standard error;
/// returns whether there was one.
pub(crate) fn clear_exception(env: &mut JNIEnv<'_>) -> bool {
    if env.exception_check().unwrap_or(false) {
        let _ = env.exception_describe();
        let _ = env.exception_clear();
        true
    } else {
        false
    }
}

/// The drivers of one kind, found by the id kept in the Java object's
/// `__driver` field (never by a raw pointer: a stale or forged id is an
/// error, not memory corruption).
pub(crate) struct Registry<E> {
    /// "scheduler" or "executor", for errors.
    kind: &'static str,
    next: AtomicI64,
    entries: Mutex<Option<HashMap<i64, Arc<E>>>>,
}

impl<E> Registry<E> {
    pub(crate) const fn new(kind: &'static str) -> Self {
        Self {
            kind,
            next: AtomicI64::new(1),
            entries: Mutex::new(None),
        }
    }

    /// Keeps `entry`; returns the id for the Java object's fields.
    pub(crate) fn insert(&self, entry: E) -> i64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(HashMap::new)
            .insert(id, Arc::new(entry));
        id
    }

    /// The entry of the Java driver `this`.
    pub(crate) fn lookup(&self, env: &mut JNIEnv<'_>, this: &JObject<'_>) -> JniResult<Arc<E>> {
        let kind = self.kind;
        let id = driver_id(env, this)?;
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|m| m.get(&id).cloned())
            .ok_or_else(|| {
                JniError::Other(format!(
                    "no {kind} driver {id} (not initialized, or finalized)"
                ))
            })
    }

    /// Forgets the entry of the Java driver `this` (its `finalize`).
    pub(crate) fn remove(&self, env: &mut JNIEnv<'_>, this: &JObject<'_>) -> JniResult<()> {
        let id = driver_id(env, this)?;
        let removed = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .and_then(|m| m.remove(&id));
        // Dropped outside the registry's lock: a driver's drop may block
        // briefly on its session.
        drop(removed);
        Ok(())
    }
}

impl<D: CallbackTarget, J: Send + 'static> Registry<Entry<D, J>> {
    /// `initialize()`: keeps a new driver for the Java object `this` and
    /// writes its id into `__driver` and `own_field` (`__scheduler` or
    /// `__executor`, which the Java class declares too).
    pub(crate) fn register(
        &self,
        env: &mut JNIEnv<'_>,
        this: &JObject<'_>,
        entry: Entry<D, J>,
        own_field: &str,
    ) -> JniResult<()> {
        let id = self.insert(entry);
        env.set_field(this, "__driver", "J", JValue::Long(id))?;
        env.set_field(this, own_field, "J", JValue::Long(id))?;
        Ok(())
    }

    /// `start()`: starts the callback thread (once), then the driver with
    /// `start` on the shared runtime; answers its status.
    pub(crate) fn start(
        &self,
        env: &mut JNIEnv<'_>,
        this: &JObject<'_>,
        deliver: fn(&mut JNIEnv<'_>, &J, &D::Callback) -> JniResult<()>,
        start: impl FnOnce(&D, &tokio::runtime::Handle) -> DriverStatus,
    ) -> jobject {
        guard(env, "start", std::ptr::null_mut(), |env| {
            let entry = self.lookup(env, this)?;
            entry.start_callbacks(&format!("libmesos-{}-callbacks", self.kind), deliver)?;
            let status = start(&entry.driver, runtime()?.handle());
            status_object(env, status)
        })
    }

    /// Runs `call` on the driver of `this` (an export named `what`) and
    /// answers its status as a Java object.
    pub(crate) fn with_driver(
        &self,
        env: &mut JNIEnv<'_>,
        this: &JObject<'_>,
        what: &str,
        call: impl FnOnce(&mut JNIEnv<'_>, &D) -> JniResult<DriverStatus>,
    ) -> jobject {
        guard(env, what, std::ptr::null_mut(), |env| {
            let entry = self.lookup(env, this)?;
            let status = call(env, &entry.driver)?;
            status_object(env, status)
        })
    }
}

/// A Java protobuf argument decoded as the v0 form of `T`; `None` when null
/// (or malformed, which is logged).
pub(crate) fn decode_one<T: convert::Pair>(
    env: &mut JNIEnv<'_>,
    object: &JObject<'_>,
) -> JniResult<Option<T::V0>> {
    Ok(message_bytes(env, object)?.and_then(|b| decode_or_log::<T>(&b)))
}

/// Every message of a collection argument decoded as the v0 form of `T`.
pub(crate) fn decode_all<T: convert::Pair>(items: Vec<Vec<u8>>) -> Vec<T::V0> {
    items.iter().filter_map(|b| decode_or_log::<T>(b)).collect()
}

/// An argument the call cannot do without.
pub(crate) fn required<T>(value: Option<T>, what: &str) -> JniResult<T> {
    value.ok_or_else(|| JniError::Other(format!("{what} is null or malformed")))
}

/// A driver as its callback thread sees it.
pub(crate) trait CallbackTarget: Send + Sync + 'static {
    /// A call to the Java application, in v0 form.
    type Callback: Send + 'static;
    /// Whether the driver is over (stopped or aborted): the thread ends
    /// once nothing is queued.
    fn ended(&self) -> bool;
    /// Whether `callback` may be delivered now.
    fn delivers(&self, callback: &Self::Callback) -> bool;
    /// The Java method's name, for logs.
    fn name(callback: &Self::Callback) -> &'static str;
    /// Runs after `callback` returned normally (e.g. abort after `error`).
    fn delivered(&self, callback: &Self::Callback);
    /// A callback threw or could not be delivered: the driver aborts.
    fn failed(&self);
}

/// One driver in a [`Registry`]: the driver, and what its callback thread
/// needs until `start` takes it.
pub(crate) struct Entry<D: CallbackTarget, J> {
    pub(crate) driver: Arc<D>,
    pending: Mutex<Option<(Receiver<D::Callback>, J)>>,
}

impl<D: CallbackTarget, J: Send + 'static> Entry<D, J> {
    pub(crate) fn new(driver: D, callbacks: Receiver<D::Callback>, java: J) -> Self {
        Self {
            driver: Arc::new(driver),
            pending: Mutex::new(Some((callbacks, java))),
        }
    }

    /// Starts the callback thread, once (later calls do nothing). Callbacks
    /// go to Java through `deliver`, in order, one at a time, on a thread
    /// attached to the JVM as a daemon (it never keeps the JVM alive); no
    /// lock is held while Java runs, so callbacks may call the driver.
    pub(crate) fn start_callbacks(
        &self,
        thread_name: &str,
        deliver: fn(&mut JNIEnv<'_>, &J, &D::Callback) -> JniResult<()>,
    ) -> JniResult<()> {
        let Some((rx, java)) = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Ok(());
        };
        let driver = self.driver.clone();
        std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || callback_loop(driver, rx, java, deliver))
            .map_err(|e| JniError::Other(format!("cannot start the callback thread: {e}")))?;
        Ok(())
    }
}

/// The callback thread's body: ends once the driver is over (releasing
/// the Java references it holds) and nothing is left queued, or every
/// sender is gone. Each wait is bounded, so an ended driver is noticed
/// within half a second.
fn callback_loop<D: CallbackTarget, J>(
    driver: Arc<D>,
    rx: Receiver<D::Callback>,
    java: J,
    deliver: fn(&mut JNIEnv<'_>, &J, &D::Callback) -> JniResult<()>,
) {
    let Some(vm) = JVM.get() else {
        error!("no JVM to deliver callbacks on");
        driver.failed();
        return;
    };
    let mut env = match vm.attach_current_thread_as_daemon() {
        Ok(env) => env,
        Err(e) => {
            error!(error = %e, "cannot attach the callback thread to the JVM");
            driver.failed();
            return;
        }
    };
    queue::run(
        &rx,
        Duration::from_millis(500),
        || driver.ended(),
        |callback| {
            if !driver.delivers(&callback) {
                return;
            }
            let name = D::name(&callback);
            let result = env.with_local_frame(16, |env| deliver(env, &java, &callback));
            match result {
                Ok(()) => driver.delivered(&callback),
                Err(e) => {
                    if clear_exception(&mut env) {
                        error!(
                            callback = name,
                            "the application's callback threw; aborting the driver"
                        );
                    } else {
                        error!(callback = name, error = %e, "cannot deliver a callback; aborting the driver");
                    }
                    driver.failed();
                }
            }
        },
    );
}

/// Marks `MesosNativeLibrary` loaded: its `load()` never sets the flag
/// itself, and `version()` refuses to answer without it.
fn mark_library_loaded(env: &mut JNIEnv<'_>) {
    let result = (|| -> JniResult<()> {
        let class = env.find_class("org/apache/mesos/MesosNativeLibrary")?;
        let field = env.get_static_field_id(&class, "loaded", "Z")?;
        env.set_static_field(&class, field, JValue::Bool(1))?;
        Ok(())
    })();
    if result.is_err() {
        // Loaded by something other than Mesos' bindings: nothing to mark.
        clear_exception(env);
    }
}

/// Called by the JVM when `System.load` loads the library.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn JNI_OnLoad(
    vm: *mut jni::sys::JavaVM,
    _reserved: *mut std::ffi::c_void,
) -> jint {
    init_logging();
    let loaded = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the JVM passes a valid JavaVM pointer to JNI_OnLoad, and
        // it stays valid for the life of the process.
        let vm = unsafe { JavaVM::from_raw(vm) }.ok()?;
        let mut env = vm.get_env().ok()?;
        mark_library_loaded(&mut env);
        let _ = JVM.set(vm);
        Some(())
    }));
    match loaded {
        Ok(Some(())) => info!(version = env!("CARGO_PKG_VERSION"), "agora libmesos loaded"),
        _ => error!("agora libmesos could not find the JVM at load time"),
    }
    JNI_VERSION_1_8
}

/// `MesosNativeLibrary._version()`: the Mesos API level this library
/// implements (that of the bindings Spark 3.5 ships, 1.4.3).
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "system" fn Java_org_apache_mesos_MesosNativeLibrary__1version<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
) -> jobject {
    guard(&mut env, "version", std::ptr::null_mut(), |env| {
        let version = env.new_object(
            "org/apache/mesos/MesosNativeLibrary$Version",
            "(JJJ)V",
            &[JValue::Long(1), JValue::Long(4), JValue::Long(3)],
        )?;
        Ok(version.into_raw())
    })
}
