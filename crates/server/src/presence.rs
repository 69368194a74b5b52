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

use crate::notifications::USER_ROOM_PREFIX;

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
        if let Some(user) = socket
            .rooms()
            .iter()
            .find_map(|room| room.strip_prefix(USER_ROOM_PREFIX))
        {
            *users.entry(user.to_owned()).or_insert(0) += 1;
        }
    }
    Ok(users)
}

/// The user names of `occupants`, sorted.
pub(crate) fn names(occupants: &BTreeMap<String, usize>) -> Value {
    json!(occupants.keys().collect::<Vec<_>>())
}

/// Tells room `key` (shown to clients as `room`) that `user` arrived or left.
pub(crate) fn announce(namespace: &Namespace, key: &Room, room: &str, user: &str, online: bool) {
    let event = json!({ "room": room, "user": user, "online": online });
    if let Err(error) = namespace.to(key.clone()).emit("presence", event) {
        tracing::warn!(%error, room, "presence event not sent");
    }
}
