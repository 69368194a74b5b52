//! Handler traits: how plain async closures become connection, middleware, event and
//! disconnect handlers.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::socket::{DisconnectReason, Socket};
use crate::types::BoxFuture;
use switchyard_core::{Args, ArgsError, FromArgs, IntoArgs};

/// What an event handler's return value means for the client.
///
/// `()` sends nothing. `Result<T, E>` answers the client's ack, if it asked for one: with `T`'s
/// arguments on success, or with `[{"error": message}]` on failure (also logged).
pub trait HandlerOutput {
    /// The ack reply: `None` for no reply.
    fn into_reply(self) -> Option<Result<Args, String>>;
}

impl HandlerOutput for () {
    fn into_reply(self) -> Option<Result<Args, String>> {
        None
    }
}

impl<T: IntoArgs, E: Display> HandlerOutput for Result<T, E> {
    fn into_reply(self) -> Option<Result<Args, String>> {
        Some(match self {
            Ok(value) => value.into_args().map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        })
    }
}

/// A type-erased event handler.
pub(crate) type ErasedEventHandler = Arc<
    dyn Fn(Socket, Args) -> Result<BoxFuture<Option<Result<Args, String>>>, ArgsError>
        + Send
        + Sync,
>;

/// An async function usable as an event handler: `|socket: Socket, data: T| async move { .. }`.
pub trait EventHandler<T>: Send + Sync + 'static {
    /// Erases the handler's types.
    fn erase(self) -> ErasedEventHandler;
}

impl<F, Fut, T, R> EventHandler<(T, R)> for F
where
    F: Fn(Socket, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    T: FromArgs,
    R: HandlerOutput,
{
    fn erase(self) -> ErasedEventHandler {
        Arc::new(move |socket, args| {
            let data = T::from_args(args)?;
            let future = self(socket, data);
            Ok(Box::pin(async move { future.await.into_reply() }))
        })
    }
}

/// A connection handler: `|socket: Socket| async move { .. }`.
pub(crate) type ErasedConnectHandler = Arc<dyn Fn(Socket) -> BoxFuture<()> + Send + Sync>;

/// A disconnect handler: `|socket: Socket, reason: DisconnectReason| async move { .. }`.
pub(crate) type ErasedDisconnectHandler =
    Arc<dyn Fn(Socket, DisconnectReason) -> BoxFuture<()> + Send + Sync>;

/// Why a middleware refused a connection: sent to the client as CONNECT_ERROR
/// `{"message": .., "data": ..}` (socket.io-client's `err.message` and `err.data`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    /// The message.
    pub message: String,
    /// Extra data for the client, if any.
    pub data: Option<serde_json::Value>,
}

impl ConnectError {
    /// A refusal with `message`.
    pub fn new(message: impl Into<String>) -> ConnectError {
        ConnectError {
            message: message.into(),
            data: None,
        }
    }

    /// Adds data for the client.
    pub fn with_data(mut self, data: serde_json::Value) -> ConnectError {
        self.data = Some(data);
        self
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("message".into(), self.message.clone().into());
        if let Some(data) = &self.data {
            object.insert("data".into(), data.clone());
        }
        serde_json::Value::Object(object)
    }
}

impl Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

/// A connect middleware: `|socket: Socket| async move { Ok(()) }` or
/// `Err(ConnectError::new("unauthorized"))`.
pub(crate) type ErasedMiddleware =
    Arc<dyn Fn(Socket) -> BoxFuture<Result<(), ConnectError>> + Send + Sync>;

/// A server-side event handler: its answer goes back to the server that emitted the event.
pub(crate) type ErasedServerEventHandler = Arc<dyn Fn(Args) -> BoxFuture<Args> + Send + Sync>;

/// Polls `future` once on the current task, with no waker: its output if it is done, the
/// future itself if it has to wait (the caller then spawns it, which polls it again with a
/// real waker).
pub(crate) fn poll_once<F: Future + ?Sized>(
    mut future: Pin<Box<F>>,
) -> Result<F::Output, Pin<Box<F>>> {
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(future),
    }
}

/// Polls `future` once on the current task; if it is not done, spawns it to finish.
///
/// Most handlers finish without waiting, so they cost no task; and a handler's synchronous
/// start (registering event handlers, say) has always run when this returns.
pub(crate) fn run_inline<F>(future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Err(pending) = poll_once(Box::pin(future)) {
        tokio::spawn(pending);
    }
}
