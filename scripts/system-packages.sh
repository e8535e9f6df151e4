#!/usr/bin/env bash
# Debian packages the tests use: a browser for the web page tests, espeak-ng and sox to make speech
# with a known text, PostgreSQL, Slurm. Idempotent and quiet when everything is there.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium chromium-driver)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need+=(sox libsox-fmt-all)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
# PostgreSQL server binaries: the catalog's tests also run against a throwaway cluster.
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# A single-node Slurm cluster for the model factory's job tests (started by the fixtures, as root).
command -v slurmctld >/dev/null 2>&1 || need+=(slurmctld slurmd slurm-client munge)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
