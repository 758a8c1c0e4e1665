"""Nothing lost, nothing hidden: how every frame is delivered once or counted once.

The invariant, per stream and per sink: every frame a source produced reaches the sink
exactly once, in order, or is counted exactly once as dropped, with a reason and the place
it was lost. The run checks it itself: each sink keeps a tally, and the supervisor compares
it with what the source produced ("exact", or the difference by reason).

How frames are numbered
    A source gives every frame it produces the next ``seq`` of its stream, 0, 1, 2, ...,
    dropped ones included, so the frames of a stream are exactly the seqs below the END
    marker's. Every envelope also carries ``source_drops`` (in its ``Accounting``, see
    ``pipeline.accounting.envelope``): how many frames of its stream the source dropped
    before this seq (each counted at the source, by reason). So between
    two links a stage sees, seq L and then seq S, ``S - L - 1`` frames are missing,
    ``source_drops_S - source_drops_L`` of them dropped and counted at the source; any
    others were lost on the way, unless the link says where (``lost``: [[n, reason], ...]
    counted upstream).

How each failure keeps the invariant
    - A stage drops a frame on purpose (``process`` returns nothing, an overwritten slot, a
      sink that cannot write): a SKIP marker with the reason takes the frame's place.
    - A live source drops frames (``live_overflow``) or a source skips undecodable ones
      (``corrupt``): counted at the source, carried in ``source_drops``.
    - A process dies holding frames (SIGKILL, a crash, a hang killed at the heartbeat
      timeout): the next stage downstream that sees the whole stream finds the hole between
      two links and counts it once, as ``crashed@<stage it came from>``, on the next link it
      sends (``lost``), so later stages do not count it again. Stages that see only part of a
      stream (replicas) leave holes to the next one that sees it whole.
    - A consumer behind replicas waits for a frame missing from the sequence only while it
      may still come: it gives the frame up, and counts it, only after a process of the run
      has died since the frame was made (the supervisor records each death), never because
      a healthy replica was slow (start-up, a loaded machine).
    - A sink dies: its tally is in shared memory (``Ledger``), so its restarted self goes on
      from the last frame it delivered and counts what died with it as ``crashed``.
    - A source dies: it numbers frames in its ledger; its restarted self continues after the
      last frame it settled (sent or counted), a file source by reading on from there, so no
      frame is sent twice; a live source counts the frames that died in its queue.
    - A stream's END dies in a crash: the supervisor tells the restarted stage, which ends
      the stream itself (``restored_end``), naming the last frame.
    - A sink is disabled after repeated failures, or the run is stopped at once (a second
      Ctrl-C, a drain past its grace period) with frames on the way: the supervisor undoes
      the commits the killed processes left half-done (``settle``) and counts what never
      reached the sink (``sink_disabled``, ``in_flight_at_stop``); the books stay exact.
    - The run is stopped cleanly (Ctrl-C, SIGTERM, ``--duration``): sources stop and every
      stage drains what it holds; frames still queued in a live source were produced but
      never sent, so the source counts them (``stopped``) and END carries them in
      ``source_drops``.
      Frames a camera delivers after the stop are never numbered: not produced at all.
    - A bad message (garbage, a forged header) is not a frame: it is refused and counted
      per peer as ``corrupt``, never as a frame of any stream.
"""

from __future__ import annotations

from ..accounting.books import (
    STOPPED,
    Chain,
    SourceBook,
    Tally,
    crashed_at,
    died_since,
    settle,
    tallies,
)

__all__ = [
    "STOPPED",
    "Chain",
    "SourceBook",
    "Tally",
    "crashed_at",
    "died_since",
    "settle",
    "tallies",
]
