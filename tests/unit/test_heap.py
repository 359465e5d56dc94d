"""What a replica loads after it started leaves the garbage collector's full scans (``dataplane/heap.py``).

Serve freezes a replica's heap once it has started; these tests check that a later version load, and the first
registry read, freeze again, on a real MLflow store (the objects they load would otherwise be walked by every full
collection, tens of ms each under load).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from ray_deploy.dataplane import heap
from ray_deploy.dataplane.served_model import VersionPool
from ray_deploy.errors import ModelNotFound
from ray_deploy.registry import register
from tests.unit.models import iris, sklearn_model


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """Each test starts and ends with nothing frozen (the tests' process is not a replica)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_settle_freezes_the_objects_alive_and_collects_the_garbage_first() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    kept = [object() for _ in range(1000)]  # noqa: F841 (alive during settle)
    Cycle()  # garbage: a cycle nothing points to
    heap.settle()
    assert gc.get_freeze_count() > 1000
    assert not any(isinstance(o, Cycle) for o in gc.get_objects())  # collected, not frozen


def test_a_version_change_and_the_first_registry_read_settle_the_heap(mlflow_store: str) -> None:
    X, _ = iris()
    for _ in range(2):
        register(sklearn_model(), "sklearn", "iris", sample_input=X[:5])
    pool = VersionPool("iris")

    async def story() -> list[int]:
        counts = []
        await pool.serve("1", "sklearn")  # the first version: Serve freezes the new replica itself
        counts.append(gc.get_freeze_count())
        await pool.serve("2", "sklearn")  # an in-place version change
        counts.append(gc.get_freeze_count())
        gc.unfreeze()
        assert await pool.registered() == ["1", "2"]  # the first registry read
        counts.append(gc.get_freeze_count())
        gc.unfreeze()
        assert await pool.registered() == ["1", "2"]  # later reads load nothing new
        counts.append(gc.get_freeze_count())
        with pytest.raises(ModelNotFound, match=r"no version '7'; versions: \['1', '2'\]"):
            await pool.get("7")
        await pool.get("1")  # another version, loaded for /versions/1/...
        counts.append(gc.get_freeze_count())
        return counts

    first, changed, read, read_again, other = asyncio.run(story())
    assert first == 0
    assert changed > 0 and read > 0
    assert read_again == 0
    assert other > 0
