"""IPython magics for ray-deploy: ``%deploy``/``%%deploy``, ``%predict``, ``%explain``, ``%fairness``, ``%drift``,
``%deployments``, ``%scale``, ``%undeploy``, ``%ray``, and the safe rollouts ``%canary``, ``%shadow``, ``%abtest``,
``%promote``, ``%rollback`` and ``%versions``, and retraining with Ray Tune: ``%retrain``, ``%auto_retrain``.

The magics are thin: they parse arguments, look variables up in the notebook's namespace, call the
``ray_deploy`` API and display the result. A user error (bad arguments, an unknown variable, any
``RayDeployError``) prints one clear line; an unexpected error prints a short line and keeps the traceback
for ``%tb``.

Example:
    >>> %load_ext jupyter_ext
    >>> %deploy clf --name iris --sample X[:5] --max-replicas 2 -o dep
    >>> %predict iris X[:3] -o preds
    >>> %canary iris clf_v2 --sample X[:5] --steps 0.1,0.5,1 -o rollout
    >>> %retrain iris --trials 8 --gpus 0.5 --budget 300 --then canary -o job
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

import ray_deploy
from ray_deploy.errors import RayDeployError


@magic_arguments()
@argument("name", help="deployment name (letters, digits, '-', '_', '.'), e.g. iris")
@argument("-o", "--output", metavar="VAR", help="store the Deployment in this notebook variable")
@argument("--timeout", type=float, default=600.0, metavar="S", help="seconds to wait until it serves (600)")
def _deploy_cell_arguments(line: str) -> None:
    """%%deploy NAME [-o VAR] [--timeout S], then a YAML deployment spec as the cell body."""


@magics_class
class RayDeployMagics(Magics):
    """The ray-deploy magics; ``%load_ext jupyter_ext`` registers them."""

    @magic_arguments()
    @argument("model", help="variable (or expression) holding the model, e.g. clf")
    @argument("--name", "-n", required=True, help="deployment name (letters, digits, '-', '_', '.'), e.g. iris")
    @argument("--sample", metavar="VAR", help="variable (or expression) with sample input, e.g. X[:5]")
    @argument(
        "--reference",
        metavar="VAR",
        help="variable with the training data drift is measured against (default: --sample with 100+ rows)",
    )
    @argument("--no-capture", action="store_true", help="do not capture requests (no drift, quality or labels)")
    @argument("--gpus", type=float, metavar="N", help="GPUs per replica, fractional allowed (num_gpus)")
    @argument("--cpus", type=float, metavar="N", help="CPUs per replica (num_cpus)")
    @argument("--min-replicas", type=int, metavar="N", help="fewest replicas; 0 scales to zero when idle")
    @argument("--max-replicas", type=int, metavar="N", help="most replicas the autoscaler may start")
    @argument("--batch", type=int, metavar="N", help="rows per batch (max_batch_size)")
    @argument(
        "--predict-method",
        choices=["predict", "predict_proba"],
        default="predict",
        help="predict_proba serves class probabilities (scikit-learn classifiers; softmax for torch)",
    )
    @argument("--timeout", type=float, default=600.0, metavar="S", help="seconds to wait until it serves (600)")
    @argument("-o", "--output", metavar="VAR", help="store the Deployment in this notebook variable")
    @line_cell_magic
    def deploy(self, line: str, cell: str | None = None) -> None:
        """Deploy a model from a notebook variable and show its live card.

        Line form: ``%deploy MODEL_VAR --name NAME [--sample VAR] [--reference VAR] [--no-capture] [--gpus N]
        [--cpus N] [--min-replicas N] [--max-replicas N] [--batch N] [--predict-method predict_proba] [-o VAR]``.

        Cell form: ``%%deploy NAME [-o VAR] [--timeout S]`` with a YAML spec as the cell body: ``model:``
        (the variable holding the model), optional ``sample_input:`` and ``reference:`` (variables),
        ``predict_method:`` (``predict`` or ``predict_proba``), ``capture:`` and ``drift:`` (mappings of
        CaptureSpec / DriftSpec fields, e.g. ``drift: {window_rows: 1000}``) and any deployment option
        (num_cpus, num_gpus, memory, min_replicas, max_replicas, initial_replicas, target_ongoing_requests,
        upscale_delay_s, downscale_delay_s, max_batch_size, batch_wait_timeout_s, max_ongoing_requests,
        max_body_mb, request_timeout_s). Example::

            %%deploy iris -o dep
            model: clf
            sample_input: X[:5]
            min_replicas: 0
            max_replicas: 2

        Deploying to an existing name makes a new version and swaps it in without downtime. Interrupt the
        kernel to stop waiting.
        """
        with _user_errors("deploy"):
            if cell is not None:
                self._deploy_cell(line, cell)
                return
            args = parse_argstring(self.deploy, line)
            output = _output_name(args.output)
            model = self._value(args.model, "the model")
            sample = self._value(args.sample, "the sample input") if args.sample else None
            reference = self._value(args.reference, "the reference data") if args.reference else None
            flags = {
                "num_gpus": args.gpus,
                "num_cpus": args.cpus,
                "min_replicas": args.min_replicas,
                "max_replicas": args.max_replicas,
                "max_batch_size": args.batch,
            }
            options = {key: value for key, value in flags.items() if value is not None}
            options["predict_method"] = args.predict_method
            options["reference"] = reference
            if args.no_capture:
                options["capture"] = False
            self._deploy_and_show(model, args.name, sample, options, args.timeout, output)

    def _deploy_cell(self, line: str, cell: str) -> None:
        from jupyter_ext.deploy_spec import parse_spec

        args = parse_argstring(_deploy_cell_arguments, line)
        output = _output_name(args.output)
        spec = parse_spec(cell, first_line=2)
        model = self._value(spec.model, f"the model (line {spec.lines['model']})")
        sample = None
        if spec.sample_input is not None:
            sample = self._value(spec.sample_input, f"the sample input (line {spec.lines['sample_input']})")
        reference = None
        if spec.reference is not None:
            reference = self._value(spec.reference, f"the reference data (line {spec.lines['reference']})")
        options = {
            **spec.options,
            "predict_method": spec.predict_method,
            "reference": reference,
            "capture": spec.capture,
            "drift": spec.drift,
        }
        self._deploy_and_show(model, args.name, sample, options, args.timeout, output)

    def _deploy_and_show(
        self,
        model: Any,
        name: str,
        sample: Any,
        options: dict[str, Any],
        timeout_s: float,
        output: str | None,
    ) -> None:
        from jupyter_ext.widgets import card_for, show

        with _interrupt_note(
            f"stopped waiting for {name!r}. What was already submitted keeps rolling out in the cluster: "
            f"check it with %deployments, remove it with %undeploy {name}"
        ):
            deployment = ray_deploy.deploy(model, name, sample_input=sample, timeout_s=timeout_s, **options)
        self._store(output, deployment)
        in_kernel = _in_kernel(self.shell)
        show(card_for(name, start=in_kernel), in_kernel)

    @magic_arguments()
    @argument("name", help="deployment name")
    @argument("data", help="variable (or expression) with the input rows, e.g. X[:3]")
    @argument("-o", "--output", metavar="VAR", help="store the predictions in this notebook variable")
    @line_magic
    def predict(self, line: str) -> Any:
        """Predict with a deployment through its Serve handle: ``%predict NAME DATA_VAR [-o VAR]``.

        Returns the predictions (shown as the cell's value); ``-o`` also stores them.
        """
        with _user_errors("predict"):
            args = parse_argstring(self.predict, line)
            output = _output_name(args.output)
            data = self._value(args.data, "the input data")
            result = ray_deploy.get(args.name).predict(data)
            self._store(output, result)
            return result
        return None

    @magic_arguments()
    @argument("name", help="deployment name")
    @argument("data", help="variable (or expression) with the rows to explain, e.g. X_test[:20]")
    @argument("--row", type=int, default=0, metavar="I", help="the row the waterfall shows first (0)")
    @argument("--explainer", default="auto", help="auto, tree, linear, deep, gradient, exact, permutation or kernel")
    @argument("-o", "--output", metavar="VAR", help="store the Explanation in this notebook variable")
    @line_magic
    def explain(self, line: str) -> None:
        """Explain a deployment's predictions with SHAP, computed on the cluster: ``%explain NAME DATA_VAR [--row I]
        [--explainer NAME] [-o VAR]``.

        Shows the explainability panel: the waterfall of one prediction with a row picker, global importance
        (bar, beeswarm) and a dependence plot with a feature picker.
        """
        from jupyter_ext.explain_panel import explain_html, explain_panel

        with _user_errors("explain"):
            args = parse_argstring(self.explain, line)
            output = _output_name(args.output)
            data = self._value(args.data, "the rows to explain")
            explanation = ray_deploy.get(args.name).explain(data, explainer=args.explainer)
            self._store(output, explanation)
            _show_panel(self.shell, lambda: explain_panel(explanation, row=args.row), lambda: explain_html(explanation))

    @magic_arguments()
    @argument("name", help="deployment name")
    @argument("data", help="variable (or expression) with the model inputs and the sensitive columns")
    @argument("labels", help="variable (or expression) with the true labels")
    @argument("--sensitive", required=True, help="sensitive column(s), comma-separated, e.g. sex or sex,age_group")
    @argument("-o", "--output", metavar="VAR", help="store the FairnessReport in this notebook variable")
    @line_magic
    def fairness(self, line: str) -> None:
        """Fairness of a deployment's predictions per group: ``%fairness NAME DATA_VAR LABELS_VAR --sensitive COL
        [-o VAR]``.

        Shows the fairness panel (per-group table and charts with confidence intervals, parity metrics and the
        80% rule) and records the report with the serving version in MLflow.
        """
        from jupyter_ext.fairness_panel import fairness_html, fairness_panel

        with _user_errors("fairness"):
            args = parse_argstring(self.fairness, line)
            output = _output_name(args.output)
            data = self._value(args.data, "the data")
            labels = self._value(args.labels, "the labels")
            sensitive = [c.strip() for c in args.sensitive.split(",") if c.strip()]
            report = ray_deploy.get(args.name).fairness_report(data, labels, sensitive=sensitive)
            self._store(output, report)
            _show_panel(self.shell, lambda: fairness_panel(report), lambda: fairness_html(report))

    @magic_arguments()
    @argument("name", help="deployment name")
    @argument(
        "--window",
        type=int,
        metavar="N",
        help="compare the last N captured rows with the reference (default: the last closed window)",
    )
    @argument("-o", "--output", metavar="VAR", help="store the DriftReport in this notebook variable")
    @line_magic
    def drift(self, line: str) -> None:
        """Data drift of a deployment's live traffic against its reference data: ``%drift NAME [--window N]
        [-o VAR]``.

        Shows the drift panel: the verdict (ok, warning, alarm, or why there is none yet), the per-feature tests with
        their effect sizes (drifted features highlighted), reference-vs-live histograms with a feature picker, and
        the drift trend across windows. The statistics are computed in the cluster; this only shows them.
        """
        from jupyter_ext.drift_panel import drift_html, drift_panel

        with _user_errors("drift"):
            args = parse_argstring(self.drift, line)
            output = _output_name(args.output)
            report = ray_deploy.get(args.name).drift_report(window=args.window)
            self._store(output, report)
            _show_panel(self.shell, lambda: drift_panel(report), lambda: drift_html(report))

    @magic_arguments()
    @argument("-o", "--output", metavar="VAR", help="store the list of deployments (dicts) in this variable")
    @line_magic
    def deployments(self, line: str) -> None:
        """Show every deployment on the cluster (from any notebook or process) with live cards and actions.

        Each row has scale (min/max) and delete (with confirmation) actions.
        """
        with _user_errors("deployments"):
            args = parse_argstring(self.deployments, line)
            output = _output_name(args.output)
            rows = ray_deploy.list_deployments()
            self._store(output, rows)
            if not rows:
                print(
                    f"no deployments on the cluster at {ray_deploy.cluster_info().address}; "
                    "deploy one with `%deploy MODEL --name NAME`"
                )
                return
            from jupyter_ext.deployments_table import DeploymentsTable
            from jupyter_ext.widgets import show

            in_kernel = _in_kernel(self.shell)
            show(DeploymentsTable(rows, start=in_kernel), in_kernel)

    @magic_arguments()
    @argument("name", help="deployment name")
    @line_magic
    def undeploy(self, line: str) -> None:
        """Delete a deployment from the cluster: ``%undeploy NAME`` (its versions stay in the MLflow registry)."""
        with _user_errors("undeploy"):
            args = parse_argstring(self.undeploy, line)
            ray_deploy.delete(args.name)
            cards = sys.modules.get("jupyter_ext.widgets")  # only if a card was ever shown
            if cards is not None:
                cards.mark_deleted(args.name)
            print(f"deleted deployment {args.name!r}; its versions stay in the MLflow registry")

    @magic_arguments()
    @argument("name", help="deployment name")
    @argument("--min", type=int, metavar="N", dest="min_replicas", help="fewest replicas (0 = scale to zero)")
    @argument("--max", type=int, metavar="N", dest="max_replicas", help="most replicas")
    @line_magic
    def scale(self, line: str) -> None:
        """Change a deployment's replica range in place: ``%scale NAME --min N --max N``."""
        with _user_errors("scale"):
            args = parse_argstring(self.scale, line)
            if args.min_replicas is None and args.max_replicas is None:
                raise UsageError("%scale needs --min and/or --max, e.g. `%scale iris --min 0 --max 3`")
            deployment = ray_deploy.get(args.name).scale(min_replicas=args.min_replicas, max_replicas=args.max_replicas)
            options = deployment.options
            print(f"scaled {args.name!r}: min_replicas={options.min_replicas}, max_replicas={options.max_replicas}")

    @magic_arguments()
    @argument("name", help="deployment name, e.g. iris")
    @argument("model", nargs="?", help="variable (or expression) holding the new model (or give --version)")
    @argument("--version", metavar="V", help="a registered version to roll out instead of a model, e.g. 3")
    @argument(
        "--steps",
        metavar="S,S,..",
        help="challenger traffic shares per step, rising and ending at 1 (default 0.05,0.25,0.5,1)",
    )
    @argument("--step-s", type=float, metavar="S", help="seconds each step lasts before its gates decide (60)")
    @argument(
        "--sticky-header", metavar="H", help="request header that keeps one caller on one version, e.g. x-user-id"
    )
    @argument(
        "--sensitive",
        metavar="COL[,COL]",
        help="input column(s) naming groups, e.g. sex: adds a fairness gate (binary classifiers, needs labels)",
    )
    @argument("--sample", metavar="VAR", help="variable (or expression) with sample input for the new model")
    @argument("-o", "--output", metavar="VAR", help="store the Rollout in this notebook variable")
    @line_magic
    def canary(self, line: str) -> None:
        """Roll a new model (or version) out as a canary: ``%canary NAME MODEL_VAR|--version V
        [--steps 0.05,0.25,0.5,1] [--step-s S] [--sticky-header H] [--sensitive COL[,COL]] [--sample VAR] [-o VAR]``.

        The challenger takes a rising share of the traffic, step by step; at the end of each step its gates
        (error rate, p99 latency, prediction shift, accuracy against the champion, and fairness across the
        ``--sensitive`` groups once labels arrive) decide to advance, promote
        or roll back. The controller runs in the cluster, so the canary goes on if the kernel stops. Shows the
        live rollout widget (split, per-version traffic, gates per step, pause/resume, promote, roll back).
        """
        self._start_rollout("canary", self.canary, line, "canary", _canary_options)

    @magic_arguments()
    @argument("name", help="deployment name, e.g. iris")
    @argument("model", nargs="?", help="variable (or expression) holding the new model (or give --version)")
    @argument("--version", metavar="V", help="a registered version to shadow instead of a model, e.g. 3")
    @argument("--fraction", type=float, metavar="F", help="share of requests copied to the challenger (1.0)")
    @argument("--sample", metavar="VAR", help="variable (or expression) with sample input for the new model")
    @argument("-o", "--output", metavar="VAR", help="store the Rollout in this notebook variable")
    @line_magic
    def shadow(self, line: str) -> None:
        """Run a new model (or version) in the shadow of the champion: ``%shadow NAME MODEL_VAR|--version V
        [--fraction F] [--sample VAR] [-o VAR]``.

        The champion answers every request; a copy of a fraction of them goes to the challenger, whose answers
        are compared, never returned. Shows the live rollout widget with the agreement and latency report.
        """
        self._start_rollout("shadow", self.shadow, line, "shadow", lambda args: {"fraction": args.fraction})

    @magic_arguments()
    @argument("name", help="deployment name, e.g. iris")
    @argument("model", nargs="?", help="variable (or expression) holding the new model (or give --version)")
    @argument("--version", metavar="V", help="a registered version to test instead of a model, e.g. 3")
    @argument("--split", type=float, metavar="F", help="share of traffic the challenger gets (0.5)")
    @argument("--metric", metavar="M", help="the metric the test compares, from labels (accuracy)")
    @argument("--sample", metavar="VAR", help="variable (or expression) with sample input for the new model")
    @argument("-o", "--output", metavar="VAR", help="store the Rollout in this notebook variable")
    @line_magic
    def abtest(self, line: str) -> None:
        """A/B test a new model (or version) against the champion: ``%abtest NAME MODEL_VAR|--version V
        [--split F] [--metric M] [--sample VAR] [-o VAR]``.

        Each arm gets its share of the traffic; the report compares the metric from labels (``feedback``) with a
        confidence interval, p-value and the samples still needed. Shows the live rollout widget.
        """
        self._start_rollout(
            "abtest", self.abtest, line, "ab_test", lambda args: {"split": args.split, "metric": args.metric}
        )

    @magic_arguments()
    @argument("name", help="deployment name")
    @line_magic
    def promote(self, line: str) -> None:
        """Make the running rollout's challenger the champion, atomically: ``%promote NAME``."""
        with _user_errors("promote"):
            args = parse_argstring(self.promote, line)
            deployment = ray_deploy.get(args.name)
            if deployment.promote() is False:
                print(
                    f"the promotion of {args.name!r} awaits approval by a second person "
                    f"(%approve {args.name} VERSION, as someone else)"
                )
                return
            print(f"promoted {args.name!r}: version {deployment.version} is the champion")

    @magic_arguments()
    @argument("name", help="deployment name")
    @argument("version", help="the challenger version whose promotion you approve, e.g. 4")
    @line_magic
    def approve(self, line: str) -> None:
        """Approve a promotion that waits for a second person: ``%approve NAME VERSION``.

        For deployments deployed with ``require_approval=True``; you must not be the one who started the rollout
        or asked to promote it. The approval is recorded in the audit log (``%audit NAME``).
        """
        with _user_errors("approve"):
            args = parse_argstring(self.approve, line)
            ray_deploy.get(args.name).approve(args.version)
            print(f"approved version {args.version} of {args.name!r} as {_identity()}")

    @magic_arguments()
    @argument("name", nargs="?", help="deployment name (default: every deployment)")
    @argument("--since", metavar="WHEN", help="only newer entries: 30m, 1h, 2d, an ISO time or epoch seconds")
    @argument("-o", "--output", metavar="VAR", help="store the audit DataFrame in this notebook variable")
    @line_magic
    def audit(self, line: str) -> None:
        """The audit trail (who deployed, scaled, promoted, approved, ...): ``%audit [NAME] [--since 1h] [-o VAR]``.

        Shows a table of time, who, action, deployment, before, after, outcome and evidence, and whether the log's
        hash chain is intact (an edited, deleted or reordered entry is reported).
        """
        with _user_errors("audit"):
            args = parse_argstring(self.audit, line)
            output = _output_name(args.output)
            from ray_deploy.audit import audit_log, parse_since, verify_audit

            since = parse_since(args.since) if args.since else None
            table = audit_log(args.name, since)
            self._store(output, table)
            from IPython.display import display

            shown = table.drop(columns=["hash"]) if len(table) else table
            if len(shown):
                display(shown)
            else:
                print(f"no audit entries{' of ' + repr(args.name) if args.name else ''}")
            print(repr(verify_audit()))

    @magic_arguments()
    @argument("command", nargs="?", default="list", choices=["list", "create", "revoke", "default", "auth"])
    @argument("target", nargs="?", help="create: the key's name; revoke: the key id; auth: on, off or status")
    @argument("--deployments", metavar="A,B", help="create: the deployments it may call (default: all)")
    @argument("--scopes", metavar="S,S", default="predict", help="create: predict, read, ... (default: predict)")
    @argument("--rate-limit", metavar="N/s", help="create: e.g. 100/s or 6000/m")
    @argument("--burst", type=int, metavar="N", help="create: requests it may send at once (default: 1 s worth)")
    @argument("--expires-in", type=float, metavar="S", help="create: seconds until it expires")
    @argument("-o", "--output", metavar="VAR", help="store the result (table or secret) in this variable")
    @line_magic
    def keys(self, line: str) -> None:
        """API keys of the data plane: ``%keys [list]``, ``%keys create NAME [--deployments a,b] [--scopes
        predict,read] [--rate-limit 100/s] [--burst N] [--expires-in 3600]``, ``%keys revoke KEY_ID``,
        ``%keys default``, ``%keys auth on|off|status``.

        A created key's secret is shown once; store it with ``-o``.
        """
        with _user_errors("keys"):
            args = parse_argstring(self.keys, line)
            output = _output_name(args.output)
            from ray_deploy import keys as key_api

            function, positional, options = key_api.key_command(
                args.command,
                args.target,
                deployments=args.deployments,
                scopes=args.scopes,
                rate_limit=args.rate_limit,
                burst=args.burst,
                expires_in=args.expires_in,
            )
            result = getattr(key_api, function)(*positional, **options)
            self._store(output, result)
            if args.command == "create":
                print(f"created key {args.target!r}; its secret (shown once): {result}")
            elif args.command == "revoke":
                print(f"revoked key {args.target}")
            elif args.command == "default":
                print(result)
            elif function == "set_auth":
                print(f"API-key auth is {args.target} (every replica within {key_api.REVOCATION_S:g} s)")
            elif function == "auth_enabled":
                print(f"API-key auth is {'on' if result else 'OFF'}")
            else:
                from IPython.display import display

                display(result)

    @magic_arguments()
    @argument("name", help="deployment name")
    @argument("--to", metavar="V", dest="to_version", help="the registry version to serve (default: the previous)")
    @line_magic
    def rollback(self, line: str) -> None:
        """Serve the previous champion again (ending any rollout), or a given version: ``%rollback NAME [--to V]``."""
        with _user_errors("rollback"):
            args = parse_argstring(self.rollback, line)
            deployment = ray_deploy.get(args.name)
            deployment.rollback(to_version=args.to_version)
            print(f"rolled back {args.name!r}: version {deployment.version} is the champion")

    @magic_arguments()
    @argument("name", help="deployment name")
    @argument("-o", "--output", metavar="VAR", help="store the versions DataFrame in this notebook variable")
    @line_magic
    def versions(self, line: str) -> Any:
        """A deployment's registry versions: ``%versions NAME [-o VAR]``.

        Shows a DataFrame with version, aliases, created_at, deployed_by, serving and metrics columns.
        """
        with _user_errors("versions"):
            args = parse_argstring(self.versions, line)
            output = _output_name(args.output)
            table = ray_deploy.get(args.name).versions()
            self._store(output, table)
            return table
        return None

    def _start_rollout(
        self, magic: str, method: Any, line: str, start: str, options_of: Callable[[Any], dict[str, Any]]
    ) -> None:
        """Parse a rollout magic's line, start the rollout with ``Deployment.<start>``, store and show it.

        ``options_of(args)`` gives the magic's own keyword arguments; those that are None (not given) are left out.
        """
        with _user_errors(magic):
            args = parse_argstring(method, line)
            output = _output_name(args.output)
            target = self._model_or_version(args, magic)
            options = {key: value for key, value in options_of(args).items() if value is not None}
            if args.sample is not None:
                options["sample_input"] = self._value(args.sample, "the sample input")
            deployment = ray_deploy.get(args.name)
            rollout = getattr(deployment, start)(target, **options)
            self._store(output, rollout)
            self._show_rollout(args.name, rollout, deployment)

    def _model_or_version(self, args: Any, magic: str) -> Any:
        """The model (a notebook variable) or the version string the user named: exactly one of them."""
        if (args.model is None) == (args.version is None):
            raise UsageError(
                f"%{magic} needs the new model's variable or --version V (not both), "
                f"e.g. `%{magic} {args.name} clf_v2` or `%{magic} {args.name} --version 3`"
            )
        if args.version is not None:
            return str(args.version)
        return self._value(args.model, "the model")

    def _show_rollout(self, name: str, rollout: Any, deployment: Any) -> None:
        from jupyter_ext.rollout_widget import RolloutWidget, rollout_panel_html

        _show_panel(
            self.shell,
            lambda: RolloutWidget(name, rollout=rollout, deployment=deployment),
            lambda: rollout_panel_html(name, rollout.status()),
        )

    @magic_arguments()
    @argument("address", nargs="?", help="Ray cluster address; default RAY_ADDRESS, else the local head")
    @line_magic
    def ray(self, line: str) -> Any:
        """Connect to a Ray cluster (starting the local head if needed) and show it: ``%ray [ADDRESS]``.

        Shows the nodes, CPUs, GPUs, the dashboard link and the HTTP endpoint.
        """
        with _user_errors("ray"):
            args = parse_argstring(self.ray, line)
            from ray_deploy.cluster import is_connected

            if args.address and is_connected():
                current = ray_deploy.cluster_info().address
                if args.address.removeprefix("ray://") != current:
                    print(
                        f"already connected to the Ray cluster at {current}; restart the kernel and run "
                        f"`%ray {args.address}` first to use another cluster",
                        file=sys.stderr,
                    )
            return ray_deploy.connect(args.address)
        return None

    @magic_arguments()
    @argument("name", help="deployment name, e.g. iris")
    @argument("--trials", type=int, metavar="N", help="Ray Tune trials to run (num_samples; 8)")
    @argument("--cpus", type=float, metavar="N", help="CPUs per trial, fractional allowed (1)")
    @argument("--gpus", type=float, metavar="N", help="GPUs per trial, fractional allowed: 0.5 shares a GPU (0)")
    @argument("--budget", type=float, metavar="S", help="Tune's time budget in seconds (none)")
    @argument("--scheduler", choices=["asha", "fifo"], help="asha stops weak trials early (default); fifo runs all")
    @argument(
        "--then",
        choices=["register", "canary", "shadow", "deploy"],
        help="what a new version that passes the evaluation gate does (register)",
    )
    @argument("--metric", metavar="M", help="the metric Tune optimizes, e.g. accuracy or rmse (by the model's task)")
    @argument("-o", "--output", metavar="VAR", help="store the RetrainResult in this notebook variable")
    @line_magic
    def retrain(self, line: str) -> None:
        """Retrain a deployment's model with Ray Tune, in a Ray Job on the cluster: ``%retrain NAME [--trials N]
        [--cpus N] [--gpus N] [--budget S] [--scheduler asha|fifo] [--then register|canary|shadow|deploy]
        [--metric M] [-o VAR]``.

        Trains on the deployment's labelled reference data and captured traffic with feedback labels, scores the
        best trial against the champion on held-out and recent rows (the evaluation gate), and registers the new
        version; ``--then`` also rolls it out when it passes. Returns at once: the job keeps running if the kernel
        stops. Shows the live retrain panel (trials, best-so-far curve, gate, data, a Cancel button).
        """
        with _user_errors("retrain"):
            args = parse_argstring(self.retrain, line)
            output = _output_name(args.output)
            result = ray_deploy.retrain(args.name, **_retrain_options(args), wait=False)
            self._store(output, result)
            from jupyter_ext.retrain_panel import RetrainPanel, result_html

            _show_panel(
                self.shell, lambda: RetrainPanel(args.name, result=result), lambda: result_html(args.name, result)
            )

    @magic_arguments()
    @argument("name", help="deployment name, e.g. iris")
    @argument("--on", choices=["drift", "schedule", "performance"], help="what starts a retrain")
    @argument(
        "--then",
        choices=["register", "canary", "shadow", "deploy"],
        help="what a new version that passes the evaluation gate does (canary)",
    )
    @argument("--cooldown", type=float, metavar="S", help="least seconds between two retrains it starts (3600)")
    @argument("--every", type=float, metavar="S", help="the period of --on schedule, in seconds, e.g. 86400")
    @argument("--min-metric", type=float, metavar="X", help="--on performance: retrain below this metric, e.g. 0.8")
    @argument("--trials", type=int, metavar="N", help="Ray Tune trials of each retrain (8)")
    @argument("--off", action="store_true", help="turn the deployment's auto-retrain policy off")
    @line_magic
    def auto_retrain(self, line: str) -> None:
        """Let the cluster retrain a deployment on its own: ``%auto_retrain NAME --on drift|schedule|performance
        [--then canary] [--cooldown S] [--every S] [--min-metric X] [--trials N]``, or ``%auto_retrain NAME --off``.

        The policy runs in the cluster (it survives the kernel): on a drift alarm, every ``--every`` seconds, or
        when the labelled metric falls below ``--min-metric``, it starts a retrain unless one ran within the
        cooldown; each decision is an event in the status document (see the side panel).
        """
        with _user_errors("auto_retrain"):
            args = parse_argstring(self.auto_retrain, line)
            if args.off:
                given = [flag for flag, value in _auto_retrain_flags(args).items() if value is not None]
                if given:
                    raise UsageError(f"%auto_retrain --off takes no other option, got {', '.join(given)}")
                ray_deploy.get(args.name).auto_retrain(None)
                print(f"auto-retrain of {args.name!r} is off")
                return
            if args.on is None:
                raise UsageError(
                    f"%auto_retrain needs --on drift|schedule|performance or --off, "
                    f"e.g. `%auto_retrain {args.name} --on drift --then canary`"
                )
            options = {
                key: value
                for key, value in {
                    "then": args.then,
                    "cooldown_s": args.cooldown,
                    "every_s": args.every,
                    "min_metric": args.min_metric,
                    "num_samples": args.trials,
                }.items()
                if value is not None
            }
            ray_deploy.get(args.name).auto_retrain(on=args.on, **options)
            told = ", ".join(
                f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}" for key, value in options.items()
            )
            print(f"auto-retrain of {args.name!r} is on: retrain on {args.on}" + (f" ({told})" if told else ""))

    @property
    def _shell(self) -> Any:
        """The shell these magics are registered with (always set once registered)."""
        return self.shell

    def _value(self, expression: str, what: str) -> Any:
        """The value of a notebook variable (or expression) the user named."""
        namespace = self._shell.user_ns
        if expression.isidentifier():
            if expression not in namespace:
                raise UsageError(f"no variable named {expression!r} in the notebook for {what}; define it first")
            return namespace[expression]
        try:
            return self._shell.ev(expression)
        except NameError as exc:
            raise UsageError(f"{what} {expression!r}: {exc}; define it first") from None
        except Exception as exc:
            raise UsageError(f"could not evaluate {what} {expression!r}: {type(exc).__name__}: {exc}") from None

    def _store(self, output: str | None, value: Any) -> None:
        if output:
            self._shell.user_ns[output] = value


