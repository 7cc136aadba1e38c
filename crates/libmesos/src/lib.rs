//! `libmesos.so`: Mesos' Java drivers over Agora.
//!
//! JVM frameworks (Spark above all) reach Mesos through
//! `org.apache.mesos.MesosSchedulerDriver` and `MesosExecutorDriver`, whose
//! `native` methods live in the library named by `MESOS_NATIVE_JAVA_LIBRARY`.
//! This crate is that library, written over Agora's gRPC APIs:
//!
//! - [`convert`]: Mesos v0 messages (Java's) to and from Agora's v1 types;
//! - [`status`]: the drivers' life cycle rules (pure);
//! - [`master`]: master strings (`host:port`, `zk://`, `file://`);
//! - [`scheduler`]: the scheduler driver, with no JNI in it;
//! - [`executor`]: the executor driver, with no JNI in it;
//! - `java`: the exported JNI functions, the only `unsafe` code in Agora.

pub mod convert;
pub mod executor;
pub mod master;
pub mod scheduler;
pub mod status;
// JNI exports are found by their symbol names, not by Rust paths, and the
// names are fixed by Java's mangling rules.
#[allow(unreachable_pub, non_snake_case)]
mod java;
