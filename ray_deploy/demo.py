"""The main job end to end: train, deploy, send real HTTP traffic, print predictions, status and URLs; then the
closed loop (:mod:`ray_deploy.closed_loop`): drift with labels → the alarm triggers a Ray Tune retrain → the new
version passes the gate → canary → promoted, printing each step.

Run with ``make demo`` or ``python -m ray_deploy.demo``; exits 0 when every request succeeded and the retrained
version was promoted.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests


def main(name: str = "breast-cancer", requests_to_send: int = 200, closed_loop: bool = True) -> int:
    """Train a scikit-learn pipeline on bundled data, deploy it and exercise its HTTP API; then the closed loop."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import ray_deploy
    from ray_deploy.keys import auth_headers

    info = ray_deploy.connect()
    print(f"cluster: {info.address} ({info.cpus:g} CPU, {info.gpus:g} GPU), dashboard {info.dashboard_url}")

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_train, y_train)
    print(f"trained: test accuracy {model.score(X_test, y_test):.3f}")

    dep = ray_deploy.deploy(model, name, sample_input=X_train[:5], num_cpus=0.25, max_replicas=2)
    print(f"deployed {dep.name} version {dep.version} at {dep.url}")

    rows = X_test[:3].to_dict(orient="records")
    anonymous = requests.post(f"{dep.url}/predict", json={"instances": rows}, timeout=30)
    print(f"without an API key: {anonymous.status_code} ({anonymous.json()['error'][:60]}...)")
    http = requests.Session()
    http.headers.update(auth_headers())  # the project's key (`ray-deploy keys default`)
    answer = http.post(f"{dep.url}/predict", json={"instances": rows}, timeout=30)
    answer.raise_for_status()
    print(f"HTTP /predict for 3 rows -> {answer.json()['predictions']} (truth {y_test[:3].tolist()})")

    bad = http.post(f"{dep.url}/predict", json={"instances": [{"nonsense": 1}]}, timeout=30)
    print(f"a bad request gets {bad.status_code}: {bad.json()['error'][:90]}...")

    started = time.perf_counter()
    payloads = [
        {"instances": X_test.iloc[[i % len(X_test)]].to_dict(orient="records")} for i in range(requests_to_send)
    ]
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda p: http.post(f"{dep.url}/predict", json=p, timeout=30).status_code,
                payloads,
            )
        )
    elapsed = time.perf_counter() - started
    ok = codes.count(200)
    print(f"sent {len(codes)} requests at concurrency 8 in {elapsed:.1f}s: {ok} ok")

    time.sleep(1.0)  # samples reach the monitor within half a second
    status = dep.status()
    traffic = status["traffic"]
    print(
        f"status: {status['state']}, version {status['version']}, replicas {status['replicas']['current']}"
        f"/{status['replicas']['target']}, qps {traffic['qps']}, p50 {traffic['p50_ms']} ms, "
        f"p99 {traffic['p99_ms']} ms, requests {traffic['requests']}, errors {traffic['errors']}"
    )
    print(f"endpoint:  {dep.url}  (V2: {dep.url}/infer, simple JSON: {dep.url}/predict)")
    print(f"dashboard: {info.dashboard_url}/#/serve")
    if not closed_loop:
        return 0 if ok == len(codes) else 1
    print("\nthe closed loop: drift → retrain → gate → canary → promote")
    from ray_deploy.closed_loop import run

    facts = run("closed-loop-demo")
    promoted = facts.get("promoted_version") is not None and facts.get("failed_requests") == 0
    print(f"closed loop {'done' if promoted else 'did NOT promote a new version'} in {facts.get('seconds', 0):.0f} s")
    print(f"jobs (the retrain's Ray Job): {info.dashboard_url}/#/jobs")
    return 0 if ok == len(codes) and promoted else 1


if __name__ == "__main__":
    # --no-closed-loop: the first part only (the tests run the closed loop on their own, through closed_loop.run)
    sys.exit(main(closed_loop="--no-closed-loop" not in sys.argv[1:]))
