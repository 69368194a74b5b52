//! The `/calls` namespace: 1:1 WebRTC signaling. Each socket is a user (the identity
//! middleware of [`identity`], `auth.name` in dev mode) and sits in its personal room
//! `user:<name>`; a call rings every socket of the callee, the first to accept takes it, and
//! from then on the two sockets of the call relay their offer, answer and ICE candidates to
//! each other through the server (the media flows between the browsers).
//!
//! | event (client → server) | data | ack |
//! | --- | --- | --- |
//! | `call:invite` | `{ to }` | `{ callId }`, or `{ error }`: `user not online`, `busy`, `cannot call yourself` |
//! | `call:accept` | `{ callId }` | `{ ok: true }`, or `{ error }` (`no such call`, `already answered`) |
//! | `call:decline` | `{ callId }` | `{ ok: true }`, or `{ error }` (`no such call`, `already answered`) |
//! | `call:hangup` | `{ callId }` | `{ ok: true }`, or `{ error: "not in this call" }` |
//! | `call:signal` | `{ callId, type: "offer"\|"answer"\|"candidate", data }` | `{ ok: true }`, or `{ error }` (`not in this call`, `call not answered yet`, `data over 16384 bytes`) |
//!
//! | event (server → client) | data | to |
//! | --- | --- | --- |
//! | `call:incoming` | `{ callId, from }` | every socket of the callee |
//! | `call:accepted` | `{ callId, by }` | the caller's socket |
//! | `call:ended` | `{ callId, reason }` | both parties' sockets in the call (while ringing: every socket of the callee); the callee's other sockets get `answered elsewhere` when one accepts |
//! | `call:signal` | `{ callId, from, type, data }` | the other party's socket only |
//!
//! `reason`: `declined`, `hangup`, `no answer` (the call rang `--call-ring-timeout-ms`,
//! 30 s by default), `disconnected` (a party's socket went away), `answered elsewhere`.
//!
//! What a client can make the server hold: one call per user at a time (a caller or callee
//! already in a call is `busy`), so at most one entry per connected user; a ringing call ends
//! after the ring timeout (its timer is cancelled when the call is answered or ends), and a
//! call ends when either party's socket disconnects (for a ringing call: the caller's socket,
//! or the callee's last socket). Every way out removes the entry and its user marks.
//!
//! Calls are kept in this server's memory: **both parties must be connected to the same
//! server**. In a cluster, a callee with no socket on the caller's server is `user not
//! online`, and the signaling goes from socket to socket on this server only.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Map, Value};
use switchyard::{DisconnectReason, Namespace, Sid, Socket, SocketIo};
use tokio::task::AbortHandle;
use tracing::debug;

use crate::identity;
use crate::input::{self, ack, InputError};
use crate::notifications::user_room;

/// The namespace's name.
pub(crate) const NAMESPACE: &str = "/calls";

/// The most bytes a `call:signal`'s `data` may take, serialized as JSON.
pub(crate) const MAX_SIGNAL_BYTES: usize = 16 * 1024;

/// The longest call id a client may send, in bytes (ours are 32).
const MAX_CALL_ID_BYTES: usize = 64;

/// Registers the namespace's middleware and handlers on `io`. `verifier`: how a client's
/// identity is found (with JWT on a token is required: `/calls` is never public);
/// `ring_timeout`: how long a call rings.
pub(crate) fn register(io: &SocketIo, verifier: identity::Verifier, ring_timeout: Duration) {
    let calls = io.of(NAMESPACE);
    identity::install(&calls, verifier, "name");
    let registry = Arc::new(Registry::new(ring_timeout));
    calls.on_connection(move |socket: Socket| {
        let registry = registry.clone();
        async move {
            if let Some(user) = identity::of(&socket) {
                socket.join(user_room(&user));
            }
            on(&socket, &registry, "call:invite", invite);
            on(&socket, &registry, "call:accept", accept);
            on(&socket, &registry, "call:decline", decline);
            on(&socket, &registry, "call:hangup", hangup);
            on(&socket, &registry, "call:signal", signal);
            let registry = registry.clone();
            socket.on_disconnect(move |socket: Socket, _reason: DisconnectReason| {
                // Read now: the identity and the rooms go with the socket.
                let user = identity::of(&socket);
                if let Some(user) = user {
                    registry.disconnected(&socket.namespace(), &user, socket.id());
                }
                std::future::ready(())
            });
        }
    });
}

