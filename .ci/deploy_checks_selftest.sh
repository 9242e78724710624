#!/usr/bin/env bash
# Self-tests of the deployment checks: each check must FAIL on a deliberately broken copy of its
# artefact (and pass on an unbroken copy, so the failure is the break's). Run by .ci/run with the
# tools venv first on PATH.
#
#   .ci/deploy_checks_selftest.sh            chart, kustomize and Dockerfile checks (seconds)
#   .ci/deploy_checks_selftest.sh --smoke    the deployment smoke test (needs ITSM_BIN and
#                                            ITSM_TEST_POSTGRES_URL)
#
# Prints `N passed, N failed` and exits non-zero when a check missed a break.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd -P)
CHECK=(python3 "$ROOT/.ci/deploy_check.py")
WORK=$(mktemp -d /tmp/itsm-deploy-selftest.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PASSED=0
FAILED=0

# fresh <name>: a copy of the deployment artefacts in $WORK/<name>, printed.
fresh() {
  local dir="$WORK/$1"
  mkdir -p "$dir/charts" "$dir/docker"
  cp -r "$ROOT/charts/itsm" "$dir/charts/itsm"
  cp -r "$ROOT/k8s" "$dir/k8s"
  cp "$ROOT/docker/Dockerfile" "$dir/docker/Dockerfile"
  echo "$dir"
}

# edit <file> <python expression of s>: rewrites a file; fails loudly when the edit changed nothing
# (the artefact moved on and the test would prove nothing).
edit() {
  python3 - "$1" "$2" <<'PY'
import sys
path, expr = sys.argv[1], sys.argv[2]
s = open(path).read()
new = eval(expr, {"s": s})
if new == s:
    sys.exit(f"selftest: the edit {expr!r} changed nothing in {path}")
open(path, "w").write(new)
PY
}

# expect <pass|fail> <name> <text the output must contain, for fail> <command...>
expect() {
  local want=$1 name=$2 needle=$3 out status
  shift 3
  out=$("$@" 2>&1)
  status=$?
  if [[ $want == pass && $status == 0 ]] || [[ $want == fail && $status != 0 && $out == *"$needle"* ]]; then
    PASSED=$((PASSED + 1))
    printf '  ok    %s\n' "$name"
  else
    FAILED=$((FAILED + 1))
    printf '  FAIL  %s (wanted %s%s, exit status %d)\n' "$name" "$want" "${needle:+ mentioning \"$needle\"}" "$status"
    printf '%s\n' "$out" | tail -n 15 | sed 's/^/        /'
  fi
}

static_tests() {
  local d
  echo "chart check:"
  d=$(fresh control)
  expect pass "unbroken copy passes" "" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh field-typo)
  edit "$d/charts/itsm/templates/deployment.yaml" 's.replace("readinessProbe:", "readinesProbe:")'
  expect fail "a misspelt Kubernetes field in a template" "readinesProbe" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh wrong-type)
  edit "$d/charts/itsm/templates/deployment.yaml" 's.replace("revisionHistoryLimit: 5", "revisionHistoryLimit: five")'
  expect fail "a wrongly typed Kubernetes value" "revisionHistoryLimit" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh schema-open)
  edit "$d/charts/itsm/values.schema.json" 's.replace("\"additionalProperties\": false", "\"additionalProperties\": true")'
  expect fail "a values schema that accepts misspelt keys" "was accepted" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh lint)
  edit "$d/charts/itsm/Chart.yaml" 's.replace("version: 0.1.0", "version: not-semver")'
  expect fail "a chart helm lint rejects" "lint" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh template-error)
  edit "$d/charts/itsm/templates/pdb.yaml" 's.replace("{{- end }}\n{{- end }}", "{{- end }}\n{{- end }}\n{{ .Values.nope.deeper }}", 1)'
  expect fail "a template that does not render" "does not render" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh hardening)
  edit "$d/charts/itsm/templates/_helpers.tpl" 's.replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")'
  expect fail "a writable root filesystem" "readOnlyRootFilesystem must be true" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh probe-port)
  edit "$d/charts/itsm/templates/deployment.yaml" 's.replace("port: {{ $svc.port }}\n              service: \"\"\n            periodSeconds: 5", "port: 8080\n              service: \"\"\n            periodSeconds: 5")'
  expect fail "a readiness probe on a port nothing listens on" "readinessProbe probes port 8080" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh api-version)
  edit "$d/charts/itsm/templates/hpa.yaml" 's.replace("autoscaling/v2", "autoscaling/v2beta2")'
  expect fail "an API version Kubernetes no longer serves" "no Kubernetes" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh env-name)
  edit "$d/charts/itsm/templates/deployment.yaml" 's.replace("name: ITSM__TELEMETRY__SAMPLING_RATIO", "name: ITSM__TELEMETRY__SAMPLING_RATE")'
  expect fail "an ITSM__ variable the binary does not know" "ITSM__TELEMETRY__SAMPLING_RATE is no setting" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh schema-setting)
  edit "$d/charts/itsm/values.schema.json" 's.replace("\"rate_limit_burst\"", "\"rate_limit_bursts\"")'
  expect fail "a values schema offering a setting the binary does not know" "settings.gateway.rate_limit_bursts" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh upstreams)
  edit "$d/charts/itsm/values.yaml" 's.replace("upstreams: [change]", "upstreams: []")'
  expect fail "upstreams that miss a service the code follows" "services.cmdb.upstreams" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh custom-resource)
  edit "$d/charts/itsm/templates/grpcroute.yaml" 's.replace("- backendRefs:", "- backendRef:")'
  expect fail "a misspelt field in a custom resource (GRPCRoute)" "backendRef" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh cnpg)
  edit "$d/charts/itsm/templates/cnpg-cluster.yaml" 's.replace("instances: {{ $cnpg.instances }}", "instances: \"{{ $cnpg.instances }}\"")'
  expect fail "a wrongly typed field in a custom resource (CNPG Cluster)" "instances" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh dashboard-metric)
  edit "$d/charts/itsm/dashboards/itsm-red.json" 's.replace("itsm_incidents_open{", "itsm_open_incidents{")'
  expect fail "a dashboard query on a metric no service exports" "queries \`itsm_open_incidents\`" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh dashboard-json)
  edit "$d/charts/itsm/dashboards/itsm-red.json" 's.replace("\"panels\": [", "\"panels\": [,", 1)'
  expect fail "a dashboard that is no JSON" "is no JSON" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh console-loopback)
  edit "$d/charts/itsm/templates/deployment.yaml" 's.replace("value: {{ printf \"%s:%d\" $host (int $.Values.console.port) | quote }}", "value: {{ printf \"127.0.0.1:%d\" (int $.Values.console.port) | quote }}")'
  expect fail "a web console bound to loopback (unreachable in a pod)" "ITSM__CONSOLE__LISTEN=127.0.0.1:8080 binds loopback" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh console-listen-unset)
  edit "$d/charts/itsm/templates/deployment.yaml" 's.replace("            - name: ITSM__CONSOLE__LISTEN\n              value: {{ printf \"%s:%d\" $host (int $.Values.console.port) | quote }}\n", "")'
  expect fail "a web console left on the binary's default address" "ITSM__CONSOLE__LISTEN is None" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh console-probe)
  edit "$d/charts/itsm/templates/deployment.yaml" 's.replace("port: {{ $svc.port }}\n              service: \"\"\n            periodSeconds: 5", "port: {{ if $console }}{{ $.Values.console.port }}{{ else }}{{ $svc.port }}{{ end }}\n              service: \"\"\n            periodSeconds: 5")'
  expect fail "a gRPC probe on the console's HTTP port" "not the gRPC port" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh console-service-port)
  edit "$d/charts/itsm/templates/deployment.yaml" 's.replace("targetPort: http-console", "targetPort: console")'
  expect fail "a Service port targeting no containerPort" "targets port 'console'" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh console-ingress-port)
  edit "$d/charts/itsm/templates/ingress.yaml" 's.replace("name: http-console", "name: http")'
  expect fail "an Ingress routing to a port the Service lacks" "routes to port 'http'" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh console-networkpolicy)
  edit "$d/charts/itsm/templates/networkpolicy.yaml" 's.replace("        - port: http-console\n          protocol: TCP\n", "")'
  expect fail "a NetworkPolicy that blocks the console port" "admits no traffic to port http-console" "${CHECK[@]}" chart "$d/charts/itsm"

  d=$(fresh console-secret-key)
  edit "$d/charts/itsm/templates/secrets.yaml" 's.replace("  console-session-key: ", "  console-key: ")'
  expect fail "a secretKeyRef to a key the chart-made Secret lacks" "reads key 'console-session-key'" "${CHECK[@]}" chart "$d/charts/itsm"

  echo "kustomize check:"
  d=$(fresh kcontrol)
  expect pass "unbroken copy passes" "" "${CHECK[@]}" kustomize "$d/k8s" "$d/charts/itsm"

  d=$(fresh base-drift)
  edit "$d/k8s/base/deployment.yaml" 's.replace("containerPort: 50055", "containerPort: 50065")'
  expect fail "k8s/base edited by hand (drifts from the chart)" "differs from what the chart renders" "${CHECK[@]}" kustomize "$d/k8s" "$d/charts/itsm"

  d=$(fresh overlay-field)
  edit "$d/k8s/overlays/prod/kustomization.yaml" 's.replace("                resources:\n", "                readOnly: true\n                resources:\n")'
  expect fail "an overlay patch with a field Kubernetes does not know" "readOnly" "${CHECK[@]}" kustomize "$d/k8s" "$d/charts/itsm"

  d=$(fresh overlay-build)
  edit "$d/k8s/overlays/dev/kustomization.yaml" 's.replace("../../base", "../../bsae")'
  expect fail "an overlay kustomize cannot build" "kubectl kustomize failed" "${CHECK[@]}" kustomize "$d/k8s" "$d/charts/itsm"

  d=$(fresh overlay-secret-key)
  edit "$d/k8s/overlays/dev/kustomization.yaml" 's.replace("      - console-session-key=dev-only-console-session-key-change-me\n", "")'
  expect fail "an overlay Secret without a key the Deployments read" "reads key 'console-session-key'" "${CHECK[@]}" kustomize "$d/k8s" "$d/charts/itsm"

  d=$(fresh overlay-console-loopback)
  cat >>"$d/k8s/overlays/prod/kustomization.yaml" <<'EOF'
  - target:
      kind: Deployment
      name: itsm-gateway
    patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: itsm-gateway
      spec:
        template:
          spec:
            containers:
              - name: itsm
                env:
                  - name: ITSM__CONSOLE__LISTEN
                    value: 127.0.0.1:8080
