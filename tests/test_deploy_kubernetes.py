"""deploy/kubernetes: every manifest validates strictly, the kustomization renders, and the
Deployment agrees with the config.toml it mounts (threads, ports, shutdown bound, probes).

Core kinds: ``kubernetes-validate --strict`` with its bundled schemas for Kubernetes
:data:`K8S`. The ServiceMonitor (a prometheus-operator CRD, unknown to kubernetes-validate):
the JSON Schema derived from the CRD-generated models (deploy/kubernetes/schemas/derive.py),
made strict the same way. Rendering: ``kubectl kustomize`` (kustomize v5 built into kubectl).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from streamer import config as cfgmod

ROOT = Path(__file__).resolve().parents[1]
K8S_DIR = ROOT / "deploy" / "kubernetes"
K8S = "1.37"
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1"}
TRAINING_DIR = K8S_DIR / "training"
MANIFESTS = sorted(
    p
    for p in [*K8S_DIR.glob("*.yaml"), *TRAINING_DIR.glob("*.yaml")]
    if p.name != "kustomization.yaml"
)


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("kubernetes-validate")
    assert exe.exists(), "kubernetes-validate missing: pip install --group dev"
    return subprocess.run(
        [str(exe), "--strict", "-k", K8S, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_core(path: Path) -> None:
    """Every core resource in ``path`` passes; only the custom kinds may lack a schema."""
    res = kubernetes_validate(path)
    assert res.returncode == 0, res.stdout + res.stderr
    for d in docs(path.read_text()):
        key = (d["apiVersion"], d["kind"])
        name = f"{d['kind'].lower()}/{d['metadata']['name']}"
        if key in CUSTOM:
            assert f"Couldn't find schema for kind {d['kind']}" in res.stdout
        else:
            assert f"passed for resource {name} against version {K8S}" in res.stdout, res.stdout


def strict(schema: Any) -> Any:
    """Reject unknown properties wherever an object lists its properties (as --strict does)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def check_custom(doc: dict[str, Any]) -> None:
    name = CUSTOM[(doc["apiVersion"], doc["kind"])]
    schema = json.loads((K8S_DIR / "schemas" / f"{name}.json").read_text())
    jsonschema.Draft202012Validator(strict(schema)).validate(doc)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S_DIR)))
def test_manifest_validates_strictly(path: Path) -> None:
    check_core(path)
    for d in docs(path.read_text()):
        if (d["apiVersion"], d["kind"]) in CUSTOM:
            check_custom(d)


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    dep = docs((K8S_DIR / "deployment.yaml").read_text())[0]
    dep["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(dep))
    res = kubernetes_validate(bad)
    assert res.returncode != 0 and "livenessprobe" in res.stdout


def test_servicemonitor_schema_rejects_bad_fields() -> None:
    sm = docs((K8S_DIR / "servicemonitor.yaml").read_text())[0]
    for path, value in ((("endpoints", 0, "interval"), "15 seconds"), (("endpoint",), [])):
        bad = copy.deepcopy(sm)
        node = bad["spec"]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            check_custom(bad)


def kustomize(directory: Path = K8S_DIR) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with built-in kustomize) is missing"
    res = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    return docs(res.stdout)


def test_kustomization_lists_existing_files_only() -> None:
    k = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    listed = [*k["resources"], *(f for g in k["configMapGenerator"] for f in g["files"])]
    for name in listed:
        assert (K8S_DIR / name).is_file(), f"kustomization.yaml lists missing {name}"
    # Everything but the example Secret is applied.
    top = {p.name for p in MANIFESTS if p.parent == K8S_DIR}
    assert top - set(listed) == {"secret.example.yaml"}
    t = yaml.safe_load((TRAINING_DIR / "kustomization.yaml").read_text())
    assert {p.name for p in MANIFESTS if p.parent == TRAINING_DIR} == set(t["resources"])


