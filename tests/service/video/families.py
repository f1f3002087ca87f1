"""Each family's registered recipe, shrunk for tests: the same protocol at tiny sizes.

Sampler, resize filter, size rounding, stretch, pre-scale, crop rule, window tail, channel
order and normalisation are the registered model's; clip length, interval, clip count and
sizes shrink so a test runs in seconds on the 96×70, 49-frame `protocol.avi` (sizes chosen so
the rounding and offset rules disagree: PySlowFast's centre crops sit on odd slack).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from model_store.spec import Recipe


@dataclass(frozen=True)
class Family:
    """A registered model (with a tiny variant), its reference pipeline and the shrink."""

    model: str
    pipeline: str  # a name in tests.service.video.references.PIPELINES
    shrink: dict[str, Any]
    variant: dict[str, Any] = field(default_factory=dict)
    recipe_of: str | None = None  # take the recipe of this registered model instead

    def recipe(self) -> Recipe:
        from backbones import default_spec  # torch: only where a test builds recipes

        registered = default_spec(self.recipe_of or self.model, num_classes=7).recipe
        return Recipe.model_validate({**registered.model_dump(), **self.shrink})


FAMILIES = {
    "x3d": Family(
        model="x3d_xs",
        pipeline="slowfast_torchvision",
        variant=dict(
            depth_factor=0.2, width_factor=1.0, head_width=64, train_clip_len=4, train_crop_size=32
        ),
        shrink=dict(
            clip_len=4,
            frame_interval=3,
            num_clips=3,
            short_side=40,
            crop_size=40,
            train_crop_size=32,
        ),
    ),
    "vov3d": Family(
        model="vov3d_m",
        pipeline="slowfast_pyav",
        variant=dict(
            depths=(1, 1, 1, 1),
            inner_channels=8,
            num_layers=2,
            head_width=64,
            train_clip_len=4,
            train_crop_size=32,
        ),
        shrink=dict(
            clip_len=4,
            frame_interval=3,
            num_clips=3,
            short_side=42,
            crop_size=42,
            train_crop_size=32,
        ),
    ),
    "hara": Family(
        model="r2plus1d_18",
        pipeline="hara",
        variant=dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64)),
        shrink=dict(
            clip_len=4, short_side=24, crop_size=22, prescale={"size": 48, "side": "short"}
        ),
    ),
    "hara_2018": Family(
        model="r2plus1d_18",
        recipe_of="densenet3d_121",
        pipeline="hara_2018",
        variant=dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64)),
        shrink=dict(
            clip_len=4, short_side=24, crop_size=22, prescale={"size": 48, "side": "height"}
        ),
    ),
    "p3d": Family(
        model="p3d_63",
        pipeline="caffe_p3d",
        variant=dict(layers=(1, 1, 1, 1)),
        shrink=dict(num_clips=2, short_side=36, stretch_to=(36, 48), crop_size=32),
    ),
    "tpn": Family(
        model="tpn_slowonly_r50",
        pipeline="mmaction",
        variant=dict(layers=(1, 1, 1, 1)),
        shrink=dict(frame_interval=2, num_clips=2, short_side=40, crop_size=40),
    ),
    "tpn_tsm": Family(
        model="tpn_tsm_r50",
        pipeline="mmaction_tsm",
        variant=dict(layers=(1, 1, 1, 1)),
        shrink=dict(short_side=40, crop_size=40),
    ),
}
