//! The long-polling transport: GET waits for packets, POST delivers them.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use switchyard_engineio_proto::{decode_payload, CloseReason, TransportKind};
use tokio::time::sleep_until;
use tracing::{debug, warn};

use crate::engine::{error_response, plain, BoxError, EngineHandler, EngineInner, Entry};

/// Drives a polling session's timers until it closes or moves to a WebSocket (whose task
/// drives it from then on). One task per session, one sleep at a time.
pub(crate) async fn drive<H: EngineHandler>(
    inner: Arc<EngineInner<H>>,
    entry: Arc<Entry<H::Connection>>,
) {
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
            return;
        }
        let woken = entry.socket.wake_driver.notified();
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
    if let Err(code) = started {
        warn!(sid = entry.socket.sid(), %code, "refused poll");
        return error_response(code);
    }
    let mut guard = PollGuard {
        inner,
        entry,
        answered: false,
    };
    loop {
        let woken = entry.socket.wake_poll.notified();
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
    let (started, events) = entry.socket.update(|core, _| core.post_start());
    inner.dispatch(entry, events);
    if let Err(code) = started {
        warn!(sid = entry.socket.sid(), %code, "refused post");
        return error_response(code);
    }
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
        warn!(sid = entry.socket.sid(), "post body over max payload");
        guard.finish(None);
        return too_large();
    }
    let body = match Limited::new(request.into_body(), max_payload)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                warn!(sid = entry.socket.sid(), "post body over max payload");
                guard.finish(None);
                return too_large();
            }
            warn!(sid = entry.socket.sid(), %error, "post body failed");
            guard.finish(Some(CloseReason::TransportError));
            return error_response(switchyard_engineio_proto::ErrorCode::BadRequest);
        }
    };
    match decode_payload(&body, max_payload) {
        Ok(packets) => {
            guard.finished = true;
            let ((), events) = entry.socket.update(|core, now| {
                for packet in packets {
                    core.handle_packet(now, TransportKind::Polling, packet);
                }
                core.post_end();
            });
            inner.dispatch(entry, events);
            plain(StatusCode::OK, "ok", "text/html")
        }
        Err(error) => {
            warn!(sid = entry.socket.sid(), %error, "invalid polling payload, closing session");
            guard.finish(Some(CloseReason::ParseError));
            error_response(switchyard_engineio_proto::ErrorCode::BadRequest)
        }
    }
}

fn too_large() -> Response<Full<Bytes>> {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        r#"{"code":3,"message":"Payload too large"}"#,
        "application/json",
    )
}
