"""The live retrain panel: one deployment's retrain (Ray Tune trials in a Ray Job), refreshed in the background.

It renders only the ``retrain`` section of the deployment's status document (written in the cluster by the
retrain job; the panel computes no numbers of its own): a header (state badge, trigger, elapsed and remaining
time against the time budget, trials done of planned, the message), the trials table, the best-so-far curve
(an offline matplotlib PNG), and once the retrain has ended the evaluation gate's comparison (held-out and
recent rows, champion vs challenger) and the record of the data it trained on. Its Cancel button cancels the
retrain (``RetrainResult(name, retrain_id).cancel()``) and is disabled once the retrain is final. It polls
about once a second from a daemon thread (:class:`~jupyter_ext.refresher.Refresher`) while the retrain runs and
stops when the retrain is final, the deployment is deleted or the panel is closed. Its mime bundle carries a
static ``text/html`` snapshot for frontends without widgets.

Example:
    >>> result = ray_deploy.retrain("iris", num_samples=8, wait=False)
    >>> RetrainPanel("iris", result=result)           # in a notebook: the live view with its Cancel button
    >>> print(retrain_text("iris", result.status()).splitlines()[0])
    retrain of iris: running (manual) · trials 3/8 done
"""

from __future__ import annotations

import html
import io
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets

from jupyter_ext.refresher import Refresher, Refreshing
from ray_deploy.errors import ModelNotFound

__all__ = [
    "FINAL_RETRAIN_STATES",
    "RetrainPanel",
    "curve_png",
    "data_html",
    "gate_html",
    "header_html",
    "is_final",
    "result_html",
    "retrain_html",
    "retrain_text",
    "trials_html",
]

log = logging.getLogger(__name__)

SectionFetcher = Callable[[], dict[str, Any] | None]
Clock = Callable[[], float]

FINAL_RETRAIN_STATES = frozenset({"succeeded", "failed", "cancelled"})
_STATE_COLORS = {
    "pending": "#57606a",
    "running": "#0969da",
    "succeeded": "#1a7f37",
    "failed": "#cf222e",
    "cancelled": "#9a6700",
}
_TRIAL_COLORS = {"RUNNING": "#0969da", "ERROR": "#cf222e", "PAUSED": "#9a6700", "PENDING": "#57606a"}
_DONE_TRIALS = ("TERMINATED", "ERROR")
_DATASETS = {"held_out": "held-out", "recent": "recent"}
_CELL = "style='padding:1px 8px;text-align:left'"
_NONE = "—"
_PNG_WIDTH_IN, _PNG_HEIGHT_IN, _DPI = 4.2, 1.6, 80


def is_final(section: dict[str, Any] | None) -> bool:
    """Whether a retrain section has ended (succeeded, failed or cancelled).

    Example:
        >>> is_final({"state": "cancelled"}), is_final({"state": "running"})
        (True, False)
    """
    return section is not None and section.get("state") in FINAL_RETRAIN_STATES


def trials_done(section: dict[str, Any]) -> int:
    """Trials that have ended (terminated or errored).

    Example:
        >>> trials_done({"trials": [{"status": "TERMINATED"}, {"status": "RUNNING"}, {"status": "ERROR"}]})
        2
    """
    return sum(1 for t in section.get("trials") or [] if t.get("status") in _DONE_TRIALS)


def duration(seconds: float | None) -> str:
    """Seconds as a short duration.

    Example:
        >>> duration(42), duration(185), duration(3720)
        ('42s', '3m 05s', '1h 02m')
    """
    if seconds is None:
        return _NONE
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def timing(section: dict[str, Any], now: float) -> tuple[float, float | None]:
    """Elapsed seconds (to ``ended_at`` once final) and the seconds left of the time budget (None without one).

    Example:
        >>> timing({"started_at": 100.0, "ended_at": None, "time_budget_s": 300.0}, now=160.0)
        (60.0, 240.0)
    """
    end = section.get("ended_at")
    elapsed = max(0.0, float(end if end is not None else now) - float(section.get("started_at") or now))
    budget = section.get("time_budget_s")
    if budget is None:
        return elapsed, None
    return elapsed, max(0.0, float(budget) - elapsed)


