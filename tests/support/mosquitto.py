"""A real mosquitto broker for tests: a free loopback port, a generated config in a temporary
folder, optional password file, persistence, and stop/start on the same port (an outage); and
a subscriber that records what the broker delivers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

__all__ = ["MOSQUITTO", "Broker", "Subscriber", "broker_fixture", "free_port"]

MOSQUITTO = os.environ.get("RKPIPE_MOSQUITTO", "/usr/sbin/mosquitto")
INSTALL = "apt-get install -y --no-install-recommends mosquitto"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One mosquitto process on 127.0.0.1:``port``; ``users`` turns on password checks,
    ``extra`` adds configuration (e.g. a bridge to another broker).

    Persistence is on, so a stop (SIGTERM) and start keeps retained messages and the queues
    of persistent subscribers, like a broker restart in the field.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        folder: Path,
        users: dict[str, str] | None = None,
        tls: bool = False,
        extra: str = "",
    ) -> None:
        if not Path(MOSQUITTO).exists():
            pytest.fail(f"{MOSQUITTO} not found; the MQTT tests need a real broker: {INSTALL}")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.users = users or {}
        self.extra = extra  # more configuration (a bridge), at the end of the file
        self.ca: Path | None = make_certs(folder) if tls else None
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        self.config = self._write_config()

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} {self.host}",
            f"persistence true\npersistence_location {self.folder}/",
            f"log_dest file {self.log}\nlog_type all",
        ]
        if self.ca is not None:
            d = self.folder
            lines.append(f"cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key")
        if os.geteuid() == 0:
            lines.append("user root")  # keep access to the temporary folder
        if self.users:
            pwfile = self.folder / "passwd"
            for i, (user, password) in enumerate(self.users.items()):
                flags = ["-b", "-c"] if i == 0 else ["-b"]
                subprocess.run(
                    [_passwd_tool(), *flags, str(pwfile), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        path = self.folder / "mosquitto.conf"
        path.write_text("\n".join([*lines, self.extra]) + "\n")
        return path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        assert self.proc is None, "broker already running"
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                log = self.log.read_text() if self.log.exists() else ""
                self.proc = None
                pytest.fail(f"mosquitto exited at start: {err}\n{log[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"mosquitto did not listen on {self.address} within {timeout}s")

    def stop(self) -> None:
        """Stop cleanly (SIGTERM: persistence is written), freeing the port."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def make_certs(folder: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it; returns the CA."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for cmd in (
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test CA"],
        ["req", *ec[:-2], "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=broker"],
        [
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    ):
        subprocess.run(["openssl", *cmd], cwd=folder, check=True, capture_output=True)
    return folder / "ca.pem"


def _passwd_tool() -> str:
    return shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


@pytest.fixture(name="broker")
def broker_fixture(tmp_path: Path) -> Iterator[Broker]:
    """A running anonymous broker, stopped at the end of the test."""
    b = Broker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Subscriber:
    """A paho client in the test process that records every message it gets (topic, payload,
    retain flag), in order; ``persistent`` keeps its session (and queue) across outages."""

    def __init__(
        self, b: Broker, topics: list[str], client_id: str = "", persistent: bool = False
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        kw = {"client_id": client_id, "clean_session": not persistent}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kw)
        if b.users:
            self.client.username_pw_set("test", "test-pw")
        if b.ca is not None:
            self.client.tls_set(ca_certs=str(b.ca))
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(b.host, b.port)
        self.client.loop_start()
        assert self.subscribed.wait(5), "test subscriber could not subscribe"

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def on(self, topic: str) -> list[bytes]:
        """Every payload received on ``topic``, in order."""
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def latest(self) -> dict[str, bytes]:
        """The last payload of each topic (an empty one removed the topic)."""
        with self.lock:
            out = {t: p for t, p, _ in self.messages}
        return {t: p for t, p in out.items() if p}

    def events(self) -> list[tuple[str, dict]]:
        """The rkpipe events received (JSON objects of the event schema), with their topics."""
        with self.lock:
            messages = list(self.messages)
        out = []
        for topic, payload, _ in messages:
            try:
                doc = json.loads(payload)
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("schema") == "rkpipe.event/1":
                out.append((topic, doc))
        return out

    def ids(self) -> list[str]:
        return [e["id"] for _, e in self.events()]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
