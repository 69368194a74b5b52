//! The request side of `socket.io-adapter`'s `ClusterAdapter`, shared by the adapters that
//! speak it (streams, sharded pub/sub): answering other servers' requests (fetch sockets,
//! server-side emits, broadcasts with acks) and making our own.
//!
//! An adapter says how it reaches the cluster by implementing [`ClusterPeer`]; the functions
//! here do the rest, the same way for every transport.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use switchyard::adapter::{
    AckReply, AdapterError, BoxFuture, BroadcastOptions, LocalNamespace, SocketInfo,
};
use switchyard::proto::Packet;
use switchyard::Args;
use tokio::time::timeout_at;

use crate::cluster_wire::{self as cw, ctype, ClusterMessage};
use crate::requests::{
    collect_broadcast_acks, deadline_after, other_servers, sockets_of, AckKinds, Answer, Pending,
    Requests, MAX_REMOTE_ACK_TIMEOUT,
};
use crate::wire::{self, Message};

/// One namespace of this server as a member of a cluster-protocol cluster.
pub(crate) trait ClusterPeer: Send + Sync + 'static {
    /// This server's uid in the cluster.
    fn uid(&self) -> &str;
    /// The namespace's local sockets.
    fn local(&self) -> &LocalNamespace;
    /// Our requests waiting for answers.
    fn requests(&self) -> &Arc<Requests>;
    /// How long a request waits for answers, and an answer for our local handlers.
    fn requests_timeout(&self) -> Duration;
    /// Publishes a request (`kind`, `data`) to every server.
    fn publish(&self, kind: u64, data: &Value, attachments: &[Bytes]);
    /// Answers server `uid`.
    fn respond(&self, uid: &str, kind: u64, data: &Value, attachments: &[Bytes]);
    /// How many servers (this one included) serve the namespace.
    fn server_count(&self) -> impl Future<Output = Result<usize, AdapterError>> + Send;
}

/// Broadcast options of a request, for this server's sockets only.
pub(crate) fn options_of(data: &Message) -> BroadcastOptions {
    let mut options = data.options();
    options.local = true;
    options
}

/// A request from another server (or, for the answer types, an answer that came the shared
/// way).
pub(crate) fn on_request<P: ClusterPeer>(peer: &Arc<P>, message: ClusterMessage) {
    let Some(data) = message.data else {
        return;
    };
    let request_id = data.request_id().map(str::to_owned);
    match (message.kind, request_id) {
        (ctype::FETCH_SOCKETS, Some(request_id)) => {
            let sockets = peer.local().fetch_sockets(&options_of(&data));
            peer.respond(
                &message.uid,
                ctype::FETCH_SOCKETS_RESPONSE,
                &json!({"requestId": request_id, "sockets": sockets}),
                &[],
            );
        }
        (ctype::SERVER_SIDE_EMIT, request_id) => {
            on_server_side_emit(peer, &message.uid, data, request_id);
        }
        (ctype::BROADCAST, Some(request_id)) => {
            on_broadcast_request(peer, &message.uid, data, request_id);
        }
        (kind, Some(request_id)) => on_answer(&**peer, kind, data, &request_id),
        _ => {}
    }
}

/// An answer to one of our requests, from our private channel.
pub(crate) fn on_answer<P: ClusterPeer>(peer: &P, kind: u64, data: Message, request_id: &str) {
    peer.requests().answer(
        request_id,
        Answer {
            kind: Some(kind),
            message: data,
        },
    );
}

/// A server-side event from server `from`: handed to the namespace's handlers, and their
/// first answer sent back when `from` waits for one.
pub(crate) fn on_server_side_emit<P: ClusterPeer>(
    peer: &Arc<P>,
    from: &str,
    data: Message,
    request_id: Option<String>,
) {
    let Some(Value::Array(packet)) = data.field("packet").cloned() else {
        return;
    };
    let mut parts = packet.into_iter();
    let Some(Value::String(event)) = parts.next() else {
        return;
    };
    let args = data.args_of(Value::Array(parts.collect()));
    let answering = peer.local().server_side_emit(&event, args);
    let (peer, from) = (peer.clone(), from.to_owned());
    let limit = peer.requests_timeout();
    tokio::spawn(async move {
        // The requester stops waiting after its own timeout: no use holding a task longer.
        let answer = tokio::time::timeout(limit, answering).await.ok().flatten();
        if let (Some(request_id), Some(answer)) = (request_id, answer) {
            let mut reply = json!({ "requestId": request_id });
            if let (Some(first), Value::Object(map)) = (answer.values.first(), &mut reply) {
                map.insert("packet".into(), first.clone());
            }
            peer.respond(
                &from,
                ctype::SERVER_SIDE_EMIT_RESPONSE,
                &reply,
                &answer.attachments,
            );
        }
    });
}

