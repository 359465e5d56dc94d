"""Hatch build hook: generate the V2 gRPC modules from ``ray_deploy/dataplane/grpc_v2/inference.proto``.

``inference_pb2.py``, ``inference_pb2_grpc.py`` (and the ``.pyi`` stubs) are written next to the ``.proto`` for
every wheel and editable install, and the wheel carries them (they are git-ignored, so hatch would leave them
out otherwise). protoc runs from the repository root (``-I .``), so the generated service module imports its
messages package-relative: ``from ray_deploy.dataplane.grpc_v2 import inference_pb2``.

Example:
    $ pip install -e .          # regenerates the modules in place
    $ pip wheel . --no-deps -w dist
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PROTO = "ray_deploy/dataplane/grpc_v2/inference.proto"
GENERATED = ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")


class GrpcBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Runs ``grpc_tools.protoc`` before the wheel (standard or editable) is built."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        generate(Path(self.root))
        if version == "editable":  # the editable wheel points at the source tree, where the modules now are
            return
        folder = Path(PROTO).parent
        for name in GENERATED:
            build_data["force_include"][str(Path(self.root) / folder / name)] = str(folder / name)


def generate(root: Path) -> None:
    """Write the generated modules next to the ``.proto`` (``python -m grpc_tools.protoc`` semantics)."""
    from grpc_tools import protoc

    args = ["grpc_tools.protoc", f"-I{root}", f"--python_out={root}", f"--pyi_out={root}", f"--grpc_python_out={root}"]
    status = protoc.main([*args, str(root / PROTO)])
    if status != 0:
        raise RuntimeError(f"grpc_tools.protoc failed (exit {status}) on {PROTO}; see the messages above")
