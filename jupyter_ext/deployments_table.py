"""The ``%deployments`` table: one row per deployment on the cluster, each with its live card and actions.

Actions run in a background thread so the kernel stays responsive: scale (min/max inputs) and delete (asks
for confirmation first). The table's mime bundle carries a static ``text/html`` table for frontends without
widgets.

Example:
    >>> table = DeploymentsTable(ray_deploy.list_deployments())
    >>> table.rows["iris"].min_input.value = 0
    >>> table.rows["iris"].scale_button.click()
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from jupyter_ext.widgets import DeploymentCard, card_for, card_values
from ray_deploy.errors import RayDeployError

log = logging.getLogger(__name__)

CardFactory = Callable[[str], DeploymentCard]


class DeploymentRow(widgets.VBox):
    """One deployment: an action bar (min/max, Scale, Delete with confirmation, a status line) over its card.

    Example:
        >>> row = DeploymentRow({"name": "iris", "state": "RUNNING", "version": "1", "url": "..."})
        >>> row.delete_button.click(); row.confirm_yes.click()
    """

    def __init__(self, row: dict[str, Any], card_factory: CardFactory) -> None:
        self.name = str(row["name"])
        self.row = row
        self.action: threading.Thread | None = None
        self.card: DeploymentCard | None = None
        self.status = widgets.Label()
        try:
            self.card = card_factory(self.name)
        except RayDeployError as exc:  # e.g. deleted since it was listed
            self.status.value = str(exc)
        except Exception as exc:
            log.warning("could not show the card of %r", self.name, exc_info=True)
            self.status.value = f"status unavailable: {type(exc).__name__}: {exc}"
        replicas = (self.card.doc.get("replicas") or {}) if self.card is not None else {}
        layout = widgets.Layout(width="150px")
        self.min_input = widgets.BoundedIntText(
            value=replicas.get("min") or 0, min=0, max=1000, description="min", layout=layout
        )
        self.max_input = widgets.BoundedIntText(
            value=replicas.get("max") or 1, min=1, max=1000, description="max", layout=layout
        )
        self.scale_button = widgets.Button(description="Scale", icon="arrows-v", tooltip=f"scale {self.name}")
        self.delete_button = widgets.Button(
            description="Delete", button_style="danger", icon="trash", tooltip=f"delete {self.name}"
        )
        self.confirm_yes = widgets.Button(description=f"Yes, delete {self.name}", button_style="danger")
        self.confirm_no = widgets.Button(description="Cancel")
        self.confirm = widgets.HBox(
            [widgets.Label(f"Delete {self.name!r} from the cluster?"), self.confirm_yes, self.confirm_no],
            layout=widgets.Layout(display="none"),
        )
        self.scale_button.on_click(lambda _: self._run("scale", self._scale))
        self.delete_button.on_click(lambda _: self._ask_confirmation(True))
        self.confirm_no.on_click(lambda _: self._ask_confirmation(False))
        self.confirm_yes.on_click(lambda _: self._run("delete", self._delete))
        self._bar = widgets.HBox(
            [
                widgets.HTML(f"<b>{html.escape(self.name)}</b>", layout=widgets.Layout(width="160px")),
                self.min_input,
                self.max_input,
                self.scale_button,
                self.delete_button,
            ]
        )
        parts: list[widgets.Widget] = [self._bar, self.confirm, self.status]
        if self.card is not None:
            parts.append(self.card)
        super().__init__(parts)

    @property
    def buttons(self) -> list[widgets.Button]:
        """The action buttons (disabled while an action runs and after a delete)."""
        return [self.scale_button, self.delete_button, self.confirm_yes, self.confirm_no]

    def wait(self, timeout_s: float | None = None) -> None:
        """Wait for the running action (scale or delete) to finish."""
        if self.action is not None:
            self.action.join(timeout_s)

    def close(self) -> None:
        """Close the row's own widgets; a live card is shared (one per deployment) and keeps running."""
        for part in [*self._bar.children, *self.confirm.children, self._bar, self.confirm, self.status]:
            part.close()
        if self.card is not None and not self.card.running:
            self.card.close()
        super().close()

    def _ask_confirmation(self, show: bool) -> None:
        self.confirm.layout.display = "flex" if show else "none"

    def _run(self, what: str, action: Callable[[], str]) -> None:
        self._ask_confirmation(False)
        for button in self.buttons:
            button.disabled = True
        self.status.value = f"{what} {self.name!r}: working…"

        def work() -> None:
            done = False
            try:
                self.status.value = action()
                done = what == "delete"
            except RayDeployError as exc:
                self.status.value = f"{what} failed: {str(exc).partition(chr(10))[0]}"
            except Exception as exc:
                log.exception("%s of %r failed", what, self.name)
                self.status.value = f"{what} failed unexpectedly: {type(exc).__name__}: {exc}"
            finally:
                for button in self.buttons:
                    button.disabled = done

        self.action = threading.Thread(target=work, name=f"ray-deploy-{what}-{self.name}", daemon=True)
        self.action.start()

    def _scale(self) -> str:
        import ray_deploy

        options = (
            ray_deploy.get(self.name)
            .scale(min_replicas=self.min_input.value, max_replicas=self.max_input.value)
            .options
        )
        if self.card is not None:
            self.card.refresh()
        return f"scaled {self.name!r}: min_replicas={options.min_replicas}, max_replicas={options.max_replicas}"

    def _delete(self) -> str:
        import ray_deploy

        ray_deploy.delete(self.name)
        if self.card is not None:
            self.card.mark_deleted()
        return f"deleted {self.name!r}; its versions stay in the MLflow registry"


