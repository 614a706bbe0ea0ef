"""Identifiers and timestamps the simulated AppView hands out: keyed hashes, DIDs, TIDs, CIDs.

- `Hasher`: keyed BLAKE2b over the seed; every random choice of the world is one of its outputs, so
  the world is a pure function of the seed and the arguments.
- DIDs are `did:plc:` + 24 base32 characters that encode the user index reversibly (a keyed tag plus
  the index masked by a keystream taken from the tag), so a DID maps back to its user without any
  table; a DID from another seed or a random one fails the tag check and is simply unknown.
- TIDs: 53-bit microsecond timestamp + 10-bit clock id, 13 base32-sortable characters.
- CIDs: CIDv1 base32 strings (`bafyrei...` for records, `bafkrei...` for blobs) of a hash.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time

DAY_US = 86_400_000_000
_S32 = "234567abcdefghijklmnopqrstuvwxyz"
_S32_INDEX = {c: i for i, c in enumerate(_S32)}
_S32_PAIRS = [a + b for a in _S32 for b in _S32]  # 10 bits -> 2 characters
_B32 = b"abcdefghijklmnopqrstuvwxyz234567"
# bytes.translate tables: any byte to a base32 character (all 32, the first 8, every 4th).
_B32_ANY = bytes(_B32[i & 31] for i in range(256))
_B32_LOW = bytes(_B32[i & 7] for i in range(256))
_B32_STEP4 = bytes(_B32[(i & 7) * 4] for i in range(256))
_B32_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_TWO64 = float(2**64)


class Hasher:
    """Keyed BLAKE2b: deterministic 64-bit values from (seed, parts...)."""

    __slots__ = ("_keyed",)

    def __init__(self, seed: object) -> None:
        key = hashlib.blake2b(str(seed).encode(), digest_size=32).digest()
        # Copying a keyed state is cheaper than keying a new hash on every call.
        self._keyed = {size: hashlib.blake2b(key=key, digest_size=size) for size in (5, 8, 10, 32, 52)}

    def digest(self, parts: tuple, size: int) -> bytes:
        """`size` bytes of keyed hash of the parts (joined with a separator no part contains)."""
        state = self._keyed[size].copy()
        state.update("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"))
        return state.digest()

    def h64(self, *parts: object) -> int:
        """One 64-bit value."""
        return int.from_bytes(self.digest(parts, 8), "big")

    def u(self, *parts: object) -> float:
        """A uniform float in [0, 1)."""
        return int.from_bytes(self.digest(parts, 8), "big") / _TWO64

    def h4(self, *parts: object) -> tuple[int, int, int, int]:
        """Four independent 64-bit values from one hash call (cheaper than four calls)."""
        return struct.unpack(">4Q", self.digest(parts, 32))


def b32(data: bytes) -> str:
    """RFC 4648 base32, lower case, no padding."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def encode_did(hasher: Hasher, index: int) -> str:
    """The `did:plc:` identifier of user `index` (reversible with `decode_did`)."""
    tag = hasher.digest(("did", index), 10)
    mask = int.from_bytes(hasher.digest(("didmask", tag.hex()), 5), "big")
    return "did:plc:" + b32(tag + (index ^ mask).to_bytes(5, "big"))


def decode_did(hasher: Hasher, did: str) -> int | None:
    """The user index a DID of this world names, or None for any other DID."""
    if len(did) != 32 or not did.startswith("did:plc:"):
        return None
    body = did[8:]
    if not set(body) <= _B32_CHARS:
        return None
    raw = base64.b32decode(body.upper())
    tag, masked = raw[:10], int.from_bytes(raw[10:], "big")
    index = masked ^ int.from_bytes(hasher.digest(("didmask", tag.hex()), 5), "big")
    if hasher.digest(("did", index), 10) != tag:
        return None
    return index


def tid(us: int, clock_id: int) -> str:
    """The TID for a microsecond timestamp and a 10-bit clock id."""
    v = (us << 10) | (clock_id & 0x3FF)
    pairs = _S32_PAIRS
    return (
        _S32[v >> 60]
        + pairs[(v >> 50) & 1023]
        + pairs[(v >> 40) & 1023]
        + pairs[(v >> 30) & 1023]
        + pairs[(v >> 20) & 1023]
        + pairs[(v >> 10) & 1023]
        + pairs[v & 1023]
    )


def tid_timestamp(value: str) -> int | None:
    """The microsecond timestamp inside a TID, or None when it is not one."""
    if len(value) != 13 or value[0] not in "234567abcdefghij":
        return None
    number = 0
    for char in value:
        digit = _S32_INDEX.get(char)
        if digit is None:
            return None
        number = (number << 5) | digit
    return number >> 10


def cid(hasher: Hasher, *parts: object, raw: bool = False) -> str:
    """A CIDv1 string: dag-cbor/sha-256 (`bafyrei...`) or, for blobs, raw/sha-256 (`bafkrei...`).

    The string is the base32 of the 4 prefix bytes and a 32-byte digest, written directly: after
    `bafyrei` come one character holding 3 digest bits, 50 free ones, and one whose low 2 bits
    are padding (zero), so any such string decodes to a well-formed CID. (bytes.translate does
    it in one C call, where base64.b32encode loops in Python: this runs once per post served.)
    """
    d = hasher.digest(("cid", *parts), 52)
    middle = d[1:51].translate(_B32_ANY).decode("ascii")
    first, last = chr(_B32_LOW[d[0]]), chr(_B32_STEP4[d[51]])
    return ("bafkrei" if raw else "bafyrei") + first + middle + last


def iso(us: int, digits: int = 3) -> str:
    """UTC `YYYY-MM-DDTHH:MM:SS.mmmZ` (or 6 fraction digits) of microseconds since the epoch."""
    seconds, micros = divmod(us, 1_000_000)
    fraction = f"{micros // 1000:03d}" if digits == 3 else f"{micros:06d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction}Z"


def iso_offset(us: int, offset_minutes: int) -> str:
    """The same instant written in local time with a `+HH:MM` / `-HH:MM` offset."""
    local = us + offset_minutes * 60_000_000
    base = iso(local)[:-1]
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{base}{sign}{hours:02d}:{minutes:02d}"
