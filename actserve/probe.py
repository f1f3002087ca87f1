"""A linear probe: new classes from a few labelled videos, on a stored model's embeddings.

    folder = read_labelled_folder(Path("my-classes"))   # one sub-folder of videos per class
    embeddings = await embed_videos(local, folder.paths, profile)
    fit = fit_probe(embeddings, folder.labels)           # cross-validated, tested vs chance
    calibration = calibrate_similarity(embeddings, folder.labels)

The protocol is the seed paper's (P3D: a linear classifier on pooled features): the base
model's mean embedding of each video (its test recipe's views averaged, as POST /embed
returns it), standardised, then scikit-learn's LogisticRegression. Cross-validation
(stratified folds, each video predicted once by a head that never saw it) says how well the
head generalises; a binomial test of those predictions against always answering the largest
class says whether the labels mean anything at all, so a mislabelled folder is refused instead
of published. The standardisation is folded into the
head, which becomes `logits = embedding @ W.T + b` on the raw embedding.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actserve.local import VIDEO_SUFFIXES, is_video_file
from model_store import SimilarityCalibration

#: Largest p-value accepted for "the held-out accuracy beats always answering the largest
#: class" (a one-sided binomial test over the videos, each predicted once by cross-validation).
SIGNIFICANCE = 0.05
DEFAULT_FOLDS = 5


class ProbeError(Exception):
    """The labelled videos cannot make a probe (what is wrong is in the message)."""


@dataclass(frozen=True)
class LabelledVideos:
    """Videos and their class indices, classes sorted by name."""

    classes: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: np.ndarray
    digests: tuple[str, ...]

    @property
    def data_sha256(self) -> str:
        """sha256 over the sorted (class, video sha256) pairs: renaming or moving files keeps
        it, changing a video or its class changes it."""
        pairs = sorted(zip((self.classes[i] for i in self.labels), self.digests, strict=True))
        return hashlib.sha256("\n".join(f"{c}\t{d}" for c, d in pairs).encode()).hexdigest()

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}

    def subset(self, keep: Sequence[int]) -> LabelledVideos:
        return LabelledVideos(
            self.classes,
            tuple(self.paths[i] for i in keep),
            self.labels[list(keep)],
            tuple(self.digests[i] for i in keep),
        )


def read_labelled_folder(root: Path) -> LabelledVideos:
    """One class per sub-folder of `root`, its videos anywhere below it. Refuses a folder
    that cannot train a classifier: fewer than two classes, a class with fewer than two
    videos, or one video (same bytes) filed under two classes."""
    if not root.is_dir():
        raise ProbeError(f"{root} is not a folder; give one sub-folder of videos per class")
    classes, paths, labels = [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        videos = sorted(p for p in folder.rglob("*") if is_video_file(p))
        if videos:
            labels += [len(classes)] * len(videos)
            classes.append(folder.name)
            paths += videos
    if len(classes) < 2:
        found = f"only one: {classes[0]!r}" if classes else "none"
        raise ProbeError(
            f"{root} needs at least two class sub-folders with videos "
            f"({', '.join(sorted(VIDEO_SUFFIXES))}); found {found}"
        )
    folder = LabelledVideos(
        tuple(classes), tuple(paths), np.array(labels), tuple(_sha256(p) for p in paths)
    )
    check_classes(folder)
    first_seen: dict[str, int] = {}
    for i, digest in enumerate(folder.digests):
        j = first_seen.setdefault(digest, i)
        if folder.labels[j] != folder.labels[i]:
            raise ProbeError(
                f"the same video is filed under two classes: {folder.paths[j]} "
                f"({folder.classes[folder.labels[j]]!r}) and {folder.paths[i]} "
                f"({folder.classes[folder.labels[i]]!r}); fix the labels"
            )
    return folder


def check_classes(folder: LabelledVideos) -> None:
    """Every class needs two videos: one to fit on and one to validate with."""
    small = {c: n for c, n in folder.counts().items() if n < 2}
    if small:
        listed = ", ".join(f"{c!r} ({n})" for c, n in small.items())
        raise ProbeError(f"every class needs at least two usable videos; too few in {listed}")


async def embed_videos(
    classify: Callable[[Path], object],
    paths: Sequence[Path],
    *,
    concurrency: int,
    on_done: Callable[[Path, BaseException | None], None] = lambda path, error: None,
) -> tuple[dict[int, np.ndarray], dict[int, BaseException]]:
    """Mean embedding of each video through `classify` (a `LocalPipeline.classify` bound to
    the options), `concurrency` at a time; returns embeddings and errors by position."""
    from service.scores import mean_embedding

    embeddings: dict[int, np.ndarray] = {}
    errors: dict[int, BaseException] = {}
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int, path: Path) -> None:
        async with slots:
            try:
                run = await classify(path)
            except Exception as error:  # a broken video is reported, not fatal here
                errors[i] = error
                on_done(path, error)
                return
        embeddings[i] = mean_embedding(run.outputs.embedding)
        on_done(path, None)

    await asyncio.gather(*(one(i, p) for i, p in enumerate(paths)))
    return embeddings, errors


@dataclass(frozen=True)
class ProbeFit:
    """A fitted linear head on raw embeddings and how well it generalised."""

    weight: np.ndarray  # (K, D) float32
    bias: np.ndarray  # (K,) float32
    classifier: str
    folds: int
    cv_accuracy: float
    cv_accuracy_std: float
    p_value: float
    chance: float
    #: Each video's out-of-fold prediction and logits (by a head that never saw it).
    oof_predictions: np.ndarray | None = None
    oof_logits: np.ndarray | None = None

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        return embeddings.astype(np.float64) @ self.weight.T.astype(np.float64) + self.bias


def fit_probe(
    embeddings: np.ndarray, labels: np.ndarray, *, folds: int = DEFAULT_FOLDS, seed: int = 0
) -> ProbeFit:
    """Cross-validate a standardised logistic regression, test its accuracy against chance,
    then fit it on every video and fold the standardisation into the head."""
    from scipy.stats import binomtest
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels)
    counts = np.bincount(y)
    folds = int(min(folds, counts.min()))
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = np.zeros(len(y), dtype=np.int64)
    oof_logits = np.zeros((len(y), len(counts)))
    per_fold = []
    for train, test in splits.split(x, y):
        predicted[test] = classifier.fit(x[train], y[train]).predict(x[test])
        scores = classifier.decision_function(x[test])
        oof_logits[test] = np.stack([-scores / 2, scores / 2], 1) if scores.ndim == 1 else scores
        per_fold.append((predicted[test] == y[test]).mean())
    right = predicted == y
    chance = float(counts.max() / counts.sum())
    p_value = binomtest(int(right.sum()), len(y), chance, alternative="greater").pvalue
    classifier.fit(x, y)
    scaler, regression = classifier[0], classifier[1]
    coef, intercept = regression.coef_, regression.intercept_
    if coef.shape[0] == 1:  # binary: sigmoid(z) = softmax([-z/2, z/2])[1]
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    # ((x - mean) / scale) @ coef.T + intercept  ==  x @ (coef / scale).T + the rest
    weight = coef / scaler.scale_
    bias = intercept - weight @ scaler.mean_
    return ProbeFit(
        weight=weight.astype(np.float32),
        bias=bias.astype(np.float32),
        classifier="LogisticRegression(C=1.0) on standardised embeddings (scikit-learn)",
        folds=folds,
        cv_accuracy=float(right.mean()),
        cv_accuracy_std=float(np.std(per_fold)),
        p_value=float(p_value),
        chance=chance,
        oof_predictions=predicted,
        oof_logits=oof_logits,
    )


def mislabelled(fit: ProbeFit, folder: LabelledVideos) -> list[tuple[Path, str, str]]:
    """The videos whose out-of-fold prediction disagrees with their folder: (path, folder's
    class, predicted class). Most are mislabelled, or unlike the rest of their class."""
    assert fit.oof_predictions is not None
    return [
        (path, folder.classes[label], folder.classes[guess])
        for path, label, guess in zip(folder.paths, folder.labels, fit.oof_predictions, strict=True)
        if label != guess
    ]


#: Share of a class's own videos (out of fold) an open-set probe may answer `unknown`.
OPEN_SET_MISS = 0.05


@dataclass(frozen=True)
class OpenSet:
    """Reject below `threshold`: the best cosine similarity of an embedding to the classes'
    prototypes (unit-length mean embeddings, (K, D))."""

    prototypes: np.ndarray
    threshold: float

    def similarity(self, embeddings: np.ndarray) -> np.ndarray:
        """Each embedding's best cosine similarity to a prototype."""
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return (x @ self.prototypes.T).max(axis=1)