def register(ipython: Any) -> None:
    """Register the magics with an IPython shell (called by ``load_ipython_extension``).

    Example:
        >>> register(get_ipython())
    """
    ipython.register_magics(RayDeployMagics)


def _identity() -> str:
    from ray_deploy.audit import current_identity

    return current_identity()


def _output_name(name: str | None) -> str | None:
    if name is not None and not name.isidentifier():
        raise UsageError(f"-o {name!r}: give a Python variable name, e.g. -o result")
    return name


def _shares(text: str) -> tuple[float, ...]:
    """``--steps 0.05,0.25,0.5,1`` as a tuple of floats (the API checks that they rise to 1)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        shares = tuple(float(part) for part in parts)
    except ValueError:
        raise UsageError(f"--steps {text!r}: give comma-separated shares, e.g. --steps 0.05,0.25,0.5,1") from None
    if not shares:
        raise UsageError("--steps is empty: give comma-separated shares, e.g. --steps 0.05,0.25,0.5,1")
    return shares


def _canary_options(args: Any) -> dict[str, Any]:
    """``%canary``'s keyword arguments for ``Deployment.canary`` (None: not given)."""
    return {
        "steps": None if args.steps is None else _shares(args.steps),
        "step_s": args.step_s,
        "sticky_header": args.sticky_header,
        "gates": None if args.sensitive is None else {"sensitive": _columns(args.sensitive)},
    }


