//! The supervisors' gRPC service on the agent's port (and over the socket
//! pair a supervisor is started with): the token checked, HELLO handed to
//! the actor with an outbox for its orders, then every report fed to the
//! actor until the stream ends (`host.rs` is the other side).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agora_auth::executor_token::TokenKey;
use agora_net::outbox::outbox;
use agora_proto::v1::supervisor::supervisor_server::Supervisor;
use agora_proto::v1::supervisor::{Order, Report, report};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use super::command::AgentCommand;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(super) struct SupervisorService {
    pub(super) commands: mpsc::Sender<AgentCommand>,
    pub(super) next_conn: Arc<AtomicU64>,
    pub(super) key: TokenKey,
}

type OrderStream = Pin<Box<dyn Stream<Item = Result<Order, Status>> + Send>>;

#[tonic::async_trait]
impl Supervisor for SupervisorService {
    type AttachStream = OrderStream;

    async fn attach(
        &self,
        request: Request<Streaming<Report>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let id = crate::executor_auth::authenticate_supervisor(&self.key, authorization.as_deref())
            .map_err(|why| {
                tracing::warn!(reason = %why, "supervisor refused: not authenticated");
                Status::unauthenticated(why)
            })?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello received"))??
            .ok_or_else(|| Status::invalid_argument("stream closed before hello"))?;
        let Some(report::Kind::Hello(hello)) = first.kind else {
            return Err(Status::invalid_argument("the first report must be HELLO"));
        };
        let pid = hello.pid;
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (orders, rx) = outbox();
        tracing::debug!(supervisor = %id, pid, worker = hello.worker_pid, conn, "supervisor attached");
        self.commands
            .send(AgentCommand::SupervisorAttached {
                conn,
                id,
                hello,
                orders,
            })
            .await
            .map_err(|_| Status::unavailable("agent is shutting down"))?;
        let commands = self.commands.clone();
        tokio::spawn(async move {
            while let Ok(Some(report)) = inbound.message().await {
                let Some(kind) = report.kind else { continue };
                // Awaited: a flooding supervisor is slowed by flow control.
                if commands
                    .send(AgentCommand::SupervisorReport { pid, report: kind })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = commands
                .send(AgentCommand::SupervisorDetached { conn, pid })
                .await;
        });
        let stream = rx.map(|order| {
            order.map_err(|stuck| Status::unavailable(format!("stream closed: {stuck}")))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
