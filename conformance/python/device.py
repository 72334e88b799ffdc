"""A device built with the official Azure IoT Python SDK; see ../README.md for the protocol."""
import json
import sys
import threading

from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse


def step(name, data=None):
    print(name if data is None else f"{name} {json.dumps(data)}", flush=True)


def fail(message):
    print(f"FAIL {message}".replace("\n", " | "), flush=True)
    sys.exit(1)


def wait(event, what):
    if not event.wait(timeout=60):
        fail(f"timed out waiting for {what}")


def refusal(connection_string, ca):
    client = IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=ca, connection_retry=False
    )
    try:
        client.connect()
    except Exception as e:  # the SDK raises CredentialError or ConnectionFailedError
        return f"{type(e).__name__}: {e}"
    finally:
        client.shutdown()
    return None


def main():
    cs, ca_path, bad_key_cs, disabled_cs = sys.argv[1:5]
    with open(ca_path) as f:
        ca = f.read()
    client = IoTHubDeviceClient.create_from_connection_string(
        cs, server_verification_cert=ca, connection_retry=False
    )
    client.connect()
    step("CONNECTED")

    twin = client.get_twin()
    step("TWIN", {"desired": twin["desired"]["$version"], "reported": twin["reported"]["$version"]})

    client.patch_twin_reported_properties({"sdk": "python", "n": 1})
    step("REPORTED")

    desired = {}
    got_desired = threading.Event()

    def on_desired(patch):
        if "fromService" in patch:
            desired.update(patch)
            got_desired.set()

    client.on_twin_desired_properties_patch_received = on_desired
    step("WAIT_DESIRED")
    wait(got_desired, "a desired patch")
    step("DESIRED", desired)

    called = threading.Event()

    def on_method(request):
        if request.name == "echo":
            payload = {"echo": request.payload, "sdk": "python"}
            client.send_method_response(MethodResponse.create_from_method_request(request, 200, payload))
            called.set()
        else:
            client.send_method_response(MethodResponse.create_from_method_request(request, 404, None))

    client.on_method_request_received = on_method
    step("WAIT_METHOD")
    wait(called, "the direct method")

    message = Message(json.dumps({"temperature": 21.5}))
    message.custom_properties["kind"] = "conformance"
    message.content_type = "application/json"
    message.content_encoding = "utf-8"
    client.send_message(message)
    step("TELEMETRY_SENT")

    c2d = {}
    got_c2d = threading.Event()

    def on_message(m):
        c2d["body"] = m.data.decode("utf-8")
        got_c2d.set()

    client.on_message_received = on_message
    step("WAIT_C2D")
    wait(got_c2d, "a cloud-to-device message")
    step("C2D", c2d["body"])

    bad_key = refusal(bad_key_cs, ca)
    if not bad_key:
        fail("a wrong key was accepted")
    step("REFUSED_BAD_KEY", bad_key)
    disabled = refusal(disabled_cs, ca)
    if not disabled:
        fail("a disabled device was accepted")
    step("REFUSED_DISABLED", disabled)

    client.shutdown()
    step("DONE")


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:
        fail(f"{type(e).__name__}: {e}")
