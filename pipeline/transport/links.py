"""Credit-based links between stage processes over ZeroMQ.

Every producer instance binds one ROUTER (its outlet). Every consumer instance connects one
DEALER per producer instance (its inlets) and grants credits: HELLO sets how many messages
it will take at once, CREDIT returns one as it takes a message for processing. A producer
sends each message to every downstream stage (fan-out) and, within a stage, to the replica
with the most credit, i.e. to whichever worker is free (not blind round-robin). Because
every link is bounded by its credits, the number of frames in flight is known, which sizes
the shared-memory pools and makes "wait" (files) and "drop oldest" (cameras) exact.

Only the run's own processes may join a link: a HELLO must carry the run's token, each
consumer process connects under an identity of its own (instance, pid and a random part), and
frames go only to identities that said a valid HELLO. A best-effort stage (the preview) never
holds its producer back: a frame it has no credit for goes to it as a SKIP marker instead
(counted ``behind`` at that sink), so the other sinks keep every frame while it lags.

A HELLO never evicts a live consumer:
one that names another pid for a known identity is refused, and one for an instance whose
process still runs (on this host) is refused too; only a dead incarnation's place is taken.
Anything else a peer sends is refused and reported through ``on_reject``, never raised.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from ..errors import TransportError
from .codec import Envelope, encode, packb, unpackb

__all__ = [
    "CREDIT",
    "HELLO",
    "Inlet",
    "Outlet",
    "configure",
    "gone_dir",
    "stream_owner",
    "zmq_context",
]

HELLO, CREDIT = b"H", b"C"
_ZERO_COPY_MIN = 64 * 1024  # parts smaller than this are copied into ZeroMQ, not tracked
_MAX_CREDIT = 1024
Reject = Callable[[str, str], None]  # (peer, what was wrong)


def configure(sock: zmq.Socket) -> zmq.Socket:
    """Socket defaults in one place: no linger at close, deep queues (credits bound them)."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 10_000)
    sock.setsockopt(zmq.RCVHWM, 10_000)
    return sock


def zmq_context() -> zmq.Context:
    return zmq.Context.instance()


