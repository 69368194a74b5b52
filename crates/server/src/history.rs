//! Room history: the last messages of each room, kept in memory on a lone server and in
//! Redis when the servers form a cluster, so that a client joining a room (on any server)
//! gets what was said before it came.
//!
//! In memory the whole store is bounded in bytes (`--history-max-bytes`): past it, the rooms
//! written to least recently are forgotten first, so a client creating rooms cannot grow it.
//! In Redis each room is a list (`<prefix>#history#<namespace>#<room>`) trimmed to its size at
//! each write and expiring `--history-ttl-s` after the last one.
//!
//! The users' notification inboxes ([`History::inboxes`]) are kept apart: in memory a store of
//! their own (`--inbox-max-bytes`), so that notifications to made-up names can never evict a
//! room's history; in Redis the same kind of list (`<prefix>#history#/notifications#user:<user>`)
//! expiring [`INBOX_TTL`] after its last write (or `--history-ttl-s`, if shorter).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use switchyard_redis::redis;
use switchyard_redis::RedisConnection;

/// Why the history could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HistoryError {
    /// Redis did not answer in time.
    #[error("the history store did not answer in time")]
    Timeout,
    /// Redis answered with an error or the link broke.
    #[error("the history store failed: {0}")]
    Store(String),
}

/// How long an inbox stays in Redis after its last notification (at most `--history-ttl-s`).
pub(crate) const INBOX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Where the messages are kept, and apart from them the users' inboxes.
#[derive(Clone)]
pub(crate) struct History {
    rooms: Arc<Store>,
    inboxes: Arc<Store>,
}

enum Store {
    Memory(Mutex<MemoryRooms>),
    Redis(RedisRooms),
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match &*self.rooms {
            Store::Memory(_) => "History(memory)",
            Store::Redis(_) => "History(redis)",
        })
    }
}

impl History {
    /// A history in this process's memory, `max_bytes` at most, and inboxes apart,
    /// `inbox_max_bytes` at most.
    pub(crate) fn in_memory(max_bytes: usize, inbox_max_bytes: usize) -> History {
        let memory = |bytes| Arc::new(Store::Memory(Mutex::new(MemoryRooms::new(bytes))));
        History {
            rooms: memory(max_bytes),
            inboxes: memory(inbox_max_bytes),
        }
    }

    /// A history in Redis; the inboxes there too, expiring [`INBOX_TTL`] after their last
    /// write (or the rooms' TTL, if shorter).
    pub(crate) fn in_redis(rooms: RedisRooms) -> History {
        let mut inboxes = rooms.clone();
        inboxes.ttl = inboxes.ttl.min(INBOX_TTL);
        History {
            rooms: Arc::new(Store::Redis(rooms)),
            inboxes: Arc::new(Store::Redis(inboxes)),
        }
    }

    /// The store of the users' inboxes: never the rooms' (a flood of notifications costs
    /// other inboxes, never a room's history).
    pub(crate) fn inboxes(&self) -> History {
        History {
            rooms: self.inboxes.clone(),
            inboxes: self.inboxes.clone(),
        }
    }

    /// Adds `message` to the history of `room` in `namespace`, which keeps the last `keep`.
    pub(crate) async fn append(
        &self,
        namespace: &str,
        room: &str,
        keep: usize,
        message: &Value,
    ) -> Result<(), HistoryError> {
        let text: Arc<str> = Arc::from(message.to_string());
        match &*self.rooms {
            Store::Memory(rooms) => {
                lock(rooms).append(namespace, room, keep, text);
                Ok(())
            }
            Store::Redis(redis) => redis.append(namespace, room, keep, &text).await,
        }
    }

    /// The last `limit` messages of `room`, oldest first.
    pub(crate) async fn recent(
        &self,
        namespace: &str,
        room: &str,
        limit: usize,
    ) -> Result<Vec<Value>, HistoryError> {
        let texts = match &*self.rooms {
            Store::Memory(rooms) => lock(rooms).recent(namespace, room, limit),
            Store::Redis(redis) => redis.recent(namespace, room, limit).await?,
        };
        // Only this server writes what it reads back; an entry that does not parse is skipped.
        Ok(texts
            .iter()
            .filter_map(|text| serde_json::from_str(text).ok())
            .collect())
    }
}

