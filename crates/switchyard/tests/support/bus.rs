//! A second adapter, for tests: several `SocketIo` instances in one process linked by an
//! in-memory bus. It carries every cluster operation the way a Redis adapter does (the local
//! part through `LocalNamespace`, the remote part on the other instances), and passes
//! what a real cluster serializes (options, socket descriptions, kept sessions) through JSON,
//! so the test proves those cross servers whole. It is a test double of the `Adapter` trait,
//! not a mock of Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::de::DeserializeOwned;
use serde::Serialize;
use switchyard::adapter::{
    AckReply, Adapter, AdapterContext, AdapterError, AdapterFactory, AttachSession, BoxFuture,
    BroadcastOptions, EncodedPacket, LocalNamespace, RecoveryConfig, RecoveryStore, Room,
    RoomIndex, SessionState, Sid, SocketInfo,
};
use switchyard::proto::Packet;
use switchyard::{AckError, Args};

/// The bus: every instance's namespaces, and one recovery store per namespace for the whole
/// cluster (as the streams adapter keeps packets and sessions in Redis).
#[derive(Default)]
pub(crate) struct Bus {
    nodes: Mutex<Vec<Node>>,
    stores: Mutex<HashMap<String, RecoveryStore>>,
}

#[derive(Clone)]
struct Node {
    server: usize,
    local: LocalNamespace,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// What crosses the wire: serialized and read back.
fn wire<T: Serialize + DeserializeOwned>(value: &T) -> T {
    let bytes = serde_json::to_vec(value).expect("serializable");
    serde_json::from_slice(&bytes).expect("deserializable")
}

impl Bus {
    pub(crate) fn new() -> Arc<Bus> {
        Arc::new(Bus::default())
    }

    /// The adapter factory of instance number `server`.
    pub(crate) fn factory(self: &Arc<Bus>, server: usize) -> AdapterFactory {
        let bus = self.clone();
        Arc::new(move |context: AdapterContext<'_>| {
            if let Some(config) = context.recovery {
                lock(&bus.stores)
                    .entry(context.namespace.to_owned())
                    .or_insert_with(|| RecoveryStore::new(config.clone()));
            }
            lock(&bus.nodes).push(Node {
                server,
                local: context.local.clone(),
            });
            Arc::new(BusAdapter {
                server,
                bus: bus.clone(),
                index: RoomIndex::new(),
                local: context.local,
                recovery: context.recovery.cloned(),
            }) as Arc<dyn Adapter>
        })
    }

    fn others(&self, server: usize, nsp: &str) -> Vec<LocalNamespace> {
        lock(&self.nodes)
            .iter()
            .filter(|node| node.server != server && node.local.name() == nsp)
            .map(|node| node.local.clone())
            .collect()
    }
}

struct BusAdapter {
    server: usize,
    bus: Arc<Bus>,
    index: RoomIndex,
    local: LocalNamespace,
    recovery: Option<RecoveryConfig>,
}

impl BusAdapter {
    /// The other instances' side of this namespace, unless the operation is local only.
    fn remotes(&self, options: &BroadcastOptions) -> Vec<LocalNamespace> {
        if options.local {
            return Vec::new();
        }
        self.bus.others(self.server, self.local.name())
    }
}

fn ready<T: Send + 'static>(value: T) -> BoxFuture<T> {
    Box::pin(std::future::ready(value))
}

impl Adapter for BusAdapter {
    fn add_all(&self, sid: &Sid, rooms: &[Room]) {
        self.index.add_all(sid, rooms);
    }

    fn del(&self, sid: &Sid, room: &Room) {
        self.index.del(sid, room);
    }

    fn del_all(&self, sid: &Sid) {
        self.index.del_all(sid);
    }

    fn socket_rooms(&self, sid: &Sid) -> Vec<Room> {
        self.index.socket_rooms(sid)
    }

    fn for_each_in_room(&self, room: &Room, visit: &mut dyn FnMut(&Sid)) {
        self.index.for_each_in_room(room, visit);
    }

    fn rooms(&self) -> Vec<Room> {
        self.index.rooms()
    }

    fn server_count(&self) -> BoxFuture<Result<usize, AdapterError>> {
        let others = self.bus.others(self.server, self.local.name()).len();
        ready(Ok(others + 1))
    }

    fn broadcast(
        &self,
        packet: Packet,
        options: BroadcastOptions,
    ) -> BoxFuture<Result<(), AdapterError>> {
        let remote_options = wire(&options);
        let recoverable = self.recovery.is_some()
            && !options.volatile
            && matches!(packet, Packet::Event { id: None, .. });
        if recoverable {
            let mut stores = lock(&self.bus.stores);
            let Some(store) = stores.get_mut(self.local.name()) else {
                return ready(Err(AdapterError::Backend("no recovery store".into())));
            };
            let encoded = store.append(packet, &options, self.local.parser(), Instant::now());
            // Delivered under the store's lock: every client sees offsets in order.
            self.local.deliver(&encoded, &options);
            for remote in self.remotes(&options) {
                remote.deliver(&encoded, &remote_options);
            }
            drop(stores);
        } else {
            self.local.broadcast(&packet, &options);
            for remote in self.remotes(&options) {
                remote.broadcast(&packet, &remote_options);
            }
        }
        ready(Ok(()))
    }

