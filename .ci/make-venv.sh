#!/usr/bin/env bash
# Create the virtualenv: `make-venv.sh PYTHON DIR`. Debian's python3 lacks the venv module
# (ensurepip) until python3-venv is installed; as root, install it and try again.
set -euo pipefail
python=$1
venv=$2

if "$python" -m venv "$venv"; then
  exit 0
fi
rm -rf "$venv"  # a failed attempt leaves a venv without pip behind
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "$python -m venv failed; install python3-venv (apt-get install python3-venv) and run make again" >&2
  exit 1
fi
echo "$python -m venv failed; installing python3-venv" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
"$python" -m venv "$venv"
