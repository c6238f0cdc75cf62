"""Gateway keys: plain and digest entries, default tiers, both headers."""

from __future__ import annotations

import hashlib

import pytest

from edge.errors import Unauthorized
from edge.server.auth import OPEN, Keyring, KeysError


def test_plain_and_digest_keys_with_tiers(tmp_path: object) -> None:
    digest = hashlib.sha256(b"sk-stored-as-hash").hexdigest()
    ring = Keyring(["sk-alpha=L0", f"sha256:{digest}", "# a comment", ""])
    assert ring.check(b"Bearer sk-alpha", None).tier == "L0"
    assert ring.check(None, b"sk-stored-as-hash").tier is None
    assert (
        ring.check(b"bearer sk-alpha", None).key_id == hashlib.sha256(b"sk-alpha").hexdigest()[:12]
    )
    with pytest.raises(Unauthorized) as err:
        ring.check(b"Bearer sk-beta", None)
    assert err.value.code == "invalid_api_key"
    with pytest.raises(Unauthorized) as err:
        ring.check(None, None)
    assert err.value.code == "missing_api_key"


def test_open_ring_and_bad_entries() -> None:
    assert Keyring([]).check(None, None) is OPEN
    with pytest.raises(KeysError):
        Keyring(["sha256:nothex"])
    with pytest.raises(KeysError):
        Keyring(["sha256:abcd"])


def test_a_padded_key_keeps_its_equals_signs() -> None:
    ring = Keyring(["abc==", "xyz===L1", "k1=L2@acme", "k2=@beta"])
    assert ring.check(None, b"abc==").tier is None  # the whole entry is the key
    assert ring.check(None, b"xyz==").tier == "L1"  # the tier follows the last "="
    with pytest.raises(Unauthorized):
        ring.check(None, b"abc")  # never the key cut at its padding
    assert ring.check(None, b"k1").name == "acme" and ring.check(None, b"k2").name == "beta"
