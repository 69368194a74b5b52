"""/metrics of the server binary, read by the official Prometheus parser (prometheus_client).

Starts $SWITCHYARD_BIN on a free loopback port, opens a long-polling session and connects it
to the main namespace, sends an event, asks the backend API for node info (requests to the
adapter, timed in a histogram), scrapes /metrics, parses it with
prometheus_client.parser and checks each family's type and the values the traffic set.
Stops the server it started, by its PID.
"""

import os
import subprocess
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

DEADLINE_S = 30


KEY = "metrics-api-key-0123456789"


def request(url, data=None, headers=None):
    call = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(call, timeout=DEADLINE_S) as response:
        return response.status, response.headers, response.read().decode()


def main():
    binary = os.environ["SWITCHYARD_BIN"]
    server = subprocess.Popen(
        [binary, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"PATH": os.environ.get("PATH", ""), "API_KEYS": KEY, "DOCS_IN_MEMORY": "true"},
        text=True,
    )
    try:
        line = server.stdout.readline()
        assert line.startswith("Switchyard listening on http://127.0.0.1:"), line
        base = line.strip().rsplit(" ", 1)[1]
        # A long-polling session, connected to "/", and one event.
        _, _, opened = request(f"{base}/socket.io/?EIO=4&transport=polling")
        sid = opened.split('"sid":"')[1].split('"')[0]
        session = f"{base}/socket.io/?EIO=4&transport=polling&sid={sid}"
        assert request(session, b"40")[2] == "ok"
        assert request(session)[2].startswith("40")
        assert request(session, b'42["hello",1]')[2] == "ok"
        # One server_count request per namespace.
        status, _, _ = request(f"{base}/api/v1/info", headers={"Authorization": f"Bearer {KEY}"})
        assert status == 200, status

        status, headers, text = request(f"{base}/metrics")
        assert status == 200, status
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
        families = {family.name: family for family in text_string_to_metric_families(text)}

        def value(name, kind, **labels):
            family = families[name]
            assert family.type == kind, (name, family.type)
            for sample in family.samples:
                if sample.labels == labels and not sample.name.endswith("_created"):
                    return sample.value
            raise AssertionError(f"no sample {name} {labels}")

        assert value("switchyard_sessions", "gauge", transport="polling") == 1
        assert value("switchyard_sessions", "gauge", transport="websocket") == 0
        assert value("switchyard_handshakes", "counter") == 1
        assert value("switchyard_sockets", "gauge", namespace="/") == 1
        assert value("switchyard_events_received", "counter") == 1
        assert value("switchyard_packets_received", "counter") == 2
        assert value("switchyard_received_bytes", "counter") > 0
        assert value("switchyard_sent_bytes", "counter") > 0
        assert value("switchyard_acks_pending", "gauge") == 0
        assert value("switchyard_recoveries", "counter", result="hit") == 0
        for limit in ("max_connections", "handshake_rate", "shutting_down"):
            assert value("switchyard_handshake_refusals", "counter", limit=limit) == 0
        for limit in ("event_rate", "max_rooms_per_socket", "max_pending_acks"):
            assert value("switchyard_limit_refusals", "counter", limit=limit) == 0
        latency = families["switchyard_adapter_request_duration_seconds"]
        assert latency.type == "histogram", latency.type
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for sample in latency.samples
        }
        count = samples[("switchyard_adapter_request_duration_seconds_count", (("request", "server_count"),))]
        assert count >= 2, count
        every = samples[
            ("switchyard_adapter_request_duration_seconds_bucket", (("le", "+Inf"), ("request", "server_count")))
        ]
        assert every == count, (every, count)
        assert value("switchyard_adapter_request_failures", "counter", request="server_count") == 0
        print(f"ok: {len(families)} metric families parsed")
    finally:
        server.terminate()
        server.wait(timeout=DEADLINE_S)


if __name__ == "__main__":
    sys.exit(main())
