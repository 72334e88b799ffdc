#!/usr/bin/env python3
"""Writes the seed inputs of each fuzz target into corpus/<target>/seed-*.

Run once from this directory; the fuzzer grows the corpus from these, and `cargo test` replays
every file in it (tests/fuzz_corpus.rs at the root).
"""
import json
import os

DEVICE = "fuzz-device"
HOST = "fuzz.example"


def rl(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def s(t):
    b = t.encode() if isinstance(t, str) else t
    return len(b).to_bytes(2, "big") + b


def packet(kind, flags, body):
    return bytes([kind << 4 | flags]) + rl(len(body)) + body


def publish(topic, payload, qos=1, pid=1):
    body = s(topic) + (pid.to_bytes(2, "big") if qos else b"") + payload
    return packet(3, qos << 1, body)


def subscribe(filters, pid=1):
    body = pid.to_bytes(2, "big") + b"".join(s(f) + bytes([1]) for f in filters)
    return packet(8, 2, body)


def unsubscribe(filters, pid=2):
    return packet(10, 2, pid.to_bytes(2, "big") + b"".join(s(f) for f in filters))


def connect(client, user=None, password=None, level=4, keep_alive=60, will=None):
    flags = 0x02
    payload = s(client)
    if will:
        flags |= 0x04 | 0x08
        payload += s(will[0]) + s(will[1])
    if user is not None:
        flags |= 0x80
        payload += s(user)
    if password is not None:
        flags |= 0x40
        payload += s(password)
    body = s("MQTT") + bytes([level, flags]) + keep_alive.to_bytes(2, "big") + payload
    return packet(1, 0, body)


PINGREQ = bytes([0xC0, 0])
DISCONNECT = bytes([0xE0, 0])


def write(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def mqtt():
    events = f"devices/{DEVICE}/messages/events/"
    session = {
        "telemetry": publish(events + "%24.ct=application%2Fjson&k=v", b'{"t":21.5}'),
        "telemetry-qos0": publish(events, b"x", qos=0),
        "twin-get": subscribe(["$iothub/twin/res/#"]) + publish("$iothub/twin/GET/?$rid=1", b""),
        "twin-patch": subscribe(["$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#"])
        + publish("$iothub/twin/PATCH/properties/reported/?$rid=2", b'{"fw":{"version":"1.2"},"n":null}'),
        "methods": subscribe(["$iothub/methods/POST/#"]) + publish("$iothub/methods/res/200/?$rid=3", b'{"ok":true}'),
        "c2d": subscribe([f"devices/{DEVICE}/messages/devicebound/#"]) + packet(4, 0, (7).to_bytes(2, "big")),
        "unsubscribe": subscribe(["$iothub/twin/res/#"]) + unsubscribe(["$iothub/twin/res/#"]),
        "ping-disconnect": PINGREQ + DISCONNECT,
        "other-device": publish("devices/another/messages/events/", b"x"),
        "wildcard": publish("devices/fuzz-device/messages/events/#", b"x"),
        "second-connect": connect(DEVICE),
        "qos2": publish(events, b"x", qos=2),
    }
    for name, data in session.items():
        write("mqtt_session", name, data)
    user = f"{HOST}/{DEVICE}/?api-version=2021-04-12"
    conns = {
        "wrong-token": connect(DEVICE, user, "SharedAccessSignature sr=fuzz.example%2Fdevices%2Ffuzz-device&sig=AAAA&se=4102444800"),
        "no-password": connect(DEVICE, user),
        "module": connect(f"{DEVICE}/m1", f"{HOST}/{DEVICE}/m1/?api-version=2021-04-12", "x"),
        "mqtt31": connect(DEVICE, user, "x", level=3),
        "will": connect(DEVICE, user, "x", will=(f"devices/{DEVICE}/messages/events/", "gone")),
        "not-connect": PINGREQ,
    }
    for name, data in conns.items():
        write("mqtt_connect", name, data + PINGREQ)


def rest():
    def req(method, path, body=None, headers=""):
        b = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nhost: {HOST}\r\nauthorization: {{{{token}}}}\r\n"
                f"content-type: application/json\r\n{headers}content-length: {len(b)}\r\n"
                "connection: close\r\n\r\n")
        return head.encode() + b
    v = "?api-version=2021-04-12"
    reqs = {
        "get-device": req("GET", f"/devices/{DEVICE}{v}"),
        "put-device": req("PUT", f"/devices/d2{v}", {"deviceId": "d2"}),
        "patch-twin": req("PATCH", f"/twins/{DEVICE}{v}", {"tags": {"a": 1}}, "if-match: *\r\n"),
        "query": req("POST", f"/devices/query{v}", {"query": "SELECT * FROM devices WHERE tags.a = 1"}),
        "job": req("PUT", f"/jobs/v2/j1{v}", {"jobId": "j1", "type": "scheduleUpdateTwin", "queryCondition": "*",
                                               "updateTwin": {"tags": {"b": 2}, "etag": "*"}}),
        "no-auth": f"GET /devices{v} HTTP/1.1\r\nhost: {HOST}\r\n\r\n".encode(),
        "chunked": (f"POST /devices/query{v} HTTP/1.1\r\nhost: {HOST}\r\nauthorization: {{{{token}}}}\r\n"
                    "transfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n").encode(),
    }
    for name, data in reqs.items():
        write("rest_request", name, data)
    bodies = {
        "device": (b'{"deviceId":"fuzz-2","status":"enabled","authentication":{"type":"sas"}}'),
        "twin": b'{"tags":{"site":"north"},"properties":{"desired":{"x":1}}}',
        "query": b'{"query":"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = \'job-1\'"}',
        "method": b'{"methodName":"reboot","payload":{},"responseTimeoutInSeconds":1,"connectTimeoutInSeconds":0}',
        "job": (b'{"jobId":"job-1","type":"scheduleDeviceMethod","queryCondition":"*","cloudToDeviceMethod":'
                b'{"methodName":"reboot","responseTimeoutInSeconds":1},"startTime":"2030-01-01T00:00:00Z"}'),
        "import": b'[{"id":"x1","importMode":"create"}]',
    }
    # every route once, with each kind of body
    for name, body in bodies.items():
        for route in range(0, 64, 7):
            write("rest_bodies", f"{name}-{route}", bytes([route, 0]) + body)


def docs():
    patch = {"a": {"b": [1, "x", None, 2.5]}, "c": None, "$version": 3, "big": 9007199254740993}
    write("twin_docs", "patch", bytes([0]) + json.dumps(patch).encode())
    twin = {"deviceId": "d1", "etag": "AAAAAAAAAAE=", "version": 2, "status": "enabled",
            "tags": {"t": 1}, "properties": {"desired": {"x": 1, "$version": 2},
                                            "reported": {"y": {"z": True}, "$version": 4}}}
    write("twin_docs", "twin", bytes([1]) + json.dumps(twin).encode())
    write("twin_docs", "doc-bytes", bytes([2]) + bytes(range(64)))
    write("twin_docs", "twin-bytes", bytes([3]) + bytes(range(128)))


def query():
    qs = [
        "SELECT * FROM devices WHERE tags.site = 'north' AND properties.reported.battery.level > 30",
        "SELECT properties.reported.fw.version AS v, COUNT() AS n FROM devices GROUP BY properties.reported.fw.version",
        "SELECT TOP 3 deviceId, tags.floor FROM devices WHERE tags.floor IN [1, 2, 3] OR NOT IS_DEFINED(tags.ok)",
        "SELECT * FROM devices.modules WHERE moduleId = 'm1'",
        "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'd1') AND tags.nested.deep.er >= 1.5",
        "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1' AND devices.jobs.status = 'failed'",
        "SELECT * FROM devices WHERE properties.reported.inUse = false AND tags.list[0] != 3",
    ]
    for i, q in enumerate(qs):
        write("query", str(i), q.encode())


mqtt()
rest()
docs()
query()
