#!/usr/bin/env python3
"""Breaks a dhat heap profile of N idle connections down by owner: bench/idle/profile.

Reads dhat-heap.json (written by examples/bench_server built with --features dhat-heap while
the connections were open) and prints a Markdown table of the blocks live at that instant,
grouped by the code that allocated them, in bytes and blocks per connection.

usage: breakdown.py dhat-heap.json CONNECTIONS
"""
import json
import re
import sys

# Frames that say how memory is allocated, not who owns it: skipped to reach the owner.
PLUMBING = re.compile(
    r"^(alloc::|core::|std::|<T as alloc::|<T as core::|<alloc::|<core::|<std::|dhat::|<dhat::|__rust|hashbrown::|bytes::|"
    r"<bytes::|<hashbrown::|smallvec::|<smallvec::|http::header::map::|<http::|http::|"
    r"tokio::runtime::task::|tokio::runtime::scheduler::|tokio::runtime::context|tokio::task::|"
    r"tokio::runtime::runtime::|tokio::runtime::handle|<tokio::runtime|tokio::util::)"
)
# Owners named after the library code that holds them (checked before the generic rule).
NAMED = [
    (r"hyper::proto::h1::io::Buffered", "hyper HTTP/1 read buffer"),
    (r"tokio::runtime::io::registration_set", "tokio I/O registration of the TCP stream"),
    (r"tungstenite::protocol::frame::FrameCodec::new", "WebSocket read buffer (tungstenite)"),
    (r"tungstenite::protocol::frame::FrameCodec::buffer_frame", "WebSocket write buffer (tungstenite)"),
    (r"tokio_tungstenite::compat::AllowStd", "tokio-tungstenite waker proxies"),
    (r"hyper::upgrade::Upgraded::new", "hyper upgraded stream (boxed I/O)"),
]


def frame_function(frame):
    # "0x5608...: path::to::function (file.rs:12:3)"
    text = frame.split(": ", 1)[-1]
    return text.split(" (", 1)[0], text


def owner(frames):
    spawned = any("tokio::runtime::task::raw::RawTask::new" in f for f in frames)
    for frame in frames:
        function, _ = frame_function(frame)
        for pattern, name in NAMED:
            if re.search(pattern, function):
                return name
    for frame in frames:
        function, text = frame_function(frame)
        if PLUMBING.match(function) or function.startswith("0x"):
            continue
        location = re.search(r"\(([^()]*?)(?::\d+)?\)$", text)
        where = location.group(1) if location else ""
        where = re.sub(r"^.*/(src/)", r"\1", where)
        name = re.sub(r"::\{\{closure\}\}", "", function)
        name = re.sub(r"<([^<>]*)>", "", name)
        return ("task spawned by " if spawned else "") + f"{name} ({where})"
    return "unattributed"


def main():
    path, connections = sys.argv[1], int(sys.argv[2])
    profile = json.load(open(path))
    frames = profile["ftbl"]
    rows = {}
    for point in profile["pps"]:
        if point["eb"] == 0:
            continue
        key = owner([frames[i] for i in point["fs"]])
        bytes_, blocks = rows.get(key, (0, 0))
        rows[key] = (bytes_ + point["eb"], blocks + point["ebk"])
    total_bytes = sum(b for b, _ in rows.values())
    total_blocks = sum(k for _, k in rows.values())
    # Rows with at least one block per connection are per-connection owners; the rest are
    # the server's own (maps sized for N, the runtime) and are summed into one line.
    per_conn = sorted(
        ((k, v) for k, v in rows.items() if v[1] >= connections * 0.9), key=lambda kv: -kv[1][0]
    )
    shared_bytes = total_bytes - sum(v[0] for _, v in per_conn)
    shared_blocks = total_blocks - sum(v[1] for _, v in per_conn)
    print(f"{connections} connections; heap live at the profile: {total_bytes:,} B in {total_blocks:,} blocks\n")
    print("| owner | bytes per connection | blocks per connection |")
    print("|---|---:|---:|")
    for key, (bytes_, blocks) in per_conn:
        print(f"| {key} | {bytes_ / connections:,.0f} | {blocks / connections:.2f} |")
    print(f"| everything else (the server's maps and runtime, shared) | {shared_bytes / connections:,.0f} | {shared_blocks / connections:.2f} |")
    print(f"| **heap in all** | **{total_bytes / connections:,.0f}** | **{total_blocks / connections:.2f}** |")


if __name__ == "__main__":
    main()
