#!/usr/bin/env bash
# Creates tests/python/.venv with the pinned Python packages the Python client tests use.
# Idempotent: an up-to-date venv is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=tests/python/.venv
requirements=tests/python/requirements.txt
# Debian's interpreter (python3-venv is installed for it by install-deps.sh).
python="${KEEL_PYTHON_BASE:-/usr/bin/python3}"
[ -x "$python" ] || python=python3

stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$stamp"; then
  echo "python-env: $venv up to date"
  exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
echo "python-env: $venv ready"
