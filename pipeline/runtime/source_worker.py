"""The loop inside a source process: read frames, number them, send them when there is room.

A file source reads only when every downstream stage can take a frame, so nothing is lost.
A live source is read in its own thread, so the camera is always drained; frames wait in a
short queue, and when it is full the oldest is dropped and counted (never silently).
"""

from __future__ import annotations

import threading
import time
from collections import deque

from ..messages import Message
from ..stage import Source
from ..transport.codec import END, MSG, encode, encode_control
from ..transport.framepool import FrameLost
from .worker import StageWorker, _Stopped

__all__ = ["SourceWorker"]


class SourceWorker(StageWorker):
    """Runs a Source stage: numbering, pacing by credits, drop-oldest for live sources."""

    stage: Source

    def __init__(self, *args, max_frames: int | None = None, live_queue: int = 2, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_frames = max_frames
        self.ctx.max_frames = max_frames
        self.stage.stream_id = self.spec.stage
        self.last_seq = self.ctx.resume_seq
        self.sent = 0
        self.live_queue: deque[Message] = deque()
        self.live_size = live_queue
        self.live_done = threading.Event()
        self.lock = threading.Lock()
        self.live_error: BaseException | None = None

    def loop(self) -> None:
        try:
            if self.stage.live:
                self.loop_live()
            else:
                self.loop_file()
        except _Stopped:
            pass
        self.end_stream()

    def _enough(self) -> bool:
        return self.stopping or (self.max_frames is not None and self.sent >= self.max_frames)

    def loop_file(self) -> None:
        while not self._enough():
            if self.outlet is not None:
                self.wait_for_room(self.stage.stream_id)
            msg = self.stage.read()
            if msg is None:
                return
            self.send(msg)
            self.report()

    def loop_live(self) -> None:
        reader = threading.Thread(target=self._read_live, name="live-reader", daemon=True)
        reader.start()
        while not self._enough():
            if self.outlet is not None:  # wait first: a frame taken from the queue must go at once
                self.wait_for_room(self.stage.stream_id)
            with self.lock:
                msg = self.live_queue.popleft() if self.live_queue else None
            if msg is None:
                if self.live_done.is_set():
                    if self.live_error is not None:  # the reader died: fail as the stage would
                        raise self.live_error
                    return
                if self.outlet is not None:
                    self.outlet.poll_credits(5)
                else:
                    time.sleep(0.005)
                self.report()
                continue
            self.send(msg)
            self.report()
        self.stopping = True
        reader.join(timeout=2.0)

    def _read_live(self) -> None:
        try:
            while not self.stopping:
                msg = self.stage.read()
                if msg is None:
                    return
                with self.lock:
                    if len(self.live_queue) >= self.live_size:
                        for arr in self.live_queue.popleft().arrays.values():
                            self.pool.release(arr)
                        self.stats.count_drop("live_overflow")
                    self.live_queue.append(msg)
        except BaseException as exc:  # handed to the main thread, which reports or restarts
            self.live_error = exc
        finally:
            self.live_done.set()

    def send(self, msg: Message) -> None:
        msg.stream = self.stage.stream_id
        if msg.seq <= self.last_seq:
            msg.seq = self.last_seq + 1
        msg.prev = self.last_seq
        self.stats.count_in(msg.stream)
        if self.outlet is not None:
            try:
                parts = encode(msg, MSG, False, self.pool, self.reader, self.inline_all)
            except FrameLost:
                self.stats.count_drop("overwritten")
                return
            if not self.outlet.send(parts, msg.stream):  # a replica died as it was sent
                self.stats.count_drop("unreachable")
        self.last_seq = msg.seq
        self.sent += 1
        self.stats.count_out(msg.stream, msg.seq, msg.t_mono_ns)

    def end_stream(self) -> None:
        """Mark the stream's end in order (so trackers flush), then tell consumers we're done."""
        if self.outlet is not None:
            self.stopping_guard_wait()
            end = encode_control(END, self.stage.stream_id, self.last_seq + 1, self.last_seq)
            self.outlet.send(end, self.stage.stream_id)
        # The supervisor remembers where the stream ended, for a stage that crashes holding END.
        self.notify({"t": "stream_end", "stream": self.stage.stream_id, "last_seq": self.last_seq})
        self.finish()

    def stopping_guard_wait(self) -> None:
        """Wait for room for the END marker for a bounded time even when stopping."""
        assert self.outlet is not None
        deadline = time.monotonic() + 5.0
        while not self.outlet.ready(self.stage.stream_id) and time.monotonic() < deadline:
            self.outlet.poll_credits(50)
            self.report()
            self.check_gone()
