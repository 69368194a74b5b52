//! The long-polling transport: GET waits for packets, POST delivers them.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use switchyard_engineio_proto::{decode_payload, CloseReason, ErrorCode, TransportKind};
use tokio::time::{sleep_until, timeout};
use tracing::debug;

use crate::engine::{error_response, plain, BoxError, EndGuard, EngineHandler, EngineInner, Entry};
use crate::log::peer_fault;

/// Drives a polling session's timers until it closes or moves to a WebSocket (whose task
/// drives it from then on). One task per session, one sleep at a time.
pub(crate) async fn drive<H: EngineHandler>(
    inner: Arc<EngineInner<H>>,
    entry: Arc<Entry<H::Connection>>,
) {
    // Only sessions opened on polling have this task, and their wakers.
    let Some(wakers) = entry.socket.polling_wakers() else {
        return;
    };
    // A session still on polling when this task stops early loses its only timer: end it.
    let mut guard = EndGuard::new(&inner, &entry, |core| {
        if core.transport() == TransportKind::Polling {
            core.close(CloseReason::TransportError);
        }
    });
    loop {
        let ((deadline, done), events) = entry.socket.update(|core, now| {
            core.handle_timeout(now);
            (
                core.poll_timeout(),
                core.is_closed() || core.transport() == TransportKind::WebSocket,
            )
        });
        inner.dispatch(&entry, events);
        if done {
            guard.disarm();
            return;
        }
        let woken = wakers.driver.notified();
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    _ = sleep_until(deadline.into()) => {}
                    _ = woken => {}
                }
            }
            None => woken.await,
        }
    }
}

/// Ends the GET as aborted if its future is dropped before it answered: the client went away.
struct PollGuard<'a, H: EngineHandler> {
    inner: &'a EngineInner<H>,
    entry: &'a Entry<H::Connection>,
    answered: bool,
}

impl<H: EngineHandler> Drop for PollGuard<'_, H> {
    fn drop(&mut self) {
        if !self.answered {
            debug!(sid = self.entry.socket.sid(), "poll aborted by the client");
            let ((), events) = self.entry.socket.update(|core, _| core.poll_end(false));
            self.inner.dispatch(self.entry, events);
        }
    }
}

/// Answers a GET: everything queued, or waits until something is.
pub(crate) async fn get<H: EngineHandler>(
    inner: &EngineInner<H>,
    entry: &Entry<H::Connection>,
) -> Response<Full<Bytes>> {
    let (started, events) = entry.socket.update(|core, _| core.poll_start());
    inner.dispatch(entry, events);
    // A session opened on a WebSocket has no polling wakers; the session refuses its polls.
    let wakers = match (started, entry.socket.polling_wakers()) {
        (Ok(()), Some(wakers)) => wakers,
        (Ok(()), None) => {
            // Not reached (the session refuses), but the poll it started is given back.
            let ((), events) = entry.socket.update(|core, _| core.poll_end(true));
            inner.dispatch(entry, events);
            return error_response(ErrorCode::BadRequest);
        }
        (Err(code), _) => {
            peer_fault!(entry.socket.faults, sid = entry.socket.sid(), %code, "refused poll");
            return error_response(code);
        }
    };
    let mut guard = PollGuard {
        inner,
        entry,
        answered: false,
    };
    loop {
        let woken = wakers.poll.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let (payload, events) = entry.socket.update(|core, _| {
            let payload = core.take_polling_payload();
            if payload.is_some() {
                core.poll_end(true);
            }
            payload
        });
        if let Some(body) = payload {
            guard.answered = true;
            // Packets of a payload are separated by 0x1e, which no packet holds.
            let packets = body.iter().filter(|byte| **byte == 0x1e).count() + 1;
            inner.counters.sent(packets as u64, body.len());
            inner.dispatch(entry, events);
            return plain(StatusCode::OK, body, "text/plain; charset=UTF-8");
        }
        inner.dispatch(entry, events);
        woken.await;
    }
}

/// Ends the POST if its future is dropped midway: the client went away.
struct PostGuard<'a, H: EngineHandler> {
    inner: &'a EngineInner<H>,
    entry: &'a Entry<H::Connection>,
    finished: bool,
}

impl<H: EngineHandler> PostGuard<'_, H> {
    fn finish(&mut self, close: Option<CloseReason>) {
        self.finished = true;
        let ((), events) = self.entry.socket.update(|core, _| {
            core.post_end();
            if let Some(reason) = close {
                core.close(reason);
            }
        });
        self.inner.dispatch(self.entry, events);
    }
}

