"""The ``capture`` stage's options, checked before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from pipeline.stage import StageConfig
from stages.capture.opener import Kind, parse_source

__all__ = ["CaptureConfig"]


class CaptureConfig(StageConfig):
    source: str | int = Field(
        description="video file (relative to the graph), rtsp://, http(s)://, /dev/videoN "
        "or camera index, GStreamer pipeline ('!' or gst:), or synthetic:street?seed=..."
    )
    live: bool | None = Field(
        None, description="drop oldest when behind (default: true for streams and cameras)"
    )
    realtime: bool = Field(False, description="play a file at its own frame rate")
    loop: bool = Field(False, description="replay a file endlessly")
    width: int | None = Field(None, ge=16, le=7680, description="camera size hint")
    height: int | None = Field(None, ge=16, le=4320, description="camera size hint")
    fps: float | None = Field(
        None, gt=0, le=1000, description="camera frame rate hint; for streams, a cap"
    )
    resize: tuple[int, int] | None = Field(None, description="scale frames to [w, h]")
    decoder: Literal["auto", "opencv", "ffmpeg", "gstreamer"] = Field(
        "auto",
        description="network streams: a decoder process (ffmpeg, gst-launch) or OpenCV; "
        "auto: a hardware decoder (ffmpeg rkmpp, GStreamer mppvideodec), else ffmpeg, else "
        "GStreamer, else OpenCV",
    )
    hwaccel: Literal["auto", "rkmpp", "vaapi", "cuda", "none"] = Field(
        "auto", description="the decoder's hardware (auto: rkmpp where there is one)"
    )
    ffmpeg_path: str = Field("ffmpeg", description="the ffmpeg to run (decoder = ffmpeg)")
    backoff_s: float = Field(0.5, gt=0, le=60, description="first reconnect delay")
    max_backoff_s: float = Field(10.0, gt=0, le=600, description="longest reconnect delay")
    max_reconnects: int | None = Field(
        None, ge=0, description="failed reconnects in a row before the stream ends (None: ∞)"
    )
    down_after_s: float = Field(
        30.0, gt=0, description="a live stream still reconnecting after this long is down"
    )
    open_timeout_s: float = Field(5.0, gt=0, le=120, description="network open timeout")
    read_timeout_s: float = Field(
        5.0, gt=0, le=120, description="network read timeout: no frame this long is a stall"
    )
    rtsp_transport: Literal["tcp", "udp"] = "tcp"

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str | int, info: ValidationInfo) -> str | int:
        spec = parse_source(value)
        graph_dir = (info.context or {}).get("graph_dir")
        if graph_dir is not None and spec.kind is Kind.FILE:  # checked at validate time
            path = (Path(graph_dir) / Path(str(spec.target)).expanduser()).resolve()
            if not path.is_file():
                raise ValueError(f"video file {path} not found")
        return value

    @field_validator("resize")
    @classmethod
    def _sane_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not (16 <= value[0] <= 7680 and 16 <= value[1] <= 4320):
            msg = "a size [w, h] between [16, 16] and [7680, 4320]"
            raise ValueError(msg)
        return value

    @field_validator("width", "height", "fps", "loop")
    @classmethod
    def _fits_kind(cls, value: Any, info: ValidationInfo) -> Any:
        if not value or "source" not in info.data:
            return value
        kind = parse_source(info.data["source"]).kind
        if info.field_name == "loop" and kind is not Kind.FILE:
            msg = "loop replays a video file; this source is not one"
            raise ValueError(msg)
        if info.field_name == "fps" and kind is Kind.NETWORK:
            return value  # a cap on the stream's rate
        if info.field_name != "loop" and kind is not Kind.DEVICE:
            msg = f"{info.field_name} is a camera hint; to scale other sources use resize"
            raise ValueError(msg)
        return value

    @field_validator("decoder")
    @classmethod
    def _decoder_fits(cls, value: str, info: ValidationInfo) -> str:
        source = info.data.get("source")
        process = value in ("ffmpeg", "gstreamer")
        if process and source is not None and parse_source(source).kind is not Kind.NETWORK:
            msg = f'"{value}" reads network streams (rtsp://, http://, ...); files, '
            msg += "cameras and GStreamer strings are read by OpenCV"
            raise ValueError(msg)
        return value

    @field_validator("hwaccel")
    @classmethod
    def _hwaccel_fits(cls, value: str, info: ValidationInfo) -> str:
        decoder = info.data.get("decoder", "auto")
        if value != "auto" and decoder not in ("ffmpeg", "gstreamer"):
            msg = 'it chooses a decoder process\'s hardware: set decoder = "ffmpeg"'
            raise ValueError(msg)
        if decoder == "gstreamer" and value in ("vaapi", "cuda"):
            msg = f'"{value}" is for decoder = "ffmpeg"; GStreamer takes "rkmpp" '
            msg += '(mppvideodec), "none" or "auto"'
            raise ValueError(msg)
        return value
