"""The code that runs inside Serve replicas: the ingress, its hooks, the Monitor and the ``/v2`` server app.

It imports only ``errors``, ``config``, ``documents``, ``serve_api``, the pure decision modules and itself,
never the facade (``deployment.py``) or ``cluster.py``; ``tests/unit/test_import_hygiene.py`` enforces it.
"""
