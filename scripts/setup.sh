#!/usr/bin/env bash
# Set up streammood on a fresh Debian machine: system packages, .venv/, Python dependencies.
# Idempotent; run as root (or with sudo available) for the apt-get step.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in libportaudio2 libsndfile1 libasound2-plugins alsa-utils jackd2 redis-server \
  chromium chromium-driver ffmpeg icecast2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[train,dev]"
# musicnn's wheel carries the pretrained checkpoints used to (re)build the embedding branch;
# its package code pins numpy<1.17, so only its files are installed.
.venv/bin/python -m pip install -q --no-deps musicnn==0.1.0