type Handler = fn(&Socket, &Arc<Registry>, &Value) -> Result<Value, InputError>;

fn on(socket: &Socket, registry: &Arc<Registry>, event: &'static str, handler: Handler) {
    let registry = registry.clone();
    socket.on(event, move |socket: Socket, data: Value| {
        let registry = registry.clone();
        async move { Ok::<_, Infallible>(ack(handler(&socket, &registry, &data))) }
    });
}

/// Whether a call rings or was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Every socket of the callee was told; none answered yet.
    Ringing,
    /// Answered by the callee's socket.
    Active(Sid),
}

/// One call.
#[derive(Debug)]
struct Call {
    caller: Arc<str>,
    caller_socket: Sid,
    callee: Arc<str>,
    state: State,
    /// The no-answer timer while ringing.
    timer: Option<AbortHandle>,
}

impl Call {
    /// The other party's socket, when `socket` is one of the call's two sockets.
    fn peer_of(&self, socket: &str) -> Option<&Sid> {
        match &self.state {
            State::Active(callee) if *self.caller_socket == *socket => Some(callee),
            State::Active(callee) if **callee == *socket => Some(&self.caller_socket),
            _ => None,
        }
    }
}

/// The calls of this server, and which user is in which.
#[derive(Debug, Default)]
struct Calls {
    by_id: HashMap<Arc<str>, Call>,
    /// Each user in a call (caller or callee), and the call.
    by_user: HashMap<Arc<str>, Arc<str>>,
}

impl Calls {
    /// Takes call `id` out, with its users' marks; its timer is cancelled.
    fn remove(&mut self, id: &str) -> Option<Call> {
        let call = self.by_id.remove(id)?;
        for user in [&call.caller, &call.callee] {
            if self.by_user.get(user).is_some_and(|held| **held == *id) {
                self.by_user.remove(user);
            }
        }
        if let Some(timer) = &call.timer {
            timer.abort();
        }
        Some(call)
    }
}

/// The calls in memory.
#[derive(Debug)]
pub(crate) struct Registry {
    calls: Mutex<Calls>,
    ring_timeout: Duration,
}

