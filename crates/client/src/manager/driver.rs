//! The manager's task: it owns the Engine.IO connection, routes packets to the sockets, and
//! reconnects. Only this task sends on the connection, so the state machine needs no lock
//! across an await.

use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use switchyard_socketio_proto::Packet;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{Command, ManagerEvent, Shared};
use crate::backoff::Backoff;
use crate::codec::encode;
use crate::config::Auth;
use crate::dispatch::Dispatch;
use crate::engine::{CloseReason, Endpoint, Engine, EngineEvent, EngineSettings};
use crate::error::{AckError, ConnectError};
use crate::incoming;
use crate::reconnect::{Next, Reconnection};
use crate::recovery::{connect_payload, is_recovered};
use crate::socket::{DisconnectReason, Incoming, SocketInner, Status};

/// Work the driver gives itself.
enum Internal {
    /// An auth function finished: send the CONNECT of `nsp` if still on that connection.
    SendConnect {
        nsp: String,
        generation: u64,
        auth: Value,
    },
}

/// Where the driver goes next.
enum Flow {
    /// Make the next connection attempt.
    Attempt,
    /// Wait for a socket to connect.
    Idle,
    /// Every handle is gone.
    Exit,
}

/// How a connection ended.
enum End {
    /// Unexpectedly: reconnect.
    Lost(DisconnectReason),
    /// On purpose: go idle.
    Closed,
    /// Every handle is gone.
    Exit,
}

/// Starts the driver of a manager whose handles share `shared` and send `commands`; what the
/// application should hear about goes to `dispatch`.
pub(super) fn spawn(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    commands: mpsc::UnboundedReceiver<Command>,
    dispatch: mpsc::UnboundedSender<Dispatch>,
) {
    let config = &shared.config;
    let settings = Arc::new(EngineSettings {
        endpoint: Arc::new(endpoint),
        transports: config.transports,
        timeout: config.timeout,
        upgrade_timeout: config.upgrade_timeout,
        max_response_bytes: config.max_response_bytes,
    });
    let reconnection = Reconnection::new(
        config.reconnection,
        config.reconnection_attempts,
        Backoff::new(
            config.reconnection_delay,
            config.reconnection_delay_max,
            config.randomization_factor,
        ),
    );
    let parser = config.parser;
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let driver = Driver {
        shared,
        settings,
        parser,
        commands,
        internal_tx,
        internal_rx,
        dispatch,
        reconnection,
        rng: StdRng::from_entropy(),
        generation: 0,
    };
    tokio::spawn(driver.run());
}

/// The manager's task: opens connections, routes packets, reconnects.
struct Driver {
    shared: Arc<Shared>,
    settings: Arc<EngineSettings>,
    parser: switchyard_core::Parser,
    commands: mpsc::UnboundedReceiver<Command>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    dispatch: mpsc::UnboundedSender<Dispatch>,
    reconnection: Reconnection,
    rng: StdRng,
    generation: u64,
}

impl Driver {
    async fn run(mut self) {
        loop {
            if let Flow::Exit = self.idle().await {
                return;
            }
            loop {
                match self.attempt().await {
                    Flow::Attempt => {}
                    Flow::Idle => break,
                    Flow::Exit => return,
                }
            }
        }
    }

    fn emit(&self, event: Dispatch) {
        let _ = self.dispatch.send(event);
    }

    /// Waits for a socket to ask for a connection.
    async fn idle(&mut self) -> Flow {
        self.reconnection.stop();
        loop {
            match self.commands.recv().await {
                Some(Command::Connect { nsp, request }) => {
                    self.connect_seen(&nsp, request);
                    // A request from a socket that has left again meanwhile opens nothing.
                    if self.shared.any_active() {
                        return Flow::Attempt;
                    }
                }
                command => {
                    if let Flow::Exit = self.command_while_down(command) {
                        return Flow::Exit;
                    }
                }
            }
        }
    }

    /// A command while no connection is open. `Idle` means: stop trying.
    fn command_while_down(&mut self, command: Option<Command>) -> Flow {
        match command {
            None => Flow::Exit,
            Some(Command::Packet { nsp, seq, packet }) => {
                self.rebuffer(&nsp, seq, packet);
                Flow::Attempt
            }
            Some(Command::Connect { nsp, request }) => {
                self.connect_seen(&nsp, request);
                Flow::Attempt
            }
            Some(Command::Disconnect { nsp, was_connected }) => {
                self.client_disconnected(&nsp, was_connected);
                if self.shared.any_active() {
                    Flow::Attempt
                } else {
                    Flow::Idle
                }
            }
            Some(Command::Close) => {
                self.fail_pending_connects();
                Flow::Idle
            }
        }
    }

