#!/usr/bin/env python3
"""Deployment smoke test: runs what charts/itsm configures, as local processes.

    deploy_smoke.py --itsm <binary> --admin-url <postgres admin URL> [--chart charts/itsm]

1. Creates one fresh PostgreSQL database per service on the admin URL's server.
2. Renders the chart (Helm SDK, as an install) with values that only say what differs on this
   machine -- each service's database.url (the chart keeps them in Secrets), a free port per
   service (services.<name>.port) and for the web console (console.port), and listenHost
   127.0.0.1 -- plus the `settings` of
   ci/prod-values.yaml (so every setting it passes must be one the binary accepts), and reads the
   rendered objects.
3. Runs the pre-install hook Job (`itsm migrate <service>` per container), then every
   Deployment's container: its command (the image's entrypoint `itsm` when none) and args, and
   exactly its env -- values, $(VAR) references, secretKeyRef/configMapKeyRef resolved from the
   rendered Secrets/ConfigMaps, fieldRef from a made-up pod. Nothing of this process's own
   environment is passed on except PATH.
   The one rewrite is cluster DNS: an env value `http://<Service>:<port>` must name a rendered
   Service and one of its ports; it becomes http://127.0.0.1:<the containerPort that Service
   port targets in the Deployment its selector picks>. Every rewrite is printed.
4. Waits until every container's gRPC startup/readiness/liveness probe (port and service as
   rendered) answers SERVING, and until the gateway reports every public backend SERVING (the
   gateway's upstream addresses work). When the gateway serves the web console, its sign-in page
   must answer 200 through the gateway Service's `http-console` port, with Secure cookies exactly
   when ITSM__CONSOLE__SECURE_COOKIES is true.
5. Mints a token with the rendered JWT secret, issuer and audience, creates a CI through the
   gateway with `itsm cmdb ci create` and finds it again with `itsm cmdb ci list`.
6. Stops everything with SIGTERM (as the kubelet would), expects a clean exit, drops the databases.

A wrong port, env name, secret key, argument or upstream address in the chart fails it.
"""

from __future__ import annotations

import argparse
import base64
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import grpc
import helm_python
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = pathlib.Path(__file__).resolve().parent.parent
RELEASE = "itsm"
NAMESPACE = "itsm-smoke"
SERVING = health_pb2.HealthCheckResponse.SERVING
IMAGE_ENTRYPOINT = "/usr/local/bin/itsm"  # docker/Dockerfile ENTRYPOINT


def log(message: str) -> None:
    print(f"smoke: {message}", flush=True)


class Failure(Exception):
    pass


# ---- PostgreSQL ---------------------------------------------------------------------------------

