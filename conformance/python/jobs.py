"""A back end scheduling IoT Hub jobs with the official Azure IoT Python service SDK (PyPI
azure-iot-hub: IoTHubJobManager), on devices built with the device SDK that answer the method.

Usage: python jobs.py OWNER_CS CA_PEM_PATH
The service SDK trusts the CA through REQUESTS_CA_BUNDLE=CA_PEM_PATH (requests' own variable).
See ../README.md for the steps and their output.
"""
import datetime
import json
import os
import sys
import threading
import time

from azure.iot.device import IoTHubDeviceClient, MethodResponse
from azure.iot.hub import IoTHubJobManager, IoTHubRegistryManager
from azure.iot.hub.models import (
    CloudToDeviceMethod,
    JobRequest,
    QuerySpecification,
    Twin,
    TwinProperties,
)
from msrest.exceptions import HttpOperationError

PREFIX = "jobs-python"
DEVICES = [f"{PREFIX}-d0", f"{PREFIX}-d1"]
FLEET = f"deviceId IN ['{DEVICES[0]}', '{DEVICES[1]}']"
METHOD_PAYLOAD = {"delay": 1, "failOn": DEVICES[1]}
current = "start"


def step(name, data=None):
    print(name if data is None else f"{name} {json.dumps(data, default=str)}", flush=True)


def fail(message):
    print(f"FAIL {current}: {message}".replace("\n", " | "), flush=True)
    os._exit(1)  # the device SDK's threads would keep the process alive


