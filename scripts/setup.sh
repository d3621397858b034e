#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine with Python 3.11: the Debian libraries the
# bpy module needs, a venv in .venv, torch 2.13.0 (CPU) first, then everything else under
# constraints.txt so nothing drags in numpy 2 or a CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."

need=(libxrender1 libxxf86vm1 libxfixes3 libxi6 libxkbcommon0 libsm6 libgl1 libegl1)
missing=()
for pkg in "${need[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "[setup] installing Debian packages for bpy: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

py="${PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      py="$cand"; break
    fi
  done
fi
[ -n "$py" ] || { echo "[setup] error: Python 3.11 is required (bpy 5.0.1 is built for it); set PYTHON=" >&2; exit 1; }

[ -x .venv/bin/python ] || "$py" -m venv .venv
stamp=.venv/.gen4d-installed
want=$(cat constraints.txt requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing Python packages into .venv (about 2 minutes)" >&2
  torch_src=()
  if ls /opt/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then
    torch_src=(--find-links /opt/wheels)
  else
    torch_src=(--index-url https://download.pytorch.org/whl/cpu)
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check "${torch_src[@]}" torch==2.13.0 -c constraints.txt 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import torch, bpy, numpy, zmq, gsplat; assert numpy.__version__ == '1.26.4', numpy.__version__" \
    || { echo "[setup] error: package install failed" >&2; exit 1; }
  echo "$want" > "$stamp"
fi

# Blender 4.5 LTS and 4.2 LTS: the add-on's bpy checks run on bpy 4.5.15 and 4.2.23 too
# (tests/addon/_run.py), each in a lean venv without torch.
for v in 45 42; do
  venv=.venv-bpy$v
  [ -x $venv/bin/python ] || "$py" -m venv $venv
  stamp_v=$venv/.gen4d-installed
  want_v=$(cat constraints.txt requirements-bpy$v.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp_v" 2>/dev/null)" != "$want_v" ]; then
    echo "[setup] installing requirements-bpy$v.txt into $venv (under a minute)" >&2
    $venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-bpy$v.txt -c constraints.txt 2>&1 \
      | grep -v "^WARNING: Location" || true
    $venv/bin/python -c "import bpy, numpy, zmq, plyfile; assert bpy.app.version[:2] == (${v:0:1}, ${v:1:1}), bpy.app.version" \
      || { echo "[setup] error: bpy install into $venv failed" >&2; exit 1; }
    echo "$want_v" > "$stamp_v"
  fi
done
