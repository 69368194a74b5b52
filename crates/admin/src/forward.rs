//! The admin namespace's side: what an admin socket gets when it connects, and the task that
//! turns the observer's notes, the stats and the transport upgrades into events for the UI.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard::adapter::EncodedPacket;
use switchyard::engineio::{Frame, Message};
use switchyard::proto::Packet;
use switchyard::{Args, Namespace, Parser, Socket, SocketIo, TransportKind};
use switchyard_core::PacketDecoder;
use tokio::sync::mpsc;
use tokio::time::{interval, timeout, MissedTickBehavior};
use tracing::{debug, warn};

use crate::auth::{Authenticator, NewSession, Sessions};
use crate::observer::{AdminObserver, Note, Noted};
use crate::serialize::{self, timestamp};
use crate::stats::Stats;
use crate::{actions, AdminMode, AdminUiConfig};

/// How often the sockets still on long-polling are checked for an upgrade.
const UPGRADE_CHECK: Duration = Duration::from_millis(250);

/// How long the count of admins across the cluster may take.
const ADMIN_COUNT_TIMEOUT: Duration = Duration::from_secs(1);

/// The server-side event by which the servers of a cluster count their admins (answered
/// with this server's count): the admin sockets themselves are never fetched, since their
/// handshake holds the admin's password.
pub(crate) const ADMIN_COUNT_EVENT: &str = "switchyard-admin:admins";

/// What the admin namespace's handlers and its task share.
pub(crate) struct Shared {
    pub(crate) config: AdminUiConfig,
    pub(crate) observer: Arc<AdminObserver>,
    pub(crate) auth: Authenticator,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(config: AdminUiConfig, observer: Arc<AdminObserver>) -> Shared {
        let sessions = Sessions::new(config.max_sessions, config.session_ttl);
        Shared {
            auth: Authenticator::new(config.auth.clone(), sessions),
            config,
            observer,
        }
    }

    fn verbose(&self) -> bool {
        self.config.mode == AdminMode::Development
    }

    /// The features the UI may use (`config.supportedFeatures`).
    fn features(&self) -> Vec<&'static str> {
        let mut features = if self.config.read_only {
            Vec::new()
        } else {
            vec![
                "EMIT",
                "JOIN",
                "LEAVE",
                "DISCONNECT",
                "MJOIN",
                "MLEAVE",
                "MDISCONNECT",
            ]
        };
        features.push("AGGREGATED_EVENTS");
        if self.verbose() {
            features.push("ALL_EVENTS");
        }
        features
    }
}

/// An admin socket's place in the count of admins; given back when the socket is done with,
/// on whichever path (its data is dropped when it closes, or with the socket).
struct AdminSeat(Arc<AdminObserver>);

impl Drop for AdminSeat {
    fn drop(&mut self) {
        self.0.admin_left();
    }
}

/// An admin socket connected: its session id, `config`, the action handlers and, in
/// development mode, `all_sockets`.
pub(crate) fn on_admin_connected(server: &SocketIo, shared: &Arc<Shared>, socket: Socket) {
    if shared.observer.stopped() {
        socket.disconnect();
        return;
    }
    shared.observer.admin_joined();
    socket.insert_data(AdminSeat(shared.observer.clone()));
    // Given back when the socket leaves, even if its session is kept for recovery (which
    // would keep its data, and the seat with it).
    socket.on_disconnect(|socket: Socket, _| async move {
        socket.remove_data::<AdminSeat>();
    });
    // Emitted before the CONNECT reply, these go right after it, when the UI listens.
    if let Some(NewSession(id)) = socket.remove_data::<NewSession>() {
        emit_to(&socket, "session", vec![Value::from(id)]);
    }
    let config = json!({ "supportedFeatures": shared.features() });
    emit_to(&socket, "config", vec![config]);
    if !shared.config.read_only {
        actions::register(server, shared, &socket);
    }
    if shared.verbose() {
        let server = server.clone();
        let deadline = shared.config.action_timeout;
        let admin_namespace = shared.config.namespace.clone();
        tokio::spawn(async move {
            let sockets = all_sockets(&server, &admin_namespace, deadline).await;
            emit_to(&socket, "all_sockets", vec![Value::Array(sockets)]);
        });
    }
}

/// Every socket of every namespace, on every server (each namespace within `deadline`).
async fn all_sockets(server: &SocketIo, admin_namespace: &str, deadline: Duration) -> Vec<Value> {
    let mut described = Vec::new();
    for namespace in server.namespaces() {
        if namespace.name() == admin_namespace {
            // This server's admins only: fetching the others' would carry their handshakes,
            // passwords included, across the cluster.
            described.extend(
                namespace
                    .sockets()
                    .iter()
                    .map(|socket| serialize::socket(namespace.name(), &socket.info())),
            );
            continue;
        }
        match timeout(deadline, namespace.fetch_sockets()).await {
            Ok(Ok(sockets)) => described.extend(
                sockets
                    .iter()
                    .map(|socket| serialize::socket(namespace.name(), socket.info())),
            ),
            Ok(Err(error)) => warn!(nsp = namespace.name(), %error, "admin: sockets not fetched"),
            Err(_) => warn!(
                nsp = namespace.name(),
                "admin: fetching the sockets timed out"
            ),
        }
    }
    described
}

