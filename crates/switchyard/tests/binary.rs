//! Binary data: `Binary` values at depth inside serde structs, in events and acks, both
//! ways, with the JSON parser and the msgpack parser, over WebSocket and long-polling.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::{client_config, connect_with, start, within, TestServer, WAIT};
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard::{Args, Binary, Parser, Socket, SocketIoConfig};
use switchyard_client::{SocketOptions, Transports};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Part {
    index: u32,
    data: Binary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Upload {
    name: String,
    parts: Vec<Part>,
    thumbnail: Option<Binary>,
    empty: Binary,
}

fn upload(name: &str) -> Upload {
    Upload {
        name: name.to_owned(),
        parts: vec![
            Part {
                index: 0,
                data: Binary::from(vec![0u8, 1, 2, 255]),
            },
            Part {
                index: 1,
                // Large enough to span several TCP reads and a long base64 line.
                data: Binary::from((0..64 * 1024).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
            },
        ],
        thumbnail: Some(Binary::from(b"\x89PNG".as_slice())),
        empty: Binary::default(),
    }
}

async fn server(parser: Parser) -> TestServer {
    let config = SocketIoConfig {
        parser,
        ..SocketIoConfig::default()
    };
    start(config, |io| {
        io.of("/").on_connection(|socket: Socket| async move {
            socket.on("upload", |socket: Socket, mut upload: Upload| async move {
                // Sent back twice: as an event, and as the ack.
                socket.emit("stored", &upload)?;
                upload.name.push_str(" (acked)");
                Ok::<_, switchyard::EmitError>(upload)
            });
            socket.on("raw", |_: Socket, args: Args| async move {
                Ok::<_, Infallible>(args)
            });
        });
    })
    .await
}

async fn round_trips(parser: Parser, transports: Transports) {
    let server = server(parser).await;
    let mut client = connect_with(
        &server.url(),
        "/",
        client_config(transports, parser),
        SocketOptions::default(),
    )
    .await;
    let what = format!("{parser:?} over {transports:?}");

    // Client to server, and back in the ack.
    let sent = upload("report");
    let answer = within(client.socket.emit_with_ack("upload", &sent, WAIT))
        .await
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    let acked: Upload = answer.get(0).unwrap();
    assert_eq!(
        acked,
        Upload {
            name: "report (acked)".into(),
            ..sent.clone()
        },
        "{what}"
    );
    // Server to client, as an event.
    let stored: Upload = client.events.expect("stored").await.get(0).unwrap();
    assert_eq!(stored, sent, "{what}");

    // Binary as top-level arguments, beside plain ones.
    let args = Args::one(&Binary::from(vec![1u8, 2, 3]))
        .unwrap()
        .push(&json!({"plain": true}))
        .unwrap()
        .push(&vec![Binary::from(vec![4u8]), Binary::from(vec![5u8, 6])])
        .unwrap();
    let echoed = within(client.socket.emit_with_ack("raw", args, WAIT))
        .await
        .unwrap();
    let (first, plain, list): (Binary, serde_json::Value, Vec<Binary>) = echoed.all().unwrap();
    assert_eq!(first.bytes(), &Bytes::from_static(&[1, 2, 3]), "{what}");
    assert_eq!(plain, json!({"plain": true}), "{what}");
    assert_eq!(
        list,
        vec![Binary::from(vec![4u8]), Binary::from(vec![5u8, 6])],
        "{what}"
    );

    // Server to client with an ack the client answers with binary.
    client.socket.on("transform", |event| async move {
        let mut upload: Upload = event.arg(0).expect("an upload");
        upload.parts.reverse();
        upload.thumbnail = None;
        let _ = event.ack(&upload);
    });
    let socket = server.socket_of(&client.socket);
    let answer = within(socket.emit_with_ack("transform", upload("server")))
        .await
        .unwrap();
    let mut expected = upload("server");
    expected.parts.reverse();
    expected.thumbnail = None;
    assert_eq!(answer.get::<Upload>(0).unwrap(), expected, "{what}");
    assert_eq!(answer.attachments.len(), 3, "{what}: one per Binary");

    client.events.expect("transform").await;

    // A broadcast with binary reaches the client encoded once for everyone.
    server.ns("/").emit("broadcast", upload("all")).unwrap();
    let got: Upload = client.events.expect("broadcast").await.get(0).unwrap();
    assert_eq!(got, upload("all"), "{what}");
}

#[tokio::test]
async fn json_parser_over_websocket() {
    round_trips(Parser::Json, Transports::WebSocket).await;
}

#[tokio::test]
async fn json_parser_over_polling() {
    round_trips(Parser::Json, Transports::Polling).await;
}

#[tokio::test]
async fn msgpack_parser_over_websocket() {
    round_trips(Parser::MsgPack, Transports::WebSocket).await;
}

#[tokio::test]
async fn msgpack_parser_over_polling() {
    round_trips(Parser::MsgPack, Transports::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_parser_with_upgrade_to_websocket() {
    round_trips(Parser::MsgPack, Transports::PollingThenWebSocket).await;
}
