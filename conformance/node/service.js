'use strict';
// A back end built with the official Azure IoT Node.js service SDK (npm azure-iothub), talking
// to the hub's REST API; a device built with the device SDK answers its direct method.
// Usage: node service.js OWNER_CS READ_ONLY_CS CA_PEM_PATH
// The service SDK has no CA option: run it with NODE_EXTRA_CA_CERTS=CA_PEM_PATH.
// See ../README.md for the steps and their output.
const fs = require('fs');
const { Registry, Client: ServiceClient } = require('azure-iothub');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const [ownerCs, readOnlyCs, caPath] = process.argv.slice(2);
const ca = fs.readFileSync(caPath, 'utf8');
const host = /HostName=([^;]+)/.exec(ownerCs)[1];
const prefix = 'svc-node';
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
/** Runs `op`, which must fail with HTTP `status`; returns the error. */
async function refused(op, status, what) {
  let result;
  try {
    result = await op();
  } catch (e) {
    check(e.response && e.response.statusCode === status, `${what}: expected HTTP ${status}`, describe(e));
    return e;
  }
  throw new Error(`${what}: expected HTTP ${status}, the call succeeded (${JSON.stringify(result.responseBody || result.result)})`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const watchdog = setTimeout(() => fail('timed out'), 120000);

(async () => {
  const registry = Registry.fromConnectionString(ownerCs);

  current = 'create';
  const deviceId = `${prefix}-dev`;
  // no authentication given: the SDK sends empty keys and the hub must generate them
  const created = (await registry.create({ deviceId })).responseBody;
  check(created.deviceId === deviceId, 'created deviceId', created.deviceId);
  check(created.status === 'enabled', 'created status', created.status);
  const key = created.authentication.symmetricKey.primaryKey;
  check(typeof key === 'string' && key.length >= 16, 'a generated primary key', key);
  check(created.authentication.symmetricKey.secondaryKey !== key, 'distinct generated keys');
  check(!!created.etag, 'created etag', created.etag);
  const fetched = (await registry.get(deviceId)).responseBody;
  check(fetched.deviceId === deviceId && fetched.etag === created.etag, 'get after create', fetched);
  const dup = await refused(() => registry.create({ deviceId }), 409, 'a second create');
  check(dup.constructor.name === 'DeviceAlreadyExistsError', 'a duplicate create error class', dup.constructor.name);
  step('CREATED', { deviceId });

  current = 'get twin';
  const twin = (await registry.getTwin(deviceId)).responseBody;
  check(twin.deviceId === deviceId, 'twin deviceId', twin.deviceId);
  check(!!twin.etag && twin.etag !== '*', 'twin etag', twin.etag);
  const before = twin.properties.desired.$version;
  check(Number.isInteger(before), 'desired $version', twin.properties.desired);
  step('TWIN', { etag: twin.etag, desired: before });

  current = 'update twin';
  const oldEtag = twin.etag;
  const updated = (await twin.update({ tags: { sdk: 'node' }, properties: { desired: { color: 'red', n: 1 } } })).result;
  check(updated.properties.desired.color === 'red', 'desired.color after the patch', updated.properties.desired);
  check(updated.properties.desired.n === 1, 'desired.n after the patch', updated.properties.desired);
  check(updated.properties.desired.$version === before + 1, `desired $version ${before + 1}`, updated.properties.desired.$version);
  check(updated.tags.sdk === 'node', 'tags after the patch', updated.tags);
  check(updated.etag && updated.etag !== oldEtag, 'a new etag', updated.etag);
  const reread = (await registry.getTwin(deviceId)).responseBody;
  check(reread.properties.desired.color === 'red' && reread.etag === updated.etag, 'twin re-read', reread);
  const stale = await refused(() => registry.updateTwin(deviceId, { properties: { desired: { color: 'blue' } } }, oldEtag), 412, 'a patch with a stale etag');
  check(stale.constructor.name === 'InvalidEtagError', 'stale etag error class', stale.constructor.name);
  step('TWIN_UPDATED', { desired: updated.properties.desired.$version, etag: updated.etag });

  current = 'query';
  const ids = [deviceId];
  for (let i = 0; i < 5; i++) {
    const id = `${prefix}-q${i}`;
    await registry.create({ deviceId: id });
    ids.push(id);
  }
  const query = registry.createQuery('SELECT * FROM devices', 2);
  const seen = [];
  let pages = 0;
  while (query.hasMoreResults) {
    check(pages < 10, 'the query ends (continuation header absent on the last page)', seen);
    const page = await query.nextAsTwin();
    pages += 1;
    check(Array.isArray(page.result) && page.result.length <= 2, 'a page of at most 2 twins', page.result && page.result.length);
    check(page.message.headers['x-ms-item-type'] === 'twin', 'x-ms-item-type twin', page.message.headers['x-ms-item-type']);
    for (const t of page.result) seen.push(t.deviceId);
  }
  check(pages === 3, '3 pages for 6 devices', pages);
  check(new Set(seen).size === seen.length, 'every twin once', seen);
  check(JSON.stringify([...seen].sort()) === JSON.stringify([...ids].sort()), 'all the devices', seen);
  step('QUERIED', { pages, devices: seen.length });

  current = 'method';
  const service = ServiceClient.fromConnectionString(ownerCs);
  const params = { methodName: 'echo', payload: { n: 7 }, responseTimeoutInSeconds: 10 };
  const offline = await refused(() => service.invokeDeviceMethod(deviceId, params), 404, 'a method on an offline device');
  check(JSON.parse(offline.responseBody).errorCode === 404103, 'errorCode 404103 DeviceNotOnline', offline.responseBody);
  const device = DeviceClient.fromConnectionString(`HostName=${host};DeviceId=${deviceId};SharedAccessKey=${key}`, Mqtt);
  await device.setOptions({ ca });
  await device.open();
  device.onDeviceMethod('echo', (request, response) => {
    response.send(200, { echo: request.payload, sdk: 'node' }, (e) => { if (e) fail(e); });
  });
  let answer;
  for (let attempt = 0; ; attempt++) {
    try {
      answer = (await service.invokeDeviceMethod(deviceId, params)).result;
      break;
    } catch (e) {
      // the device SDK subscribes to methods in the background after onDeviceMethod
      const notYet = e.response && e.response.statusCode === 404 && attempt < 40;
      if (!notYet) throw new Error(`invoke: ${describe(e)}`);
      await sleep(250);
    }
  }
  check(answer.status === 200, 'method status 200', answer);
  check(JSON.stringify(answer.payload) === JSON.stringify({ echo: { n: 7 }, sdk: 'node' }), 'the echoed payload', answer.payload);
  // the SDK's defaults: "payload": null, "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 0
  const bare = (await service.invokeDeviceMethod(deviceId, { methodName: 'echo' })).result;
  check(bare.status === 200 && JSON.stringify(bare.payload) === JSON.stringify({ echo: null, sdk: 'node' }), 'a method without payload', bare);
  await device.close();
  step('METHOD', answer);

  current = 'delete';
  await registry.delete(deviceId);
  const gone = await refused(() => registry.get(deviceId), 404, 'get after delete');
  check(gone.constructor.name === 'DeviceNotFoundError', 'DeviceNotFoundError after delete', describe(gone));
  await refused(() => registry.getTwin(deviceId), 404, 'twin after delete');
  step('DELETED', { deviceId });

  current = 'read-only policy';
  const readOnly = Registry.fromConnectionString(readOnlyCs);
  const readable = (await readOnly.getTwin(`${prefix}-q0`)).responseBody;
  check(readable.deviceId === `${prefix}-q0`, 'a read with the read-only policy', readable.deviceId);
  const denied = await refused(() => readOnly.create({ deviceId: `${prefix}-denied` }), 403, 'a create with the read-only policy');
  // the SDK shows the text of Message between its first and second ';': all of it, names the policy
  check(denied.message.includes('registryRead'), 'the whole error message', describe(denied));
  await refused(() => readOnly.delete(`${prefix}-q0`), 403, 'a delete with the read-only policy');
  await refused(() => registry.get(`${prefix}-denied`), 404, 'the refused create left no device');
  const badKey = readOnlyCs.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`);
  const unauthorized = await refused(() => Registry.fromConnectionString(badKey).getTwin(`${prefix}-q0`), 401, 'a wrong key');
  check(unauthorized.constructor.name === 'UnauthorizedError', 'UnauthorizedError for a wrong key', describe(unauthorized));
  step('READ_ONLY_REFUSED', describe(denied));

  clearTimeout(watchdog);
  step('DONE');
  process.exit(0);
})().catch((e) => fail(e && e.stack ? e.stack : e));
