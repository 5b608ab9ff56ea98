"""deploy/ holds together: every file, setting, command and port it names exists and agrees.

No container engine or cluster runs here (see README "Deploy"): these checks read the compose
file, the Dockerfile and the Kubernetes manifests, load their settings through the service's
own settings classes, and parse their commands with the real CLI.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import BaseModel

from streamvae.cli import app
from streamvae.config import ServeSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
IMAGE_CONFIG_DIR = "/etc/streamvae"  # where the Dockerfile copies configs/


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


def _setting_exists(env_name: str) -> bool:
    """Whether STREAMVAE_SECTION__KEY names a real ServeSettings field."""
    model: type[BaseModel] = ServeSettings
    parts = env_name.removeprefix("STREAMVAE_").lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if i < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def _parse_cli(args: list[str]) -> Any:
    """Parse a container's arguments with the real CLI (options, types), without running."""
    group = typer.main.get_command(app)
    command = group.commands.get(args[0])  # type: ignore[attr-defined]
    assert command is not None, f"unknown command {args[0]!r}"
    return command.make_context(args[0], list(args[1:]))


def _config_in_image(args: list[str]) -> Path | None:
    """The repository file behind ``-c /etc/streamvae/X`` (the image copies configs/ there)."""
    if "-c" not in args:
        return None
    path = args[args.index("-c") + 1]
    if path.startswith(f"{IMAGE_CONFIG_DIR}/k8s/"):
        return None  # mounted from the ConfigMap, checked separately
    assert path.startswith(f"{IMAGE_CONFIG_DIR}/"), path
    return ROOT / "configs" / path.removeprefix(f"{IMAGE_CONFIG_DIR}/")


# ---------------------------------------------------------------------------------- compose


def test_compose_runs_the_whole_stack():
    services = _compose()["services"]
    assert {"kafka", "kafka-topics", "postgres", "mlflow", "trainer", "streamvae", "prometheus",
            "grafana"} <= set(services)  # fmt: skip
    kafka_env = services["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"], "KRaft: no ZooKeeper"
    assert "zookeeper" not in services
    mlflow_args = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri=postgresql://" in mlflow_args
    assert "--artifacts-destination=" in mlflow_args and "--serve-artifacts" in mlflow_args
    after = services["streamvae"]["depends_on"]
    assert after["trainer"]["condition"] == "service_completed_successfully"
    assert after["kafka-topics"]["condition"] == "service_completed_successfully"


def test_compose_files_builds_and_mounts_exist():
    compose = _compose()
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = DEPLOY / build["context"]
            assert context.is_dir(), f"{name}: build context {context}"
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for env_file in service.get("env_file", []):
            assert (DEPLOY / env_file).is_file(), f"{name}: env_file {env_file}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: mount {source}"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
        for dependency in service.get("depends_on", []):
            assert dependency in compose["services"], f"{name} depends on unknown {dependency}"


def test_compose_service_settings_load_and_point_at_the_stack(monkeypatch):
    env = _env_file(DEPLOY / "config" / "serve.env")
    unknown = [k for k in env if k.startswith("STREAMVAE_") and not _setting_exists(k)]
    assert not unknown, f"env names no setting reads: {unknown}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(ServeSettings, ROOT / "configs" / "serve.yaml")
    services = _compose()["services"]
    host, port = settings.kafka.bootstrap_servers.split(":")
    assert (
        host == "kafka"
        and f"PLAINTEXT://{host}:{port}"
        in (services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"])
    )
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert (
        settings.metrics_host == "0.0.0.0"
        and str(settings.metrics_port) in (services["streamvae"]["expose"])
    )
    topics = services["kafka-topics"]["command"][0]
    kafka = settings.kafka
    for topic in (kafka.input_topic, kafka.alert_topic, kafka.dead_letter_topic,
                  f"{kafka.input_topic}-state"):  # fmt: skip
        assert f"--topic {topic} " in topics, f"topic {topic} is not created"


def test_compose_commands_parse_with_the_real_cli():
    for name, service in _compose()["services"].items():
        if service.get("image", "").startswith("streamvae:"):
            args = service["command"]
            _parse_cli(args)
            config = _config_in_image(args)
            assert config is None or config.is_file(), f"{name}: {config}"


def test_prometheus_scrapes_the_service_port_and_grafana_finds_prometheus():
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "streamvae")
    assert job["dns_sd_configs"][0]["names"] == ["streamvae"]
    assert job["dns_sd_configs"][0]["port"] == 9108
    assert (DEPLOY / "prometheus" / prom["rule_files"][0]).is_file()
    sources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "streamvae.yml").read_text()
    )
    grafana_mounts = dict(v.split(":")[:2] for v in _compose()["services"]["grafana"]["volumes"])
    assert grafana_mounts["./grafana/dashboards"] == providers["providers"][0]["options"]["path"]


