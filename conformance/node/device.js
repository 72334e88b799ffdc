'use strict';
// A device built with the official Azure IoT Node.js SDK; see ../README.md for the protocol.
const fs = require('fs');
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const [cs, caPath, badKeyCs, disabledCs] = process.argv.slice(2);
const ca = fs.readFileSync(caPath, 'utf8');

function step(name, data) {
  console.log(data === undefined ? name : `${name} ${JSON.stringify(data)}`);
}
function fail(message) {
  console.log(`FAIL ${String(message).replace(/\n/g, ' | ')}`);
  process.exit(1);
}
const watchdog = setTimeout(() => fail('timed out'), 150000);

async function refusal(connectionString) {
  const client = Client.fromConnectionString(connectionString, Mqtt);
  await client.setOptions({ ca });
  try {
    await client.open();
  } catch (e) {
    return `${e.constructor.name}: ${e.message}`;
  }
  await client.close();
  return null;
}

(async () => {
  const client = Client.fromConnectionString(cs, Mqtt);
  await client.setOptions({ ca });
  await client.open();
  step('CONNECTED');

  const twin = await client.getTwin();
  step('TWIN', {
    desired: twin.properties.desired.$version,
    reported: twin.properties.reported.$version,
  });

  await new Promise((resolve, reject) =>
    twin.properties.reported.update({ sdk: 'node', n: 1 }, (e) => (e ? reject(e) : resolve())));
  step('REPORTED');

  // subscribe first and wait for it: IoT Hub only notifies subscribed devices
  await new Promise((resolve, reject) =>
    twin.enableTwinDesiredPropertiesUpdates((e) => (e ? reject(e) : resolve())));
  const desired = new Promise((resolve) =>
    twin.on('properties.desired', (delta) => {
      if (delta.fromService !== undefined) resolve(delta);
    }));
  step('WAIT_DESIRED');
  step('DESIRED', await desired);

  const called = new Promise((resolve) =>
    client.onDeviceMethod('echo', (request, response) => {
      response.send(200, { echo: request.payload, sdk: 'node' }, (e) => (e ? fail(e) : resolve()));
    }));
  step('WAIT_METHOD');
  await called;

  const message = new Message(JSON.stringify({ temperature: 21.5 }));
  message.properties.add('kind', 'conformance');
  message.contentType = 'application/json';
  message.contentEncoding = 'utf-8';
  await client.sendEvent(message);
  step('TELEMETRY_SENT');

  const received = new Promise((resolve) =>
    client.on('message', (m) => {
      client.complete(m, (e) => (e ? fail(e) : resolve(m.data.toString())));
    }));
  step('WAIT_C2D');
  step('C2D', await received);

  const badKey = await refusal(badKeyCs);
  if (!badKey) fail('a wrong key was accepted');
  step('REFUSED_BAD_KEY', badKey);
  const disabled = await refusal(disabledCs);
  if (!disabled) fail('a disabled device was accepted');
  step('REFUSED_DISABLED', disabled);

  await client.close();
  clearTimeout(watchdog);
  step('DONE');
  process.exit(0);
})().catch((e) => fail(e && e.stack ? e.stack : e));
