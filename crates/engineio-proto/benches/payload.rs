//! Engine.IO v4 polling codec: what one long-poll round trip costs the server.
//!
//! Every HTTP long-poll GET joins the queued frames with `encode_payload`, and every POST is
//! split with `decode_payload`; a WebSocket text frame goes through `Packet::decode_text`.
//! Measured for 1, 16 and 256 text messages of 32 bytes, and for payloads that alternate a
//! text message with a 1 KiB binary message (the base64 path of the polling transport).
//! Throughput is the size of the encoded payload body, so encode and decode are comparable.
//!
//! Run: `cargo bench -p switchyard-engineio-proto --bench payload`.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchyard_engineio_proto::{decode_payload, encode_payload, Frame, Message, Packet};

/// A 32-byte message body.
const TEXT_32: &str = "32 bytes of text................";

/// `count` text messages of 32 bytes.
fn text_frames(count: usize) -> Vec<Frame> {
    (0..count).map(|_| Frame::text_message(TEXT_32)).collect()
}

/// `count` frames alternating a 32-byte text message and a 1 KiB binary message.
fn mixed_frames(count: usize) -> Vec<Frame> {
    let binary = Bytes::from((0..1024).map(|i| i as u8).collect::<Vec<u8>>());
    (0..count)
        .map(|i| match i % 2 {
            0 => Frame::text_message(TEXT_32),
            _ => Frame::binary_message(binary.clone()),
        })
        .collect()
}

/// Benchmarks encoding and decoding one payload of `make(count)` frames for each count.
fn bench_round_trip(
    c: &mut Criterion,
    group_name: &str,
    counts: &[usize],
    make: fn(usize) -> Vec<Frame>,
    sample_size: usize,
) {
    let mut group = c.benchmark_group(group_name);
    group.sample_size(sample_size);
    for &count in counts {
        let frames = make(count);
        let body = encode_payload(&frames);
        // The benchmark is only meaningful if the payload decodes back to the same messages.
        let decoded = decode_payload(&body, body.len()).expect("payload decodes");
        assert_eq!(
            decoded.iter().map(Packet::encode).collect::<Vec<_>>(),
            frames
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("encode", count), &frames, |b, frames| {
            b.iter(|| encode_payload(black_box(frames)))
        });
        group.bench_with_input(BenchmarkId::new("decode", count), &body, |b, body| {
            b.iter(|| decode_payload(black_box(body), usize::MAX).expect("payload decodes"))
        });
    }
    group.finish();
}

fn payload_text(c: &mut Criterion) {
    bench_round_trip(c, "payload_text_32B", &[1, 16, 256], text_frames, 100);
}

fn payload_mixed(c: &mut Criterion) {
    // The largest mixed payload (~175 KiB) takes ~0.4 ms to decode: 50 samples keep it short.
    bench_round_trip(
        c,
        "payload_mixed_text_bin1KiB",
        &[2, 16, 256],
        mixed_frames,
        50,
    );
}

fn packet_decode_text(c: &mut Criterion) {
    let text = format!("4{TEXT_32}");
    assert_eq!(
        Packet::decode_text(&text),
        Ok(Packet::Message(Message::Text(TEXT_32.to_owned())))
    );
    let mut group = c.benchmark_group("packet");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("decode_text_message_32B", |b| {
        b.iter(|| Packet::decode_text(black_box(&text)).expect("packet decodes"))
    });
    group.finish();
}

criterion_group!(benches, payload_text, payload_mixed, packet_decode_text);
criterion_main!(benches);
