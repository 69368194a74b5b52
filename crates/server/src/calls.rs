//! The `/calls` namespace: 1:1 WebRTC signaling. Each socket is a user (the identity
//! middleware of [`identity`], `auth.name` in dev mode) and sits in its personal room
//! `user:<name>`; a call rings every socket of the callee, the first to accept takes it, and
//! from then on the two sockets of the call relay their offer, answer and ICE candidates to
//! each other through the server (the media flows between the browsers).
//!
//! | event (client → server) | data | ack |
//! | --- | --- | --- |
//! | `call:invite` | `{ to }` | `{ callId }`, or `{ error }`: `user not online`, `busy` (either user is in an answered call, or calling someone), `try again later` (the callee declined or did not answer this caller's last call less than 10 s ago), `cannot call yourself` |
//! | `call:accept` | `{ callId }` | `{ ok: true }`, or `{ error }` (`no such call`, `already answered`); the other calls ringing either party, and the callee's own call, end with `busy` |
//! | `call:decline` | `{ callId }` | `{ ok: true }`, or `{ error }` (`no such call`, `already answered`) |
//! | `call:hangup` | `{ callId }` | `{ ok: true }`, or `{ error: "not in this call" }` |
//! | `call:signal` | `{ callId, type: "offer"\|"answer"\|"candidate", data }` | `{ ok: true }`, or `{ error }` (`not in this call`, `call not answered yet`, `data over 16384 bytes`) |
//!
//! | event (server → client) | data | to |
//! | --- | --- | --- |
//! | `call:incoming` | `{ callId, from }` | every socket of the callee |
//! | `call:accepted` | `{ callId, by }` | the caller's socket |
//! | `call:ended` | `{ callId, reason }` | both parties' sockets in the call (while ringing: the caller's socket and every socket of the callee); the callee's other sockets get `answered elsewhere` when one accepts |
//! | `call:signal` | `{ callId, from, type, data }` | the other party's socket only |
//!
//! `reason`: `declined`, `hangup`, `no answer` (the call rang `--call-ring-timeout-ms`,
//! 30 s by default), `disconnected` (a party's socket went away), `answered elsewhere`,
//! `busy` (a ringing call whose caller or callee answered another call).
//!
//! Only an answered call makes its users busy: a ringing call does not, so nobody can keep
//! another user busy by calling again and again; several calls may ring one callee at once
//! (every tab of it), and answering one ends the others. A caller whose call was declined or
//! not answered waits `--call-retry-cooldown-ms` (10 s) before calling that callee again.
//!
//! What a client can make the server hold: one ringing or answered call per user as caller
//! (a caller already calling or in a call is `busy`), so at most one call per connected user;
//! a ringing call ends after the ring timeout (its timer is cancelled when the call is
//! answered or ends), and a call ends when either party's socket disconnects (for a ringing
//! call: the caller's socket, or the callee's last socket). Every way out removes the entry
//! and its user marks. The cooldowns are one entry per (caller, callee) pair whose call ended
//! declined or unanswered in the last 10 s, forgotten once expired (at the next call started
//! or ended).
//!
//! Calls are kept in this server's memory: **both parties must be connected to the same
//! server**. In a cluster, a callee with no socket on the caller's server is `user not
//! online`, and the signaling goes from socket to socket on this server only.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
/// `ring_timeout`: how long a call rings; `retry_cooldown`: how long a caller declined or not
/// answered waits before calling that callee again.
pub(crate) fn register(
    io: &SocketIo,
    verifier: identity::Verifier,
    ring_timeout: Duration,
    retry_cooldown: Duration,
) {
    let calls = io.of(NAMESPACE);
    identity::install(&calls, verifier, "name");
    let registry = Arc::new(Registry::new(ring_timeout, retry_cooldown));
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

/// A caller and a callee.
type Pair = (Arc<str>, Arc<str>);

/// Calls ended, with their ids.
type Ended = Vec<(Arc<str>, Call)>;

/// The calls of this server, and which user is in which.
#[derive(Debug, Default)]
struct Calls {
    by_id: HashMap<Arc<str>, Call>,
    /// Each user in an answered call (caller or callee), and the call: the busy users.
    active: HashMap<Arc<str>, Arc<str>>,
    /// Each caller whose call rings, and the call (one at a time).
    ringing_from: HashMap<Arc<str>, Arc<str>>,
    /// Each callee and the calls ringing it (one a caller at most, so as many as ringing
    /// calls over all).
    ringing_to: HashMap<Arc<str>, Vec<Arc<str>>>,
    /// The (caller, callee) pairs whose last call was declined or not answered, and until when
    /// the caller must wait to call again.
    cooldowns: HashMap<Pair, Instant>,
    /// The same pairs by expiry, oldest first (the cooldown is one duration: insertion order).
    cooldown_order: VecDeque<(Instant, Pair)>,
}

impl Calls {
    /// Takes call `id` out, with its users' marks; its timer is cancelled.
    fn remove(&mut self, id: &str) -> Option<Call> {
        let call = self.by_id.remove(id)?;
        for user in [&call.caller, &call.callee] {
            if self.active.get(user).is_some_and(|held| **held == *id) {
                self.active.remove(user);
            }
        }
        if self
            .ringing_from
            .get(&call.caller)
            .is_some_and(|held| **held == *id)
        {
            self.ringing_from.remove(&call.caller);
        }
        self.forget_ringing_to(&call.callee, id);
        if let Some(timer) = &call.timer {
            timer.abort();
        }
        Some(call)
    }

    /// Call `id` no longer rings `callee`.
    fn forget_ringing_to(&mut self, callee: &str, id: &str) {
        if let Some(ids) = self.ringing_to.get_mut(callee) {
            ids.retain(|held| **held != *id);
            if ids.is_empty() {
                self.ringing_to.remove(callee);
            }
        }
    }

    /// Forgets the cooldowns that are over at `now`.
    fn expire_cooldowns(&mut self, now: Instant) {
        while let Some((until, _)) = self.cooldown_order.front() {
            if *until > now {
                break;
            }
            if let Some((until, pair)) = self.cooldown_order.pop_front() {
                if self.cooldowns.get(&pair) == Some(&until) {
                    self.cooldowns.remove(&pair);
                }
            }
        }
    }

    /// `call`'s caller waits until `until` before calling its callee again.
    fn cool_down(&mut self, call: &Call, until: Instant) {
        let pair = (call.caller.clone(), call.callee.clone());
        self.cooldowns.insert(pair.clone(), until);
        self.cooldown_order.push_back((until, pair));
    }
}

/// The calls in memory.
#[derive(Debug)]
pub(crate) struct Registry {
    calls: Mutex<Calls>,
    ring_timeout: Duration,
    cooldown: Duration,
}

impl Registry {
    /// An empty registry whose calls ring `ring_timeout`, and whose callers wait `cooldown`
    /// before calling again a callee who declined or did not answer.
    pub(crate) fn new(ring_timeout: Duration, cooldown: Duration) -> Registry {
        Registry {
            calls: Mutex::new(Calls::default()),
            ring_timeout,
            cooldown,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Calls> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many calls are held (ringing or active), and how many marks users have (in a
    /// call, calling, being called).
    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        let calls = self.lock();
        let rung: usize = calls.ringing_to.values().map(Vec::len).sum();
        (
            calls.by_id.len(),
            calls.active.len() + calls.ringing_from.len() + rung,
        )
    }

    /// How many pairs wait (expired ones are forgotten at the next call started or ended).
    #[cfg(test)]
    fn cooldowns(&self) -> (usize, usize) {
        let calls = self.lock();
        (calls.cooldowns.len(), calls.cooldown_order.len())
    }

    /// Adds a ringing call from `caller` on socket `caller_socket` to `callee`. `alive`: whether
    /// the caller's socket is still connected, asked under the registry's lock (a socket that
    /// closes runs its disconnect handler, which takes the lock, after it stops being
    /// connected: so a call is either refused here or ended by that handler, never left bound
    /// to a dead socket). `busy`: the caller or the callee is in an answered call, or calling;
    /// a callee may be rung by several calls at once. `try again later`: the callee declined or
    /// did not answer this caller's last call, less than the cooldown ago.
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
        let now = Instant::now();
        calls.expire_cooldowns(now);
        let busy = |user: &Arc<str>| {
            calls.active.contains_key(user) || calls.ringing_from.contains_key(user)
        };
        if busy(caller) || busy(callee) {
            return Err(InputError::new("busy"));
        }
        if calls
            .cooldowns
            .get(&(caller.clone(), callee.clone()))
            .is_some_and(|until| *until > now)
        {
            return Err(InputError::new("try again later"));
        }
        let id: Arc<str> = Arc::from(input::random_id());
        calls.ringing_from.insert(caller.clone(), id.clone());
        calls
            .ringing_to
            .entry(callee.clone())
            .or_default()
            .push(id.clone());
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

    /// Ends call `id` if it still rings: the no-answer timer. Its caller waits the cooldown.
    fn ring_out(&self, id: &str) -> Option<Call> {
        let mut calls = self.lock();
        if calls.by_id.get(id)?.state != State::Ringing {
            return None;
        }
        let now = Instant::now();
        calls.expire_cooldowns(now);
        let mut call = calls.remove(id)?;
        // This is the timer's own task: nothing to cancel.
        call.timer = None;
        calls.cool_down(&call, now + self.cooldown);
        Some(call)
    }

    /// `user` on `socket` answers call `id`: the caller's socket, for `call:accepted`, and the
    /// calls that end because both parties are now busy (the other calls ringing either
    /// party, and the callee's own call if it was calling someone), removed.
    /// `alive`: whether `socket` is still connected, asked under the lock (see [`Self::start`]).
    fn accept(
        &self,
        id: &str,
        user: &str,
        socket: &Sid,
        alive: &dyn Fn() -> bool,
    ) -> Result<(Sid, Ended), InputError> {
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
        let (caller, callee, caller_socket) = (
            call.caller.clone(),
            call.callee.clone(),
            call.caller_socket.clone(),
        );
        let id: Arc<str> = Arc::from(id);
        calls.ringing_from.remove(&caller);
        calls.forget_ringing_to(&callee, &id);
        let mut others: Vec<Arc<str>> = Vec::new();
        for user in [&caller, &callee] {
            others.extend(calls.ringing_to.get(user).into_iter().flatten().cloned());
            others.extend(calls.ringing_from.get(user).cloned());
        }
        let ended = others
            .into_iter()
            .filter_map(|other| calls.remove(&other).map(|call| (other, call)))
            .collect();
        calls.active.insert(caller, id.clone());
        calls.active.insert(callee, id);
        Ok((caller_socket, ended))
    }

    /// `user` declines call `id`, which rings: the call, removed. Its caller waits the
    /// cooldown.
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
        let now = Instant::now();
        calls.expire_cooldowns(now);
        let call = calls
            .remove(id)
            .ok_or_else(|| InputError::new("no such call"))?;
        calls.cool_down(&call, now + self.cooldown);
        Ok(call)
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

    /// The calls of `user` that end because its socket `socket` went away (removed): the one
    /// where the socket is a party (the caller's socket, or the callee's that answered), and
    /// every call ringing `user` if this was its last socket (`others`: how many other sockets
    /// `user` has).
    fn disconnected_calls(&self, user: &str, socket: &Sid, others: &dyn Fn() -> usize) -> Ended {
        let mut calls = self.lock();
        let mut ending: Vec<Arc<str>> = Vec::new();
        for id in [calls.active.get(user), calls.ringing_from.get(user)]
            .into_iter()
            .flatten()
        {
            let party = calls.by_id.get(id).is_some_and(|call| {
                *call.caller_socket == **socket || call.peer_of(socket).is_some()
            });
            if party {
                ending.push(id.clone());
            }
        }
        if calls.ringing_to.contains_key(user) && others() == 0 {
            ending.extend(calls.ringing_to.get(user).into_iter().flatten().cloned());
        }
        ending
            .into_iter()
            .filter_map(|id| calls.remove(&id).map(|call| (id, call)))
            .collect()
    }

    /// Ends the calls `socket` of `user` was in, if its departure ends any.
    fn disconnected(&self, namespace: &Namespace, user: &str, socket: &Sid) {
        let others = || {
            let mut others = 0;
            namespace
                .adapter()
                .for_each_in_room(&user_room(user), &mut |sid| {
                    if sid != socket {
                        others += 1;
                    }
                });
            others
        };
        for (id, call) in self.disconnected_calls(user, socket, &others) {
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
    let (caller_socket, busy) = registry.accept(id, &by, socket.id(), &|| socket.connected())?;
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
    // The other calls ringing either party, or the callee's own: both are busy now.
    for (other, call) in &busy {
        debug!(call = &**other, "call ended: a party answered another");
        ended(&namespace, other, call, "busy", None);
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
        let registry = Registry::new(Duration::from_secs(30), Duration::ZERO);
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
    fn an_answered_call_makes_its_users_busy_and_every_way_out_forgets_it() {
        let registry = Registry::new(Duration::from_secs(30), Duration::ZERO);
        let (alice, bob, carol) = (name("alice"), name("bob"), name("carol"));
        let (a1, b1, c1): (Sid, Sid, Sid) = (name("a1"), name("b1"), name("c1"));
        assert_eq!(
            registry.start(&alice, &a1, &alice, &live).err(),
            Some(InputError::new("cannot call yourself"))
        );
        let id = registry.start(&alice, &a1, &bob, &live).expect("a call");
        assert_eq!(registry.sizes(), (1, 2));
        // A caller calls one user at a time, and is busy for others while it rings.
        assert_eq!(
            registry.start(&alice, &a1, &carol, &live).err(),
            Some(InputError::new("busy"))
        );
        assert_eq!(
            registry.start(&carol, &c1, &alice, &live).err(),
            Some(InputError::new("busy"))
        );
        // Not answered: no signaling, and only the callee answers.
        assert_eq!(
            registry.peer(&id, &a1).err(),
            Some(InputError::new("call not answered yet"))
        );
        assert_eq!(
            registry.accept(&id, "carol", &c1, &live).err(),
            Some(InputError::new("no such call"))
        );
        let (caller, ended) = registry.accept(&id, "bob", &b1, &live).expect("answered");
        assert_eq!(caller, a1);
        assert!(ended.is_empty(), "no other call rang");
        assert_eq!(
            registry.accept(&id, "bob", &b1, &live).err(),
            Some(InputError::new("already answered"))
        );
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
    fn a_ringing_call_keeps_nobody_busy_and_answering_one_ends_the_others() {
        let registry = Registry::new(Duration::from_secs(30), Duration::ZERO);
        let (alice, bob, carol, dave) = (name("alice"), name("bob"), name("carol"), name("dave"));
        let (a1, b1, c1, d1): (Sid, Sid, Sid, Sid) =
            (name("a1"), name("b1"), name("c1"), name("d1"));
        // Alice and carol both ring bob; bob may call dave meanwhile.
        let from_alice = registry.start(&alice, &a1, &bob, &live).expect("a call");
        let from_carol = registry.start(&carol, &c1, &bob, &live).expect("a call");
        let to_dave = registry.start(&bob, &b1, &dave, &live).expect("a call");
        // And dave rings alice, who is calling bob: alice is busy.
        assert_eq!(
            registry.start(&dave, &d1, &alice, &live).err(),
            Some(InputError::new("busy"))
        );
        assert_eq!(registry.sizes(), (3, 6));
        // Bob takes carol's call: alice's call and bob's own end, busy.
        let (caller, ended) = registry
            .accept(&from_carol, "bob", &b1, &live)
            .expect("answered");
        assert_eq!(caller, c1);
        let mut ended: Vec<Arc<str>> = ended.into_iter().map(|(id, _)| id).collect();
        ended.sort();
        let mut expected = vec![from_alice.clone(), to_dave];
        expected.sort();
        assert_eq!(ended, expected);
        assert_eq!(
            registry.accept(&from_alice, "bob", &b1, &live).err(),
            Some(InputError::new("no such call"))
        );
        assert_eq!(registry.sizes(), (1, 2));
        assert!(registry.hangup(&from_carol, &c1).is_ok());
        assert_eq!(registry.sizes(), (0, 0));
    }

    #[test]
    fn a_disconnection_ends_its_calls_and_the_calls_ringing_a_user_gone() {
        let registry = Registry::new(Duration::from_secs(30), Duration::ZERO);
        let (alice, bob, carol) = (name("alice"), name("bob"), name("carol"));
        let (a1, b1, c1): (Sid, Sid, Sid) = (name("a1"), name("b1"), name("c1"));
        registry.start(&alice, &a1, &bob, &live).expect("a call");
        registry.start(&carol, &c1, &bob, &live).expect("a call");
        // Another tab of bob's is still there: nothing ends.
        assert!(registry.disconnected_calls("bob", &b1, &|| 1).is_empty());
        assert_eq!(registry.disconnected_calls("bob", &b1, &|| 0).len(), 2);
        assert_eq!(registry.sizes(), (0, 0));
        // The caller's socket.
        registry.start(&alice, &a1, &bob, &live).expect("a call");
        assert_eq!(registry.disconnected_calls("alice", &a1, &|| 1).len(), 1);
        assert_eq!(registry.sizes(), (0, 0));
    }

    #[test]
    fn a_caller_declined_or_unanswered_waits_then_the_entry_is_forgotten() {
        let cooldown = Duration::from_millis(100);
        let registry = Registry::new(Duration::from_secs(30), cooldown);
        let (alice, bob, carol) = (name("alice"), name("bob"), name("carol"));
        let (a1, b1, c1): (Sid, Sid, Sid) = (name("a1"), name("b1"), name("c1"));
        let id = registry.start(&alice, &a1, &bob, &live).expect("a call");
        registry.decline(&id, "bob").expect("declined");
        let later = Some(InputError::new("try again later"));
        assert_eq!(registry.start(&alice, &a1, &bob, &live).err(), later);
        // Only that pair, that way round.
        let id = registry.start(&bob, &b1, &alice, &live).expect("a call");
        registry.hangup(&id, &b1).expect("cancelled");
        let id = registry.start(&carol, &c1, &bob, &live).expect("a call");
        assert!(registry.ring_out(&id).is_some());
        assert_eq!(registry.start(&carol, &c1, &bob, &live).err(), later);
        assert_eq!(registry.cooldowns(), (2, 2));
        // Once the cooldown is over, they may call again, and the entries go.
        std::thread::sleep(cooldown * 3);
        let id = registry.start(&alice, &a1, &bob, &live).expect("a call");
        registry.hangup(&id, &a1).expect("cancelled");
        assert_eq!(registry.cooldowns(), (0, 0));
        registry.start(&carol, &c1, &bob, &live).expect("a call");
        assert_eq!(registry.cooldowns(), (0, 0));
    }

    #[test]
    fn call_ids_are_unique() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| input::random_id()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
