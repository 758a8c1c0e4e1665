"""Built-in rkpipe stages. Graph files name them by the short names in ``BUILTIN_STAGES``."""

from __future__ import annotations

__all__ = ["BUILTIN_STAGES"]

#: short name -> "module:Class"; imported only when a graph uses the name.
BUILTIN_STAGES: dict[str, str] = {
    "synthetic": "stages.synthetic:SyntheticSource",
    "capture": "stages.capture:Capture",
    "passthrough": "stages.passthrough:Passthrough",
    "jsonl": "stages.sinks.jsonl:JsonlSink",
    "mqtt": "stages.sinks.mqtt:MqttSink",
    "video": "stages.sinks.video:VideoSink",
    "preview": "stages.sinks.preview:PreviewSink",
    "letterbox": "stages.preprocess:Letterbox",
    "infer": "stages.infer:Infer",
    "yolov8_decode": "stages.postprocess:YoloV8Decode",
    "bytetrack": "stages.track:ByteTrack",
    "line_crossing": "stages.line_crossing:LineCrossing",
    "zones": "stages.zones:Zones",
}
