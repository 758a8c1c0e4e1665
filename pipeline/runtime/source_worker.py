"""The loop inside a source process: read frames, number them, send them when there is room.

A file source reads only when every downstream stage can take a frame, so nothing is lost.
A live source is read in its own thread, so the camera is always drained; frames wait in a
short queue, and when it is full the oldest is dropped and counted (never silently).

Every frame gets the next seq of its stream from the source's ``SourceBook`` (in its ledger),
dropped ones included; a restarted source goes on after the last frame it settled, so no
frame is sent twice (see ``integrity``).
"""

from __future__ import annotations

import threading
import time
from collections import deque

from ..accounting.books import STOPPED, SourceBook
from ..accounting.envelope import Accounting
from ..messages import Message
from ..stage import Source
from ..transport.codec import END
from ..transport.framepool import FrameLost
from .job import Job
from .worker import StageWorker, _Stopped

__all__ = ["SourceWorker"]


class SourceWorker(StageWorker):
    """Runs a Source stage: numbering, pacing by credits, drop-oldest for live sources."""

    stage: Source

    def __init__(self, job: Job, stage: Source, live_queue: int | None = None) -> None:
        super().__init__(job, stage)
        self.stream = self.spec.stage
        self.stage.stream_id = self.stream
        self.book = SourceBook(self.ledger, self.stream)
        self.lock = threading.Lock()  # the book and the queue, between reader and sender
        if job.restarted:
            died = self.book.resume(self.stage.live)
            if died:
                self.stats.count_drop("crashed", died)
        self.ctx.resume_seq = self.book.next - 1
        self.max_frames = job.max_frames
        self.ctx.max_frames = job.max_frames
        self.live_queue: deque[tuple[int, Message]] = deque()
        # on demand (see demand.py) a live frame waits here for room: only the newest one
        self.live_size = live_queue or (1 if self.settings.source_demand else 2)
        self.live_done = threading.Event()
        self.live_error: BaseException | None = None

    def loop(self) -> None:
        try:
            if self.stage.live:
                self.loop_live()
            else:
                self.loop_file()
        except _Stopped:
            pass
        self.end_stream_here()

    def _enough(self) -> bool:
        limit = self.max_frames  # --frames: frames sent (a live source's drops do not count)
        return self.stopping or (limit is not None and self.book.count >= limit)

    def loop_file(self) -> None:
        while not self._enough():
            if self.sender is not None:
                self.wait_for_room(self.stream)
            msg = self.stage.read()
            if msg is None:
                return
            with self.lock:
                self.send(self._number(msg), msg)
            self.report()

    def _number(self, msg: Message) -> int:
        """The frame's seq; frames the stage skipped (and counted) before it are settled as
        source drops."""
        seq, _skipped = self.book.number(msg.seq)
        return seq

    def loop_live(self) -> None:
        reader = threading.Thread(target=self._read_live, name="live-reader", daemon=True)
        reader.start()
        try:
            self._send_live()
        finally:  # however the loop ends (a stop while waiting for room too)
            self.stopping = True
            reader.join(timeout=5.0)
            self._settle_queue()

    def _send_live(self) -> None:
        while not self._enough():
            if self.sender is not None:  # wait first: a frame taken from the queue must go at once
                self.wait_for_room(self.stream)
            with self.lock:  # the reader drops nothing while a frame goes: seqs settle in order
                item = self.live_queue.popleft() if self.live_queue else None
                if item is not None:
                    self.send(*item)
            if item is None:
                if self.live_done.is_set():
                    if self.live_error is not None:  # the reader died: fail as the stage would
                        raise self.live_error
                    return
                if self.sender is not None:
                    self.sender.poll_credits(5)
                else:
                    time.sleep(0.005)
                self.report()
                continue
            self.report()

    def _settle_queue(self) -> None:
        """Frames still queued when the source stops were produced but will never be sent:
        dropped and counted as ``stopped`` (left at a clean stop, not lost to a fault)."""
        with self.lock:
            while self.live_queue:
                seq, msg = self.live_queue.popleft()
                for arr in msg.arrays.values():
                    self.pool.release(arr)
                self.book.drop(seq)
                self.stats.count_drop(STOPPED)

    def _read_live(self) -> None:
        try:
            while not self.stopping:
                msg = self.stage.read()
                if msg is None:
                    return
                with self.lock:
                    if self.stopping:  # read after the stop: never numbered, never produced
                        for arr in msg.arrays.values():
                            self.pool.release(arr)
                        return
                    seq = self._number(msg)
                    if len(self.live_queue) >= self.live_size:
                        old_seq, old = self.live_queue.popleft()
                        for arr in old.arrays.values():
                            self.pool.release(arr)
                        self.book.drop(old_seq)
                        self.stats.count_drop("live_overflow")
                    self.live_queue.append((seq, msg))
        except BaseException as exc:  # handed to the main thread, which reports or restarts
            self.live_error = exc
        finally:
            self.live_done.set()

    def send(self, seq: int, msg: Message) -> None:
        msg.stream, msg.seq, msg.prev = self.stream, seq, self.book.sent
        self.stats.count_in(msg.stream)
        if self.sender is not None:
            try:
                self.sender.send(msg, False, Accounting(self.book.source_drops))
            except FrameLost:  # its slot came round before it could go: dropped, counted
                self.book.drop(seq)
                self.stats.count_drop("overwritten")
                return
        self.book.send(seq)
        self.stats.count_out(msg.stream, msg.seq, msg.t_mono_ns)

    def end_stream_here(self) -> None:
        """Mark the stream's end in order (so trackers flush), then tell consumers we're done.
        END names the stream's length and every frame dropped at the source."""
        end = Message(self.stream, self.book.next, self.book.sent)
        if self.sender is not None:
            deadline = time.monotonic() + 5.0  # room for END, a bounded wait even when stopping
            while not self.sender.ready(self.stream) and time.monotonic() < deadline:
                self.sender.poll_credits(50)
                self.report()
                self.check_gone()
            self.sender.marker(END, end, False, Accounting(self.book.source_drops))
        # the supervisor remembers where the stream ended, for a stage that crashes holding END
        self.notify(
            {
                "t": "stream_end",
                "stream": self.stream,
                "end": self.book.next,
                "source_drops": self.book.source_drops,
            }
        )
        self.finish()
