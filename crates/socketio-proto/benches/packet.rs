//! Socket.IO v5 packet codec: the per-message cost above Engine.IO.
//!
//! Every emit is written by `encode_json` (or `encode_msgpack`) and every incoming message is
//! read by `JsonDecoder::decode_text` (or `decode_msgpack_bytes`), so these bound how many
//! events a core can move. Cases:
//! * `small_event`: `["echo", <32-byte string>]` with an ack id, the typical chat/RPC message;
//! * `nested_1KiB`: an event whose argument is a ~1 KiB nested object (serde_json dominates);
//! * `binary_2att`: an event with two 1 KiB attachments; decoding feeds the text head and then
//!   both attachments, as the server does, until the packet is complete.
//!
//! Throughput is the size of the encoded text (or msgpack) message. Attachments are not
//! counted: they are moved as shared `Bytes`, never copied or parsed.
//!
//! Run: `cargo bench -p switchyard-socketio-proto --bench packet`.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use switchyard_socketio_proto::{
    decode_msgpack_bytes, encode_json, encode_msgpack, placeholder, JsonDecoder, Packet,
};

/// A 32-byte event argument.
const TEXT_32: &str = "32 bytes of text................";

fn small_event() -> Packet {
    Packet::event("/", "echo", vec![json!(TEXT_32)]).with_ack_id(42)
}

/// An event whose one argument is a nested object of about 1 KiB of JSON.
fn nested_event() -> Packet {
    let mut items = Vec::new();
    let mut object = Value::Null;
    while serde_json::to_vec(&object).map_or(0, |v| v.len()) < 1024 {
        let n = items.len();
        items.push(json!({
            "id": n,
            "name": format!("item-{n}"),
            "price": 9.5 + n as f64,
            "tags": ["a", "b"],
            "stock": {"warehouse": "north", "count": n * 3, "reserved": false},
        }));
        object = json!({"user": {"id": 7, "name": "ada"}, "cart": {"items": items}});
    }
    Packet::event("/shop", "cart:update", vec![object])
}

fn binary_event() -> Packet {
    let attachment = |seed: u8| Bytes::from((0..1024).map(|i| seed ^ i as u8).collect::<Vec<u8>>());
    Packet::event(
        "/",
        "upload",
        vec![json!({"name": "pair.bin", "left": placeholder(0), "right": placeholder(1)})],
    )
    .with_attachments(vec![attachment(1), attachment(2)])
}

/// The text message of `packet` as the decoder receives it (no Engine.IO `4` in front).
fn encoded_text(packet: &Packet) -> String {
    let mut out = Vec::new();
    encode_json(packet, &mut out);
    String::from_utf8(out).expect("encode_json writes UTF-8")
}

/// Feeds the text head and then every attachment; returns the completed packet.
fn decode_json(decoder: &mut JsonDecoder, text: &str, attachments: &[Bytes]) -> Packet {
    let mut packet = decoder.decode_text(text).expect("head decodes");
    for attachment in attachments {
        assert!(packet.is_none(), "packet completed before its attachments");
        packet = decoder
            .decode_binary(attachment.clone())
            .expect("attachment decodes");
    }
    packet.expect("packet is complete")
}

fn json_codec(c: &mut Criterion) {
    let cases = [
        ("small_event", small_event()),
        ("nested_1KiB", nested_event()),
        ("binary_2att", binary_event()),
    ];
    let mut group = c.benchmark_group("json");
    for (name, packet) in &cases {
        let text = encoded_text(packet);
        let attachments = packet.attachments();
        let mut decoder = JsonDecoder::default();
        assert_eq!(&decode_json(&mut decoder, &text, attachments), packet);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("encode/{name}"), |b| {
            // The buffer is reused, as a per-connection writer would; only encoding is timed.
            let mut out = Vec::with_capacity(text.len() + 1);
            b.iter(|| {
                out.clear();
                encode_json(black_box(packet), &mut out);
                black_box(out.len())
            })
        });
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode_json(&mut decoder, black_box(&text), attachments))
        });
    }
    group.finish();
}

fn msgpack_codec(c: &mut Criterion) {
    let packet = small_event();
    let encoded = encode_msgpack(&packet);
    assert_eq!(
        decode_msgpack_bytes(&encoded).expect("packet decodes"),
        packet
    );
    let mut group = c.benchmark_group("msgpack");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode/small_event", |b| {
        b.iter(|| encode_msgpack(black_box(&packet)))
    });
    group.bench_function("decode/small_event", |b| {
        b.iter(|| decode_msgpack_bytes(black_box(&encoded)).expect("packet decodes"))
    });
    group.finish();
}

criterion_group!(benches, json_codec, msgpack_codec);
criterion_main!(benches);