def calibrate_open_set(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    miss: float = OPEN_SET_MISS,
) -> OpenSet:
    """Class prototypes from every video, and the reject threshold from cross-validation:
    each video's similarity to its own class's prototype built from the other folds (the
    `miss` quantile of those: what a known class scores at worst) and to the other classes'
    (the highest: what a motion of none of them scores). The threshold is midway between the
    two when they are apart, else the former: a known class is `unknown` at most about
    `miss` of the time."""
    from sklearn.model_selection import StratifiedKFold

    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels)
    folds = int(min(folds, np.bincount(y).min()))
    own, other = np.zeros(len(y)), np.full(len(y), -1.0)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        prototypes = _prototypes(x[train], y[train])
        z = x[test] / np.maximum(np.linalg.norm(x[test], axis=1, keepdims=True), 1e-12)
        similarity = z @ prototypes.T
        own[test] = similarity[np.arange(len(test)), y[test]]
        similarity[np.arange(len(test)), y[test]] = -1.0
        other[test] = similarity.max(axis=1)
    low_own, high_other = float(np.quantile(own, miss)), float(other.max())
    threshold = (low_own + high_other) / 2 if high_other < low_own else low_own
    return OpenSet(_prototypes(x, y), threshold)


def _prototypes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    means = np.stack([x[y == k].mean(axis=0) for k in range(int(y.max()) + 1)])
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def extend_head(
    fit: ProbeFit, base_weight: np.ndarray, base_bias: np.ndarray, embeddings: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One head with the base model's classes first, then the probe's: the two heads'
    rows stacked, the new rows' bias raised just enough that all but `OPEN_SET_MISS` of the
    labelled videos (their out-of-fold logits) go to a new class rather than a base one."""
    assert fit.oof_logits is not None
    x = np.asarray(embeddings, dtype=np.float64)
    base_logits = x @ base_weight.T.astype(np.float64) + base_bias
    margin = fit.oof_logits.max(axis=1) - base_logits.max(axis=1)
    lift = max(0.0, -float(np.quantile(margin, OPEN_SET_MISS)))
    weight = np.concatenate([base_weight, fit.weight]).astype(np.float32)
    bias = np.concatenate([base_bias, fit.bias + lift]).astype(np.float32)
    return weight, bias


def check_fit(fit: ProbeFit, classes: Sequence[str], min_accuracy: float | None) -> None:
    """Refuse a head whose labels carry no signal, or below the accuracy asked for."""
    accuracy = f"cross-validated accuracy {fit.cv_accuracy:.1%} over {fit.folds} folds"
    if fit.p_value > SIGNIFICANCE:
        raise ProbeError(
            f"the labels are not learnable: {accuracy} is no better than {fit.chance:.1%} by "
            f"always answering the largest class (binomial test p = {fit.p_value:.2f} > "
            f"{SIGNIFICANCE}). Are the videos of {', '.join(classes)} mislabelled, or not told "
            "apart by this model? Nothing was published."
        )
    if min_accuracy is not None and fit.cv_accuracy < min_accuracy:
        raise ProbeError(
            f"{accuracy} is below --min-accuracy {min_accuracy:.1%}; nothing was published"
        )


def calibrate_similarity(
    embeddings: np.ndarray, labels: np.ndarray, *, source: str
) -> SimilarityCalibration:
    """The cosine threshold that best tells same-class pairs from different-class pairs
    (highest balanced accuracy; the middle one of the best)."""
    x = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    upper = np.triu_indices(len(x), k=1)
    similarity = (x @ x.T)[upper]
    same = (labels[:, None] == labels[None, :])[upper]
    values = np.unique(similarity)
    candidates = np.concatenate([[-1.0], (values[:-1] + values[1:]) / 2, [1.0]])
    scores = np.array(
        [((similarity[same] >= t).mean() + (similarity[~same] < t).mean()) / 2 for t in candidates]
    )
    best = np.flatnonzero(scores == scores.max())
    threshold = float(candidates[best[len(best) // 2]])
    return SimilarityCalibration(
        threshold=threshold,
        balanced_accuracy=float(scores.max()),
        pairs=len(similarity),
        source=source,
    )


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
