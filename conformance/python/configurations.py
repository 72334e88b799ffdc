"""A back end managing IoT Hub automatic device configurations with the official Azure IoT
Python service SDK (PyPI azure-iot-hub: IoTHubConfigurationManager), while a device built with
the device SDK watches its desired properties change.

Usage: python configurations.py OWNER_CS CA_PEM_PATH
The service SDK trusts the CA through REQUESTS_CA_BUNDLE=CA_PEM_PATH (requests' own variable).
See ../README.md for the steps and their output.
"""
import json
import os
import queue
import sys
import threading
import time

from azure.iot.device import IoTHubDeviceClient
from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager
from azure.iot.hub.models import (
    Configuration,
    ConfigurationContent,
    ConfigurationMetrics,
    ConfigurationQueriesTestInput,
    QuerySpecification,
)
from msrest.exceptions import HttpOperationError

PREFIX = "configurations-python"
DEVICE = f"{PREFIX}-d0"
CONFIG = f"{PREFIX}-fan"
current = "start"


def step(name, data=None):
    print(name if data is None else f"{name} {json.dumps(data, default=str)}", flush=True)


def fail(message):
    print(f"FAIL {current}: {message}".replace("\n", " | "), flush=True)
    os._exit(1)  # the device SDK's threads would keep the process alive


def check(ok, what, got=None):
    if not ok:
        raise AssertionError(what if got is None else f"{what}; got {got!r}")


def refused(call, status):
    try:
        call()
    except HttpOperationError as e:
        check(e.response.status_code == status, f"HTTP {status}", e.response.status_code)
        return e.response.json()
    raise AssertionError(f"expected HTTP {status}, the call succeeded")


def next_patch(patches, what):
    try:
        return patches.get(timeout=10)
    except queue.Empty:
        raise AssertionError(f"the device saw no desired patch: {what}")


def wait_applied(configs, count):
    for _ in range(200):
        got = configs.get_configuration(CONFIG)
        if got.system_metrics.results.get("appliedCount") == count:
            return got
        time.sleep(0.05)
    raise AssertionError(f"appliedCount never reached {count}; last {got.system_metrics.results}")


def main():
    global current
    owner_cs, ca_path = sys.argv[1:3]
    with open(ca_path) as f:
        ca = f.read()
    host = dict(p.split("=", 1) for p in owner_cs.split(";"))["HostName"]
    registry = IoTHubRegistryManager.from_connection_string(owner_cs)
    configs = IoTHubConfigurationManager.from_connection_string(owner_cs)

    current = "device"
    made = registry.create_device_with_sas(DEVICE, None, None, "enabled")
    key = made.authentication.symmetric_key.primary_key
    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={host};DeviceId={DEVICE};SharedAccessKey={key}",
        server_verification_cert=ca,
        connection_retry=False,
    )
    patches = queue.Queue()
    client.on_twin_desired_properties_patch_received = patches.put
    client.connect()
    # the SDK subscribes to desired patches once a handler is set; its twin GET confirms it
    client.get_twin()
    step("DEVICE", DEVICE)

    current = "create"
    cfg = Configuration(
        id=CONFIG,
        schema_version="1.0",
        labels={"team": "python"},
        content=ConfigurationContent(device_content={"properties.desired.fan": {"speed": 3}}),
        target_condition=f"deviceId = '{DEVICE}'",
        priority=10,
        metrics=ConfigurationMetrics(queries={
            "applied": f"SELECT deviceId FROM devices WHERE configurations.[[{CONFIG}]].status = 'Applied'",
        }),
    )
    created = configs.create_configuration(cfg)
    check(created.id == CONFIG and created.priority == 10, "the created configuration", created)
    check(created.etag, "an etag", created.etag)
    check(created.created_time_utc is not None, "createdTimeUtc", created)
    body = refused(lambda: configs.create_configuration(cfg), 409)
    check(body.get("errorCode") == 409401, "409401 ConfigurationAlreadyExists", body)
    step("CREATED", {"etag": created.etag})

    current = "applied"
    patch = next_patch(patches, "the configuration's content")
    check(patch.get("fan") == {"speed": 3}, "the device got the content", patch)
    got = wait_applied(configs, 1)
    check(got.system_metrics.results.get("targetedCount") == 1, "targetedCount", got.system_metrics.results)
    check(got.metrics.results.get("applied") == 1, "the custom metric", got.metrics.results)
    # the SDK's Twin model has no configurations member: ask the query language, with the
    # capitalised status the IoT Hub docs use
    spec = QuerySpecification(query=f"SELECT * FROM devices WHERE configurations.[[{CONFIG}]].status = 'Applied'")
    found = registry.query_iot_hub(spec)
    check([t.device_id for t in found.items] == [DEVICE], "the twin's configurations status", found.items)
    step("APPLIED", got.system_metrics.results)

    current = "list"
    listed = configs.get_configurations(10)
    check([c.id for c in listed] == [CONFIG], "get_configurations", [c.id for c in listed])
    step("LISTED", len(listed))

    current = "update"
    got.priority = 20
    got.labels = {"team": "python", "rev": "2"}
    updated = configs.update_configuration(got, got.etag)
    check(updated.priority == 20 and updated.etag != got.etag, "the updated configuration", updated)
    refused(lambda: configs.update_configuration(got, got.etag), 412)
    got.content = ConfigurationContent(device_content={"properties.desired.fan": {"speed": 4}})
    body = refused(lambda: configs.update_configuration(got, "*"), 400)
    check(body.get("errorCode") == 400403, "400403 for a content change", body)
    step("UPDATED", {"etag": updated.etag})

    current = "test queries"
    result = configs.test_configuration_queries(ConfigurationQueriesTestInput(
        target_condition="tags.x = ",
        custom_metric_queries={"good": "SELECT deviceId FROM devices", "bad": "SELECT COUNT() FROM devices"},
    ))
    check(result.target_condition_error, "the target condition error", result)
    check(result.custom_metric_query_errors["good"] == "", "a valid metric query", result.custom_metric_query_errors)
    check(result.custom_metric_query_errors["bad"], "an invalid metric query", result.custom_metric_query_errors)
    step("TESTED")

    current = "delete"
    configs.delete_configuration(CONFIG)
    patch = next_patch(patches, "the removal of the settings")
    check("fan" in patch and patch["fan"] is None, "the device saw the setting removed", patch)
    refused(lambda: configs.get_configuration(CONFIG), 404)
    step("DELETED")

    client.shutdown()
    registry.delete_device(DEVICE)
    step("DONE")


if __name__ == "__main__":
    watchdog = threading.Timer(120, lambda: fail("timed out"))
    watchdog.daemon = True
    watchdog.start()
    try:
        main()
    except Exception as e:
        fail(f"{type(e).__name__}: {e}")
    sys.stdout.flush()
    os._exit(0)