def best_value(section: dict[str, Any]) -> float | None:
    """The best metric so far: the last point of the best-so-far curve, or None before any.

    Example:
        >>> best_value({"best_curve": [{"t": 1.0, "value": 0.9}, {"t": 5.0, "value": 0.95}]})
        0.95
    """
    curve = section.get("best_curve") or []
    return float(curve[-1]["value"]) if curve else None


def header_html(name: str, section: dict[str, Any] | None, now: float | None = None) -> str:
    """The header: title with state badge, trigger, time against the budget, trials done/planned, best, message.

    Example:
        >>> "trials 3/8 done" in header_html("iris", section, now=section["updated_at"])
        True
    """
    if not section:
        return (
            f"<div class='ray-deploy-retrain-header'><b>retrain: {html.escape(name)}</b> no retrain has run; "
            f"start one with <code>%retrain {html.escape(name)}</code></div>"
        )
    state = str(section.get("state") or "unknown")
    badge = (
        f"<span class='ray-deploy-retrain-state' data-state='{html.escape(state, quote=True)}' "
        f"style='color:#fff;background:{_STATE_COLORS.get(state, '#57606a')};border-radius:8px;padding:0 6px;"
        f"font-weight:bold'>{html.escape(state)}</span>"
    )
    parts = [f"trigger {html.escape(str(section.get('trigger')))}", html.escape(_time_text(section, now))]
    parts.append(f"trials {trials_done(section)}/{section.get('num_samples')} done")
    best = best_value(section)
    if best is not None:
        parts.append(f"best {html.escape(str(section.get('metric')))} {_num(best)}")
    if section.get("version"):
        parts.append(f"v{html.escape(str(section['version']))} (then {html.escape(str(section.get('then')))})")
    return (
        f"<div class='ray-deploy-retrain-header'><b>retrain: {html.escape(name)}</b> {badge} "
        + " &middot; ".join(parts)
        + f"<div class='ray-deploy-retrain-message'><i>{html.escape(str(section.get('message') or ''))}</i></div>"
        + "</div>"
    )


def trials_html(section: dict[str, Any] | None) -> str:
    """The trials table: id, status, params, metric, iterations, stopped early, error; the best trial in bold.

    Example:
        >>> trials_html(section).count("<tr") == len(section["trials"]) + 1
        True
    """
    trials = (section or {}).get("trials") or []
    if not trials:
        return "<div class='ray-deploy-retrain-trials'><i>no trials yet</i></div>"
    best = (section or {}).get("best_trial")
    metric = html.escape(str((section or {}).get("metric") or "metric"))
    head = "".join(
        f"<th {_CELL}>{h}</th>" for h in ("trial", "status", "params", metric, "iterations", "stopped early", "error")
    )
    body = ""
    for t in trials:
        status = str(t.get("status"))
        color = _TRIAL_COLORS.get(status)
        params = ", ".join(f"{k}={_num(v)}" for k, v in (t.get("config") or {}).items())
        error = str(t.get("error") or "")
        style = "font-weight:bold" if t.get("trial_id") == best else ""
        body += (
            f"<tr style='{style}' data-status='{html.escape(status, quote=True)}'>"
            f"<td {_CELL}>{html.escape(str(t.get('trial_id')))}{' ★' if t.get('trial_id') == best else ''}</td>"
            f"<td {_CELL}><span style='color:{color or 'inherit'}'>{html.escape(status)}</span></td>"
            f"<td {_CELL}><code>{html.escape(params)}</code></td><td {_CELL}>{_num(t.get('metric'))}</td>"
            f"<td {_CELL}>{t.get('iterations')}</td><td {_CELL}>{'yes' if t.get('stopped_early') else ''}</td>"
            f"<td {_CELL} style='color:#cf222e'>{html.escape(error)}</td></tr>"
        )
    return f"<table class='ray-deploy-retrain-trials'><tr>{head}</tr>{body}</table>"


