#!/usr/bin/env bash
# Installs the official device SDKs and runs the conformance test against a hub on 127.0.0.1:8883.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/setup.sh"
cd "$here/.."
IOT_DM_CONFORMANCE=1 cargo test --test sdk_conformance -- --nocapture
