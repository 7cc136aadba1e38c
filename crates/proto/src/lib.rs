//! Generated code for `proto/agora/v1`. Nothing but generated code lives here.
#![allow(unreachable_pub, clippy::all, missing_docs)]

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
}
