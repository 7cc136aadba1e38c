//! What the agent is started with, and why it may fail to start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use agora_core::Resources;
use agora_proto::v1 as pb;

use crate::containers::ContainerOptions;
use crate::gc::GcPolicy;

#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `host:port` (or `http://host:port`) of the master.
    pub master: String,
    /// The address executors reach this agent at; also advertised to the master.
    pub advertise: SocketAddr,
    pub hostname: String,
    pub work_dir: PathBuf,
    pub resources: Resources,
    pub attributes: Vec<pb::Attribute>,
    /// The `agora` binary, run as `agora executor`.
    pub executor_program: PathBuf,
    /// Isolation, users, fetcher and environment of containers.
    pub containers: ContainerOptions,
    /// When sandboxes of finished executors are removed.
    pub gc: GcPolicy,
    /// The credential sent to the master and HTTP Basic on this agent's
    /// endpoints (`crate::authn`).
    pub authentication: crate::authn::AgentAuthentication,
    /// Measures the work dir's file system (`gc::measure`).
    pub disk_probe: crate::gc::DiskProbe,
    /// The file of the key that signs executor tokens (`--jwt-secret-key`);
    /// `None`: one generated under `<work_dir>/meta/` (`executor_auth`).
    pub jwt_secret_key: Option<PathBuf>,
    /// TLS (`--tls-*`): served on the agent's port when a certificate is
    /// given; with a CA, the master is reached over https and verified
    /// against it (presenting the certificate, for mutual TLS), and
    /// executors verify the agent with it.
    pub tls: agora_tls::TlsFiles,
    /// Who may do what (`--acls`): here, `access_sandboxes` on the files
    /// API (`crate::files_authz`); the default allows everything.
    pub acls: Arc<agora_auth::acl::Acls>,
    /// Stop everything this agent started when it stops: every executor
    /// and task, and its supervisor, killed, and their containers
    /// destroyed. For `agora dev`, whose Ctrl-C stops the cluster; an
    /// `agora agent` leaves tasks running (they outlive their agent and
    /// are recovered by the next one).
    pub stop_on_exit: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] agora_tls::TlsError),
    #[error("cannot prepare work dir {path}: {source}")]
    WorkDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("http server failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error("invalid isolation settings: {0}")]
    Isolation(#[from] agora_isolation::IsolationError),
    #[error("cannot prepare the checkpoint under {path}: {source}")]
    Checkpoint {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the checkpoint: {0}")]
    Journal(#[from] crate::checkpoint::journal::JournalError),
}
