//! A socket: one namespace over the manager's Engine.IO connection.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;
use switchyard_core::{Args, IntoArgs};
use switchyard_socketio_proto::{Packet, RESERVED_EVENTS};
use tokio::sync::{oneshot, watch};

use crate::config::SocketOptions;
use crate::error::{AckError, ConnectError, EmitError};
use crate::manager::{Command, Manager};
use switchyard_core::{ack_packet, event_packet};

/// Why a socket was disconnected, with socket.io-client's names (`Display` gives them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The server disconnected the socket (`io server disconnect`); no reconnection.
    IoServerDisconnect,
    /// The application called [`Socket::disconnect`] (`io client disconnect`).
    IoClientDisconnect,
    /// No ping from the server within pingInterval + pingTimeout (`ping timeout`).
    PingTimeout,
    /// The connection was closed (`transport close`).
    TransportClose,
    /// The connection failed (`transport error`).
    TransportError,
    /// The server sent something that does not decode (`parse error`).
    ParseError,
    /// The application closed the manager (`forced close`).
    ForcedClose,
}

impl DisconnectReason {
    /// The reason as socket.io-client names it.
    pub const fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::IoServerDisconnect => "io server disconnect",
            DisconnectReason::IoClientDisconnect => "io client disconnect",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedClose => "forced close",
        }
    }

    /// Whether the manager reconnects after it (if reconnection is on): not after a server
    /// or client disconnect, nor a forced close.
    pub const fn reconnects(self) -> bool {
        !matches!(
            self,
            DisconnectReason::IoServerDisconnect
                | DisconnectReason::IoClientDisconnect
                | DisconnectReason::ForcedClose
        )
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) type EventHandler = Arc<dyn Fn(Event) -> BoxFuture<'static, ()> + Send + Sync>;
pub(crate) type ConnectHandler = Arc<dyn Fn(&Socket) + Send + Sync>;
pub(crate) type DisconnectHandler = Arc<dyn Fn(&Socket, DisconnectReason) + Send + Sync>;
pub(crate) type ConnectErrorHandler = Arc<dyn Fn(&Socket, &ConnectError) + Send + Sync>;

/// The handlers of one socket.
#[derive(Default)]
pub(crate) struct Handlers {
    pub(crate) events: HashMap<String, Vec<EventHandler>>,
    pub(crate) any: Vec<EventHandler>,
    pub(crate) connect: Vec<ConnectHandler>,
    pub(crate) disconnect: Vec<DisconnectHandler>,
    pub(crate) connect_error: Vec<ConnectErrorHandler>,
}

/// Where a socket stands, for [`Socket::connect`] to wait on.
#[derive(Debug, Clone)]
pub(crate) enum Status {
    Idle,
    Connecting,
    Connected,
    Failed(ConnectError),
    Disconnected,
}

/// An event that arrived before the CONNECT reply (replayed by a recovering server).
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) name: String,
    pub(crate) args: Args,
    pub(crate) ack_id: Option<u64>,
}

/// The mutable state of a socket, shared by its handles and the manager's driver.
#[derive(Default)]
pub(crate) struct SocketState {
    /// The application wants this socket connected (socket.io-client's `active`).
    pub(crate) active: bool,
    pub(crate) connected: bool,
    pub(crate) id: Option<String>,
    pub(crate) pid: Option<String>,
    pub(crate) last_offset: Option<String>,
    pub(crate) recovered: bool,
    /// The connection generation a CONNECT was sent on, so it is sent once per connection.
    pub(crate) connect_sent: Option<u64>,
    /// How many times [`Socket::connect`] asked the driver to connect this socket.
    pub(crate) connect_requested: u64,
    /// The last of those requests the driver has taken. While it is behind
    /// `connect_requested`, a request is on its way: the driver must not fail the waiting
    /// `connect()` for a connection that ended before it saw the request.
    pub(crate) connect_seen: u64,
    pub(crate) next_ack_id: u64,
    pub(crate) acks: HashMap<u64, oneshot::Sender<Result<Args, AckError>>>,
    /// Events emitted while disconnected, with their emit sequence number, in order.
    pub(crate) send_buffer: Vec<(u64, Packet)>,
    pub(crate) receive_buffer: Vec<Incoming>,
    pub(crate) next_seq: u64,
}

impl SocketState {
    /// Inserts a packet that could not be sent into the buffer, keeping emit order.
    pub(crate) fn rebuffer(&mut self, seq: u64, packet: Packet) {
        let at = self.send_buffer.partition_point(|(other, _)| *other < seq);
        self.send_buffer.insert(at, (seq, packet));
    }

