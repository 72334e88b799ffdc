'use strict';
// A back end managing IoT Hub automatic device configurations with the official Azure IoT
// Node.js service SDK (npm azure-iothub: Registry), while a device built with the device SDK
// (azure-iot-device-mqtt) watches its desired properties change.
// Usage: node configurations.js OWNER_CS CA_PEM_PATH
// The service SDK has no CA option: run it with NODE_EXTRA_CA_CERTS=CA_PEM_PATH.
// See ../README.md for the steps and their output.
const fs = require('fs');
const { Registry } = require('azure-iothub');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const [ownerCs, caPath] = process.argv.slice(2);
const ca = fs.readFileSync(caPath, 'utf8');
const host = /HostName=([^;]+)/.exec(ownerCs)[1];
const prefix = 'configurations-node';
const deviceId = `${prefix}-d0`;
const configId = `${prefix}-fan`;
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
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const watchdog = setTimeout(() => fail('timed out'), 120000);

async function refused(call, status) {
  try {
    await call();
  } catch (e) {
    const got = e && e.response ? e.response.statusCode : undefined;
    check(got === status, `HTTP ${status}`, got);
    return e.responseBody ? JSON.parse(e.responseBody) : {};
  }
  throw new Error(`expected HTTP ${status}, the call succeeded`);
}

/** The next desired patch the device saw (after `from`), within 10 s. */
async function nextPatch(patches, from, what) {
  for (let i = 0; i < 200; i++) {
    if (patches.length > from) return patches[from];
    await sleep(50);
  }
  throw new Error(`the device saw no desired patch: ${what}`);
}

async function waitApplied(registry, count) {
  let got;
  for (let i = 0; i < 200; i++) {
    got = (await registry.getConfiguration(configId)).responseBody;
    if (got.systemMetrics.results.appliedCount === count) return got;
    await sleep(50);
  }
  throw new Error(`appliedCount never reached ${count}; last ${JSON.stringify(got.systemMetrics)}`);
}

(async () => {
  const registry = Registry.fromConnectionString(ownerCs);

  current = 'device';
  const created = (await registry.create({ deviceId })).responseBody;
  const key = created.authentication.symmetricKey.primaryKey;
  const client = DeviceClient.fromConnectionString(`HostName=${host};DeviceId=${deviceId};SharedAccessKey=${key}`, Mqtt);
  await client.setOptions({ ca });
  await client.open();
  const twin = await client.getTwin();
  await new Promise((resolve, reject) =>
    twin.enableTwinDesiredPropertiesUpdates((e) => (e ? reject(e) : resolve())));
  const patches = [];
  twin.on('properties.desired', (delta) => {
    if (delta.$version > 1) patches.push(delta);
  });
  step('DEVICE', deviceId);

  current = 'create';
  const cfg = {
    id: configId,
    labels: { team: 'node' },
    content: { deviceContent: { 'properties.desired.fan': { speed: 3 } } },
    targetCondition: `deviceId = '${deviceId}'`,
    priority: 10,
    metrics: { queries: { applied: `SELECT deviceId FROM devices WHERE configurations.[[${configId}]].status = 'Applied'` } },
  };
  await registry.addConfiguration(cfg);
  const body = await refused(() => registry.addConfiguration(cfg), 409);
  check(body.errorCode === 409401, '409401 ConfigurationAlreadyExists', body);
  step('CREATED');

  current = 'applied';
  const applied = await nextPatch(patches, 0, "the configuration's content");
  check(JSON.stringify(applied.fan) === JSON.stringify({ speed: 3 }), 'the device got the content', applied);
  const got = await waitApplied(registry, 1);
  check(got.systemMetrics.results.targetedCount === 1, 'targetedCount', got.systemMetrics);
  check(got.metrics.results.applied === 1, 'the custom metric', got.metrics);
  check(got.schemaVersion === '1.0' && typeof got.etag === 'string' && got.etag, 'schemaVersion and etag', got);
  const serviceTwin = (await registry.getTwin(deviceId)).responseBody;
  check(serviceTwin.configurations && serviceTwin.configurations[configId].status === 'applied', "the twin's configurations", serviceTwin.configurations);
  step('APPLIED', got.systemMetrics.results);

  current = 'list';
  const listed = (await registry.getConfigurations()).responseBody;
  check(Array.isArray(listed) && listed.length === 1 && listed[0].id === configId, 'getConfigurations', listed);
  step('LISTED', listed.length);

  current = 'update';
  const update = { ...got, priority: 20, labels: { team: 'node', rev: '2' } };
  const updated = (await registry.updateConfiguration(update)).responseBody;
  check(updated.priority === 20 && updated.etag !== got.etag, 'the updated configuration', updated);
  await refused(() => registry.updateConfiguration(update), 412);
  const forced = (await registry.updateConfiguration({ ...update, priority: 30 }, true)).responseBody;
  check(forced.priority === 30, 'a forced update', forced);
  const changed = { ...forced, content: { deviceContent: { 'properties.desired.fan': { speed: 4 } } } };
  const bad = await refused(() => registry.updateConfiguration(changed, true), 400);
  check(bad.errorCode === 400403, '400403 for a content change', bad);
  step('UPDATED', { etag: forced.etag });

  current = 'delete';
  const seen = patches.length;
  await registry.removeConfiguration(configId);
  const removed = await nextPatch(patches, seen, 'the removal of the settings');
  check('fan' in removed && removed.fan === null, 'the device saw the setting removed', removed);
  await refused(() => registry.getConfiguration(configId), 404);
  step('DELETED');

  await client.close();
  await registry.delete(deviceId);
  clearTimeout(watchdog);
  step('DONE');
  process.exit(0);
})().catch((e) => fail(e && e.stack ? e.stack : e));
