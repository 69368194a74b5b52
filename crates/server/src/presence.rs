//! Presence: which users are in a room, across the cluster, and the `presence` events that
//! tell a room when a user arrives (its first socket joins) or goes (its last socket leaves
//! or disconnects). A user with three tabs counts once.
//!
//! The users of a room are read from the adapter (`fetch_sockets`, every server of the
//! cluster): each socket's user is its personal room `user:<id>`. So the answer is as fresh as
//! the adapter's, and two tabs of one user joining at the same instant on two servers may
//! both announce it (or neither leave): presence is for showing who is around, not for
//! counting.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use switchyard::{AdapterError, Namespace, Room};

use crate::notifications::{user_of, user_room};

/// The most users a join or `presence` answer lists (with `userCount` for them all).
pub(crate) const MAX_USERS_LISTED: usize = 1000;

/// The users in room `key` of `namespace` and how many sockets each has there, leaving out
/// the socket `departing` (one that is on its way out but may not be out yet).
pub(crate) async fn occupants(
    namespace: &Namespace,
    key: &Room,
    departing: Option<&str>,
) -> Result<BTreeMap<String, usize>, AdapterError> {
    let sockets = namespace.to(key.clone()).fetch_sockets().await?;
    let mut users = BTreeMap::new();
    for socket in &sockets {
        if departing == Some(&**socket.id()) {
            continue;
        }
        if let Some(user) = user_of(socket.rooms()) {
            *users.entry(user.to_owned()).or_insert(0) += 1;
        }
    }
    Ok(users)
}

/// How many of `user`'s sockets are in room `key`, leaving out `departing`: asks for the
/// user's sockets (its personal room), not the room's, so it costs the user's tabs, not the
/// room's size.
pub(crate) async fn sockets_of_user_in(
    namespace: &Namespace,
    user: &str,
    key: &Room,
    departing: Option<&str>,
) -> Result<usize, AdapterError> {
    let sockets = namespace.to(user_room(user)).fetch_sockets().await?;
    Ok(sockets
        .iter()
        .filter(|socket| departing != Some(&**socket.id()))
        .filter(|socket| socket.rooms().iter().any(|room| room == key))
        .count())
}

/// The user names of `occupants`, sorted, [`MAX_USERS_LISTED`] at most.
pub(crate) fn names(occupants: &BTreeMap<String, usize>) -> Value {
    json!(occupants.keys().take(MAX_USERS_LISTED).collect::<Vec<_>>())
}

/// Tells room `key` (shown to clients as `room`) that `user` arrived or left.
pub(crate) fn announce(namespace: &Namespace, key: &Room, room: &str, user: &str, online: bool) {
    let event = json!({ "room": room, "user": user, "online": online });
    if let Err(error) = namespace.to(key.clone()).emit("presence", event) {
        tracing::warn!(%error, room, "presence event not sent");
    }
}
