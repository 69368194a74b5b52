//! The application's handle on one Engine.IO session.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Uri};
use switchyard_engineio_proto::{
    CloseReason, Event, Frame, SendError, Session, SessionConfig, TransportKind, WebSocketRole,
};
use tokio::sync::Notify;

use crate::headers::RequestHeaders;
use crate::log::FaultCounter;

/// What the engine keeps of the request that opened a session.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The request method.
    pub method: Method,
    /// The request URI, query included.
    pub uri: Uri,
    /// The request headers, compact ([`RequestHeaders::map`] gives a `HeaderMap`).
    pub headers: RequestHeaders,
    /// The peer's address, when the server knows it.
    pub remote_addr: Option<SocketAddr>,
    /// When the request arrived.
    pub time: SystemTime,
}

impl RequestInfo {
    /// What the session keeps of `request`, copied out of the connection's read buffer.
    ///
    /// hyper's header values and URI are views into the 8 KiB buffer the request was read
    /// into: keeping them as they are would keep that whole buffer for the session's life,
    /// most of an idle connection's memory. The copy keeps the headers in one allocation of
    /// their own bytes ([`RequestHeaders`]) and the URI in another.
    pub fn copied_from<B>(request: &http::Request<B>, remote_addr: Option<SocketAddr>) -> Self {
        RequestInfo {
            method: request.method().clone(),
            uri: copy_uri(request.uri()),
            headers: RequestHeaders::copied_from(request.headers()),
            remote_addr,
            time: SystemTime::now(),
        }
    }

    /// The value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.uri.query()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| percent_decode(value))
        })
    }
}

