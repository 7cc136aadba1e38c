//! `org.apache.mesos.MesosExecutorDriver`'s native methods.