/// A broadcast with acks from server `from`: our client count first, then each ack.
fn on_broadcast_request<P: ClusterPeer>(
    peer: &Arc<P>,
    from: &str,
    data: Message,
    request_id: String,
) {
    let delivery = match (data.field("packet"), data.field("opts")) {
        (Some(packet), Some(opts)) => data.delivery(packet, opts, peer.local().name()),
        _ => None,
    };
    let Some(delivery) = delivery else {
        // Counted as a server by the requester, which waits for our count: none here.
        peer.respond(
            from,
            ctype::BROADCAST_CLIENT_COUNT,
            &json!({"requestId": request_id, "clientCount": 0}),
            &[],
        );
        return;
    };
    // Another server's timeout holds our clients' ack slots: bounded here.
    let timeout = delivery
        .timeout
        .unwrap_or(peer.requests_timeout())
        .min(MAX_REMOTE_ACK_TIMEOUT);
    let mut acks = peer
        .local()
        .broadcast_with_ack(delivery.packet, &delivery.options, timeout);
    // The count goes first, on the same queue as the acks that follow it.
    peer.respond(
        from,
        ctype::BROADCAST_CLIENT_COUNT,
        &json!({"requestId": request_id, "clientCount": acks.count}),
        &[],
    );
    if acks.count == 0 {
        return;
    }
    let (peer, from) = (peer.clone(), from.to_owned());
    tokio::spawn(async move {
        while let Some(reply) = acks.replies.recv().await {
            if let Ok(args) = reply.result {
                let mut ack = json!({ "requestId": request_id });
                if let (Some(first), Value::Object(map)) = (args.values.first(), &mut ack) {
                    map.insert("packet".into(), first.clone());
                }
                peer.respond(&from, ctype::BROADCAST_ACK, &ack, &args.attachments);
            }
        }
    });
}

fn pending<P: ClusterPeer>(peer: &P) -> Pending {
    Pending::new(peer.requests(), cw::new_uid())
}

/// A broadcast to every server's clients that waits for their acks until `timeout`. The
/// request is published and the local clients reached at once, before the future is polled.
pub(crate) fn broadcast_with_ack<P: ClusterPeer>(
    peer: Arc<P>,
    packet: Packet,
    options: BroadcastOptions,
    timeout: Duration,
) -> BoxFuture<Result<Vec<AckReply>, AdapterError>> {
    let pending = pending(&*peer);
    if !options.local {
        let (wire_packet, attachments) = wire::packet_to_wire(&packet);
        let data = json!({
            "packet": wire_packet,
            "opts": wire::options_to_wire(&options, Some(timeout)),
            "requestId": pending.id,
        });
        peer.publish(ctype::BROADCAST, &data, attachments);
    }
    let local = peer.local().broadcast_with_ack(packet, &options, timeout);
    Box::pin(async move {
        let deadline = deadline_after(timeout);
        let servers = if options.local {
            1
        } else {
            // Without a count, every answer that comes in time is still taken.
            match timeout_at(deadline, peer.server_count()).await {
                Ok(Ok(count)) => count,
                _ => usize::MAX,
            }
        };
        let kinds = AckKinds {
            client_count: ctype::BROADCAST_CLIENT_COUNT,
            ack: ctype::BROADCAST_ACK,
        };
        Ok(collect_broadcast_acks(local, pending, servers, deadline, kinds).await)
    })
}

/// The sockets `options` selects on every server, within `timeout` (this server's are taken
/// at once).
pub(crate) fn fetch_sockets<P: ClusterPeer>(
    peer: Arc<P>,
    options: BroadcastOptions,
    timeout: Duration,
) -> BoxFuture<Result<Vec<SocketInfo>, AdapterError>> {
    let mut found = peer.local().fetch_sockets(&options);
    if options.local {
        return Box::pin(std::future::ready(Ok(found)));
    }
    Box::pin(async move {
        let deadline = deadline_after(timeout);
        let others = other_servers(peer.server_count(), deadline).await?;
        if others == 0 {
            return Ok(found);
        }
        let mut pending = pending(&*peer);
        let data = json!({
            "opts": wire::options_to_wire(&options, None),
            "requestId": pending.id,
        });
        peer.publish(ctype::FETCH_SOCKETS, &data, &[]);
        let kind = Some(ctype::FETCH_SOCKETS_RESPONSE);
        let answers = pending
            .collect(others, kind, deadline, |answer| sockets_of(&answer))
            .await?;
        found.extend(answers.into_iter().flatten());
        Ok(found)
    })
}

/// An event to the other servers' handlers; with `ack`, their answers within that time
/// (without, it is published at once).
pub(crate) fn server_side_emit<P: ClusterPeer>(
    peer: Arc<P>,
    event: String,
    args: Args,
    ack: Option<Duration>,
) -> BoxFuture<Result<Vec<Args>, AdapterError>> {
    let mut packet = vec![Value::String(event)];
    packet.extend(args.values);
    let packet = Value::Array(packet);
    let Some(timeout) = ack else {
        peer.publish(
            ctype::SERVER_SIDE_EMIT,
            &json!({ "packet": packet }),
            &args.attachments,
        );
        return Box::pin(std::future::ready(Ok(Vec::new())));
    };
    Box::pin(async move {
        let deadline = deadline_after(timeout);
        let others = other_servers(peer.server_count(), deadline).await?;
        if others == 0 {
            return Ok(Vec::new());
        }
        let mut pending = pending(&*peer);
        peer.publish(
            ctype::SERVER_SIDE_EMIT,
            &json!({ "packet": packet, "requestId": pending.id }),
            &args.attachments,
        );
        let kind = Some(ctype::SERVER_SIDE_EMIT_RESPONSE);
        pending
            .collect(others, kind, deadline, |answer| answer.argument("packet"))
            .await
    })
}
