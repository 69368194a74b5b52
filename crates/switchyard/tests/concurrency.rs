//! Concurrency on a multi-threaded runtime: namespace-wide queries, broadcasts and emits while
//! sockets join and leave rooms, connect and disconnect. Every test is bounded (20 s) so a
//! deadlock fails rather than hangs.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{connect, start, start_default, wait_until, within, Client, Proxy, WAIT};
use serde_json::json;
use switchyard::{RecoveryConfig, Socket, SocketIoConfig};
use switchyard_client::{Args, Parser, SocketOptions, Transports};
use tokio::task::JoinSet;

const BOUND: Duration = Duration::from_secs(20);

async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {BOUND:?}: deadlock?"))
}

/// Server handlers: `join` and `leave` a room, `record` (a number, kept per socket in
/// arrival order), `chat` (relayed to every other socket).
fn handlers(records: Arc<Mutex<HashMap<String, Vec<u64>>>>) -> impl FnOnce(&switchyard::SocketIo) {
    move |io| {
        io.of("/").on_connection(move |socket: Socket| {
            let records = records.clone();
            async move {
                socket.on("join", |socket: Socket, room: String| async move {
                    socket.join(room);
                    Ok::<_, Infallible>(())
                });
                socket.on("leave", |socket: Socket, room: String| async move {
                    socket.leave(room.as_str());
                    Ok::<_, Infallible>(())
                });
                socket.on("record", move |socket: Socket, n: u64| {
                    records
                        .lock()
                        .unwrap()
                        .entry(socket.id().to_string())
                        .or_default()
                        .push(n);
                    async move { Ok::<_, Infallible>(n) }
                });
                socket.on("chat", |socket: Socket, args: Args| async move {
                    socket.broadcast().emit("chat", args)?;
                    Ok::<_, switchyard::EmitError>(())
                });
            }
        });
    }
}

async fn clients(url: &str, n: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(connect(url, "/").await);
    }
    clients
}

