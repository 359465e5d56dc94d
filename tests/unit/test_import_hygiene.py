"""Import rules of DESIGN.md: replica code stays off the facade, and private Ray APIs stay in serve_api.py."""

from __future__ import annotations

import ast
from pathlib import Path

import ray_deploy

PACKAGE = Path(ray_deploy.__file__).parent
REPO = PACKAGE.parent
# What replica code may import from ray_deploy: the errors, config, documents, the Ray adapter, the pure decision and
# compute modules (status, explain, explanation, fairness, drift, alarms, performance, rollout), the artifact digest
# (integrity), the capture store, the reference data loader, the audit trail's reader (audit), and itself.
DATAPLANE_MAY_IMPORT = {
    "ray_deploy.errors",
    "ray_deploy.config",
    "ray_deploy.documents",
    "ray_deploy.serve_api",
    "ray_deploy.status",
    "ray_deploy.explain",
    "ray_deploy.explanation",
    "ray_deploy.fairness",
    "ray_deploy.drift",
    "ray_deploy.alarms",
    "ray_deploy.performance",
    "ray_deploy.capture_store",
    "ray_deploy.reference",
    "ray_deploy.rollout",
    "ray_deploy.integrity",
    "ray_deploy.audit",
}


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every imported module of a file (``from a import b`` gives ``a`` and ``a.b``), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def test_dataplane_imports_only_what_replicas_may_use() -> None:
    offenders = []
    for path in sorted((PACKAGE / "dataplane").rglob("*.py")):
        for module, line in _imports(path):
            if not module.startswith("ray_deploy") or module.startswith("ray_deploy.dataplane"):
                continue
            if module in DATAPLANE_MAY_IMPORT or module.rsplit(".", 1)[0] in DATAPLANE_MAY_IMPORT:
                continue
            if module == "ray_deploy.serve_api" or module == "ray_deploy":  # `from ray_deploy import serve_api`
                continue
            offenders.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not offenders, "replica code imports the facade or the control plane:\n" + "\n".join(offenders)


def test_dataplane_from_ray_deploy_imports_only_serve_api() -> None:
    for path in sorted((PACKAGE / "dataplane").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "ray_deploy":
                names = {a.name for a in node.names}
                assert names <= {"serve_api"}, f"{path.name}:{node.lineno} imports {names} from the facade"


def test_private_ray_apis_only_in_serve_api() -> None:
    offenders = []
    files = [*PACKAGE.rglob("*.py"), *(REPO / "jupyter_ext").rglob("*.py")]
    for path in sorted(files):
        if path.name == "serve_api.py":
            continue
        for module, line in _imports(path):
            parts = module.split(".")
            if parts[0] == "ray" and any(p.startswith("_") for p in parts[1:]):
                offenders.append(f"{path.relative_to(REPO)}:{line} imports {module}")
        text = path.read_text()
        for private in ("serve._run", "._private.", "_get_global_client", "_get_serve_request_context"):
            if private in text:
                offenders.append(f"{path.relative_to(REPO)} mentions {private}")
    assert not offenders, "private Ray APIs outside serve_api.py:\n" + "\n".join(offenders)


def test_importing_ray_compiles_no_iri_grammars() -> None:
    """`make install` removes rfc3987-syntax (jsonschema's optional IRI check): importing it compiles ~40 Lark
    grammars, a second more for `import ray` in every Ray worker, so in every replica start."""
    import subprocess
    import sys

    code = "import ray, jsonschema, sys; print('rfc3987_syntax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