EOF
  expect fail "an overlay binding the web console to loopback" "ITSM__CONSOLE__LISTEN=127.0.0.1:8080 binds loopback" "${CHECK[@]}" kustomize "$d/k8s" "$d/charts/itsm"

  d=$(fresh overlay-topology)
  cat >>"$d/k8s/overlays/prod/kustomization.yaml" <<'EOF'
  - target:
      kind: NetworkPolicy
    patch: |-
      $patch: delete
      apiVersion: networking.k8s.io/v1
      kind: NetworkPolicy
      metadata:
        name: any
EOF
  expect fail "an overlay that drops objects of the chart's topology" "lacks ('NetworkPolicy'" "${CHECK[@]}" kustomize "$d/k8s" "$d/charts/itsm"

  echo "Dockerfile check:"
  d=$(fresh dcontrol)
  expect pass "unbroken copy passes" "" "${CHECK[@]}" dockerfile "$d/docker/Dockerfile"

  d=$(fresh docker-latest)
  edit "$d/docker/Dockerfile" 's.replace("FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder", "FROM rust AS builder")'
  expect fail "an unpinned base image (hadolint DL3006)" "DL3006" "${CHECK[@]}" dockerfile "$d/docker/Dockerfile"

  d=$(fresh docker-apt)
  edit "$d/docker/Dockerfile" 's.replace("WORKDIR /src\n", "WORKDIR /src\nRUN apt-get update && apt-get install -y git\n", 1)'
  expect fail "unpinned apt packages (hadolint DL3008)" "DL3008" "${CHECK[@]}" dockerfile "$d/docker/Dockerfile"

  d=$(fresh docker-root)
  edit "$d/docker/Dockerfile" 's.replace("USER 65532:65532", "USER root")'
  expect fail "a final image running as root" "USER" "${CHECK[@]}" dockerfile "$d/docker/Dockerfile"

  d=$(fresh docker-base)
  edit "$d/docker/Dockerfile" 's.replace("FROM gcr.io/distroless/cc-debian12:nonroot", "FROM debian:bookworm-slim")'
  expect fail "a final image with a full distribution" "distroless or scratch" "${CHECK[@]}" dockerfile "$d/docker/Dockerfile"

  d=$(fresh docker-labels)
  edit "$d/docker/Dockerfile" 's.replace("org.opencontainers.image.revision=", "org.opencontainers.image.commit=")'
  expect fail "a missing OCI label" "org.opencontainers.image.revision" "${CHECK[@]}" dockerfile "$d/docker/Dockerfile"
}