    /// One connection attempt; on success, runs the connection until it ends. Returns what
    /// to do next, after waiting out the backoff delay if reconnecting.
    async fn attempt(&mut self) -> Flow {
        let opened = {
            let open = Engine::open(self.settings.clone());
            tokio::pin!(open);
            loop {
                tokio::select! {
                    result = &mut open => break result,
                    command = self.commands.recv() => match self.command_while_down(command) {
                        Flow::Attempt => {}
                        other => return other,
                    },
                }
            }
        };
        let next = match opened {
            Ok(engine) => {
                if let Some(attempt) = self.reconnection.opened() {
                    self.emit(Dispatch::Manager(ManagerEvent::Reconnect(attempt)));
                }
                self.emit(Dispatch::Manager(ManagerEvent::Open));
                match self.run_engine(engine).await {
                    End::Lost(_) => {
                        let random = self.rng.gen();
                        self.reconnection.closed(Instant::now(), random)
                    }
                    End::Closed => return Flow::Idle,
                    End::Exit => return Flow::Exit,
                }
            }
            Err(error) => {
                debug!(%error, "connection attempt failed");
                let error = Arc::new(error);
                self.emit(Dispatch::Manager(ManagerEvent::Error(error.clone())));
                let reconnecting = self.reconnection.reconnecting();
                let random = self.rng.gen();
                let next = self.reconnection.attempt_failed(Instant::now(), random);
                if reconnecting {
                    self.emit(Dispatch::Manager(ManagerEvent::ReconnectError(
                        error.clone(),
                    )));
                }
                for socket in self.shared.all_sockets() {
                    let waiting = {
                        let state = socket.lock();
                        state.active && !state.connected
                    };
                    if waiting {
                        let failure = ConnectError::Transport(error.clone());
                        socket.set_status(Status::Failed(failure.clone()));
                        self.emit(Dispatch::ConnectError(socket, failure));
                    }
                }
                next
            }
        };
        match next {
            Next::Retry { attempt, at } => {
                let sleep = tokio::time::sleep_until(at.into());
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        command = self.commands.recv() => match self.command_while_down(command) {
                            Flow::Attempt => {}
                            other => return other,
                        },
                    }
                }
                if self.reconnection.handle_timeout(Instant::now()) == Some(attempt) {
                    self.emit(Dispatch::Manager(ManagerEvent::ReconnectAttempt(attempt)));
                }
                Flow::Attempt
            }
            Next::GiveUp => {
                self.emit(Dispatch::Manager(ManagerEvent::ReconnectFailed));
                self.fail_pending_connects();
                Flow::Idle
            }
            Next::Stop => {
                self.fail_pending_connects();
                Flow::Idle
            }
        }
    }

    /// Runs one open connection until it ends.
    async fn run_engine(&mut self, mut engine: Engine) -> End {
        self.generation += 1;
        let mut decoder = incoming::decoder(self.parser);
        self.shared
            .set_engine(Some(engine.sid.clone()), Some(engine.transport));
        for socket in self.shared.all_sockets() {
            if socket.lock().active {
                self.start_connect(&engine, &socket);
            }
        }
        let (end, close) = loop {
            tokio::select! {
                event = engine.events.recv() => match event {
                    Some(EngineEvent::Message(message)) => match decoder.decode(message) {
                        Ok(Some(packet)) => {
                            if self.on_packet(&engine, packet) {
                                break (End::Closed, true);
                            }
                        }
                        Ok(None) => {}
                        Err(error) => {
                            warn!(%error, "undecodable packet, closing the connection");
                            break (End::Lost(DisconnectReason::ParseError), true);
                        }
                    },
                    Some(EngineEvent::Upgraded(kind)) => {
                        self.shared.set_engine(Some(engine.sid.clone()), Some(kind));
                        self.emit(Dispatch::Manager(ManagerEvent::Upgrade(kind)));
                    }
                    Some(EngineEvent::Closed(reason)) => break (End::Lost(disconnect_reason(reason)), false),
                    None => break (End::Lost(DisconnectReason::TransportClose), false),
                },
                command = self.commands.recv() => match command {
                    None => break (End::Exit, true),
                    Some(Command::Packet { nsp, seq, packet }) => self.send_packet(&engine, &nsp, seq, packet),
                    Some(Command::Connect { nsp, request }) => {
                        if let Some(socket) = self.connect_seen(&nsp, request) {
                            self.start_connect(&engine, &socket);
                        }
                    }
                    Some(Command::Disconnect { nsp, was_connected }) => {
                        if was_connected {
                            engine.send(encode(&Packet::disconnect(nsp.clone()), self.parser));
                        }
                        self.client_disconnected(&nsp, was_connected);
                        if !self.shared.any_active() {
                            break (End::Closed, true);
                        }
                    }
                    Some(Command::Close) => break (End::Closed, true),
                },
                internal = self.internal_rx.recv() => {
                    if let Some(Internal::SendConnect { nsp, generation, auth }) = internal {
                        if generation == self.generation {
                            self.send_connect(&engine, &nsp, Some(auth));
                        }
                    }
                }
            }
        };
        if close {
            engine.close().await;
        }
        self.shared.set_engine(None, None);
        let reason = match &end {
            End::Lost(reason) => *reason,
            End::Closed | End::Exit => DisconnectReason::ForcedClose,
        };
        self.connection_closed(reason);
        if !matches!(end, End::Lost(_)) {
            self.fail_pending_connects();
        }
        self.emit(Dispatch::Manager(ManagerEvent::Close(reason)));
        end
    }

    /// Sends the CONNECT of `socket`, once per connection, after its auth function if any.
    fn start_connect(&mut self, engine: &Engine, socket: &Arc<SocketInner>) {
        {
            let mut state = socket.lock();
            if !state.active || state.connected || state.connect_sent == Some(self.generation) {
                return;
            }
            state.connect_sent = Some(self.generation);
        }
        match &socket.options.auth {
            Auth::None => self.send_connect(engine, &socket.nsp, None),
            Auth::Value(auth) => self.send_connect(engine, &socket.nsp, Some(auth.clone())),
            Auth::Fn(auth) => {
                let future = auth();
                let internal = self.internal_tx.clone();
                let nsp = socket.nsp.clone();
                let generation = self.generation;
                tokio::spawn(async move {
                    let auth = future.await;
                    let _ = internal.send(Internal::SendConnect {
                        nsp,
                        generation,
                        auth,
                    });
                });
            }
        }
    }

    fn send_connect(&self, engine: &Engine, nsp: &str, auth: Option<Value>) {
        let Some(socket) = self.shared.socket(nsp) else {
            return;
        };
        let data = {
            let state = socket.lock();
            if !state.active || state.connected {
                return;
            }
            connect_payload(auth, state.pid.as_deref(), state.last_offset.as_deref())
        };
        debug!(nsp, "sending CONNECT");
        engine.send(encode(&Packet::connect(nsp, data), self.parser));
    }

    fn send_packet(&self, engine: &Engine, nsp: &str, seq: Option<u64>, packet: Packet) {
        let connected = self
            .shared
            .socket(nsp)
            .is_some_and(|socket| socket.lock().connected);
        if connected {
            engine.send(encode(&packet, self.parser));
        } else {
            self.rebuffer(nsp, seq, packet);
        }
    }

    /// Puts back an event that reached the driver after its socket lost the connection.
    fn rebuffer(&self, nsp: &str, seq: Option<u64>, packet: Packet) {
        let (Some(seq), Some(socket)) = (seq, self.shared.socket(nsp)) else {
            return;
        };
        if socket.options.buffer_while_disconnected {
            socket.lock().rebuffer(seq, packet);
        } else if let Some(id) = packet.id() {
            if let Some(ack) = socket.lock().acks.remove(&id) {
                let _ = ack.send(Err(AckError::Disconnected));
            }
        }
    }

    /// Routes one packet from the server. Returns true when no socket is left active, so
    /// the connection should close.
    fn on_packet(&mut self, engine: &Engine, packet: Packet) -> bool {
        let Some(socket) = self.shared.socket(packet.nsp()) else {
            debug!(nsp = packet.nsp(), "packet for a namespace without socket");
            return false;
        };
        match packet {
            Packet::Connect { data, .. } => {
                let (sid, pid) = match incoming::connect_reply(data.as_ref()) {
                    Ok(ids) => ids,
                    Err(error) => {
                        self.refused(&socket, error);
                        return !self.shared.any_active();
                    }
                };
                let sid = sid.as_str();
                let (events, sends) = {
                    let mut state = socket.lock();
                    if !state.active {
                        return false;
                    }
                    state.recovered = is_recovered(state.pid.as_deref(), pid.as_deref());
                    state.pid = pid;
                    state.id = Some(sid.to_owned());
                    state.connected = true;
                    (
                        std::mem::take(&mut state.receive_buffer),
                        std::mem::take(&mut state.send_buffer),
                    )
                };
                debug!(nsp = %socket.nsp, sid, "connected");
                socket.set_status(Status::Connected);
                for incoming in events {
                    self.emit(Dispatch::Event {
                        socket: socket.clone(),
                        name: incoming.name,
                        args: incoming.args,
                        ack_id: incoming.ack_id,
                    });
                }
                for (_, packet) in sends {
                    engine.send(encode(&packet, self.parser));
                }
                self.emit(Dispatch::Connect(socket));
                false
            }
            Packet::ConnectError { data, .. } => {
                self.refused(&socket, incoming::connect_error(data));
                !self.shared.any_active()
            }
            Packet::Event {
                id,
                data,
                attachments,
                ..
            } => {
                let mut state = socket.lock();
                let Some((name, args, offset)) =
                    incoming::event(data, attachments, state.pid.is_some(), id)
                else {
                    return false;
                };
                if let Some(offset) = offset {
                    state.last_offset = Some(offset);
                }
                if state.connected {
                    drop(state);
                    self.emit(Dispatch::Event {
                        socket: socket.clone(),
                        name,
                        args,
                        ack_id: id,
                    });
                } else if state.active {
                    state.receive_buffer.push(Incoming {
                        name,
                        args,
                        ack_id: id,
                    });
                }
                false
            }
            Packet::Ack {
                id,
                data,
                attachments,
                ..
            } => {
                if let Some(ack) = socket.lock().acks.remove(&id) {
                    let _ = ack.send(Ok(incoming::ack_args(data, attachments)));
                } else {
                    debug!(id, "ack for no pending event");
                }
                false
            }
            Packet::Disconnect { .. } => {
                let was_connected = {
                    let mut state = socket.lock();
                    let was_connected = state.connected;
                    state.active = false;
                    state.connected = false;
                    state.id = None;
                    state.connect_sent = None;
                    state.fail_sent_acks();
                    was_connected
                };
                socket.set_status(Status::Disconnected);
                if was_connected {
                    self.emit(Dispatch::Disconnect(
                        socket,
                        DisconnectReason::IoServerDisconnect,
                    ));
                }
                !self.shared.any_active()
            }
        }
    }

    /// The server refused `socket`: it stops trying.
    fn refused(&self, socket: &Arc<SocketInner>, error: ConnectError) {
        debug!(nsp = %socket.nsp, %error, "connection refused");
        {
            let mut state = socket.lock();
            state.active = false;
            state.connected = false;
            state.connect_sent = None;
        }
        socket.set_status(Status::Failed(error.clone()));
        self.emit(Dispatch::ConnectError(socket.clone(), error));
    }

    /// The application disconnected socket `nsp` (its state is already updated).
    fn client_disconnected(&self, nsp: &str, was_connected: bool) {
        if let (true, Some(socket)) = (was_connected, self.shared.socket(nsp)) {
            self.emit(Dispatch::Disconnect(
                socket,
                DisconnectReason::IoClientDisconnect,
            ));
        }
    }

    /// The connection is gone: every connected socket is disconnected with `reason`.
    fn connection_closed(&self, reason: DisconnectReason) {
        for socket in self.shared.all_sockets() {
            let was_connected = {
                let mut state = socket.lock();
                let was_connected = state.connected;
                state.connected = false;
                state.id = None;
                state.connect_sent = None;
                state.receive_buffer.clear();
                state.fail_sent_acks();
                was_connected
            };
            if was_connected {
                socket.set_status(Status::Disconnected);
                self.emit(Dispatch::Disconnect(socket, reason));
            }
        }
    }

    /// Records that the driver took connect request `request` of socket `nsp`.
    fn connect_seen(&self, nsp: &str, request: u64) -> Option<Arc<SocketInner>> {
        let socket = self.shared.socket(nsp)?;
        {
            let mut state = socket.lock();
            state.connect_seen = state.connect_seen.max(request);
        }
        Some(socket)
    }

    /// No more attempts will be made: sockets waiting in `connect` are told, except those
    /// whose latest request the driver has not taken yet. Such a request came after the
    /// decision to stop (a `connect()` right after the last socket was refused, say): it
    /// waits in the queue and opens a new connection, so its caller must not get
    /// `disconnected before connecting`.
    fn fail_pending_connects(&self) {
        for socket in self.shared.all_sockets() {
            // Under the state lock, as `Socket::connect` counts its request and sets the
            // status under it too.
            let state = socket.lock();
            let in_flight = state.connect_seen < state.connect_requested;
            let waiting = matches!(*socket.status.borrow(), Status::Connecting);
            if waiting && !in_flight {
                socket.set_status(Status::Failed(ConnectError::Disconnected));
            }
            drop(state);
        }
    }
}

fn disconnect_reason(reason: CloseReason) -> DisconnectReason {
    match reason {
        CloseReason::TransportClose => DisconnectReason::TransportClose,
        CloseReason::TransportError => DisconnectReason::TransportError,
        CloseReason::PingTimeout => DisconnectReason::PingTimeout,
        CloseReason::ForcedClose => DisconnectReason::ForcedClose,
    }
}
