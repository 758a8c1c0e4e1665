"""rkpipe's transport between stage processes against the usual alternatives, in one run.

A 640x640x3 uint8 frame (1.2 MB) per message goes from a producer process to a consumer
process three ways:

* rkpipe: the producer fills a slot of its shared-memory ``FramePool``, ``encode``s a
  ``Message`` (the frame travels as a slot reference) and sends it through an ``Outlet``
  (ROUTER, ipc://) once it holds a credit; the consumer takes it from an ``Inlet`` (DEALER),
  ``decode``s it (a read-only view of the slot), reads a pixel and returns a credit.
* multiprocessing.Queue: the frame is pickled, piped and unpickled.
* ZeroMQ with the bytes: PUSH/PULL over ipc://, a msgpack header and the frame as a second
  part; the consumer rebuilds the array with ``np.frombuffer``.

For each: latency per hop, ping-pong with an idle consumer (window 1: the next message goes
when the previous one was taken), from the producer's ``t_mono_ns`` stamp just before encoding
to the consumer's ``time.monotonic_ns()`` right after decoding (p50/p99 over 2,000 hops after
200 warm-up ones; 500 for multiprocessing.Queue, whose hops take milliseconds), with the rkpipe
hop split into encode / send / recv / decode / the rest. rkpipe's consumer waits as a stage
process does (``SpinThenPark``: polling up to ``spin_us``, 200 µs by default, while that keeps
catching messages, then parking); it is measured once more parked (``spin_us = 0``), as the
baselines' consumers are, and the ratios use that figure; and throughput, streaming as
fast as the window allows (2, rkpipe's default, and 8; the baselines are held to the same
window by an acknowledgement per message). Last, small envelopes (a ``Message`` with a small
meta dict, no arrays) through an rkpipe link with windows 2 and 16. Producer and consumer are
forked processes, each pinned (with its threads: ZeroMQ I/O, queue feeder) to its own CPU
when there are two, unless ``--no-pin``. Frame contents are checked (one pixel carries the
sequence number), so a mixed-up or overwritten slot would be counted. Targets are printed
next to the figures, not asserted; the exit status is 1 only if a check failed.

    python benchmarks/bench_transport.py [--quick] [--rounds N] [--json OUT] [--no-pin]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads its BLAS: no idle threads to fork with

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import multiprocessing.connection  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Protocol  # noqa: E402

import msgpack  # noqa: E402
import numpy as np  # noqa: E402
import zmq  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.graph.schema import PipelineSettings  # noqa: E402
from pipeline.messages import FRAME, Message  # noqa: E402
from pipeline.transport.codec import Envelope, decode, encode  # noqa: E402
from pipeline.transport.framepool import SHM_DIR, FramePool, PoolReader  # noqa: E402
from pipeline.transport.idle import SpinThenPark  # noqa: E402
from pipeline.transport.links import Inlet, Outlet, configure, zmq_context  # noqa: E402

SHAPE = (640, 640, 3)
SLOTS = 16  # pool slots (and baseline frame buffers): more than the largest window in flight
STREAM = "cam0"
TIMEOUT_S = 10.0  # any single wait longer than this is a failure, not a slow run
TARGET_P50_US = 100.0
SPIN_US = PipelineSettings().spin_us  # the runtime's default idle strategy
TARGET_SPEEDUP = 20.0
TARGET_SMALL_RATE = 10_000.0
TRANSPORTS = {
    "rkpipe": "rkpipe (shared memory)",
    "mpqueue": "multiprocessing.Queue",
    "zmq": "ZeroMQ with the bytes",
}


@dataclass(frozen=True)
class Case:
    """One measurement: a transport, latency (ping-pong) or throughput, a window, a count."""

    transport: str
    mode: str  # "latency" or "throughput"
    window: int
    count: int  # messages measured, after ``warmup`` more
    warmup: int
    small: bool = False  # envelopes with a small meta dict instead of a frame
    spin_us: float = SPIN_US  # rkpipe consumer: poll this long before parking (0: park at once)

    @property
    def total(self) -> int:
        return self.count + self.warmup

    @property
    def key(self) -> str:
        payload = "small" if self.small else "frame"
        parked = "/parked" if self.transport == "rkpipe" and not self.spin_us else ""
        return f"{self.transport}/{payload}/{self.mode}/w{self.window}{parked}"


@dataclass
class Links:
    """What a case's two processes share: ipc endpoints, or a queue and a pipe for acks."""

    data: str
    acks: str
    queue: Any = None
    ack_rx: Connection | None = None  # the producer's end
    ack_tx: Connection | None = None  # the consumer's end

    def close(self) -> None:
        for conn in (self.ack_rx, self.ack_tx):
            if conn is not None:
                conn.close()
        if self.queue is not None:
            self.queue.close()
            self.queue.join_thread()


