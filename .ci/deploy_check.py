#!/usr/bin/env python3
"""Deployment checks (run by .ci/run with the tools venv's python).

  deploy_check.py chart <chart-dir>
      Lints the chart strictly, renders it with its default values and every charts/itsm/ci/*-values.yaml,
      validates every object against the Kubernetes schemas of KUBE_VERSIONS (strict: unknown fields
      fail) and the custom resources against .ci/crd-schemas, checks the hardening every pod must
      have, the wiring (every server binds a non-loopback address on a declared containerPort --
      the gRPC endpoint, and the gateway's web console unless ITSM__CONSOLE__ENABLED=false; Service
      ports target container ports, Ingress backends name Service ports, NetworkPolicies admit every
      port of the Services whose pods they select, secretKeyRefs name keys of the Secrets rendered
      with them; gRPC probes ask the gRPC port), and proves the
      values schema rejects misspelt keys. Checks the Grafana dashboard
      (dashboards/*.json) parses and queries only metrics the services export (TELEMETRY_METRICS).
  deploy_check.py kustomize <k8s-dir> <chart-dir>
      Checks k8s/base is what the chart renders with charts/itsm/ci/kustomize-values.yaml (regenerate
      with `k8s-base`), builds every overlay with `kubectl kustomize`, and validates and checks the
      output like the chart's (wiring included), with the same topology (kinds, names, args, ports,
      env names) as the chart.
  deploy_check.py k8s-base <k8s-dir> <chart-dir>
      (Re)writes k8s/base/ from the chart.
  deploy_check.py dockerfile <Dockerfile>
      hadolint (any finding fails), plus: multi-stage, distroless/scratch final image with only the
      itsm binary, a numeric non-root USER, the OCI labels, entrypoint itsm.
  deploy_check.py render <chart-dir> <out-dir> [values.yaml ...]
      Writes the rendered manifests (one file per template) for other tools.

Exit status 0 when everything holds; 1 with one line per finding otherwise.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import pathlib
import re
import subprocess
import sys
import tomllib

import helm_python
import jsonschema
import kubernetes_validate
import yaml

# The Kubernetes versions the chart supports (Chart.yaml kubeVersion: >=1.33): the oldest, one
# in between and the newest kubernetes-validate ships schemas for.
KUBE_VERSIONS = ["1.33.0", "1.35.0", "1.37.0"]
RELEASE = "itsm"
NAMESPACE = "itsm"
HERE = pathlib.Path(__file__).resolve().parent
CRD_SCHEMAS = {
    ("postgresql.cnpg.io/v1", "Cluster"): HERE / "crd-schemas" / "postgresql.cnpg.io-v1-Cluster.json",
    ("gateway.networking.k8s.io/v1", "GRPCRoute"): HERE / "crd-schemas" / "gateway.networking.k8s.io-v1-GRPCRoute.json",
}
# Labels and annotations that only Helm sets; the kustomize base does without them.
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
BASE_HEADER = "# Generated from charts/itsm by `.ci/deploy_check.py k8s-base` -- do not edit; change the chart or the overlays.\n"


class Findings(list):
    def add(self, where: str, what: str) -> None:
        self.append(f"{where}: {what}")


def load_values(files: list[pathlib.Path]) -> dict:
    merged: dict = {}
    for path in files:
        merged = deep_merge(merged, helm_python.values_from_yaml(path.read_text()) or {})
    return merged


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(chart: pathlib.Path, values: dict, *, is_install: bool = True) -> dict[str, str]:
    with helm_python.Chart.load(str(chart)) as loaded:
        return loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=is_install)


def objects_of(rendered: dict[str, str]) -> list[tuple[str, dict]]:
    out = []
    for path, manifest in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(manifest):
            if doc:
                out.append((path, doc))
    return out


def name_of(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate(objs: list[tuple[str, dict]], label: str, findings: Findings) -> dict[str, int]:
    """Validates every object; returns how many were checked against what."""
    counts = {"kubernetes": 0, "custom": 0}
    for source, obj in objs:
        where = f"{label} {source} {name_of(obj)}"
        schema_file = CRD_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
        if schema_file is not None:
            schema = json.loads(schema_file.read_text())
            for error in jsonschema.Draft7Validator(schema).iter_errors(obj):
                path = "/".join(str(p) for p in error.absolute_path)
                findings.add(where, f"{path}: {error.message} (schema {schema_file.name})")
            counts["custom"] += 1
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                findings.add(where, f"no Kubernetes {version} schema for {obj.get('apiVersion')} {obj.get('kind')}"
                             " (a typo, a removed API, or a custom resource without a schema in .ci/crd-schemas)")
            except kubernetes_validate.ValidationError as err:
                path = "/".join(str(p) for p in getattr(err, "absolute_path", []))
                findings.add(where, f"Kubernetes {version}: {path}: {err.message}")
        counts["kubernetes"] += 1
    return counts


def pod_spec(obj: dict) -> dict | None:
    if obj.get("kind") in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return obj["spec"]["template"]["spec"]
    return None


def check_policy(objs: list[tuple[str, dict]], label: str, findings: Findings) -> None:
    """The hardening and wiring every workload of the chart must have."""
    by_kind: dict[str, dict[str, dict]] = {}
    for _, obj in objs:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    for _, obj in objs:
        spec = pod_spec(obj)
        if spec is None:
            continue
        where = f"{label} {name_of(obj)}"
        if spec.get("automountServiceAccountToken") is not False:
            findings.add(where, "automountServiceAccountToken must be false")
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            findings.add(where, "pod securityContext.runAsNonRoot must be true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            findings.add(where, "pod seccompProfile must be RuntimeDefault")
        for container in spec.get("initContainers", []) + spec["containers"]:
            cwhere = f"{where} container {container['name']}"
            csc = container.get("securityContext", {})
            if csc.get("readOnlyRootFilesystem") is not True:
                findings.add(cwhere, "readOnlyRootFilesystem must be true")
            if csc.get("allowPrivilegeEscalation") is not False:
                findings.add(cwhere, "allowPrivilegeEscalation must be false")
            if "ALL" not in csc.get("capabilities", {}).get("drop", []):
                findings.add(cwhere, "capabilities must drop ALL")
            if not isinstance(csc.get("runAsUser", psc.get("runAsUser")), int) or csc.get("runAsUser", psc.get("runAsUser")) == 0:
                findings.add(cwhere, "must run as a numeric non-root user")
            if "resources" not in container:
                findings.add(cwhere, "resources must be set")
            if obj["kind"] != "Deployment":
                continue
            ports = {p["containerPort"] for p in container.get("ports", [])}
            grpc_port = listen_port(env_value(container, "ITSM__SERVER__LISTEN_ADDR"))
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                grpc = container.get(probe, {}).get("grpc")
                if grpc is None:
                    findings.add(cwhere, f"{probe} must be a native gRPC probe")
                elif grpc.get("port") not in ports:
                    findings.add(cwhere, f"{probe} probes port {grpc.get('port')}, the container listens on {sorted(ports)}")
                elif grpc_port is not None and grpc.get("port") != grpc_port:
                    # The gateway declares the console's HTTP port too; the probes must ask the gRPC server.
                    findings.add(cwhere, f"{probe} probes port {grpc.get('port')}, not the gRPC port {grpc_port} "
                                 "(ITSM__SERVER__LISTEN_ADDR)")
        if obj["kind"] == "Deployment":
            name = obj["metadata"]["name"]
            sa = spec.get("serviceAccountName")
            if sa not in by_kind.get("ServiceAccount", {}):
                findings.add(where, f"ServiceAccount {sa} is not rendered")
            elif by_kind["ServiceAccount"][sa].get("automountServiceAccountToken") is not False:
                findings.add(f"{label} ServiceAccount/{sa}", "automountServiceAccountToken must be false")
            for kind in ("Service", "NetworkPolicy"):
                if name not in by_kind.get(kind, {}):
                    findings.add(where, f"has no {kind} of the same name")


def env_value(container: dict, name: str) -> str | None:
    """A literal env value of a container (None when unset or from a valueFrom)."""
    for var in container.get("env", []):
        if var["name"] == name:
            return var.get("value")
    return None


def split_listen(addr: str | None) -> tuple[str, int] | None:
    """host:port (or [v6]:port) -> (host, port); None when it is no such address."""
    if not addr or ":" not in addr:
        return None
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def listen_port(addr: str | None) -> int | None:
    parsed = split_listen(addr)
    return parsed[1] if parsed else None


def serves_console(container: dict) -> bool:
    """Whether the container runs `itsm serve gateway` with the console on (the binary's default):
    only the gateway's serve path starts it."""
    return (list(container.get("args") or [])[:2] == ["serve", "gateway"]
            and (env_value(container, "ITSM__CONSOLE__ENABLED") or "true").lower() != "false")


# The addresses a container's servers bind: the setting, and whether the container has that server.
LISTEN_SETTINGS = [
    ("ITSM__SERVER__LISTEN_ADDR", lambda c: list(c.get("args") or [])[:1] == ["serve"]),
    ("ITSM__CONSOLE__LISTEN", serves_console),
]


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def check_wiring(objs: list[tuple[str, dict]], label: str, findings: Findings) -> int:
    """What connects the objects, as a cluster would resolve it: every server of a Deployment binds
    a reachable address (not loopback: nothing outside the pod reaches it) on a declared
    containerPort; every Service port targets a containerPort of the Deployment it selects; every
    Ingress backend names a rendered Service and one of its ports; a NetworkPolicy that selects
    a Service's pods and admits anything admits every port of that Service; and a secretKeyRef to a
    Secret rendered here (chart-made, or a kustomize secretGenerator) names a key it has. Returns
    how many connections were checked."""
    checked = 0
    deployments = [o for _, o in objs if o.get("kind") == "Deployment"]
    services = {o["metadata"]["name"]: o for _, o in objs if o.get("kind") == "Service"}
    secrets = {o["metadata"]["name"]: set(o.get("data") or {}) | set(o.get("stringData") or {})
               for _, o in objs if o.get("kind") == "Secret"}
    for _, obj in objs:
        spec = pod_spec(obj)
        for c in (spec or {}).get("initContainers", []) + (spec or {}).get("containers", []):
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is None or ref["name"] not in secrets or ref.get("optional"):
                    continue
                checked += 1
                if ref["key"] not in secrets[ref["name"]]:
                    findings.add(f"{label} {name_of(obj)} container {c['name']}",
                                 f"{var['name']} reads key {ref['key']!r} of Secret/{ref['name']}, which has "
                                 f"{sorted(secrets[ref['name']])}")
    for d in deployments:
        for c in d["spec"]["template"]["spec"]["containers"]:
            where = f"{label} {name_of(d)} container {c['name']}"
            declared = {p["containerPort"] for p in c.get("ports", [])}
            for setting, applies in LISTEN_SETTINGS:
                if not applies(c):
                    continue
                checked += 1
                addr = env_value(c, setting)
                parsed = split_listen(addr)
                if parsed is None:
                    findings.add(where, f"{setting} is {addr!r}: it must be set to host:port (the binary's default "
                                 "binds 127.0.0.1, which nothing outside the pod reaches)")
                    continue
                host, port = parsed
                try:
                    loopback = ipaddress.ip_address(host).is_loopback
                except ValueError:
                    loopback = host == "localhost"
                if loopback:
                    findings.add(where, f"{setting}={addr} binds loopback: nothing outside the pod reaches it")
                if port not in declared:
                    findings.add(where, f"{setting}={addr} listens on port {port}, which is no containerPort {sorted(declared)}")

    def pods_of(selector: dict) -> list[dict]:
        return [d for d in deployments if selects(selector, d["spec"]["template"]["metadata"].get("labels", {}))]

    def container_port(d: dict, target) -> dict | None:
        for c in d["spec"]["template"]["spec"]["containers"]:
            for p in c.get("ports", []):
                if p["containerPort"] == target or p.get("name") == target:
                    return p
        return None

    for name, svc in services.items():
        picked = pods_of(svc["spec"].get("selector") or {})
        if len(picked) != 1:
            findings.add(f"{label} Service/{name}", f"selects {len(picked)} Deployments (want exactly one)")
            continue
        for sport in svc["spec"].get("ports", []):
            checked += 1
            target = sport.get("targetPort", sport["port"])
            if container_port(picked[0], target) is None:
                findings.add(f"{label} Service/{name}", f"port {sport.get('name', sport['port'])} targets port {target!r}, "
                             f"which no container of {name_of(picked[0])} declares")
    for _, ing in objs:
        if ing.get("kind") != "Ingress":
            continue
        spec = ing.get("spec", {})
        backends = [spec["defaultBackend"]] if "defaultBackend" in spec else []
        for rule in spec.get("rules", []):
            backends += [path["backend"] for path in rule.get("http", {}).get("paths", [])]
        for backend in backends:
            ref = backend.get("service")
            if ref is None:
                continue
            checked += 1
            svc = services.get(ref["name"])
            port = ref.get("port", {})
            if svc is None:
                findings.add(f"{label} {name_of(ing)}", f"routes to Service {ref['name']}, which is not rendered")
            elif not any(("name" in port and p.get("name") == port["name"]) or
                         ("number" in port and p["port"] == port["number"]) for p in svc["spec"].get("ports", [])):
                findings.add(f"{label} {name_of(ing)}", f"routes to port {port.get('name', port.get('number'))!r} of "
                             f"Service/{ref['name']}, which has {[p.get('name', p['port']) for p in svc['spec'].get('ports', [])]}")
    for _, pol in objs:
        if pol.get("kind") != "NetworkPolicy" or "Ingress" not in pol["spec"].get("policyTypes", ["Ingress"]):
            continue
        rules = pol["spec"].get("ingress") or []
        if not rules:
            continue  # admits nothing: a deliberately isolated workload
        pod_selector = pol["spec"].get("podSelector", {}).get("matchLabels", {})
        for name, svc in services.items():
            picked = pods_of(svc["spec"].get("selector") or {})
            # An empty podSelector selects every pod of the namespace.
            if len(picked) != 1 or not pod_selector.items() <= picked[0]["spec"]["template"]["metadata"].get("labels", {}).items():
                continue
            for sport in svc["spec"].get("ports", []):
                cport = container_port(picked[0], sport.get("targetPort", sport["port"]))
                if cport is None:
                    continue  # reported above
                checked += 1
                admitted = any(not rule.get("ports") or any(
                    p.get("port") in (cport["containerPort"], cport.get("name")) for p in rule["ports"]) for rule in rules)
                if not admitted:
                    findings.add(f"{label} {name_of(pol)}", f"admits no traffic to port {sport.get('name', sport['port'])} "
                                 f"of Service/{name} (containerPort {cport['containerPort']})")
    return checked


def config_keys() -> set[tuple[str, str]]:
    """(section, key) of every setting the binary knows, from config/itsm.example.toml (a test in
    services/runtime keeps that file equal to the built-in defaults)."""
    with open(HERE.parent / "config" / "itsm.example.toml", "rb") as f:
        return {(section, key) for section, keys in tomllib.load(f).items() for key in keys}


def check_config_env(objs: list[tuple[str, dict]], label: str, findings: Findings) -> None:
    """Every ITSM__SECTION__KEY a container gets names a setting the binary knows."""
    known = config_keys()
    for _, obj in objs:
        spec = pod_spec(obj)
        for container in (spec or {}).get("containers", []):
            for var in container.get("env", []):
                parts = var["name"].split("__")
                if parts[0] != "ITSM":
                    continue
                if len(parts) != 3 or (parts[1].lower(), parts[2].lower()) not in known:
                    findings.add(f"{label} {name_of(obj)} container {container['name']}",
                                 f"{var['name']} is no setting of config/itsm.example.toml")


def check_schema_settings(chart: pathlib.Path, findings: Findings) -> None:
    """The values schema offers only settings the binary knows."""
    schema = json.loads((chart / "values.schema.json").read_text())
    settings = schema.get("definitions", {}).get("settings", {}).get("properties", {})
    known = config_keys()
    for section, body in settings.items():
        for key in body.get("properties", {}):
            if (section, key) not in known:
                findings.add("values.schema.json", f"settings.{section}.{key} is no setting of config/itsm.example.toml")


UPSTREAM_USE = re.compile(r"upstream\.(service_desk|incident|change|cmdb|delivery)\b")


def code_upstreams(service: str) -> set[str]:
    """The upstream.* settings a service's code (and the service crates it depends on, such as
    itsm-cmdb-client) reads: the services it calls or follows."""
    services_dir = HERE.parent / "services"
    seen, todo, found = set(), [service], set()
    while todo:
        crate = todo.pop()
        if crate in seen or not (services_dir / crate / "Cargo.toml").exists():
            continue
        seen.add(crate)
        manifest = tomllib.loads((services_dir / crate / "Cargo.toml").read_text())
        for dep in manifest.get("dependencies", {}):
            if dep.startswith("itsm-") and dep not in ("itsm-runtime", "itsm-proto"):
                todo.append(dep.removeprefix("itsm-"))
        for source in (services_dir / crate / "src").rglob("*.rs"):
            found.update(m.replace("_", "-") for m in UPSTREAM_USE.findall(source.read_text()))
    return found


def check_upstreams_match_code(chart: pathlib.Path, findings: Findings) -> None:
    """services.<name>.upstreams (ITSM__UPSTREAM__* and the NetworkPolicies) name exactly the
    services the code calls or follows."""
    values = helm_python.values_from_yaml((chart / "values.yaml").read_text())
    for name, svc in values["services"].items():
        configured, used = set(svc.get("upstreams") or []), code_upstreams(name)
        if configured != used:
            findings.add(f"values.yaml services.{name}.upstreams",
                         f"{sorted(configured)}, but services/{name} (with its service crates) reads upstream "
                         f"settings of {sorted(used)}")


def lint(chart: pathlib.Path, values: dict, label: str, findings: Findings) -> None:
    report = helm_python.lint(str(chart), values, strict=True, namespace=NAMESPACE)
    for message in report.get("messages", []):
        # Severity: 1 info, 2 warning, 3 error; strict lint fails on warnings.
        if message.get("severity", 0) >= 2:
            findings.add(f"{label} lint {message.get('path')}", message.get("error", "").strip())
    for error in report.get("errors", []):
        if not any(error.strip() in f for f in findings):
            findings.add(f"{label} lint", error.strip())


# Misspelt keys the schema must reject, each with the path the error must name.
MISSPELT = [
    ({"imagee": {"tag": "x"}}, "'imagee'"),
    ({"services": {"gateway": {"replica": 3}}}, "'replica'"),
    ({"services": {"incidents": {"enabled": True}}}, "'incidents'"),
    ({"services": {"cmdb": {"database": {"existingSecretName": "x"}}}}, "'existingSecretName'"),
    ({"settings": {"log": {"formatt": "json"}}}, "'formatt'"),
    ({"telemetry": {"otlp_endpoint": "http://x:4317"}}, "'otlp_endpoint'"),
    ({"grafana": {"dashboard": {"enable": True}}}, "'enable'"),
    ({"console": {"secure_cookies": False}}, "'secure_cookies'"),
    ({"console": {"ingress": {"host": ["console.example.com"]}}}, "'host'"),
]


def check_schema_rejects(chart: pathlib.Path, findings: Findings) -> int:
    rejected = 0
    for values, needle in MISSPELT:
        try:
            render(chart, values)
        except helm_python.HelmValuesError as err:
            if needle in str(err):
                rejected += 1
                continue
            findings.add("schema", f"{values} was rejected, but the error does not name {needle}: {err}")
        except helm_python.HelmError as err:
            findings.add("schema", f"the misspelt key in {values} was accepted by values.schema.json "
                         f"(it failed later: {str(err).splitlines()[0]})")
        else:
            findings.add("schema", f"the misspelt key in {values} was accepted (values.schema.json must reject it)")
    return rejected


# The metrics the services export (OBSERVABILITY.md has the table): OpenTelemetry name ->
# (name in Prometheus through the Collector's prometheus exporter, instrument kind). A dashboard
# query on any other series fails, and so does a name the Rust sources no longer register.
TELEMETRY_METRICS = {
    "rpc.server.call.duration": ("rpc_server_call_duration_seconds", "histogram"),
    "db.client.connection.count": ("db_client_connection_count", "gauge"),
    "db.client.connection.max": ("db_client_connection_max", "gauge"),
    "itsm.events.consumer.lag": ("itsm_events_consumer_lag", "gauge"),
    "itsm.events.consumer.delay": ("itsm_events_consumer_delay_seconds", "histogram"),
    "itsm.sla.warnings": ("itsm_sla_warnings_total", "counter"),
    "itsm.sla.breaches": ("itsm_sla_breaches_total", "counter"),
    "itsm.incidents.open": ("itsm_incidents_open", "gauge"),
    "itsm.changes.closed": ("itsm_changes_closed_total", "counter"),
    "itsm.telemetry.spans.dropped": ("itsm_telemetry_spans_dropped_total", "counter"),
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                "unless", "inf", "nan", "atan2"}


def prometheus_series() -> set[str]:
    """Every series name the metrics of TELEMETRY_METRICS have in Prometheus."""
    out = set()
    for prom, kind in TELEMETRY_METRICS.values():
        out.update({prom + "_bucket", prom + "_sum", prom + "_count"} if kind == "histogram" else {prom})
    return out


def promql_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, labels or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)  # label matchers, ranges (and Grafana variables in them)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # other Grafana variables
    return {name for name, call in re.findall(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", expr)
            if not call and name.lower() not in PROMQL_WORDS}


def dashboard_queries(node) -> list[str]:
    """The PromQL of a dashboard: panel targets' `expr` and query variables (label_values(metric, label))."""
    out = []
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            out.append(node["expr"])
        if node.get("type") == "query" and "name" in node:  # a templating variable
            query = node.get("query")
            query = query.get("query", "") if isinstance(query, dict) else query or ""
            label_values = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
            out.append(label_values.group(1) if label_values else query)
        for key, value in node.items():
            if key != "expr":
                out.extend(dashboard_queries(value))
    elif isinstance(node, list):
        for value in node:
            out.extend(dashboard_queries(value))
    return out


def check_dashboards(chart: pathlib.Path, findings: Findings) -> int:
    """Every dashboard parses, reads its data source from the `datasource` variable and queries only
    series of TELEMETRY_METRICS; every name of TELEMETRY_METRICS is registered in the Rust sources."""
    known = prometheus_series()
    checked = 0
    for path in sorted((chart / "dashboards").glob("*.json")):
        where = f"{path.parent.name}/{path.name}"
        try:
            dashboard = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            findings.add(where, f"is no JSON: {err}")
            continue
        variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
        if variables.get("datasource", {}).get("type") != "datasource":
            findings.add(where, "has no `datasource` variable (type datasource) to choose the Prometheus with")
        queries = dashboard_queries(dashboard.get("panels", [])) + dashboard_queries(dashboard.get("templating", {}))
        if not queries:
            findings.add(where, "has no PromQL queries")
        for query in queries:
            for name in sorted(promql_metrics(query) - known):
                findings.add(where, f"queries `{name}`, which no service exports (known: TELEMETRY_METRICS "
                             f"in .ci/deploy_check.py and OBSERVABILITY.md): {query}")
        checked += len(queries)
    sources = "\n".join(p.read_text() for p in (HERE.parent / "services").glob("*/src/**/*.rs"))
    for otel in TELEMETRY_METRICS:
        if f'"{otel}"' not in sources:
            findings.add(".ci/deploy_check.py TELEMETRY_METRICS", f"{otel} is registered nowhere in services/*/src")
    return checked


def value_sets(chart: pathlib.Path) -> list[tuple[str, list[pathlib.Path]]]:
    sets = [("default values", [])]
    for path in sorted((chart / "ci").glob("*-values.yaml")):
        sets.append((path.name, [path]))
    return sets


def cmd_chart(chart: pathlib.Path) -> Findings:
    findings = Findings()
    try:
        with helm_python.Chart.load(str(chart)):
            pass
    except helm_python.HelmError as err:
        findings.add("lint", f"the chart does not load: {err}")
        return findings
    for label, files in value_sets(chart):
        values = load_values(files)
        try:
            lint(chart, values, label, findings)
        except helm_python.HelmError as err:
            findings.add(f"{label} lint", str(err))
        try:
            rendered = render(chart, values)
        except helm_python.HelmError as err:
            findings.add(label, f"does not render: {err}")
            continue
        objs = objects_of(rendered)
        counts = validate(objs, label, findings)
        check_policy(objs, label, findings)
        check_config_env(objs, label, findings)
        wired = check_wiring(objs, label, findings)
        kinds = sorted({o["kind"] for _, o in objs})
        print(f"{label}: {len(objs)} objects ({', '.join(kinds)}); {counts['kubernetes']} checked against "
              f"Kubernetes {', '.join(KUBE_VERSIONS)} (strict), {counts['custom']} custom resources against .ci/crd-schemas; "
              f"wiring: {wired} listen addresses, Service/Ingress/NetworkPolicy ports and Secret keys")
    check_schema_settings(chart, findings)
    check_upstreams_match_code(chart, findings)
    print("upstreams: " + "; ".join(f"{name} -> {', '.join(sorted(code_upstreams(name))) or '-'}"
                                    for name in ("gateway", "service-desk", "incident", "change", "cmdb", "delivery")))
    rejected = check_schema_rejects(chart, findings)
    print(f"values schema: {rejected} of {len(MISSPELT)} misspelt keys rejected")
    queries = check_dashboards(chart, findings)
    print(f"dashboards: {queries} queries, on the series of {len(TELEMETRY_METRICS)} known metrics")
    return findings


# ---- kustomize ----------------------------------------------------------------------------------

def base_objects(chart: pathlib.Path) -> list[tuple[str, dict]]:
    """The chart rendered for the kustomize base: no Helm hooks, no Helm-only labels."""
    values = load_values([chart / "ci" / "kustomize-values.yaml"])
    out = []
    for source, obj in objects_of(render(chart, values)):
        meta = obj["metadata"]
        if "helm.sh/hook" in meta.get("annotations", {}):
            raise SystemExit(f"{source} {name_of(obj)} is a Helm hook: kustomize-values.yaml must not render hooks")
        meta.pop("namespace", None)
        strip_helm_labels(obj)
        out.append((source, obj))
    return out


def strip_helm_labels(node) -> None:
    if isinstance(node, dict):
        for key in ("labels", "matchLabels"):
            if isinstance(node.get(key), dict):
                for label in HELM_ONLY_LABELS:
                    node[key].pop(label, None)
        for value in node.values():
            strip_helm_labels(value)
    elif isinstance(node, list):
        for value in node:
            strip_helm_labels(value)


def base_files(chart: pathlib.Path) -> dict[str, str]:
    files: dict[str, list[dict]] = {}
    for source, obj in base_objects(chart):
        files.setdefault(pathlib.Path(source).name, []).append(obj)
    out = {}
    for name, objs in sorted(files.items()):
        out[name] = BASE_HEADER + "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in objs)
    resources = "".join(f"  - {name}\n" for name in sorted(out))
    out["kustomization.yaml"] = (BASE_HEADER + "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                                 "labels:\n  - pairs:\n      app.kubernetes.io/managed-by: kustomize\n"
                                 "resources:\n" + resources)
    return out


def cmd_k8s_base(k8s: pathlib.Path, chart: pathlib.Path) -> Findings:
    base = k8s / "base"
    base.mkdir(parents=True, exist_ok=True)
    for old in base.glob("*.yaml"):
        old.unlink()
    for name, text in base_files(chart).items():
        (base / name).write_text(text)
        print(f"wrote {base / name}")
    return Findings()


def topology(objs: list[dict]) -> set[tuple]:
    """What must be the same however it is deployed: objects by kind and name (without the
    release prefix), each container's args, ports and the variable names it gets."""
    out = set()
    for obj in objs:
        name = obj["metadata"]["name"].split("-", 1)[-1]
        out.add((obj["kind"], name))
        spec = pod_spec(obj)
        if spec and obj["kind"] == "Deployment":
            for c in spec["containers"]:
                out.add(("args", name, tuple(c.get("args", []))))
                out.add(("ports", name, tuple(p["containerPort"] for p in c.get("ports", []))))
                out.add(("env", name, tuple(sorted(e["name"] for e in c.get("env", [])))))
    return out


def cmd_kustomize(k8s: pathlib.Path, chart: pathlib.Path) -> Findings:
    findings = Findings()
    expected = base_files(chart)
    base = k8s / "base"
    present = {p.name for p in base.glob("*.yaml")}
    for name, text in expected.items():
        path = base / name
        if not path.exists():
            findings.add(f"k8s/base/{name}", "missing (run `.ci/deploy_check.py k8s-base k8s charts/itsm`)")
        elif path.read_text() != text:
            findings.add(f"k8s/base/{name}", "differs from what the chart renders (run `.ci/deploy_check.py k8s-base k8s charts/itsm`)")
    for name in sorted(present - set(expected)):
        findings.add(f"k8s/base/{name}", "is not rendered by the chart (remove it or change the chart)")
    chart_topology = topology([o for _, o in base_objects(chart)])
    overlays = sorted(p for p in (k8s / "overlays").iterdir() if (p / "kustomization.yaml").exists())
    if not overlays:
        findings.add("k8s/overlays", "no overlay")
    for overlay in [base] + overlays:
        label = str(overlay.relative_to(k8s.parent))
        built = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True)
        if built.returncode != 0:
            findings.add(label, f"kubectl kustomize failed: {built.stderr.strip()}")
            continue
        objs = [("kustomize", d) for d in yaml.safe_load_all(built.stdout) if d]
        counts = validate(objs, label, findings)
        check_policy(objs, label, findings)
        check_config_env(objs, label, findings)
        wired = check_wiring(objs, label, findings)
        got = topology([o for _, o in objs if o["kind"] not in ("Secret", "ConfigMap", "Namespace")])
        want = {t for t in chart_topology if t[0] not in ("Secret", "ConfigMap", "Namespace")}
        for missing in sorted(want - got, key=str):
            findings.add(label, f"not the chart's topology: lacks {missing}")
        for extra in sorted(got - want, key=str):
            findings.add(label, f"not the chart's topology: has {extra} the chart does not")
        print(f"{label}: {len(objs)} objects; {counts['kubernetes']} checked against Kubernetes "
              f"{', '.join(KUBE_VERSIONS)} (strict), {counts['custom']} custom resources; wiring: {wired} listen "
              "addresses, Service/Ingress/NetworkPolicy ports and Secret keys")
    return findings