impl Registry {
    /// An empty registry whose calls ring `ring_timeout`.
    pub(crate) fn new(ring_timeout: Duration) -> Registry {
        Registry {
            calls: Mutex::new(Calls::default()),
            ring_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Calls> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many calls are held (ringing or active), and how many users are marked in one.
    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        let calls = self.lock();
        (calls.by_id.len(), calls.by_user.len())
    }

    /// Adds a ringing call from `caller` on socket `caller_socket` to `callee`. `alive`: whether
    /// the caller's socket is still connected, asked under the registry's lock (a socket that
    /// closes runs its disconnect handler, which takes the lock, after it stops being
    /// connected: so a call is either refused here or ended by that handler, never left bound
    /// to a dead socket).
    fn start(
        &self,
        caller: &Arc<str>,
        caller_socket: &Sid,
        callee: &Arc<str>,
        alive: &dyn Fn() -> bool,
    ) -> Result<Arc<str>, InputError> {
        if caller == callee {
            return Err(InputError::new("cannot call yourself"));
        }
        let mut calls = self.lock();
        if !alive() {
            return Err(InputError::new("not connected"));
        }
        if calls.by_user.contains_key(caller) || calls.by_user.contains_key(callee) {
            return Err(InputError::new("busy"));
        }
        let id: Arc<str> = Arc::from(input::random_id());
        calls.by_user.insert(caller.clone(), id.clone());
        calls.by_user.insert(callee.clone(), id.clone());
        calls.by_id.insert(
            id.clone(),
            Call {
                caller: caller.clone(),
                caller_socket: caller_socket.clone(),
                callee: callee.clone(),
                state: State::Ringing,
                timer: None,
            },
        );
        Ok(id)
    }

    /// Keeps the no-answer timer of call `id`, unless the call is over already (then the
    /// timer is stopped).
    fn set_timer(&self, id: &str, timer: AbortHandle) {
        let mut calls = self.lock();
        match calls.by_id.get_mut(id) {
            Some(call) if call.state == State::Ringing => call.timer = Some(timer),
            _ => timer.abort(),
        }
    }

    /// Ends call `id` if it still rings: the no-answer timer.
    fn ring_out(&self, id: &str) -> Option<Call> {
        let mut calls = self.lock();
        if calls.by_id.get(id)?.state != State::Ringing {
            return None;
        }
        let mut call = calls.remove(id)?;
        // This is the timer's own task: nothing to cancel.
        call.timer = None;
        Some(call)
    }

    /// `user` on `socket` answers call `id`: the caller's socket, for `call:accepted`.
    /// `alive`: whether `socket` is still connected, asked under the lock (see [`Self::start`]).
    fn accept(
        &self,
        id: &str,
        user: &str,
        socket: &Sid,
        alive: &dyn Fn() -> bool,
    ) -> Result<Sid, InputError> {
        let mut calls = self.lock();
        if !alive() {
            return Err(InputError::new("not connected"));
        }
        let call = calls
            .by_id
            .get_mut(id)
            .filter(|call| *call.callee == *user)
            .ok_or_else(|| InputError::new("no such call"))?;
        if call.state != State::Ringing {
            return Err(InputError::new("already answered"));
        }
        call.state = State::Active(socket.clone());
        if let Some(timer) = call.timer.take() {
            timer.abort();
        }
        Ok(call.caller_socket.clone())
    }

    /// `user` declines call `id`, which rings: the call, removed.
    fn decline(&self, id: &str, user: &str) -> Result<Call, InputError> {
        let mut calls = self.lock();
        let call = calls
            .by_id
            .get(id)
            .filter(|call| *call.callee == *user)
            .ok_or_else(|| InputError::new("no such call"))?;
        if call.state != State::Ringing {
            return Err(InputError::new("already answered"));
        }
        calls
            .remove(id)
            .ok_or_else(|| InputError::new("no such call"))
    }

    /// `socket` hangs up call `id`: the caller's socket (ringing or active) or the callee's
    /// socket that answered.
    fn hangup(&self, id: &str, socket: &str) -> Result<Call, InputError> {
        let mut calls = self.lock();
        let party = calls
            .by_id
            .get(id)
            .is_some_and(|call| *call.caller_socket == *socket || call.peer_of(socket).is_some());
        if !party {
            return Err(InputError::new("not in this call"));
        }
        calls
            .remove(id)
            .ok_or_else(|| InputError::new("not in this call"))
    }

    /// The socket `socket`'s signals in call `id` go to.
    fn peer(&self, id: &str, socket: &str) -> Result<Sid, InputError> {
        let calls = self.lock();
        let call = calls
            .by_id
            .get(id)
            .ok_or_else(|| InputError::new("not in this call"))?;
        match call.peer_of(socket) {
            Some(peer) => Ok(peer.clone()),
            None if call.state == State::Ringing && *call.caller_socket == *socket => {
                Err(InputError::new("call not answered yet"))
            }
            None => Err(InputError::new("not in this call")),
        }
    }

    /// The call of `user` that ends because its socket `socket` went away: one where the
    /// socket is a party, or a ringing call to `user` whose last socket this was.
    fn disconnected_call(
        &self,
        namespace: &Namespace,
        user: &str,
        socket: &Sid,
    ) -> Option<(Arc<str>, Call)> {
        let mut calls = self.lock();
        let id = calls.by_user.get(user)?.clone();
        let call = calls.by_id.get(&id)?;
        let ends = if *call.caller_socket == **socket || call.peer_of(socket).is_some() {
            true
        } else if call.state == State::Ringing && *call.callee == *user {
            let mut others = 0;
            namespace
                .adapter()
                .for_each_in_room(&user_room(user), &mut |sid| {
                    if sid != socket {
                        others += 1;
                    }
                });
            others == 0
        } else {
            false
        };
        if !ends {
            return None;
        }
        calls.remove(&id).map(|call| (id, call))
    }

    /// Ends the call `socket` of `user` was in, if its departure ends one.
    fn disconnected(&self, namespace: &Namespace, user: &str, socket: &Sid) {
        if let Some((id, call)) = self.disconnected_call(namespace, user, socket) {
            debug!(call = &*id, user, "call ended: a party disconnected");
            ended(namespace, &id, &call, "disconnected", Some(socket));
        }
    }
}

/// Tells the call's sockets that it ended: the caller's socket and the callee's socket in the
/// call, or every socket of the callee while it rang; `gone`, a socket leaving, is skipped.
fn ended(namespace: &Namespace, id: &str, call: &Call, reason: &str, gone: Option<&Sid>) {
    let event = json!({ "callId": id, "reason": reason });
    let mut targets = vec![call.caller_socket.clone()];
    match &call.state {
        State::Active(callee) => targets.push(callee.clone()),
        State::Ringing => {
            namespace
                .adapter()
                .for_each_in_room(&user_room(&call.callee), &mut |sid| {
                    targets.push(sid.clone());
                })
        }
    }
    for sid in targets.iter().filter(|sid| Some(*sid) != gone) {
        send(namespace, sid, "call:ended", &event);
    }
}

/// Sends `event` to this server's socket `sid`, if it is still here.
fn send(namespace: &Namespace, sid: &Sid, event: &str, data: &Value) {
    if let Some(socket) = namespace.get_socket(sid) {
        if let Err(error) = socket.emit(event, data) {
            debug!(%error, event, "call event not sent");
        }
    }
}

/// The user of `socket`, as the middleware kept it.
fn user(socket: &Socket) -> Result<Arc<str>, InputError> {
    identity::of(socket).ok_or_else(|| InputError::new("not connected"))
}

/// The `callId` of `{ callId, ... }`.
fn call_id<'a>(
    data: &'a Value,
    shape: &str,
) -> Result<(&'a str, &'a Map<String, Value>), InputError> {
    let object = input::object(data, shape)?;
    let id = object
        .get("callId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= MAX_CALL_ID_BYTES)
        .ok_or_else(|| InputError::new("callId must be a call id"))?;
    Ok((id, object))
}

fn invite(socket: &Socket, registry: &Arc<Registry>, data: &Value) -> Result<Value, InputError> {
    let object = input::object(data, "{ to }")?;
    let to: Arc<str> = match input::name(object.get("to")) {
        Ok(Some(to)) => Arc::from(to),
        Ok(None) => return Err(InputError::new("to must be a user name")),
        Err(error) => return Err(InputError::new(format!("to: {error}"))),
    };
    let from = user(socket)?;
    if from == to {
        return Err(InputError::new("cannot call yourself"));
    }
    let namespace = socket.namespace();
    // Only this server's sockets: the call lives here (see the module's documentation).
    if namespace.room_size(&user_room(&to)) == 0 {
        return Err(InputError::new("user not online"));
    }
    let id = registry.start(&from, socket.id(), &to, &|| socket.connected())?;
    debug!(call = &*id, from = &*from, to = &*to, "call ringing");
    let timer = {
        let (registry, namespace, id) = (registry.clone(), namespace.clone(), id.clone());
        let ring = registry.ring_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(ring).await;
            if let Some(call) = registry.ring_out(&id) {
                debug!(call = &*id, "call ended: no answer");
                ended(&namespace, &id, &call, "no answer", None);
            }
        })
    };
    registry.set_timer(&id, timer.abort_handle());
    namespace
        .to(user_room(&to))
        .local()
        .emit("call:incoming", json!({ "callId": &*id, "from": &*from }))
        .map_err(|error| {
            tracing::warn!(%error, "call invitation not sent");
            // Nobody heard it ring: it ends here.
            registry.hangup(&id, socket.id()).ok();
            InputError::new("call not started")
        })?;
    Ok(json!({ "callId": &*id }))
}

