# Sourced by .github/workflows/cd.yml: `kfp_sign_in` sets BREASTDX_KFP_AUTH/_TOKEN for
# `breastdx pipeline|run` (breastdx_cli/kfp_auth.py). With KFP_AUTH=iap it mints a fresh
# Google ID token for the IAP OAuth client KFP_IAP_CLIENT_ID as CI_SERVICE_ACCOUNT (the
# runner's Workload Identity credentials cannot mint ID tokens themselves; impersonating
# the account can, given roles/iam.serviceAccountOpenIdTokenCreator: docs/cluster.md, 5).
kfp_sign_in() {
  case "${KFP_AUTH:-none}" in
    iap)
      : "${KFP_IAP_CLIENT_ID:?set vars.BREASTDX_KFP_IAP_CLIENT_ID (the IAP OAuth client id of the KFP endpoint)}"
      BREASTDX_KFP_TOKEN=$(gcloud auth print-identity-token --impersonate-service-account="$CI_SERVICE_ACCOUNT" \
        --audiences="$KFP_IAP_CLIENT_ID" --include-email) || return 1
      [ -n "$BREASTDX_KFP_TOKEN" ] || { echo "gcloud minted an empty ID token" >&2; return 1; }
      export BREASTDX_KFP_AUTH=token BREASTDX_KFP_TOKEN
      ;;
    none) export BREASTDX_KFP_AUTH=none ;;
    *) echo "KFP_AUTH must be none or iap, got ${KFP_AUTH}" >&2; return 2 ;;
  esac
}
