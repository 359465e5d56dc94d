"""``Explainer``: a deployment of its own that answers SHAP explanations, never on the predict path.

It scales to zero when idle (so deploys cost nothing extra) and starts on the first explanation. The model and
its SHAP explainer are loaded once per version and cached. A request over ``explain_max_rows`` is refused
(413); one that is larger than ``explain_chunk_rows`` is split into chunks explained in parallel as Ray tasks
(on GPUs when the cluster has them); the ingress bounds the wait by ``explain_timeout_s`` (503).

Example:
    >>> handle = serve.get_deployment_handle("Explainer", app_name="iris")
    >>> Explanation.from_json(await handle.explain.remote(X[:3])).values.shape
    (3, 4)
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from ray_deploy.config import DeployOptions
from ray_deploy.dataplane.schema import InputSchema
from ray_deploy.dataplane.served_model import check_version, fetch_verified
from ray_deploy.errors import PayloadTooLarge, RayDeployError, SchemaMismatch

log = logging.getLogger("ray.serve")


class _Explainable:
    """A version loaded for explaining: the model as the user passed it, its kind and schema."""

    def __init__(self, name: str, version: str) -> None:
        import mlflow
        from mlflow import MlflowClient

        tags = MlflowClient().get_model_version(name, version).tags
        uri = str(fetch_verified(name, version))  # the local copy whose digest matches the registered one
        info = mlflow.models.get_model_info(uri)
        self.version = version
        self.schema = InputSchema.from_signature(info.signature) or InputSchema()
        if "pytorch" in info.flavors:
            # a registered predict_proba torch model already ends in its softmax
            self.kind, self.predict_method = "torch", "predict"
            self.model: Any = mlflow.pytorch.load_model(uri, map_location="cpu").eval()
        elif "sklearn" in info.flavors:
            self.model = mlflow.sklearn.load_model(uri)
            served = tags.get("ray_deploy.predict_method", "predict")
            # labels are not additive: a classifier that serves labels is explained by its class probabilities
            self.kind = "sklearn"
            self.predict_method = "predict_proba" if hasattr(self.model, "predict_proba") else served
        else:
            self.kind, self.predict_method = "callable", "predict"
            self.model = mlflow.pyfunc.load_model(uri).predict


class Explainer:
    """Explains rows of one deployment's models with SHAP."""

    def __init__(self, name: str, tracking_uri: str) -> None:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.name = name
        self.serving: str | None = None
        self.options = DeployOptions()
        self._loaded: dict[str, _Explainable] = {}

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Follow the version that serves and the explain options (same ``user_config`` as the ingress)."""
        self.serving = str(config["version"])
        self.options = DeployOptions(**config.get("options", {}))

    async def explain(
        self, data: Any, version: str | None = None, explainer: str = "auto", background: Any = None
    ) -> dict[str, Any]:
        """Explain ``data`` (DataFrame, ndarray, list of rows or dicts) with the version's model; the wire form
        of :class:`ray_deploy.explanation.Explanation`."""
        target = await self._target(version)
        return await self._explain(target, target.schema.from_python(data), explainer, background)

    async def explain_request(self, body: Any, version: str | None = None) -> dict[str, Any]:
        """The HTTP route's body: ``{"instances": [...]}`` or ``{"dataframe_split": {...}}``."""
        target = await self._target(version)
        rows = target.schema.from_body(body)
        return await self._explain(target, rows, "auto", None)

    async def _target(self, version: str | None) -> _Explainable:
        version = version or self.serving
        if version is None:
            raise RayDeployError(f"the explainer of {self.name!r} has no version configured")
        if version not in self._loaded:
            if version != self.serving:
                await asyncio.to_thread(check_version, self.name, version)
            self._loaded = {version: await asyncio.to_thread(_Explainable, self.name, version)}
        return self._loaded[version]

    async def _explain(self, target: _Explainable, rows: Any, explainer: str, background: Any) -> dict[str, Any]:
        from ray_deploy.explain import explain_model, explain_parallel

        n = len(rows)
        if n > self.options.explain_max_rows:
            raise PayloadTooLarge(
                f"{n} rows to explain, over this deployment's explain_max_rows={self.options.explain_max_rows}; "
                "send fewer rows per request or redeploy with a larger explain_max_rows",
                rows=n,
            )
        kwargs = {"explainer": explainer, "background": background, "predict_method": target.predict_method}
        chunks = math.ceil(n / self.options.explain_chunk_rows)
        try:
            if chunks > 1:
                result = await asyncio.to_thread(
                    explain_parallel, target.model, target.kind, rows, chunks=chunks, **kwargs
                )
            else:
                result = await asyncio.to_thread(explain_model, target.model, target.kind, rows, **kwargs)
        except RayDeployError:
            raise
        except ValueError as exc:
            raise SchemaMismatch(f"these rows cannot be explained: {exc}") from None
        return result.to_json()