impl<H: EngineHandler> Drop for PostGuard<'_, H> {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(Some(CloseReason::TransportError));
        }
    }
}

/// Answers a POST: decodes its packets and hands them to the session.
pub(crate) async fn post<H, B>(
    inner: &EngineInner<H>,
    entry: &Entry<H::Connection>,
    request: Request<B>,
) -> Response<Full<Bytes>>
where
    H: EngineHandler,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    // Taken before the POST starts, so a close at any point after is seen. A session opened
    // on a WebSocket has no polling wakers; the session refuses its POSTs.
    let closed = entry
        .socket
        .polling_wakers()
        .map(|wakers| wakers.closed.notified());
    let (started, events) = entry.socket.update(|core, _| core.post_start());
    inner.dispatch(entry, events);
    let closed = match (started, closed) {
        (Ok(()), Some(closed)) => closed,
        (Ok(()), None) => {
            // Not reached (the session refuses), but the POST it started is given back.
            let ((), events) = entry.socket.update(|core, _| core.post_end());
            inner.dispatch(entry, events);
            return error_response(ErrorCode::BadRequest);
        }
        (Err(code), _) => {
            peer_fault!(entry.socket.faults, sid = entry.socket.sid(), %code, "refused post");
            return error_response(code);
        }
    };
    let mut guard = PostGuard {
        inner,
        entry,
        finished: false,
    };
    let max_payload = inner.config.session.max_payload;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max_payload) {
        peer_fault!(
            entry.socket.faults,
            sid = entry.socket.sid(),
            "post body over max payload"
        );
        guard.finish(None);
        return too_large();
    }
    // The body arrives within the body timeout, and only while the session lives: a peer
    // cannot keep a POST (and the connection's task) going by trickling bytes.
    let collect = timeout(
        inner.config.body_timeout,
        Limited::new(request.into_body(), max_payload).collect(),
    );
    let collected = tokio::select! {
        collected = collect => collected,
        () = closed => {
            debug!(sid = entry.socket.sid(), "session closed while its post body arrived");
            guard.finish(None);
            return closing(error_response(ErrorCode::UnknownSid));
        }
    };
    let body = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) => {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                peer_fault!(
                    entry.socket.faults,
                    sid = entry.socket.sid(),
                    "post body over max payload"
                );
                guard.finish(None);
                return too_large();
            }
            debug!(sid = entry.socket.sid(), %error, "post body failed");
            guard.finish(Some(CloseReason::TransportError));
            return error_response(ErrorCode::BadRequest);
        }
        Err(_) => {
            peer_fault!(
                entry.socket.faults,
                sid = entry.socket.sid(),
                timeout = ?inner.config.body_timeout,
                "post body not received in time"
            );
            // As an aborted POST: the session ends.
            guard.finish(Some(CloseReason::TransportError));
            return closing(timed_out());
        }
    };
    match decode_payload(&body, max_payload) {
        Ok(packets) => {
            inner.counters.received(packets.len() as u64, body.len());
            // One packet at a time, each handed to the application before the next is
            // handled: once the application closes the session (on a bad packet, say), the
            // rest of the body is dropped, not delivered one by one to a closing session.
            for packet in packets {
                let (stop, events) = entry.socket.update(|core, now| {
                    if core.is_closing() || core.is_closed() {
                        return true;
                    }
                    core.handle_packet(now, TransportKind::Polling, packet);
                    false
                });
                inner.dispatch(entry, events);
                if stop {
                    break;
                }
            }
            guard.finish(None);
            plain(StatusCode::OK, "ok", "text/html")
        }
        Err(error) => {
            peer_fault!(entry.socket.faults, sid = entry.socket.sid(), %error, "invalid polling payload, closing session");
            guard.finish(Some(CloseReason::ParseError));
            error_response(ErrorCode::BadRequest)
        }
    }
}

/// The answer to a POST whose body did not arrive within the body timeout.
fn timed_out() -> Response<Full<Bytes>> {
    plain(
        StatusCode::REQUEST_TIMEOUT,
        r#"{"code":3,"message":"Request timeout"}"#,
        "application/json",
    )
}

/// Marks `response` as the connection's last: the rest of the request body is never read.
fn closing(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn too_large() -> Response<Full<Bytes>> {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        r#"{"code":3,"message":"Payload too large"}"#,
        "application/json",
    )
}