def test_kustomization_renders_and_the_output_validates(tmp_path: Path) -> None:
    rendered = kustomize()
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Namespace",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    )
    out = tmp_path / "rendered.yaml"
    out.write_text(yaml.safe_dump_all(rendered))
    check_core(out)
    by_kind = {d["kind"]: d for d in rendered}
    check_custom(by_kind["ServiceMonitor"])
    cm, dep = by_kind["ConfigMap"], by_kind["Deployment"]
    assert cm["metadata"]["name"].startswith("lstmad-config-")  # content hash: config rolls
    pod = dep["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["config"]["configMap"]["name"] == cm["metadata"]["name"]
    assert cm["data"]["config.toml"] == (K8S_DIR / "config.toml").read_text()
    images = [c["image"] for c in pod["initContainers"] + pod["containers"]]
    assert images == [
        "registry.example.com/lstmad-model:0.1.0",
        "registry.example.com/lstmad:0.1.0",
    ]
    assert all(d["metadata"].get("namespace", "lstmad") == "lstmad" for d in rendered)


def deployment() -> dict[str, Any]:
    return docs((K8S_DIR / "deployment.yaml").read_text())[0]


def daemon_config() -> cfgmod.Config:
    """config.toml as the pod loads it: with the Deployment's env (Secret values stubbed)."""
    env = {}
    for e in deployment()["spec"]["template"]["spec"]["containers"][0]["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        env[e["name"]] = f"secret:{ref['name']}/{ref['key']}" if ref else e["value"]
    return cfgmod.load(K8S_DIR / "config.toml", env=env)


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_deployment_agrees_with_its_config() -> None:
    cfg = daemon_config()
    assert cfg.kafka.sasl_username == "secret:lstmad-kafka/username"
    assert cfg.kafka.sasl_password == "secret:lstmad-kafka/password"
    pod = deployment()["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["terminationGracePeriodSeconds"] > cfg.kafka.shutdown_timeout_s + 5
    limit = cpu(c["resources"]["limits"]["cpu"])
    assert cfg.model.intra_op_threads == max(1, int(limit)), "ORT threads != CPU limit"
    assert c["ports"][0]["containerPort"] == cfg.metrics.port
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The liveness probe must not kill a pod before /healthz itself reports a stale loop.
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= cfg.metrics.stale_after_s
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert str(cfg.model.path).startswith("/models/") and mounts["/models"]["readOnly"]
    assert cfg.source is not None and mounts["/etc/lstmad"]["readOnly"]
    assert c["args"] == ["serve", "--config", "/etc/lstmad/config.toml"]


def test_pod_is_non_root_read_only_and_capability_free() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    for c in pod["initContainers"] + pod["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= set(c["resources"])


def test_service_monitor_scrapes_the_service_port_as_job_lstmad() -> None:
    svc = docs((K8S_DIR / "service.yaml").read_text())[0]
    sm = docs((K8S_DIR / "servicemonitor.yaml").read_text())[0]
    pdb = docs((K8S_DIR / "poddisruptionbudget.yaml").read_text())[0]
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert svc["spec"]["publishNotReadyAddresses"] is True  # unready pods are scraped too
    # job label = the Service's value of jobLabel: what the rules and dashboard select.
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "lstmad"


def test_training_job_renders_validates_and_its_config_parses(tmp_path: Path) -> None:
    from training import config as training_config

    rendered = kustomize(TRAINING_DIR)
    assert sorted(d["kind"] for d in rendered) == [
        "ConfigMap",
        "Job",
        "PersistentVolumeClaim",
        "PersistentVolumeClaim",
    ]
    out = tmp_path / "training.yaml"
    out.write_text(yaml.safe_dump_all(rendered))
    check_core(out)
    cfg = training_config.load(TRAINING_DIR / "config.toml")
    job = next(d for d in rendered if d["kind"] == "Job")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "registry.example.com/lstmad-train:0.1.0"
    assert c["args"][:2] == ["train", "--config"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/data"]["readOnly"] and "readOnly" not in mounts["/out"]
    assert cfg.data.parent == Path("/data") and cfg.output.parent == Path("/out")
    assert cfg.artifacts.parent == Path("/out")
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.slow
def test_committed_servicemonitor_schema_is_reproducible_from_the_registry_package(
    tmp_path: Path,
) -> None:
    # A throw-away venv: the package's pytest plugin must never enter the project's .venv.
    venv = tmp_path / "crd"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    py = str(venv / "bin" / "python")
    pkg = "cloudcoil-models-prometheus-operator==0.80.1.0"
    res = subprocess.run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", pkg],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr
    out = tmp_path / "derived.json"
    derive = K8S_DIR / "schemas" / "derive.py"
    subprocess.run([py, str(derive), str(out)], check=True, timeout=60, capture_output=True)
    committed = (
        K8S_DIR / "schemas" / f"{CUSTOM[('monitoring.coreos.com/v1', 'ServiceMonitor')]}.json"
    )
    assert out.read_text() == committed.read_text(), "re-run deploy/kubernetes/schemas/derive.py"
