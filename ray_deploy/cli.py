"""The ``ray-deploy`` command line: ``up``, ``down``, ``status``, ``list``, ``deploy``, ``scale``, ``delete``,
``versions``, ``promote``, ``approve``, ``rollback``, ``audit``, ``keys``.

``promote`` and ``rollback`` are also what the side panel's promote / roll back actions run as Ray Jobs.

Example:
    $ ray-deploy up
    $ ray-deploy deploy models:/iris/1 --name iris --min-replicas 0 --max-replicas 2
    $ ray-deploy status iris
    $ ray-deploy scale iris --min 2 --max 4
    $ ray-deploy versions iris
    $ ray-deploy promote iris
    $ ray-deploy rollback iris --to 2
    $ ray-deploy approve iris 4            # as a second person, when deployed with require_approval
    $ ray-deploy audit iris --since 1h --verify
    $ ray-deploy keys create ci --deployments iris --scopes predict --rate-limit 100/s --expires-in 3600
    $ ray-deploy down
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ray_deploy.errors import ConfigError, RayDeployError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ray-deploy", description="Serve models on Ray from the registry.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="connect to RAY_ADDRESS or start the local cluster; print its URLs")
    up.add_argument("--address", help="an existing Ray cluster (default: RAY_ADDRESS or the local head)")
    sub.add_parser("down", help="stop the local cluster that ray-deploy started (its deployments end)")
    status = sub.add_parser("status", help="the status document of one deployment, or the cluster")
    status.add_argument("name", nargs="?", help="a deployment name (default: cluster summary)")
    status.add_argument("--json", action="store_true", help="print raw JSON")
    sub.add_parser("list", help="every deployment on the cluster")
    deploy = sub.add_parser("deploy", help="serve an MLflow model URI (runs:/... or models:/...)")
    deploy.add_argument("model_uri")
    deploy.add_argument("--name", required=True, help="deployment name (also the registered model name)")
    for flag, kind, helptext in [
        ("--cpus", float, "CPUs per replica (num_cpus)"),
        ("--gpus", float, "GPUs per replica, fractional allowed (num_gpus)"),
        ("--min-replicas", int, "fewest replicas; 0 scales to zero"),
        ("--max-replicas", int, "most replicas"),
        ("--batch", int, "max_batch_size for dynamic batching"),
    ]:
        deploy.add_argument(flag, type=kind, help=helptext)
    scale = sub.add_parser("scale", help="change a deployment's replica range in place (same version)")
    scale.add_argument("name")
    scale.add_argument("--min", dest="min", type=int, help="fewest replicas; 0 scales to zero when idle")
    scale.add_argument("--max", dest="max", type=int, help="most replicas the autoscaler may start")
    delete = sub.add_parser("delete", help="remove a deployment (its registry versions stay)")
    delete.add_argument("name")
    versions = sub.add_parser("versions", help="a deployment's registry versions: aliases, who deployed, serving")
    versions.add_argument("name")
    promote = sub.add_parser("promote", help="make the running rollout's challenger the champion (atomically)")
    promote.add_argument("name")
    rollback = sub.add_parser("rollback", help="serve the previous champion again (or --to a version)")
    rollback.add_argument("name")
    rollback.add_argument("--to", dest="to_version", metavar="VERSION", help="the registry version to serve, e.g. 2")
    approve = sub.add_parser("approve", help="approve a promotion that waits for a second person")
    approve.add_argument("name")
    approve.add_argument("version", help="the challenger version, e.g. 4")
    audit = sub.add_parser("audit", help="the audit trail: who changed what, when, and whether the log is intact")
    audit.add_argument("name", nargs="?", help="a deployment (default: every deployment)")
    audit.add_argument("--since", help="only newer entries: 30m, 1h, 2d, an ISO time or epoch seconds")
    audit.add_argument("--verify", action="store_true", help="check the hash chain; exit 2 when it is broken")
    audit.add_argument("--json", action="store_true", help="print JSON lines (one entry per line)")
    keys = sub.add_parser("keys", help="data-plane API keys: create, list, revoke, default")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; prints its secret once")
    create.add_argument("target", metavar="NAME")
    create.add_argument("--deployments", help="comma-separated deployments it may call (default: all)")
    create.add_argument("--scopes", default="predict", help="comma-separated scopes, e.g. predict,read")
    create.add_argument("--rate-limit", help="e.g. 100/s or 6000/m")
    create.add_argument("--burst", type=int, help="requests it may send at once (default: one second's worth)")
    create.add_argument("--expires-in", type=float, help="seconds until it expires")
    keys_sub.add_parser("list", help="every key (never the secrets)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("target", metavar="KEY_ID")
    keys_sub.add_parser("default", help="print the default key's secret")
    switch = keys_sub.add_parser("auth", help="turn API-key auth on or off for the whole cluster, or show it")
    switch.add_argument("target", metavar="STATE", choices=["on", "off", "status"])
    retrain = sub.add_parser("retrain", help="retrain a deployment with Ray Tune in the cluster (a Ray Job)")
    retrain.add_argument("name")
    retrain.add_argument("--trials", type=int, default=8, help="Tune trials (default 8)")
    retrain.add_argument("--cpus", type=float, default=1.0, help="CPUs per trial (default 1)")
    retrain.add_argument("--gpus", type=float, default=0.0, help="GPUs per trial, fractions allowed (default 0)")
    retrain.add_argument("--budget", type=float, default=None, help="Tune's time budget, seconds")
    retrain.add_argument("--scheduler", choices=["asha", "fifo"], default="asha")
    retrain.add_argument("--then", choices=["register", "canary", "shadow", "deploy"], default="register")
    retrain.add_argument("--no-wait", action="store_true", help="return once the job is submitted")
    run = sub.add_parser("retrain-run", help="(what a retrain's Ray Job runs) run the retrain recorded in RUN_ID")
    run.add_argument("name")
    run.add_argument("run_id")
    return parser


_OPTION_OF_FLAG = {
    "cpus": "num_cpus",
    "gpus": "num_gpus",
    "min_replicas": "min_replicas",
    "max_replicas": "max_replicas",
    "batch": "max_batch_size",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one line and exit 1."""
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except RayDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace) -> None:
    import ray_deploy

    if args.command == "up":
        info = ray_deploy.connect(args.address)
        print(f"cluster   {info.address} ({'local' if info.local else 'remote'}), {info.cpus:g} CPU, {info.gpus:g} GPU")
        print(f"dashboard {info.dashboard_url}")
        print(f"endpoint  {info.endpoint}/v2")
    elif args.command == "down":
        ray_deploy.shutdown()
        print("stopped the local cluster (if ray-deploy had started one)")
    elif args.command == "status":
        if args.name is None:
            info = ray_deploy.cluster_info()
            _print({"cluster": info.__dict__, "deployments": ray_deploy.list_deployments()}, args.json)
        else:
            _print(ray_deploy.get(args.name).status(), args.json)
    elif args.command == "list":
        rows = ray_deploy.list_deployments()
        if not rows:
            print("no deployments")
        for row in rows:
            print(f"{row['name']:<24} {row['state']:<12} v{row['version']}  {row['url']}")
    elif args.command == "deploy":
        options = {_OPTION_OF_FLAG[k]: v for k, v in vars(args).items() if k in _OPTION_OF_FLAG and v is not None}
        dep = ray_deploy.deploy(args.model_uri, args.name, **options)
        print(f"{dep.name} version {dep.version} serves at {dep.url}")
    elif args.command == "scale":
        if args.min is None and args.max is None:
            raise ConfigError("scale needs --min and/or --max, e.g. `ray-deploy scale iris --min 2 --max 4`")
        dep = ray_deploy.get(args.name).scale(min_replicas=args.min, max_replicas=args.max)
        opts = dep.options
        print(f"scaled {dep.name}: min {opts.min_replicas}, max {opts.max_replicas} replicas (version {dep.version})")
    elif args.command == "delete":
        ray_deploy.delete(args.name)
        print(f"deleted {args.name}")
    elif args.command == "versions":
        table = ray_deploy.get(args.name).versions()
        print(table.to_string(index=False) if len(table) else f"{args.name} has no registered versions")
    elif args.command == "promote":
        dep = ray_deploy.get(args.name)
        if dep.promote() is False:
            print(f"the promotion of {dep.name} awaits approval by a second person: ray-deploy approve {dep.name} V")
        else:
            print(f"promoted {dep.name}: version {dep.version} is the champion")
    elif args.command == "approve":
        from ray_deploy.audit import current_identity

        ray_deploy.get(args.name).approve(args.version)
        print(f"approved version {args.version} of {args.name} as {current_identity()}")
    elif args.command == "audit":
        _audit(args)
    elif args.command == "keys":
        _keys(args)
    elif args.command == "retrain":
        result = ray_deploy.retrain(
            args.name,
            num_samples=args.trials,
            resources_per_trial={"cpu": args.cpus, "gpu": args.gpus},
            time_budget_s=args.budget,
            scheduler=args.scheduler,
            then=args.then,
            wait=not args.no_wait,
        )
        section = result.status()
        print(f"{result.retrain_id}: {section['state']}: {section['message']}")
    elif args.command == "retrain-run":
        from ray_deploy.retrain_job import run

        code = run(args.name, args.run_id)
        if code:
            raise SystemExit(code)
    elif args.command == "rollback":
        dep = ray_deploy.get(args.name)
        dep.rollback(to_version=args.to_version)
        print(f"rolled back {dep.name}: version {dep.version} is the champion")


