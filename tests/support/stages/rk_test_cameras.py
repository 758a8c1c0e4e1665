"""A stage for the camera tests, imported by `uses = "rk_test_cameras:ClipMatch"`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pipeline import Context, Message, Stage, StageConfig
from support.cameras import clip_frames, match_frame


class ClipMatchConfig(StageConfig):
    clips: dict[str, str] = Field(description="stream -> the H.264 clip its camera serves")


class ClipMatch(Stage[ClipMatchConfig]):
    """Tag each frame with the clip frame it shows (``clip_index``), how far it is from it
    (``clip_err``) and from the best frame of every other stream's clip (``other_err``),
    and every source's health as this stage sees it."""

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.refs = {s: clip_frames(Path(p)) for s, p in self.config.clips.items()}

    def process(self, msg: Message) -> Message:
        if msg.frame is None:
            return msg
        index, err = match_frame(msg.frame, self.refs[msg.stream])
        others = [match_frame(msg.frame, r)[1] for s, r in self.refs.items() if s != msg.stream]
        msg.meta.update(clip_index=index, clip_err=err, other_err=min(others, default=None))
        msg.meta["health"] = self.ctx.source_health()
        return msg
