//! The `/calls` namespace of the binary with real clients: a call rings every tab of the
//! callee, the first to accept takes it, signals go only between the call's two sockets, and
//! every way a call ends (hangup, decline, no answer, a disconnection) tells its parties and
//! frees both users for the next call; a ringing call makes nobody busy, and a caller declined
//! or unanswered waits before calling that callee again.

mod common;

use serde_json::{json, Value};
use switchyard_client::{Manager, Socket};
use tokio::sync::mpsc;

type Events = mpsc::UnboundedReceiver<(String, Value)>;

/// A connected `/calls` client named `name` (dev mode), and the events it gets.
async fn caller(url: &str, name: &str) -> (Manager, Socket, Events) {
    common::client(url, "/calls", json!({ "name": name })).await
}

/// The next event, which must be `name`: its data.
async fn expect(events: &mut Events, name: &str) -> Value {
    let (event, data) = common::next(events).await;
    assert_eq!(event, name, "{data}");
    data
}

async fn invite(socket: &Socket, to: &str) -> Value {
    common::ack(socket, "call:invite", json!({ "to": to })).await
}

/// Starts a call from `socket` to `to`: its id.
async fn call_id(socket: &Socket, to: &str) -> String {
    let answer = invite(socket, to).await;
    answer["callId"]
        .as_str()
        .unwrap_or_else(|| panic!("a call id: {answer}"))
        .to_owned()
}

async fn on_call(socket: &Socket, event: &str, id: &str) -> Value {
    common::ack(socket, event, json!({ "callId": id })).await
}

async fn signal(socket: &Socket, id: &str, kind: &str, data: Value) -> Value {
    common::ack(
        socket,
        "call:signal",
        json!({ "callId": id, "type": kind, "data": data }),
    )
    .await
}

fn ok() -> Value {
    json!({ "ok": true })
}

