//! The Engine.IO session state machine, free of IO and clocks.
//!
//! A [`Session`] is driven by its transports: they feed it decoded packets and request
//! boundaries, pass the current time in, and drain what it wants to send. It never blocks,
//! never reads a clock and never touches a socket, so every protocol rule can be tested with
//! a fake clock.
//!
//! # Driving a session
//! After every input (`handle_packet`, `handle_timeout`, a request boundary), a driver:
//! 1. drains [`Session::poll_event`] and hands the events to the application;
//! 2. writes what [`Session::take_polling_payload`] or [`Session::drain_websocket_frames`]
//!    return, for the transport it drives;
//! 3. sleeps until [`Session::poll_timeout`] and then calls [`Session::handle_timeout`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::ErrorCode;
#[cfg(test)]
use crate::packet::Text;
use crate::packet::{Frame, Message, OpenPacket, Packet, PacketType};
use crate::payload::encode_payload;

/// Timing and size parameters of a session. Defaults are the reference server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Time between two pings sent by the server (default 25 s).
    pub ping_interval: Duration,
    /// Time the server waits for a pong before closing the session (default 20 s).
    pub ping_timeout: Duration,
    /// Time an upgrade may take from the probe to the upgrade packet (default 10 s).
    pub upgrade_timeout: Duration,
    /// Largest payload the client may send in one POST or WebSocket message (default 1,000,000).
    pub max_payload: usize,
    /// Largest number of bytes waiting to be sent before [`Session::send`] refuses more
    /// (default 8 MiB). A single frame larger than this is still accepted into an empty outbox,
    /// so a big message can always go out.
    pub max_buffered_bytes: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
            max_buffered_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The transport a packet came through, or a session currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    WebSocket,
}

impl TransportKind {
    /// The name used in the `transport` query parameter.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        }
    }

    /// Parses the `transport` query parameter.
    pub fn from_query(value: &str) -> Option<Self> {
        match value {
            "polling" => Some(TransportKind::Polling),
            "websocket" => Some(TransportKind::WebSocket),
            _ => None,
        }
    }
}

/// Why a session closed, with the reference server's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The client closed the transport, or sent a close packet.
    TransportClose,
    /// The transport failed or was misused (overlapping polls, an aborted request, a ping from
    /// the client).
    TransportError,
    /// No pong came within the ping timeout.
    PingTimeout,
    /// The client sent something that does not decode.
    ParseError,
    /// The application closed the session.
    ForcedClose,
    /// The server is shutting down.
    ServerShutdown,
}

impl CloseReason {
    /// The reason as the reference server spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerShutdown => "server shutting down",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something the application should learn about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The client sent a message.
    Message(Message),
    /// The session moved from polling to WebSocket.
    Upgraded,
    /// The session closed. This is always the last event, and comes exactly once.
    Closed(CloseReason),
}

/// Why [`Session::send`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The session is closed or closing.
    #[error("session closed")]
    Closed,
    /// The outbox already holds `max_buffered_bytes`.
    #[error("outgoing buffer full")]
    BufferFull,
}

/// What a WebSocket attached to the session is for, as seen by its driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebSocketRole {
    /// The WebSocket is probing an upgrade; the session still uses polling.
    Upgrading,
    /// The WebSocket is the session's transport.
    Active,
    /// No WebSocket belongs to the session (upgrade aborted, or session closed): close it.
    Detached,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpgradePhase {
    None,
    /// A WebSocket with our sid is open; waiting for `2probe`.
    AwaitingProbe,
    /// `3probe` answered; pending GETs get a noop; waiting for `5`.
    Probed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The server closes: the close packet is queued; once sent, the session ends.
    Closing(CloseReason),
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Ping = 0,
    Pong = 1,
    Upgrade = 2,
    Close = 3,
}

const TIMERS: [Timer; 4] = [Timer::Ping, Timer::Pong, Timer::Upgrade, Timer::Close];

/// One Engine.IO session: heartbeat, outbox, upgrade and close, as a state machine.
#[derive(Debug)]
pub struct Session {
    /// Shared by every session of a server: one copy, not one per session.
    config: Arc<SessionConfig>,
    transport: TransportKind,
    upgrade: UpgradePhase,
    state: State,
    outbox: VecDeque<Frame>,
    outbox_bytes: usize,
    owes_probe_reply: bool,
    poll_active: bool,
    post_active: bool,
    timers: [Option<Instant>; 4],
    events: VecDeque<Event>,
}