fn accept(socket: &Socket, registry: &Arc<Registry>, data: &Value) -> Result<Value, InputError> {
    let (id, _) = call_id(data, "{ callId }")?;
    let by = user(socket)?;
    let caller_socket = registry.accept(id, &by, socket.id(), &|| socket.connected())?;
    debug!(call = id, by = &*by, "call answered");
    let namespace = socket.namespace();
    send(
        &namespace,
        &caller_socket,
        "call:accepted",
        &json!({ "callId": id, "by": &*by }),
    );
    let elsewhere = json!({ "callId": id, "reason": "answered elsewhere" });
    let mut others: Vec<Sid> = Vec::new();
    namespace
        .adapter()
        .for_each_in_room(&user_room(&by), &mut |sid| {
            if sid != socket.id() {
                others.push(sid.clone());
            }
        });
    for sid in &others {
        send(&namespace, sid, "call:ended", &elsewhere);
    }
    Ok(json!({ "ok": true }))
}

fn decline(socket: &Socket, registry: &Arc<Registry>, data: &Value) -> Result<Value, InputError> {
    let (id, _) = call_id(data, "{ callId }")?;
    let call = registry.decline(id, &user(socket)?)?;
    debug!(call = id, "call declined");
    ended(&socket.namespace(), id, &call, "declined", None);
    Ok(json!({ "ok": true }))
}

