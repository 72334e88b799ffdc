"""A back end built with the official Azure IoT Python service SDK (PyPI azure-iot-hub), talking
to the hub's REST API; a device built with the device SDK answers its direct method.

Usage: python service.py OWNER_CS READ_ONLY_CS CA_PEM_PATH
The service SDK trusts the CA through REQUESTS_CA_BUNDLE=CA_PEM_PATH (requests' own variable).
See ../README.md for the steps and their output.
"""
import base64
import json
import os
import sys
import threading
import time

from azure.iot.device import IoTHubDeviceClient, MethodResponse
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, QuerySpecification, Twin, TwinProperties
from msrest.exceptions import HttpOperationError

PREFIX = "svc-python"
current = "start"


def step(name, data=None):
    print(name if data is None else f"{name} {json.dumps(data)}", flush=True)


def fail(message):
    print(f"FAIL {current}: {message}".replace("\n", " | "), flush=True)
    os._exit(1)  # the device SDK's threads would keep the process alive


def check(ok, what, got=None):
    if not ok:
        raise AssertionError(what if got is None else f"{what}; got {got!r}")


def new_key():
    return base64.b64encode(os.urandom(32)).decode()


def refused(op, status, what):
    """Runs op, which must fail with HTTP status; returns the exception."""
    try:
        result = op()
    except HttpOperationError as e:
        got = e.response.status_code
        check(got == status, f"{what}: expected HTTP {status}", f"{got} {e.message}")
        return e
    raise AssertionError(f"{what}: expected HTTP {status}, the call succeeded ({result!r})")


