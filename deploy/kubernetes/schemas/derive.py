"""Derive the JSON Schema of prometheus-operator's ServiceMonitor from its CRD-generated models.

kubernetes-validate bundles only the core API's schemas. The ServiceMonitor schema comes
from the PyPI package cloudcoil-models-prometheus-operator, whose pydantic models are
generated from the operator's CRDs (openAPIV3Schema); pydantic turns them back into JSON
Schema. Run in a throw-away venv (the package's pytest plugin must not enter .venv):

    python3 -m venv /tmp/crd
    /tmp/crd/bin/pip install cloudcoil-models-prometheus-operator==0.80.1.0
    /tmp/crd/bin/python deploy/kubernetes/schemas/derive.py

tests/test_deploy_kubernetes.py validates servicemonitor.yaml against the result, strictly
(unknown properties rejected, like kubernetes-validate --strict).
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

OUT = Path(__file__).resolve().parent / "servicemonitor-monitoring.coreos.com-v1.json"

if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT  # another path: compare, don't touch
    schema = ServiceMonitor.model_json_schema(by_alias=True)
    schema["$comment"] = (
        "derived by deploy/kubernetes/schemas/derive.py from cloudcoil-models-prometheus-operator "
        + version("cloudcoil-models-prometheus-operator")
    )
    out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)")