@dataclass
class Figures:
    """A case's results: latency percentiles, rate, median cost of each step, errors."""

    case: Case
    p50_us: float
    p99_us: float
    rate: float  # messages per second at the consumer
    steps_us: dict[str, float] = field(default_factory=dict)
    errors: int = 0


# -- the two ends of each transport ------------------------------------------------------------
class Sender(Protocol):
    def wait_room(self) -> None:
        """Block until the window lets one more message go."""

    def send(self, seq: int) -> tuple[int, int]:
        """Stamp and send message ``seq``; returns (encode ns, send ns)."""

    def close(self) -> None: ...


class Receiver(Protocol):
    def wait(self) -> None:
        """Block until a message is there (TimeoutError after TIMEOUT_S)."""

    def recv(self) -> Any: ...

    def decode(self, raw: Any) -> tuple[int, int, int]:
        """(seq, producer's stamp, mark read from the payload) of a received message."""

    def ack(self) -> None: ...

    def close(self) -> None: ...


def _mark(seq: int) -> int:
    return seq & 0xFF


def _deadline() -> float:
    return time.monotonic() + TIMEOUT_S


def _check_time(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"no {what} within {TIMEOUT_S:.0f} s")


class RkpipeSender:
    """An Outlet and a FramePool: frames go by slot reference, sent on credit."""

    def __init__(self, case: Case, links: Links) -> None:
        self.small = case.small
        self.pool = FramePool(f"rkpipe-{os.getpid()}xbench-producer", SLOTS)
        self.outlet = Outlet(links.data, {"consumer": ["consumer"]})

    def wait_room(self) -> None:
        deadline = _deadline()
        while not self.outlet.ready():
            _check_time(deadline, "credit")
            self.outlet.poll_credits(100)

    def message(self, seq: int) -> Message:
        if self.small:
            meta = {"mark": _mark(seq), "label": "person", "score": 0.87, "box": [10, 20, 64, 96]}
            return Message(STREAM, seq, seq - 1, meta=meta)
        frame = self.pool.alloc(SHAPE, np.uint8)  # "capture" into the slot: write a few bytes
        frame[0, 0] = frame[-1, -1] = _mark(seq)
        return Message(STREAM, seq, seq - 1, arrays={FRAME: frame})

    def send(self, seq: int) -> tuple[int, int]:
        msg = self.message(seq)
        t0 = time.perf_counter_ns()
        msg.t_mono_ns = time.monotonic_ns()
        parts = encode(Envelope.message(msg), pool=self.pool)
        t1 = time.perf_counter_ns()
        if not self.outlet.send(parts, msg.stream):
            raise RuntimeError("sent without credit")
        return t1 - t0, time.perf_counter_ns() - t1

    def close(self) -> None:
        try:
            self.outlet.close()
        finally:
            self.pool.close()  # unlinks the /dev/shm segments


class RkpipeReceiver:
    """An Inlet and a PoolReader: decode maps the slot read-only, a credit per message. It
    waits as a stage process does (``SpinThenPark`` with the case's ``spin_us``)."""

    def __init__(self, case: Case, links: Links) -> None:
        self.reader = PoolReader()
        self.inlet = Inlet(
            links.data,
            producer="producer",
            identity="consumer",
            group="consumer",
            replica=0,
            window=case.window,
        )
        self.idle = SpinThenPark(case.spin_us)
        self.poller = zmq.Poller()
        self.poller.register(self.inlet.sock, zmq.POLLIN)

    def wait(self) -> None:
        if not self.idle.wait(self.poller.poll, int(TIMEOUT_S * 1000)):
            raise TimeoutError("no message")

    def recv(self) -> list:
        return self.inlet.recv()

    def decode(self, raw: list) -> tuple[int, int, int]:
        msg = decode(raw, self.reader).msg
        frame = msg.frame
        mark = msg.meta["mark"] if frame is None else int(frame[0, 0, 0])
        return msg.seq, msg.t_mono_ns, mark

    def ack(self) -> None:
        self.inlet.credit()

    def close(self) -> None:
        try:
            self.inlet.close()
        finally:
            self.reader.close()


