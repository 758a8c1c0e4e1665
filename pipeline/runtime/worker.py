"""The loop inside one stage process: take links in order, call the stage, send the results.

``inputs`` receives and orders, ``sender`` sends, ``accounts`` (``accounting.stage_book``)
decides each frame's fate; this module is the loop between them: a link is taken only when
every downstream stage has room for its results, its frame accounting goes with the results
(or into the sink's tally), and stats go to the supervisor every interval (the heartbeat).
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

from ..accounting.books import died_since
from ..accounting.envelope import Accounting
from ..accounting.keys import LAST_DEATH
from ..accounting.stage_book import Admission, StageBook
from ..context import Context
from ..graph.schema import PipelineSettings
from ..health import HealthFile
from ..keys import FRAME
from ..messages import Message
from ..stage import Outputs, Stage
from ..stats.live_file import LiveFile
from ..stats.metrics import StageStats
from ..transport.codec import END, MSG, SKIP, Envelope, Kind, packb
from ..transport.framepool import FramePool, PoolReader
from ..transport.idle import SpinThenPark
from ..transport.links import Inlet, configure, gone_dir, zmq_context
from . import reconfigure
from .inputs import Inputs, RateLimitedLog, Received
from .job import Job, run_token
from .ledger import Ledger
from .sender import Sender

__all__ = ["StageWorker"]

log = logging.getLogger("rkpipe.worker")


class StageWorker:
    """Runs one stage instance until its inputs end or it is told to stop."""

    def __init__(self, job: Job, stage: Stage) -> None:
        spec = self.spec = job.spec
        self.job = job
        self.stage = stage
        self.settings = PipelineSettings.model_validate(spec.settings)  # the graph's, typed
        self.stopping = False
        self.token = run_token()
        self.ledger = Ledger.open(Path(job.ledger))
        self.run_ledger = Ledger.open(Path(job.run_ledger))
        self.stats = StageStats(self.ledger)
        self.pool = FramePool(f"rkpipe-{spec.run_id}-pool-{spec.instance}", spec.pool_slots)
        self.reader = PoolReader(prefix=f"rkpipe-{spec.run_id}-")
        self._say = RateLimitedLog()
        self.accounts = StageBook(
            self.ledger, spec.stage, spec.sees_whole_streams, sink=not spec.outputs
        )
        # instances that had ended cleanly when this one started: their EOS is not waited for,
        # and they are not told of ours (they take nothing more)
        self.finished_peers = frozenset(job.finished)
        self.inputs = Inputs(
            spec,
            self.reader,
            self.ledger,
            self._corrupt,
            self.stats.count_drop,
            self.token,
            self.finished_peers,
            self._may_give_up,
            # a device stage holds its frames' credits until the device is done with them
            extra_window=max(0, int(stage.overlap)),
            book=self.accounts,
            settings=self.settings,
        )
        self.sender = (
            Sender(spec, self.pool, self.reader, self.token, self._rejected)
            if spec.outputs
            else None
        )
        self.sink = self.sender is None
        self.idle = SpinThenPark(self.settings.spin_us)
        self._poller = zmq.Poller()
        self._handlers: dict[Any, Any] = {}
        self.options = dict(spec.options)  # as last taken: a reload sends what changed
        # Overlap (stages that wait on a device, e.g. inference): ``process`` runs in one
        # stage thread with up to ``overlap`` messages queued for it, while this thread
        # receives, sends and copies; a pipe wakes the loop when a result is done.
        self.overlap = max(0, int(stage.overlap))
        self.pending: deque[tuple[Received, Accounting, Future]] = deque()
        self._executor: ThreadPoolExecutor | None = None
        self._wake_r = self._wake_w = -1
        if self.overlap:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage")
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
        # streams whose END died in an earlier incarnation's crash -> [END seq, source_drops]: ended
        # here at the finish unless their END comes after all
        self.lost_ends = {s: (int(v[0]), int(v[1])) for s, v in job.lost_ends.items()}
        self._ended: set[str] = set()  # streams ended here; a second END is ignored
        self.run_dir = job.run_dir
        self._gone = gone_dir(self.run_dir)
        self._control_lock = threading.Lock()  # a live source reports health from its reader
        self._next_gone_check = 0.0
        self.control = configure(zmq_context().socket(zmq.PUSH))
        self.control.connect(job.control)
        self.interval = min(1.0, self.settings.stats_interval_s)
        self._next_report = 0.0
        self.ctx = Context(
            stage=spec.stage,
            pipeline=self.settings.name,
            node=self.settings.node,
            replica=spec.replica,
            replicas=spec.replicas,
            cpus=spec.cpus,
            graph_dir=Path(spec.graph_dir),
            run_id=spec.run_id,
            restarted=job.restarted,
            log=logging.getLogger(f"rkpipe.{spec.instance}"),
            runtime=_Services(self),
        )

    # -- peers -----------------------------------------------------------------------------------
    def _corrupt(self, peer: str, why: str) -> None:
        """A message that was not a valid envelope: refused, counted per peer, never raised."""
        self.stats.count_event("corrupt")
        self.stats.count_event(f"corrupt:{peer}")
        self._say(peer, f"{self.spec.instance}: refused a message from {peer}: {why}")

    def _rejected(self, peer: str, what: str) -> None:
        self._corrupt(peer, f"it sent {what}")

    def _may_give_up(self, t_mono_ns: int) -> bool:
        """A frame made after ``t_mono_ns`` may have died: a process of the run died since."""
        return died_since(self.run_ledger.get(LAST_DEATH, 0), t_mono_ns)

    def is_gone(self, instance: str) -> bool:
        """True if the supervisor marked ``instance`` as ended for good without finishing."""
        return (self._gone / instance).exists()

    def check_gone(self) -> None:
        """At most once a second: stop waiting on peers that ended for good (a consumer
        that failed, a producer that will never send its EOS)."""
        now = time.monotonic()
        if now < self._next_gone_check:
            return
        self._next_gone_check = now + 1.0
        if not self._gone.exists():
            return
        if self.sender is not None:
            self.sender.forget_gone(self.is_gone)
        for inlet in self.inputs.inlets:
            if not inlet.eos and self.is_gone(inlet.producer):
                inlet.eos = True

    # -- lifecycle -------------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self.stopping = True

    def run(self, stop_early: list[int] | None = None) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        if stop_early:  # told to stop while it was starting: a source ends its stream at once
            self.stopping = True
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
        self.inputs.close()
        if self.sender is not None:  # END and EOS, sent last, must still leave
            self.sender.close(linger_ms=0 if self.stopping else 5000)
        self.reader.close()
        self.pool.close(unlink=False)  # the supervisor unlinks at the end of the run
        self.control.close(linger=1000)

    def notify(self, event: dict[str, Any]) -> None:
        msg = {"instance": self.spec.instance, "pid": os.getpid(), "token": self.token, **event}
        data = packb(msg)
        with self._control_lock:  # a ZeroMQ socket is not for two threads at once
            self.control.send(data)

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_report:
            return
        self._next_report = now + self.interval
        self.stats.queue_depth = self.inputs.held() + len(self.pending)
        self.notify({"t": "stats", "stats": self.stats.to_wire()})

    # -- the loop --------------------------------------------------------------------------------
    def loop(self) -> None:
        poller, handlers = self._poller, self._handlers
        for inlet in self.inputs.inlets:
            self._watch(inlet)
        if self.sender is not None:
            poller.register(self.sender.sock, zmq.POLLIN)
            handlers[self.sender.sock] = self.sender.poll_credits
        if self.overlap:
            poller.register(self._wake_r, zmq.POLLIN)
            handlers[self._wake_r] = self._drain_wake
        while not self.stopping:
            for sock, _ in self.idle.wait(poller.poll, self._timeout_ms()):
                handlers[sock]()
            self.inputs.expire()
            self.collect(wait_until=len(self.pending))
            self.work()
            if reconfigure.requested:
                self.take_new_options()
            self.inputs.release(self.sender.room() if self.sender is not None else None)
            self.report()
            self.check_gone()
            if self.inputs.ended and not self.inputs.ready and not self.pending:
                self.finish()
                return

    def _watch(self, inlet: Inlet) -> None:
        """Poll ``inlet`` (and its connection monitor) from the loop."""
        self._poller.register(inlet.sock, zmq.POLLIN)
        self._poller.register(inlet.monitor, zmq.POLLIN)
        self._handlers[inlet.sock] = lambda: self.inputs.receive(inlet)
        self._handlers[inlet.monitor] = inlet.on_monitor

    def _timeout_ms(self) -> int:
        nxt = self.inputs.peek()
        if nxt is not None and (self.sender is None or self.sender.ready(nxt.stream)):
            return 0
        soon = self.inputs.waiting_on_order() or self.inputs.owes()  # owed: see Demand.horizon_s
        return 20 if soon else int(self.interval * 1000)

    def work(self) -> None:
        while not self.stopping and (nxt := self.inputs.peek()) is not None:
            if self.sender is not None and not self.sender.ready(nxt.stream):
                return
            # A stage that waits on a device keeps a frame's credit until the device is done
            # with it: producers then send to the replica that is free, not to one whose
            # device already has a frame queued (below capacity, frames never wait there).
            deferred = self._executor is not None and nxt.d.kind == MSG
            self.handle(self.inputs.take(credit=not deferred))

    def take_new_options(self) -> None:
        """A reload: the stage takes the options the supervisor left, between two messages
        (results still in the stage thread go out first), and says whether it could; new
        inputs (a source added) are connected to."""
        reconfigure.requested.clear()
        self.collect()
        ok, why, what = True, "", []
        try:
            wiring = reconfigure.read_inputs(self.run_dir, self.spec.instance)
            if wiring is not None:
                for inlet in self.inputs.connect(*wiring):
                    self._watch(inlet)
                    what.append(inlet.producer)
            outputs = reconfigure.read_outputs(self.run_dir, self.spec.instance)
            if outputs is not None and self.sender is not None and outputs != self.spec.outputs:
                let_go = self.sender.regroup(outputs)
                self.spec.outputs = outputs
                what += [f"-{i}" for i in let_go]
            path = reconfigure.options_path(self.run_dir, self.spec.instance)
            if path.exists():
                options = reconfigure.read_options(self.run_dir, self.spec.instance)
                if options != self.options:
                    ok = bool(self.stage.reconfigure(self.stage.Config(**options)))
                    what.append("options")
                    if ok:
                        self.options = options
        except (OSError, ValueError) as exc:
            ok, why = False, str(exc)[:300]
        self.notify({"t": "reconfigured", "ok": ok, "error": why, "what": what})

    # -- one link --------------------------------------------------------------------------------
    def handle(self, link: Received, restored: bool = False) -> None:
        """Account for one link (``book``) and do what its kind asks. ``restored``: an END
        the supervisor says this stage never passed on (its predecessor died taking it)."""
        d = link.d
        adm = self.accounts.admit(link.via, d, restored)
        if adm is None:  # already taken: a copy, never processed twice
            self.stats.count_event("duplicate")
            if self._executor is not None and d.kind == MSG:
                self.inputs.credit(link)
            return
        if d.kind != MSG and self.pending:
            self.collect()  # a marker never overtakes results still in the stage thread
        if self.accounts.settles_here(adm):
            self._handle_at_sink(adm, d)
            return
        self.accounts.passing_on(adm, d)  # before anything is sent
        acct = adm.acct
        if d.kind == SKIP:
            self.send_marker(SKIP, d.msg, d.more, acct)
        elif d.kind == END:
            self.end_stream(d.msg, acct)
        elif self._executor is not None:
            self.stats.count_in(d.msg.stream)
            self.collect(wait_until=self.overlap - 1)  # room in the stage thread's queue
            fut = self._executor.submit(self._timed_process, d.msg)
            fut.add_done_callback(self._wake)
            self.pending.append((link, acct, fut))
        else:
            self.stats.count_in(d.msg.stream)
            out, took = self._timed_process(d.msg)
            self._finish_item(link, acct, out, took)

    def _handle_at_sink(self, adm: Admission, d: Envelope) -> None:
        """At a sink, a frame's fate and the chain move on in one commit, after the stage
        handled it: a sink killed half-way counts the frame as lost, never as delivered."""
        outcome: str | None = None
        if d.kind == MSG:
            self.stats.count_in(d.msg.stream)
            outcome = self._deliver(d)
        elif d.kind == END:
            self.end_stream(d.msg, Accounting(d.acct.source_drops))
        self.accounts.settle(adm, d, outcome)

    def _deliver(self, d: Envelope) -> str:
        """Hand a frame to the sink stage: "" if it took it, else why not (counted)."""
        t0 = time.perf_counter()
        if d.refs and not self._own_arrays(d):
            self.stats.count_drop("overwritten")
            return self.accounts.dropped_here("overwritten")
        try:
            self.stage.process(d.msg)
        except OSError as exc:  # it cannot write (a full disk): counted, the run goes on
            self._say("sink", f"{self.spec.instance}: cannot deliver: {exc}")
            self.stats.count_drop("sink_error")
            return self.accounts.dropped_here("sink_error")
        took = time.perf_counter() - t0
        self.stats.busy_s += took
        self.stats.service.add(took * 1000)
        self.stats.count_out(d.msg.stream, d.msg.seq, d.msg.t_mono_ns)
        return ""

    def _own_arrays(self, d: Envelope) -> bool:
        """Give the sink copies of the message's arrays (the image too, unless the sink never
        reads it) and say whether their shared memory still held them once copied: what the
        sink then writes is intact, so the frame is delivered or counted, never both."""
        arrays = d.msg.arrays
        for key, arr in arrays.items():
            if key != FRAME or self.stage.reads_frame:
                arrays[key] = arr.copy()
        return all(self.reader.is_current(r) for r in d.refs)

    def _timed_process(self, msg: Message) -> tuple[Outputs, float]:
        t0 = time.perf_counter()
        out = self.stage.process(msg)
        return out, time.perf_counter() - t0

    def _finish_item(self, link: Received, acct: Accounting, out: Outputs, took: float) -> None:
        """Account for one processed message and send its results on, in order."""
        d = link.d
        self.stats.busy_s += took
        self.stats.service.add(took * 1000)
        if not all(self.reader.is_current(r) for r in d.refs):
            self.stats.count_drop("overwritten")
            out = None
            acct = acct.skipped(self.accounts.dropped_here("overwritten"))
        if not self.emit(out, d.more, acct) and not d.more:
            self.send_marker(
                SKIP,
                d.msg,
                False,
                acct.skipped(acct.skip or self.accounts.dropped_here("filtered")),
            )

    def collect(self, wait_until: int = 0) -> None:
        """Send on the stage thread's finished results in order, waiting while more than
        ``wait_until`` are still pending (0: wait for all). A stage error is raised here."""
        while self.pending and (len(self.pending) > wait_until or self.pending[0][2].done()):
            link, acct, fut = self.pending.popleft()
            out, took = fut.result()
            self.inputs.credit(link)  # the device is done with it (see work)
            self._finish_item(link, acct, out, took)

    def _wake(self, _fut: Future) -> None:
        os.write(self._wake_w, b"x")

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    # -- sending ---------------------------------------------------------------------------------
    def emit(self, out: Message | Iterable[Message] | None, more: bool, acct: Accounting) -> int:
        """Send the stage's results downstream; returns how many. All but the last carry
        ``more`` so a downstream reorder keeps them together; ``more`` marks the last too
        when the input itself was not the last part of its frame. The accounting rides on
        the first."""
        if out is None or self.sender is None:
            return 0
        msgs = [out] if isinstance(out, Message) else list(out)
        for i, m in enumerate(msgs):
            self.wait_for_room(m.stream)
            last = i == len(msgs) - 1
            self.sender.send(m, more or not last, acct if i == 0 else acct.rest())
            self.stats.count_out(m.stream, m.seq, m.t_mono_ns)
        return len(msgs)

    def send_marker(self, kind: Kind, msg: Message, more: bool, acct: Accounting) -> None:
        if self.sender is not None:
            self.wait_for_room(msg.stream)
            self.sender.marker(kind, msg, more, acct)

    def wait_for_room(self, stream: str | None = None) -> None:
        """Block until every downstream stage can take a message (of ``stream``), receiving
        and reporting meanwhile."""
        assert self.sender is not None

        def meanwhile() -> None:
            for inlet in self.inputs.inlets:
                inlet.on_monitor()
            self.report()
            self.check_gone()

        if not self.sender.wait_for_room(stream, meanwhile, lambda: self.stopping):
            raise _Stopped

    # -- ends ------------------------------------------------------------------------------------
    def end_stream(self, end: Message, acct: Accounting) -> None:
        """A stream ended: the stage flushes it, its results take END's place, END goes on."""
        if end.stream in self._ended:
            return
        flushed = self.stage.end_stream(end.stream)
        flushed = [flushed] if isinstance(flushed, Message) else list(flushed or [])
        for m in flushed:  # results flushed at the end take the END marker's place
            m.seq, m.prev = end.seq, end.prev
        if self.emit(flushed, True, acct):
            acct = acct.rest()
        self.send_marker(END, end, False, acct)
        self._ended.add(end.stream)
        self.notify({"t": "stream_end", "stream": end.stream})
        self.inputs.forget(end.stream)

    def finish(self) -> None:
        """All producers are done: flush held messages and stream state, then say EOS."""
        self.inputs.flush()
        while self.inputs.ready:
            nxt = self.inputs.peek()
            assert nxt is not None
            if self.sender is not None:
                self.wait_for_room(nxt.stream)
            self.work()
        self.collect()
        self.end_lost_streams()
        if self.sender is not None:
            missed = self.sender.broadcast_eos(
                lambda i: i in self.finished_peers or self.is_gone(i), self.report
            )
            if missed:
                log.warning("%s: could not tell %s that it finished", self.spec.instance, missed)
        self.report(force=True)
        self.notify({"t": "done"})

    def end_lost_streams(self) -> None:
        """End the streams whose END marker died with an earlier incarnation of this stage:
        the stage flushes them and END goes on, naming the stream's end, so downstream counts
        any frames that died with it."""
        for stream, (end_seq, source_drops) in self.lost_ends.items():
            if stream in self._ended:
                continue
            log.warning(
                "%s: stream %s ended while this stage was down; ending it now",
                self.spec.instance,
                stream,
            )
            self.stats.count_event("restored_end")
            via = self.accounts.via_of(stream, (p for p, _, _ in self.spec.inputs))
            end = self.accounts.restored_end(stream, end_seq, source_drops)
            self.handle(Received(self.inputs.inlets[0], via, end), restored=True)


class _Services:
    """The runtime services a stage gets through its Context: slots in this process's
    frame pool, this process's counters, and source health to and from the supervisor."""

    def __init__(self, worker: StageWorker) -> None:
        self.alloc = worker.pool.alloc
        self.count_drop = worker.stats.count_drop
        self.count_event = worker.stats.count_event
        self._notify = worker.notify
        self._worker = worker
        self._health = HealthFile(worker.run_dir)
        self._live = LiveFile(worker.run_dir)
        self._last: tuple[str, str] | None = None

    def report_health(self, state: str, detail: str = "") -> None:
        if (state, detail) != self._last:  # only changes travel
            self._last = (state, detail)
            self._notify({"t": "health", "state": state, "detail": detail})

    def source_health(self) -> dict[str, dict[str, Any]]:
        return self._health.read()

    def run_stats(self) -> dict[str, Any]:
        return self._live.read()

    def keep_alive(self) -> bool:
        if threading.current_thread() is threading.main_thread():  # the control socket's
            self._worker.report()
        return not self._worker.stopping


class _Stopped(Exception):
    """Raised inside a blocking wait when the supervisor asked this process to stop."""
