"""What the spool's mark file says: the watermark (every message numbered below it is done:
acknowledged by the broker, given up, or dropped for the bound) and the done numbers above it,
as ranges. Acknowledgements mostly come in order, so the ranges are few (none most of the
time); the record stays one short line, written in one ``pwrite``.

    <watermark> [<first>-<end> ...]\\n      e.g. "1042 1045-1047 1050-1051\\n"

Ranges are half-open. Only the first line counts: a shorter record written over a longer one
leaves the old tail after its newline. A record that would pass ``MAX_RECORD`` bytes keeps the
ranges that fit (the lowest): the others are sent again, as QoS 1 allows, never lost.
"""

from __future__ import annotations

import bisect

__all__ = ["MAX_RECORD", "Done", "parse_record"]

MAX_RECORD = 4000  # bytes: one pwrite within a page


class Done:
    """Done message numbers above a watermark, kept as sorted, disjoint, merged ranges."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []  # half-open: [starts[i], ends[i])
        self.floor = 0  # the watermark: below it, everything is done

    def add(self, n: int) -> None:
        """Note ``n`` as done."""
        if n < self.floor:
            return
        i = bisect.bisect_right(self.starts, n) - 1
        if i >= 0 and n < self.ends[i]:
            return  # already in
        joins_left = i >= 0 and self.ends[i] == n
        joins_right = i + 1 < len(self.starts) and self.starts[i + 1] == n + 1
        if joins_left and joins_right:
            self.ends[i] = self.ends[i + 1]
            del self.starts[i + 1], self.ends[i + 1]
        elif joins_left:
            self.ends[i] = n + 1
        elif joins_right:
            self.starts[i + 1] = n
        else:
            self.starts.insert(i + 1, n)
            self.ends.insert(i + 1, n + 1)

    def below(self, watermark: int) -> None:
        """Forget what lies below ``watermark`` (the mark says it already)."""
        self.floor = max(self.floor, watermark)
        cut = bisect.bisect_right(self.ends, watermark)
        del self.starts[:cut], self.ends[:cut]
        if self.starts and self.starts[0] < watermark:
            self.starts[0] = watermark

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.ends, strict=True))

    def record(self, watermark: int) -> bytes:
        """The mark file's line for ``watermark`` and the ranges above it that fit."""
        text = str(watermark)
        for a, b in zip(self.starts, self.ends, strict=True):
            if b <= watermark:
                continue
            part = f" {max(a, watermark)}-{b}"
            if len(text) + len(part) + 1 > MAX_RECORD:
                break
            text += part
        return (text + "\n").encode()

    def __contains__(self, n: int) -> bool:
        i = bisect.bisect_right(self.starts, n) - 1
        return i >= 0 and n < self.ends[i]

    def __len__(self) -> int:
        return len(self.starts)


def parse_record(data: bytes) -> tuple[int, Done]:
    """The watermark and done ranges of a mark file's bytes; an unreadable record gives
    (0, nothing done): everything is sent again (QoS 1 allows repeats)."""
    done = Done()
    try:
        fields = data.split(b"\n", 1)[0].split()
        watermark = int(fields[0]) if fields else 0
    except ValueError:
        return 0, done
    for field in fields[1:]:  # sorted and disjoint as written; past a bad one, keep none
        try:
            a, b = (int(x) for x in field.split(b"-"))
        except ValueError:
            break
        if not watermark <= a < b or (done.ends and a < done.ends[-1]):
            break
        done.starts.append(a)
        done.ends.append(b)
    done.floor = watermark
    return watermark, done
