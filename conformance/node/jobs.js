'use strict';
// A back end scheduling IoT Hub jobs with the official Azure IoT Node.js service SDK (npm
// azure-iothub: JobClient), on devices built with the device SDK (azure-iot-device-mqtt) that
// answer the method.
// Usage: node jobs.js OWNER_CS CA_PEM_PATH
// The service SDK has no CA option: run it with NODE_EXTRA_CA_CERTS=CA_PEM_PATH.
// See ../README.md for the steps and their output.
const fs = require('fs');
const { Registry, JobClient, Client: ServiceClient } = require('azure-iothub');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const [ownerCs, caPath] = process.argv.slice(2);
const ca = fs.readFileSync(caPath, 'utf8');
const host = /HostName=([^;]+)/.exec(ownerCs)[1];
const prefix = 'jobs-node';
const devices = [`${prefix}-d0`, `${prefix}-d1`];
const fleet = `deviceId IN ['${devices[0]}', '${devices[1]}']`;
const methodPayload = { delay: 1, failOn: devices[1] };
let current = 'start';

function step(name, data) {
  console.log(data === undefined ? name : `${name} ${JSON.stringify(data)}`);
}
function fail(message) {
  console.log(`FAIL ${current}: ${String(message).replace(/\n/g, ' | ')}`);
  process.exit(1);
}
function check(ok, what, got) {
  if (!ok) throw new Error(`${what}${got === undefined ? '' : `; got ${JSON.stringify(got)}`}`);
}
function describe(e) {
  const status = e && e.response ? e.response.statusCode : undefined;
  const body = e && e.responseBody ? ` ${e.responseBody}` : '';
  return `${e && e.constructor ? e.constructor.name : typeof e} (HTTP ${status}): ${e && e.message}${body}`;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const watchdog = setTimeout(() => fail('timed out'), 120000);
const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** The members of a job the SDK hands over, with their spellings and types. */
function checkJob(job, jobId, type, what) {
  check(job.jobId === jobId, `${what}: jobId`, job.jobId);
  check(job.type === type, `${what}: type`, job.type);
  check(['queued', 'scheduled', 'running', 'completed', 'failed', 'cancelled'].includes(job.status), `${what}: status`, job.status);
  for (const field of ['createdTime', 'startTime']) {
    check(rfc3339.test(job[field]) && !Number.isNaN(Date.parse(job[field])), `${what}: ${field} in RFC 3339 UTC`, job[field]);
  }
  check(Number.isInteger(job.maxExecutionTimeInSeconds), `${what}: maxExecutionTimeInSeconds`, job.maxExecutionTimeInSeconds);
  check(typeof job.queryCondition === 'string', `${what}: queryCondition`, job.queryCondition);
}

async function waitEnded(jobs, jobId) {
  let job;
  for (let i = 0; i < 200; i++) {
    job = (await jobs.getJob(jobId)).jobStatus;
    if (!['queued', 'scheduled', 'running'].includes(job.status)) return job;
    await sleep(50);
  }
  throw new Error(`job ${jobId} did not end; last status ${job.status}`);
}

/** The job's device records through the query language, one a page, with `nextAsTwin` and
 * with `next`, as the SDK pages (x-ms-continuation until it is absent). */
async function deviceJobs(registry, jobId) {
  const sql = `SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${jobId}'`;
  const asTwins = [];
  let query = registry.createQuery(sql, 1);
  let pages = 0;
  while (query.hasMoreResults) {
    check(pages < 10, 'the devices.jobs query ends', asTwins);
    const page = await query.nextAsTwin();
    pages += 1;
    check(page.message.headers['x-ms-item-type'] === 'deviceJob', 'x-ms-item-type deviceJob', page.message.headers['x-ms-item-type']);
    asTwins.push(...page.result);
  }
  check(pages === devices.length, `${devices.length} pages`, pages);
  const rows = [];
  query = registry.createQuery(sql, 1);
  while (query.hasMoreResults) {
    check(rows.length < 10, 'the devices.jobs query ends', rows);
    // with a promise, next() sends the token it is given, not query.continuationToken (a
    // callback-only default): pass it, as the SDK's samples do
    const page = await query.next(query.continuationToken);
    check(Array.isArray(page.result), 'a page is a JSON array', page.result);
    rows.push(...page.result);
  }
  check(JSON.stringify(asTwins.map((t) => t.deviceId).sort()) === JSON.stringify(rows.map((r) => r.deviceId).sort()), 'the same devices both ways', rows);
  // nextAsTwin merges the whole row into its Twin
  for (const t of asTwins) check(t.jobId === jobId && typeof t.status === 'string', 'the row in the Twin', t);
  return rows;
}

/** deviceJobStatistics counts what the device records say. */
function agree(job, rows) {
  const stats = job.deviceJobStatistics;
  check(stats && typeof stats === 'object', 'deviceJobStatistics', job);
  const by = {};
  for (const r of rows) by[r.status] = (by[r.status] || 0) + 1;
  check(stats.deviceCount === rows.length, 'deviceCount is the number of device records', { stats, by });
  check(stats.succeededCount === (by.completed || 0), 'succeededCount', { stats, by });
  check(stats.failedCount === (by.failed || 0), 'failedCount', { stats, by });
  check(stats.runningCount === (by.running || 0), 'runningCount', { stats, by });
  check(stats.pendingCount === (by.pending || 0) + (by.scheduled || 0), 'pendingCount', { stats, by });
  return stats;
}

(async () => {
  const registry = Registry.fromConnectionString(ownerCs);
  const jobs = JobClient.fromConnectionString(ownerCs);

  current = 'devices';
  const clients = [];
  for (const [i, deviceId] of devices.entries()) {
    const created = (await registry.create({ deviceId })).responseBody;
    const key = created.authentication.symmetricKey.primaryKey;
    const client = DeviceClient.fromConnectionString(`HostName=${host};DeviceId=${deviceId};SharedAccessKey=${key}`, Mqtt);
    await client.setOptions({ ca });
    await client.open();
    client.onDeviceMethod('reboot', (request, response) => {
      // a device named in the payload's failOn answers 500
      const refuse = request.payload && request.payload.failOn === deviceId;
      response.send(refuse ? 500 : 200 + i, { device: deviceId, echo: request.payload }, (e) => { if (e) fail(e); });
    });
    clients.push(client);
  }
  // the device SDK subscribes to methods in the background after onDeviceMethod
  const service = ServiceClient.fromConnectionString(ownerCs);
  for (const deviceId of devices) {
    for (let attempt = 0; ; attempt++) {
      try {
        await service.invokeDeviceMethod(deviceId, { methodName: 'reboot', payload: 'probe', responseTimeoutInSeconds: 5 });
        break;
      } catch (e) {
        const notYet = e.response && e.response.statusCode === 404 && attempt < 40;
        if (!notYet) throw new Error(`invoke: ${describe(e)}`);
        await sleep(250);
      }
    }
  }
  step('DEVICES', devices);

  current = 'twin job';
  const twinJobId = `${prefix}-twin`;
  // no start time and no time bound: the SDK sends "startTime": null and no maxExecutionTimeInSeconds
  const patch = { etag: '*', tags: { fleet: prefix }, properties: { desired: { fw: '2.0', interval: 30 } } };
  const created = await jobs.scheduleTwinUpdate(twinJobId, fleet, patch);
  check(created.response.statusCode === 200, 'create replies 200', created.response.statusCode);
  checkJob(created.jobStatus, twinJobId, 'scheduleUpdateTwin', 'the created twin job');
  check(created.jobStatus.maxExecutionTimeInSeconds === 3600, 'the default time bound', created.jobStatus.maxExecutionTimeInSeconds);
  check(created.jobStatus.updateTwin && created.jobStatus.updateTwin.tags.fleet === prefix, 'updateTwin echoed', created.jobStatus.updateTwin);
  let done = await waitEnded(jobs, twinJobId);
  checkJob(done, twinJobId, 'scheduleUpdateTwin', 'the ended twin job');
  check(done.status === 'completed', 'twin job completed', done);
  check(rfc3339.test(done.endTime) && Date.parse(done.endTime) >= Date.parse(done.startTime), 'endTime after startTime', done);
  let rows = await deviceJobs(registry, twinJobId);
  let stats = agree(done, rows);
  check(JSON.stringify(stats) === JSON.stringify({ deviceCount: 2, failedCount: 0, succeededCount: 2, runningCount: 0, pendingCount: 0 }), 'twin job statistics', stats);
  for (const [i, deviceId] of devices.entries()) {
    const twin = (await registry.getTwin(deviceId)).responseBody;
    check(twin.tags.fleet === prefix, 'the tag the job set', twin.tags);
    check(twin.properties.desired.fw === '2.0' && twin.properties.desired.interval === 30, 'the desired properties the job set', twin.properties.desired);
    // and the device, through the device SDK over MQTT
    const seen = (await clients[i].getTwin()).properties.desired;
    check(seen.fw === '2.0' && seen.$version === twin.properties.desired.$version, "the device's twin", seen);
  }
  step('TWIN_JOB', stats);

  current = 'method job';
  const methodJobId = `${prefix}-method`;
  // the tag the twin job set; a start time now and a time bound of 60 s; the second device
  // answers 500
  const method = await jobs.scheduleDeviceMethod(methodJobId, `tags.fleet = '${prefix}'`, { methodName: 'reboot', payload: methodPayload, responseTimeoutInSeconds: 10 }, new Date(), 60);
  checkJob(method.jobStatus, methodJobId, 'scheduleDeviceMethod', 'the created method job');
  const c2d = method.jobStatus.cloudToDeviceMethod;
  check(c2d && c2d.methodName === 'reboot' && JSON.stringify(c2d.payload) === JSON.stringify(methodPayload) && c2d.responseTimeoutInSeconds === 10, 'cloudToDeviceMethod echoed', c2d);
  done = await waitEnded(jobs, methodJobId);
  // a job whose devices failed still completes; the failures are in its statistics
  check(done.status === 'completed', 'method job completed', done);
  rows = await deviceJobs(registry, methodJobId);
  stats = agree(done, rows);
  check(stats.succeededCount === 1 && stats.failedCount === 1, 'method job statistics', stats);
  for (const r of rows) {
    const ok = r.deviceId === devices[0];
    check(r.jobId === methodJobId && r.jobType === 'scheduleDeviceMethod', 'device-job record', r);
    check(r.status === (ok ? 'completed' : 'failed'), 'device-job status', r);
    const answer = r.outcome && r.outcome.deviceMethodResponse;
    const expected = { device: r.deviceId, echo: methodPayload };
    check(answer && answer.status === (ok ? 200 : 500) && JSON.stringify(answer.payload) === JSON.stringify(expected), "outcome.deviceMethodResponse: the device's status and payload", r);
    if (!ok) check(r.error && r.error.code === 'DeviceMethodFailed' && r.error.description.includes('500'), "the failed device's error", r);
    for (const field of ['createdDateTimeUtc', 'lastUpdatedDateTimeUtc', 'startTimeUtc', 'endTimeUtc']) {
      check(rfc3339.test(r[field]), `device-job ${field}`, r);
    }
  }
  step('METHOD_JOB', { statistics: stats, outcomes: rows.map((r) => r.outcome.deviceMethodResponse) });

  current = 'scheduled job';
  const laterJobId = `${prefix}-later`;
  const start = new Date(Date.now() + 3600 * 1000);
  const later = (await jobs.scheduleDeviceMethod(laterJobId, fleet, { methodName: 'reboot', payload: { delay: 2 } }, start, 600)).jobStatus;
  checkJob(later, laterJobId, 'scheduleDeviceMethod', 'the created scheduled job');
  check(Math.abs(Date.parse(later.startTime) - start.getTime()) < 1000, 'startTime as requested', later.startTime);
  // the SDK fills in its default response timeout
  check(later.cloudToDeviceMethod.responseTimeoutInSeconds === 30, 'the default response timeout', later.cloudToDeviceMethod);
  let job;
  for (let i = 0; i < 100; i++) {
    job = (await jobs.getJob(laterJobId)).jobStatus;
    if (job.status !== 'queued') break;
    await sleep(50);
  }
  check(job.status === 'scheduled', 'a job in the future is scheduled', job.status);
  check(job.endTime === undefined || job.endTime === null, 'no endTime while scheduled', job.endTime);
  const cancelled = await jobs.cancelJob(laterJobId);
  checkJob(cancelled.jobStatus, laterJobId, 'scheduleDeviceMethod', 'the cancel reply');
  check(cancelled.jobStatus.status === 'cancelled', 'the cancel reply is cancelled', cancelled.jobStatus.status);
  job = (await jobs.getJob(laterJobId)).jobStatus;
  check(job.status === 'cancelled' && rfc3339.test(job.endTime), 'the job reads back cancelled, with an endTime', job);
  step('SCHEDULED_CANCELLED', { start: start.toISOString(), status: job.status });

  current = 'query jobs';
  /** Every job a query gives, one page at a time with `next` while `hasMoreResults`. */
  async function all(type, status, pageSize) {
    const query = jobs.createQuery(type, status, pageSize);
    const found = [];
    let pages = 0;
    while (query.hasMoreResults) {
      check(pages < 10, 'the job query ends (continuation header absent on the last page)', found);
      const page = await query.next(query.continuationToken);
      pages += 1;
      check(Array.isArray(page.result), 'a page of jobs is a JSON array', page.result);
      check(!pageSize || page.result.length <= pageSize, `a page of at most ${pageSize}`, page.result.length);
      check(page.message.headers['x-ms-item-type'] === 'jobResponse', 'x-ms-item-type jobResponse', page.message.headers['x-ms-item-type']);
      for (const j of page.result) {
        check(typeof j.jobId === 'string' && typeof j.status === 'string', 'each item a job object', j);
        found.push(j);
      }
    }
    return { ids: found.map((j) => j.jobId).sort(), pages, found };
  }
  const everything = await all(undefined, undefined, 1);
  check(JSON.stringify(everything.ids) === JSON.stringify([laterJobId, methodJobId, twinJobId].sort()), 'every job', everything.ids);
  check(everything.pages === 3, '3 pages of 1', everything.pages);
  const item = everything.found.find((j) => j.jobId === methodJobId);
  check(rfc3339.test(item.endTime) && item.deviceJobStatistics.failedCount === 1, 'a listed job as getJob shows it', item);
  check(JSON.stringify((await all('scheduleUpdateTwin')).ids) === JSON.stringify([twinJobId]), 'jobType scheduleUpdateTwin');
  check(JSON.stringify((await all(undefined, 'completed', 5)).ids) === JSON.stringify([methodJobId, twinJobId].sort()), 'jobStatus completed');
  check(JSON.stringify((await all('scheduleDeviceMethod', 'completed')).ids) === JSON.stringify([methodJobId]), 'jobType and jobStatus');
  check(JSON.stringify((await all('scheduleDeviceMethod', 'cancelled')).ids) === JSON.stringify([laterJobId]), 'jobStatus cancelled');
  let missing;
  try {
    await jobs.getJob(`${prefix}-missing`);
  } catch (e) {
    missing = e;
  }
  check(missing && missing.response && missing.response.statusCode === 404, 'an unknown job is 404', missing && describe(missing));
  step('JOBS_QUERIED', { all: everything.ids, pages: everything.pages });

  for (const client of clients) await client.close();
  clearTimeout(watchdog);
  step('DONE');
  process.exit(0);
})().catch((e) => fail(e && e.stack ? e.stack : e));
