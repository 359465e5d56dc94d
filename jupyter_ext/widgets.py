"""The live deployment card: an ipywidgets view of one deployment's status document, refreshed in the background.

The card renders the status document that ``Deployment.status()`` returns (it computes no numbers of its own,
and its history plot draws the document's ``history``, kept in the cluster, so a card shown after a kernel
restart has the same history as the side panel), shows the document's drift state and model metric when it
carries them (one compact line: a drift badge whose tooltip names the drifted features, and accuracy/F1 or RMSE
with the labelled count), a one-line rollout row while a canary, shadow or A/B test runs ("canary 25% → v3
(step 2/4) · running"), refreshes it from a daemon thread without blocking the kernel,
stops when the deployment is deleted or the card is closed, and carries a static ``text/html`` snapshot in its
mime bundle for frontends without widgets (e.g. a notebook exported with ``nbconvert``). One live card exists
per deployment name; showing a deployment again shows the same card, so refresh threads never pile up.

Example:
    >>> card = card_for("iris")          # in a notebook: shows state, replicas, QPS, latency, history, links
    >>> card.fields["qps"].value
    '12.5'
    >>> card.close()                     # stops refreshing
"""

from __future__ import annotations

import base64
import html
import logging
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from pydantic import ValidationError

from jupyter_ext.history_plot import HistoryPoint, history_png
from jupyter_ext.refresher import Refresher, Refreshing
from ray_deploy.cluster import on_shutdown
from ray_deploy.errors import ModelNotFound, RayDeployError

log = logging.getLogger(__name__)

StatusFetcher = Callable[[], dict[str, Any]]

FIELDS = {
    "state": "state",
    "version": "version",
    "replicas": "replicas",
    "qps": "QPS",
    "latency": "p50 / p99 ms",
    "requests": "requests",
    "errors": "errors",
}
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
_NONE = "—"
_STATE_COLORS = {"RUNNING": "#1a7f37", "DEPLOYING": "#9a6700", "DELETED": "#57606a", "UNKNOWN": "#57606a"}
_FAILED_COLOR = "#cf222e"

_live_cards: dict[str, DeploymentCard] = {}
_live_lock = threading.Lock()


def card_values(doc: dict[str, Any]) -> dict[str, str]:
    """The card's displayed text for each of :data:`FIELDS`, taken straight from a status document.

    Example:
        >>> card_values(doc)["replicas"]
        '1 running, target 1 (min 1, max 1)'
    """
    replicas = doc.get("replicas") or {}
    traffic = doc.get("traffic") or {}
    version = doc.get("version")
    alias = doc.get("alias")
    errors_by_status = traffic.get("errors_by_status") or {}
    by_status = ", ".join(f"{code}: {count}" for code, count in errors_by_status.items())
    errors = _text(traffic.get("errors"))
    return {
        "state": str(doc.get("state") or "UNKNOWN"),
        "version": _NONE if version is None else (f"{version} ({alias})" if alias else str(version)),
        "replicas": (
            f"{_text(replicas.get('current'))} running, target {_text(replicas.get('target'))} "
            f"(min {_text(replicas.get('min'))}, max {_text(replicas.get('max'))})"
        ),
        "qps": _text(traffic.get("qps")),
        "latency": f"{_text(traffic.get('p50_ms'))} / {_text(traffic.get('p99_ms'))}",
        "requests": _text(traffic.get("requests")),
        "errors": f"{errors} ({by_status})" if by_status else errors,
    }


_CLASSIFICATION_METRICS = ("accuracy", "f1")
_REGRESSION_METRICS = ("rmse",)