def check(ok, what, got=None):
    if not ok:
        raise AssertionError(what if got is None else f"{what}; got {got!r}")


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def wait_ended(jobs, job_id):
    """Polls get_scheduled_job until the job is no longer queued, scheduled or running."""
    for _ in range(200):
        job = jobs.get_scheduled_job(job_id)
        if job.status not in ("queued", "scheduled", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end; last status {job.status!r}")


def check_job(job, job_id, job_type, what):
    """The members of a JobResponse the SDK deserializes, with their types."""
    check(job.job_id == job_id, f"{what}: job_id", job.job_id)
    check(job.type == job_type, f"{what}: type", job.type)
    check(job.status in ("queued", "scheduled", "running", "completed", "failed", "cancelled"), f"{what}: status", job.status)
    check(isinstance(job.created_time, datetime.datetime), f"{what}: created_time is a datetime", job.created_time)
    check(isinstance(job.start_time, datetime.datetime), f"{what}: start_time is a datetime", job.start_time)
    check(job.created_time.tzinfo is not None and job.start_time.tzinfo is not None, f"{what}: times in UTC", job)
    check(isinstance(job.max_execution_time_in_seconds, int), f"{what}: max_execution_time_in_seconds", job.max_execution_time_in_seconds)
    check(job.query_condition == FLEET or job.query_condition.startswith("tags."), f"{what}: query_condition", job.query_condition)


def statistics(job):
    s = job.device_job_statistics
    check(s is not None, "deviceJobStatistics", job)
    return {
        "deviceCount": s.device_count,
        "succeededCount": s.succeeded_count,
        "failedCount": s.failed_count,
        "runningCount": s.running_count,
        "pendingCount": s.pending_count,
    }


def device_jobs(registry, job_id):
    """The job's device records through the query language, two a page, both as the SDK's
    query_iot_hub gives them (Twin models: deviceId and status) and as raw JSON rows."""
    spec = QuerySpecification(query=f"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}'")
    twins, token, pages = [], None, 0
    while True:
        check(pages < 10, "the devices.jobs query ends", twins)
        result = registry.query_iot_hub(spec, token, 1)
        pages += 1
        check(result.type == "deviceJob", "x-ms-item-type deviceJob", result.type)
        check(len(result.items) <= 1, "a page of at most 1 row", len(result.items))
        twins.extend(result.items)
        token = result.continuation_token
        if not token:
            break
    check(pages == len(DEVICES), f"{len(DEVICES)} pages", pages)
    # query_iot_hub deserializes every row as a Twin; the rows themselves, through the SDK's
    # generated operation with raw=True
    raw = registry.protocol.query.get_twins(spec, None, None, None, True)
    rows = raw.response.json()
    check(isinstance(rows, list), "a JSON array of device-job rows", rows)
    check(sorted(t.device_id for t in twins) == sorted(r["deviceId"] for r in rows), "the same devices both ways", rows)
    for t in twins:
        check(t.status == next(r["status"] for r in rows if r["deviceId"] == t.device_id), "Twin.status is the device-job status", t)
    return twins, rows


def agree(job, twins):
    """deviceJobStatistics counts what the device records say."""
    stats = statistics(job)
    by_status = {}
    for t in twins:
        by_status[t.status] = by_status.get(t.status, 0) + 1
    check(stats["deviceCount"] == len(twins), "deviceCount is the number of device records", (stats, by_status))
    check(stats["succeededCount"] == by_status.get("completed", 0), "succeededCount", (stats, by_status))
    check(stats["failedCount"] == by_status.get("failed", 0), "failedCount", (stats, by_status))
    check(stats["runningCount"] == by_status.get("running", 0), "runningCount", (stats, by_status))
    pending = by_status.get("pending", 0) + by_status.get("scheduled", 0)
    check(stats["pendingCount"] == pending, "pendingCount", (stats, by_status))
    return stats


def main():
    global current
    owner_cs, ca_path = sys.argv[1:3]
    with open(ca_path) as f:
        ca = f.read()
    host = dict(p.split("=", 1) for p in owner_cs.split(";"))["HostName"]
    registry = IoTHubRegistryManager.from_connection_string(owner_cs)
    jobs = IoTHubJobManager.from_connection_string(owner_cs)

    current = "devices"
    clients = []
    for i, device_id in enumerate(DEVICES):
        made = registry.create_device_with_sas(device_id, None, None, "enabled")
        key = made.authentication.symmetric_key.primary_key
        client = IoTHubDeviceClient.create_from_connection_string(
            f"HostName={host};DeviceId={device_id};SharedAccessKey={key}",
            server_verification_cert=ca,
            connection_retry=False,
        )
        client.connect()

        def on_method(request, client=client, device_id=device_id, status=200 + i):
            if request.name == "reboot":
                # a device named in the payload's failOn answers 500
                refuse = isinstance(request.payload, dict) and request.payload.get("failOn") == device_id
                answer = MethodResponse.create_from_method_request(
                    request, 500 if refuse else status, {"device": device_id, "echo": request.payload}
                )
            else:
                answer = MethodResponse.create_from_method_request(request, 404, None)
            client.send_method_response(answer)

        client.on_method_request_received = on_method
        clients.append(client)
    # the device SDK subscribes to methods in the background: wait until both answer
    probe = CloudToDeviceMethod(method_name="reboot", payload="probe", response_timeout_in_seconds=5)
    for device_id in DEVICES:
        for attempt in range(40):
            try:
                registry.invoke_device_method(device_id, probe)
                break
            except HttpOperationError as e:
                if e.response.status_code != 404 or attempt == 39:
                    raise
                time.sleep(0.25)
    step("DEVICES", DEVICES)

    current = "twin job"
    twin_job_id = f"{PREFIX}-twin"
    before = utc_now()
    request = JobRequest(
        job_id=twin_job_id,
        type="scheduleUpdateTwin",
        update_twin=Twin(tags={"fleet": PREFIX}, properties=TwinProperties(desired={"fw": "2.0", "interval": 30})),
        query_condition=FLEET,
        start_time=before,
        max_execution_time_in_seconds=60,
    )
    created = jobs.create_scheduled_job(twin_job_id, request)
    check_job(created, twin_job_id, "scheduleUpdateTwin", "the created twin job")
    check(created.status in ("queued", "running", "completed"), "created twin job status", created.status)
    check(created.max_execution_time_in_seconds == 60, "max_execution_time_in_seconds", created.max_execution_time_in_seconds)
    check(created.update_twin is not None and created.update_twin.tags == {"fleet": PREFIX}, "update_twin echoed", created.update_twin)
    done = wait_ended(jobs, twin_job_id)
    check_job(done, twin_job_id, "scheduleUpdateTwin", "the ended twin job")
    check(done.status == "completed", "twin job completed", (done.status, done.failure_reason, done.status_message))
    check(isinstance(done.end_time, datetime.datetime) and done.end_time >= done.start_time, "end_time after start_time", (done.start_time, done.end_time))
    twins, rows = device_jobs(registry, twin_job_id)
    stats = agree(done, twins)
    check(stats == {"deviceCount": 2, "succeededCount": 2, "failedCount": 0, "runningCount": 0, "pendingCount": 0}, "twin job statistics", stats)
    for r in rows:
        check(r["jobId"] == twin_job_id and r["jobType"] == "scheduleUpdateTwin", "device-job jobId, jobType", r)
    for device_id, client in zip(DEVICES, clients):
        twin = registry.get_twin(device_id)
        check(twin.tags.get("fleet") == PREFIX, "the tag the job set", twin.tags)
        desired = twin.properties.desired
        check(desired.get("fw") == "2.0" and desired.get("interval") == 30, "the desired properties the job set", desired)
        # and the device, through the device SDK over MQTT
        seen = client.get_twin()["desired"]
        check(seen.get("fw") == "2.0" and seen.get("$version") == desired.get("$version"), "the device's twin", seen)
    step("TWIN_JOB", stats)

    current = "method job"
    method_job_id = f"{PREFIX}-method"
    request = JobRequest(
        job_id=method_job_id,
        type="scheduleDeviceMethod",
        # the second device answers 500
        cloud_to_device_method=CloudToDeviceMethod(method_name="reboot", payload=METHOD_PAYLOAD, response_timeout_in_seconds=10),
        # the tag the twin job set
        query_condition=f"tags.fleet = '{PREFIX}'",
        start_time=utc_now(),
        max_execution_time_in_seconds=60,
    )
    created = jobs.create_scheduled_job(method_job_id, request)
    check_job(created, method_job_id, "scheduleDeviceMethod", "the created method job")
    method = created.cloud_to_device_method
    check(method is not None and method.method_name == "reboot" and method.payload == METHOD_PAYLOAD, "cloud_to_device_method echoed", method)
    check(method.response_timeout_in_seconds == 10, "response_timeout_in_seconds echoed", method)
    done = wait_ended(jobs, method_job_id)
    # a job whose devices failed still completes; the failures are in its statistics
    check(done.status == "completed", "method job completed", (done.status, done.failure_reason, done.status_message))
    twins, rows = device_jobs(registry, method_job_id)
    stats = agree(done, twins)
    check((stats["succeededCount"], stats["failedCount"]) == (1, 1), "method job statistics", stats)
    for r in rows:
        ok = r["deviceId"] == DEVICES[0]
        check(r["jobId"] == method_job_id and r["jobType"] == "scheduleDeviceMethod", "device-job record", r)
        check(r["status"] == ("completed" if ok else "failed"), "device-job status", r)
        response = r.get("outcome", {}).get("deviceMethodResponse")
        expected = {"status": 200 if ok else 500, "payload": {"device": r["deviceId"], "echo": METHOD_PAYLOAD}}
        check(response == expected, "outcome.deviceMethodResponse: the device's status and payload", r)
        if not ok:
            check(r.get("error", {}).get("code") == "DeviceMethodFailed" and "500" in r["error"]["description"], "the failed device's error", r)
        for field in ("createdDateTimeUtc", "lastUpdatedDateTimeUtc", "startTimeUtc", "endTimeUtc"):
            check(isinstance(r.get(field), str) and r[field].endswith("Z"), f"device-job {field}", r)
    step("METHOD_JOB", {"statistics": stats, "outcomes": [r["outcome"]["deviceMethodResponse"] for r in rows]})

    current = "scheduled job"
    later_job_id = f"{PREFIX}-later"
    start = utc_now() + datetime.timedelta(hours=1)
    request = JobRequest(
        job_id=later_job_id,
        type="scheduleDeviceMethod",
        cloud_to_device_method=CloudToDeviceMethod(method_name="reboot", payload={"delay": 2}, response_timeout_in_seconds=10),
        query_condition=FLEET,
        start_time=start,
        max_execution_time_in_seconds=600,
    )
    created = jobs.create_scheduled_job(later_job_id, request)
    check_job(created, later_job_id, "scheduleDeviceMethod", "the created scheduled job")
    check(abs((created.start_time - start).total_seconds()) < 1, "start_time as requested", (created.start_time, start))
    for _ in range(100):
        job = jobs.get_scheduled_job(later_job_id)
        if job.status != "queued":
            break
        time.sleep(0.05)
    check(job.status == "scheduled", "a job in the future is scheduled", job.status)
    check(job.end_time is None, "no end_time while scheduled", job.end_time)
    listed = jobs.query_scheduled_jobs("scheduleDeviceMethod", "scheduled")
    check([j["jobId"] for j in listed.items] == [later_job_id], "the scheduled job is listed as scheduled", listed.items)
    cancelled = jobs.cancel_scheduled_job(later_job_id)
    check_job(cancelled, later_job_id, "scheduleDeviceMethod", "the cancel reply")
    check(cancelled.status == "cancelled", "the cancel reply is cancelled", cancelled.status)
    job = jobs.get_scheduled_job(later_job_id)
    check(job.status == "cancelled", "the job reads back cancelled", job.status)
    check(isinstance(job.end_time, datetime.datetime), "a cancelled job has an end_time", job.end_time)
    for device_id in DEVICES:
        desired = registry.get_twin(device_id).properties.desired
        check(desired.get("fw") == "2.0", "the cancelled job changed nothing", desired)
    step("SCHEDULED_CANCELLED", {"start": start.isoformat(), "status": job.status})

    current = "query jobs"

    def ids(result):
        check(isinstance(result.items, list), "QueryResult.items is a list", result)
        for item in result.items:
            check(isinstance(item, dict) and "jobId" in item and "status" in item, "each item a job object", item)
        return sorted(item["jobId"] for item in result.items)

    everything = jobs.query_scheduled_jobs(None, None)
    check(everything.type == "jobResponse", "QueryResult.type", everything.type)
    check(ids(everything) == sorted([twin_job_id, method_job_id, later_job_id]), "every job", ids(everything))
    check(not everything.continuation_token, "no continuation token on the only page", everything.continuation_token)
    twin_jobs = jobs.query_scheduled_jobs("scheduleUpdateTwin", None)
    check(ids(twin_jobs) == [twin_job_id], "job_type scheduleUpdateTwin", ids(twin_jobs))
    completed = jobs.query_scheduled_jobs(None, "completed")
    check(ids(completed) == sorted([twin_job_id, method_job_id]), "job_status completed", ids(completed))
    both = jobs.query_scheduled_jobs("scheduleDeviceMethod", "completed")
    check(ids(both) == [method_job_id], "job_type and job_status", ids(both))
    cancelled = jobs.query_scheduled_jobs("scheduleDeviceMethod", "cancelled")
    check(ids(cancelled) == [later_job_id], "job_status cancelled", ids(cancelled))
    # query_scheduled_jobs has no paging parameters; the generated operation under it takes
    # the paging headers as custom headers, and the body carries the token
    paged, token, pages = [], None, 0
    while True:
        check(pages < 10, "the paged job list ends", paged)
        headers = {"x-ms-max-item-count": "1"}
        if token:
            headers["x-ms-continuation"] = token
        page = jobs.protocol.jobs.query_scheduled_jobs(None, None, custom_headers=headers)
        pages += 1
        check(len(page.items) <= 1, "a page of at most 1 job", page.items)
        paged.extend(item["jobId"] for item in page.items)
        token = page.continuation_token
        if not token:
            break
    check(paged == sorted(paged) == ids(everything) and pages == 3, "3 pages of 1 job, in job id order", (paged, pages))
    item = next(i for i in everything.items if i["jobId"] == method_job_id)
    for field in ("createdTime", "startTime", "endTime"):
        check(isinstance(item.get(field), str) and item[field].endswith("Z"), f"job {field} in RFC 3339 UTC", item)
    check(item["deviceJobStatistics"]["failedCount"] == 1, "deviceJobStatistics in the list", item)
    try:
        jobs.get_scheduled_job(f"{PREFIX}-missing")
        raise AssertionError("getting an unknown job succeeded")
    except HttpOperationError as e:
        check(e.response.status_code == 404, "an unknown job is 404", e.response.status_code)
    step("JOBS_QUERIED", {"all": ids(everything), "pages": pages})

    for client in clients:
        client.shutdown()
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