def stream_owner(stream: str, replicas: int) -> int:
    """The replica a stream is pinned to where a stage partitions by stream: the same in every
    process (unlike ``hash``), and well mixed (crc32's low bits put cam0..cam3 all on one)."""
    digest = hashlib.blake2s(stream.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % replicas


def gone_dir(run_dir: str) -> Path:
    """Where the supervisor marks stage instances that ended for good without finishing (one
    empty file each), so their peers stop waiting for their credits or their EOS."""
    return Path(run_dir) / "gone"


def secure_endpoint(sock: zmq.Socket, endpoint: str) -> None:
    """Bind ``endpoint``; an ipc socket file is made owner-only whatever the umask."""
    sock.bind(endpoint)
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://") :]
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.chmod(path, 0o600)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running (a consumer's HELLO names its pid)."""
    if pid <= 0:  # 0 and below name process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class _Peer:
    identity: bytes
    instance: str
    group: str
    replica: int
    credits: int = 0
    incarnation: int = 0
    window: int = 0  # what its HELLO granted: the most it holds


@dataclass
class _Group:
    name: str
    expected: list[str]  # instance ids
    partition: bool = False
    peers: dict[bytes, _Peer] = field(default_factory=dict)
    best_effort: bool = False
    links: dict[str, tuple[int, bool]] = field(default_factory=dict)  # stream -> (seq, skipped)
    joined: bool = False  # a replica has said HELLO (a best-effort one is waited for till then)


class Outlet:
    """The producer end: one bound ROUTER serving every downstream stage's replicas."""

    def __init__(
        self,
        endpoint: str,
        groups: dict[str, list[str]],
        partition: Iterable[str] = (),
        token: str = "",
        on_reject: Reject | None = None,
        curve_secret: bytes | None = None,
        best_effort: Iterable[str] = (),
        released: Iterable[str] = (),
    ) -> None:
        self.endpoint = endpoint
        self.released = set(released)  # consumers let go by a reload: a HELLO gets EOS
        self.token = token
        self.on_reject = on_reject or (lambda _peer, _what: None)
        self.sock = configure(zmq_context().socket(zmq.ROUTER))
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        if curve_secret is not None:  # encrypted, and only clients that know our key
            self.sock.curve_secretkey = curve_secret
            self.sock.curve_publickey = zmq.curve_public(curve_secret)
            self.sock.curve_server = True
        secure_endpoint(self.sock, endpoint)
        parts, lagging = set(partition), set(best_effort)
        self.groups = {
            g: _Group(g, list(ids), g in parts, best_effort=g in lagging)
            for g, ids in groups.items()
        }
        self.behind = 0  # frames a best-effort stage got as a SKIP for want of room
        self._peers: dict[bytes, _Peer] = {}
        self._retired: set[bytes] = set()  # consumers let go by ``regroup``: their late credits

    def regroup(self, groups: dict[str, list[str]]) -> list[str]:
        """A reload changed a downstream stage's replicas: serve the instances it adds from
        their HELLO on, and tell the ones it removes this producer is done with them (EOS,
        after everything already sent them), so they finish what they hold and end. Returns
        the instances let go."""
        frame = encode(Envelope.eos())
        gone = []
        for name, ids in groups.items():
            group = self.groups.get(name)
            if group is None:
                continue
            for instance in [i for i in group.expected if i not in ids]:
                group.expected.remove(instance)
                self.released.add(instance)
                gone.append(instance)
                for peer in [p for p in group.peers.values() if p.instance == instance]:
                    with contextlib.suppress(zmq.ZMQError):  # gone already: nothing to end
                        self.sock.send_multipart([peer.identity, *frame])
                    group.peers.pop(peer.identity, None)
                    self._peers.pop(peer.identity, None)
                    self._retired.add(peer.identity)
            back = [i for i in ids if i not in group.expected]
            group.expected += back
            self.released -= set(back)  # let go earlier, served again from its next HELLO
        return gone

    def poll_credits(self, timeout_ms: int = 0) -> bool:
        """Take in HELLO/CREDIT messages; True if any arrived."""
        got = False
        while self.sock.poll(timeout_ms if not got else 0, zmq.POLLIN):
            frames = self.sock.recv_multipart()
            got = True
            if len(frames) < 2:
                continue
            identity, kind, rest = frames[0], frames[1], frames[2:]
            if kind[:1] == CREDIT:
                self._credit(identity, kind)
            elif kind == HELLO and len(rest) == 1:
                self._hello(identity, rest[0])
            else:
                self._reject(identity, "an unknown message")
        return got

    def _reject(self, identity: bytes, what: str) -> None:
        self.on_reject(identity.decode(errors="replace")[:80], what)

    def _credit(self, identity: bytes, kind: bytes) -> None:
        """b"C" is one credit, b"C<n>" n of them: one frame, cheap."""
        peer = self._peers.get(identity)
        digits = kind[1:]
        if peer is None and identity in self._retired:
            return  # a credit from a consumer let go, still on its way
        if peer is None:
            self._reject(identity, "a credit before a valid hello")
        elif digits and not (digits.isdigit() and 0 < int(digits) <= _MAX_CREDIT):
            self._reject(identity, "a malformed credit")
        else:
            peer.credits += int(digits or b"1")

    def _hello(self, identity: bytes, payload: bytes) -> None:
        try:
            info = unpackb(payload)
            ok = isinstance(info, dict) and all(
                type(info.get(k)) is t
                for k, t in (("group", str), ("replica", int), ("window", int), ("pid", int))
            )
        except TransportError:
            ok = False
        if not ok:
            self._reject(identity, "a malformed hello")
            return
        token = info.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(token, self.token):
            self._reject(identity, "a hello without this run's token")
            return
        group = self.groups.get(info["group"])
        instance = identity.decode(errors="replace").split("#", 1)[0]
        if instance in self.released:  # let go by a reload (before this process began)
            with contextlib.suppress(zmq.ZMQError):
                self.sock.send_multipart([identity, *encode(Envelope.eos())])
            self._retired.add(identity)
            return
        if group is None or instance not in group.expected or not 1 <= info["window"] <= 64:
            self._reject(identity, "a hello for a stage this one does not feed")
            return
        known = self._peers.get(identity)
        if known and known.incarnation == info["pid"]:
            return  # a repeated HELLO from the same process grants nothing new
        if known:  # an identity carries its process's pid: a second pid is not that process
            self._reject(identity, "a hello naming another process for a known identity")
            return
        local = not self.endpoint.startswith("tcp://")  # a pid we can look at
        for old in [p for p in group.peers.values() if p.instance == instance]:
            if local and _alive(old.incarnation):
                self._reject(identity, "a hello for an instance whose process is running")
                return
            if local:  # an earlier incarnation of the same instance, dead: forget it
                group.peers.pop(old.identity, None)
                self._peers.pop(old.identity, None)
            # across hosts both stay: a dead peer is forgotten at the first send to it
        peer = _Peer(
            identity,
            instance,
            info["group"],
            info["replica"],
            info["window"],
            info["pid"],
            info["window"],
        )
        self._peers[identity] = peer
        group.peers[identity] = peer
        group.joined = True

    def ready(self, stream: str | None = None) -> bool:
        """True when every downstream stage can take a message (of ``stream``) now: one of
        its replicas has credit, or, where streams are pinned to replicas, the stream's own."""
        return all(self._has_room(g, stream) for g in self.groups.values() if g.expected)

    def room(self, window: int) -> int | None:
        """How many more messages the downstream stages can take now without one waiting in
        front of their work: the least over the stages that wait for them (None: there is
        none, nothing holds back). A consumer whose HELLO granted more than the pipeline's
        ``window`` (a device stage: its overlap) has room while it holds fewer than that
        overlap (the frame at work and the one queued at the device); any other, while it
        holds fewer than 2 (the one at work and the next)."""
        waited = [g for g in self.groups.values() if g.expected and not g.best_effort]
        if not waited:
            return None

        def free(p: _Peer) -> int:
            depth = max(2, p.window - window)
            return max(0, depth - (p.window - p.credits))

        return min(sum(free(p) for p in g.peers.values()) for g in waited)

    def _has_room(self, group: _Group, stream: str | None) -> bool:
        if group.best_effort:  # waited for until it first joins, never after (see send)
            return group.joined or self._target(group, stream or "") is not None
        if group.partition and stream is not None:
            peer = self._owner(group, stream)
            return peer is not None and peer.credits > 0
        return any(p.credits > 0 for p in group.peers.values())

    def _owner(self, group: _Group, stream: str) -> _Peer | None:
        """The replica a stream is pinned to (by its name's hash over the replicas expected,
        connected or not yet), or None while it is not connected."""
        instance = group.expected[stream_owner(stream, len(group.expected))]
        return next((p for p in group.peers.values() if p.instance == instance), None)

    def forget_gone(self, is_gone: Callable[[str], bool]) -> None:
        """Stop serving downstream instances that ended for good: a stage whose every
        instance is gone no longer holds this producer back."""
        for group in self.groups.values():
            for instance in [i for i in group.expected if is_gone(i)]:
                group.expected.remove(instance)
                for peer in [p for p in group.peers.values() if p.instance == instance]:
                    group.peers.pop(peer.identity, None)
                    self._peers.pop(peer.identity, None)

    def send(
        self,
        parts: list,
        stream: str = "",
        behind: Callable[[], list] | None = None,
        seq: int = -1,
    ) -> bool:
        """Send to one replica of every downstream stage; False (nothing sent to the
        stages lacking credit) if ``ready()`` was not checked first. A best-effort stage
        without room gets ``behind()`` (a SKIP in this frame's place) instead, or, for a
        marker (``behind`` None), the marker itself; every part of link ``seq`` the same."""
        ok = True
        copy = all(memoryview(p).nbytes <= _ZERO_COPY_MIN for p in parts)  # small: just copy
        for group in self.groups.values():
            if group.expected and group.best_effort:
                self._send_lagging(group, parts, stream, behind, seq, copy)
            elif group.expected:
                ok &= self._send_group(group, parts, stream, copy)
        return ok

    def _send_lagging(
        self,
        group: _Group,
        parts: list,
        stream: str,
        behind: Callable[[], list] | None,
        seq: int,
        copy: bool,
    ) -> None:
        """To a best-effort stage: the message if it has room (or the link's first part
        went), else a SKIP, sent past its credit; never waited for. A peer whose queue is
        full (hung) is forgotten until it says HELLO again: its restart counts the hole."""
        link = group.links.get(stream)
        first = link is None or link[0] != seq  # the first part of its link
        if link is None or first:
            skipped = behind is not None and self._pick(group, stream) is None
        else:
            skipped = link[1]  # every part of a link alike
        group.links[stream] = (seq, skipped)
        if skipped and behind is not None:
            self.behind += first
            parts, copy = behind(), True
        peer = self._pick(group, stream) or self._target(group, stream)
        if peer is None:
            return
        try:
            self.sock.send_multipart([peer.identity, *parts], copy=copy, flags=zmq.NOBLOCK)
        except zmq.ZMQError:  # gone (EHOSTUNREACH) or its queue is full (EAGAIN)
            group.peers.pop(peer.identity, None)
            self._peers.pop(peer.identity, None)
            return
        peer.credits -= 1

    def _target(self, group: _Group, stream: str) -> _Peer | None:
        """A connected replica of ``group`` for ``stream``, with credit or not."""
        if group.partition and stream:
            return self._owner(group, stream)
        return max(group.peers.values(), key=lambda p: p.credits, default=None)

    def _send_group(self, group: _Group, parts: list, stream: str, copy: bool) -> bool:
        while True:
            peer = self._pick(group, stream)
            if peer is None:
                return False
            try:
                self.sock.send_multipart([peer.identity, *parts], copy=copy)
            except zmq.ZMQError as exc:  # peer gone (crashed); forget it until it says HELLO
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                group.peers.pop(peer.identity, None)
                self._peers.pop(peer.identity, None)
                continue
            peer.credits -= 1
            return True

    def _pick(self, group: _Group, stream: str) -> _Peer | None:
        if group.partition:
            peer = self._owner(group, stream)
            return peer if peer is not None and peer.credits > 0 else None
        best = None
        for peer in group.peers.values():
            if peer.credits > 0 and (best is None or peer.credits > best.credits):
                best = peer
        return best

    def broadcast_eos(
        self,
        timeout_s: float = 5.0,
        is_gone: Callable[[str], bool] | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> list[str]:
        """Tell every expected downstream instance this producer is done; returns the ones
        that could not be reached before the timeout (instances gone for good are skipped).
        ``meanwhile`` runs while it waits (the caller's heartbeat: a consumer that is hung or
        still starting must not make this producer look silent and be killed for it)."""
        frame = encode(Envelope.eos())
        pending = {i for g in self.groups.values() for i in g.expected}
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            if is_gone is not None:
                pending = {i for i in pending if not is_gone(i)}
            for peer in list(self._peers.values()):
                if peer.instance not in pending:
                    continue
                try:
                    self.sock.send_multipart([peer.identity, *frame])
                except zmq.ZMQError:
                    continue
                pending.discard(peer.instance)
            if pending:
                self.poll_credits(50)
                if meanwhile is not None:
                    meanwhile()
        return sorted(pending)

    def close(self, linger_ms: int = 0) -> None:
        self.sock.close(linger_ms)


class Inlet:
    """The consumer end of one link: a DEALER connected to one producer instance."""

    def __init__(
        self,
        endpoint: str,
        producer: str,
        identity: str,
        group: str,
        replica: int,
        window: int,
        token: str = "",
        curve_server_key: bytes | None = None,
    ) -> None:
        self.producer = producer
        self.endpoint = endpoint
        self.sock = configure(zmq_context().socket(zmq.DEALER))
        # one identity per process: a later incarnation, or an intruder using the stage's
        # name, can never take over this connection's place at the producer
        self.identity = f"{identity}#{os.getpid()}#{secrets.token_hex(4)}"
        self.sock.setsockopt(zmq.IDENTITY, self.identity.encode())
        if curve_server_key is not None:
            public, secret = zmq.curve_keypair()
            self.sock.curve_serverkey = curve_server_key
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
        self._hello = packb(
            {
                "group": group,
                "replica": replica,
                "window": window,
                "pid": os.getpid(),
                "token": token,
            }
        )
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_CONNECTED)
        self.sock.connect(endpoint)
        self.eos = False
        self.say_hello()

    def say_hello(self) -> None:
        """(Re)grant the full window; sent at start and whenever the producer (re)connects."""
        self.sock.send_multipart([HELLO, self._hello])

    def on_monitor(self) -> None:
        while self.monitor.poll(0):
            self.monitor.recv_multipart()
            self.say_hello()

    def credit(self, n: int = 1) -> None:
        self.sock.send(CREDIT if n == 1 else CREDIT + b"%d" % n)

    def recv(self) -> list | None:
        try:
            return self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(0)
        self.sock.close(0)
