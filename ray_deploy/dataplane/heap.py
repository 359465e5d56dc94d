"""Keep what a replica loads after it started out of the garbage collector's full scans.

Serve collects and freezes a replica's heap once its constructor and first ``reconfigure`` have run
(``gc.collect()`` then ``gc.freeze()``), so a full collection under load walks only what requests allocate: ~3 ms
here. What the replica loads later is not frozen: a new model version (an in-place reconfigure), another version
asked for by ``/versions/<v>/...``, MLflow's registry client on the first metadata, ``/versions`` or OpenAPI
request (~150,000 objects), the V2 gRPC server. Every full collection then walks all of it: 56-71 ms each, about
twice a second at concurrency 32, which lifted that deployment's p99 from ~25 to ~80 ms (``bench/serving.py``'s
small model). :func:`settle` after such a load collects once and freezes again.

Example:
    >>> model = await asyncio.to_thread(load_for_serving, uri, kind)
    >>> settle()  # one collection now (tens of ms), none of this model's objects scanned again
"""

from __future__ import annotations

import gc

__all__ = ["settle"]


def settle() -> None:
    """Collect the garbage of a load just finished, then freeze every object alive (``gc.freeze``), as Serve does
    when a replica has started.

    Example:
        >>> before = gc.get_freeze_count(); settle(); gc.get_freeze_count() >= before
        True
    """
    gc.collect()
    gc.freeze()
