"""The live rollout widget: a canary, shadow or A/B test of one deployment, refreshed in the background.

It renders the ``rollout`` section of the deployment's status document (``ray_deploy.get(name).status()
["rollout"]``, built in the cluster by the rollout controller; the widget computes no numbers of its own): the
traffic split between champion and challenger, each version's requests, error rate and p50/p99 side by side,
every step with its gates' verdicts (hover a verdict for its evidence), the report of a shadow or A/B test, and
the controller's message. Its buttons pause or resume the rollout, promote the challenger, or roll back; promote
and roll back ask for a second click to confirm. It refreshes from a daemon thread without blocking the kernel
and stops when it is closed, when the rollout has ended (promoted, rolled back, aborted, finished) or when the
deployment is deleted. Its mime bundle carries a static ``text/html`` snapshot for frontends without widgets.

Example:
    >>> rollout = ray_deploy.get("iris").canary(clf_v3, sample_input=X[:5])
    >>> RolloutWidget("iris", rollout=rollout)        # in a notebook: the live view with its buttons
    >>> print(rollout_text("iris", rollout.status()))
    rollout of iris: canary v2 → v3 [running]
    ...
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from jupyter_ext.refresher import Refresher, Refreshing
from jupyter_ext.widgets import FINAL_ROLLOUT_STATES, percent
from ray_deploy.errors import ModelNotFound

log = logging.getLogger(__name__)

SectionFetcher = Callable[[], dict[str, Any] | None]

_MODES = {"canary": "canary", "shadow": "shadow", "ab": "A/B test"}
_STATE_COLORS = {
    "running": "#0969da",
    "paused": "#9a6700",
    "awaiting_approval": "#9a6700",
    "promoted": "#1a7f37",
    "finished": "#1a7f37",
    "rolled_back": "#cf222e",
    "aborted": "#57606a",
}
_GATE_MARKS = {"pass": ("✓", "#1a7f37"), "fail": ("✗", "#cf222e"), "waiting": ("…", "#57606a")}
_CHAMPION_COLOR, _CHALLENGER_COLOR = "#1a7f37", "#0969da"
_NONE = "—"
_CONFIRM = {"promote": "Confirm promote", "rollback": "Confirm roll back"}


def is_final(section: dict[str, Any] | None) -> bool:
    """Whether a rollout section has ended (promoted, rolled back, aborted or finished).

    Example:
        >>> is_final({"state": "promoted"})
        True
    """
    return section is not None and section.get("state") in FINAL_ROLLOUT_STATES


def split_text(section: dict[str, Any]) -> str:
    """Who gets which share of the traffic, e.g. ``v2 (champion) 75% · v3 (challenger) 25%``.

    Example:
        >>> split_text({"mode": "shadow", "champion": "2", "challenger": "3", "share": 0.5})
        'v2 (champion) serves 100% · v3 (challenger) gets a copy of 50%'
    """
    champion, challenger = section.get("champion"), section.get("challenger")
    share = float(section.get("share") or 0)
    if section.get("mode") == "shadow":
        return f"v{champion} (champion) serves 100% · v{challenger} (challenger) gets a copy of {percent(share)}"
    return f"v{champion} (champion) {percent(1 - share)} · v{challenger} (challenger) {percent(share)}"


def traffic_rows(section: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Per-version traffic of the current step as ``(metric, [champion value, challenger value])`` rows.

    Example:
        >>> traffic_rows(section)[2]
        ('error rate', ['1.06%', '0%'])
    """
    traffic = section.get("traffic") or {}
    versions = [str(section.get("champion")), str(section.get("challenger"))]
    cells = [traffic.get(v) or {} for v in versions]
    return [
        ("requests", [_text(c.get("requests")) for c in cells]),
        ("errors", [_text(c.get("errors")) for c in cells]),
        ("error rate", [_NONE if c.get("error_rate") is None else percent(c["error_rate"]) for c in cells]),
        ("p50", [_ms(c.get("p50_ms")) for c in cells]),
        ("p99", [_ms(c.get("p99_ms")) for c in cells]),
    ]