class DeploymentsTable(widgets.VBox):
    """Every deployment on the cluster, one :class:`DeploymentRow` each (``rows`` from ``list_deployments()``).

    Example:
        >>> display(DeploymentsTable(ray_deploy.list_deployments()))
    """

    def __init__(
        self,
        rows: list[dict[str, Any]],
        *,
        start: bool = True,
        interval_s: float = 3.0,
        card_factory: CardFactory | None = None,
    ) -> None:
        factory = card_factory or (lambda name: card_for(name, start=start, interval_s=interval_s))
        self.listing = rows
        self.rows = {str(row["name"]): DeploymentRow(row, factory) for row in rows}
        self.header = widgets.HTML(f"<b>{len(rows)} deployment(s) on the cluster</b>")
        super().__init__([self.header, *self.rows.values()])

    def close(self) -> None:
        """Close the table and its rows (the shared cards keep running)."""
        for row in self.rows.values():
            row.close()
        self.header.close()
        super().close()

    def snapshot_html(self) -> str:
        """A static HTML table of the deployments, with each row's numbers as its card shows them."""
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in ("name", *_COLUMNS.values(), "endpoint"))
        body = "".join(self._row_html(row) for row in self.rows.values())
        return f"<div><b>ray-deploy: {len(self.rows)} deployment(s)</b><table><tr>{head}</tr>{body}</table></div>"

    def snapshot_text(self) -> str:
        """The deployments as plain-text lines."""
        lines = [f"{len(self.rows)} deployment(s):"]
        for name, row in self.rows.items():
            values = _row_values(row)
            lines.append(f"  {name}: " + ", ".join(f"{label} {values[key]}" for key, label in _COLUMNS.items()))
        return "\n".join(lines)

    def _row_html(self, row: DeploymentRow) -> str:
        values = _row_values(row)
        cells = [html.escape(row.name), *(html.escape(values[key]) for key in _COLUMNS)]
        url = html.escape(str(row.row.get("url", "")), quote=True)
        link = f"<a href='{url}' target='_blank' rel='noopener'>{url}</a>"
        return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + f"<td>{link}</td></tr>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = self.snapshot_text()
        data["text/html"] = self.snapshot_html()
        return data


_COLUMNS = {"state": "state", "version": "version", "replicas": "replicas", "qps": "QPS", "latency": "p50/p99 ms"}


def _row_values(row: DeploymentRow) -> dict[str, str]:
    if row.card is not None:
        values = card_values(row.card.doc)
        values["state"] = row.card.fields["state"].value
        return values
    listing = {"state": str(row.row.get("state", "")), "version": str(row.row.get("version", ""))}
    return {key: listing.get(key, "—") for key in _COLUMNS}