fn error(message: &str) -> Value {
    json!({ "error": message })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rings_every_tab_and_signals_go_only_between_its_two_sockets() {
    let server = common::start(&["--port", "0"], &[]);
    let url = &server.url;
    let (_a1, alice1, mut alice1_events) = caller(url, "alice").await;
    let (_a2, alice2, mut alice2_events) = caller(url, "alice").await;
    let (_b1, bob1, mut bob1_events) = caller(url, "bob").await;
    let (_b2, bob2, mut bob2_events) = caller(url, "bob").await;
    let (_c, carol, mut carol_events) = caller(url, "carol").await;

    let id = call_id(&alice1, "bob").await;
    assert_eq!(id.len(), 32, "{id}");
    let incoming = json!({ "callId": id, "from": "alice" });
    assert_eq!(expect(&mut bob1_events, "call:incoming").await, incoming);
    assert_eq!(expect(&mut bob2_events, "call:incoming").await, incoming);

    // Before the answer, nobody signals.
    assert_eq!(
        signal(
            &alice1,
            &id,
            "offer",
            json!({ "type": "offer", "sdp": "v=0" })
        )
        .await,
        error("call not answered yet")
    );
    assert_eq!(
        signal(&bob1, &id, "answer", json!({})).await,
        error("not in this call")
    );
    // Only the callee answers.
    assert_eq!(
        on_call(&carol, "call:accept", &id).await,
        error("no such call")
    );
    assert_eq!(
        on_call(&alice2, "call:accept", &id).await,
        error("no such call")
    );

    assert_eq!(on_call(&bob1, "call:accept", &id).await, ok());
    assert_eq!(
        expect(&mut alice1_events, "call:accepted").await,
        json!({ "callId": id, "by": "bob" })
    );
    assert_eq!(
        expect(&mut bob2_events, "call:ended").await,
        json!({ "callId": id, "reason": "answered elsewhere" })
    );
    assert_eq!(
        on_call(&bob2, "call:accept", &id).await,
        error("already answered")
    );
    assert_eq!(
        on_call(&bob2, "call:decline", &id).await,
        error("already answered")
    );

    // The offer, the answer and candidates, each to the other socket of the call.
    let offer = json!({ "type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" });
    assert_eq!(signal(&alice1, &id, "offer", offer.clone()).await, ok());
    assert_eq!(
        expect(&mut bob1_events, "call:signal").await,
        json!({ "callId": id, "from": "alice", "type": "offer", "data": offer })
    );
    let answer = json!({ "type": "answer", "sdp": "v=0\r\n" });
    assert_eq!(signal(&bob1, &id, "answer", answer.clone()).await, ok());
    assert_eq!(
        expect(&mut alice1_events, "call:signal").await,
        json!({ "callId": id, "from": "bob", "type": "answer", "data": answer })
    );
    let candidate = json!({ "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0 });
    assert_eq!(
        signal(&bob1, &id, "candidate", candidate.clone()).await,
        ok()
    );
    assert_eq!(
        signal(&alice1, &id, "candidate", candidate.clone()).await,
        ok()
    );
    assert_eq!(
        expect(&mut alice1_events, "call:signal").await["type"],
        "candidate"
    );
    assert_eq!(
        expect(&mut bob1_events, "call:signal").await["data"],
        candidate
    );

    // Nobody else signals in the call, nor hangs it up.
    for socket in [&carol, &alice2, &bob2] {
        assert_eq!(
            signal(socket, &id, "candidate", json!({})).await,
            error("not in this call")
        );
        assert_eq!(
            on_call(socket, "call:hangup", &id).await,
            error("not in this call")
        );
    }
    assert_eq!(
        signal(&alice1, "no-such-call", "offer", json!({})).await,
        error("not in this call")
    );
    assert_eq!(
        signal(&alice1, &id, "bye", json!({})).await,
        error("type must be offer, answer or candidate")
    );
    assert_eq!(
        signal(
            &alice1,
            &id,
            "offer",
            json!({ "sdp": "x".repeat(16 * 1024) })
        )
        .await,
        error("data over 16384 bytes")
    );

    // Both users are busy, whoever calls whom, from any tab.
    assert_eq!(invite(&carol, "alice").await, error("busy"));
    assert_eq!(invite(&carol, "bob").await, error("busy"));
    assert_eq!(invite(&alice2, "carol").await, error("busy"));

    assert_eq!(on_call(&bob1, "call:hangup", &id).await, ok());
    let hangup = json!({ "callId": id, "reason": "hangup" });
    assert_eq!(expect(&mut alice1_events, "call:ended").await, hangup);
    assert_eq!(expect(&mut bob1_events, "call:ended").await, hangup);
    assert_eq!(
        on_call(&alice1, "call:hangup", &id).await,
        error("not in this call")
    );

    // Both are free again. What each tab gets next is the new call: no signal of the last one
    // reached bob's other tab, nor alice's.
    let second = call_id(&carol, "bob").await;
    assert_ne!(second, id);
    let incoming = json!({ "callId": second, "from": "carol" });
    assert_eq!(expect(&mut bob2_events, "call:incoming").await, incoming);
    assert_eq!(expect(&mut bob1_events, "call:incoming").await, incoming);
    // The caller cancels: it rang on both tabs, both hear it ended.
    assert_eq!(on_call(&carol, "call:hangup", &second).await, ok());
    let cancelled = json!({ "callId": second, "reason": "hangup" });
    assert_eq!(expect(&mut carol_events, "call:ended").await, cancelled);
    assert_eq!(expect(&mut bob1_events, "call:ended").await, cancelled);
    assert_eq!(expect(&mut bob2_events, "call:ended").await, cancelled);

    let third = call_id(&carol, "alice").await;
    let incoming = json!({ "callId": third, "from": "carol" });
    assert_eq!(expect(&mut alice2_events, "call:incoming").await, incoming);
    assert_eq!(expect(&mut alice1_events, "call:incoming").await, incoming);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_call_ends_for_the_caller_and_every_tab_of_the_callee() {
    let server = common::start(&["--port", "0"], &[]);
    let url = &server.url;
    let (_a, alice, mut alice_events) = caller(url, "alice").await;
    let (_b1, bob1, mut bob1_events) = caller(url, "bob").await;
    let (_b2, _bob2, mut bob2_events) = caller(url, "bob").await;

    let id = call_id(&alice, "bob").await;
    expect(&mut bob1_events, "call:incoming").await;
    expect(&mut bob2_events, "call:incoming").await;
    // The caller cannot decline its own call.
    assert_eq!(
        on_call(&alice, "call:decline", &id).await,
        error("no such call")
    );
    assert_eq!(on_call(&bob1, "call:decline", &id).await, ok());
    let declined = json!({ "callId": id, "reason": "declined" });
    assert_eq!(expect(&mut alice_events, "call:ended").await, declined);
    assert_eq!(expect(&mut bob1_events, "call:ended").await, declined);
    assert_eq!(expect(&mut bob2_events, "call:ended").await, declined);
    assert_eq!(
        on_call(&bob1, "call:accept", &id).await,
        error("no such call")
    );
    // Alice waits before calling bob again; bob may call her.
    assert_eq!(invite(&alice, "bob").await, error("try again later"));
    let again = call_id(&bob1, "alice").await;
    assert_ne!(again, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_call_keeps_nobody_busy_and_answering_one_ends_the_others() {
    let server = common::start(&["--port", "0"], &[]);
    let url = &server.url;
    let (_a, alice, mut alice_events) = caller(url, "alice").await;
    let (_c, carol, mut carol_events) = caller(url, "carol").await;
    let (_b1, bob1, mut bob1_events) = caller(url, "bob").await;
    let (_b2, _bob2, mut bob2_events) = caller(url, "bob").await;
    let (_d, dave, _dave_events) = caller(url, "dave").await;

    // Alice's call rings bob; carol can still call him: both ring on every tab.
    let first = call_id(&alice, "bob").await;
    let second = call_id(&carol, "bob").await;
    for events in [&mut bob1_events, &mut bob2_events] {
        assert_eq!(
            expect(events, "call:incoming").await,
            json!({ "callId": first, "from": "alice" })
        );
        assert_eq!(
            expect(events, "call:incoming").await,
            json!({ "callId": second, "from": "carol" })
        );
    }
    // Bob takes carol's: alice's call ends, busy, for her and every tab of bob.
    assert_eq!(on_call(&bob1, "call:accept", &second).await, ok());
    assert_eq!(
        expect(&mut carol_events, "call:accepted").await,
        json!({ "callId": second, "by": "bob" })
    );
    let busy = json!({ "callId": first, "reason": "busy" });
    assert_eq!(expect(&mut alice_events, "call:ended").await, busy);
    assert_eq!(expect(&mut bob1_events, "call:ended").await, busy);
    let mut bob2_ended = vec![
        expect(&mut bob2_events, "call:ended").await,
        expect(&mut bob2_events, "call:ended").await,
    ];
    bob2_ended.sort_by_key(|event| event["reason"].to_string());
    assert_eq!(
        bob2_ended,
        [
            json!({ "callId": second, "reason": "answered elsewhere" }),
            busy
        ]
    );
    assert_eq!(
        on_call(&bob1, "call:accept", &first).await,
        error("no such call")
    );
    // Now bob is busy; a busy end costs alice no wait once he is free.
    assert_eq!(invite(&dave, "bob").await, error("busy"));
    assert_eq!(on_call(&carol, "call:hangup", &second).await, ok());
    expect(&mut bob1_events, "call:ended").await;
    let third = call_id(&alice, "bob").await;
    assert_eq!(
        expect(&mut bob2_events, "call:incoming").await,
        json!({ "callId": third, "from": "alice" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_to_nobody_to_oneself_or_malformed_are_refused() {
    let server = common::start(&["--port", "0"], &[]);
    let (_a, alice, _alice_events) = caller(&server.url, "alice").await;
    assert_eq!(invite(&alice, "bob").await, error("user not online"));
    assert_eq!(invite(&alice, "alice").await, error("cannot call yourself"));
    assert_eq!(
        invite(&alice, " alice ").await,
        error("cannot call yourself")
    );
    assert_eq!(
        common::ack(&alice, "call:invite", json!({})).await,
        error("to must be a user name")
    );
    assert_eq!(
        common::ack(&alice, "call:invite", json!("bob")).await,
        error("expected an object { to }")
    );
    assert_eq!(
        common::ack(&alice, "call:accept", json!({ "callId": 5 })).await,
        error("callId must be a call id")
    );
    // A user on another namespace is not online for calls.
    let (_n, _notes, _note_events) =
        common::client(&server.url, "/notifications", json!({ "user": "bob" })).await;
    assert_eq!(invite(&alice, "bob").await, error("user not online"));
    // Nothing refused left a call behind: alice is not busy.
    let (_b, _bob, mut bob_events) = caller(&server.url, "bob").await;
    call_id(&alice, "bob").await;
    expect(&mut bob_events, "call:incoming").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnection_ends_the_call_it_was_in() {
    let server = common::start(&["--port", "0"], &[]);
    let url = &server.url;
    let (_a, alice, mut alice_events) = caller(url, "alice").await;
    let (_b1, bob1, mut bob1_events) = caller(url, "bob").await;
    let (_b2, bob2, mut bob2_events) = caller(url, "bob").await;

    // An answered call: the callee's socket goes.
    let id = call_id(&alice, "bob").await;
    expect(&mut bob1_events, "call:incoming").await;
    expect(&mut bob2_events, "call:incoming").await;
    assert_eq!(on_call(&bob1, "call:accept", &id).await, ok());
    expect(&mut alice_events, "call:accepted").await;
    expect(&mut bob2_events, "call:ended").await; // answered elsewhere
    bob1.disconnect();
    assert_eq!(
        expect(&mut alice_events, "call:ended").await,
        json!({ "callId": id, "reason": "disconnected" })
    );

    // A ringing call: the caller's socket goes; the callee's tab hears it ended.
    let (_c, carol, _carol_events) = caller(url, "carol").await;
    let id = call_id(&carol, "bob").await;
    expect(&mut bob2_events, "call:incoming").await;
    carol.disconnect();
    assert_eq!(
        expect(&mut bob2_events, "call:ended").await,
        json!({ "callId": id, "reason": "disconnected" })
    );

    // A ringing call: the callee's last socket goes.
    let id = call_id(&alice, "bob").await;
    expect(&mut bob2_events, "call:incoming").await;
    bob2.disconnect();
    assert_eq!(
        expect(&mut alice_events, "call:ended").await,
        json!({ "callId": id, "reason": "disconnected" })
    );

    // Everyone is free again.
    let (_b3, _bob3, mut bob3_events) = caller(url, "bob").await;
    let id = call_id(&alice, "bob").await;
    assert_eq!(
        expect(&mut bob3_events, "call:incoming").await,
        json!({ "callId": id, "from": "alice" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_call_ends_after_the_ring_timeout() {
    let server = common::start(&["--port", "0", "--call-ring-timeout-ms", "300"], &[]);
    let url = &server.url;
    let (_a, alice, mut alice_events) = caller(url, "alice").await;
    let (_b, bob, mut bob_events) = caller(url, "bob").await;

    let id = call_id(&alice, "bob").await;
    expect(&mut bob_events, "call:incoming").await;
    let no_answer = json!({ "callId": id, "reason": "no answer" });
    assert_eq!(expect(&mut alice_events, "call:ended").await, no_answer);
    assert_eq!(expect(&mut bob_events, "call:ended").await, no_answer);
    assert_eq!(
        on_call(&bob, "call:accept", &id).await,
        error("no such call")
    );

    // Alice waits before ringing bob again (10 s); bob may call her.
    assert_eq!(invite(&alice, "bob").await, error("try again later"));

    // An answered call does not time out: it is still up after the ring timeout.
    let id = call_id(&bob, "alice").await;
    expect(&mut alice_events, "call:incoming").await;
    assert_eq!(on_call(&alice, "call:accept", &id).await, ok());
    expect(&mut bob_events, "call:accepted").await;
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    assert_eq!(signal(&bob, &id, "offer", json!({})).await, ok());
    assert_eq!(
        expect(&mut alice_events, "call:signal").await["type"],
        "offer"
    );
    assert_eq!(on_call(&bob, "call:hangup", &id).await, ok());
    assert_eq!(
        expect(&mut alice_events, "call:ended").await["reason"],
        "hangup"
    );
}