def model_metric(doc: dict[str, Any]) -> str | None:
    """The model metric of the document's ``performance`` section: accuracy (else F1) for a classifier, RMSE for a
    regressor, with the labelled count; None when the document has no such section or task.

    Example:
        >>> model_metric(doc)
        'accuracy 0.925 (120 labelled)'
    """
    performance = doc.get("performance")
    if not performance:
        return None
    names = {"classification": _CLASSIFICATION_METRICS, "regression": _REGRESSION_METRICS}.get(
        performance.get("task") or ""
    )
    if names is None:
        return None
    metrics = performance.get("metrics") or {}
    name = next((n for n in names if metrics.get(n) is not None), names[0])
    value = metrics.get(name)
    shown = _NONE if value is None else f"{value:.3g}"
    return f"{name} {shown} ({_text(performance.get('labelled'))} labelled)"


def drift_line(doc: dict[str, Any]) -> str | None:
    """The drift state and drifted features of the document's ``drift`` section, as text; None without one.

    Example:
        >>> drift_line(doc)
        'warning (petal_length)'
    """
    drift = doc.get("drift")
    if not drift:
        return None
    state = str(drift.get("state") or "unknown").replace("_", " ")
    features = drift.get("drifted_features") or []
    return f"{state} ({', '.join(features)})" if features else state


def monitor_html(doc: dict[str, Any]) -> str:
    """The card's monitoring line: a drift badge (drifted features and message in its tooltip) and the model
    metric, each only when the document carries that section; empty when it carries neither.

    Example:
        >>> "drift warning" in monitor_html(doc)
        True
    """
    from jupyter_ext.drift_panel import drift_badge_html

    parts = []
    drift = doc.get("drift")
    if drift:
        features = list(drift.get("drifted_features") or [])
        parts.append(drift_badge_html(str(drift.get("state") or "unknown"), features, str(drift.get("message") or "")))
        if features:
            parts.append(f"<span>drifted: {html.escape(', '.join(features))}</span>")
    metric = model_metric(doc)
    if metric is not None:
        parts.append(f"<span class='ray-deploy-metric'>{html.escape(metric)}</span>")
    if not parts:
        return ""
    return f"<div class='ray-deploy-monitor' style='display:flex;gap:0.75em;align-items:center'>{''.join(parts)}</div>"


FINAL_ROLLOUT_STATES = frozenset({"promoted", "rolled_back", "aborted", "finished"})
_ROLLOUT_MODES = {"canary": "canary", "shadow": "shadow", "ab": "A/B"}


def percent(share: float) -> str:
    """A traffic share as a percentage: ``percent(0.25) == '25%'``, ``percent(0.125) == '12.5%'``."""
    return f"{share * 100:.3g}%"


def rollout_line(doc: dict[str, Any]) -> str | None:
    """The document's running rollout as one line, e.g. ``canary 25% → v3 (step 2/4) · running``; None when
    the document has no rollout or it has ended (promoted, rolled back, aborted, finished).

    Example:
        >>> rollout_line(doc)
        'canary 25% → v3 (step 2/4) · running'
    """
    rollout = doc.get("rollout")
    if not rollout or rollout.get("state") in FINAL_ROLLOUT_STATES:
        return None
    mode = str(rollout.get("mode") or "")
    line = (
        f"{_ROLLOUT_MODES.get(mode, mode)} {percent(float(rollout.get('share') or 0))} → v{rollout.get('challenger')}"
    )
    steps = rollout.get("steps") or []
    if mode == "canary" and steps:
        line += f" (step {int(rollout.get('step') or 0) + 1}/{len(steps)})"
    return f"{line} · {str(rollout.get('state') or 'unknown').replace('_', ' ')}"


def rollout_html(doc: dict[str, Any]) -> str:
    """The card's rollout row (the rollout's message in its tooltip); empty without a running rollout."""
    line = rollout_line(doc)
    if line is None:
        return ""
    message = str((doc.get("rollout") or {}).get("message") or "")
    return (
        f"<div class='ray-deploy-rollout-line' title='{html.escape(message, quote=True)}'>"
        f"<b>rollout</b> {html.escape(line)}</div>"
    )