class _AckWindow:
    """The producer side of a window kept by one acknowledgement per message taken."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.sent = 0
        self.acked = 0
        self.frames = [np.zeros(SHAPE, np.uint8) for _ in range(SLOTS)]  # like pool slots

    def frame(self, seq: int) -> np.ndarray:
        frame = self.frames[seq % SLOTS]
        frame[0, 0] = frame[-1, -1] = _mark(seq)
        return frame

    def wait_room(self) -> None:
        deadline = _deadline()
        while self.sent - self.acked >= self.window:
            _check_time(deadline, "acknowledgement")
            self.acked += self.take_acks(100)

    def take_acks(self, timeout_ms: int) -> int:
        raise NotImplementedError


class QueueSender(_AckWindow):
    """multiprocessing.Queue: ``put`` hands the frame to a feeder thread that pickles it."""

    def __init__(self, case: Case, links: Links) -> None:
        super().__init__(case.window)
        self.queue, self.acks = links.queue, links.ack_rx

    def take_acks(self, timeout_ms: int) -> int:
        n = 0
        while self.acks.poll(timeout_ms / 1000 if n == 0 else 0):
            self.acks.recv_bytes()
            n += 1
        return n

    def send(self, seq: int) -> tuple[int, int]:
        frame = self.frame(seq)
        stamp = time.monotonic_ns()
        t0 = time.perf_counter_ns()
        self.queue.put((seq, stamp, frame))
        self.sent += 1
        return 0, time.perf_counter_ns() - t0

    def close(self) -> None:
        pass


class QueueReceiver:
    def __init__(self, case: Case, links: Links) -> None:
        self.queue, self.acks = links.queue, links.ack_tx

    def wait(self) -> None:
        pass  # get() blocks

    def recv(self) -> tuple[int, int, np.ndarray]:
        return self.queue.get(timeout=TIMEOUT_S)

    def decode(self, raw: tuple[int, int, np.ndarray]) -> tuple[int, int, int]:
        seq, stamp, frame = raw
        return seq, stamp, int(frame[0, 0, 0])

    def ack(self) -> None:
        self.acks.send_bytes(b"1")

    def close(self) -> None:
        pass


class ZmqSender(_AckWindow):
    """PUSH of [msgpack header, frame bytes] (zero-copy on send), PULL of acks."""

    def __init__(self, case: Case, links: Links) -> None:
        super().__init__(case.window)
        ctx = zmq_context()
        self.push = configure(ctx.socket(zmq.PUSH))
        self.push.bind(links.data)
        self.pull = configure(ctx.socket(zmq.PULL))
        self.pull.bind(links.acks)

    def take_acks(self, timeout_ms: int) -> int:
        n = 0
        while self.pull.poll(timeout_ms if n == 0 else 0, zmq.POLLIN):
            self.pull.recv()
            n += 1
        return n

    def send(self, seq: int) -> tuple[int, int]:
        frame = self.frame(seq)
        t0 = time.perf_counter_ns()
        header = msgpack.packb([seq, time.monotonic_ns(), frame.dtype.str, frame.shape])
        t1 = time.perf_counter_ns()
        self.push.send_multipart([header, frame], copy=False)
        self.sent += 1
        return t1 - t0, time.perf_counter_ns() - t1

    def close(self) -> None:
        self.push.close(0)
        self.pull.close(0)


class ZmqReceiver:
    def __init__(self, case: Case, links: Links) -> None:
        ctx = zmq_context()
        self.pull = configure(ctx.socket(zmq.PULL))
        self.pull.connect(links.data)
        self.push = configure(ctx.socket(zmq.PUSH))
        self.push.connect(links.acks)

    def wait(self) -> None:
        if not self.pull.poll(TIMEOUT_S * 1000, zmq.POLLIN):
            raise TimeoutError("no message")

    def recv(self) -> list[zmq.Frame]:
        return self.pull.recv_multipart(copy=False)

    def decode(self, raw: list[zmq.Frame]) -> tuple[int, int, int]:
        seq, stamp, dtype, shape = msgpack.unpackb(raw[0].bytes)
        frame = np.frombuffer(raw[1].buffer, np.dtype(dtype)).reshape(shape)
        return seq, stamp, int(frame[0, 0, 0])

    def ack(self) -> None:
        self.push.send(b"1")

    def close(self) -> None:
        self.pull.close(0)
        self.push.close(0)


SENDERS: dict[str, Callable[[Case, Links], Sender]] = {
    "rkpipe": RkpipeSender,
    "mpqueue": QueueSender,
    "zmq": ZmqSender,
}
RECEIVERS: dict[str, Callable[[Case, Links], Receiver]] = {
    "rkpipe": RkpipeReceiver,
    "mpqueue": QueueReceiver,
    "zmq": ZmqReceiver,
}


# -- the two processes -------------------------------------------------------------------------
def produce(case: Case, links: Links, ready: Any, done: Any) -> dict[str, np.ndarray]:
    """Send ``case.total`` messages as the window allows; stay up until the consumer is done."""
    tx = SENDERS[case.transport](case, links)
    try:
        ready.set()  # bound: the consumer may connect
        encode_ns = np.zeros(case.total, np.int64)
        send_ns = np.zeros(case.total, np.int64)
        for seq in range(case.total):
            tx.wait_room()
            encode_ns[seq], send_ns[seq] = tx.send(seq)
        if not done.wait(TIMEOUT_S):
            raise TimeoutError("the consumer did not finish")
        return {"encode": encode_ns[case.warmup :], "send": send_ns[case.warmup :]}
    finally:
        tx.close()


def consume(case: Case, links: Links, ready: Any, done: Any) -> dict[str, Any]:
    """Take ``case.total`` messages: stamp each right after decoding, check it, acknowledge."""
    rx = RECEIVERS[case.transport](case, links)
    try:
        latency, arrival, recv_ns, decode_ns = (np.zeros(case.total, np.int64) for _ in range(4))
        errors = 0
        for i in range(case.total):
            rx.wait()
            t0 = time.perf_counter_ns()
            raw = rx.recv()
            t1 = time.perf_counter_ns()
            seq, stamp, mark = rx.decode(raw)
            now = time.monotonic_ns()
            latency[i], arrival[i] = now - stamp, now
            recv_ns[i], decode_ns[i] = t1 - t0, time.perf_counter_ns() - t1
            errors += seq != i or mark != _mark(i)
            del raw
            rx.ack()
        w = case.warmup
        return {
            "latency": latency[w:],
            "arrival": arrival[w:],
            "recv": recv_ns[w:],
            "decode": decode_ns[w:],
            "errors": errors,
        }
    finally:
        done.set()
        rx.close()


Role = Callable[[Case, Links, Any, Any], dict]


def _child(
    role: Role, case: Case, links: Links, cpu: int | None, ready: Any, done: Any, conn: Connection
) -> None:
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})  # before any thread (ZeroMQ I/O, feeder) starts
        conn.send({"ok": role(case, links, ready, done)})
    except BaseException:
        conn.send({"error": traceback.format_exc()})
    finally:
        conn.close()


# -- running a case ----------------------------------------------------------------------------
def pair_cpus(pin: bool) -> tuple[tuple[int | None, int | None], str]:
    """Different CPUs for producer and consumer, or (None, None); and how that reads."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin:
        return (None, None), f"not pinned (--no-pin; {len(cpus)} CPUs)"
    if len(cpus) < 2:
        return (None, None), "not pinned: fewer than 2 CPUs available"
    return (cpus[0], cpus[1]), f"producer pinned to CPU {cpus[0]}, consumer to CPU {cpus[1]}"


