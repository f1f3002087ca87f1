"""Small random `transformers` video classifiers of each family, saved as a user would
(`save_pretrained` with the image processor), for the export and serving tests."""

from __future__ import annotations

from pathlib import Path

import torch

LABELS = ("wave", "clap", "jump", "sit", "run")
#: Tiny geometry: 4 frames of 32×32, short side 40.
_COMMON = dict(
    image_size=32,
    num_frames=4,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    num_labels=len(LABELS),
    id2label=dict(enumerate(LABELS)),
    label2id={label: i for i, label in enumerate(LABELS)},
)
#: VideoMAE with mean pooling + fc_norm (the fine-tuned V1 and V2 checkpoints' head) and
#: without (layer norm, then the first token), TimeSformer and ViViT.
FAMILIES = ("videomae", "videomae_token", "timesformer", "vivit")


def build_hf_model(family: str, directory: Path, *, seed: int = 0) -> Path:
    """Save a random `family` classifier and its image processor in `directory`. The
    classifier's weights are scaled up so the classes are far apart (a random head answers
    near-uniform probabilities, where top-1 would be a coin toss)."""
    import transformers as tf

    torch.manual_seed(seed)
    if family.startswith("videomae"):
        config = tf.VideoMAEConfig(
            **_COMMON, patch_size=8, tubelet_size=2, use_mean_pooling=family == "videomae"
        )
        model = tf.VideoMAEForVideoClassification(config)
        processor = tf.VideoMAEImageProcessorPil(
            size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}
        )
    elif family == "timesformer":
        model = tf.TimesformerForVideoClassification(tf.TimesformerConfig(**_COMMON, patch_size=8))
        # TimeSformer checkpoints on the Hub carry a VideoMAE image processor.
        processor = tf.VideoMAEImageProcessorPil(
            size={"shortest_edge": 40},
            crop_size={"height": 32, "width": 32},
            image_mean=[0.45, 0.45, 0.45],
            image_std=[0.225, 0.225, 0.225],
        )
    elif family == "vivit":
        model = tf.VivitForVideoClassification(tf.VivitConfig(**_COMMON, tubelet_size=[2, 8, 8]))
        processor = tf.VivitImageProcessor(
            size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}
        )
    else:
        raise ValueError(family)
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