smoke_tests() {
  [[ -n "${ITSM_BIN:-}" && -x "${ITSM_BIN:-}" ]] || { echo "ITSM_BIN must name the itsm binary" >&2; exit 2; }
  [[ -n "${ITSM_TEST_POSTGRES_URL:-}" ]] || { echo "ITSM_TEST_POSTGRES_URL must be set" >&2; exit 2; }
  local smoke=(python3 "$ROOT/.ci/deploy_smoke.py" --itsm "$ITSM_BIN" --admin-url "$ITSM_TEST_POSTGRES_URL" --timeout 30)
  # The failing runs keep their logs in a temporary directory: inside $WORK, removed at exit.
  export TMPDIR="$WORK"
  local d
  echo "deployment smoke test:"
  d=$(fresh env-name)
  edit "$d/charts/itsm/templates/deployment.yaml" 's.replace("name: ITSM__SERVER__LISTEN_ADDR", "name: ITSM__SERVER__LISTEN")'
  expect fail "a misspelt configuration variable" "server.listen" "${smoke[@]}" --chart "$d/charts/itsm"

  d=$(fresh upstream-port)
  edit "$d/charts/itsm/templates/deployment.yaml" 's.replace("(int $targetSvc.port)", "(add 1 (int $targetSvc.port))")'
  expect fail "an upstream address on the wrong port" "has no port" "${smoke[@]}" --chart "$d/charts/itsm"

  d=$(fresh container-port)
  edit "$d/charts/itsm/templates/deployment.yaml" 's.replace("value: {{ printf \"%s:%d\" $host (int $svc.port) | quote }}", "value: {{ printf \"%s:%d\" $host (add 1000 (int $svc.port)) | quote }}")'
  expect fail "a listen address that is not the declared port" "SERVING" "${smoke[@]}" --chart "$d/charts/itsm"

  d=$(fresh secret-key)
  edit "$d/charts/itsm/templates/deployment.yaml" 's.replace("key: jwt-secret", "key: jwt-key")'
  expect fail "a secretKeyRef to a key the Secret does not have" "has no key 'jwt-key'" "${smoke[@]}" --chart "$d/charts/itsm"

  d=$(fresh args)
  edit "$d/charts/itsm/templates/deployment.yaml" 's.replace("args: [\"serve\", {{ $name | quote }}]", "args: [\"run\", {{ $name | quote }}]")'
  expect fail "a wrong container argument" "exited with status" "${smoke[@]}" --chart "$d/charts/itsm"

  d=$(fresh migrations)
  edit "$d/charts/itsm/templates/migrations-job.yaml" 's.replace("args: [\"migrate\", {{ $name | quote }}]", "args: [\"version\"]")'
  expect fail "a migration Job that migrates nothing" "no hook Job migrated its database" "${smoke[@]}" --chart "$d/charts/itsm"
}

if [[ "${1:-}" == "--smoke" ]]; then smoke_tests; else static_tests; fi
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