def _columns(text: str) -> list[str]:
    """``--sensitive sex,age`` as a list of column names."""
    columns = [part.strip() for part in text.split(",") if part.strip()]
    if not columns:
        raise UsageError("--sensitive is empty: give comma-separated input columns, e.g. --sensitive sex,age")
    return columns


def _retrain_options(args: Any) -> dict[str, Any]:
    """The ``ray_deploy.retrain`` options the user gave to ``%retrain`` (the API's defaults stand for the rest)."""
    options: dict[str, Any] = {}
    if args.trials is not None:
        options["num_samples"] = args.trials
    if args.cpus is not None or args.gpus is not None:
        options["resources_per_trial"] = {
            "cpu": 1.0 if args.cpus is None else args.cpus,
            "gpu": 0.0 if args.gpus is None else args.gpus,
        }
    named = {"time_budget_s": args.budget, "scheduler": args.scheduler, "then": args.then, "metric": args.metric}
    options.update({key: value for key, value in named.items() if value is not None})
    return options


def _auto_retrain_flags(args: Any) -> dict[str, Any]:
    """The ``%auto_retrain`` policy flags by their spelling (``--off`` takes none of them)."""
    return {
        "--on": args.on,
        "--then": args.then,
        "--cooldown": args.cooldown,
        "--every": args.every,
        "--min-metric": args.min_metric,
        "--trials": args.trials,
    }


