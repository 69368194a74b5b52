//! Broadcast fan-out: encoding a packet once for N recipients versus once per recipient.
//!
//! The server encodes a broadcast once into an `EncodedPacket` (frames shared by reference
//! count) and gives every recipient a clone. This measures that path against the naive one of
//! calling `EncodedPacket::new` for each recipient, for N = 1, 100, 1000 and 10000 recipients
//! and an event carrying a 32-byte or a 1 KiB string. Both variants collect their N packets
//! into one `Vec`, as queuing them would keep them alive, so the same allocation and drop
//! costs are on each side. Throughput is in recipients (elements) per second.
//!
//! It also measures `Args::one` on a small struct: the serde step every typed `emit` pays
//! before the packet is built.
//!
//! Run: `cargo bench -p switchyard --bench broadcast`.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::Serialize;
use serde_json::json;
use switchyard_core::proto::Packet;
use switchyard_core::{Args, EncodedPacket, Parser};

const RECIPIENTS: [usize; 4] = [1, 100, 1000, 10_000];

fn fan_out(c: &mut Criterion) {
    for (label, size) in [("32B", 32), ("1KiB", 1024)] {
        let packet = Packet::event("/", "news", vec![json!("x".repeat(size))]);
        let mut group = c.benchmark_group(format!("broadcast_{label}"));
        // The per-recipient side takes milliseconds at N = 10000: keep the run short.
        group.sample_size(10);
        for n in RECIPIENTS {
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new("encode_once_clone", n), &n, |b, &n| {
                b.iter(|| {
                    let encoded = EncodedPacket::new(Parser::Json, black_box(&packet));
                    (0..n).map(|_| encoded.clone()).collect::<Vec<_>>()
                })
            });
            group.bench_with_input(BenchmarkId::new("encode_per_recipient", n), &n, |b, &n| {
                b.iter(|| {
                    (0..n)
                        .map(|_| EncodedPacket::new(Parser::Json, black_box(&packet)))
                        .collect::<Vec<_>>()
                })
            });
        }
        group.finish();
    }
}

/// A typical small typed payload.
#[derive(Serialize)]
struct ChatMessage<'a> {
    room: &'a str,
    user_id: u64,
    text: &'a str,
    urgent: bool,
}

fn args_one(c: &mut Criterion) {
    let message = ChatMessage {
        room: "lobby",
        user_id: 42,
        text: "hello, world",
        urgent: false,
    };
    let args = Args::one(&message).expect("serializes");
    assert_eq!(
        args.values,
        vec![json!({"room": "lobby", "user_id": 42, "text": "hello, world", "urgent": false})]
    );
    c.bench_function("args_one_small_struct", |b| {
        b.iter(|| Args::one(black_box(&message)).expect("serializes"))
    });
}

criterion_group!(benches, fan_out, args_one);
criterion_main!(benches);
