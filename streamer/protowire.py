"""Just enough of the protobuf wire format to find fields without the generated classes.

A message is a run of (key, payload) pairs, key = field number << 3 | wire type; wire
types 0 (varint), 1 (8 bytes), 2 (length-delimited: varint length, then the bytes) and 5
(4 bytes). :func:`wire_fields` lists a message's length-delimited fields by offset, so the
caller can hash or decode a nested message's exact bytes without parsing them.
"""

from __future__ import annotations


class WireError(ValueError):
    """Bytes that are not a plainly laid out protobuf message."""


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= end:
            raise WireError(f"varint runs past byte {end}")
        if shift > 63:
            raise WireError(f"varint longer than 10 bytes before byte {i}")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def wire_fields(buf: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, int, int]]:
    """The length-delimited fields of the message in ``buf[start:end]`` as (field number,
    payload start, payload end), in file order; other wire types are stepped over. Raises
    :class:`WireError` on a truncated field, a group or field number 0."""
    end = len(buf) if end is None else end
    out, i = [], start
    while i < end:
        key, i = _varint(buf, i, end)
        num, kind = key >> 3, key & 7
        if num == 0:
            raise WireError(f"field number 0 at byte {i}")
        if kind == 0:
            _, i = _varint(buf, i, end)
        elif kind in (1, 5):
            i += 8 if kind == 1 else 4
        elif kind == 2:
            n, i = _varint(buf, i, end)
            out.append((num, i, i + n))
            i += n
        else:
            raise WireError(f"field {num}: wire type {kind} (groups) is not expected")
        if i > end:
            raise WireError(f"field {num} runs past byte {end}")
    return out