/// Arguments of a UI event: JSON values, no binary.
fn args(values: Vec<Value>) -> Args {
    Args {
        values,
        attachments: Vec::new(),
    }
}

fn emit_to(socket: &Socket, event: &str, values: Vec<Value>) {
    if let Err(error) = socket.emit(event, args(values)) {
        debug!(%error, event, "admin event not sent");
    }
}

fn emit_all(admin: &Namespace, event: &str, values: Vec<Value>) {
    if let Err(error) = admin.emit(event, args(values)) {
        debug!(%error, event, "admin event not sent");
    }
}

/// The forwarder: notes out as they come, `server_stats` on its interval, upgrades as seen.
pub(crate) async fn run(io: SocketIo, shared: Arc<Shared>, mut notes: mpsc::Receiver<Note>) {
    let admin = io.of(&shared.config.namespace);
    let observer = &shared.observer;
    let mut forwarder = Forwarder {
        admin: admin.clone(),
        observer: observer.clone(),
        budget: RateBudget::new(shared.config.max_events_per_second),
        parser: io.config().parser,
        max_attachments: io.config().max_attachments,
        polling: Vec::new(),
        last_sent: None,
    };
    let mut stats = Stats::new(shared.config.server_id.clone(), &io.metrics(), observer);
    let mut stats_tick = interval(shared.config.stats_interval);
    stats_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut upgrade_tick = interval(UPGRADE_CHECK);
    upgrade_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut dropped = 0;
    let counting = Arc::new(tokio::sync::Semaphore::new(1));
    loop {
        tokio::select! {
            note = notes.recv() => match note {
                Some(note) => forwarder.forward(note),
                None => break,
            },
            _ = stats_tick.tick() => {
                let report = stats.report(&io.metrics(), observer);
                emit_all(&admin, "server_stats", vec![report]);
                // Admins connected to other servers want this one's live events too: count
                // them, in a task of its own so the notes keep flowing, one count at a time.
                if shared.verbose() {
                    if let Ok(permit) = counting.clone().try_acquire_owned() {
                        let (admin, observer) = (admin.clone(), observer.clone());
                        tokio::spawn(async move {
                            let _permit = permit;
                            count_admins_elsewhere(&admin, &observer).await;
                        });
                    }
                }
                let now = observer.dropped();
                if now > dropped {
                    warn!(dropped = now - dropped, "admin: live events dropped, the queue was full");
                    dropped = now;
                }
            },
            _ = upgrade_tick.tick(), if !forwarder.polling.is_empty() => {
                forwarder.check_upgrades(observer.watching());
            },
        }
    }
}

/// Asks the other servers how many admins they have, and notes whether any has one. A
/// server that does not answer (a Node server, or one that is down) fails the count, which
/// then leaves the previous answer.
async fn count_admins_elsewhere(admin: &Namespace, observer: &AdminObserver) {
    match admin
        .server_side_emit_with_ack(ADMIN_COUNT_EVENT, (), ADMIN_COUNT_TIMEOUT)
        .await
    {
        Ok(answers) => {
            let elsewhere = answers
                .iter()
                .filter_map(|answer| answer.values.first().and_then(Value::as_u64))
                .any(|count| count > 0);
            observer.set_admins_anywhere(elsewhere);
        }
        Err(error) => debug!(%error, "admin: the other servers' admins not counted"),
    }
}

/// Turns notes into the UI's events.
struct Forwarder {
    admin: Namespace,
    observer: Arc<AdminObserver>,
    /// The live events this server may send per second: in a cluster each one is a publish
    /// on the connection the application's broadcasts use too.
    budget: RateBudget,
    parser: Parser,
    max_attachments: usize,
    /// Sockets reported connected on long-polling, watched for their upgrade.
    polling: Vec<Socket>,
    /// The last packet decoded and its event: a broadcast's recipients share one packet.
    last_sent: Option<(EncodedPacket, Option<Value>)>,
}

