"""The protobuf modules generated from ``inference.proto``, with a clear error when they are missing.

They are generated at install (``hatch_build.py``: ``pip install -e .`` or ``make install``) and not committed.

Example:
    >>> from ray_deploy.dataplane.grpc_v2.protocol import pb2
    >>> pb2.ModelInferRequest(model_name="iris").model_name
    'iris'
"""

from __future__ import annotations

try:
    from ray_deploy.dataplane.grpc_v2 import inference_pb2 as pb2
    from ray_deploy.dataplane.grpc_v2 import inference_pb2_grpc as pb2_grpc
except ModuleNotFoundError as exc:
    if not (exc.name or "").startswith("ray_deploy.dataplane.grpc_v2.inference_pb2"):
        raise
    raise ImportError(
        "the V2 gRPC modules (ray_deploy/dataplane/grpc_v2/inference_pb2*.py) are generated at install from "
        "inference.proto: run `pip install -e .` (or `make install`) in the ray-deploy checkout"
    ) from None
except TypeError as exc:  # protobuf: "Couldn't build proto file into descriptor pool: duplicate symbol ..."
    if "duplicate symbol" not in str(exc):
        raise
    raise ImportError(
        "another module of this process (tritonclient.grpc, for one) already defined the V2 'inference' protobuf "
        f"messages ({exc}); the gRPC server modules belong in the ServerInfo replica only, so import them there"
    ) from None

__all__ = ["pb2", "pb2_grpc"]
