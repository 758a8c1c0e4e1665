"""The loop inside one stage process: take messages in order, call the stage, send results.

Inputs arrive on credit-bounded inlets; a message's credit goes back when the stage takes it,
so upstream never has more than ``window`` messages queued here. Results go out only when
every downstream stage has room. Stats (the heartbeat) go to the supervisor every interval.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zmq

from ..errors import TransportError
from ..graph.plan import InstanceSpec
from ..health import HealthFile
from ..messages import Message
from ..stage import Context, Outputs, Stage
from ..stats.metrics import StageStats
from ..transport.codec import (
    END,
    EOS,
    MSG,
    SKIP,
    Decoded,
    decode,
    encode,
    encode_control,
    packb,
    unpackb,
)
from ..transport.framepool import FrameLost, FramePool, PoolReader
from ..transport.idle import SpinThenPark
from ..transport.links import Inlet, Outlet, configure, gone_dir, zmq_context
from ..transport.reorder import ReorderBuffer

__all__ = ["StageWorker"]

log = logging.getLogger("rkpipe.worker")


class StageWorker:
    """Runs one stage instance until its inputs end or it is told to stop."""

    def __init__(
        self,
        spec: InstanceSpec,
        stage: Stage,
        control: str | None = None,
        restarted: bool = False,
        finished: Iterable[str] = (),
        resume_seq: int = -1,
        lost_ends: dict[str, int] | None = None,
    ) -> None:
        self.spec = spec
        self.stage = stage
        self.settings = spec.settings
        self.stats = StageStats()
        self.stopping = False
        self.restarted = restarted
        pid = os.getpid()
        self.pool = FramePool(f"rkpipe-{spec.run_id}-{spec.instance}-{pid}", spec.pool_slots)
        self.reader = PoolReader()
        self.inline_all = spec.endpoint.startswith("tcp://")
        self.outlet = Outlet(spec.endpoint, spec.outputs, spec.partition) if spec.outputs else None
        done = set(finished)
        self.inlets = [
            Inlet(ep, prod, spec.instance, spec.stage, spec.replica, spec.window)
            for prod, ep in spec.inputs
        ]
        for inlet in self.inlets:
            inlet.eos = inlet.producer in done
        timeout = self.settings.get("reorder_timeout_ms", 1000) / 1000
        self.reorder: ReorderBuffer[tuple[Inlet, Decoded]] | None = (
            ReorderBuffer(timeout, fresh=not restarted) if spec.reorder else None
        )
        self.ready: deque[tuple[Inlet, Decoded]] = deque()
        self.idle = SpinThenPark(self.settings.get("spin_us", 200))
        # Overlap (stages that wait on a device, e.g. inference): ``process`` runs in one
        # stage thread with up to ``overlap`` messages queued for it, while this thread
        # receives, sends and copies; a pipe wakes the loop when a result is done.
        self.overlap = max(0, int(stage.overlap))
        self.pending: deque[tuple[Decoded, Future]] = deque()
        self._executor: ThreadPoolExecutor | None = None
        self._wake_r = self._wake_w = -1
        if self.overlap:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage")
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
        self._last_seq: dict[tuple[str, str], int] = {}  # (producer, stream) -> last seq seen
        # Streams whose END died in an earlier incarnation's crash (stream -> its last seq,
        # from the supervisor): ended here at the finish unless their END comes after all.
        self.lost_ends = dict(lost_ends or {})
        self._ended: set[str] = set()  # streams ended here; a second END is ignored
        self.control = None
        self._control_lock = threading.Lock()  # a live source reports health from its reader
        self.run_dir = control[len("ipc://") :].rsplit("/", 1)[0] if control else None
        self._gone = gone_dir(self.run_dir) if self.run_dir else None
        self._next_gone_check = 0.0
        if control:
            self.control = configure(zmq_context().socket(zmq.PUSH))
            self.control.connect(control)
        self.interval = min(1.0, self.settings.get("stats_interval_s", 2.0))
        self._next_report = 0.0
        self.ctx = Context(
            stage=spec.stage,
            pipeline=str(self.settings.get("name", "pipeline")),
            replica=spec.replica,
            replicas=spec.replicas,
            cpus=spec.cpus,
            graph_dir=Path(spec.graph_dir),
            run_id=spec.run_id,
            resume_seq=resume_seq,
            restarted=restarted,
            log=logging.getLogger(f"rkpipe.{spec.instance}"),
            runtime=_Services(self),
        )

    # -- lifecycle -------------------------------------------------------------------------
    def is_gone(self, instance: str) -> bool:
        """True if the supervisor marked ``instance`` as ended for good without finishing."""
        return self._gone is not None and (self._gone / instance).exists()

    def check_gone(self) -> None:
        """At most once a second: stop waiting on peers that ended for good (a consumer
        that failed, a producer that will never send its EOS)."""
        now = time.monotonic()
        if self._gone is None or now < self._next_gone_check:
            return
        self._next_gone_check = now + 1.0
        if not self._gone.exists():
            return
        if self.outlet is not None:
            self.outlet.forget_gone(self.is_gone)
        for inlet in self.inlets:
            if not inlet.eos and self.is_gone(inlet.producer):
                inlet.eos = True

    def request_stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        self.stage.setup(self.ctx)
        self.notify({"t": "ready"})
        try:
            self.loop()
        except _Stopped:
            pass
        finally:
            self.report(force=True)
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            os.close(self._wake_r)
            os.close(self._wake_w)
        try:
            self.stage.close()
        except Exception:  # best effort: a failing close must not hide the run's result
            log.exception("%s: close failed", self.spec.instance)
        self.report(force=True)  # what close() counted (e.g. undelivered events) is reported
        for inlet in self.inlets:
            inlet.close()
        if self.outlet is not None:
            self.outlet.close()
        self.reader.close()
        self.pool.close(unlink=False)  # the supervisor unlinks after every consumer is gone
        if self.control is not None:
            self.control.close(linger=1000)

    def notify(self, event: dict) -> None:
        if self.control is not None:
            data = packb({"instance": self.spec.instance, "pid": os.getpid(), **event})
            with self._control_lock:  # a ZeroMQ socket is not for two threads at once
                self.control.send(data)

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_report:
            return
        self._next_report = now + self.interval
        self.stats.queue_depth = len(self.ready) + (len(self.reorder) if self.reorder else 0)
        if self.reorder is not None:
            self.stats.drops["lost"] = self.reorder.lost
            self.stats.drops["late"] = self.reorder.late
        self.notify({"t": "stats", "stats": self.stats.to_wire()})

    # -- the loop --------------------------------------------------------------------------
    def loop(self) -> None:
        poller = zmq.Poller()
        for inlet in self.inlets:
            poller.register(inlet.sock, zmq.POLLIN)
            poller.register(inlet.monitor, zmq.POLLIN)
        if self.outlet is not None:
            poller.register(self.outlet.sock, zmq.POLLIN)
        if self.overlap:
            poller.register(self._wake_r, zmq.POLLIN)
        by_sock = {inlet.sock: inlet for inlet in self.inlets}
        by_monitor = {inlet.monitor: inlet for inlet in self.inlets}
        while not self.stopping:
            for sock, _ in self.idle.wait(poller.poll, self._timeout_ms()):
                if sock in by_sock:
                    self.receive(by_sock[sock])
                elif sock in by_monitor:
                    by_monitor[sock].on_monitor()
                elif sock == self._wake_r:
                    self._drain_wake()
                else:
                    self.outlet.poll_credits()  # type: ignore[union-attr]
            if self.reorder is not None:
                self.ready.extend(self.reorder.expire())
            self.collect(wait_until=len(self.pending))
            self.work()
            self.report()
            self.check_gone()
            if all(i.eos for i in self.inlets) and not self.ready and not self.pending:
                self.finish()
                return

    def _timeout_ms(self) -> int:
        if self.ready and (self.outlet is None or self.outlet.ready(self.ready[0][1].msg.stream)):
            return 0
        return 20 if self.reorder is not None and len(self.reorder) else int(self.interval * 1000)

    def receive(self, inlet: Inlet) -> None:
        while (parts := inlet.recv()) is not None:
            try:
                item = decode(parts, self.reader)
            except FrameLost:
                self._lost(inlet, parts, "overwritten")
                continue
            except TransportError:
                self.stats.count_drop("corrupt")
                inlet.credit()
                continue
            if item.kind == EOS:
                inlet.eos = True
            elif item.kind == END and item.msg.stream in self._ended:
                inlet.credit()  # ended already, by a restarted peer that made up a lost END
            elif self.reorder is not None:
                m = item.msg
                late = self.reorder.late
                for ready in self.reorder.push(m.stream, m.seq, m.prev, (inlet, item), item.more):
                    self.ready.append(ready)
                if self.reorder.late > late:  # dropped (its place was given up): credit it back
                    inlet.credit()
            else:
                self._check_chain(inlet, item.msg)
                self.ready.append((inlet, item))

    def _check_chain(self, inlet: Inlet, msg: Message) -> None:
        """Count messages lost upstream (e.g. inside a stage that crashed): each message
        names its predecessor in the stream, so a break in that chain is a loss."""
        if self.spec.replicas > 1:  # a replica sees only some of each stream: gaps are normal
            return
        key = (inlet.producer, msg.stream)
        last = self._last_seq.get(key)
        if last is not None and msg.seq != last and msg.prev != last:
            self.stats.count_drop("lost")
        self._last_seq[key] = msg.seq

    def _lost(self, inlet: Inlet, parts: list, reason: str) -> None:
        """A frame was overwritten before we could read it: count it, keep the order going."""
        self.stats.count_drop(reason)
        header = unpackb(parts[0])
        marker = Decoded(SKIP, header[6], Message(header[1], header[2], header[3]), [])
        if self.reorder is not None:
            self.ready.extend(
                self.reorder.push(header[1], header[2], header[3], (inlet, marker), header[6])
            )
        else:
            self._check_chain(inlet, marker.msg)
            self.ready.append((inlet, marker))

    def work(self) -> None:
        while self.ready and not self.stopping:
            if self.outlet is not None and not self.outlet.ready(self.ready[0][1].msg.stream):
                return
            inlet, item = self.ready.popleft()
            inlet.credit()
            self.handle(item)

    def handle(self, item: Decoded) -> None:
        msg = item.msg
        if item.kind != MSG and self.pending:
            self.collect()  # a marker never overtakes results still in the stage thread
        if item.kind == SKIP:
            self.forward_marker(SKIP, msg, item.more)
        elif item.kind == END:
            flushed = self.stage.end_stream(msg.stream)
            flushed = [flushed] if isinstance(flushed, Message) else list(flushed or [])
            for m in flushed:  # results flushed at the end take the END marker's place
                m.seq, m.prev = msg.seq, msg.prev
            self.emit(flushed, more=True)
            self.forward_marker(END, msg)
            self._ended.add(msg.stream)
            self.notify({"t": "stream_end", "stream": msg.stream})
            if self.reorder is not None:
                self.reorder.forget(msg.stream)
        elif item.kind == MSG and self._executor is not None:
            self.stats.count_in(msg.stream)
            self.collect(wait_until=self.overlap - 1)  # room in the stage thread's queue
            fut = self._executor.submit(self._timed_process, msg)
            fut.add_done_callback(self._wake)
            self.pending.append((item, fut))
        elif item.kind == MSG:
            self.stats.count_in(msg.stream)
            out, took = self._timed_process(msg)
            self._finish_item(item, out, took)

    def _timed_process(self, msg: Message) -> tuple[Outputs, float]:
        t0 = time.perf_counter()
        out = self.stage.process(msg)
        return out, time.perf_counter() - t0

    def _finish_item(self, item: Decoded, out: Outputs, took: float) -> None:
        """Account for one processed message and send its results on, in order."""
        self.stats.busy_s += took
        self.stats.service.add(took * 1000)
        if not all(self.reader.is_current(r) for r in item.refs):
            self.stats.count_drop("overwritten")
            out = None
        if not self.emit(out, item.more) and not item.more:
            self.forward_marker(SKIP, item.msg)

    def collect(self, wait_until: int = 0) -> None:
        """Send on the stage thread's finished results in order, waiting while more than
        ``wait_until`` are still pending (0: wait for all). A stage error is raised here."""
        while self.pending and (len(self.pending) > wait_until or self.pending[0][1].done()):
            item, fut = self.pending.popleft()
            out, took = fut.result()
            self._finish_item(item, out, took)

    def _wake(self, _fut: Future) -> None:
        os.write(self._wake_w, b"x")

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def emit(self, out: Message | Iterable[Message] | None, more: bool = False) -> int:
        """Send the stage's results downstream (or count them at a sink); returns how many.
        All but the last carry ``more`` so a downstream reorder keeps them together; ``more``
        marks the last too when the input itself was not the last part of its frame."""
        if out is None:
            return 0
        msgs = [out] if isinstance(out, Message) else list(out)
        for i, m in enumerate(msgs):
            if self.outlet is not None:
                self.wait_for_room(m.stream)
                last = i == len(msgs) - 1
                parts = encode(m, MSG, more or not last, self.pool, self.reader, self.inline_all)
                if not self.outlet.send(parts, m.stream):  # its replica died as it was sent
                    self.stats.count_drop("unreachable")
            self.stats.count_out(m.stream, m.seq, m.t_mono_ns)
        return len(msgs)

    def forward_marker(self, kind: int, msg: Message, more: bool = False) -> None:
        if self.outlet is not None:
            self.wait_for_room(msg.stream)
            parts = encode_control(kind, msg.stream, msg.seq, msg.prev, more)
            self.outlet.send(parts, msg.stream)

    def wait_for_room(self, stream: str | None = None) -> None:
        """Block until every downstream stage can take a message (of ``stream``), reporting
        meanwhile."""
        assert self.outlet is not None
        while not self.outlet.ready(stream):
            self.outlet.poll_credits(int(self.interval * 1000))
            for inlet in self.inlets:
                inlet.on_monitor()
            self.report()
            self.check_gone()
            if self.stopping:
                raise _Stopped

    def finish(self) -> None:
        """All producers are done: flush held messages and stream state, then say EOS."""
        if self.reorder is not None:
            self.ready.extend(self.reorder.flush())
        while self.ready:
            if self.outlet is not None:
                self.wait_for_room(self.ready[0][1].msg.stream)
            self.work()
        self.collect()
        self.end_lost_streams()
        if self.outlet is not None:
            missed = self.outlet.broadcast_eos(is_gone=self.is_gone)
            if missed:
                log.warning("%s: could not tell %s that it finished", self.spec.instance, missed)
        self.report(force=True)
        self.notify({"t": "done"})

    def end_lost_streams(self) -> None:
        """End the streams whose END marker died with an earlier incarnation of this stage:
        the stage flushes them and END goes on, naming the stream's last frame so that
        downstream counts any frames that died with it."""
        for stream, last in self.lost_ends.items():
            if stream in self._ended:
                continue
            log.warning(
                "%s: stream %s ended while this stage was down; ending it now",
                self.spec.instance,
                stream,
            )
            self.stats.count_event("restored_end")
            self.handle(Decoded(END, False, Message(stream, last + 1, last), []))


class _Services:
    """The runtime services a stage gets through its Context: slots in this process's
    frame pool, this process's counters, and source health to and from the supervisor."""

    def __init__(self, worker: StageWorker) -> None:
        self.alloc = worker.pool.alloc
        self.count_drop = worker.stats.count_drop
        self.count_event = worker.stats.count_event
        self._notify = worker.notify
        self._health = HealthFile(worker.run_dir) if worker.run_dir else None
        self._last: tuple[str, str] | None = None

    def report_health(self, state: str, detail: str = "") -> None:
        if (state, detail) != self._last:  # only changes travel
            self._last = (state, detail)
            self._notify({"t": "health", "state": state, "detail": detail})

    def source_health(self) -> dict[str, dict[str, Any]]:
        return self._health.read() if self._health is not None else {}


class _Stopped(Exception):
    """Raised inside a blocking wait when the supervisor asked this process to stop."""
