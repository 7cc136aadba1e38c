//! One subscription attempt: connect to the detected master, SUBSCRIBE,
//! wait for SUBSCRIBED.

use std::time::Duration;

use agora_proto::v1::scheduler::{self as pb, call, scheduler_client};
use agora_proto::v1::{FrameworkId, FrameworkInfo};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tracing::info;

use crate::{Error, MasterDetector};

/// The generated gRPC client for the scheduler service.
pub(super) type Grpc = scheduler_client::SchedulerClient<Channel>;

/// A successful SUBSCRIBE: the open stream and what came with it.
pub(super) struct Subscription {
    pub(super) grpc: Grpc,
    pub(super) master: String,
    pub(super) events: tonic::Streaming<pb::Event>,
    pub(super) subscribed: pb::event::Subscribed,
    pub(super) framework_id: FrameworkId,
}

pub(super) enum AttemptError {
    /// Worth retrying (unreachable, unavailable, timed out).
    Transient(String),
    /// The master's final word.
    Fatal(Error),
}

/// The `authorization` metadata value for `credential` (HTTP Basic).
pub(super) fn basic_metadata(
    credential: &agora_auth::credentials::Credential,
) -> Option<MetadataValue<tonic::metadata::Ascii>> {
    agora_auth::basic::header_value(credential).parse().ok()
}

/// `message` as a request carrying `credential`, if any.
pub(super) fn authorized<T>(
    message: T,
    credential: Option<&agora_auth::credentials::Credential>,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = credential.and_then(basic_metadata) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Connects to the detected master and subscribes; waits for SUBSCRIBED.
pub(super) async fn subscribe_once(
    detector: &dyn MasterDetector,
    framework: &FrameworkInfo,
    suppressed_roles: &[String],
    connect_timeout: Duration,
    credential: Option<&agora_auth::credentials::Credential>,
    min_epoch: Option<u64>,
    tls: Option<&agora_tls::ClientTls>,
) -> Result<Subscription, AttemptError> {
    let master = detector
        .detect()
        .await
        .map_err(|e| AttemptError::Transient(e.to_string()))?;
    // With TLS configured, every master is reached over https.
    let master = match (tls, master.strip_prefix("http://")) {
        (Some(_), Some(rest)) => format!("https://{rest}"),
        _ => master,
    };
    let endpoint = Endpoint::from_shared(master.clone())
        .map_err(|e| {
            AttemptError::Fatal(Error::Detection(format!(
                "invalid master endpoint {master:?}: {e}"
            )))
        })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    let channel = agora_tls::connect_channel(endpoint, tls)
        .await
        .map_err(|e| match e {
            agora_tls::ConnectError::NoCa(_) => AttemptError::Fatal(Error::Tls(e.to_string())),
            // The master's certificate refused (or ours): final.
            agora_tls::ConnectError::Transport(e) if agora_tls::tls_failure(&e).is_some() => {
                AttemptError::Fatal(Error::Tls(format!(
                    "TLS with {master} failed: {}",
                    error_chain(&e)
                )))
            }
            agora_tls::ConnectError::Transport(e) => {
                AttemptError::Transient(format!("cannot connect to {master}: {}", error_chain(&e)))
            }
        })?;
    let mut grpc = Grpc::new(channel);

    let request = pb::Call {
        framework_id: framework.id.clone(),
        r#type: call::Type::Subscribe as i32,
        subscribe: Some(call::Subscribe {
            framework_info: Some(framework.clone()),
            suppressed_roles: suppressed_roles.to_vec(),
        }),
        ..Default::default()
    };
    let rejected = |status: tonic::Status| {
        if crate::error::is_transient(status.code()) {
            AttemptError::Transient(format!(
                "subscribe at {master} failed ({:?}): {}",
                status.code(),
                status.message()
            ))
        } else {
            AttemptError::Fatal(Error::SubscribeRejected {
                code: Some(status.code()),
                message: status.message().to_owned(),
            })
        }
    };
    let mut events = grpc
        .subscribe(authorized(request, credential))
        .await
        .map_err(rejected)?
        .into_inner();
    let first = match events.message().await {
        Ok(Some(first)) => first,
        Ok(None) => {
            return Err(AttemptError::Transient(format!(
                "master at {master} closed the stream before SUBSCRIBED"
            )));
        }
        Err(status) => return Err(rejected(status)),
    };

    use pb::event::Type;
    match Type::try_from(first.r#type) {
        Ok(Type::Subscribed) => {}
        Ok(Type::Error) => {
            return Err(AttemptError::Fatal(Error::SubscribeRejected {
                code: None,
                message: first.error.map(|e| e.message).unwrap_or_default(),
            }));
        }
        _ => {
            return Err(AttemptError::Fatal(Error::Protocol(format!(
                "first event is of type {} instead of SUBSCRIBED",
                first.r#type
            ))));
        }
    }
    let subscribed = first.subscribed.unwrap_or_default();
    let framework_id = subscribed.framework_id.clone().ok_or_else(|| {
        AttemptError::Fatal(Error::Protocol("SUBSCRIBED without framework_id".into()))
    })?;
    if subscribed.stream_id.is_empty()
        || MetadataValue::try_from(subscribed.stream_id.as_str()).is_err()
    {
        return Err(AttemptError::Fatal(Error::Protocol(format!(
            "SUBSCRIBED with unusable stream id {:?}",
            subscribed.stream_id
        ))));
    }
    let epoch = subscribed.master_info.as_ref().and_then(|m| m.epoch);
    if let (Some(epoch), Some(min)) = (epoch, min_epoch)
        && epoch < min
    {
        // A deposed leader that still answers: wait for the current one.
        return Err(AttemptError::Transient(format!(
            "master at {master} leads an older term (epoch {epoch} < {min})"
        )));
    }
    info!(framework_id = %framework_id.value, master = %master, "subscribed");
    Ok(Subscription {
        grpc,
        master,
        events,
        subscribed,
        framework_id,
    })
}

/// An error and its sources, `: `-separated (transport errors say little at
/// the top level).
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    let mut last = out.clone();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Layers often repeat their cause's message; say it once.
        if text != last {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
        source = cause.source();
    }
    out
}