fn lock(rooms: &Mutex<MemoryRooms>) -> std::sync::MutexGuard<'_, MemoryRooms> {
    rooms
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The rooms' messages in memory, bounded in bytes, least recently written forgotten first.
#[derive(Debug)]
pub(crate) struct MemoryRooms {
    max_bytes: usize,
    bytes: usize,
    rooms: HashMap<(String, String), MemoryRoom>,
    /// Rooms by their last write, oldest first.
    order: BTreeMap<u64, (String, String)>,
    writes: u64,
}

#[derive(Debug, Default)]
struct MemoryRoom {
    messages: VecDeque<Arc<str>>,
    bytes: usize,
    last_write: u64,
}

/// What a kept room costs beyond its messages' text (its names, its entries), counted so that
/// many rooms of tiny messages stay bounded too.
const ROOM_OVERHEAD: usize = 128;
const MESSAGE_OVERHEAD: usize = 16;

impl MemoryRooms {
    pub(crate) fn new(max_bytes: usize) -> MemoryRooms {
        MemoryRooms {
            max_bytes,
            bytes: 0,
            rooms: HashMap::new(),
            order: BTreeMap::new(),
            writes: 0,
        }
    }

    /// The bytes held now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn append(&mut self, namespace: &str, room: &str, keep: usize, text: Arc<str>) {
        if keep == 0 {
            return;
        }
        let key = (namespace.to_owned(), room.to_owned());
        self.writes += 1;
        let now = self.writes;
        if !self.rooms.contains_key(&key) {
            self.bytes += ROOM_OVERHEAD + key.0.len() + key.1.len();
        }
        let entry = self.rooms.entry(key.clone()).or_default();
        self.order.remove(&entry.last_write);
        entry.last_write = now;
        let cost = text.len() + MESSAGE_OVERHEAD;
        entry.messages.push_back(text);
        entry.bytes += cost;
        self.bytes += cost;
        while entry.messages.len() > keep {
            if let Some(old) = entry.messages.pop_front() {
                entry.bytes -= old.len() + MESSAGE_OVERHEAD;
                self.bytes -= old.len() + MESSAGE_OVERHEAD;
            }
        }
        self.order.insert(now, key);
        // Forget the rooms written to least recently, this one last.
        while self.bytes > self.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(room) = self.rooms.remove(&oldest) {
                self.bytes -= room.bytes + ROOM_OVERHEAD + oldest.0.len() + oldest.1.len();
            }
        }
    }

    fn recent(&self, namespace: &str, room: &str, limit: usize) -> Vec<Arc<str>> {
        let key = (namespace.to_owned(), room.to_owned());
        self.rooms.get(&key).map_or_else(Vec::new, |entry| {
            let skip = entry.messages.len().saturating_sub(limit);
            entry.messages.iter().skip(skip).cloned().collect()
        })
    }
}

/// The rooms' messages in Redis.
#[derive(Clone)]
pub(crate) struct RedisRooms {
    connection: RedisConnection,
    prefix: String,
    ttl: Duration,
    timeout: Duration,
}

impl RedisRooms {
    /// The history on `connection`, its keys under `prefix`; each room expires `ttl` after its
    /// last message, and each command waits `timeout` at most.
    pub(crate) fn new(
        connection: RedisConnection,
        prefix: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> RedisRooms {
        RedisRooms {
            connection,
            prefix: prefix.to_owned(),
            ttl,
            timeout,
        }
    }

    /// The key of a room's list.
    pub(crate) fn key(prefix: &str, namespace: &str, room: &str) -> String {
        format!("{prefix}#history#{namespace}#{room}")
    }

    async fn append(
        &self,
        namespace: &str,
        room: &str,
        keep: usize,
        text: &str,
    ) -> Result<(), HistoryError> {
        if keep == 0 {
            return Ok(());
        }
        let key = Self::key(&self.prefix, namespace, room);
        let last = isize::try_from(keep).unwrap_or(isize::MAX) - 1;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .rpush(&key, text)
            .ignore()
            .ltrim(&key, -(last + 1), -1)
            .ignore()
            .expire(&key, i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX))
            .ignore();
        self.run::<()>(&pipe).await
    }