def gate_html(section: dict[str, Any] | None) -> str:
    """The evaluation gate: passed/failed with its reason, and champion vs challenger per data set ("" before it ran).

    Example:
        >>> "gate passed" in gate_html(finished_section)
        True
    """
    gate = (section or {}).get("gate")
    if not gate:
        return ""
    passed = bool(gate.get("passed"))
    verdict = (
        f"<span class='ray-deploy-retrain-gate-verdict' data-passed='{str(passed).lower()}' "
        f"style='color:{'#1a7f37' if passed else '#cf222e'};font-weight:bold'>"
        f"{'✓ gate passed' if passed else '✗ gate failed'}</span>"
    )
    metric = html.escape(str(gate.get("metric")))
    head = "".join(f"<th {_CELL}>{h}</th>" for h in ("data", "rows", "champion", "challenger", "delta"))
    body = "".join(
        f"<tr data-dataset='{html.escape(str(row.get('dataset')), quote=True)}'>"
        f"<td {_CELL}>{html.escape(_DATASETS.get(str(row.get('dataset')), str(row.get('dataset'))))}</td>"
        f"<td {_CELL}>{row.get('rows')}</td><td {_CELL}>{_num(row.get('champion'))}</td>"
        f"<td {_CELL}>{_num(row.get('challenger'))}</td><td {_CELL}>{_signed(row.get('delta'))}</td></tr>"
        for row in gate.get("rows") or []
    )
    return (
        f"<div class='ray-deploy-retrain-gate'>{verdict} {metric}: at least {_num(gate.get('min_improvement'))} "
        f"better, at most {_num(gate.get('max_regression'))} worse on held-out rows"
        f"<div>{html.escape(str(gate.get('reason') or ''))}</div>"
        f"<table><tr>{head}</tr>{body}</table></div>"
    )


def data_html(section: dict[str, Any] | None) -> str:
    """The data record: rows (train/valid/test), sources, content hash and time range ("" before it is gathered).

    Example:
        >>> "1800 rows" in data_html(finished_section)
        True
    """
    data = (section or {}).get("data")
    if not data:
        return ""
    digest = str(data.get("content_hash") or "")
    return (
        "<div class='ray-deploy-retrain-data'><b>data</b> "
        f"{data.get('rows')} rows (train {data.get('train_rows')} · valid {data.get('valid_rows')} · "
        f"test {data.get('test_rows')}) &middot; from reference {data.get('from_reference')} · captured "
        f"{data.get('from_captured')} · user {data.get('from_user')} &middot; "
        f"<code title='{html.escape(digest, quote=True)}'>sha256 {html.escape(digest[:12])}</code> &middot; "
        f"{html.escape(_time_range(data.get('since'), data.get('until')))}</div>"
    )