def psql(admin_url: str, sql: str) -> None:
    subprocess.run(["psql", admin_url, "-w", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                   check=True, capture_output=True, text=True)


def database_url(admin_url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


# ---- rendering ----------------------------------------------------------------------------------

def free_ports(count: int) -> list[int]:
    socks, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def render(chart: pathlib.Path, values: dict) -> list[dict]:
    with helm_python.Chart.load(str(chart)) as loaded:
        rendered = loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objs = []
    for path, manifest in sorted(rendered.items()):
        if not path.endswith("NOTES.txt"):
            objs.extend(d for d in yaml.safe_load_all(manifest) if d)
    return objs


class Cluster:
    """The rendered objects, and what a cluster would resolve from them."""

    def __init__(self, objs: list[dict]):
        self.objs = objs
        self.secrets: dict[str, dict[str, str]] = {}
        self.configmaps: dict[str, dict[str, str]] = {}
        for o in objs:
            name = o["metadata"]["name"]
            if o["kind"] == "Secret":
                data = {k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()}
                data.update(o.get("stringData") or {})
                self.secrets[name] = data
            elif o["kind"] == "ConfigMap":
                self.configmaps[name] = dict(o.get("data") or {})

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objs if o["kind"] == kind]

    def key_ref(self, store: dict, what: str, ref: dict) -> str | None:
        if ref["name"] not in store:
            if ref.get("optional"):
                return None
            raise Failure(f"{what} {ref['name']} is referenced but not rendered (the chart must create it "
                          f"or the values name an existing one)")
        if ref["key"] not in store[ref["name"]]:
            if ref.get("optional"):
                return None
            raise Failure(f"{what} {ref['name']} has no key {ref['key']!r} (it has {sorted(store[ref['name']])})")
        return store[ref["name"]][ref["key"]]

    def container_port(self, service: dict, port: int) -> int:
        """The containerPort behind <Service>:<port>, as kube-proxy would route it."""
        sport = next((p for p in service["spec"]["ports"] if p["port"] == port), None)
        if sport is None:
            raise Failure(f"Service {service['metadata']['name']} has no port {port} "
                          f"(it has {[p['port'] for p in service['spec']['ports']]})")
        target = sport.get("targetPort", port)
        selector = service["spec"].get("selector") or {}
        picked = [d for d in self.of_kind("Deployment")
                  if selector and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        if len(picked) != 1:
            raise Failure(f"Service {service['metadata']['name']} selects {len(picked)} Deployments")
        for c in picked[0]["spec"]["template"]["spec"]["containers"]:
            for p in c.get("ports", []):
                if (isinstance(target, int) and p["containerPort"] == target) or p.get("name") == target:
                    return p["containerPort"]
        raise Failure(f"Service {service['metadata']['name']} targets port {target!r}, which no container "
                      f"of Deployment {picked[0]['metadata']['name']} declares")

    def service_named(self, host: str) -> dict | None:
        names = {host}
        for suffix in (f".{NAMESPACE}.svc.cluster.local", f".{NAMESPACE}.svc", f".{NAMESPACE}"):
            if host.endswith(suffix):
                names.add(host[: -len(suffix)])
        return next((s for s in self.of_kind("Service") if s["metadata"]["name"] in names), None)


URL = re.compile(r"^(https?)://([^/:]+):(\d+)(/.*)?$")
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def resolve_env(cluster: Cluster, pod_name: str, container: dict) -> dict[str, str]:
    """The container's environment as the kubelet would build it (later entries win)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "secretRef" in source:
            env.update({prefix + k: v for k, v in cluster.secrets[source["secretRef"]["name"]].items()})
        if "configMapRef" in source:
            env.update({prefix + k: v for k, v in cluster.configmaps[source["configMapRef"]["name"]].items()})
    fields = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE, "spec.nodeName": "localhost",
              "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1", "spec.serviceAccountName": "default"}
    for var in container.get("env", []):
        name = var["name"]
        if "valueFrom" in var:
            ref = var["valueFrom"]
            if "secretKeyRef" in ref:
                value = cluster.key_ref(cluster.secrets, "Secret", ref["secretKeyRef"])
            elif "configMapKeyRef" in ref:
                value = cluster.key_ref(cluster.configmaps, "ConfigMap", ref["configMapKeyRef"])
            elif "fieldRef" in ref:
                path = ref["fieldRef"]["fieldPath"]
                if path not in fields:
                    raise Failure(f"env {name}: fieldRef {path} is not emulated here")
                value = fields[path]
            else:
                raise Failure(f"env {name}: valueFrom {sorted(ref)} is not emulated here")
            if value is None:
                continue
        else:
            raw = var.get("value", "")
            value = VAR_REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), raw)
        env[name] = value
    return env


def rewrite_cluster_dns(cluster: Cluster, where: str, env: dict[str, str]) -> None:
    for name, value in env.items():
        match = URL.match(value)
        if not match:
            continue
        scheme, host, port, rest = match.group(1), match.group(2), int(match.group(3)), match.group(4) or ""
        if host in ("127.0.0.1", "localhost"):
            continue
        service = cluster.service_named(host)
        if service is None:
            if name.startswith("ITSM__UPSTREAM__"):
                raise Failure(f"{where}: {name}={value} names no rendered Service")
            continue  # an address outside the release (e.g. an OTLP collector)
        local = f"{scheme}://127.0.0.1:{cluster.container_port(service, port)}{rest}"
        log(f"{where}: {name}={value} -> {local}")
        env[name] = local


def command_of(container: dict, itsm: str) -> list[str]:
    command = list(container.get("command") or [IMAGE_ENTRYPOINT])
    if command[0] not in (IMAGE_ENTRYPOINT, "itsm"):
        raise Failure(f"container {container['name']}: command {command} is not the image's itsm binary")
    return [itsm] + command[1:] + list(container.get("args") or [])


# ---- processes ----------------------------------------------------------------------------------

class Process:
    def __init__(self, label: str, argv: list[str], env: dict[str, str], workdir: pathlib.Path):
        self.label = label
        self.argv = argv
        self.log_path = workdir / f"{label}.log"
        self.cwd = workdir / label
        self.cwd.mkdir()
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.cwd)}
        full_env.update(env)
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, env=full_env, cwd=self.cwd, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, lines: int = 25) -> str:
        self.log_file.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(f"    {self.label}| {line}" for line in text[-lines:])

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, grace: float) -> int | None:
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        self.log_file.close()
        return self.proc.returncode


def health(port: int, service: str, timeout: float = 1.0) -> int | None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
            return reply.status
        except grpc.RpcError:
            return None


def http_get(port: int, path: str, timeout: float = 1.0) -> tuple[int | None, list[str]]:
    """(status, Set-Cookie headers) of GET http://127.0.0.1:<port><path>; (None, []) while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
            return reply.status, reply.headers.get_all("Set-Cookie") or []
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get_all("Set-Cookie") or []
    except (urllib.error.URLError, OSError):
        return None, []


def wait_until(what: str, check, deadline: float, processes: list[Process]) -> None:
    while True:
        for p in processes:
            if p.proc.poll() is not None:
                raise Failure(f"{p.label} exited with status {p.proc.returncode} while waiting for {what}:\n{p.tail()}")
        if check():
            return
        if time.monotonic() > deadline:
            raise Failure(f"timed out waiting for {what}")
        time.sleep(0.3)


def public_services() -> list[tuple[str, str]]:
    text = (ROOT / "proto" / "src" / "lib.rs").read_text()
    block = text[text.index("PUBLIC_SERVICES"):]
    block = block[: block.index("];")]
    return re.findall(r'\("([\w.]+)",\s*"([\w-]+)"\)', block)


# ---- the run ------------------------------------------------------------------------------------

def run(args: argparse.Namespace, workdir: pathlib.Path, created: list[str]) -> None:
    chart = pathlib.Path(args.chart)
    with helm_python.Chart.load(str(chart)) as loaded:
        defaults = loaded.merge_values({})
    names = [n for n, s in defaults["services"].items() if s.get("enabled", True)]
    ports = free_ports(len(names) + 1)
    console_port = ports.pop()
    suffix = uuid.uuid4().hex[:8]
    values: dict = {"listenHost": "127.0.0.1", "services": {}, "console": {"port": console_port}}
    # The settings of the production-like values too (ITSM__SECTION__KEY variables): the binary
    # must accept every one of them.
    prod_file = chart / "ci" / "prod-values.yaml"
    prod = helm_python.values_from_yaml(prod_file.read_text()) if prod_file.exists() else {}
    if "settings" in prod:
        values["settings"] = prod["settings"]
    for name, port in zip(names, ports):
        database = f"itsm_smoke_{suffix}_{name.replace('-', '_')}"
        psql(args.admin_url, f'CREATE DATABASE "{database}"')
        created.append(database)
        values["services"][name] = {"port": port, "database": {"url": database_url(args.admin_url, database)}}
        if "settings" in prod.get("services", {}).get(name, {}):
            values["services"][name]["settings"] = prod["services"][name]["settings"]
    log(f"databases: {', '.join(created)}")
    log(f"values: listenHost=127.0.0.1, ports {dict(zip(names, ports))}, console.port {console_port}, "
        f"database.url per service, the settings of {prod_file.name}")

    cluster = Cluster(render(chart, values))
    deployments = cluster.of_kind("Deployment")
    hooks = [o for o in cluster.objs if "helm.sh/hook" in o["metadata"].get("annotations", {})]
    hook_names = ", ".join(f"{h['kind']}/{h['metadata']['name']}" for h in hooks)
    log(f"rendered {len(cluster.objs)} objects: {len(deployments)} Deployments; hooks: {hook_names}")
    if sorted(d["metadata"]["name"] for d in deployments) != sorted(f"{RELEASE}-{n}" for n in names):
        raise Failure(f"expected one Deployment per enabled service {names}")

    # Helm: pre-install hooks by weight. The Secrets are data here; the Jobs run.
    jobs = sorted((h for h in hooks if h["kind"] == "Job"),
                  key=lambda h: int(h["metadata"]["annotations"].get("helm.sh/hook-weight", "0")))
    for job in jobs:
        phases = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
        if "pre-install" not in phases:
            raise Failure(f"Job {job['metadata']['name']} is not a pre-install hook ({phases})")
        spec = job["spec"]["template"]["spec"]
        runs = []
        for c in spec.get("initContainers", []) + spec["containers"]:
            env = resolve_env(cluster, f"{job['metadata']['name']}-smoke", c)
            runs.append(Process(f"job-{c['name']}", command_of(c, args.itsm), env, workdir))
            log(f"job {job['metadata']['name']}: {' '.join(runs[-1].argv[1:])}")
        for p in runs:
            try:
                p.proc.wait(args.timeout)
            except subprocess.TimeoutExpired:
                p.stop(1)
                raise Failure(f"{p.label} did not finish in {args.timeout} s:\n{p.tail()}")
            if p.proc.returncode != 0:
                raise Failure(f"{p.label} failed with status {p.proc.returncode}:\n{p.tail()}")
            log(f"{p.label}: ok ({p.tail(1).strip()})")

    # A service that does not migrate at start-up must find its schema made by the Job.
    for d in deployments:
        for c in d["spec"]["template"]["spec"]["containers"]:
            env = resolve_env(cluster, "check", c)
            if env.get("ITSM__DATABASE__MIGRATE_ON_START", "true") != "false":
                continue
            url = env.get("ITSM__DATABASE__URL", "")
            check = subprocess.run(["psql", url, "-w", "-X", "-q", "-t", "-A", "-c", "select count(*) from seaql_migrations"],
                                   capture_output=True, text=True)
            if check.returncode != 0 or not check.stdout.strip().isdigit() or int(check.stdout) == 0:
                raise Failure(f"{d['metadata']['name']} starts with database.migrate_on_start=false, but no hook Job "
                              f"migrated its database: {check.stderr.strip() or 'no migrations recorded'}")
            log(f"{d['metadata']['name']}: {int(check.stdout)} migrations applied by the Job")

    processes: list[Process] = []
    probes: list[tuple[str, int, str]] = []
    gateway_port = None
    try:
        for d in deployments:
            dname = d["metadata"]["name"]
            spec = d["spec"]["template"]["spec"]
            if spec.get("initContainers"):
                raise Failure(f"{dname}: init containers are not emulated")
            for c in spec["containers"]:
                env = resolve_env(cluster, f"{dname}-smoke", c)
                rewrite_cluster_dns(cluster, dname, env)
                p = Process(dname, command_of(c, args.itsm), env, workdir)
                processes.append(p)
                log(f"started {dname}: {' '.join(p.argv[1:])} ({len(env)} env vars)")
                declared = {port["containerPort"] for port in c.get("ports", [])}
                for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                    grpc_probe = (c.get(kind) or {}).get("grpc")
                    if grpc_probe is None:
                        raise Failure(f"{dname}: {kind} is not a gRPC probe")
                    if grpc_probe["port"] not in declared:
                        raise Failure(f"{dname}: {kind} port {grpc_probe['port']} is not a containerPort {sorted(declared)}")
                    probes.append((f"{dname} {kind}", grpc_probe["port"], grpc_probe.get("service", "")))
                if d["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway":
                    # The address clients use: the gateway Service's port, routed as kube-proxy would.
                    gateway_service = cluster.service_named(dname)
                    if gateway_service is None:
                        raise Failure(f"no Service {dname}")
                    gateway_port = cluster.container_port(gateway_service, gateway_service["spec"]["ports"][0]["port"])
                    gateway_env = env
        deadline = time.monotonic() + args.timeout
        for label, port, service in probes:
            wait_until(f"{label} (127.0.0.1:{port}, service {service!r}) to be SERVING",
                       lambda: health(port, service) == SERVING, deadline, processes)
        log(f"all {len(probes)} probes of {len(processes)} containers answer SERVING")

        if gateway_port is None:
            raise Failure("no gateway Deployment")
        backends = [s for s, owner in public_services() if owner != "gateway" and owner in names]
        for service in backends:
            wait_until(f"the gateway to report {service} SERVING",
                       lambda: health(gateway_port, service) == SERVING, deadline, processes)
        log(f"the gateway reports all {len(backends)} backend services SERVING")

        if gateway_env.get("ITSM__CONSOLE__ENABLED", "true").lower() != "false":
            # The console's address as a browser behind the Ingress reaches it: the gateway
            # Service's http-console port, routed as kube-proxy would.
            sport = next((p for p in gateway_service["spec"]["ports"] if p.get("name") == "http-console"), None)
            if sport is None:
                raise Failure(f"the gateway serves the web console, but Service {gateway_service['metadata']['name']} "
                              f"has no http-console port")
            console_at = cluster.container_port(gateway_service, sport["port"])
            reply: list = [None, []]
            def console_answers() -> bool:
                reply[:] = http_get(console_at, "/login")
                return reply[0] == 200
            try:
                wait_until(f"the web console (127.0.0.1:{console_at}/login) to answer 200",
                           console_answers, deadline, processes)
            except Failure as err:
                raise Failure(f"{err} (last status {reply[0]})") from None
            secure = gateway_env.get("ITSM__CONSOLE__SECURE_COOKIES", "false").lower() == "true"
            cookies = reply[1]
            marked = ["secure" in [a.strip().lower() for a in c.split(";")[1:]] for c in cookies]
            if not cookies or not (all(marked) if secure else not any(marked)):
                raise Failure(f"the web console's cookies {cookies} do not match ITSM__CONSOLE__SECURE_COOKIES="
                              f"{gateway_env.get('ITSM__CONSOLE__SECURE_COOKIES')}")
            log(f"the web console answers at the gateway Service's http-console port (127.0.0.1:{console_at}), "
                f"cookies {'Secure' if secure else 'not Secure'}")

        token_env = {"PATH": os.environ.get("PATH", ""), "ITSM__AUTH__JWT_SECRET": gateway_env["ITSM__AUTH__JWT_SECRET"]}
        token = subprocess.run(
            [args.itsm, "token", "--tenant", "smoke", "--roles", "admin", "--subject", "smoke-test",
             "--issuer", gateway_env.get("ITSM__AUTH__JWT_ISSUER", "itsm"),
             "--audience", gateway_env.get("ITSM__AUTH__JWT_AUDIENCE", "itsm"), "--ttl-hours", "1"],
            env=token_env, cwd=workdir, check=True, capture_output=True, text=True).stdout.strip()
        client_env = {"PATH": os.environ.get("PATH", ""), "ITSM_GATEWAY": f"http://127.0.0.1:{gateway_port}",
                      "ITSM_TOKEN": token}
        display = f"smoke-{suffix}"
        created_ci = subprocess.run(
            [args.itsm, "cmdb", "ci", "create", display, "--class", "server", "--environment", "smoke", "-o", "json"],
            env=client_env, cwd=workdir, capture_output=True, text=True, timeout=30)
        if created_ci.returncode != 0:
            raise Failure(f"itsm cmdb ci create through the gateway failed: {created_ci.stderr.strip()}")
        listed = subprocess.run([args.itsm, "cmdb", "ci", "list", "-o", "json"],
                                env=client_env, cwd=workdir, capture_output=True, text=True, timeout=30)
        if listed.returncode != 0 or display not in listed.stdout:
            raise Failure(f"itsm cmdb ci list through the gateway did not return {display}: "
                          f"{listed.stderr.strip() or listed.stdout[:500]}")
        log(f"created and listed CI {display} through the gateway at 127.0.0.1:{gateway_port} with a token")
    finally:
        failures = []
        # All at once, as when the release is removed; each must exit 0 within the pod's
        # terminationGracePeriodSeconds (30 s).
        for p in processes:
            p.terminate()
        for p in processes:
            status = p.stop(30)
            if status != 0:
                failures.append(f"{p.label} stopped with status {status}:\n{p.tail()}")
        if processes:
            log(f"stopped {len(processes)} processes with SIGTERM")
    if failures:
        raise Failure("\n".join(failures))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--itsm", required=True, help="the itsm binary")
    parser.add_argument("--admin-url", required=True, help="admin URL of the PostgreSQL server")
    parser.add_argument("--chart", default=str(ROOT / "charts" / "itsm"))
    parser.add_argument("--timeout", type=float, default=120, help="seconds each phase may take")
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    args = parser.parse_args()
    args.itsm = str(pathlib.Path(args.itsm).resolve())
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="itsm-deploy-smoke."))
    created: list[str] = []
    status = 0
    try:
        run(args, workdir, created)
        log("passed")
    except (Failure, subprocess.CalledProcessError, helm_python.HelmError) as err:
        detail = getattr(err, "stderr", "") or ""
        print(f"smoke: FAILED: {err}{(': ' + detail.strip()) if detail else ''}", file=sys.stderr)
        print(f"smoke: logs in {workdir}", file=sys.stderr)
        status = 1
    finally:
        for database in created:
            try:
                psql(args.admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            except subprocess.CalledProcessError as err:
                print(f"smoke: could not drop {database}: {err.stderr.strip()}", file=sys.stderr)
                status = 1
        if status == 0 and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