def keys_call(args: argparse.Namespace) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """The ``ray_deploy.keys`` call of a parsed ``keys`` command (:func:`ray_deploy.keys.key_command`).

    Example:
        >>> keys_call(_parser().parse_args(["keys", "revoke", "k1"]))
        ('revoke_key', ('k1',), {})
    """
    from ray_deploy.keys import key_command

    return key_command(
        args.keys_command or "list",
        getattr(args, "target", None),
        **{name: getattr(args, name, None) for name in ("deployments", "scopes", "rate_limit", "burst", "expires_in")},
    )


def _keys(args: argparse.Namespace) -> None:
    from ray_deploy import keys

    function, positional, options = keys_call(args)
    result = getattr(keys, function)(*positional, **options)
    if function == "create_key":
        print(f"created key {args.target!r}; its secret (shown once, store it now):\n{result}")
    elif function == "revoke_key":
        print(f"revoked key {args.target}")
    elif function == "default_key":
        print(result)
    elif function == "set_auth":
        print(f"API-key auth is {args.target} (every replica within {keys.REVOCATION_S:g} s)")
    elif function == "auth_enabled":
        print(f"API-key auth is {'on' if result else 'OFF'}")
    else:
        print(result.to_string(index=False) if len(result) else "no keys")


def _audit(args: argparse.Namespace) -> None:
    from ray_deploy.audit import audit_entries, verify_audit

    entries = audit_entries(args.name, args.since)
    if args.json:
        for entry in entries:
            print(json.dumps(entry, sort_keys=True))
    elif not entries:
        print(f"no audit entries{' of ' + args.name if args.name else ''}")
    for entry in [] if args.json else entries:
        change = f"{json.dumps(entry['before'], sort_keys=True)} -> {json.dumps(entry['after'], sort_keys=True)}"
        print(
            f"{entry['time_iso'][:19]}  {entry['who']:<24} {entry['action']:<20} {entry['deployment'] or '-':<16} "
            f"{entry['outcome']:<12} {change}"
        )
    if args.verify:
        check = verify_audit()
        print(repr(check), file=sys.stderr if args.json else sys.stdout)
        if not check.ok:
            raise SystemExit(2)


def _print(doc: dict[str, Any], raw: bool) -> None:
    if raw:
        print(json.dumps(doc, indent=2, default=str))
        return
    for key, value in doc.items():
        print(f"{key:<12} {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")


if __name__ == "__main__":
    raise SystemExit(main())