def _in_kernel(shell: Any) -> bool:
    return getattr(shell, "kernel", None) is not None


@contextlib.contextmanager
def _interrupt_note(message: str) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        raise _Interrupted(message) from None


class _Interrupted(Exception):
    """A kernel interrupt that stopped a magic while it waited; carries what the user should know."""


@contextlib.contextmanager
def _user_errors(magic: str) -> Iterator[None]:
    """One clear line for user errors; a short line plus ``%tb`` for anything unexpected."""
    try:
        yield
    except UsageError:
        raise  # IPython prints it as one "UsageError: ..." line
    except _Interrupted as exc:
        print(f"%{magic} interrupted: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"%{magic} interrupted", file=sys.stderr)
    except RayDeployError as exc:
        _keep_for_tb(exc)
        first, _, rest = str(exc).partition("\n")
        more = " (run %tb for the full report)" if rest.strip() else ""
        print(f"{type(exc).__name__}: {first}{more}", file=sys.stderr)
    except Exception as exc:
        _keep_for_tb(exc)
        first = str(exc).partition("\n")[0]
        print(
            f"%{magic} failed unexpectedly: {type(exc).__name__}: {first} (run %tb for the traceback)",
            file=sys.stderr,
        )


def _keep_for_tb(exc: BaseException) -> None:
    """Record the exception where ``%tb`` and ``%debug`` look for the last one."""
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__
    if sys.version_info >= (3, 12):
        sys.last_exc = exc


def _show_panel(shell: Any, panel: Any, fallback: Any) -> None:
    """A live panel in a kernel with widgets; its static HTML elsewhere (nbconvert, a terminal IPython)."""
    from IPython.display import HTML, display

    display(panel() if _in_kernel(shell) else HTML(fallback()))
