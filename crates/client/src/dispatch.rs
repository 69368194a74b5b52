//! Runs the application's handlers, in arrival order, off the connection's task.
//!
//! Each handler future is polled once as soon as its event is taken from the queue, so the
//! handlers of successive events start in order; a handler still pending after that first
//! poll goes on concurrently with the later ones (like an `async` listener in JavaScript).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::task::Poll;

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use switchyard_core::Args;
use tokio::sync::mpsc;
use tracing::error;

use crate::error::ConnectError;
use crate::manager::{Manager, ManagerEvent, ManagerInner};
use crate::socket::{AckSender, DisconnectReason, Event, SocketInner};

/// Something for the application to hear about.
pub(crate) enum Dispatch {
    Event {
        socket: Arc<SocketInner>,
        name: String,
        args: Args,
        ack_id: Option<u64>,
    },
    Connect(Arc<SocketInner>),
    Disconnect(Arc<SocketInner>, DisconnectReason),
    ConnectError(Arc<SocketInner>, ConnectError),
    Manager(ManagerEvent),
}

/// The dispatcher task: runs until the driver drops its sender, then lets the handlers
/// still running finish.
pub(crate) async fn run(mut rx: mpsc::UnboundedReceiver<Dispatch>, manager: Weak<ManagerInner>) {
    let mut running: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
    loop {
        tokio::select! {
            item = rx.recv() => {
                let Some(item) = item else { break };
                let Some(inner) = manager.upgrade() else { continue };
                let manager = Manager { inner };
                let futures = match catch_unwind(AssertUnwindSafe(|| handle(item, &manager))) {
                    Ok(futures) => futures,
                    Err(_) => {
                        error!("a socket.io callback panicked");
                        Vec::new()
                    }
                };
                for future in futures {
                    // A panicking handler is logged and does not take the dispatcher down.
                    let mut future: BoxFuture<'static, ()> =
                        Box::pin(AssertUnwindSafe(future).catch_unwind().map(|result| {
                            if result.is_err() {
                                error!("a socket.io event handler panicked");
                            }
                        }));
                    let done = std::future::poll_fn(|cx| {
                        Poll::Ready(future.as_mut().poll(cx).is_ready())
                    })
                    .await;
                    if !done {
                        running.push(future);
                    }
                }
            }
            Some(()) = running.next(), if !running.is_empty() => {}
        }
    }
    while running.next().await.is_some() {}
}

/// Calls the synchronous callbacks and returns the event handlers' futures, in order.
fn handle(item: Dispatch, manager: &Manager) -> Vec<BoxFuture<'static, ()>> {
    match item {
        Dispatch::Event {
            socket,
            name,
            args,
            ack_id,
        } => {
            let handlers = {
                let handlers = socket
                    .handlers
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let mut list = handlers.any.clone();
                if let Some(specific) = handlers.events.get(&name) {
                    list.extend(specific.iter().cloned());
                }
                list
            };
            let socket = manager.wrap(socket);
            let event = Event {
                ack: ack_id.map(|id| AckSender::new(socket.clone(), id)),
                name,
                args,
                socket,
            };
            handlers
                .into_iter()
                .map(|handler| handler(event.clone()))
                .collect()
        }
        Dispatch::Connect(socket) => {
            let handlers = socket
                .handlers
                .read()
                .map(|h| h.connect.clone())
                .unwrap_or_default();
            let socket = manager.wrap(socket);
            handlers.iter().for_each(|handler| handler(&socket));
            Vec::new()
        }
        Dispatch::Disconnect(socket, reason) => {
            let handlers = socket
                .handlers
                .read()
                .map(|h| h.disconnect.clone())
                .unwrap_or_default();
            let socket = manager.wrap(socket);
            handlers.iter().for_each(|handler| handler(&socket, reason));
            Vec::new()
        }
        Dispatch::ConnectError(socket, error) => {
            let handlers = socket
                .handlers
                .read()
                .map(|h| h.connect_error.clone())
                .unwrap_or_default();
            let socket = manager.wrap(socket);
            handlers.iter().for_each(|handler| handler(&socket, &error));
            Vec::new()
        }
        Dispatch::Manager(event) => {
            manager.notify(&event);
            Vec::new()
        }
    }
}
