"""The cluster recipe in deploy/: the KubeRay manifest parses and is consistent with the image and
with what the Ray engine needs (docker and Kubernetes themselves cannot run here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _docs() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kuberay-rayjob.yaml").read_text()) if d]
    return {d["kind"]: d for d in docs}


def _dockerfile_arg(name: str) -> str:
    m = re.search(rf"^ARG {name}=(\S+)$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert m, f"ARG {name} missing from deploy/Dockerfile"
    return m.group(1)


def test_rayjob_manifest_runs_artmem_on_ray_with_a_shared_output_volume():
    docs = _docs()
    job = docs["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == _dockerfile_arg("RAY_VERSION")  # image and cluster agree

    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["artmem", "score"] and argv[argv.index("--engine") + 1] == "ray"
    out = argv[argv.index("-o") + 1]

    head = cluster["headGroupSpec"]["template"]["spec"]
    groups = [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    assert all(g["replicas"] >= 1 for g in cluster["workerGroupSpecs"])
    pods = [head] + groups
    images = {c["image"] for p in pods for c in p["containers"]}
    assert len(images) == 1  # the head (driver) and the workers run the same environment

    # OUT is on one ReadWriteMany claim mounted at the same path in every pod: workers write shards
    claim = docs["PersistentVolumeClaim"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    for pod in pods:
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = [m for c in pod["containers"] for m in c["volumeMounts"]
                  if volumes[m["name"]].get("persistentVolumeClaim", {}).get("claimName") == claim["metadata"]["name"]]
        assert any(out.startswith(m["mountPath"].rstrip("/") + "/") for m in mounts), pod["containers"][0]["name"]


def test_dockerfile_installs_artmem_with_the_scale_extra():
    text = (DEPLOY / "Dockerfile").read_text()
    assert 'pip install ".[scale]"' in text and "COPY src ./src" in text
    assert _dockerfile_arg("TORCH_INDEX").startswith("https://download.pytorch.org/whl/")