def main():
    global current
    owner_cs, read_only_cs, ca_path = sys.argv[1:4]
    with open(ca_path) as f:
        ca = f.read()
    host = dict(p.split("=", 1) for p in owner_cs.split(";"))["HostName"]
    registry = IoTHubRegistryManager.from_connection_string(owner_cs)

    current = "create"
    device_id = f"{PREFIX}-dev"
    primary, secondary = new_key(), new_key()
    created = registry.create_device_with_sas(device_id, primary, secondary, "enabled")
    check(created.device_id == device_id, "created device_id", created.device_id)
    check(created.status == "enabled", "created status", created.status)
    keys = created.authentication.symmetric_key
    check((keys.primary_key, keys.secondary_key) == (primary, secondary), "the keys given", keys)
    check(bool(created.etag), "created etag", created.etag)
    fetched = registry.get_device(device_id)
    check((fetched.device_id, fetched.etag) == (device_id, created.etag), "get after create", fetched)
    refused(lambda: registry.create_device_with_sas(device_id, primary, secondary, "enabled"), 409, "a second create")
    step("CREATED", {"deviceId": device_id})

    current = "get twin"
    twin = registry.get_twin(device_id)
    check(twin.device_id == device_id, "twin device_id", twin.device_id)
    check(bool(twin.etag) and twin.etag != "*", "twin etag", twin.etag)
    before = twin.properties.desired.get("$version")
    check(isinstance(before, int), "desired $version", twin.properties.desired)
    check(isinstance(twin.version, int), "twin version", twin.version)
    step("TWIN", {"etag": twin.etag, "desired": before, "version": twin.version})

    current = "update twin"
    patch = Twin(tags={"sdk": "python"}, properties=TwinProperties(desired={"color": "red", "n": 1}))
    updated = registry.update_twin(device_id, patch, twin.etag)
    desired = updated.properties.desired
    check(desired.get("color") == "red" and desired.get("n") == 1, "desired after the patch", desired)
    check(desired.get("$version") == before + 1, f"desired $version {before + 1}", desired.get("$version"))
    check(updated.tags == {"sdk": "python"}, "tags after the patch", updated.tags)
    check(updated.version > twin.version, "a higher twin version", updated.version)
    check(bool(updated.etag) and updated.etag != twin.etag, "a new etag", updated.etag)
    reread = registry.get_twin(device_id)
    check(reread.properties.desired.get("color") == "red" and reread.etag == updated.etag, "twin re-read", reread)
    stale = Twin(properties=TwinProperties(desired={"color": "blue"}))
    refused(lambda: registry.update_twin(device_id, stale, twin.etag), 412, "a patch with a stale etag")
    step("TWIN_UPDATED", {"desired": desired.get("$version"), "etag": updated.etag})

    current = "query"
    ids = [device_id]
    for i in range(5):
        ids.append(f"{PREFIX}-q{i}")
        # without keys the SDK sends "symmetricKey": {} and the hub generates them
        made = registry.create_device_with_sas(ids[-1], None, None, "enabled")
        generated = made.authentication.symmetric_key
        check(bool(generated.primary_key) and bool(generated.secondary_key), "generated keys", generated)
    spec = QuerySpecification(query="SELECT * FROM devices")
    seen, pages, token = [], 0, None
    while True:
        check(pages < 10, "the query ends", seen)
        result = registry.query_iot_hub(spec, token, 2)
        pages += 1
        check(result.type == "twin", "x-ms-item-type twin", result.type)
        check(len(result.items) <= 2, "a page of at most 2 twins", len(result.items))
        seen.extend(t.device_id for t in result.items)
        token = result.continuation_token
        if not token:
            break
    check(pages == 3, "3 pages for 6 devices", pages)
    check(len(set(seen)) == len(seen), "every twin once", seen)
    check(sorted(seen) == sorted(ids), "all the devices", seen)
    step("QUERIED", {"pages": pages, "devices": len(seen)})

    current = "method"
    request = CloudToDeviceMethod(method_name="echo", payload={"n": 7}, response_timeout_in_seconds=10)
    offline = refused(lambda: registry.invoke_device_method(device_id, request), 404, "a method on an offline device")
    check(offline.response.json().get("errorCode") == 404103, "errorCode 404103 DeviceNotOnline", offline.response.text)
    device = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={host};DeviceId={device_id};SharedAccessKey={primary}",
        server_verification_cert=ca,
        connection_retry=False,
    )
    device.connect()

    def on_method(request):
        status, payload = (200, {"echo": request.payload, "sdk": "python"}) if request.name == "echo" else (404, None)
        device.send_method_response(MethodResponse.create_from_method_request(request, status, payload))

    device.on_method_request_received = on_method
    for attempt in range(40):
        try:
            answer = registry.invoke_device_method(device_id, request)
            break
        except HttpOperationError as e:
            # in case the method subscription is still on its way
            if e.response.status_code != 404 or attempt == 39:
                raise
            time.sleep(0.25)
    check(answer.status == 200, "method status 200", answer.status)
    check(answer.payload == {"echo": {"n": 7}, "sdk": "python"}, "the echoed payload", answer.payload)
    # without a payload the SDK sends "payload": ""
    bare = registry.invoke_device_method(device_id, CloudToDeviceMethod(method_name="echo"))
    check((bare.status, bare.payload) == (200, {"echo": "", "sdk": "python"}), "a method without payload", bare)
    device.shutdown()
    step("METHOD", {"status": answer.status, "payload": answer.payload})

    current = "delete"
    registry.delete_device(device_id)
    refused(lambda: registry.get_device(device_id), 404, "get after delete")
    refused(lambda: registry.get_twin(device_id), 404, "twin after delete")
    step("DELETED", {"deviceId": device_id})

    current = "read-only policy"
    read_only = IoTHubRegistryManager.from_connection_string(read_only_cs)
    readable = read_only.get_twin(f"{PREFIX}-q0")
    check(readable.device_id == f"{PREFIX}-q0", "a read with the read-only policy", readable.device_id)
    denied = refused(
        lambda: read_only.create_device_with_sas(f"{PREFIX}-denied", new_key(), new_key(), "enabled"),
        403,
        "a create with the read-only policy",
    )
    refused(lambda: read_only.delete_device(f"{PREFIX}-q0"), 403, "a delete with the read-only policy")
    refused(lambda: registry.get_device(f"{PREFIX}-denied"), 404, "the refused create left no device")
    bad_key = ";".join(p if not p.startswith("SharedAccessKey=") else f"SharedAccessKey={new_key()}" for p in read_only_cs.split(";"))
    refused(lambda: IoTHubRegistryManager.from_connection_string(bad_key).get_twin(f"{PREFIX}-q0"), 401, "a wrong key")
    step("READ_ONLY_REFUSED", denied.message)

    step("DONE")


if __name__ == "__main__":
    watchdog = threading.Timer(120, lambda: fail("timed out"))
    watchdog.daemon = True
    watchdog.start()
    try:
        main()
    except Exception as e:
        fail(f"{type(e).__name__}: {e}")
    # uamqp and the device SDK may leave threads behind
    sys.stdout.flush()
    os._exit(0)