    async fn recent(
        &self,
        namespace: &str,
        room: &str,
        limit: usize,
    ) -> Result<Vec<Arc<str>>, HistoryError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = Self::key(&self.prefix, namespace, room);
        let first = -isize::try_from(limit).unwrap_or(isize::MAX);
        let mut pipe = redis::pipe();
        pipe.lrange(&key, first, -1);
        let (texts,): (Vec<String>,) = self.run(&pipe).await?;
        Ok(texts.into_iter().map(Arc::from).collect())
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, HistoryError> {
        let mut connection = self.connection.clone();
        let query = pipe.query_async(&mut connection);
        match tokio::time::timeout(self.timeout, query).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(HistoryError::Store(error.to_string())),
            Err(_) => Err(HistoryError::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(rooms: &MemoryRooms, room: &str, limit: usize) -> Vec<String> {
        rooms
            .recent("/chat", room, limit)
            .iter()
            .map(|text| text.to_string())
            .collect()
    }

    #[test]
    fn a_room_keeps_its_last_messages_oldest_first() {
        let mut rooms = MemoryRooms::new(1 << 20);
        for n in 0..5 {
            rooms.append("/chat", "general", 3, Arc::from(n.to_string()));
        }
        assert_eq!(texts(&rooms, "general", 10), ["2", "3", "4"]);
        assert_eq!(texts(&rooms, "general", 2), ["3", "4"]);
        assert!(texts(&rooms, "other", 10).is_empty());
        // Size 0: nothing kept.
        rooms.append("/chat", "quiet", 0, Arc::from("x"));
        assert!(texts(&rooms, "quiet", 10).is_empty());
    }

    #[test]
    fn the_store_is_bounded_in_bytes_forgetting_the_least_recently_written_rooms() {
        let message = "m".repeat(100);
        let budget = 10 * (ROOM_OVERHEAD + 20 + 100 + MESSAGE_OVERHEAD);
        let mut rooms = MemoryRooms::new(budget);
        rooms.append("/chat", "kept", 50, Arc::from(message.as_str()));
        // A flood of new rooms.
        for n in 0..1000 {
            rooms.append(
                "/chat",
                &format!("room-{n}"),
                50,
                Arc::from(message.as_str()),
            );
            if n % 5 == 0 {
                // `kept` stays among the recently written.
                rooms.append("/chat", "kept", 50, Arc::from(message.as_str()));
            }
            assert!(rooms.bytes() <= budget, "{} > {budget}", rooms.bytes());
        }
        assert!(!texts(&rooms, "kept", 50).is_empty());
        assert!(
            texts(&rooms, "room-0", 50).is_empty(),
            "the oldest room is forgotten"
        );
        assert_eq!(texts(&rooms, "room-999", 50).len(), 1);
        // Trimming a room gives its bytes back.
        let mut one = MemoryRooms::new(1 << 20);
        for _ in 0..100 {
            one.append("/chat", "r", 2, Arc::from(message.as_str()));
        }
        assert_eq!(
            one.bytes(),
            ROOM_OVERHEAD + 5 + 1 + 2 * (100 + MESSAGE_OVERHEAD)
        );
    }

    #[tokio::test]
    async fn the_inboxes_never_evict_room_history() {
        let history = History::in_memory(4096, 1 << 20);
        let message = serde_json::json!({ "text": "kept" });
        history
            .append("/chat", "chat:general", 50, &message)
            .await
            .expect("kept");
        let inboxes = history.inboxes();
        let notification = serde_json::json!({ "text": "n".repeat(200) });
        for n in 0..100 {
            inboxes
                .append(
                    "/notifications",
                    &format!("user:made-up-{n}"),
                    50,
                    &notification,
                )
                .await
                .expect("kept");
        }
        assert_eq!(
            history.recent("/chat", "chat:general", 50).await,
            Ok(vec![message])
        );
        assert_eq!(
            inboxes.recent("/notifications", "user:made-up-0", 50).await,
            Ok(vec![notification])
        );
        // And the other way round: the rooms are not the inboxes.
        assert_eq!(
            inboxes.recent("/chat", "chat:general", 50).await,
            Ok(Vec::new())
        );
    }

    #[test]
    fn redis_keys_name_the_namespace_and_the_room() {
        assert_eq!(
            RedisRooms::key("socket.io", "/chat", "chat:general"),
            "socket.io#history#/chat#chat:general"
        );
    }
}