    /// Fails the acks whose events are not waiting in the send buffer (they were sent and
    /// will never be answered), as socket.io-client does on disconnection.
    pub(crate) fn fail_sent_acks(&mut self) {
        let buffered: Vec<u64> = self
            .send_buffer
            .iter()
            .filter_map(|(_, packet)| packet.id())
            .collect();
        let ids: Vec<u64> = self
            .acks
            .keys()
            .copied()
            .filter(|id| !buffered.contains(id))
            .collect();
        for id in ids {
            if let Some(ack) = self.acks.remove(&id) {
                let _ = ack.send(Err(AckError::Disconnected));
            }
        }
    }
}

/// The shared part of a socket.
pub(crate) struct SocketInner {
    pub(crate) nsp: String,
    pub(crate) options: SocketOptions,
    pub(crate) state: Mutex<SocketState>,
    pub(crate) handlers: RwLock<Handlers>,
    pub(crate) status: watch::Sender<Status>,
}

impl SocketInner {
    pub(crate) fn new(nsp: String, options: SocketOptions) -> SocketInner {
        SocketInner {
            nsp,
            options,
            state: Mutex::new(SocketState::default()),
            handlers: RwLock::new(Handlers::default()),
            status: watch::Sender::new(Status::Idle),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SocketState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn set_status(&self, status: Status) {
        self.status.send_replace(status);
    }

    fn with_handlers(&self, f: impl FnOnce(&mut Handlers)) {
        let mut handlers = self
            .handlers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut handlers);
    }
}

/// A Socket.IO socket: one namespace, multiplexed with the manager's other sockets over one
/// Engine.IO connection. Cheap to clone; all clones are the same socket.
#[derive(Clone)]
pub struct Socket {
    pub(crate) inner: Arc<SocketInner>,
    pub(crate) manager: Manager,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("Socket")
            .field("nsp", &self.inner.nsp)
            .field("id", &state.id)
            .field("connected", &state.connected)
            .finish()
    }
}

impl Socket {
    /// The namespace, e.g. `/` or `/chat`.
    pub fn namespace(&self) -> &str {
        &self.inner.nsp
    }

    /// The manager this socket belongs to.
    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    /// The socket id the server gave (not the Engine.IO id); `None` while disconnected.
    pub fn id(&self) -> Option<String> {
        self.inner.lock().id.clone()
    }

    /// Whether the socket is connected to its namespace.
    pub fn connected(&self) -> bool {
        self.inner.lock().connected
    }

    /// Whether the last connection recovered the previous session (the server replayed the
    /// missed events, rooms and id were kept).
    pub fn recovered(&self) -> bool {
        self.inner.lock().recovered
    }

    /// Whether the socket wants to be connected: it connects and reconnects with the manager.
    /// False before [`connect`](Self::connect), after [`disconnect`](Self::disconnect), and
    /// after the server refused or disconnected it.
    pub fn active(&self) -> bool {
        self.inner.lock().active
    }

