//! A deadline on every write to a peer, whoever does the writing (hyper, tungstenite).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

/// Wraps a peer's stream so that a write, flush or shutdown that makes no progress for `limit`
/// fails with [`io::ErrorKind::TimedOut`] instead of waiting forever.
///
/// Whoever waits on the write sees the error and ends the connection: a peer that stops
/// reading cannot hold a task, a session or its memory. The timer is only set while a write
/// waits, so a write that goes through at once costs nothing.
#[derive(Debug)]
pub(crate) struct StallGuard<T> {
    inner: T,
    limit: Duration,
    /// Fires `limit` after the first write that had to wait; reused across stalls.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether a write is waiting (and `timer` counts for it).
    stalled: bool,
}

impl<T> StallGuard<T> {
    pub(crate) fn new(inner: T, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            timer: None,
            stalled: false,
        }
    }

    /// Passes a ready result through, ending the stall if it was a write (`progress`); on
    /// `Pending`, starts the stall timer or fails the write once it has fired.
    fn check<R>(
        &mut self,
        cx: &mut Context<'_>,
        progress: bool,
        poll: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            // A flush or shutdown that completes says nothing about bytes the peer took.
            if progress {
                self.stalled = false;
            }
            return poll;
        }
        if !self.stalled {
            self.stalled = true;
            let deadline = Instant::now() + self.limit;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(sleep_until(deadline))),
            }
        }
        if let Some(timer) = &mut self.timer {
            if timer.as_mut().poll(cx).is_ready() {
                self.stalled = false;
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "write stalled: the peer stopped reading",
                )));
            }
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, true, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, true, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, false, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, false, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_the_peer_never_takes_fails_after_the_limit() {
        // A 64-byte pipe nobody reads from.
        let (near, _far) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(near, Duration::from_millis(100));
        let started = std::time::Instant::now();
        let error = tokio::time::timeout(Duration::from_secs(5), guarded.write_all(&[0u8; 1024]))
            .await
            .expect("the guard should end the write")
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut() {
        let (near, mut far) = tokio::io::duplex(16);
        let limit = Duration::from_secs(1);
        let mut guarded = StallGuard::new(near, limit);
        let reader = tokio::spawn(async move {
            let mut total = 0;
            let mut buf = [0u8; 16];
            while total < 128 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                total += far.read(&mut buf).await.unwrap();
            }
            total
        });
        // Eight short stalls: the write takes longer than the limit, but never stalls that long.
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(20), guarded.write_all(&[1u8; 128]))
            .await
            .unwrap()
            .unwrap();
        assert!(started.elapsed() > limit);
        assert_eq!(reader.await.unwrap(), 128);
    }
}