impl Session {
    /// A new open session on `transport`; the first ping is due one interval from `now`.
    ///
    /// `config` is a [`SessionConfig`], or an `Arc` of one that the server's sessions share.
    pub fn new(
        now: Instant,
        config: impl Into<Arc<SessionConfig>>,
        transport: TransportKind,
    ) -> Session {
        let config = config.into();
        let mut timers = [None; 4];
        timers[Timer::Ping as usize] = Some(now + config.ping_interval);
        Session {
            config,
            transport,
            upgrade: UpgradePhase::None,
            state: State::Open,
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            owes_probe_reply: false,
            poll_active: false,
            post_active: false,
            timers,
            events: VecDeque::new(),
        }
    }

    /// The session's configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The open packet for this session; `upgrades` lists the transports it may move to.
    pub fn open_packet(&self, sid: &str, upgrades: &[TransportKind]) -> Frame {
        Packet::Open(OpenPacket {
            sid: sid.to_owned(),
            upgrades: upgrades.iter().map(|t| t.as_str().to_owned()).collect(),
            ping_interval: self.config.ping_interval.as_millis() as u64,
            ping_timeout: self.config.ping_timeout.as_millis() as u64,
            max_payload: self.config.max_payload as u64,
        })
        .encode()
    }

    /// The transport the session currently sends and receives on.
    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// The reason the session ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.state {
            State::Closed(reason) => Some(reason),
            _ => None,
        }
    }

    /// Whether a server-side close has started and not finished yet.
    pub fn is_closing(&self) -> bool {
        matches!(self.state, State::Closing(_))
    }

    /// Whether a long-polling GET is waiting for packets.
    pub fn poll_waiting(&self) -> bool {
        self.poll_active
    }

    /// Whether a long-polling POST is being received.
    pub fn post_in_progress(&self) -> bool {
        self.post_active
    }

    /// Bytes waiting in the outbox.
    pub fn buffered_bytes(&self) -> usize {
        self.outbox_bytes
    }

    /// Queues a frame for the client.
    pub fn send(&mut self, frame: Frame) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        if !self.outbox.is_empty()
            && self.outbox_bytes + frame.len() > self.config.max_buffered_bytes
        {
            return Err(SendError::BufferFull);
        }
        self.push(frame);
        Ok(())
    }

    /// Queues several frames that must travel together (a packet and its binary attachments):
    /// all of them, or none.
    pub fn send_all(&mut self, frames: impl IntoIterator<Item = Frame>) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        let frames: Vec<Frame> = frames.into_iter().collect();
        let total: usize = frames.iter().map(Frame::len).sum();
        if !self.outbox.is_empty() && self.outbox_bytes + total > self.config.max_buffered_bytes {
            return Err(SendError::BufferFull);
        }
        for frame in frames {
            self.push(frame);
        }
        Ok(())
    }

    fn push(&mut self, frame: Frame) {
        self.outbox_bytes += frame.len();
        self.outbox.push_back(frame);
    }

    /// Handles one packet received through `via`.
    ///
    /// Protocol violations close the session; the resulting [`Event::Closed`] tells the driver.
    ///
    /// A closing session only takes the client's close packet: like the reference server it
    /// ignores the rest, so nothing the client sends after a server-side close reaches the
    /// application (which may log each bad packet it sees).
    pub fn handle_packet(&mut self, now: Instant, via: TransportKind, packet: Packet) {
        match self.state {
            State::Open => {}
            State::Closing(_) if matches!(packet, Packet::Close) && via == self.transport => {}
            // A client that paused polling for a probed upgrade will not poll again: it learns
            // of the close on the WebSocket it is moving to, as on the reference server.
            State::Closing(_)
                if matches!(packet, Packet::Upgrade) && self.upgrade == UpgradePhase::Probed => {}
            State::Closing(_) | State::Closed(_) => return,
        }
        if via != self.transport {
            self.handle_upgrade_packet(via, packet);
            return;
        }
        match packet {
            Packet::Pong(_) => {
                if self.timers[Timer::Pong as usize].take().is_some() {
                    self.timers[Timer::Ping as usize] = Some(now + self.config.ping_interval);
                }
            }
            Packet::Message(message) => self.events.push_back(Event::Message(message)),
            Packet::Close => self.close(CloseReason::TransportClose),
            // In v4 the server pings; a ping from the client is a protocol error.
            Packet::Ping(_) => self.close(CloseReason::TransportError),
            // The reference server ignores these on an established transport.
            Packet::Open(_) | Packet::Upgrade | Packet::Noop => {}
        }
    }

    fn handle_upgrade_packet(&mut self, via: TransportKind, packet: Packet) {
        let probing = via == TransportKind::WebSocket && self.transport == TransportKind::Polling;
        match (probing, self.upgrade, packet) {
            (true, UpgradePhase::AwaitingProbe, Packet::Ping(data)) if data == "probe" => {
                self.owes_probe_reply = true;
                self.upgrade = UpgradePhase::Probed;
            }
            (true, UpgradePhase::Probed, Packet::Upgrade) => {
                self.transport = TransportKind::WebSocket;
                self.upgrade = UpgradePhase::None;
                self.timers[Timer::Upgrade as usize] = None;
                self.events.push_back(Event::Upgraded);
                if self.is_closing() {
                    // The close packet queued for long-polling has no reader now; the WebSocket
                    // writes what is queued, then ends with its own close.
                    if let Some(last) = self.outbox.pop_back() {
                        self.outbox_bytes -= last.len();
                    }
                    self.finish_if_drained();
                }
            }
            // Anything else on a probing WebSocket fails the upgrade, not the session.
            (true, UpgradePhase::AwaitingProbe | UpgradePhase::Probed, _) => self.abort_upgrade(),
            // A packet through a transport the session no longer (or never) uses.
            _ => {}
        }
    }

    /// Handles the timers that are due at `now`. Calling it early does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.due(Timer::Close, now) {
            if let State::Closing(reason) = self.state {
                self.close(reason);
            }
            return;
        }
        if self.due(Timer::Pong, now) {
            self.close(CloseReason::PingTimeout);
            return;
        }
        if let Some(ping_at) = self.timers[Timer::Ping as usize].filter(|at| *at <= now) {
            self.timers[Timer::Ping as usize] = None;
            // The deadline counts from when the ping was due, so a late timer never stretches
            // the client's allowance.
            self.timers[Timer::Pong as usize] = Some(ping_at + self.config.ping_timeout);
            self.push(Frame::text_packet(PacketType::Ping, ""));
        }
        if self.due(Timer::Upgrade, now) {
            self.abort_upgrade();
        }
    }

    fn due(&self, timer: Timer, now: Instant) -> bool {
        self.timers[timer as usize].is_some_and(|at| at <= now)
    }

    /// The earliest instant at which [`Session::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        TIMERS
            .iter()
            .filter_map(|timer| self.timers[*timer as usize])
            .min()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Takes every pending event at once, in order, with the queue's memory: a session that
    /// has nothing to say holds no queue (most sessions are idle most of the time).
    pub fn take_events(&mut self) -> VecDeque<Event> {
        std::mem::take(&mut self.events)
    }

    /// Ends the session at once, dropping anything unsent.
    pub fn close(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        self.state = State::Closed(reason);
        self.outbox.clear();
        self.outbox_bytes = 0;
        self.timers = [None; 4];
        self.upgrade = UpgradePhase::None;
        self.owes_probe_reply = false;
        self.events.push_back(Event::Closed(reason));
    }

    /// Starts a server-side close: what is queued still goes out (on long-polling followed by a
    /// close packet); then the session ends. If the client does not collect it within the ping
    /// timeout, the session ends anyway.
    pub fn start_close(&mut self, now: Instant, reason: CloseReason) {
        if self.state != State::Open {
            return;
        }
        if self.transport == TransportKind::WebSocket && self.outbox.is_empty() {
            self.close(reason);
            return;
        }
        // Long-polling tells the client with a close packet in its next GET. A WebSocket ends
        // with the WebSocket close once the queue is written, as on the reference server.
        if self.transport == TransportKind::Polling {
            self.push(Frame::text_packet(PacketType::Close, ""));
        }
        self.state = State::Closing(reason);
        self.timers = [None; 4];
        self.timers[Timer::Close as usize] = Some(now + self.config.ping_timeout);
        // A probed upgrade stays: the client may have paused polling already, and then
        // only its upgrade packet lets the close reach it. An upgrade that has not been
        // probed yet ends here; the client goes on polling and collects the close packet.
        if self.upgrade == UpgradePhase::AwaitingProbe {
            self.abort_upgrade();
        }
    }

    fn abort_upgrade(&mut self) {
        self.upgrade = UpgradePhase::None;
        self.owes_probe_reply = false;
        self.timers[Timer::Upgrade as usize] = None;
    }

    fn finish_if_drained(&mut self) {
        if let State::Closing(reason) = self.state {
            if self.outbox.is_empty() {
                self.close(reason);
            }
        }
    }

    // ----- long-polling -------------------------------------------------------------------

    /// A GET arrives. At most one may wait at a time; a second one closes the session.
    pub fn poll_start(&mut self) -> Result<(), ErrorCode> {
        self.request_start(true)
    }

    /// The GET started by [`Session::poll_start`] ends; `completed` is false if the client
    /// went away before its response, which closes the session.
    pub fn poll_end(&mut self, completed: bool) {
        self.poll_active = false;
        if !completed {
            self.close(CloseReason::TransportError);
        }
    }

    /// A POST arrives. At most one may run at a time; a second one closes the session. A
    /// closing session takes no more packets, so its POSTs are refused (without closing it
    /// sooner: its GET may still collect the close packet).
    pub fn post_start(&mut self) -> Result<(), ErrorCode> {
        if self.is_closing() {
            return Err(ErrorCode::BadRequest);
        }
        self.request_start(false)
    }

    /// The POST started by [`Session::post_start`] ends.
    pub fn post_end(&mut self) {
        self.post_active = false;
    }

    fn request_start(&mut self, get: bool) -> Result<(), ErrorCode> {
        if self.is_closed() {
            return Err(ErrorCode::UnknownSid);
        }
        if self.transport != TransportKind::Polling {
            return Err(ErrorCode::BadRequest);
        }
        let active = if get {
            &mut self.poll_active
        } else {
            &mut self.post_active
        };
        if *active {
            self.close(CloseReason::TransportError);
            return Err(ErrorCode::BadRequest);
        }
        *active = true;
        Ok(())
    }

    /// The body for the waiting GET, if it should answer now.
    ///
    /// It answers with everything queued, in one payload; with a noop during an upgrade, so the
    /// client can pause polling; and, once the session closed, with a noop if the client closed
    /// it or a close packet otherwise.
    pub fn take_polling_payload(&mut self) -> Option<Bytes> {
        if let State::Closed(reason) = self.state {
            return Some(Bytes::from_static(
                if reason == CloseReason::TransportClose {
                    b"6"
                } else {
                    b"1"
                },
            ));
        }
        if self.transport != TransportKind::Polling {
            return Some(Bytes::from_static(b"6"));
        }
        if !self.outbox.is_empty() {
            let payload = encode_payload(&self.outbox);
            // Dropped rather than cleared: an idle session keeps no queue memory.
            self.outbox = VecDeque::new();
            self.outbox_bytes = 0;
            self.finish_if_drained();
            return Some(payload);
        }
        if self.upgrade == UpgradePhase::Probed {
            return Some(Bytes::from_static(b"6"));
        }
        None
    }

    /// Whether a GET is waiting on this session and would be answered now. False when no GET
    /// waits (a WebSocket session, say), so drivers wake nobody for nothing.
    pub fn polling_ready(&self) -> bool {
        self.poll_active
            && (self.is_closed()
                || self.transport != TransportKind::Polling
                || !self.outbox.is_empty()
                || self.upgrade == UpgradePhase::Probed)
    }

    // ----- WebSocket ------------------------------------------------------------------------

    /// A WebSocket carrying this session's sid wants to upgrade it.
    pub fn upgrade_start(&mut self, now: Instant) -> Result<(), ErrorCode> {
        if self.state != State::Open {
            return Err(ErrorCode::UnknownSid);
        }
        if self.transport != TransportKind::Polling || self.upgrade != UpgradePhase::None {
            return Err(ErrorCode::BadRequest);
        }
        self.upgrade = UpgradePhase::AwaitingProbe;
        self.timers[Timer::Upgrade as usize] = Some(now + self.config.upgrade_timeout);
        Ok(())
    }

    /// What the session's WebSocket, if any, is currently for.
    pub fn websocket_role(&self) -> WebSocketRole {
        if self.is_closed() {
            WebSocketRole::Detached
        } else if self.transport == TransportKind::WebSocket {
            WebSocketRole::Active
        } else if self.upgrade != UpgradePhase::None {
            WebSocketRole::Upgrading
        } else {
            WebSocketRole::Detached
        }
    }

    /// Moves every frame the WebSocket should write now into `out`.
    pub fn drain_websocket_frames(&mut self, out: &mut Vec<Frame>) {
        if self.owes_probe_reply {
            self.owes_probe_reply = false;
            out.push(Frame::text_packet(PacketType::Pong, "probe"));
        }
        if self.transport == TransportKind::WebSocket && !self.is_closed() {
            if out.is_empty() {
                // The queue's memory moves to the writer (in place when the ring starts at the
                // front of its buffer, as it does when only pushed at the back and taken
                // whole), so an idle session keeps none.
                *out = Vec::from(std::mem::take(&mut self.outbox));
            } else {
                out.extend(self.outbox.drain(..));
            }
            self.outbox_bytes = 0;
            self.finish_if_drained();
        }
    }

    /// Whether the WebSocket has frames to write.
    pub fn websocket_ready(&self) -> bool {
        self.owes_probe_reply
            || (self.transport == TransportKind::WebSocket && !self.outbox.is_empty())
    }

    /// The WebSocket ended (closed by the peer or failed). An upgrading WebSocket only aborts
    /// the upgrade; the active one ends the session.
    pub fn websocket_closed(&mut self, reason: CloseReason) {
        match self.websocket_role() {
            WebSocketRole::Active => self.close(reason),
            WebSocketRole::Upgrading => self.abort_upgrade(),
            WebSocketRole::Detached => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SessionConfig {
        SessionConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            upgrade_timeout: Duration::from_millis(1000),
            max_payload: 1000,
            max_buffered_bytes: 10,
        }
    }

    fn ms(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    fn events(session: &mut Session) -> Vec<Event> {
        std::iter::from_fn(|| session.poll_event()).collect()
    }

    #[test]
    fn heartbeat_pings_on_interval_and_times_out_without_pong() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        assert_eq!(s.poll_timeout(), Some(ms(t0, 300)));
        s.handle_timeout(ms(t0, 299));
        assert_eq!(s.take_polling_payload(), None);
        // A late timer: the pong deadline still counts from when the ping was due.
        s.handle_timeout(ms(t0, 310));
        assert_eq!(s.take_polling_payload(), Some(Bytes::from_static(b"2")));
        assert_eq!(s.poll_timeout(), Some(ms(t0, 500)));
        s.handle_timeout(ms(t0, 499));
        assert!(!s.is_closed());
        s.handle_timeout(ms(t0, 500));
        assert_eq!(s.close_reason(), Some(CloseReason::PingTimeout));
        assert_eq!(
            events(&mut s),
            vec![Event::Closed(CloseReason::PingTimeout)]
        );
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn pong_schedules_the_next_ping() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::WebSocket);
        s.handle_timeout(ms(t0, 300));
        let mut out = Vec::new();
        s.drain_websocket_frames(&mut out);
        assert_eq!(out, vec![Frame::Text(Text::from_static("2"))]);
        s.handle_packet(
            ms(t0, 350),
            TransportKind::WebSocket,
            Packet::Pong(String::new()),
        );
        assert_eq!(s.poll_timeout(), Some(ms(t0, 650)));
        s.handle_timeout(ms(t0, 600));
        assert!(!s.is_closed());
    }

    #[test]
    fn a_drained_session_keeps_no_queue_memory() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::WebSocket);
        s.send(Frame::text_message("a")).unwrap();
        s.handle_packet(
            ms(t0, 1),
            TransportKind::WebSocket,
            Packet::Message(Message::Text("b".into())),
        );
        let mut out = Vec::new();
        s.drain_websocket_frames(&mut out);
        assert_eq!(out, vec![Frame::text_message("a")]);
        let taken = s.take_events();
        assert_eq!(
            taken.into_iter().collect::<Vec<_>>(),
            vec![Event::Message(Message::Text("b".into()))]
        );
        assert_eq!(s.outbox.capacity(), 0);
        assert_eq!(s.events.capacity(), 0);

        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.send(Frame::text_message("a")).unwrap();
        assert!(s.take_polling_payload().is_some());
        assert_eq!(s.outbox.capacity(), 0);
    }

    #[test]
    fn a_websocket_session_has_no_poll_to_wake() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::WebSocket);
        s.send(Frame::text_message("a")).unwrap();
        assert!(!s.polling_ready());
    }

    #[test]
    fn unsolicited_pong_is_ignored() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::WebSocket);
        s.handle_packet(
            ms(t0, 10),
            TransportKind::WebSocket,
            Packet::Pong(String::new()),
        );
        assert_eq!(s.poll_timeout(), Some(ms(t0, 300)));
    }

    #[test]
    fn client_ping_is_a_transport_error() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.handle_packet(t0, TransportKind::Polling, Packet::Ping(String::new()));
        assert_eq!(s.close_reason(), Some(CloseReason::TransportError));
    }

    #[test]
    fn messages_become_events_in_order() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        for text in ["a", "b"] {
            s.handle_packet(
                t0,
                TransportKind::Polling,
                Packet::Message(Message::Text(text.into())),
            );
        }
        assert_eq!(
            events(&mut s),
            vec![
                Event::Message(Message::Text("a".into())),
                Event::Message(Message::Text("b".into()))
            ]
        );
    }

    #[test]
    fn one_get_answers_with_everything_queued() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        // Queued frames with no GET waiting: nobody to wake.
        s.send(Frame::text_message("a")).unwrap();
        assert!(!s.polling_ready());
        s.poll_start().unwrap();
        assert!(s.polling_ready());
        s.send(Frame::Binary(Bytes::from_static(&[1]))).unwrap();
        assert_eq!(
            s.take_polling_payload(),
            Some(Bytes::from_static(b"4a\x1ebAQ=="))
        );
        s.poll_end(true);
        assert_eq!(s.buffered_bytes(), 0);
        assert!(!s.is_closed());
    }

    #[test]
    fn overlapping_gets_close_the_session_and_the_waiting_get_gets_close() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.poll_start().unwrap();
        assert_eq!(s.poll_start(), Err(ErrorCode::BadRequest));
        assert_eq!(s.close_reason(), Some(CloseReason::TransportError));
        assert_eq!(s.take_polling_payload(), Some(Bytes::from_static(b"1")));
        assert_eq!(s.poll_start(), Err(ErrorCode::UnknownSid));
    }

    #[test]
    fn overlapping_posts_close_the_session() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.post_start().unwrap();
        assert_eq!(s.post_start(), Err(ErrorCode::BadRequest));
        assert!(s.is_closed());
    }

    #[test]
    fn aborted_get_closes_the_session() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.poll_start().unwrap();
        s.poll_end(false);
        assert_eq!(s.close_reason(), Some(CloseReason::TransportError));
    }

    #[test]
    fn client_close_answers_the_waiting_get_with_noop() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.poll_start().unwrap();
        s.post_start().unwrap();
        s.handle_packet(t0, TransportKind::Polling, Packet::Close);
        s.post_end();
        assert_eq!(s.take_polling_payload(), Some(Bytes::from_static(b"6")));
        assert_eq!(
            events(&mut s),
            vec![Event::Closed(CloseReason::TransportClose)]
        );
    }

    #[test]
    fn upgrade_probe_noop_and_switch_keep_queued_frames() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.upgrade_start(t0).unwrap();
        assert_eq!(s.websocket_role(), WebSocketRole::Upgrading);
        s.handle_packet(t0, TransportKind::WebSocket, Packet::Ping("probe".into()));
        let mut out = Vec::new();
        s.drain_websocket_frames(&mut out);
        assert_eq!(out, vec![Frame::Text(Text::from_static("3probe"))]);
        // A waiting GET is released with a noop so the client can pause polling.
        s.poll_start().unwrap();
        assert_eq!(s.take_polling_payload(), Some(Bytes::from_static(b"6")));
        s.poll_end(true);
        // A frame sent during the probe waits and goes out on the WebSocket after the switch.
        s.send(Frame::text_message("x")).unwrap();
        s.handle_packet(t0, TransportKind::WebSocket, Packet::Upgrade);
        assert_eq!(s.transport(), TransportKind::WebSocket);
        assert_eq!(events(&mut s), vec![Event::Upgraded]);
        out.clear();
        s.drain_websocket_frames(&mut out);
        assert_eq!(out, vec![Frame::Text(Text::from_static("4x"))]);
        // Polling requests are now refused without closing the session.
        assert_eq!(s.poll_start(), Err(ErrorCode::BadRequest));
        assert_eq!(s.post_start(), Err(ErrorCode::BadRequest));
        assert!(!s.is_closed());
        // A second upgrade is refused.
        assert_eq!(s.upgrade_start(t0), Err(ErrorCode::BadRequest));
    }

    #[test]
    fn upgrade_times_out_and_session_stays_on_polling() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.upgrade_start(t0).unwrap();
        assert_eq!(s.upgrade_start(t0), Err(ErrorCode::BadRequest));
        // The first ping keeps the session alive; answer it.
        s.handle_timeout(ms(t0, 300));
        s.handle_packet(
            ms(t0, 310),
            TransportKind::Polling,
            Packet::Pong(String::new()),
        );
        s.handle_timeout(ms(t0, 1000));
        assert_eq!(s.websocket_role(), WebSocketRole::Detached);
        assert_eq!(s.transport(), TransportKind::Polling);
        assert!(!s.is_closed());
        // A new upgrade may start.
        s.upgrade_start(ms(t0, 1001)).unwrap();
    }

    #[test]
    fn unexpected_packet_on_probing_websocket_aborts_only_the_upgrade() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.upgrade_start(t0).unwrap();
        s.handle_packet(t0, TransportKind::WebSocket, Packet::Upgrade);
        assert_eq!(s.websocket_role(), WebSocketRole::Detached);
        assert!(!s.is_closed());
    }

    #[test]
    fn closing_the_probing_websocket_aborts_the_upgrade() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.upgrade_start(t0).unwrap();
        s.websocket_closed(CloseReason::TransportClose);
        assert!(!s.is_closed());
        assert_eq!(s.websocket_role(), WebSocketRole::Detached);
    }

    /// Probes the upgrade of a polling session and lets its waiting GET go with a noop, as a
    /// client that has paused polling sees it.
    fn probed_and_paused(t0: Instant) -> Session {
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.upgrade_start(t0).unwrap();
        s.handle_packet(t0, TransportKind::WebSocket, Packet::Ping("probe".into()));
        let mut out = Vec::new();
        s.drain_websocket_frames(&mut out);
        s.poll_start().unwrap();
        assert_eq!(s.take_polling_payload(), Some(Bytes::from_static(b"6")));
        s.poll_end(true);
        s
    }

    #[test]
    fn a_close_during_a_probed_upgrade_goes_out_on_the_websocket() {
        let t0 = Instant::now();
        let mut s = probed_and_paused(t0);
        s.send(Frame::text_message("x")).unwrap();
        s.start_close(t0, CloseReason::ServerShutdown);
        // The client, paused, completes the upgrade: the queue goes out on the WebSocket
        // without the polling close packet, then the session ends.
        assert_eq!(s.websocket_role(), WebSocketRole::Upgrading);
        s.handle_packet(t0, TransportKind::WebSocket, Packet::Upgrade);
        assert_eq!(s.transport(), TransportKind::WebSocket);
        let mut out = Vec::new();
        s.drain_websocket_frames(&mut out);
        assert_eq!(out, vec![Frame::Text(Text::from_static("4x"))]);
        assert_eq!(s.close_reason(), Some(CloseReason::ServerShutdown));
        assert_eq!(
            events(&mut s),
            vec![Event::Upgraded, Event::Closed(CloseReason::ServerShutdown)]
        );
        assert_eq!(s.websocket_role(), WebSocketRole::Detached);
    }

    #[test]
    fn a_close_during_a_probed_upgrade_with_nothing_queued_ends_at_the_switch() {
        let t0 = Instant::now();
        let mut s = probed_and_paused(t0);
        s.start_close(t0, CloseReason::ServerShutdown);
        assert!(!s.is_closed());
        s.handle_packet(ms(t0, 10), TransportKind::WebSocket, Packet::Upgrade);
        assert_eq!(s.close_reason(), Some(CloseReason::ServerShutdown));
        let mut out = Vec::new();
        s.drain_websocket_frames(&mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_close_during_a_probed_upgrade_still_reaches_a_client_that_polls() {
        let t0 = Instant::now();
        let mut s = probed_and_paused(t0);
        s.start_close(t0, CloseReason::ServerShutdown);
        // A client that gave up the upgrade polls again and collects the close packet.
        s.poll_start().unwrap();
        assert_eq!(s.take_polling_payload(), Some(Bytes::from_static(b"1")));
        assert_eq!(s.close_reason(), Some(CloseReason::ServerShutdown));
    }

    #[test]
    fn a_close_before_the_probe_aborts_the_upgrade() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.upgrade_start(t0).unwrap();
        s.start_close(t0, CloseReason::ServerShutdown);
        assert_eq!(s.websocket_role(), WebSocketRole::Detached);
        s.handle_packet(t0, TransportKind::WebSocket, Packet::Ping("probe".into()));
        assert!(!s.websocket_ready());
    }

    #[test]
    fn closing_the_active_websocket_closes_the_session() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::WebSocket);
        s.websocket_closed(CloseReason::TransportClose);
        assert_eq!(s.close_reason(), Some(CloseReason::TransportClose));
    }

    #[test]
    fn outbox_is_bounded_in_bytes_but_takes_one_big_frame() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.send(Frame::text_message(&"x".repeat(50))).unwrap();
        assert_eq!(s.send(Frame::text_message("y")), Err(SendError::BufferFull));
        s.poll_start().unwrap();
        assert!(s.take_polling_payload().is_some());
        s.send(Frame::text_message("1234567")).unwrap();
        assert_eq!(s.buffered_bytes(), 8);
        assert_eq!(s.send(Frame::text_message("a")), Ok(()));
        assert_eq!(s.send(Frame::text_message("b")), Err(SendError::BufferFull));
    }

    #[test]
    fn send_all_is_all_or_nothing() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::WebSocket);
        s.send(Frame::text_message("1234")).unwrap();
        let pair = || {
            vec![
                Frame::text_message("ab"),
                Frame::Binary(Bytes::from_static(b"xyz")),
            ]
        };
        assert_eq!(s.send_all(pair()), Err(SendError::BufferFull));
        assert_eq!(s.buffered_bytes(), 5);
        let mut out = Vec::new();
        s.drain_websocket_frames(&mut out);
        assert_eq!(s.send_all(pair()), Ok(()));
        assert_eq!(s.buffered_bytes(), 6);
    }

    #[test]
    fn server_close_flushes_then_ends() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.send(Frame::text_message("bye")).unwrap();
        s.start_close(t0, CloseReason::ForcedClose);
        assert_eq!(s.send(Frame::text_message("late")), Err(SendError::Closed));
        s.poll_start().unwrap();
        assert_eq!(
            s.take_polling_payload(),
            Some(Bytes::from_static(b"4bye\x1e1"))
        );
        assert_eq!(s.close_reason(), Some(CloseReason::ForcedClose));
    }

    #[test]
    fn server_close_on_websocket_writes_the_queue_then_ends_without_a_close_packet() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::WebSocket);
        s.send(Frame::text_message("bye")).unwrap();
        s.start_close(t0, CloseReason::ForcedClose);
        assert!(!s.is_closed());
        let mut out = Vec::new();
        s.drain_websocket_frames(&mut out);
        assert_eq!(out, vec![Frame::text_message("bye")]);
        assert_eq!(s.close_reason(), Some(CloseReason::ForcedClose));
        // With nothing queued it ends at once.
        let mut idle = Session::new(t0, config(), TransportKind::WebSocket);
        idle.start_close(t0, CloseReason::ServerShutdown);
        assert_eq!(idle.close_reason(), Some(CloseReason::ServerShutdown));
    }

    #[test]
    fn a_closing_session_refuses_posts_and_ignores_packets_but_lets_the_get_collect() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.post_start().unwrap();
        s.start_close(t0, CloseReason::ForcedClose);
        assert!(s.is_closing());
        // The POST already running delivers nothing more.
        s.handle_packet(
            t0,
            TransportKind::Polling,
            Packet::Message(Message::Text("late".into())),
        );
        s.post_end();
        assert_eq!(events(&mut s), vec![]);
        assert_eq!(s.post_start(), Err(ErrorCode::BadRequest));
        assert!(s.is_closing());
        s.poll_start().unwrap();
        assert!(s.poll_waiting());
        assert_eq!(s.take_polling_payload(), Some(Bytes::from_static(b"1")));
        assert_eq!(s.close_reason(), Some(CloseReason::ForcedClose));
    }

    #[test]
    fn a_closing_websocket_session_still_takes_the_clients_close() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::WebSocket);
        s.send(Frame::text_message("bye")).unwrap();
        s.start_close(t0, CloseReason::ForcedClose);
        s.handle_packet(
            t0,
            TransportKind::WebSocket,
            Packet::Message(Message::Text("ignored".into())),
        );
        s.handle_packet(t0, TransportKind::WebSocket, Packet::Close);
        assert_eq!(
            events(&mut s),
            vec![Event::Closed(CloseReason::TransportClose)]
        );
    }

    #[test]
    fn server_close_ends_after_timeout_if_nobody_collects() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::Polling);
        s.start_close(t0, CloseReason::ServerShutdown);
        assert_eq!(s.poll_timeout(), Some(ms(t0, 200)));
        s.handle_timeout(ms(t0, 200));
        assert_eq!(s.close_reason(), Some(CloseReason::ServerShutdown));
    }

    #[test]
    fn closed_event_comes_exactly_once() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config(), TransportKind::WebSocket);
        s.close(CloseReason::ForcedClose);
        s.close(CloseReason::TransportError);
        s.websocket_closed(CloseReason::TransportClose);
        assert_eq!(
            events(&mut s),
            vec![Event::Closed(CloseReason::ForcedClose)]
        );
    }

    #[test]
    fn open_packet_lists_upgrades_and_timings() {
        let s = Session::new(Instant::now(), config(), TransportKind::Polling);
        assert_eq!(
            s.open_packet("sid1", &[TransportKind::WebSocket]),
            Frame::Text(Text::from_static(
                r#"0{"sid":"sid1","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000}"#
            ))
        );
    }

    #[test]
    fn transport_names_parse() {
        assert_eq!(
            TransportKind::from_query("polling"),
            Some(TransportKind::Polling)
        );
        assert_eq!(
            TransportKind::from_query("websocket"),
            Some(TransportKind::WebSocket)
        );
        assert_eq!(TransportKind::from_query("flashsocket"), None);
    }
}
