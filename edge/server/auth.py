"""Gateway keys: who may call, and their default tier.

Keys come from ``EDGE_KEYS`` (comma-separated) and ``EDGE_KEYS_FILE`` (one per
line, ``#`` comments), each ``KEY`` or ``sha256:HEX`` (so the plain key need
not be stored), optionally ``=TIER``, ``@TENANT`` and ``;async``
(``KEY=L1@acme``, ``KEY=@acme``, ``KEY=L2@batch;async``): the tier is the
highest the key may use (and its default); a key without one may use the
policy's default tier and lower ones; the tenant names the key in budgets
and spend reports (default: the key id, the digest's first 12 hex digits);
``async`` makes a request refused for its cost a job (202) without asking.
SIGHUP reloads both in every worker (``replace``: the ring is swapped in
place, so every part holding it sees the new keys at once); a bad file keeps
the old keys. Only SHA-256 digests are kept; a
presented key is hashed and compared with ``hmac.compare_digest``. Keys are
accepted as ``Authorization: Bearer KEY`` or ``x-api-key: KEY``. With no key
configured the gateway runs open, which the server allows on loopback only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from edge.errors import Unauthorized

_ENTRY = re.compile(r"(.+?)=(?:([A-Za-z0-9_.-]+)(?:@(.*))?|@(.*))")


class KeysError(ValueError):
    """A key entry is malformed."""


@dataclass(frozen=True, slots=True)
class Tenant:
    key_id: str  # first 12 hex of the digest: enough to tell keys apart in logs, useless as a credential
    tier: str | None
    name: str = ""  # the tenant budgets and spend are kept for
    async_jobs: bool = False  # a request over its cost threshold runs as a job, unasked

    @property
    def tenant(self) -> str:
        return self.name or self.key_id

    def ceiling(self, default_tier: str) -> str | None:
        """The highest tier this key may use: its own, else the policy's default; none on a
        gateway that runs without keys (loopback only)."""
        if self.key_id == OPEN_ID:
            return None
        return self.tier or default_tier


OPEN_ID = "open"
OPEN = Tenant(key_id=OPEN_ID, tier=None)


class Keyring:
    def __init__(self, entries: list[str]) -> None:
        self._by_digest: dict[bytes, Tenant] = {}
        self._digest_of: dict[Tenant, bytes] = {}
        for raw in entries:
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            entry, _, option = entry.partition(";")
            if option.strip() not in ("", "async"):
                raise KeysError(f"a key entry has an unknown option {option.strip()!r}")
            # a key may end in "=" padding (base64): the tier is what follows the last "="
            # that is followed by a tier name or "@", so `abc==` is a key and `abc===L1` the
            # key `abc==` with tier L1
            found = _ENTRY.fullmatch(entry.strip())
            if found is None:
                key, tier, name = entry, "", ""
            else:
                key, tier = found.group(1), found.group(2) or ""
                name = found.group(3) if found.group(3) is not None else found.group(4) or ""
            key = key.strip()
            if key.startswith("sha256:"):
                try:
                    digest = bytes.fromhex(key[7:])
                except ValueError:
                    raise KeysError("a sha256: key entry is not hex") from None
                if len(digest) != 32:
                    raise KeysError("a sha256: key entry is not 64 hex digits")
            else:
                digest = hashlib.sha256(key.encode()).digest()
            tenant = Tenant(
                digest.hex()[:12], tier.strip() or None, name.strip(), option.strip() == "async"
            )
            self._by_digest[digest] = tenant
            self._digest_of[tenant] = digest

    @classmethod
    def load(cls, keys: str, keys_file: str) -> Keyring:
        entries = keys.split(",") if keys else []
        if keys_file:
            try:
                with open(keys_file) as f:
                    entries += f.read().splitlines()
            except OSError as exc:
                raise KeysError(f"EDGE_KEYS_FILE {keys_file}: {exc.strerror}") from None
        return cls(entries)

    def replace(self, other: Keyring) -> None:
        """Take ``other``'s keys (a reload): one swap, nothing awaited in between."""
        self._by_digest, self._digest_of = other._by_digest, other._digest_of

    def __len__(self) -> int:
        return len(self._by_digest)

    def same(self, other: Keyring) -> bool:
        return self._by_digest == other._by_digest

    def tiers(self) -> set[str]:
        """Every tier a key declares (the start checks them against the policy)."""
        return {t.tier for t in self._by_digest.values() if t.tier}

    @property
    def open(self) -> bool:
        return not self._by_digest

    def digest(self, tenant: Tenant) -> str:
        """The key's SHA-256 digest in hex (what answers are recorded under: the key itself is
        never stored); ``open`` on a gateway without keys."""
        found = self._digest_of.get(tenant)
        return found.hex() if found is not None else OPEN_ID

    def check(self, authorization: bytes | None, api_key: bytes | None) -> Tenant:
        if self.open:
            return OPEN
        presented = api_key
        if presented is None and authorization and authorization[:7].lower() == b"bearer ":
            presented = authorization[7:].strip()
        if not presented:
            raise Unauthorized(
                "missing API key: send Authorization: Bearer <key> or x-api-key",
                code="missing_api_key",
            )
        digest = hashlib.sha256(presented).digest()
        # Looked up by digest: lookup timing can at most reveal bits of a SHA-256
        # digest, which does not help anyone forge a key; the final comparison
        # of the full digest is constant-time.
        found = self._by_digest.get(digest)
        if found is None or not hmac.compare_digest(self._digest_of[found], digest):
            raise Unauthorized("invalid API key", code="invalid_api_key")
        return found