    /// Handles event `event`. The handler gets an [`Event`] (its arguments and a way to
    /// answer the server's ack); several handlers of one event all run, in order.
    ///
    /// Handlers start in the order the events arrived; each one runs until its first
    /// `.await` before the next starts, then they go on concurrently. A panicking handler
    /// is logged and does not stop the others.
    ///
    /// Reach the socket through [`Event::socket`] rather than capturing a `Socket` in the
    /// handler: a captured handle keeps the manager (and its connection) alive for as long
    /// as the handler is registered.
    pub fn on<F, Fut>(&self, event: impl Into<String>, handler: F) -> &Socket
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler: EventHandler = Arc::new(move |event| Box::pin(handler(event)));
        let event = event.into();
        self.inner
            .with_handlers(|handlers| handlers.events.entry(event).or_default().push(handler));
        self
    }

    /// Handles every event, before the handlers of that event.
    pub fn on_any<F, Fut>(&self, handler: F) -> &Socket
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler: EventHandler = Arc::new(move |event| Box::pin(handler(event)));
        self.inner
            .with_handlers(|handlers| handlers.any.push(handler));
        self
    }

    /// Removes every handler of `event`.
    pub fn off(&self, event: &str) -> &Socket {
        self.inner.with_handlers(|handlers| {
            handlers.events.remove(event);
        });
        self
    }

    /// Called on every connection to the namespace (the `connect` event); [`id`](Self::id)
    /// and [`recovered`](Self::recovered) are up to date when it runs.
    pub fn on_connect(&self, handler: impl Fn(&Socket) + Send + Sync + 'static) -> &Socket {
        self.inner
            .with_handlers(|handlers| handlers.connect.push(Arc::new(handler)));
        self
    }

    /// Called when a connected socket is disconnected (the `disconnect` event).
    pub fn on_disconnect(
        &self,
        handler: impl Fn(&Socket, DisconnectReason) + Send + Sync + 'static,
    ) -> &Socket {
        self.inner
            .with_handlers(|handlers| handlers.disconnect.push(Arc::new(handler)));
        self
    }

    /// Called when a connection fails (the `connect_error` event): the server refused it
    /// (message and data), or the Engine.IO connection could not be opened.
    pub fn on_connect_error(
        &self,
        handler: impl Fn(&Socket, &ConnectError) + Send + Sync + 'static,
    ) -> &Socket {
        self.inner
            .with_handlers(|handlers| handlers.connect_error.push(Arc::new(handler)));
        self
    }

    /// Connects the socket (opening the manager's connection if needed) and waits for the
    /// outcome: the server's CONNECT reply, its refusal, or a failure to open the Engine.IO
    /// connection. The socket keeps reconnecting after a transport failure even though this
    /// returns the error; a refusal deactivates it.
    pub async fn connect(&self) -> Result<(), ConnectError> {
        let mut status = self.inner.status.subscribe();
        let (request, connected) = {
            let mut state = self.inner.lock();
            state.active = true;
            state.connect_requested += 1;
            if !state.connected {
                self.inner.set_status(Status::Connecting);
            }
            (state.connect_requested, state.connected)
        };
        // Sent even when connected: the driver may be closing the connection right now (a
        // `Manager::close` just before), and then this request opens it again.
        let sent = self.manager.command(Command::Connect {
            nsp: self.inner.nsp.clone(),
            request,
        });
        if connected {
            return Ok(());
        }
        sent.map_err(|_| ConnectError::Disconnected)?;
        loop {
            match &*status.borrow_and_update() {
                Status::Connected => return Ok(()),
                Status::Failed(error) => return Err(error.clone()),
                Status::Disconnected => return Err(ConnectError::Disconnected),
                Status::Idle | Status::Connecting => {}
            }
            status
                .changed()
                .await
                .map_err(|_| ConnectError::Disconnected)?;
        }
    }

    /// Emits `event` with `data` (any `Serialize` value is one argument, [`Args`] several,
    /// `()` none; [`Binary`](switchyard_core::Binary) values travel as binary attachments).
    ///
    /// While disconnected the event is buffered and sent once connected, unless buffering
    /// is off.
    pub fn emit(&self, event: &str, data: impl IntoArgs) -> Result<(), EmitError> {
        check_name(event)?;
        let args = data.into_args()?;
        self.send_event(event_packet(&self.inner.nsp, event, args, None))
    }

    /// Emits `event` and waits up to `timeout` for the server's acknowledgement.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        data: impl IntoArgs,
        timeout: Duration,
    ) -> Result<Args, AckError> {
        check_name(event)?;
        let args = data.into_args().map_err(EmitError::from)?;
        let (answer_tx, answer_rx) = oneshot::channel();
        let id = {
            let mut state = self.inner.lock();
            let id = state.next_ack_id;
            state.next_ack_id += 1;
            state.acks.insert(id, answer_tx);
            id
        };
        if let Err(error) = self.send_event(event_packet(&self.inner.nsp, event, args, Some(id))) {
            self.inner.lock().acks.remove(&id);
            return Err(error.into());
        }
        match tokio::time::timeout(timeout, answer_rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                let mut state = self.inner.lock();
                state.acks.remove(&id);
                state
                    .send_buffer
                    .retain(|(_, packet)| packet.id() != Some(id));
                Err(AckError::Timeout)
            }
        }
    }

    /// Leaves the namespace (DISCONNECT) and stops reconnecting it. When no socket of the
    /// manager is left active, the Engine.IO connection is closed as well.
    pub fn disconnect(&self) {
        let was_connected = {
            let mut state = self.inner.lock();
            let was_connected = state.connected;
            state.active = false;
            state.connected = false;
            state.id = None;
            state.connect_sent = None;
            state.fail_sent_acks();
            was_connected
        };
        self.inner.set_status(Status::Disconnected);
        let _ = self.manager.command(Command::Disconnect {
            nsp: self.inner.nsp.clone(),
            was_connected,
        });
    }

    /// Sends an EVENT now, or buffers it while disconnected.
    fn send_event(&self, packet: Packet) -> Result<(), EmitError> {
        let mut state = self.inner.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        if state.connected {
            self.manager.command(Command::Packet {
                nsp: self.inner.nsp.clone(),
                seq: Some(seq),
                packet,
            })
        } else if self.inner.options.buffer_while_disconnected {
            state.send_buffer.push((seq, packet));
            Ok(())
        } else {
            Err(EmitError::NotConnected)
        }
    }

    /// Sends an ACK; never buffered (the server forgets the event when the socket goes).
    fn send_ack(&self, id: u64, args: Args) -> Result<(), EmitError> {
        if !self.connected() {
            return Err(EmitError::NotConnected);
        }
        self.manager.command(Command::Packet {
            nsp: self.inner.nsp.clone(),
            seq: None,
            packet: ack_packet(&self.inner.nsp, id, args),
        })
    }
}