# ---- Dockerfile ---------------------------------------------------------------------------------

OCI_LABELS = ("title", "version", "revision", "created", "source", "licenses")


def cmd_dockerfile(dockerfile: pathlib.Path) -> Findings:
    """hadolint (every finding fails), and what hadolint does not know we want of the final image."""
    findings = Findings()
    linted = subprocess.run(["hadolint", "--no-color", str(dockerfile)], capture_output=True, text=True)
    for line in (linted.stdout + linted.stderr).splitlines():
        if line.strip():
            findings.add("hadolint", line.strip())
    if linted.returncode != 0 and not findings:
        findings.add("hadolint", f"exit status {linted.returncode}")
    text = dockerfile.read_text()
    # Instructions, with line continuations joined.
    lines = [l.strip() for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.lstrip().startswith("#")]
    froms = [i for i, l in enumerate(lines) if l.upper().startswith("FROM ")]
    if len(froms) < 2:
        findings.add("Dockerfile", "must be multi-stage (a build stage and a final image)")
        return findings
    final = lines[froms[-1]:]
    base = final[0].split()[1]
    if not (base.startswith("gcr.io/distroless/") or base == "scratch"):
        findings.add("Dockerfile", f"the final image must be distroless or scratch, not {base}")
    users = [l.split()[1] for l in final if l.upper().startswith("USER ")]
    if not users or not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1]):
        findings.add("Dockerfile", "the final stage must end with a numeric non-root USER (runAsNonRoot checks it)")
    labels = " ".join(l for l in final if l.upper().startswith("LABEL "))
    for label in OCI_LABELS:
        if f"org.opencontainers.image.{label}=" not in labels:
            findings.add("Dockerfile", f"the final image lacks the OCI label org.opencontainers.image.{label}")
    copies = [l for l in final if l.upper().startswith("COPY ")]
    if len(copies) != 1 or not copies[0].rstrip().endswith("/usr/local/bin/itsm"):
        findings.add("Dockerfile", "the final image must copy in only the itsm binary (/usr/local/bin/itsm)")
    if not any(l.upper().startswith("ENTRYPOINT ") and "/usr/local/bin/itsm" in l for l in final):
        findings.add("Dockerfile", "the entrypoint must be /usr/local/bin/itsm (the chart runs `itsm <args>`)")
    if not findings:
        print(f"{dockerfile}: hadolint clean; final image {base}, USER {users[-1]}, OCI labels, only the itsm binary")
    return findings


def cmd_render(chart: pathlib.Path, out: pathlib.Path, values_files: list[pathlib.Path]) -> Findings:
    out.mkdir(parents=True, exist_ok=True)
    for path, manifest in render(chart, load_values(values_files)).items():
        if manifest.strip():
            (out / path.replace("/", "__")).write_text(manifest)
    return Findings()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[1], [pathlib.Path(a) for a in argv[2:]]
    if command == "chart" and len(args) == 1:
        findings = cmd_chart(args[0])
    elif command == "kustomize" and len(args) == 2:
        findings = cmd_kustomize(*args)
    elif command == "k8s-base" and len(args) == 2:
        findings = cmd_k8s_base(*args)
    elif command == "dockerfile" and len(args) == 1:
        findings = cmd_dockerfile(args[0])
    elif command == "render" and len(args) >= 2:
        findings = cmd_render(args[0], args[1], args[2:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for finding in findings:
        print(f"FAIL {finding}")
    if findings:
        print(f"{command}: {len(findings)} finding(s)")
        return 1
    print(f"{command}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
