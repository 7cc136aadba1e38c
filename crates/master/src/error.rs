//! Why a master stops serving.

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] agora_tls::TlsError),
    #[error("http server failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error(
        "lost leadership (ZooKeeper session disconnected or expired); exiting so that this master can rejoin as a follower"
    )]
    LostLeadership,
    /// A task of the leading term died: the leader cannot act any more.
    #[error(
        "the leading term's {task} ended unexpectedly ({reason}); exiting so that another master leads"
    )]
    TermFailed { task: &'static str, reason: String },
    /// A registry write could not be made: what the store holds is all a
    /// next leader will know, so this one must not go on acting.
    #[error("{0}; stepping down so that another master leads from what the registry holds")]
    Registry(String),
}