/// `uri` in an allocation of its own.
fn copy_uri(uri: &Uri) -> Uri {
    Uri::from_maybe_shared(Bytes::from(uri.to_string())).unwrap_or_else(|_| uri.clone())
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let hex = |b: u8| (b as char).to_digit(16);
        match byte {
            b'%' => {
                match (
                    bytes.get(index + 1).and_then(|b| hex(*b)),
                    bytes.get(index + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        index += 3;
                        continue;
                    }
                    _ => out.push(byte),
                }
            }
            b'+' => out.push(b' '),
            _ => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a session opened on long-polling waits on, apart from its WebSocket's waker: both
/// wait at once during an upgrade.
#[derive(Debug, Default)]
pub(crate) struct PollingWakers {
    /// Wakes the session's timer task.
    pub(crate) driver: Notify,
    /// Wakes the GET waiting on the session.
    pub(crate) poll: Notify,
    /// Wakes everything that waits on the peer for this session (a POST body) once it has
    /// closed; fired with `notify_waiters`, so only futures created before the close see it.
    pub(crate) closed: Notify,
}

/// One Engine.IO session, as the application sees it: send frames, close, inspect.
///
/// Cloning the `Arc` is cheap; every method may be called from any task.
#[derive(Debug)]
pub struct Socket {
    sid: Arc<str>,
    core: Mutex<Session>,
    /// Wakes the task of the session's WebSocket (writes, timers once upgraded).
    pub(crate) wake_websocket: Notify,
    /// What only a session opened on long-polling waits on; `None` for a session opened on a
    /// WebSocket, which never has a poll, a POST or a polling timer task to wake, so that it
    /// does not carry their wakers for its whole life.
    polling: Option<Box<PollingWakers>>,
    /// The peer's faults, so that only the first is logged loudly.
    pub(crate) faults: FaultCounter,
    request: RequestInfo,
}

impl Socket {
    pub(crate) fn new(
        sid: Arc<str>,
        config: Arc<SessionConfig>,
        transport: TransportKind,
        request: RequestInfo,
    ) -> Socket {
        Socket {
            sid,
            core: Mutex::new(Session::new(Instant::now(), config, transport)),
            wake_websocket: Notify::new(),
            polling: (transport == TransportKind::Polling).then(Box::default),
            faults: FaultCounter::default(),
            request,
        }
    }

    /// The session id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The request that opened the session.
    pub fn request(&self) -> &RequestInfo {
        &self.request
    }

    /// The transport in use now.
    pub fn transport(&self) -> TransportKind {
        self.lock().transport()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.lock().is_closed()
    }

    /// Whether a long-polling GET is waiting on this session.
    pub fn poll_waiting(&self) -> bool {
        self.lock().poll_waiting()
    }

    /// Whether a long-polling POST body is being received for this session.
    pub fn post_in_progress(&self) -> bool {
        self.lock().post_in_progress()
    }

    /// Whether a WebSocket is probing an upgrade of this session.
    pub fn is_upgrading(&self) -> bool {
        self.lock().websocket_role() == WebSocketRole::Upgrading
    }

    /// Bytes queued for this client and not yet written.
    pub fn buffered_bytes(&self) -> usize {
        self.lock().buffered_bytes()
    }

    /// Queues one frame for the client.
    pub fn send(&self, frame: Frame) -> Result<(), SendError> {
        let mut core = self.lock();
        let result = core.send(frame);
        let transport = core.transport();
        drop(core);
        if result.is_ok() {
            self.wake_writer(transport);
        }
        result
    }

    /// Queues frames that must travel together (a packet and its attachments): all or none.
    pub fn send_all(&self, frames: impl IntoIterator<Item = Frame>) -> Result<(), SendError> {
        let mut core = self.lock();
        let result = core.send_all(frames);
        let transport = core.transport();
        drop(core);
        if result.is_ok() {
            self.wake_writer(transport);
        }
        result
    }

    /// The wakers of a session opened on long-polling.
    pub(crate) fn polling_wakers(&self) -> Option<&PollingWakers> {
        self.polling.as_deref()
    }

    /// Wakes the GET waiting on this session, if any (or the next one).
    fn wake_poll(&self) {
        if let Some(polling) = &self.polling {
            polling.poll.notify_one();
        }
    }

    /// Wakes whatever waits on the peer for this session, now that it has closed.
    pub(crate) fn wake_closed(&self) {
        self.wake_poll();
        if let Some(polling) = &self.polling {
            polling.closed.notify_waiters();
        }
        self.wake_drivers();
    }

    /// Wakes whoever writes for `transport`; during an upgrade the session still sends over
    /// polling, and its WebSocket task learns of the switch from the session's events.
    fn wake_writer(&self, transport: TransportKind) {
        match transport {
            TransportKind::Polling => self.wake_poll(),
            TransportKind::WebSocket => self.wake_websocket.notify_one(),
        }
    }

    /// Closes the session from the server side: queued frames go out first, then a close
    /// packet. The handler's close callback runs with [`CloseReason::ForcedClose`].
    pub fn close(&self) {
        self.close_with(CloseReason::ForcedClose);
    }

    pub(crate) fn close_with(&self, reason: CloseReason) {
        self.lock().start_close(Instant::now(), reason);
        self.wake_writers();
    }

    fn wake_writers(&self) {
        self.wake_poll();
        self.wake_drivers();
    }

    pub(crate) fn wake_drivers(&self) {
        if let Some(polling) = &self.polling {
            polling.driver.notify_one();
        }
        self.wake_websocket.notify_one();
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Session> {
        // A panic while holding this lock leaves a consistent-enough session: the protocol core
        // never panics midway through an update, so take the data back.
        self.core
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `update` on the session core, then collects its events and wakes whoever must act.
    pub(crate) fn update<R>(
        &self,
        update: impl FnOnce(&mut Session, Instant) -> R,
    ) -> (R, Vec<Event>) {
        let now = Instant::now();
        let mut core = self.lock();
        let deadline_before = core.poll_timeout();
        let result = update(&mut core, now);
        // In place: the queue is only pushed at the back and taken whole.
        let events = Vec::from(core.take_events());
        let poll_ready = core.polling_ready();
        let deadline_after = core.poll_timeout();
        drop(core);
        if poll_ready {
            self.wake_poll();
        }
        let earlier = match (deadline_before, deadline_after) {
            (Some(before), Some(after)) => after < before,
            (None, Some(_)) => true,
            _ => false,
        };
        if earlier || !events.is_empty() {
            self.wake_drivers();
        }
        (result, events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// Whether `inner` lies inside `outer`'s memory.
    fn within(inner: &[u8], outer: &[u8]) -> bool {
        let range = outer.as_ptr_range();
        range.contains(&inner.as_ptr())
    }

    #[test]
    fn the_kept_request_does_not_hold_the_buffer_it_was_read_into() {
        // As hyper parses it: values and URI are views into one large read buffer.
        let mut buffer = vec![b' '; 8192];
        let text = b"/socket.io/?EIO=4&transport=websocketexample.testx-custom-value";
        buffer[..text.len()].copy_from_slice(text);
        let buffer = Bytes::from(buffer);
        let uri = Uri::from_maybe_shared(buffer.slice(0..40)).unwrap();
        let mut request = http::Request::builder().uri(uri).body(()).unwrap();
        let headers = request.headers_mut();
        let host = HeaderValue::from_maybe_shared(buffer.slice(40..52)).unwrap();
        let custom = HeaderValue::from_maybe_shared(buffer.slice(52..64)).unwrap();
        let secret = HeaderValue::from_static("Bearer abc");
        headers.insert(http::header::HOST, host);
        headers.append("x-custom", custom.clone());
        headers.append("x-custom", HeaderValue::from_static("second"));
        headers.insert(http::header::AUTHORIZATION, secret);
        assert!(within(request.headers()["x-custom"].as_bytes(), &buffer));

        let info = RequestInfo::copied_from(&request, None);
        assert_eq!(info.uri, *request.uri());
        assert_eq!(info.headers, *request.headers());
        let values: Vec<_> = info.headers.get_all("x-custom").collect();
        assert_eq!(values, [custom.as_bytes(), b"second"]);
        for (_, value) in info.headers.iter() {
            assert!(!within(value, &buffer), "{value:?} still in the buffer");
        }
        let path = info.uri.path_and_query().unwrap().as_str().as_bytes();
        assert!(!within(path, &buffer));
    }

    #[test]
    fn query_params_are_percent_decoded() {
        let info = RequestInfo {
            method: Method::GET,
            uri: "/socket.io/?EIO=4&token=a%20b%2Bc&x=1+2&bad=%zz"
                .parse()
                .unwrap(),
            headers: RequestHeaders::default(),
            remote_addr: None,
            time: SystemTime::now(),
        };
        assert_eq!(info.query_param("token").as_deref(), Some("a b+c"));
        assert_eq!(info.query_param("x").as_deref(), Some("1 2"));
        assert_eq!(info.query_param("bad").as_deref(), Some("%zz"));
        assert_eq!(info.query_param("missing"), None);
    }
}