fn check_name(event: &str) -> Result<(), EmitError> {
    if RESERVED_EVENTS.contains(&event) {
        return Err(EmitError::Reserved(event.to_owned()));
    }
    Ok(())
}

/// An event from the server, as handed to a handler.
#[derive(Clone)]
pub struct Event {
    pub(crate) name: String,
    pub(crate) args: Args,
    pub(crate) socket: Socket,
    pub(crate) ack: Option<AckSender>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name)
            .field("args", &self.args)
            .field("ack", &self.ack.as_ref().map(AckSender::id))
            .finish()
    }
}

impl Event {
    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arguments (without the recovery offset).
    pub fn args(&self) -> &Args {
        &self.args
    }

    /// Deserializes argument `index` (see [`Args::get`]).
    pub fn arg<T: serde::de::DeserializeOwned>(
        &self,
        index: usize,
    ) -> Result<T, switchyard_core::ArgsError> {
        self.args.get(index)
    }

    /// The first argument as plain JSON (binary parts stay placeholders), or null.
    pub fn value(&self) -> Value {
        self.args.values.first().cloned().unwrap_or(Value::Null)
    }

    /// The arguments, by value.
    pub fn into_args(self) -> Args {
        self.args
    }

    /// The socket the event came on.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// The way to answer, when the server asked for an acknowledgement.
    pub fn ack_sender(&self) -> Option<&AckSender> {
        self.ack.as_ref()
    }

    /// Answers the server's acknowledgement request with `data`. Returns `Ok(false)` when
    /// the server asked for none or it was already answered.
    pub fn ack(&self, data: impl IntoArgs) -> Result<bool, EmitError> {
        match &self.ack {
            Some(ack) => ack.send(data),
            None => Ok(false),
        }
    }
}

/// Answers one acknowledgement request of the server, once. Clones share the answer.
#[derive(Clone)]
pub struct AckSender {
    socket: Socket,
    id: u64,
    sent: Arc<AtomicBool>,
}

impl AckSender {
    pub(crate) fn new(socket: Socket, id: u64) -> AckSender {
        AckSender {
            socket,
            id,
            sent: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The ack id of the event.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether an answer was sent.
    pub fn sent(&self) -> bool {
        self.sent.load(Ordering::Acquire)
    }

    /// Sends the answer; `Ok(false)` when one was already sent.
    pub fn send(&self, data: impl IntoArgs) -> Result<bool, EmitError> {
        let args = data.into_args()?;
        if self.sent.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        self.socket.send_ack(self.id, args)?;
        Ok(true)
    }
}

impl fmt::Debug for AckSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckSender")
            .field("id", &self.id)
            .field("sent", &self.sent())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rebuffered_packets_keep_emit_order() {
        let mut state = SocketState::default();
        let packet = |n: u64| Packet::event("/", "n", vec![json!(n)]);
        state.send_buffer.push((3, packet(3)));
        state.send_buffer.push((5, packet(5)));
        state.rebuffer(1, packet(1));
        state.rebuffer(4, packet(4));
        let order: Vec<u64> = state.send_buffer.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(order, vec![1, 3, 4, 5]);
    }

    #[test]
    fn disconnection_fails_only_the_acks_of_sent_events() {
        let mut state = SocketState::default();
        let (sent_tx, mut sent_rx) = oneshot::channel();
        let (buffered_tx, mut buffered_rx) = oneshot::channel();
        state.acks.insert(0, sent_tx);
        state.acks.insert(1, buffered_tx);
        state
            .send_buffer
            .push((9, Packet::event("/", "e", vec![]).with_ack_id(1)));
        state.fail_sent_acks();
        assert!(matches!(
            sent_rx.try_recv(),
            Ok(Err(AckError::Disconnected))
        ));
        assert!(buffered_rx.try_recv().is_err());
        assert_eq!(state.acks.keys().copied().collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn reasons_read_as_in_socket_io_client() {
        assert_eq!(
            DisconnectReason::IoServerDisconnect.to_string(),
            "io server disconnect"
        );
        assert_eq!(DisconnectReason::PingTimeout.to_string(), "ping timeout");
        assert!(DisconnectReason::TransportClose.reconnects());
        assert!(!DisconnectReason::IoClientDisconnect.reconnects());
    }
}