    fn broadcast_with_ack(
        &self,
        packet: Packet,
        options: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<Result<Vec<AckReply>, AdapterError>> {
        let local = self
            .local
            .broadcast_with_ack(packet.clone(), &options, timeout);
        let remote_options = wire(&options);
        // Each other server answers with its client count, then each ack as it comes (the
        // reference cluster protocol); acks from other servers carry no socket id.
        let remotes: Vec<_> = self
            .remotes(&options)
            .into_iter()
            .map(|remote| remote.broadcast_with_ack(packet.clone(), &remote_options, timeout))
            .collect();
        Box::pin(async move {
            let mut replies = local.collect().await;
            for mut remote in remotes {
                let expected = remote.count;
                let mut received = 0;
                let deadline = tokio::time::Instant::now() + timeout;
                while received < expected {
                    match tokio::time::timeout_at(deadline, remote.replies.recv()).await {
                        Ok(Some(reply)) => {
                            received += 1;
                            if let Ok(args) = reply.result {
                                replies.push(AckReply {
                                    sid: None,
                                    result: Ok(args),
                                });
                            } else {
                                replies.push(AckReply {
                                    sid: None,
                                    result: Err(AckError::Timeout),
                                });
                            }
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
                for _ in received..expected {
                    replies.push(AckReply {
                        sid: None,
                        result: Err(AckError::Timeout),
                    });
                }
            }
            Ok(replies)
        })
    }

    fn add_sockets(
        &self,
        options: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<Result<(), AdapterError>> {
        self.local.add_sockets(&options, &rooms);
        for remote in self.remotes(&options) {
            remote.add_sockets(&wire(&options), &rooms);
        }
        ready(Ok(()))
    }

    fn del_sockets(
        &self,
        options: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<Result<(), AdapterError>> {
        self.local.del_sockets(&options, &rooms);
        for remote in self.remotes(&options) {
            remote.del_sockets(&wire(&options), &rooms);
        }
        ready(Ok(()))
    }

    fn disconnect_sockets(
        &self,
        options: BroadcastOptions,
        close: bool,
    ) -> BoxFuture<Result<(), AdapterError>> {
        self.local.disconnect_sockets(&options, close);
        for remote in self.remotes(&options) {
            remote.disconnect_sockets(&wire(&options), close);
        }
        ready(Ok(()))
    }

    fn fetch_sockets(
        &self,
        options: BroadcastOptions,
        _timeout: Duration,
    ) -> BoxFuture<Result<Vec<SocketInfo>, AdapterError>> {
        let mut found = self.local.fetch_sockets(&options);
        for remote in self.remotes(&options) {
            found.extend(remote.fetch_sockets(&wire(&options)).iter().map(wire));
        }
        ready(Ok(found))
    }

    fn server_side_emit(
        &self,
        event: String,
        args: Args,
        ack: Option<Duration>,
    ) -> BoxFuture<Result<Vec<Args>, AdapterError>> {
        let answers: Vec<_> = self
            .bus
            .others(self.server, self.local.name())
            .into_iter()
            .map(|remote| remote.server_side_emit(&event, args.clone()))
            .collect();
        let Some(timeout) = ack else {
            tokio::spawn(join_all(answers));
            return ready(Ok(Vec::new()));
        };
        Box::pin(async move {
            let answers = tokio::time::timeout(timeout, join_all(answers))
                .await
                .map_err(|_| AdapterError::Timeout)?;
            Ok(answers.into_iter().flatten().collect())
        })
    }

    fn attach_socket(&self, attach: &mut dyn FnMut()) -> Option<String> {
        // Under the lock every server's recoverable broadcasts deliver under.
        let stores = lock(&self.bus.stores);
        attach();
        stores
            .get(self.local.name())
            .map(RecoveryStore::start_offset)
    }

    fn persist_session(&self, session: SessionState) {
        // Only what serializes crosses to the store every server reads.
        let session: SessionState = wire(&session);
        if let Some(store) = lock(&self.bus.stores).get_mut(self.local.name()) {
            store.persist(Instant::now(), session);
        }
    }

    fn restore_session(
        &self,
        pid: String,
        offset: Option<String>,
        attach: AttachSession,
    ) -> BoxFuture<Result<Option<Vec<EncodedPacket>>, AdapterError>> {
        let mut stores = lock(&self.bus.stores);
        let missed = stores
            .get_mut(self.local.name())
            .and_then(|store| store.restore(Instant::now(), &pid, offset.as_deref(), attach));
        drop(stores);
        ready(Ok(missed))
    }
}
