"""Train the bundled demo model on synthetic actions (CPU, minutes, deterministic) and publish
it through the normal exporter.

    actserve train-demo --store ./demo-store          # reproduce it anywhere
    actserve train-demo --store service/bundled_store # what the maintainers ship

The backbone is a slim R(2+1)D from the zoo (`r2plus1d_18` with widths 16/32/64/128 and one
block per stage, 0.92M parameters). Clips are rendered on the fly at the geometry the service
feeds the network: a 4:3 frame whose short side is the recipe's, centre-cropped, sampled at
the recipe's frame interval from anywhere in a 2 s video.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from actserve.demo.synthetic import ACTIONS, FPS, NUM_FRAMES, make_scene, render_frames
from backbones import create_model
from exporters import export_to_store
from model_store import ModelStore, Profile, Recipe
from model_store.manifest import Manifest

DEMO_NAME = "demo-actions"
DEMO_RECIPE = Recipe(
    clip_len=8,
    frame_interval=4,
    num_clips=2,
    num_crops=1,
    short_side=48,
    crop_size=48,
    pixel_scale=1.0,
    mean=(0.45, 0.45, 0.45),
    std=(0.225, 0.225, 0.225),
    source="actserve demo: 8 frames 4 apart, short side 48, centre crop 48, RGB [0, 1] "
    "normalised with mean 0.45 / std 0.225; 2 clips per video in the accurate profile",
)
DEMO_VARIANT = {"widths": (16, 32, 64, 128), "layers": (1, 1, 1, 1), "stem_width": 16}
#: Fewer steps cannot even warm up and decay the learning rate.
MIN_STEPS = 10
#: What the shipped model was trained with (99.3% held-out clip accuracy).
DEFAULT_STEPS = 1200


class AccuracyTooLowError(ValueError):
    """The trained model is too poor to publish (and `force` was not given)."""


@dataclass(frozen=True)
class TrainingConfig:
    steps: int = DEFAULT_STEPS
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    eval_clips: int = 300

    def __post_init__(self) -> None:
        if self.steps < MIN_STEPS:
            raise ValueError(
                f"steps must be at least {MIN_STEPS} (a learning-rate warm-up and decay), "
                f"not {self.steps}"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be 0 or more, not {self.seed}")
        if self.batch_size < 1 or self.eval_clips < 1:
            raise ValueError("batch_size and eval_clips must be at least 1")


def clip_batch(
    rng: np.random.Generator, size: int, recipe: Recipe = DEMO_RECIPE
) -> tuple[torch.Tensor, torch.Tensor]:
    """`size` random clips (N, 3, T, H, W), normalised as the service does, and labels."""
    span = (recipe.clip_len - 1) * recipe.frame_interval + 1
    height = recipe.short_side
    width = round(recipe.short_side * 4 / 3)
    left = (width - recipe.crop_size) // 2
    top = (height - recipe.crop_size) // 2
    labels = rng.integers(0, len(ACTIONS), size)
    clips = np.empty((size, recipe.clip_len, recipe.crop_size, recipe.crop_size, 3), np.uint8)
    for i, label in enumerate(labels):
        scene = make_scene(ACTIONS[label], rng)
        start = int(rng.integers(0, NUM_FRAMES - span + 1))
        frames = render_frames(
            scene, start + recipe.frame_interval * np.arange(recipe.clip_len), height, width
        )
        clips[i] = frames[:, top : top + recipe.crop_size, left : left + recipe.crop_size]
    x = torch.from_numpy(clips).float().div_(255 / recipe.pixel_scale)
    mean = torch.tensor(recipe.mean).view(1, 1, 1, 1, 3)
    std = torch.tensor(recipe.std).view(1, 1, 1, 1, 3)
    x = ((x - mean) / std).permute(0, 4, 1, 2, 3).contiguous()
    return x, torch.from_numpy(labels)


def train_demo_model(
    config: TrainingConfig = TrainingConfig(),
    progress: Callable[[int, float, float | None], None] = lambda step, loss, acc: None,
) -> tuple[torch.nn.Module, float]:
    """Train from scratch; returns the model (eval mode) and its held-out clip accuracy."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    eval_x, eval_y = clip_batch(np.random.default_rng(config.seed + 10_000), config.eval_clips)
    model = create_model(
        "r2plus1d_18", num_classes=len(ACTIONS), recipe=DEMO_RECIPE, **DEMO_VARIANT
    )
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    # A 5% warm-up, but of at least two steps: OneCycleLR divides by its length minus one.
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser,
        max_lr=config.learning_rate,
        total_steps=config.steps,
        pct_start=max(0.05, 2 / config.steps),
    )
    accuracy = 0.0
    for step in range(1, config.steps + 1):
        model.train()
        x, y = clip_batch(rng, config.batch_size)
        loss = F.cross_entropy(model(x), y, label_smoothing=0.05)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        evaluate = step % 100 == 0 or step == config.steps
        if evaluate:
            accuracy = evaluate_clips(model, eval_x, eval_y)
        progress(step, loss.item(), accuracy if evaluate else None)
    return model.eval(), accuracy


@torch.no_grad()
def evaluate_clips(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    predictions = torch.cat([model(chunk).argmax(1) for chunk in x.split(64)])
    return float((predictions == y).float().mean())


def publish_demo_model(
    model: torch.nn.Module, store: Path, *, accuracy: float, config: TrainingConfig
) -> Manifest:
    spec = model.spec.relabel(ACTIONS)
    description = (
        f"actserve demo model: a slim R(2+1)D (r2plus1d_18 with widths 16/32/64/128, one block "
        f"per stage) trained from scratch on synthetic videos of {len(ACTIONS)} motions "
        f"({', '.join(ACTIONS)}); {config.steps} steps of {config.batch_size} clips, seed "
        f"{config.seed}; held-out clip accuracy {accuracy:.1%}. Not a model of real human actions."
    )
    target = ModelStore(store)
    manifest = export_to_store(
        model,
        spec,
        target,
        trained=True,
        name=DEMO_NAME,
        formats=("onnx",),
        alias="stable",
        description=description,
        default_profile=Profile.ACCURATE,
    )
    target.set_default_model(DEMO_NAME)
    return manifest


def main(store: Path, config: TrainingConfig, *, min_accuracy: float, force: bool) -> Manifest:
    """Train with progress lines, then export, check and publish; a model below
    `min_accuracy` on the held-out clips is refused (AccuracyTooLowError) unless `force`."""
    started = time.perf_counter()

    def report(step: int, loss: float, accuracy: float | None) -> None:
        if step % 25 == 0 or accuracy is not None:
            held_out = f"  held-out accuracy {accuracy:.1%}" if accuracy is not None else ""
            print(
                f"step {step:4d}/{config.steps}  loss {loss:.3f}{held_out}  "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )

    print(f"training the demo model: {config}; clips of {FPS} fps synthetic video", flush=True)
    model, accuracy = train_demo_model(config, report)
    if accuracy < min_accuracy:
        if not force:
            raise AccuracyTooLowError(
                f"held-out clip accuracy {accuracy:.1%} is below the {min_accuracy:.1%} required "
                f"to publish, so nothing was published; train longer (the shipped model: "
                f"{DEFAULT_STEPS} steps, 99.3%) or pass --force to publish it anyway"
            )
        print(f"publishing a model at {accuracy:.1%} held-out accuracy (forced)", flush=True)
    manifest = publish_demo_model(model, store, accuracy=accuracy, config=config)
    print(
        f"published {manifest.name} version {manifest.version} to {store} "
        f"(held-out clip accuracy {accuracy:.1%})",
        flush=True,
    )
    return manifest
