"""Deployment files: the compose file against the Compose spec, and every name they use against the code."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from deploy.local.cluster import ensure_nginx, nginx_conf, render_site

from .harness import ROOT

CACHE = ROOT / ".cache" / "compose-spec"


def config_variables() -> set[str]:
    """Every environment variable the service reads (service/config.py is the only reader)."""
    source = (ROOT / "service" / "config.py").read_text()
    return set(re.findall(r'"([A-Z][A-Z0-9_]+)"', source)) - {"ROOT"}


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema, as shipped in the docker-compose wheel on PyPI (cached)."""
    schema = CACHE / "compose_spec.json"
    if not schema.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "docker-compose==1.29.2", "-d", str(CACHE)],
            check=True,
        )  # fmt: skip
        wheel = next(CACHE.glob("docker_compose-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            schema.write_bytes(archive.read("compose/config/compose_spec.json"))
    return yaml.safe_load(schema.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_compose_file_follows_the_compose_specification(compose, compose_schema) -> None:
    jsonschema.Draft201909Validator(compose_schema).validate(compose)


def test_compose_runs_a_three_member_replica_set_two_instances_nginx_and_the_emulator(compose) -> None:
    services = compose["services"]
    members = [name for name, s in services.items() if s.get("image", "").startswith("mongo:") and name != "mongo-init"]
    assert len(members) == 3
    for name in members:
        major = int(services[name]["image"].split(":")[1].split(".")[0])
        assert major >= 6, "change-stream pre- and post-images need MongoDB 6.0"
        assert "--replSet" in services[name]["command"]
    init = " ".join(services["mongo-init"]["command"])
    assert all(f"{name}:27017" in init for name in members) and "rs.initiate" in init
    apps = {name: s for name, s in services.items() if "INSTANCE_NAME" in s.get("environment", {})}
    assert sorted(apps) == ["app-a", "app-b"]
    for app in apps.values():
        env = app["environment"]
        assert set(env) <= config_variables(), set(env) - config_variables()
        hosts = re.match(r"mongodb://([^/]+)/", env["MONGO_URL"]).group(1).split(",")
        assert sorted(h.split(":")[0] for h in hosts) == sorted(members) and "replicaSet=rs0" in env["MONGO_URL"]
        assert app["depends_on"]["mongo-init"]["condition"] == "service_completed_successfully"
        gateway = re.match(r"http://(\w+):(\d+)$", env["BRAINTREE_ENVIRONMENT"])
        assert gateway and gateway.group(1) in services
        assert ["--port", gateway.group(2)] == services[gateway.group(1)]["command"][-2:]
        assert env["HOST"] == "0.0.0.0"
    assert services["nginx"]["ports"] == ["8000:80"]


def test_the_compose_nginx_config_is_the_template_rendered_for_the_instances(compose) -> None:
    services = compose["services"]
    mount = next(v for v in services["nginx"]["volumes"] if v.endswith("/etc/nginx/conf.d/default.conf:ro"))
    site = (ROOT / mount.split(":")[0]).read_text()
    upstreams = [f"{name}:{services[name]['environment']['PORT']}" for name in ("app-a", "app-b")]
    assert site.split("\n", 1)[1] == render_site("80", upstreams)


def test_the_nginx_template_is_valid_for_debians_nginx(tmp_path: Path) -> None:
    nginx = ensure_nginx()
    site = tmp_path / "site.conf"
    site.write_text(render_site("127.0.0.1:18080", ["127.0.0.1:18081", "127.0.0.1:18082"]))
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(site, tmp_path))
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_image_is_slim_non_root_health_checked_and_carries_the_code() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", dockerfile, re.M)
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    for package in ("service", "handlers", "models", "deploy"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert re.search(r'^CMD \["python", "-m", "service"\]', dockerfile, re.M)
    # Under an init: as PID 1 the service would drop a SIGTERM that comes before its handler is in.
    assert re.search(r'^ENTRYPOINT \["tini", "--"\]', dockerfile, re.M)
    assert "install -y --no-install-recommends tini" in dockerfile


def test_the_kubernetes_manifests_probe_health_and_name_only_real_settings() -> None:
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all((ROOT / "deploy/k8s/murmuration.yaml").read_text())}
    assert {"ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"} <= set(docs)
    names = set(docs["ConfigMap"]["data"]) | set(docs["Secret"]["stringData"])
    assert names <= config_variables(), names - config_variables()
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    assert container["ports"][0]["containerPort"] == int(docs["ConfigMap"]["data"]["PORT"])
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert docs["Service"]["spec"]["selector"] == labels
    # X-Forwarded-For is trusted only because the manifest puts its one proxy in front: the Ingress.
    ingress = docs["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert ingress["name"] == docs["Service"]["metadata"]["name"]
    assert docs["ConfigMap"]["data"]["PROXIES_COUNT"] == "1"


def test_the_systemd_unit_runs_the_service_with_real_settings() -> None:
    unit = (ROOT / "deploy/systemd/murmuration@.service").read_text()
    assert "ExecStart=/opt/murmuration/.venv/bin/python -m service" in unit
    assert "KillSignal=SIGTERM" in unit
    for line in re.findall(r"^Environment=(.*)$", unit, re.M):
        assert {pair.split("=")[0] for pair in line.split()} <= config_variables()