/// The values of every `name` event, in arrival order, until `count` of them came.
async fn collect(client: &mut Client, name: &str, count: usize) -> Vec<Args> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let (event, args) = client.events.next().await;
        if event == name {
            got.push(args);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_sockets_while_sockets_join_and_leave_the_room() {
    let server = start_default(handlers(Arc::default())).await;
    let ns = server.ns("/");
    let clients = clients(&server.url(), 8).await;
    let ids: BTreeSet<String> = clients.iter().map(Client::id).collect();

    bounded("fetch_sockets under churn", async {
        let mut churn = JoinSet::new();
        // Server-side churn, directly and through the adapter operations.
        for (task, socket) in ns.sockets().into_iter().take(6).enumerate() {
            let ns = ns.clone();
            churn.spawn(async move {
                for i in 0..300 {
                    if (i + task) % 10 == 0 {
                        let target = ns.to(socket.id().clone());
                        target.sockets_join("hot").await.unwrap();
                        target.sockets_leave("hot").await.unwrap();
                    } else {
                        socket.join("hot");
                        tokio::task::yield_now().await;
                        socket.leave("hot");
                    }
                }
            });
        }
        // Client-side churn, through events.
        for client in clients.iter().skip(6) {
            let socket = client.socket.clone();
            churn.spawn(async move {
                for _ in 0..40 {
                    socket.emit_with_ack("join", "hot", WAIT).await.unwrap();
                    socket.emit_with_ack("leave", "hot", WAIT).await.unwrap();
                }
            });
        }
        let mut fetches = 0;
        while !churn.is_empty() {
            let found = ns.to("hot").fetch_sockets().await.unwrap();
            assert!(found.len() <= ids.len());
            for socket in &found {
                assert!(ids.contains(&**socket.id()));
            }
            // Namespace-wide operations on the same room meanwhile.
            ns.to("hot").emit("tick", fetches).unwrap();
            assert!(ns.room_size("hot") <= ids.len());
            fetches += 1;
            while let Some(done) = churn.try_join_next() {
                done.unwrap();
            }
            tokio::task::yield_now().await;
        }
        assert!(fetches > 0);
    })
    .await;
    assert_eq!(ns.room_size("hot"), 0);
    assert!(ns.to("hot").fetch_sockets().await.unwrap().is_empty());
    assert_eq!(ns.broadcast().fetch_sockets().await.unwrap().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_broadcasts_to_a_room_while_members_churn() {
    const TASKS: u64 = 4;
    const PER_TASK: u64 = 100;
    let server = start_default(handlers(Arc::default())).await;
    let ns = server.ns("/");
    let mut stable = clients(&server.url(), 4).await;
    let mut churning = clients(&server.url(), 4).await;
    for client in &stable {
        server.socket_of(&client.socket).join("room");
    }
    let churners: Vec<Socket> = churning
        .iter()
        .map(|client| server.socket_of(&client.socket))
        .collect();

    bounded("broadcasts under churn", async {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut churn = JoinSet::new();
        for socket in churners {
            let stop = stop.clone();
            churn.spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    socket.join("room");
                    tokio::task::yield_now().await;
                    socket.leave("room");
                    tokio::task::yield_now().await;
                }
            });
        }
        let mut broadcasters = JoinSet::new();
        for task in 0..TASKS {
            let ns = ns.clone();
            broadcasters.spawn(async move {
                for seq in 0..PER_TASK {
                    ns.to("room").emit("b", json!([task, seq])).unwrap();
                    if seq % 8 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            });
        }
        while let Some(done) = broadcasters.join_next().await {
            done.unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        while let Some(done) = churn.join_next().await {
            done.unwrap();
        }

        // Stable members get everything, once, each broadcaster's packets in order.
        for client in &mut stable {
            let got = collect(client, "b", (TASKS * PER_TASK) as usize).await;
            let mut per_task: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for args in got {
                let (task, seq): (u64, u64) = args.get(0).unwrap();
                per_task.entry(task).or_default().push(seq);
            }
            for task in 0..TASKS {
                assert_eq!(
                    per_task.get(&task),
                    Some(&(0..PER_TASK).collect::<Vec<_>>()),
                    "broadcaster {task}"
                );
            }
        }
    })
    .await;

    // Churners got some of it: never twice, never out of order. A marker ends each stream.
    ns.emit("marker", ()).unwrap();
    for client in &mut churning {
        let (_, before) = client.events.until("marker").await;
        let mut last: BTreeMap<u64, u64> = BTreeMap::new();
        for (event, args) in before {
            assert_eq!(event, "b");
            let (task, seq): (u64, u64) = args.get(0).unwrap();
            if let Some(previous) = last.insert(task, seq) {
                assert!(seq > previous, "broadcaster {task}: {seq} after {previous}");
            }
        }
    }
    assert_eq!(ns.room_size("room"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_emits_from_many_clients() {
    const CLIENTS: usize = 16;
    const PER_CLIENT: u64 = 50;
    let records: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let server = start_default(handlers(records.clone())).await;
    let all = clients(&server.url(), CLIENTS).await;

    bounded("emits from every client", async {
        let mut senders = JoinSet::new();
        for client in &all {
            let socket = client.socket.clone();
            senders.spawn(async move {
                // Fire-and-forget, then acks in flight together on the same socket.
                for n in 0..PER_CLIENT {
                    socket.emit("record", n).unwrap();
                }
                let acks = (PER_CLIENT..PER_CLIENT + 10).map(|n| {
                    let socket = socket.clone();
                    async move { (n, socket.emit_with_ack("record", n, WAIT).await) }
                });
                for (n, answer) in futures_util::future::join_all(acks).await {
                    assert_eq!(answer.unwrap().values, vec![json!(n)], "ack ids mixed up");
                }
            });
        }
        while let Some(done) = senders.join_next().await {
            done.unwrap();
        }
    })
    .await;

    let records = records.lock().unwrap();
    assert_eq!(records.len(), CLIENTS);
    for client in &all {
        let got = &records[&client.id()];
        // Each socket's events are handled in the order it sent them; the acked ones were
        // sent concurrently, so only their set is known.
        assert_eq!(
            got[..PER_CLIENT as usize],
            (0..PER_CLIENT).collect::<Vec<_>>()
        );
        let acked: BTreeSet<u64> = got[PER_CLIENT as usize..].iter().copied().collect();
        assert_eq!(acked, (PER_CLIENT..PER_CLIENT + 10).collect());
        assert_eq!(got.len(), PER_CLIENT as usize + 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_fan_out_from_every_client_at_once() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: u64 = 25;
    let server = start_default(handlers(Arc::default())).await;
    let mut all = clients(&server.url(), CLIENTS).await;
    let ids: Vec<String> = all.iter().map(Client::id).collect();

    bounded("chat fan-out", async {
        let mut senders = JoinSet::new();
        for (index, client) in all.iter().enumerate() {
            let socket = client.socket.clone();
            senders.spawn(async move {
                for seq in 0..PER_CLIENT {
                    socket.emit("chat", json!([index, seq])).unwrap();
                }
            });
        }
        while let Some(done) = senders.join_next().await {
            done.unwrap();
        }
        for (me, client) in all.iter_mut().enumerate() {
            let expected = (CLIENTS - 1) * PER_CLIENT as usize;
            let got = collect(client, "chat", expected).await;
            let mut per_sender: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
            for args in got {
                let (from, seq): (usize, u64) = args.get(0).unwrap();
                per_sender.entry(from).or_default().push(seq);
            }
            assert!(
                !per_sender.contains_key(&me),
                "{}: got its own chat",
                ids[me]
            );
            for from in (0..CLIENTS).filter(|from| *from != me) {
                assert_eq!(
                    per_sender.get(&from),
                    Some(&(0..PER_CLIENT).collect::<Vec<_>>()),
                    "client {me} from {from}"
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_and_disconnects_during_broadcasts() {
    let server = start_default(handlers(Arc::default())).await;
    let ns = server.ns("/");
    let url = server.url();
    bounded("connection churn", async {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let broadcaster = {
            let (ns, stop) = (ns.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    ns.emit("tick", n).unwrap();
                    let _ = ns.broadcast().fetch_sockets().await.unwrap();
                    ns.to("r").emit("in-r", n).unwrap();
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        let mut churn = JoinSet::new();
        for _ in 0..4 {
            let url = url.clone();
            churn.spawn(async move {
                for _ in 0..10 {
                    let client = connect(&url, "/").await;
                    client
                        .socket
                        .emit_with_ack("join", "r", WAIT)
                        .await
                        .unwrap();
                    client.socket.disconnect();
                }
            });
        }
        while let Some(done) = churn.join_next().await {
            done.unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        broadcaster.await.unwrap();
    })
    .await;
    wait_until("every socket is gone", || {
        ns.socket_count() == 0 && server.io.engine().session_count() == 0
    })
    .await;
    assert_eq!(ns.room_size("r"), 0);
    assert!(ns.adapter().rooms().is_empty());
}

/// With recovery on, concurrent broadcasts are stored in one offset order; a client that
/// recovers gets every packet it missed exactly once, each broadcaster's in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_after_concurrent_broadcasts_replays_each_packet_once() {
    const TASKS: u64 = 4;
    const PER_TASK: u64 = 100;
    let config = SocketIoConfig {
        connection_state_recovery: Some(RecoveryConfig::default()),
        ..SocketIoConfig::default()
    };
    let server = start(config, handlers(Arc::default())).await;
    let proxy = Proxy::start(server.addr).await;
    let ns = server.ns("/");
    let mut client = common::connect_with(
        &proxy.url(),
        "/",
        common::client_config(Transports::WebSocket, Parser::Json),
        SocketOptions::default(),
    )
    .await;
    let sid = client.id();
    within(client.socket.emit_with_ack("join", "room", WAIT))
        .await
        .unwrap();

    let broadcast_all = |phase: &'static str| {
        let mut broadcasters = JoinSet::new();
        for task in 0..TASKS {
            let ns = ns.clone();
            broadcasters.spawn(async move {
                for seq in 0..PER_TASK {
                    ns.to("room").emit(phase, json!([task, seq])).unwrap();
                    if seq % 4 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            });
        }
        async move {
            while let Some(done) = broadcasters.join_next().await {
                done.unwrap();
            }
        }
    };
    let check = |got: Vec<Args>, phase: &str| {
        let mut seen: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for args in got {
            let (task, seq): (u64, u64) = args.get(0).unwrap();
            seen.entry(task).or_default().push(seq);
        }
        for task in 0..TASKS {
            assert_eq!(
                seen.get(&task),
                Some(&(0..PER_TASK).collect::<Vec<_>>()),
                "{phase}: broadcaster {task}"
            );
        }
    };

    bounded("broadcasts across a recovery", async {
        // Connected: every packet once, whatever the interleaving.
        broadcast_all("live").await;
        let live = collect(&mut client, "live", (TASKS * PER_TASK) as usize).await;
        check(live, "live");
        // One packet after all of them: the client's last offset is the latest one.
        ns.to("room").emit("sync", ()).unwrap();
        client.events.expect("sync").await;

        proxy.cut();
        wait_until("the server saw the socket go", || ns.socket_count() == 0).await;
        broadcast_all("missed").await;
        proxy.resume();
        wait_until("the client recovered", || {
            client.socket.connected() && client.socket.recovered()
        })
        .await;
        assert_eq!(client.id(), sid);
        ns.emit("marker", ()).unwrap();
        let (_, replayed) = client.events.until("marker").await;
        assert!(replayed.iter().all(|(event, _)| event == "missed"));
        check(
            replayed.into_iter().map(|(_, args)| args).collect(),
            "missed",
        );
    })
    .await;
}

/// `sockets_join` picks its sockets, then makes each join: a socket that disconnects in
/// between must not be left behind in the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_join_racing_disconnects_leaves_no_stale_member() {
    let server = start_default(handlers(Arc::default())).await;
    let ns = server.ns("/");
    let url = server.url();
    bounded("sockets_join under connection churn", async {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let joiner = {
            let (ns, stop) = (ns.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    ns.broadcast().sockets_join("everyone").await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut churn = JoinSet::new();
        for _ in 0..4 {
            let url = url.clone();
            churn.spawn(async move {
                for _ in 0..100 {
                    connect(&url, "/").await.socket.disconnect();
                }
            });
        }
        while let Some(done) = churn.join_next().await {
            done.unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        joiner.await.unwrap();
    })
    .await;
    wait_until("every socket is gone", || ns.socket_count() == 0).await;
    assert_eq!(
        ns.room_size("everyone"),
        0,
        "stale members left in the room"
    );
}
