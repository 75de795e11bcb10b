#!/usr/bin/env bash
# The newest model version (largest integer folder) under a TF Serving model base, e.g.
# gs://BUCKET/breastdx/serving/breastdx-idc; nothing when there is none yet.
# .github/workflows/cd.yml calls it before and after a run: a new version = a blessed push.
set -euo pipefail
base="${1:?usage: newest_version.sh gs://BUCKET/PREFIX/serving/MODEL}"
{ gcloud storage ls "${base%/}/" 2>/dev/null || true; } \
  | sed -E 's#/$##; s#.*/##' | grep -E '^[0-9]+$' | sort -n | tail -n 1 || true
