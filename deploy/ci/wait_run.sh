#!/usr/bin/env bash
# Waits for a Kubeflow Pipelines run to finish; .github/workflows/cd.yml's train job calls
# it after `breastdx run create`. `breastdx run wait` exits 0 (succeeded), 1 (failed) or 2
# (a user-facing error: its own --timeout, or a refused sign-in, an unreachable endpoint…).
# Its timeout just means "wait again" (re-signing in: IAP ID tokens last an hour); a
# refused sign-in stops at once with what to fix; anything else (the endpoint unreachable,
# a 5xx) is retried after a pause that doubles up to 10 minutes, until the deadline.
#   usage: wait_run.sh RUN_ID [DEADLINE_SECONDS (default 6 h)]
# Exit: the run's 0/1, or 2 when it gave up (the last line on stderr says why).
set -uo pipefail
run_id="${1:?usage: wait_run.sh RUN_ID [DEADLINE_SECONDS]}"
deadline=$(( $(date +%s) + ${2:-21600} ))
breastdx="${BREASTDX_CLI:-.venv/bin/breastdx}"
first_pause="${WAIT_FIRST_PAUSE_S:-30}"
max_pause=600
# shellcheck source=deploy/ci/kfp_sign_in.sh
source "$(dirname "${BASH_SOURCE[0]}")/kfp_sign_in.sh"

pause="$first_pause"
while true; do
  if ! kfp_sign_in; then
    echo "wait_run: cannot sign in to Kubeflow Pipelines (kfp_sign_in failed, above): check" \
      "vars.BREASTDX_KFP_AUTH / BREASTDX_KFP_IAP_CLIENT_ID and the CI account's" \
      "roles/iam.serviceAccountOpenIdTokenCreator (docs/cluster.md, section 5); not retrying" >&2
    exit 2
  fi
  left=$(( deadline - $(date +%s) ))
  if [ "$left" -le 0 ]; then
    echo "wait_run: run $run_id not finished by the deadline; it goes on in KFP" >&2
    exit 2
  fi
  errors=$(mktemp)
  status=0
  "$breastdx" run wait "$run_id" --timeout "$(( left < 3000 ? left : 3000 ))" 2>"$errors" || status=$?
  message=$(cat "$errors")
  rm -f "$errors"
  [ -n "$message" ] && printf '%s\n' "$message" >&2
  if [ "$status" -ne 2 ]; then
    exit "$status"
  fi
  case "$message" in
    *"did not finish within"*)
      pause="$first_pause"
      continue
      ;;
    *"refused the request"*|*"answered 401"*|*"answered 403"*|*"sign in"*|*"sign-in"*|*BREASTDX_KFP_AUTH*|\
    *BREASTDX_KFP_TOKEN*|*BREASTDX_KFP_IAP*)
      echo "wait_run: Kubeflow Pipelines refused CI's sign-in (above): fix vars.BREASTDX_KFP_AUTH /" \
        "BREASTDX_KFP_IAP_CLIENT_ID or the CI account's access (docs/cluster.md, section 5);" \
        "not retrying" >&2
      exit 2
      ;;
  esac
  if [ $(( $(date +%s) + pause )) -ge "$deadline" ]; then
    echo "wait_run: giving up on run $run_id at the deadline after repeated errors (above)" >&2
    exit 2
  fi
  echo "wait_run: \`breastdx run wait\` failed (above); retrying in ${pause} s" >&2
  sleep "$pause"
  pause=$(( pause * 2 < max_pause ? pause * 2 : max_pause ))
done
