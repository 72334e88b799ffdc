#!/usr/bin/env bash
# Installs the official Azure IoT SDKs the conformance tests drive, at the versions pinned in
# node/package-lock.json and python/requirements.txt:
# npm azure-iot-device + azure-iot-device-mqtt (device) and azure-iothub (service) into
# conformance/node/node_modules, and PyPI azure-iot-device (device) and azure-iot-hub (service)
# into the virtual environment conformance/python/.venv.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
(cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error)

if ! python3 -c "import venv" 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3-venv
fi
if [ ! -x "$here/python/.venv/bin/python" ]; then
  python3 -m venv "$here/python/.venv"
fi
"$here/python/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/python/requirements.txt"
echo "conformance SDKs installed"