fn hangup(socket: &Socket, registry: &Arc<Registry>, data: &Value) -> Result<Value, InputError> {
    let (id, _) = call_id(data, "{ callId }")?;
    let call = registry.hangup(id, socket.id())?;
    debug!(call = id, "call hung up");
    ended(&socket.namespace(), id, &call, "hangup", None);
    Ok(json!({ "ok": true }))
}

/// The types of `call:signal`.
const SIGNAL_TYPES: [&str; 3] = ["offer", "answer", "candidate"];

fn signal(socket: &Socket, registry: &Arc<Registry>, data: &Value) -> Result<Value, InputError> {
    let (id, object) = call_id(data, "{ callId, type, data }")?;
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .filter(|kind| SIGNAL_TYPES.contains(kind))
        .ok_or_else(|| InputError::new("type must be offer, answer or candidate"))?;
    let payload = object.get("data").unwrap_or(&Value::Null);
    if payload.to_string().len() > MAX_SIGNAL_BYTES {
        return Err(InputError::new(format!(
            "data over {MAX_SIGNAL_BYTES} bytes"
        )));
    }
    let peer = registry.peer(id, socket.id())?;
    let from = user(socket)?;
    let namespace = socket.namespace();
    let Some(peer) = namespace.get_socket(&peer) else {
        return Err(InputError::new("the other party is gone"));
    };
    peer.emit(
        "call:signal",
        json!({ "callId": id, "from": &*from, "type": kind, "data": payload }),
    )
    .map_err(|error| {
        debug!(%error, "call signal not sent");
        InputError::new("signal not sent")
    })?;
    Ok(json!({ "ok": true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    fn live() -> bool {
        true
    }

    fn gone() -> bool {
        false
    }

    #[test]
    fn a_socket_that_closed_neither_starts_nor_answers_a_call() {
        let registry = Registry::new(Duration::from_secs(30));
        let (alice, bob) = (name("alice"), name("bob"));
        let (a1, b1): (Sid, Sid) = (name("a1"), name("b1"));
        // The caller's socket closed between reading its user and starting the call.
        assert_eq!(
            registry.start(&alice, &a1, &bob, &gone).err(),
            Some(InputError::new("not connected"))
        );
        assert_eq!(
            registry.sizes(),
            (0, 0),
            "nothing left bound to a dead socket"
        );
        // The callee's socket closed between reading its user and answering.
        let id = registry.start(&alice, &a1, &bob, &live).expect("a call");
        assert_eq!(
            registry.accept(&id, "bob", &b1, &gone).err(),
            Some(InputError::new("not connected"))
        );
        assert!(
            registry.ring_out(&id).is_some(),
            "the call still rings, unanswered"
        );
        assert_eq!(registry.sizes(), (0, 0));
    }

    #[test]
    fn one_call_per_user_and_every_way_out_forgets_it() {
        let registry = Registry::new(Duration::from_secs(30));
        let (alice, bob, carol) = (name("alice"), name("bob"), name("carol"));
        let (a1, b1, c1): (Sid, Sid, Sid) = (name("a1"), name("b1"), name("c1"));
        assert_eq!(
            registry.start(&alice, &a1, &alice, &live).err(),
            Some(InputError::new("cannot call yourself"))
        );
        let id = registry.start(&alice, &a1, &bob, &live).expect("a call");
        assert_eq!(registry.sizes(), (1, 2));
        // Both are busy, either way round.
        for (from, socket, to) in [
            (&carol, &c1, &bob),
            (&carol, &c1, &alice),
            (&bob, &b1, &carol),
        ] {
            assert_eq!(
                registry.start(from, socket, to, &live).err(),
                Some(InputError::new("busy"))
            );
        }
        // Not answered: no signaling, and only the callee answers.
        assert_eq!(
            registry.peer(&id, &a1).err(),
            Some(InputError::new("call not answered yet"))
        );
        assert_eq!(
            registry.accept(&id, "carol", &c1, &live).err(),
            Some(InputError::new("no such call"))
        );
        assert_eq!(registry.accept(&id, "bob", &b1, &live), Ok(a1.clone()));
        assert_eq!(
            registry.accept(&id, "bob", &b1, &live).err(),
            Some(InputError::new("already answered"))
        );
        assert_eq!(registry.peer(&id, &a1), Ok(b1.clone()));
        assert_eq!(registry.peer(&id, &b1), Ok(a1.clone()));
        assert_eq!(
            registry.peer(&id, &c1).err(),
            Some(InputError::new("not in this call"))
        );
        assert!(registry.ring_out(&id).is_none(), "answered: no timeout");
        assert_eq!(
            registry.hangup(&id, &c1).err(),
            Some(InputError::new("not in this call"))
        );
        assert!(registry.hangup(&id, &b1).is_ok());
        assert_eq!(registry.sizes(), (0, 0));

        let id = registry.start(&alice, &a1, &bob, &live).expect("a call");
        assert!(registry.decline(&id, "bob").is_ok());
        assert_eq!(registry.sizes(), (0, 0));
        let id = registry.start(&alice, &a1, &bob, &live).expect("a call");
        assert!(registry.ring_out(&id).is_some());
        assert_eq!(registry.sizes(), (0, 0));
        let id = registry.start(&alice, &a1, &bob, &live).expect("a call");
        assert!(registry.hangup(&id, &a1).is_ok(), "the caller cancels");
        assert_eq!(registry.sizes(), (0, 0));
    }

    #[test]
    fn call_ids_are_unique() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| input::random_id()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
