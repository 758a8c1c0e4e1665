"""A sink that publishes analytics events to an MQTT broker, losing none while the broker is
away (up to a bound), and keeps plain retained state next to them.

Every event in ``msg.meta["events"]`` becomes one JSON message on a topic made from ``topic``
(placeholders: {node} {stream} {type} {line} {zone} {direction} {class_name} {pipeline}; a level
whose placeholder the event lacks is left out), queued in the outbox and forgotten only when
the broker acknowledged it (with ``spool_dir``, written to disk before it is sent). Retained
latest values go alongside: each camera's ``online``/``offline`` (:mod:`.status`), line
totals and zone occupancy as plain numbers (:mod:`.state_topics`), event snapshots
(:mod:`.snapshots`), Home Assistant discovery (:mod:`.discovery`); the pipeline's
``availability_topic`` says ``online``/``offline``, with ``offline`` as the Last Will. With
``commands`` (off by default), messages on ``{state_prefix}/lines/<line>/set`` move a line
through the graph file, as the control API does (:mod:`.commands`).

A flush at the end keeps the stage's heartbeat going (``ctx.keep_alive``) and ends early when
the run stops it; what the broker never acknowledged is counted as ``mqtt_unsent``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pipeline.doctor import Check, DoctorContext
from pipeline.errors import StageSetupError
from pipeline.graph.graph_file import GraphFile
from pipeline.keys import META_EVENTS
from pipeline.messages import Message
from pipeline.netcheck import tcp_answer
from pipeline.output_files import Modes, folder_problem, make_folder
from pipeline.stage import Context, Stage, StageConfig
from stages.event_files import safe_name
from stages.sinks.mqtt.commands import Commands, CommandTopics
from stages.sinks.mqtt.config import MqttSinkConfig
from stages.sinks.mqtt.connection import Connection
from stages.sinks.mqtt.discovery import Discovery
from stages.sinks.mqtt.ha_entities import HaEntities
from stages.sinks.mqtt.outbox import Item, Outbox
from stages.sinks.mqtt.presence import Presence
from stages.sinks.mqtt.retained import Retained
from stages.sinks.mqtt.sender import Sender
from stages.sinks.mqtt.snapshots import read_snapshot
from stages.sinks.mqtt.spool import Spool
from stages.sinks.mqtt.state_topics import StateTopics
from stages.sinks.mqtt.status import CameraStatus
from stages.sinks.mqtt.status_memory import StatusMemory
from stages.sinks.mqtt.topics import clean_id, level, render_topic
from stages.sinks.mqtt.witness import Witness, topic_filters

__all__ = ["MqttSink", "MqttSinkConfig"]


class MqttSink(Stage[MqttSinkConfig]):
    """Publish each event of each message to MQTT; frames without events publish nothing
    but their stream's status and fps."""

    replicable = False
    reads_frame = False  # events and counts only; snapshots are files the events name

    # -- setup ---------------------------------------------------------------------------------
    @classmethod
    def doctor(cls, config: StageConfig, ctx: DoctorContext) -> list[Check]:
        """The broker answers on its port."""
        assert isinstance(config, MqttSinkConfig)
        port = config.port or (8883 if config.tls else 1883)
        why = tcp_answer(config.host, port, 2.0)
        if why:
            fix = "start the broker, or set host/port (RKPIPE_MQTT_HOST) to where it runs"
            return [Check("broker", "fail", why, fix)]
        return [Check("broker", "ok", f"{config.host}:{port} answers")]

    def setup(self, ctx: Context) -> None:
        cfg = self.config
        self.ctx, self.log, self.pipeline, self.node = ctx, ctx.log, ctx.pipeline, ctx.node
        # the HA device (and its unique ids) stays across runs; the client id is new each run,
        # so two runs never take the broker's session from each other
        self.device_id = cfg.client_id or clean_id(
            f"rkpipe-{self.pipeline}-{ctx.instance}-{ctx.node}"
        )
        self.client_id = cfg.client_id or clean_id(f"{self.device_id}-{ctx.run_id}")
        self.witness = self._witness()
        self.outbox = Outbox(cfg.max_queued, self._spool())
        if self.witness is not None:
            self.witness.seen = self.outbox.witnessed
        self.retained = Retained(self.outbox.wake)
        availability = self._topic(cfg.availability_topic, "")
        discovery = None
        if cfg.ha_discovery:
            discovery = Discovery(cfg.ha_prefix, self.device_id, self.pipeline, availability)
        self.states = None
        if cfg.state_prefix:
            folder = Path(cfg.state_dir) / safe_name(self.pipeline, exact=True)
            if (why := folder_problem(folder)) is not None:
                raise StageSetupError(f"stages.{ctx.stage}.state_dir: {why}")
            modes = Modes.of(cfg.file_mode)
            self.states = StateTopics(
                self._state_folder(folder, modes),
                ctx.run_id,
                self.retained,
                discovery,
                self.log,
                modes,
            )
        memory = self._status_memory()
        for topic, gone in memory.stale().items():  # what a killed run left, put right first
            self.retained.set(topic, gone)
        self.cameras = CameraStatus(
            self.retained,
            self._status_topic,
            self._fps_topic,
            ctx.source_health,
            discovery,
            memory.remember,
        )
        self.presence = None
        if cfg.state_prefix:
            prefix = lambda stream: self._topic(cfg.state_prefix, stream)  # noqa: E731
            self.presence = Presence(
                self.retained, prefix, cfg.presence_classes, cfg.presence_hold_s, discovery
            )
        self.entities = HaEntities(
            self.retained, discovery, self._topic, cfg.topic, cfg.snapshot_topic
        )
        self.conn = Connection(cfg, self.client_id, availability, ctx.resolve_path, self.log)
        self.conn.queued = lambda: len(self.outbox)
        self.conn.on_acked = self.outbox.acked  # on disk at the PUBACK: never sent again
        self.conn.on_up = self._on_up
        if discovery is not None:  # Home Assistant's birth message: announce everything again
            self.conn.subscriptions.append(f"{cfg.ha_prefix}/status")
        self.commands = self._commands() if cfg.commands else None
        if self.commands is not None:
            self.conn.subscriptions += self.commands.topics.filters()
            self.commands.start()
        self.conn.on_message = self._on_message
        self.active: set[str] = set()  # streams that have not ended
        self.dropping = False  # said "outbox full" in this outage
        self.flushed = False  # the last stream ended and what was queued had its chance
        self.warned: set[str] = set()
        self.conn.open()
        self.sender = Sender(
            self.conn, self.outbox, self.retained, cfg.qos, self.cameras.poll, self.log
        )
        self.sender.start()

    def _commands(self) -> Commands:
        """The command topics (:mod:`.commands`), which change the graph file: said at start,
        since anyone who may publish to the broker may use them."""
        topics = CommandTopics(self._topic(self.config.state_prefix, {"stream": "{stream}"}))
        graph_file = GraphFile.of_this_run()
        where = topics.filters()[0]
        if graph_file is None:
            self.log.warning("mqtt: commands on %s cannot change a graph outside a run", where)
        else:
            self.log.warning(
                "mqtt: commands on: a message on %s at broker %s changes %s (anyone who may "
                "publish there may)",
                where,
                self.conn.address,
                graph_file.path,
            )
        return Commands(
            topics,
            graph_file,
            lambda topic, payload: self.conn.publish(topic, payload, 1, False),
            lambda topic: self.retained.get(topic) is not None,
            self.log,
        )

    def _state_folder(self, folder: Path, modes: Modes) -> Path | None:
        """Make the folder of the line totals now, or say plainly that they are not kept."""
        try:
            make_folder(folder, modes)
            return folder
        except OSError as exc:
            self.log.warning(
                "mqtt: cannot make the folder for line totals %s (%s): totals are published "
                "but not kept, so the next run counts from 0; set state_dir to a folder "
                "this stage can write",
                folder,
                exc.strerror or type(exc).__name__,
            )
            return None

    def _status_memory(self) -> StatusMemory:
        """The camera topics kept in the state folder (:mod:`.status_memory`), if any are set."""
        cfg = self.config
        path = None
        if cfg.status_topic or cfg.state_prefix:
            folder = Path(cfg.state_dir) / safe_name(self.pipeline, exact=True)
            path = folder / f"cameras.{safe_name(self.ctx.instance, exact=True)}.json"
        return StatusMemory(path, self.log, Modes.of(cfg.file_mode))

    def _witness(self) -> Witness | None:
        """With a spool: the session that sees what the broker took (:mod:`.witness`)."""
        cfg = self.config
        if not (cfg.spool_dir and cfg.witness and cfg.qos > 0):
            return None
        template = cfg.topic.replace("{pipeline}", level(self.pipeline))
        template = template.replace("{node}", level(self.node))
        filters = topic_filters(template)
        return Witness(cfg, self.device_id, filters, self.ctx.resolve_path, self.log)

    def _spool(self) -> Spool | None:
        cfg = self.config
        if not cfg.spool_dir:
            return None
        path = Path(cfg.spool_dir) / f"{safe_name(self.ctx.instance, exact=True)}.jsonl"
        witness = self.witness
        spool = Spool(  # the witness catches up once the spool is ours, before it is read
            path,
            int(cfg.spool_max_mb * 2**20),
            (lambda: witness.catch_up(cfg.connect_timeout_s) or ()) if witness else tuple,
        )
        if spool.skipped:
            self.log.warning("mqtt: %d unreadable lines in %s skipped", spool.skipped, path)
        if spool.taken:
            self.log.warning(
                "mqtt: %d messages left by an earlier run in %s had reached the broker (its "
                "witness session saw them); not sending them again",
                spool.taken,
                path,
            )
        if len(spool):
            self.log.warning(
                "mqtt: %d messages left unsent by an earlier run in %s; sending them first",
                len(spool),
                path,
            )
        return spool

    # -- the stage ---------------------------------------------------------------------------
    def process(self, msg: Message) -> Message:
        if not self.sender.is_alive():  # its traceback is above; a restart gets a fresh one
            raise RuntimeError("mqtt: the sender thread died")
        self._count_unpublishable()
        self.active.add(msg.stream)
        self.cameras.frame(msg.stream)
        events = [ev for ev in msg.meta.get(META_EVENTS) or () if self._valid(ev)]
        self._presence(msg, events)
        for event in events:
            fields = {**event, "stream": event.get("stream", msg.stream)}
            payload = json.dumps(event, separators=(",", ":"), default=_plain)
            self._put(Item(self._topic(self.config.topic, fields), payload))
            if "snapshot" in event and self.config.snapshot_topic:
                self._snapshot(fields)
        if self.states is not None and events:
            self._fold(msg.stream, events)
        return msg

    def end_stream(self, stream: str) -> None:
        """A stream ended: mark it offline; after the last one, deliver what is queued."""
        self.cameras.end(stream)
        if self.presence is not None:
            self.presence.end(stream)
        self.active.discard(stream)
        if not self.active:
            self._flush(self.config.flush_timeout_s)
            self.flushed = True

    def close(self) -> None:
        """Deliver what is left (up to ``flush_timeout_s``, less when the run stops us), say
        offline, disconnect; count what the broker never acknowledged (``mqtt_unsent``), which
        the spool, when there is one, holds for the next start."""
        if getattr(self, "sender", None) is None:
            return
        if self.commands is not None:  # the run is ending: no more changes to its graph
            self.commands.stop()
        self.cameras.stop()
        if self.states is not None:
            self.states.close()
        self._flush(0.5 if self.flushed else self.config.flush_timeout_s)
        self.sender.stop()
        self._count_unpublishable()
        left = self.outbox.close()
        if left:
            self.ctx.count_drop("mqtt_unsent", left)
            spool = self.outbox.spool
            where = f"kept in {spool.path} for the next run" if spool is not None else "lost"
            self.log.warning(
                "mqtt: %d messages not delivered to broker %s (%s)", left, self.conn.address, where
            )
        stopping = not self.ctx.keep_alive()  # then the process ends at once: no waiting
        self.conn.close(0.0 if stopping else min(2.0, self.config.flush_timeout_s + 0.1), stopping)
        if self.witness is not None:
            self.witness.close(keep=bool(left) or stopping)

    # -- helpers -----------------------------------------------------------------------------
    def _flush(self, timeout: float) -> bool:
        """Wait, up to ``timeout``, for the broker to acknowledge everything, keeping the
        heartbeat going; stop at once when the run says so. Returns whether all went."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            if self.outbox.wait_empty(min(0.25, left)) and self.retained.settled():
                return True
            if not self.ctx.keep_alive() or time.monotonic() >= deadline:
                return False

    def _put(self, item: Item) -> None:
        dropped = self.outbox.put(item)
        if not dropped:
            return
        self.ctx.count_drop("mqtt_outbox_full", dropped)
        if not self.dropping:
            self.dropping = True
            bound = f"{self.config.max_queued} messages"
            if self.outbox.spool is not None:
                bound = f"{self.config.spool_max_mb:g} MB spooled"
            self.log.warning(
                "mqtt: outbox full (%s) while broker %s is %s; dropping the oldest",
                bound,
                self.conn.address,
                "behind" if self.conn.connected.is_set() else "away",
            )

    def _valid(self, event: Any) -> bool:
        if isinstance(event, dict):
            return True
        self.ctx.count_drop("mqtt_bad_event")
        self._warn_once("bad", f"mqtt: an event that is not an object ({type(event).__name__})")
        return False

    def _fold(self, stream: str, events: list[dict[str, Any]]) -> None:
        assert self.states is not None
        try:
            self.states.fold(stream, self._topic(self.config.state_prefix, stream), events)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.ctx.count_event("mqtt_state_skipped")
            self._warn_once("state", f"mqtt: an event the state topics cannot read: {exc!r}")

    def _snapshot(self, fields: dict[str, Any]) -> None:
        data = read_snapshot(Path(self.config.snapshot_root), fields["snapshot"])
        if isinstance(data, str):
            self.ctx.count_drop("mqtt_snapshot_unreadable")
            self._warn_once("snapshot", f"mqtt: event {fields.get('id')}: {data}; not published")
            return
        self.retained.set(self._topic(self.config.snapshot_topic, fields), data)
        self.entities.snapshot(fields["stream"], fields, data)

    def _presence(self, msg: Message, events: list[dict[str, Any]]) -> None:
        """What is in view now, and the Home Assistant event entities the events need."""
        if self.presence is not None:
            self.presence.frame(msg)
            if events:
                self.presence.learn(msg.stream, events)
        if events:
            self.entities.seen(msg.stream, events)

    def _count_unpublishable(self) -> None:
        bad = self.sender.take_unpublishable()
        if bad:
            self.ctx.count_drop("mqtt_bad_topic", bad)

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.log.warning("%s (said once; the rest are counted)", text)

    def _on_up(self) -> None:
        """Connected (again): every retained value goes again; warn afresh when full."""
        self.dropping = False
        self.retained.resend_all()

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """A message on a subscription (paho's network thread)."""
        if self.config.ha_discovery and topic == f"{self.config.ha_prefix}/status":
            if payload == b"online":
                self.retained.resend_all()
        elif self.commands is not None:
            self.commands.offer(topic, payload, retained)

    # -- topics ------------------------------------------------------------------------------
    def _topic(self, template: str, stream: str | dict[str, Any]) -> str:
        fields = stream if isinstance(stream, dict) else {"stream": stream} if stream else {}
        return render_topic(template, {"pipeline": self.pipeline, **fields, "node": self.node})

    def _status_topic(self, stream: str) -> str:
        return self._topic(self.config.status_topic, stream) if self.config.status_topic else ""

    def _fps_topic(self, stream: str) -> str:
        prefix = self.config.state_prefix
        return f"{self._topic(prefix, stream)}/fps" if prefix else ""


def _plain(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)