def card_links(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, url)`` of the places a person looks at a deployment, from the document's ``links``.

    Example:
        >>> card_links(doc)[0]
        ('endpoint', 'http://127.0.0.1:8000/v2/models/iris')
    """
    links = doc.get("links") or {}
    labelled = [("endpoint", links.get("endpoint")), ("Ray dashboard", links.get("dashboard"))]
    labelled.append(("MLflow model version", links.get("mlflow")))
    return [(label, str(url)) for label, url in labelled if url]


def links_html(doc: dict[str, Any]) -> str:
    """The links as HTML anchors (opening in a new tab), plus the model URI for ``mlflow.pyfunc.load_model``."""
    parts = [
        f"<a href='{html.escape(url, quote=True)}' target='_blank' rel='noopener'>{html.escape(label)}</a>"
        for label, url in card_links(doc)
    ]
    model_uri = (doc.get("links") or {}).get("model_uri")
    if model_uri:
        parts.append(f"model URI <code>{html.escape(str(model_uri))}</code>")
    return " &middot; ".join(parts)


def snapshot_html(doc: dict[str, Any], message: str = "", plot: bool = True) -> str:
    """A static HTML card (values, the document's history plot as an inline PNG, links) for frontends
    without widgets; ``plot=False`` leaves the plot out.

    Example:
        >>> "ray-deploy: iris" in snapshot_html(doc)
        True
    """
    values = card_values(doc)
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(label)}</th>"
        f"<td>{html.escape(values[key])}</td></tr>"
        for key, label in FIELDS.items()
    )
    image = ""
    if plot:
        encoded = base64.b64encode(history_png(history_points(doc))).decode("ascii")
        image = f"<img alt='QPS and latency history' src='data:image/png;base64,{encoded}'/>"
    note = f"<div><i>{html.escape(message)}</i></div>" if message else ""
    return (
        f"<div class='ray-deploy-card'>{_title_html(str(doc.get('name', '')), values['state'])}"
        f"<div style='display:flex;gap:1em;align-items:flex-start'><table>{rows}</table>{image}</div>"
        f"{rollout_html(doc)}{monitor_html(doc)}<div>{links_html(doc)}</div>{note}</div>"
    )


def snapshot_text(doc: dict[str, Any]) -> str:
    """A one-paragraph plain-text card (terminals, ``text/plain`` consumers).

    Example:
        >>> snapshot_text(doc).splitlines()[0]
        'ray-deploy: iris [RUNNING]'
    """
    values = card_values(doc)
    lines = [f"ray-deploy: {doc.get('name', '')} [{values['state']}]"]
    lines += [f"  {label}: {values[key]}" for key, label in FIELDS.items() if key != "state"]
    drift, metric, rollout = drift_line(doc), model_metric(doc), rollout_line(doc)
    lines += [f"  rollout: {rollout}"] if rollout is not None else []
    lines += [f"  drift: {drift}"] if drift is not None else []
    lines += [f"  model: {metric}"] if metric is not None else []
    lines += [f"  {label}: {url}" for label, url in card_links(doc)]
    return "\n".join(lines)


def history_points(doc: dict[str, Any]) -> list[HistoryPoint]:
    """The traffic history of a status document (its ``history``, oldest first; empty when it has none).

    Example:
        >>> [p.qps for p in history_points(doc)]
        [0.0, 11.2, 12.4]
    """
    try:
        return [HistoryPoint.model_validate(point) for point in doc.get("history") or []]
    except ValidationError:
        log.warning("the history of %r is not readable; showing none", doc.get("name"), exc_info=True)
        return []


class DeploymentCard(Refreshing, widgets.VBox):
    """A live card of one deployment: state, version, replicas, QPS, p50/p99, errors, history plot, the running
    rollout, the drift badge and model metric (when the document has them), links.

    ``fetch`` returns the status document (default: ``ray_deploy.Deployment(name).status()``); ``doc`` is the
    first document to show (fetched when not given). ``start=False`` renders without a refresh thread.

    Example:
        >>> card = DeploymentCard("iris", interval_s=2.0)
        >>> card.fields["state"].value
        'RUNNING'
    """

    def __init__(
        self,
        name: str,
        *,
        fetch: StatusFetcher | None = None,
        doc: dict[str, Any] | None = None,
        interval_s: float = 2.0,
        start: bool = True,
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self.doc: dict[str, Any] = {}
        self.history: list[HistoryPoint] = []  # what the plot shows: the shown document's history
        self.deleted = False
        self.refreshes = 0  # documents shown so far (counted once fully shown)
        self._fetch = fetch or _status_of(name)
        self._refresher = Refresher(
            f"ray-deploy-card-{name}",
            lambda: self._fetch(),
            self._show_refreshed,
            self.mark_deleted,
            self._refresh_failed,
            lambda: self.interval_s,
            f"the card of {name!r}",
        )
        self.title = widgets.HTML()
        self.fields = {key: widgets.Label() for key in FIELDS}
        grid = widgets.GridBox(
            [w for key, label in FIELDS.items() for w in (widgets.HTML(f"<b>{label}</b>"), self.fields[key])],
            layout=widgets.Layout(grid_template_columns="max-content auto", grid_gap="0 1em"),
        )
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="340px"))
        self.rollout = widgets.HTML()  # the running rollout's line, empty without one
        self.monitor = widgets.HTML()  # drift badge and model metric, empty without those sections
        self.links = widgets.HTML()
        self.message = widgets.Label()
        super().__init__(
            [self.title, widgets.HBox([grid, self.plot]), self.rollout, self.monitor, self.links, self.message],
            layout=widgets.Layout(border="1px solid #d0d7de", padding="4px 8px", margin="4px 0"),
        )
        self.add_class("ray-deploy-card")  # the same class as the HTML snapshot, for styling and browser tests
        self.update(doc if doc is not None else self._first_document())
        if start:
            self.start()

    def _first_document(self) -> dict[str, Any]:
        try:
            return self._fetch()
        except ModelNotFound:
            raise
        except Exception as exc:  # e.g. still deploying: show what is known, the refresher keeps trying
            log.info("no status yet for %r", self.name, exc_info=True)
            return {"name": self.name, "state": "UNKNOWN", "message": f"status unavailable ({exc}); retrying"}

    def close(self) -> None:
        """Close the card and its parts; the refresher stops."""
        self.stop()
        _forget(self)
        for part in _descendants(self):
            part.close()
        super().close()

    def update(self, doc: dict[str, Any]) -> None:
        """Show a status document: values, title, links, message, and its history (redrawn when it changed)."""
        self.doc = doc
        values = card_values(doc)
        for key, value in values.items():
            if self.fields[key].value != value:
                self.fields[key].value = value
        self.title.value = _title_html(self.name, values["state"])
        rollout = rollout_html(doc)
        if self.rollout.value != rollout:
            self.rollout.value = rollout
        self.rollout.layout.display = "block" if rollout else "none"
        monitor = monitor_html(doc)
        if self.monitor.value != monitor:
            self.monitor.value = monitor
        self.monitor.layout.display = "flex" if monitor else "none"
        self.links.value = links_html(doc)
        self.message.value = str(doc.get("message") or "")
        history = history_points(doc)
        if history != self.history or not self.plot.value:
            self.plot.value = history_png(history)
            self.history = history
        self.refreshes += 1

    def mark_deleted(self) -> None:
        """Show that the deployment is gone and stop refreshing."""
        self.deleted = True
        self.stop()
        _forget(self)
        self.fields["state"].value = "DELETED"
        self.title.value = _title_html(self.name, "DELETED")
        self.message.value = f"deployment {self.name!r} was deleted; this card no longer refreshes"

    def snapshot_html(self) -> str:
        """The static HTML of what the card shows now."""
        doc = {**self.doc, "state": self.fields["state"].value}
        return snapshot_html(doc, self.message.value)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = snapshot_text({**self.doc, "state": self.fields["state"].value})
        data["text/html"] = self.snapshot_html()
        return data

    def _show_refreshed(self, doc: dict[str, Any]) -> bool:
        self.update(doc)
        return True

    def _refresh_failed(self, message: str) -> None:
        self.message.value = message


def card_for(name: str, *, start: bool = True, interval_s: float = 2.0) -> DeploymentCard:
    """The live card of deployment ``name``: the one already shown (refreshed now), or a new one.

    Raises :class:`ray_deploy.ModelNotFound` when no such deployment exists.

    Example:
        >>> display(card_for("iris"))
    """
    with _live_lock:
        card = _live_cards.get(name)
    if card is not None and card.running:
        try:
            card.refresh()
        except ModelNotFound:
            card.mark_deleted()
            raise
        return card
    card = DeploymentCard(name, start=start, interval_s=interval_s)
    if start:
        with _live_lock:
            _live_cards[name] = card
    return card


def show(widget: widgets.DOMWidget, in_kernel: bool) -> None:
    """Display a card or table: live in a kernel; elsewhere (no widget frontend) its snapshot, then release it.

    Example:
        >>> show(card_for("iris"), in_kernel=True)
    """
    from IPython.display import display

    if in_kernel:
        display(widget)
        return
    bundle = widget._repr_mimebundle_()
    bundle.pop(WIDGET_VIEW_MIME, None)
    display(bundle, raw=True)
    widget.close()


def stop_all_cards() -> None:
    """Stop every live card's refresher (``ray_deploy.shutdown`` calls this: no card polls a stopped cluster).

    Example:
        >>> stop_all_cards()
    """
    with _live_lock:
        cards = list(_live_cards.values())
    for card in cards:
        card.stop()


on_shutdown(stop_all_cards)


def mark_deleted(name: str) -> None:
    """Tell the live card of ``name`` (if one is shown) that the deployment was deleted.

    Example:
        >>> mark_deleted("iris")
    """
    with _live_lock:
        card = _live_cards.get(name)
    if card is not None:
        card.mark_deleted()


def deployment_mimebundle(deployment: Any) -> dict[str, Any] | None:
    """IPython mime-bundle formatter for ``ray_deploy.Deployment``: its live card (None falls back to HTML).

    Registered by ``load_ipython_extension``; in a shell without a kernel (no widget frontend) the card is a
    snapshot that does not refresh.

    Example:
        >>> ip.display_formatter.mimebundle_formatter.for_type(Deployment, deployment_mimebundle)
    """
    in_kernel = _in_kernel()
    try:
        card = card_for(deployment.name, start=in_kernel)
    except RayDeployError:
        return None  # Deployment._repr_html_ shows the readable error
    except Exception:
        log.warning("could not build the live card of %r; showing the static view", deployment.name, exc_info=True)
        return None
    bundle: dict[str, Any] = card._repr_mimebundle_()
    if not in_kernel:  # no widget frontend can show it: keep the snapshot, release the widgets
        bundle.pop(WIDGET_VIEW_MIME, None)
        card.close()
    return bundle


def _descendants(box: widgets.Widget) -> list[widgets.Widget]:
    found: list[widgets.Widget] = []
    for child in getattr(box, "children", ()):
        found.append(child)
        found.extend(_descendants(child))
    return found


def _status_of(name: str) -> StatusFetcher:
    def fetch() -> dict[str, Any]:
        from ray_deploy.deployment import Deployment

        return Deployment(name).status()

    return fetch


def _in_kernel() -> bool:
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


def _forget(card: DeploymentCard) -> None:
    with _live_lock:
        if _live_cards.get(card.name) is card:
            del _live_cards[card.name]


def _title_html(name: str, state: str) -> str:
    color = _STATE_COLORS.get(state, _FAILED_COLOR if "FAIL" in state or "UNHEALTHY" in state else "#57606a")
    return (
        f"<b>ray-deploy: {html.escape(name)}</b> "
        f"<span style='color:{color};font-weight:bold'>{html.escape(state)}</span>"
    )


def _text(value: Any) -> str:
    if value is None:
        return _NONE
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
