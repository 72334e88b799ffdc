#!/usr/bin/env bash
# Installs the official SDKs and runs the conformance tests against a hub on 127.0.0.1
# (MQTT 8883 for the device SDKs; HTTPS 443 and MQTT 8883 for the service SDKs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/setup.sh"
cd "$here/.."
IOT_DM_CONFORMANCE=1 cargo test --test sdk_conformance --test service_sdk_conformance -- --nocapture