def step_rows(section: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The gate names (in first-seen order) and one row per planned step: ``step`` (from 1), ``share``,
    ``progress`` (done, current, pending), ``decision`` and ``gates`` (gate name -> its GateResult dict).

    Example:
        >>> names, rows = step_rows(section)
        >>> names, [r["progress"] for r in rows]
        (['error_rate', 'p99_latency', 'prediction_shift', 'accuracy'], ['done', 'current', 'pending', 'pending'])
    """
    history = {int(step["index"]): step for step in section.get("history") or []}
    planned = list(section.get("steps") or []) if section.get("mode") == "canary" else [section.get("share") or 0]
    planned += [history[i]["share"] for i in sorted(history) if i >= len(planned)]
    names: list[str] = []
    for step in history.values():
        names += [g["gate"] for g in step.get("gates") or [] if g["gate"] not in names]
    final = is_final(section)
    rows: list[dict[str, Any]] = []
    for index, share in enumerate(planned):
        step = history.get(index)
        if step is None:
            rows.append({"step": index + 1, "share": share, "progress": "pending", "decision": "", "gates": {}})
            continue
        progress = "current" if step.get("ended_at") is None and not final else "done"
        gates = {g["gate"]: g for g in step.get("gates") or []}
        rows.append(
            {
                "step": index + 1,
                "share": step["share"],
                "progress": progress,
                "decision": step["decision"],
                "gates": gates,
            }
        )
    return names, rows


def rollout_panel_html(name: str, section: dict[str, Any] | None) -> str:
    """The static HTML of a rollout: title and state, split bar, traffic side by side, steps with gates, report,
    message (what the live widget shows, without buttons).

    Example:
        >>> "ray-deploy-rollout-steps" in rollout_panel_html("iris", section)
        True
    """
    if not section:
        return (
            f"<div class='ray-deploy-rollout'><b>rollout: {html.escape(name)}</b> no rollout has run; start one with "
            f"<code>%canary {html.escape(name)} MODEL_VAR</code></div>"
        )
    state = str(section.get("state") or "unknown")
    mode = str(section.get("mode") or "")
    champion, challenger = html.escape(str(section.get("champion"))), html.escape(str(section.get("challenger")))
    title = (
        f"<b>rollout: {html.escape(name)}</b> {html.escape(_MODES.get(mode, mode))} v{champion} → v{challenger} "
        f"<span style='color:{_STATE_COLORS.get(state, '#57606a')};font-weight:bold'>"
        f"{html.escape(state.replace('_', ' '))}</span>"
    )
    share = max(0.0, min(1.0, float(section.get("share") or 0)))
    if mode == "shadow":
        bar = f"<div style='width:100%;background:{_CHAMPION_COLOR}' title='v{champion} serves all traffic'></div>"
    else:
        bar = (
            f"<div style='width:{(1 - share) * 100:.4g}%;background:{_CHAMPION_COLOR}' title='v{champion}'></div>"
            f"<div style='width:{share * 100:.4g}%;background:{_CHALLENGER_COLOR}' title='v{challenger}'></div>"
        )
    split = (
        "<div class='ray-deploy-rollout-split' style='display:flex;width:340px;height:12px;border-radius:3px;"
        f"overflow:hidden;background:#d0d7de;margin:4px 0'>{bar}</div>"
        f"<div>{html.escape(split_text(section))}</div>"
    )
    cell = "style='padding:1px 8px;text-align:left'"
    traffic = (
        f"<table class='ray-deploy-rollout-traffic'><tr><th {cell}></th><th {cell}>v{champion} (champion)</th>"
        f"<th {cell}>v{challenger} (challenger)</th></tr>"
        + "".join(
            f"<tr><th {cell}>{html.escape(metric)}</th>" + "".join(f"<td {cell}>{html.escape(v)}</td>" for v in values)
            for metric, values in traffic_rows(section)
        )
        + "</table>"
    )
    names, rows = step_rows(section)
    head = "".join(f"<th {cell}>{html.escape(n.replace('_', ' '))}</th>" for n in names)
    body = ""
    for row in rows:
        style = {"pending": "color:#8c959f", "current": "font-weight:bold"}.get(row["progress"], "")
        gates = "".join(_gate_cell(row["gates"].get(n), cell) for n in names)
        decision = row["decision"] or row["progress"]
        body += (
            f"<tr style='{style}' data-progress='{row['progress']}'><td {cell}>{row['step']}</td>"
            f"<td {cell}>{percent(float(row['share']))}</td><td {cell}>{html.escape(decision)}</td>{gates}</tr>"
        )
    steps = (
        f"<table class='ray-deploy-rollout-steps'><tr><th {cell}>step</th><th {cell}>share</th>"
        f"<th {cell}>decision</th>{head}</tr>{body}</table>"
    )
    report = ""
    if section.get("report"):
        items = " · ".join(
            f"{html.escape(k.replace('_', ' '))} {html.escape(_text(v))}" for k, v in section["report"].items()
        )
        report = f"<div class='ray-deploy-rollout-report'><b>report</b> {items}</div>"
    message = f"<div><i>{html.escape(str(section.get('message') or ''))}</i></div>"
    return (
        f"<div class='ray-deploy-rollout'>{title}{split}"
        f"<div style='display:flex;gap:1.5em;align-items:flex-start;flex-wrap:wrap'>{traffic}{steps}</div>"
        f"{report}{message}</div>"
    )


def rollout_text(name: str, section: dict[str, Any] | None) -> str:
    """A plain-text view of a rollout (terminals, ``text/plain``).

    Example:
        >>> rollout_text("iris", section).splitlines()[0]
        'rollout of iris: canary v2 → v3 [running]'
    """
    if not section:
        return f"rollout of {name}: none has run; start one with %canary {name} MODEL_VAR"
    mode = str(section.get("mode") or "")
    lines = [
        f"rollout of {name}: {_MODES.get(mode, mode)} v{section.get('champion')} → v{section.get('challenger')} "
        f"[{section.get('state')}]",
        f"  split: {split_text(section)}",
    ]
    champion, challenger = section.get("champion"), section.get("challenger")
    lines += [f"  {metric}: v{champion} {a} · v{challenger} {b}" for metric, (a, b) in traffic_rows(section)]
    names, rows = step_rows(section)
    for row in rows:
        gates = ", ".join(f"{n} {row['gates'][n]['status']}" for n in names if n in row["gates"])
        decision = row["decision"] or row["progress"]
        lines.append(
            f"  step {row['step']} {percent(float(row['share']))} {decision}" + (f": {gates}" if gates else "")
        )
    if section.get("report"):
        lines.append("  report: " + ", ".join(f"{k} {_text(v)}" for k, v in section["report"].items()))
    lines.append(f"  {section.get('message') or ''}")
    return "\n".join(lines)


class RolloutWidget(Refreshing, widgets.VBox):
    """The live view of a deployment's rollout, with pause/resume, promote and roll back buttons.

    ``rollout`` is the :class:`ray_deploy.Rollout` the buttons act on (default: ``deployment.rollout``, the one
    running in the cluster); ``deployment`` defaults to ``ray_deploy.get(name)``; ``fetch`` returns the rollout
    section (default: ``deployment.status()["rollout"]``); ``section`` is the first one to show (fetched when not
    given). ``start=False`` renders without a refresh thread; ``threaded=False`` runs button actions in the
    caller's thread (tests).

    Example:
        >>> RolloutWidget("iris", interval_s=2.0).state
        'running'
    """

    def __init__(
        self,
        name: str,
        *,
        rollout: Any = None,
        deployment: Any = None,
        fetch: SectionFetcher | None = None,
        section: dict[str, Any] | None = None,
        interval_s: float = 2.0,
        start: bool = True,
        threaded: bool = True,
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self.section: dict[str, Any] | None = None
        self.deleted = False
        self.refreshes = 0
        self._rollout = rollout
        self._deployment = deployment
        self._fetch = fetch or self._status_section
        self._threaded = threaded
        self._armed: str | None = None  # the action waiting for its confirming second click
        self._refresher = Refresher(
            f"ray-deploy-rollout-{name}",
            lambda: self._fetch(),
            self._show_refreshed,
            self._deployment_gone,
            self._refresh_failed,
            lambda: self.interval_s,
            f"the rollout of {name!r}",
        )
        self.body = widgets.HTML()
        self.pause_button = widgets.Button(description="Pause", icon="pause", tooltip="pause at the current step")
        self.promote_button = widgets.Button(
            description="Promote", button_style="success", tooltip="make the challenger the champion now"
        )
        self.rollback_button = widgets.Button(
            description="Roll back", button_style="danger", tooltip="serve the champion alone again"
        )
        self.note = widgets.Label()
        self.pause_button.on_click(lambda _: self.click("pause"))
        self.promote_button.on_click(lambda _: self.click("promote"))
        self.rollback_button.on_click(lambda _: self.click("rollback"))
        self.buttons = widgets.HBox([self.pause_button, self.promote_button, self.rollback_button])
        super().__init__(
            [self.body, self.buttons, self.note],
            layout=widgets.Layout(border="1px solid #d0d7de", padding="4px 8px", margin="4px 0"),
        )
        self.add_class("ray-deploy-rollout")
        self.update(section if section is not None else self._first_section())
        if start:
            self.start()

    # ---- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> str | None:
        """The rollout's state as last shown, or None without a rollout."""
        return None if self.section is None else str(self.section.get("state"))

    def deployment(self) -> Any:
        """The deployment the widget shows (``ray_deploy.get(name)`` unless one was given)."""
        if self._deployment is None:
            import ray_deploy

            self._deployment = ray_deploy.get(self.name)
        return self._deployment

    # ---- refreshing ----------------------------------------------------------------------------

    def _finished(self) -> bool:
        return is_final(self.section)

    def close(self) -> None:
        """Close the widget and its parts; the refresher stops."""
        self.stop()
        for part in (self.body, self.pause_button, self.promote_button, self.rollback_button, self.buttons, self.note):
            part.close()
        super().close()

    def update(self, section: dict[str, Any] | None) -> None:
        """Show a rollout section (or none); the buttons follow its state."""
        self.section = section
        value = rollout_panel_html(self.name, section)
        if self.body.value != value:
            self.body.value = value
        state = self.state
        final = section is None or is_final(section)
        self.pause_button.description = "Resume" if state == "paused" else "Pause"
        self.pause_button.icon = "play" if state == "paused" else "pause"
        self.pause_button.disabled = final or state not in ("running", "paused")
        self.promote_button.disabled = final
        self.rollback_button.disabled = section is None
        if final and self._armed == "promote":
            self._disarm()
        self.refreshes += 1

    def _status_section(self) -> dict[str, Any] | None:
        section: dict[str, Any] | None = self.deployment().status().get("rollout")
        return section

    def _first_section(self) -> dict[str, Any] | None:
        try:
            return self._fetch()
        except ModelNotFound:
            raise
        except Exception as exc:  # the cluster may be restarting: show that, the refresher keeps trying
            log.info("no rollout status yet for %r", self.name, exc_info=True)
            self.note.value = f"rollout status unavailable ({type(exc).__name__}: {exc}); retrying"
            return None

    def _show_refreshed(self, section: dict[str, Any] | None) -> bool:
        self.update(section)
        return not is_final(section)  # an ended rollout changes no more: stop refreshing

    def _deployment_gone(self) -> None:
        self.deleted = True
        self.note.value = f"deployment {self.name!r} was deleted; this view no longer refreshes"
        self.promote_button.disabled = self.pause_button.disabled = self.rollback_button.disabled = True

    def _refresh_failed(self, message: str) -> None:
        self.note.value = message

    # ---- buttons -------------------------------------------------------------------------------

    def click(self, action: str) -> None:
        """What a button does: ``pause`` (pause or resume), ``promote`` or ``rollback``; promote and roll back
        act on the second click (any other click cancels the first).

        Example:
            >>> widget.click("promote"); widget.click("promote")   # promotes the challenger
        """
        if action in _CONFIRM and self._armed != action:
            self._disarm()
            self._armed = action
            button = self.promote_button if action == "promote" else self.rollback_button
            button.description = _CONFIRM[action]
            section = self.section or {}
            what = (
                f"make v{section.get('challenger')} the champion (it takes all traffic at once)"
                if action == "promote"
                else f"serve v{section.get('champion')} alone again and end the {section.get('mode', 'rollout')}"
            )
            self.note.value = f"click '{_CONFIRM[action]}' to {what}; any other button cancels"
            return
        self._disarm()
        if action == "pause":
            action = "resume" if self.state == "paused" else "pause"
        if self._threaded:
            threading.Thread(target=self._act, args=(action,), name=f"ray-deploy-{action}", daemon=True).start()
        else:
            self._act(action)

    def _disarm(self) -> None:
        self._armed = None
        self.promote_button.description = "Promote"
        self.rollback_button.description = "Roll back"

    def _act(self, action: str) -> None:
        self.note.value = f"{action} {self.name}: working…"
        try:
            done = self._perform(action)
        except Exception as exc:
            log.info("the %s of %r failed", action, self.name, exc_info=True)
            first = str(exc).partition("\n")[0]
            self.note.value = f"{action} failed: {type(exc).__name__}: {first}"
            return
        self.note.value = done
        try:
            self.refresh()
        except Exception:
            log.info("refreshing the rollout of %r after %s failed", self.name, action, exc_info=True)
        if not is_final(self.section) and not self.running and not self.deleted:
            self.start()

    def _perform(self, action: str) -> str:
        section = self.section or {}
        if action in ("pause", "resume"):
            rollout = self._live_rollout()
            getattr(rollout, action)()
            return f"{'paused' if action == 'pause' else 'resumed'} the rollout of {self.name}"
        if action == "promote":
            promoted = self._rollout.promote() if self._rollout is not None else self.deployment().promote()
            if promoted is False:  # the deployment requires approval by a second person
                return (
                    f"the promotion of v{section.get('challenger')} of {self.name} awaits approval by a second "
                    f"person: %approve {self.name} {section.get('challenger')}"
                )
            return f"promoted v{section.get('challenger')} of {self.name}: it is the champion"
        if action == "rollback":
            if self._rollout is not None and not is_final(section):
                self._rollout.rollback()
            else:
                self.deployment().rollback()
            return f"rolled back {self.name}: v{section.get('champion')} serves again"
        raise ValueError(f"unknown rollout action {action!r}; known: pause, resume, promote, rollback")

    def _live_rollout(self) -> Any:
        rollout = self._rollout if self._rollout is not None else self.deployment().rollout
        if rollout is None:
            from ray_deploy.errors import ConfigError

            raise ConfigError(f"no rollout runs on {self.name!r}; start one with %canary {self.name} MODEL_VAR")
        return rollout

    # ---- display -------------------------------------------------------------------------------

    def snapshot_html(self) -> str:
        """The static HTML of what the widget shows now (without buttons)."""
        return rollout_panel_html(self.name, self.section)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = rollout_text(self.name, self.section)
        data["text/html"] = self.snapshot_html()
        return data


def _gate_cell(gate: dict[str, Any] | None, cell: str) -> str:
    if gate is None:
        return f"<td {cell}></td>"
    mark, color = _GATE_MARKS.get(str(gate.get("status")), ("?", "#57606a"))
    title = html.escape(str(gate.get("message") or ""), quote=True)
    return (
        f"<td {cell} title='{title}' data-status='{gate.get('status')}'><span style='color:{color}'>{mark}</span></td>"
    )


def _ms(value: Any) -> str:
    return _NONE if value is None else f"{value:.3g} ms"


def _text(value: Any) -> str:
    if value is None:
        return _NONE
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
