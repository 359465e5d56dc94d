"""The traffic split: does this request go to the challenger? Pure, and cheap enough to run on every request.

Without a sticky key the caller's uniform draw decides (``draw < share``). With a key (the value of the
rollout's ``sticky_header``, e.g. a user id) a stable hash of the key places the caller at a fixed point in
[0, 1), and the caller goes to the challenger when that point is below the share. So one caller always lands
on the same side for a given share, and as the share grows a caller already on the challenger stays there
(the split is monotone in the share). An optional ``salt`` (e.g. the rollout id) reshuffles callers between
rollouts, so the same users are not always the first to see every new version.

Example:
    >>> choose(0.25, None, 0.1)
    True
    >>> choose(0.25, "user-42", 0.9) == choose(0.25, "user-42", 0.1)  # the key decides, not the draw
    True
"""

from __future__ import annotations

from functools import lru_cache
from hashlib import blake2b

__all__ = ["choose", "key_position"]

_SCALE = 1.0 / 2**64


@lru_cache(maxsize=16_384)
def key_position(key: str, salt: str = "") -> float:
    """The caller's fixed point in [0, 1): the first 8 bytes of ``blake2b(salt + key)`` as a fraction.

    Cached, so a returning caller costs one dictionary lookup.

    Example:
        >>> 0 <= key_position("user-42") < 1
        True
        >>> key_position("user-42") == key_position("user-42")
        True
    """
    digest = blake2b((salt + "\x00" + key).encode() if salt else key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") * _SCALE


def choose(share: float, key: str | None, draw: float, salt: str = "") -> bool:
    """True when the request goes to the challenger.

    Args:
        share: The challenger's traffic share in [0, 1]; 0 sends nothing, 1 everything.
        key: The sticky header's value, or None when the request has none (or the rollout is not sticky).
        draw: A uniform number in [0, 1) supplied by the caller (e.g. ``random.random()``); used only
            without a key.
        salt: Mixed into the key's hash (e.g. the rollout id) so that each rollout picks different callers.

    Example:
        >>> choose(0.0, "user-1", 0.0), choose(1.0, None, 0.99)
        (False, True)
        >>> choose(0.5, None, 0.49), choose(0.5, None, 0.5)
        (True, False)
    """
    if key is None:
        return draw < share
    return key_position(key, salt) < share
