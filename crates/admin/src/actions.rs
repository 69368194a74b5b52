//! What the UI asks the server to do: `join`, `leave`, `_disconnect` and `emit`, on the
//! sockets of a namespace or of one room of it, on every server. Nothing answers them (as with
//! the reference): their effect shows in the live events.

use std::future::Future;
use std::sync::Arc;

use serde_json::Value;
use switchyard::proto::RESERVED_EVENTS;
use switchyard::{AdapterError, Args, BroadcastOperator, Socket, SocketIo};
use tokio::time::timeout;
use tracing::{info, warn};

use crate::forward::Shared;

/// Registers the action handlers on an admin socket (not on a read-only server).
pub(crate) fn register(server: &SocketIo, shared: &Arc<Shared>, socket: &Socket) {
    let deadline = shared.config.action_timeout;
    let target = {
        let server = server.clone();
        let observer = shared.observer.clone();
        move |action: &'static str, nsp: Option<&str>, filter: Option<&str>| {
            if observer.stopped() {
                warn!(
                    action,
                    "admin action ignored: the admin namespace is stopped"
                );
                return None;
            }
            target(&server, action, nsp, filter)
        }
    };

    let find = target.clone();
    socket.on("join", move |_: Socket, args: Args| {
        let room = text(&args, 1).map(str::to_owned);
        let operator = find("join", text(&args, 0), text(&args, 2));
        async move {
            if let (Some(operator), Some(room)) = (operator, room) {
                run("join", &room, operator.sockets_join(room.clone()), deadline).await;
            }
        }
    });

    let find = target.clone();
    socket.on("leave", move |_: Socket, args: Args| {
        let room = text(&args, 1).map(str::to_owned);
        let operator = find("leave", text(&args, 0), text(&args, 2));
        async move {
            if let (Some(operator), Some(room)) = (operator, room) {
                run(
                    "leave",
                    &room,
                    operator.sockets_leave(room.clone()),
                    deadline,
                )
                .await;
            }
        }
    });

    let find = target.clone();
    socket.on("_disconnect", move |_: Socket, args: Args| {
        // The reference reads any truthy value as "close the whole connection".
        let close = args.values.get(1).is_some_and(truthy);
        let operator = find("disconnect", text(&args, 0), text(&args, 2));
        async move {
            if let Some(operator) = operator {
                let what = if close { "connections" } else { "sockets" };
                run(
                    "disconnect",
                    what,
                    operator.disconnect_sockets(close),
                    deadline,
                )
                .await;
            }
        }
    });

    socket.on("emit", move |_: Socket, args: Args| {
        let operator = target("emit", text(&args, 0), text(&args, 1));
        let event = text(&args, 2).map(str::to_owned);
        async move {
            let (Some(operator), Some(event)) = (operator, event) else {
                return;
            };
            if RESERVED_EVENTS.contains(&event.as_str()) {
                warn!(event, "admin action refused: a reserved event name");
                return;
            }
            let data = Args {
                values: args.values.into_iter().skip(3).collect(),
                attachments: args.attachments,
            };
            match operator.emit(&event, data) {
                Ok(()) => info!(event, "admin action: emit"),
                Err(error) => warn!(event, %error, "admin action failed: emit"),
            }
        }
    });
}

/// The sockets an action names: namespace `nsp` (it must exist: an action never creates
/// one), narrowed to room `filter` when given (a socket id is a room).
fn target(
    server: &SocketIo,
    action: &'static str,
    nsp: Option<&str>,
    filter: Option<&str>,
) -> Option<BroadcastOperator> {
    let Some(nsp) = nsp else {
        warn!(action, "admin action refused: no namespace");
        return None;
    };
    let Some(namespace) = server.namespace(nsp) else {
        warn!(action, nsp, "admin action refused: no such namespace");
        return None;
    };
    info!(action, nsp, filter, "admin action");
    Some(match filter {
        Some(room) if !room.is_empty() => namespace.to(room.to_owned()),
        _ => namespace.broadcast(),
    })
}

/// Runs an action on every server, within `deadline`, and logs how it ended.
async fn run(
    action: &'static str,
    what: &str,
    request: impl Future<Output = Result<(), AdapterError>>,
    deadline: std::time::Duration,
) {
    match timeout(deadline, request).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => warn!(action, what, %error, "admin action failed"),
        Err(_) => warn!(action, what, "admin action timed out"),
    }
}

/// Argument `index` when it is a string.
fn text(args: &Args, index: usize) -> Option<&str> {
    args.values.get(index).and_then(Value::as_str)
}

/// JavaScript's truthiness of a JSON value.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0 && !n.is_nan()),
        Value::String(text) => !text.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn close_is_read_as_javascript_would() {
        for yes in [json!(true), json!(1), json!("x"), json!({}), json!([])] {
            assert!(truthy(&yes), "{yes}");
        }
        for no in [json!(false), json!(0), json!(""), Value::Null] {
            assert!(!truthy(&no), "{no}");
        }
    }
}
