"""The container image and Kubernetes manifests, checked as far as a machine without Docker,
a cluster or a GPU can: they parse, agree with each other and with the app, and carry the
settings that matter in production."""

from __future__ import annotations

import json
import os
import re
import shlex
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.http.routes import router
from gateway.settings import Settings

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
TRTLLM_CONFIGS = sorted((ROOT / "config").glob("llama-3.1-8b-*.yaml"))
ROUTES = {getattr(route, "path", None) for route in router.routes}


def _dockerfile(path: Path) -> dict[str, list[str]]:
    """Each instruction's arguments, in order, continuation lines joined and comments dropped."""
    instructions: dict[str, list[str]] = {}
    logical = ""
    for line in path.read_text().splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1]
            continue
        keyword, _, arguments = (logical + line).strip().partition(" ")
        instructions.setdefault(keyword.upper(), []).append(arguments.strip())
        logical = ""
    return instructions


DOCKERFILE = _dockerfile(ROOT / "Dockerfile")
DOCKER_ENV = dict(item.split("=", 1) for item in shlex.split(" ".join(DOCKERFILE["ENV"])))


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _resources() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object under deploy/k8s, by kind (one of each here)."""
    by_kind: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in _load_all(path):
            assert doc["kind"] not in by_kind, f"a second {doc['kind']} in {path.name}"
            by_kind[doc["kind"]] = doc
    return by_kind


RESOURCES = _resources()
DEPLOYMENT = RESOURCES["Deployment"]
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]
ENV = {item["name"]: item["value"] for item in CONTAINER["env"]}
(HTTP_PORT,) = CONTAINER["ports"]


def _gateway_config(tmp_path: Path) -> Path:
    """The ConfigMap's gateway YAML, written where the Deployment points GATEWAY_CONFIG."""
    mount = next(m for m in CONTAINER["volumeMounts"] if m["name"] == "config")
    key = Path(ENV["GATEWAY_CONFIG"]).relative_to(mount["mountPath"])
    path = tmp_path / key
    path.write_text(RESOURCES["ConfigMap"]["data"][str(key)])
    return path


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GATEWAY_* variable from the machine running the tests."""
    for name in [name for name in os.environ if name.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def pod_environment(clean_environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly the GATEWAY_* variables the container gets from the Deployment."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


# --- Kubernetes -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifests_parse_as_kubernetes_objects(path: Path) -> None:
    docs = _load_all(path)
    assert docs
    for doc in docs:
        assert {"apiVersion", "kind"} <= doc.keys()
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"]


def test_kustomization_lists_every_manifest() -> None:
    listed = set(RESOURCES["Kustomization"]["resources"])
    on_disk = {path.name for path in MANIFESTS if path.name != "kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize(
    "path", [p for p in MANIFESTS if p.name != "kustomization.yaml"], ids=lambda p: p.name
)
def test_manifests_match_the_kubernetes_schema(path: Path) -> None:
    # Strict: an unknown or misspelled field fails, as kubectl's server-side validation would.
    # The schemas ship inside the package, so this runs offline.
    validator = pytest.importorskip("kubernetes_validate")
    for doc in _load_all(path):
        validator.validate(doc, "1.30", strict=True)


def test_the_configmap_config_loads_as_the_pod_would_load_it(
    tmp_path: Path, pod_environment: None
) -> None:
    settings = Settings.load(_gateway_config(tmp_path))
    assert settings.engine == "trtllm"
    assert (settings.host, settings.port) == ("0.0.0.0", HTTP_PORT["containerPort"])
    assert settings.served_model_name


def test_the_configmap_holds_the_shipped_h100_config() -> None:
    # The file's comments explain the values; the ConfigMap must not drift from them.
    (data,) = RESOURCES["ConfigMap"]["data"].values()
    shipped = (ROOT / "config" / "llama-3.1-8b-fp8-h100.yaml").read_text()
    assert yaml.safe_load(data) == yaml.safe_load(shipped)


@pytest.mark.parametrize(
    ("probe", "path"),
    [("startupProbe", "/health"), ("livenessProbe", "/health"), ("readinessProbe", "/ready")],
)
def test_probes_hit_the_app_routes_on_the_container_port(probe: str, path: str) -> None:
    get = CONTAINER[probe]["httpGet"]
    assert get["path"] == path
    assert path in ROUTES
    assert get["port"] in (HTTP_PORT["name"], HTTP_PORT["containerPort"])


def test_the_startup_probe_waits_for_model_loading() -> None:
    probe = CONTAINER["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 600


def test_the_container_listens_where_probes_and_service_look() -> None:
    assert ENV["GATEWAY_HOST"] == "0.0.0.0"
    assert int(ENV["GATEWAY_PORT"]) == HTTP_PORT["containerPort"]
    service = RESOURCES["Service"]["spec"]
    assert (
        service["selector"].items() <= DEPLOYMENT["spec"]["template"]["metadata"]["labels"].items()
    )
    (port,) = service["ports"]
    assert port["targetPort"] in (HTTP_PORT["name"], HTTP_PORT["containerPort"])


def test_one_gpu_per_parallel_rank(tmp_path: Path, pod_environment: None) -> None:
    trtllm = Settings.load(_gateway_config(tmp_path)).trtllm
    gpus = CONTAINER["resources"]["limits"]["nvidia.com/gpu"]
    assert gpus == trtllm.tensor_parallel_size * trtllm.pipeline_parallel_size


def test_the_model_volume_holds_the_configured_model(tmp_path: Path, pod_environment: None) -> None:
    model = Settings.load(_gateway_config(tmp_path)).model
    assert model is not None
    mount = next(m for m in CONTAINER["volumeMounts"] if m["name"] == "models")
    assert model.is_relative_to(mount["mountPath"])
    assert mount["readOnly"] is True
    volume = next(v for v in POD["volumes"] if v["name"] == "models")
    assert volume["persistentVolumeClaim"]["readOnly"] is True


def test_the_config_volume_is_the_configmap() -> None:
    volume = next(v for v in POD["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == RESOURCES["ConfigMap"]["metadata"]["name"]


def test_shared_memory_is_memory_backed_and_bounded() -> None:
    mount = next(m for m in CONTAINER["volumeMounts"] if m["mountPath"] == "/dev/shm")
    volume = next(v for v in POD["volumes"] if v["name"] == mount["name"])
    assert volume["emptyDir"]["medium"] == "Memory"
    assert volume["emptyDir"]["sizeLimit"]


def test_runs_as_the_image_user_without_privileges() -> None:
    security = POD["securityContext"]
    assert security["runAsNonRoot"] is True
    assert str(security["runAsUser"]) == DOCKERFILE["USER"][-1].split(":")[0]
    assert CONTAINER["securityContext"]["allowPrivilegeEscalation"] is False
    assert CONTAINER["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_shutdown_drains_before_the_grace_period_ends() -> None:
    command = CONTAINER["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    # The rest of the grace period is what in-flight streams get after SIGTERM.
    assert POD["terminationGracePeriodSeconds"] >= int(command[1]) + 60


# --- Dockerfile -----------------------------------------------------------------------------


def test_the_base_image_is_a_pinned_trtllm_1x_release() -> None:
    (base,) = DOCKERFILE["FROM"]
    assert re.fullmatch(r"nvcr\.io/nvidia/tensorrt-llm/release:1\.\d+\.\d+", base)


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    user, _, group = DOCKERFILE["USER"][-1].partition(":")
    assert user.isdigit() and int(user) != 0
    assert group.isdigit() and int(group) != 0


def test_the_image_serves_on_the_exposed_port_on_all_interfaces() -> None:
    assert DOCKERFILE["EXPOSE"] == [DOCKER_ENV["GATEWAY_PORT"]]
    assert DOCKER_ENV["GATEWAY_HOST"] == "0.0.0.0"
    assert DOCKER_ENV["GATEWAY_PORT"] == str(HTTP_PORT["containerPort"])


def test_the_healthcheck_asks_health_on_the_configured_port() -> None:
    (check,) = DOCKERFILE["HEALTHCHECK"]
    assert "--start-period=" in check
    assert "/health" in check and "GATEWAY_PORT" in check
    assert "/health" in ROUTES


def test_the_command_serves_the_gateway() -> None:
    (command,) = DOCKERFILE["CMD"]
    assert json.loads(command)[:2] == ["trtllm-gateway", "serve"]
    assert "ENTRYPOINT" not in DOCKERFILE  # NVIDIA's entrypoint stays in front


def test_the_default_config_is_copied_into_the_image(clean_environment: None) -> None:
    default = Path(DOCKER_ENV["GATEWAY_CONFIG"])
    sources = [
        source
        for copy in DOCKERFILE["COPY"]
        if copy.split()[-1].rstrip("/") == str(default.parent)
        for source in copy.split()[:-1]
    ]
    assert any(fnmatch(f"config/{default.name}", source) for source in sources)
    assert Settings.load(ROOT / "config" / default.name).engine == "trtllm"


def test_the_image_installs_the_gateway_without_the_embedded_extra() -> None:
    installs = [run for run in DOCKERFILE["RUN"] if "pip install" in run]
    assert installs
    assert not any("embedded" in run or "[dev]" in run for run in installs)


def test_the_build_context_holds_exactly_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"  # an allowlist: .git, .venv, caches and models stay out
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {source.split("/")[0] for copy in DOCKERFILE["COPY"] for source in copy.split()[:-1]}
    assert allowed == copied
    assert "**/__pycache__" in patterns


# --- Shipped TensorRT-LLM configs -----------------------------------------------------------


@pytest.mark.parametrize("path", TRTLLM_CONFIGS, ids=lambda path: path.name)
def test_trtllm_configs_name_a_mounted_model(path: Path, clean_environment: None) -> None:
    settings = Settings.load(path)
    assert settings.engine == "trtllm"
    assert settings.served_model_name == "llama-3.1-8b-instruct"
    assert settings.model is not None and settings.model.is_relative_to("/models")
    engine_dir = settings.trtllm.engine_dir
    assert engine_dir is None or engine_dir.is_relative_to("/models")


@pytest.mark.parametrize("path", TRTLLM_CONFIGS, ids=lambda path: path.name)
def test_chunked_prefill_steps_are_whole_kv_blocks(path: Path, clean_environment: None) -> None:
    # TensorRT-LLM asks for max_num_tokens as a multiple of the KV block size (32 or 64 tokens
    # by default) once prompts are chunked.
    trtllm = Settings.load(path).trtllm
    if trtllm.enable_chunked_prefill and trtllm.max_num_tokens is not None:
        assert trtllm.max_num_tokens % 64 == 0


def test_tensor_parallel_config_uses_the_worker_processes(clean_environment: None) -> None:
    trtllm = Settings.load(ROOT / "config" / "llama-3.1-8b-tp2.yaml").trtllm
    assert trtllm.tensor_parallel_size == 2
    assert trtllm.single_process is False


@pytest.mark.parametrize("name", ["llama-3.1-8b-engine-1.2", "llama-3.1-8b-int8-wo-engine-1.2"])
def test_engine_configs_leave_the_built_limits_alone(name: str, clean_environment: None) -> None:
    trtllm = Settings.load(ROOT / "config" / f"{name}.yaml").trtllm
    assert trtllm.engine_dir is not None
    assert (trtllm.max_seq_len, trtllm.max_batch_size, trtllm.max_num_tokens) == (None,) * 3
