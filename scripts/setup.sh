#!/usr/bin/env bash
# Create .venv and install the project into it. Safe to run again: it does the
# work only when pyproject.toml changed since the last successful run.
#
# EXTRAS picks the optional parts: `train` (torch, for python -m embedder train),
# `dev` (tests), `bench`
# (benchmark peers). Without `train` the install serves
# bundles (search, web) and has no torch. With it, torch is installed first,
# pinned to the CPU build 2.13.0: a bare `torch` requirement on a machine without
# torch would pull several GB of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-train,dev}
stamp="$VENV/.installed-$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-$EXTRAS"

if [ -f "$stamp" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
case ",$EXTRAS," in
  *,train,*) "$VENV/bin/python" -m pip install --quiet "torch==2.13.0" ;;
esac
"$VENV/bin/python" -m pip install --quiet -e ".[$EXTRAS]"
rm -f "$VENV"/.installed-*
touch "$stamp"
echo "setup: $VENV ready with extras $EXTRAS"
