//! The backend API over gRPC (`--grpc-port`): the operations of [`crate::backend`], as
//! `proto/switchyard.proto` describes them, on a port of their own (HTTP/2), for backends
//! that prefer typed stubs to JSON. Keys, limits and errors are the HTTP API's: the metadata
//! `authorization: Bearer <key>`, messages of 1 MiB at most, and a status with a message for
//! every refusal.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};
use tracing::info;

use crate::backend::{ApiError, ApiKeys, Operations, Publish, Target};
use crate::config::TlsFiles;

/// The generated messages and service.
pub(crate) mod proto {
    #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    tonic::include_proto!("switchyard.api.v1");
}

use proto::switchyard_api_server::{SwitchyardApi, SwitchyardApiServer};

/// Largest request message, as the HTTP API's largest body.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Longest a call may take, past which it ends (tonic answers CANCELLED, "Timeout expired").
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Calls one connection may have in flight at once.
const CONCURRENCY_PER_CONNECTION: usize = 64;

/// The gRPC service.
struct Service {
    operations: Arc<Operations>,
}

/// How long a client may take to complete the TLS handshake (as on the main port).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS identity of the gRPC port: the main port's certificate chain and key (PEM).
pub(crate) fn identity(files: &TlsFiles) -> anyhow::Result<Identity> {
    use anyhow::Context;
    let cert = std::fs::read(&files.cert)
        .with_context(|| format!("cannot read TLS certificate {}", files.cert.display()))?;
    let key = std::fs::read(&files.key)
        .with_context(|| format!("cannot read a TLS private key from {}", files.key.display()))?;
    Ok(Identity::from_pem(cert, key))
}

/// Serves the API on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Identity>,
    keys: Arc<ApiKeys>,
    operations: Arc<Operations>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let address = listener.local_addr().ok();
    info!(address = ?address, "backend API over gRPC on");
    let check = move |request: Request<()>| {
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes());
        if keys.check(authorization, "gRPC") {
            Ok(request)
        } else {
            Err(Status::unauthenticated("missing or unknown API key"))
        }
    };
    let service = SwitchyardApiServer::new(Service { operations })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(4 * MAX_MESSAGE_BYTES);
    let service = tonic::service::interceptor::InterceptedService::new(service, check);
    let mut server = tonic::transport::Server::builder();
    if let Some(identity) = tls {
        let config = ServerTlsConfig::new()
            .identity(identity)
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        server = server.tls_config(config)?;
    }
    server
        .timeout(CALL_TIMEOUT)
        .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .serve_with_incoming_shutdown(
            service,
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

fn status(failure: ApiError) -> Status {
    match failure {
        ApiError::Invalid(message) => Status::invalid_argument(message),
        ApiError::NotFound(message) => Status::not_found(message),
        failure @ (ApiError::Cluster(_) | ApiError::Store) => {
            Status::unavailable(failure.to_string())
        }
    }
}

fn target(target: Option<proto::Target>) -> Result<Target, Status> {
    target
        .map(Target::from)
        .ok_or_else(|| Status::invalid_argument("`target` is required"))
}

impl From<proto::Target> for Target {
    fn from(target: proto::Target) -> Target {
        Target {
            namespace: target.namespace,
            rooms: target.rooms,
            users: target.users,
            sockets: target.sockets,
            except: target.except,
        }
    }
}

#[tonic::async_trait]
impl SwitchyardApi for Service {
    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let request = request.into_inner();
        let data = if request.data_json.trim().is_empty() {
            None
        } else {
            let value: Value = serde_json::from_str(&request.data_json)
                .map_err(|failure| Status::invalid_argument(format!("`data_json`: {failure}")))?;
            Some(value)
        };
        let publish = Publish {
            target: target(request.target)?,
            event: request.event,
            values: crate::api::arguments(data, request.spread),
            binary: (!request.binary.is_empty()).then(|| Bytes::from(request.binary)),
            volatile: request.volatile,
        };
        self.operations.publish(publish).map_err(status)?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn sockets(
        &self,
        request: Request<proto::Target>,
    ) -> Result<Response<proto::SocketsReply>, Status> {
        let target = Target::from(request.into_inner());
        let sockets = self.operations.sockets(&target).await.map_err(status)?;
        Ok(Response::new(proto::SocketsReply {
            sockets: sockets
                .into_iter()
                .map(|socket| proto::SocketInfo {
                    id: socket.id,
                    user: socket.user.unwrap_or_default(),
                    rooms: socket.rooms,
                })
                .collect(),
        }))
    }

    async fn join(
        &self,
        request: Request<proto::MoveRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let request = request.into_inner();
        self.operations
            .join_or_leave(&target(request.target)?, &request.to, true)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn leave(
        &self,
        request: Request<proto::MoveRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let request = request.into_inner();
        self.operations
            .join_or_leave(&target(request.target)?, &request.to, false)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn disconnect(
        &self,
        request: Request<proto::Target>,
    ) -> Result<Response<proto::Empty>, Status> {
        let target = Target::from(request.into_inner());
        self.operations.disconnect(&target).await.map_err(status)?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn presence(
        &self,
        request: Request<proto::RoomRequest>,
    ) -> Result<Response<proto::PresenceReply>, Status> {
        let request = request.into_inner();
        let occupants = self
            .operations
            .presence(&request.namespace, &request.room)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::PresenceReply {
            users: occupants
                .into_iter()
                .map(|(user, sockets)| proto::UserPresence {
                    user,
                    sockets: u32::try_from(sockets).unwrap_or(u32::MAX),
                })
                .collect(),
        }))
    }

    async fn history(
        &self,
        request: Request<proto::RoomRequest>,
    ) -> Result<Response<proto::HistoryReply>, Status> {
        let request = request.into_inner();
        let limit = (request.limit > 0).then_some(request.limit as usize);
        let messages = self
            .operations
            .history(&request.namespace, &request.room, limit)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::HistoryReply {
            messages_json: messages.iter().map(Value::to_string).collect(),
        }))
    }

    async fn info(
        &self,
        _request: Request<proto::Empty>,
    ) -> Result<Response<proto::InfoReply>, Status> {
        let info = self.operations.info().await;
        Ok(Response::new(proto::InfoReply {
            sessions: info.sessions as u64,
            time: info.time,
            namespaces: info
                .namespaces
                .into_iter()
                .map(|namespace| proto::NamespaceInfo {
                    name: namespace.name,
                    sockets: namespace.sockets as u64,
                    servers: namespace.servers.map(|servers| servers as u64),
                })
                .collect(),
        }))
    }
}