# ------------------------------------------------------------------------------- Dockerfile


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = path.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_copies_what_exists_and_serves_the_metrics_port():
    dockerfile = DEPLOY / "docker" / "Dockerfile"
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    instructions = _dockerfile_instructions(dockerfile)
    for op, arg in instructions:
        if op == "COPY" and "--from=" not in arg:
            *sources, _ = shlex.split(arg)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"
    assert ("EXPOSE", "9108") in instructions
    assert ("ENTRYPOINT", '["streamvae"]') in instructions
    cmd = yaml.safe_load(next(arg for op, arg in instructions if op == "CMD"))
    _parse_cli(cmd)
    assert _config_in_image(cmd) == ROOT / "configs" / "serve.yaml"
    health = next(arg for op, arg in instructions if op == "HEALTHCHECK")
    assert "/healthz" in health


# ------------------------------------------------------------------------------- Kubernetes


def _manifests() -> list[dict[str, Any]]:
    """The rendered base (kubectl kustomize when present, else the listed files)."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run(
            [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60,
            check=True,
        ).stdout  # fmt: skip
        return [d for d in yaml.safe_load_all(out) if d]
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    return [d for name in listed for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def test_every_manifest_is_well_formed():
    docs = _manifests() + [
        yaml.safe_load(p.read_text()) for p in sorted((K8S / "optional").glob("*.yaml"))
    ]
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert doc["metadata"].get("name"), doc
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "Job",
            "ScaledObject"} <= kinds  # fmt: skip


def test_the_configmap_is_valid_serve_settings(monkeypatch):
    docs = _manifests()
    config = yaml.safe_load(_one(docs, "ConfigMap")["data"]["serve.yaml"])
    settings = ServeSettings.model_validate(config)
    assert settings.metrics_host == "0.0.0.0"
    container = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == settings.metrics_port
    for env in container.get("env", []):
        name = env["name"]
        assert not name.startswith("STREAMVAE_") or _setting_exists(name), name


def test_the_deployment_probes_serves_and_parses():
    docs = _manifests()
    deployment = _one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "metrics"
    args = container["args"]
    _parse_cli(args)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert args[args.index("-c") + 1].startswith(mount["mountPath"] + "/")
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _one(docs, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert _one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= (
        labels.items()
    )
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    writable = {m["mountPath"] for m in container["volumeMounts"]}
    config = yaml.safe_load(_one(docs, "ConfigMap")["data"]["serve.yaml"])
    assert config["tracking"]["work_dir"] in writable, "the bundle cache needs a writable dir"


def test_the_trainer_job_and_the_lag_scaler_point_at_real_things():
    docs = _manifests()
    job = _one(docs, "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    _parse_cli(args)
    config = _config_in_image(args)
    assert config is not None and config.is_file()
    scaled = yaml.safe_load((K8S / "optional" / "keda-scaledobject.yaml").read_text())
    deployment = _one(docs, "Deployment")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    trigger = scaled["spec"]["triggers"][0]["metadata"]
    serve = yaml.safe_load(_one(docs, "ConfigMap")["data"]["serve.yaml"])
    assert trigger["consumerGroup"] == serve["kafka"]["group_id"]
    assert trigger["topic"] == serve["kafka"]["input_topic"]


@pytest.mark.parametrize(
    "name", ["STREAMVAE_KAFKA__BOOTSTRAP_SERVERS", "STREAMVAE_METRICS_PORT", "STREAMVAE_DEVICE"]
)
def test_setting_names_are_checked(name):
    assert _setting_exists(name)
    assert not _setting_exists(name + "X")