impl Forwarder {
    fn forward(&mut self, note: Note) {
        let Note { what, bytes } = note;
        self.observer.release(bytes);
        if !self.budget.take() {
            self.observer.count_dropped();
            return;
        }
        match what {
            Noted::Connected { socket, at } => {
                // A socket that left meanwhile is not described: its disconnection may have
                // been told already.
                if !socket.connected() {
                    return;
                }
                let nsp = socket.namespace();
                let described = serialize::socket(nsp.name(), &socket.info());
                if socket.transport() == TransportKind::Polling {
                    self.polling.push(socket);
                }
                emit_all(
                    &self.admin,
                    "socket_connected",
                    vec![described, timestamp(at)],
                );
            }
            Noted::Disconnected {
                nsp,
                id,
                reason,
                at,
            } => {
                let values = vec![
                    nsp.name().into(),
                    (*id).into(),
                    reason.into(),
                    timestamp(at),
                ];
                emit_all(&self.admin, "socket_disconnected", values);
            }
            Noted::Room {
                joined,
                nsp,
                room,
                id,
                at,
            } => {
                let event = if joined { "room_joined" } else { "room_left" };
                let values = vec![
                    nsp.name().into(),
                    (*room).into(),
                    (*id).into(),
                    timestamp(at),
                ];
                emit_all(&self.admin, event, values);
            }
            Noted::Received {
                nsp,
                id,
                event,
                args,
                at,
            } => {
                let mut all = Vec::with_capacity(1 + args.values.len());
                all.push(Value::from(event));
                all.extend(args.values);
                let values = vec![nsp.name().into(), (*id).into(), all.into(), timestamp(at)];
                emit_all(&self.admin, "event_received", values);
            }
            Noted::Sent {
                nsp,
                id,
                packet,
                at,
            } => {
                if let Some(event) = self.event_of(packet) {
                    let values = vec![nsp.name().into(), (*id).into(), event, timestamp(at)];
                    emit_all(&self.admin, "event_sent", values);
                }
            }
        }
    }

    /// The `[name, ...args]` of `packet` if it is an event; decoded once per broadcast.
    fn event_of(&mut self, packet: EncodedPacket) -> Option<Value> {
        if let Some((last, event)) = &self.last_sent {
            if same_frames(last, &packet) {
                return event.clone();
            }
        }
        let event = decode_event(&packet, self.parser, self.max_attachments);
        self.last_sent = Some((packet, event.clone()));
        event
    }

    /// Reports the watched sockets that upgraded, and forgets those done with.
    fn check_upgrades(&mut self, watching: bool) {
        if !watching {
            self.polling.clear();
            return;
        }
        let admin = &self.admin;
        self.polling.retain(|socket| {
            if !socket.connected() {
                return false;
            }
            if socket.transport() != TransportKind::WebSocket {
                return true;
            }
            let update = json!({
                "id": &**socket.id(),
                "nsp": socket.namespace().name(),
                "transport": TransportKind::WebSocket.as_str(),
            });
            emit_all(admin, "socket_updated", vec![update]);
            false
        });
    }
}

/// At most `per_second` events in each second (a fixed window: simple, and a burst of one
/// window is what the UI shows anyway).
struct RateBudget {
    per_second: u32,
    window: tokio::time::Instant,
    used: u32,
}

impl RateBudget {
    fn new(per_second: u32) -> RateBudget {
        RateBudget {
            per_second,
            window: tokio::time::Instant::now(),
            used: 0,
        }
    }

    /// Takes one event from this second's budget; `false` when it is spent.
    fn take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.used = 0;
        }
        if self.used >= self.per_second {
            return false;
        }
        self.used += 1;
        true
    }
}

/// Whether `a` and `b` are the same encoding (shared bytes, as a broadcast's are).
fn same_frames(a: &EncodedPacket, b: &EncodedPacket) -> bool {
    let (a, b) = (a.head().as_bytes(), b.head().as_bytes());
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// The `[name, ...args]` of an EVENT packet; `None` for any other packet.
fn decode_event(packet: &EncodedPacket, parser: Parser, max_attachments: usize) -> Option<Value> {
    let mut decoder = PacketDecoder::new(parser, max_attachments);
    let mut decoded = None;
    for frame in packet.frames() {
        let message = match frame {
            // A text frame is the Engine.IO message type `4`, then the packet.
            Frame::Text(text) => {
                let packet = text.as_bytes().get(1..)?;
                Message::Text(std::str::from_utf8(packet).ok()?.to_owned())
            }
            Frame::Binary(data) => Message::Binary(data.clone()),
        };
        decoded = decoder.decode(message).ok()?;
    }
    match decoded? {
        Packet::Event { data, .. } => Some(data),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use switchyard_core::event_packet;

    use super::*;

    #[test]
    fn events_are_decoded_from_what_was_sent_and_other_packets_are_not() {
        for parser in [Parser::Json, Parser::MsgPack] {
            let args = Args {
                values: vec![json!({"text": "hi"}), json!(2)],
                attachments: Vec::new(),
            };
            let event = EncodedPacket::new(parser, &event_packet("/chat", "message", args, None));
            assert_eq!(
                decode_event(&event, parser, 10),
                Some(json!(["message", {"text": "hi"}, 2]))
            );
            let ack = EncodedPacket::new(
                parser,
                &switchyard_core::ack_packet("/chat", 1, Args::empty()),
            );
            assert_eq!(decode_event(&ack, parser, 10), None);
        }
    }

    #[test]
    fn a_broadcast_is_decoded_once() {
        let packet = EncodedPacket::new(
            Parser::Json,
            &event_packet("/", "tick", Args::empty(), None),
        );
        assert!(same_frames(&packet, &packet.clone()));
        let other = EncodedPacket::new(
            Parser::Json,
            &event_packet("/", "tick", Args::empty(), None),
        );
        assert!(
            !same_frames(&packet, &other),
            "equal bytes, another encoding"
        );
    }
}