def make_links(case: Case, ctx: Any, tmp: Path) -> Links:
    name = case.key.replace("/", "-")
    links = Links(data=f"ipc://{tmp}/{name}-data", acks=f"ipc://{tmp}/{name}-acks")
    if case.transport == "mpqueue":
        links.queue = ctx.Queue()
        links.ack_rx, links.ack_tx = ctx.Pipe(duplex=False)
    return links


class _Process:
    """A child running one role, with a pipe that brings back its result or traceback."""

    def __init__(
        self, ctx: Any, role: Role, case: Case, links: Links, cpu: int | None, ready: Any, done: Any
    ) -> None:
        self.name = role.__name__
        self.conn, child_end = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(
            target=_child, args=(role, case, links, cpu, ready, done, child_end), daemon=True
        )
        self.proc.start()
        child_end.close()  # so a child that dies without answering reads as EOF here

    def answer(self) -> dict:
        """The child's result (once ``conn`` is readable); raises its error if it failed."""
        try:
            answer = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"{self.name} died (exit code {self.proc.exitcode})") from None
        if "error" in answer:
            raise RuntimeError(f"{self.name} failed:\n{answer['error']}")
        return answer["ok"]

    def stop(self) -> None:
        """Join; a child still running (its peer failed) gets SIGINT, so its ``finally``
        blocks close sockets and unlink segments, then SIGTERM, then SIGKILL."""
        self.proc.join(0.5)
        for sig in (signal.SIGINT, signal.SIGTERM):
            if self.proc.is_alive():
                os.kill(self.proc.pid, sig)
                self.proc.join(2.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def remove_segments(pid: int) -> list[str]:
    """Unlink what a (dead) producer left in /dev/shm; normally nothing."""
    left = sorted(SHM_DIR.glob(f"rkpipe-{pid}xbench-*"))
    for path in left:
        path.unlink(missing_ok=True)
    return [p.name for p in left]


def gather(procs: list[_Process], timeout_s: float) -> list[dict]:
    """Every child's result, in order; the first failure is raised as soon as it arrives."""
    results: dict[_Process, dict] = {}
    deadline = time.monotonic() + timeout_s
    while len(results) < len(procs):
        pending = {p.conn: p for p in procs if p not in results}
        readable = mp.connection.wait(list(pending), max(0.0, deadline - time.monotonic()))
        if not readable:
            names = ", ".join(p.name for p in pending.values())
            raise TimeoutError(f"{names}: no result within {timeout_s:.0f} s")
        for conn in readable:
            results[pending[conn]] = pending[conn].answer()
    return [results[p] for p in procs]


def wait_ready(producer: _Process, ready: Any) -> None:
    """Until the producer has bound its endpoint (or failed trying)."""
    deadline = _deadline()
    while not ready.wait(0.05):
        if producer.conn.poll(0):
            producer.answer()  # raises its error
        _check_time(deadline, "producer start")


def run_case(case: Case, ctx: Any, tmp: Path, cpus: tuple[int | None, int | None]) -> Figures:
    """Fork producer then consumer, gather both results, and clean up whatever happens."""
    links = make_links(case, ctx, tmp)
    ready, done = ctx.Event(), ctx.Event()
    started: list[_Process] = []
    try:
        started.append(_Process(ctx, produce, case, links, cpus[0], ready, done))
        wait_ready(started[0], ready)
        started.append(_Process(ctx, consume, case, links, cpus[1], ready, done))
        sent, taken = gather(started, TIMEOUT_S + case.total * 0.01)
        return summarize(case, sent, taken)
    finally:
        for proc in reversed(started):
            proc.stop()
        if started and (leaked := remove_segments(started[0].proc.pid)):
            print(f"  warning: removed leaked segments {leaked}", file=sys.stderr)
        links.close()


def summarize(case: Case, sent: dict, taken: dict) -> Figures:
    """Percentiles, rate, and the median of each step of a hop. What is left of a message's
    latency after its own steps is the wire and the wake-ups; steps can overlap (``send`` may
    return after the consumer already has the message), so that rest is approximate."""
    latency_us = taken["latency"] / 1000
    arrival = taken["arrival"]
    span_s = (arrival[-1] - arrival[0]) / 1e9
    steps = {
        "encode": sent["encode"] / 1000,
        "send": sent["send"] / 1000,
        "recv": taken["recv"] / 1000,
        "decode": taken["decode"] / 1000,
    }
    steps["rest (wire, wake-ups)"] = latency_us - sum(steps.values())
    return Figures(
        case=case,
        p50_us=float(np.percentile(latency_us, 50)),
        p99_us=float(np.percentile(latency_us, 99)),
        rate=float((len(arrival) - 1) / span_s) if span_s > 0 else float("nan"),
        steps_us={k: float(np.median(v)) for k, v in steps.items()},
        errors=int(taken["errors"]),
    )


def median_figures(figs: list[Figures]) -> Figures:
    """One case's rounds as one: the median of each figure, errors summed."""
    steps = {k: float(np.median([f.steps_us[k] for f in figs])) for k in figs[0].steps_us}
    return Figures(
        case=figs[0].case,
        p50_us=float(np.median([f.p50_us for f in figs])),
        p99_us=float(np.median([f.p99_us for f in figs])),
        rate=float(np.median([f.rate for f in figs])),
        steps_us=steps,
        errors=sum(f.errors for f in figs),
    )


def plan(quick: bool) -> list[Case]:
    """Latency (window 1) and throughput (windows 2 and 8) per transport, then small envelopes.
    multiprocessing.Queue gets fewer messages: at a few ms each it would dominate the run."""
    scale = 0.15 if quick else 1.0

    def n(count: int) -> int:
        return max(100, int(count * scale))

    counts = {"rkpipe": (2000, 4000), "mpqueue": (500, 600), "zmq": (2000, 2000)}
    cases = []
    for transport, (pings, frames) in counts.items():
        cases.append(Case(transport, "latency", 1, n(pings), n(200)))
        if transport == "rkpipe":  # and with a consumer that always parks (as the baselines)
            cases.append(Case(transport, "latency", 1, n(pings), n(200), spin_us=0))
        cases += [Case(transport, "throughput", w, n(frames), n(200)) for w in (2, 8)]
    cases += [Case("rkpipe", "throughput", w, n(20_000), n(1000), small=True) for w in (2, 16)]
    return cases


# -- report ------------------------------------------------------------------------------------
def _find(
    figs: list[Figures],
    transport: str,
    mode: str,
    window: int,
    small: bool = False,
    parked: bool = False,
) -> Figures:
    for f in figs:
        c = f.case
        if (c.transport, c.mode, c.window, c.small) == (transport, mode, window, small) and (
            transport != "rkpipe" or (c.spin_us == 0) == parked
        ):
            return f
    raise KeyError((transport, mode, window, small))


def ratios(figs: list[Figures]) -> dict[str, float]:
    """How many times rkpipe beats each baseline: latency (p50, rkpipe's consumer parked as the
    baselines' consumers are) and throughput per window."""
    out = {}
    rk_lat = _find(figs, "rkpipe", "latency", 1, parked=True)
    for base in ("mpqueue", "zmq"):
        out[f"{base}/latency_p50"] = _find(figs, base, "latency", 1).p50_us / rk_lat.p50_us
        for w in (2, 8):
            rk = _find(figs, "rkpipe", "throughput", w).rate
            out[f"{base}/throughput_w{w}"] = rk / _find(figs, base, "throughput", w).rate
    return out


def targets(figs: list[Figures]) -> list[dict[str, Any]]:
    """The three targets with the figures they are judged on (printed, never asserted)."""
    rk = _find(figs, "rkpipe", "latency", 1)
    worst = min(v for k, v in ratios(figs).items() if k.startswith("mpqueue/"))
    small = _find(figs, "rkpipe", "throughput", 2, small=True).rate
    return [
        {
            "target": f"p50 per hop <= {TARGET_P50_US:.0f} µs",
            "figure": f"{rk.p50_us:.0f} µs",
            "met": bool(rk.p50_us <= TARGET_P50_US),
        },
        {
            "target": f">= {TARGET_SPEEDUP:.0f}x multiprocessing.Queue",
            "figure": f"{worst:.1f}x (worst of the ratios)",
            "met": bool(worst >= TARGET_SPEEDUP),
        },
        {
            "target": f">= {TARGET_SMALL_RATE:,.0f} small envelopes/s per link",
            "figure": f"{small:,.0f} msg/s (window 2)",
            "met": bool(small >= TARGET_SMALL_RATE),
        },
    ]


def report(figs: list[Figures], placement: str, elapsed_s: float) -> None:
    mb = np.prod(SHAPE) / 1e6
    print(f"\n{SHAPE[1]}x{SHAPE[0]}x{SHAPE[2]} uint8 frames ({mb:.1f} MB); {placement}")
    print("latency: ping-pong, idle consumer, window 1; throughput: streaming at window 2 / 8")
    print(
        f"rkpipe's consumer waits as a stage does: polls up to {SPIN_US:.0f} µs (spin_us) while "
        "that catches messages, else parks;\n'consumer parked' sets spin_us = 0, as the "
        "baselines' consumers always park; ratios use it\n"
    )
    print(f"{'transport':<26}{'p50 µs':>10}{'p99 µs':>10}{'frames/s w2':>14}{'frames/s w8':>14}")
    for transport, label in TRANSPORTS.items():
        lat = _find(figs, transport, "latency", 1)
        w2 = _find(figs, transport, "throughput", 2).rate
        w8 = _find(figs, transport, "throughput", 8).rate
        print(f"{label:<26}{lat.p50_us:>10,.0f}{lat.p99_us:>10,.0f}{w2:>14,.0f}{w8:>14,.0f}")
        if transport == "rkpipe":
            lat = _find(figs, transport, "latency", 1, parked=True)
            print(f"{'  consumer parked':<26}{lat.p50_us:>10,.0f}{lat.p99_us:>10,.0f}")
    small = {w: _find(figs, "rkpipe", "throughput", w, small=True).rate for w in (2, 16)}
    print(
        f"\nsmall envelopes, one rkpipe link: {small[2]:,.0f} msg/s (window 2), "
        f"{small[16]:,.0f} msg/s (window 16)\n"
    )

    r = ratios(figs)
    for base in ("mpqueue", "zmq"):
        print(
            f"rkpipe vs {TRANSPORTS[base]:<22} latency {r[f'{base}/latency_p50']:5.1f}x, "
            f"throughput {r[f'{base}/throughput_w2']:5.1f}x (w2) "
            f"{r[f'{base}/throughput_w8']:5.1f}x (w8)"
        )

    print("\ntargets (not asserted)")
    for t in targets(figs):
        print(f"  {t['target']:<40}{t['figure']:<32}{'ok' if t['met'] else 'MISSED'}")

    rk = _find(figs, "rkpipe", "latency", 1)
    steps = "  ".join(f"{k} {v:.1f}" for k, v in rk.steps_us.items())
    print(f"\nrkpipe hop, median µs per step: {steps}")
    errors = {f.case.key: f.errors for f in figs if f.errors}
    print(f"frame checks: {errors or 'all messages arrived in order with the right contents'}")
    print(f"total {elapsed_s:.1f} s")


def to_json(
    figs: list[Figures], cpus: tuple[int | None, int | None], placement: str, quick: bool
) -> dict:
    cases = []
    for f in figs:
        row = asdict(f)
        row["case"] = {**asdict(f.case), "key": f.case.key}
        cases.append(row)
    return {
        "frame_shape": list(SHAPE),
        "cpus": {"producer": cpus[0], "consumer": cpus[1], "placement": placement},
        "quick": quick,
        "cases": cases,
        "ratios": ratios(figs),
        "targets": targets(figs),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer messages (a few seconds)")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON")
    ap.add_argument("--no-pin", action="store_true", help="let the scheduler place processes")
    ap.add_argument(
        "--rounds",
        type=int,
        help="run every case this many times, interleaved, and report the median of each "
        "figure (default 3, --quick 1): a shared machine's noise then hits all alike",
    )
    args = ap.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)

    ctx = mp.get_context("fork")  # this process holds no ZeroMQ context or threads to fork
    cpus, placement = pair_cpus(not args.no_pin)
    runs: dict[Case, list[Figures]] = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rkpipe-bench-") as tmp:
        for r in range(rounds):
            for case in plan(args.quick):
                print(f"  round {r + 1}/{rounds} {case.key} ({case.count} messages)",
                      file=sys.stderr, flush=True)  # fmt: skip
                runs.setdefault(case, []).append(run_case(case, ctx, Path(tmp), cpus))
    figs = [median_figures(fs) for fs in runs.values()]
    report(figs, placement, time.monotonic() - t0)
    if args.json:
        args.json.write_text(json.dumps(to_json(figs, cpus, placement, args.quick), indent=2))
    return 1 if any(f.errors for f in figs) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # children were stopped and cleaned up on the way out
        sys.exit(130)