def curve_png(section: dict[str, Any] | None) -> bytes:
    """The best metric so far against seconds since the retrain started, as a small PNG (offline matplotlib).

    Example:
        >>> curve_png({"metric": "accuracy", "best_curve": [{"t": 1.0, "value": 0.9}]})[:4]
        b'\\x89PNG'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    section = section or {}
    points = section.get("best_curve") or []
    fig = Figure(figsize=(_PNG_WIDTH_IN, _PNG_HEIGHT_IN), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs, ys = [float(p["t"]) for p in points], [float(p["value"]) for p in points]
    if points:
        ax.step(xs, ys, where="post", color="tab:blue", linewidth=1.5)
        ax.plot(xs, ys, "o", color="tab:blue", markersize=3)
    else:
        ax.text(0.5, 0.5, "no result yet", transform=ax.transAxes, ha="center", va="center", fontsize=8)
    mode = section.get("mode")
    ax.set_ylabel(f"best {section.get('metric') or 'metric'}" + (f" ({mode})" if mode else ""), fontsize=7)
    ax.set_xlabel("seconds since start", fontsize=7)
    ax.set_xlim(left=0)
    ax.tick_params(labelsize=6)
    fig.tight_layout(pad=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def retrain_html(name: str, section: dict[str, Any] | None, now: float | None = None, plot: bool = True) -> str:
    """The static HTML of a retrain: header, trials, best-so-far curve, gate and data (what the panel shows).

    Example:
        >>> "ray-deploy-retrain-trials" in retrain_html("iris", section, plot=False)
        True
    """
    if not section:
        return f"<div class='ray-deploy-retrain'>{header_html(name, section)}</div>"
    image = ""
    if plot and section.get("best_curve"):
        import base64

        encoded = base64.b64encode(curve_png(section)).decode("ascii")
        image = f"<img class='ray-deploy-retrain-curve' src='data:image/png;base64,{encoded}' style='width:340px'/>"
    return (
        f"<div class='ray-deploy-retrain'>{header_html(name, section, now)}"
        f"<div style='display:flex;gap:1.5em;align-items:flex-start;flex-wrap:wrap'>{trials_html(section)}{image}</div>"
        f"{gate_html(section) if is_final(section) else ''}{data_html(section)}</div>"
    )


def result_html(name: str, result: Any) -> str:
    """The static HTML of a :class:`ray_deploy.RetrainResult`, or a line saying its job has not written a status yet.

    Example:
        >>> result_html("iris", ray_deploy.retrain("iris", wait=False))[:30]
        "<div class='ray-deploy-retrain"
    """
    try:
        section = result.status()
    except Exception as exc:  # just submitted: the job writes its first status within seconds
        log.info("no status yet for retrain %s of %r", getattr(result, "retrain_id", None), name, exc_info=True)
        return f"<div class='ray-deploy-retrain'>{_waiting_html(name, getattr(result, 'retrain_id', None), exc)}</div>"
    return retrain_html(name, section)


def retrain_text(name: str, section: dict[str, Any] | None, now: float | None = None) -> str:
    """A plain-text view of a retrain (terminals, ``text/plain``).

    Example:
        >>> retrain_text("iris", None)
        'retrain of iris: none has run; start one with %retrain iris'
    """
    if not section:
        return f"retrain of {name}: none has run; start one with %retrain {name}"
    lines = [
        f"retrain of {name}: {section.get('state')} ({section.get('trigger')}) · "
        f"trials {trials_done(section)}/{section.get('num_samples')} done · {_time_text(section, now)}"
    ]
    for t in section.get("trials") or []:
        params = ", ".join(f"{k}={_num(v)}" for k, v in (t.get("config") or {}).items())
        extra = " (stopped early)" if t.get("stopped_early") else ""
        error = f" error: {t['error']}" if t.get("error") else ""
        lines.append(
            f"  {t.get('trial_id')} {t.get('status')} {section.get('metric')} {_num(t.get('metric'))} "
            f"after {t.get('iterations')}{extra} [{params}]{error}"
        )
    gate = section.get("gate")
    if gate and is_final(section):
        lines.append(f"  gate {'passed' if gate.get('passed') else 'failed'}: {gate.get('reason')}")
        for row in gate.get("rows") or []:
            lines.append(
                f"    {row.get('dataset')} ({row.get('rows')} rows): champion {_num(row.get('champion'))} · "
                f"challenger {_num(row.get('challenger'))} · delta {_signed(row.get('delta'))}"
            )
    lines.append(f"  {section.get('message') or ''}")
    return "\n".join(lines)


class RetrainPanel(Refreshing, widgets.VBox):
    """The live view of a deployment's retrain, with a Cancel button.

    ``result`` is the :class:`ray_deploy.retrain.RetrainResult` to show (default: the deployment's last retrain,
    or ``RetrainResult(name, retrain_id)``); ``fetch`` returns the retrain section (default:
    ``result.status()``, or the status document's ``retrain`` without a result); ``section`` is the first one to
    show (fetched when not given). ``start=False`` renders without a refresh thread; ``threaded=False`` runs the
    cancel in the caller's thread (tests); ``clock`` gives the time elapsed is measured to.

    Example:
        >>> RetrainPanel("iris", result=ray_deploy.retrain("iris", wait=False)).state
        'running'
    """

    def __init__(
        self,
        name: str,
        *,
        result: Any = None,
        retrain_id: str | None = None,
        fetch: SectionFetcher | None = None,
        section: dict[str, Any] | None = None,
        interval_s: float = 1.0,
        start: bool = True,
        threaded: bool = True,
        clock: Clock = time.time,
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self.section: dict[str, Any] | None = None
        self.deleted = False
        self.refreshes = 0
        self._result = result
        self._retrain_id = retrain_id if retrain_id is not None else getattr(result, "retrain_id", None)
        self._fetch = fetch or self._status_section
        self._threaded = threaded
        self._clock = clock
        self._curve: list[Any] | None = None  # the best_curve the image shows
        self._refresher = Refresher(
            f"ray-deploy-retrain-{name}",
            lambda: self._fetch(),
            self._show_refreshed,
            self._deployment_gone,
            self._refresh_failed,
            lambda: self.interval_s,
            f"the retrain of {name!r}",
        )
        self.header = widgets.HTML()
        self.trials = widgets.HTML()
        self.curve = widgets.Image(format="png", layout=widgets.Layout(width="340px"))
        self.gate = widgets.HTML()
        self.data = widgets.HTML()
        self.cancel_button = widgets.Button(
            description="Cancel", icon="stop", button_style="danger", tooltip="stop every trial; nothing is registered"
        )
        self.note = widgets.Label()
        self.cancel_button.on_click(lambda _: self.cancel())
        super().__init__(
            [
                self.header,
                widgets.HBox([self.trials, self.curve]),
                self.gate,
                self.data,
                widgets.HBox([self.cancel_button, self.note]),
            ],
            layout=widgets.Layout(border="1px solid #d0d7de", padding="4px 8px", margin="4px 0"),
        )
        self.add_class("ray-deploy-retrain")
        self.update(section if section is not None else self._first_section())
        if start:
            self.start()

    # ---- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> str | None:
        """The retrain's state as last shown, or None without a retrain."""
        return None if self.section is None else str(self.section.get("state"))

    def result(self) -> Any:
        """The :class:`RetrainResult` the Cancel button acts on (built from the shown section's retrain id)."""
        if self._result is None:
            retrain_id = self._retrain_id or (self.section or {}).get("retrain_id")
            if retrain_id is None:
                from ray_deploy.errors import ConfigError

                raise ConfigError(f"no retrain runs on {self.name!r}; start one with %retrain {self.name}")
            from ray_deploy import RetrainResult

            self._result = RetrainResult(self.name, retrain_id)
        return self._result

    # ---- refreshing ----------------------------------------------------------------------------

    def _finished(self) -> bool:
        return is_final(self.section)

    def close(self) -> None:
        """Close the panel and its parts; the refresher stops."""
        self.stop()
        for part in _descendants(self):
            part.close()
        super().close()

    def update(self, section: dict[str, Any] | None) -> None:
        """Show a retrain section (or none) in place: only the parts that changed are replaced."""
        self.section = section
        final = is_final(section)
        waiting = section is None and self._retrain_id is not None
        if waiting:
            _set(self.header, _waiting_html(self.name, self._retrain_id))
        else:
            _set(self.header, header_html(self.name, section, self._clock()))
        _set(self.trials, trials_html(section) if section else "")
        curve = list((section or {}).get("best_curve") or [])
        if curve != self._curve:
            self.curve.value = curve_png(section) if curve else b""
            self.curve.layout.display = "block" if curve else "none"
            self._curve = curve
        _set(self.gate, gate_html(section) if final else "")
        _set(self.data, data_html(section))
        self.cancel_button.disabled = (section is None and not waiting) or final or self.deleted
        self.refreshes += 1

    def _status_section(self) -> dict[str, Any] | None:
        if self._result is not None or self._retrain_id is not None:
            section: dict[str, Any] | None = self.result().status()
            return section
        from ray_deploy.deployment import Deployment

        found: dict[str, Any] | None = Deployment(self.name).status().get("retrain")
        return found

    def _first_section(self) -> dict[str, Any] | None:
        try:
            return self._fetch()
        except ModelNotFound:
            raise
        except Exception as exc:  # the job may not have written its section yet: show that, keep trying
            log.info("no retrain status yet for %r", self.name, exc_info=True)
            self.note.value = f"retrain status unavailable ({type(exc).__name__}: {exc}); retrying"
            return None

    def _show_refreshed(self, section: dict[str, Any] | None) -> bool:
        if self.note.value.startswith("refresh failed"):
            self.note.value = ""
        self.update(section)
        return not is_final(section)  # an ended retrain changes no more: stop refreshing

    def _deployment_gone(self) -> None:
        self.deleted = True
        self.cancel_button.disabled = True
        self.note.value = f"deployment {self.name!r} was deleted; this view no longer refreshes"

    def _refresh_failed(self, message: str) -> None:
        self.note.value = message

    # ---- cancel --------------------------------------------------------------------------------

    def cancel(self) -> None:
        """What the Cancel button does: cancel the retrain in the cluster, then show its state.

        Example:
            >>> panel.cancel()       # the trials stop; the section turns 'cancelled'
        """
        if is_final(self.section):
            return
        self.cancel_button.disabled = True
        if self._threaded:
            threading.Thread(target=self._cancel, name=f"ray-deploy-cancel-{self.name}", daemon=True).start()
        else:
            self._cancel()

    def _cancel(self) -> None:
        self.note.value = f"cancelling the retrain of {self.name}…"
        try:
            self.result().cancel()
        except Exception as exc:
            log.info("cancelling the retrain of %r failed", self.name, exc_info=True)
            self.note.value = f"cancel failed: {type(exc).__name__}: {str(exc).partition(chr(10))[0]}"
            self.cancel_button.disabled = is_final(self.section)
            return
        self.note.value = f"cancelled the retrain of {self.name}"
        try:
            self.refresh()
        except Exception:
            log.info("refreshing the retrain of %r after cancel failed", self.name, exc_info=True)

    # ---- display -------------------------------------------------------------------------------

    def snapshot_html(self) -> str:
        """The static HTML of what the panel shows now (without the button)."""
        return retrain_html(self.name, self.section, self._clock())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = retrain_text(self.name, self.section, self._clock())
        data["text/html"] = self.snapshot_html()
        return data


def _waiting_html(name: str, retrain_id: str | None, exc: BaseException | None = None) -> str:
    why = f" ({type(exc).__name__}: {str(exc).partition(chr(10))[0]})" if exc is not None else ""
    return (
        f"<div class='ray-deploy-retrain-header'><b>retrain: {html.escape(name)}</b> "
        f"{html.escape(str(retrain_id))} submitted; waiting for its first status{html.escape(why)}</div>"
    )


def _set(widget: widgets.HTML, value: str) -> None:
    if widget.value != value:
        widget.value = value
    widget.layout.display = "block" if value else "none"


def _descendants(box: widgets.Widget) -> list[widgets.Widget]:
    found: list[widgets.Widget] = []
    for child in getattr(box, "children", ()):
        found += [*_descendants(child), child]
    return found


def _time_text(section: dict[str, Any], now: float | None) -> str:
    elapsed, left = timing(section, time.time() if now is None else now)
    budget = section.get("time_budget_s")
    if budget is None:
        return f"{'took' if is_final(section) else 'elapsed'} {duration(elapsed)}"
    if is_final(section):
        return f"took {duration(elapsed)} of {duration(budget)} budget"
    return f"elapsed {duration(elapsed)} of {duration(budget)} budget · {duration(left)} left"


def _time_range(since: float | None, until: float | None) -> str:
    if since is None and until is None:
        return "no captured rows"
    return f"captured {_utc(since)} → {_utc(until)}"


def _utc(t: float | None) -> str:
    if t is None:
        return _NONE
    return datetime.fromtimestamp(float(t), tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _num(value: Any) -> str:
    if value is None:
        return _NONE
    if isinstance(value, bool | int | str):
        return str(value)
    return f"{float(value):.4g}"


def _signed(value: Any) -> str:
    return _NONE if value is None else f"{float(value):+.4g}"
