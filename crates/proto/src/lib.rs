//! Generated code for `proto/agora/v1` and `proto/mesos/v0`. Nothing but generated code lives here.
#![allow(unreachable_pub, clippy::all, missing_docs)]

/// The encoded `FileDescriptorSet` of every file compiled here (`agora.v1.*` and
/// `mesos`), for reflection. Every generated message implements `prost::Name`,
/// whose `full_name()` finds its descriptor in this set.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));

pub mod codec;

pub mod v1 {
    tonic::include_proto!("agora.v1");

    pub mod scheduler {
        tonic::include_proto!("agora.v1.scheduler");
    }
    pub mod agent {
        tonic::include_proto!("agora.v1.agent");
    }
    pub mod executor {
        tonic::include_proto!("agora.v1.executor");
    }
    /// The agent and its executor supervisor (`agora supervisor`).
    pub mod supervisor {
        tonic::include_proto!("agora.v1.supervisor");
    }
    /// The master's operator API (`mesos.v1.master`).
    pub mod master {
        tonic::include_proto!("agora.v1.master");
    }
    /// The agent's operator API (`mesos.v1.agent`).
    pub mod agent_operator {
        tonic::include_proto!("agora.v1.agent_operator");
    }
    /// Quota of the operator API (`mesos.v1.quota`).
    pub mod quota {
        tonic::include_proto!("agora.v1.quota");
    }
}

/// Mesos' v0 messages (`package mesos`, proto2): the subset that crosses JNI
/// in `libmesos.so`. Required fields are plain values, optional ones `Option`s.
pub mod mesos_v0 {
    tonic::include_proto!("mesos");
}
