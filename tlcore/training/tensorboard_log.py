"""A run's TensorBoard logs, ``RUN/tensorboard/`` (:data:`tlcore.models.run_files.TENSORBOARD_DIR`).

What ``tensorboard --logdir RUN/tensorboard`` shows (``--logdir`` a folder of runs shows them all):

- ``train/`` and ``validation/``: one point per epoch of the run's history, the head's and fine-tuning's
  epochs on one axis as ``metrics.json`` numbers them: ``epoch_loss`` and ``epoch_accuracy`` in both
  (Keras's own TensorBoard callback names, so a split's curves share a chart), ``epoch_learning_rate`` in
  ``train/`` (each phase's constant rate).
- the folder itself: the settings as an HParams session (every :class:`~tlcore.training.config.TrainConfig`
  field, the input size used, the number of classes and of layers fine-tuning trained) whose metrics are
  the curves' last values and ``final/val_accuracy``, ``final/test_accuracy``; the validation confusion
  matrix as an image at the last epoch; a ``phases`` text (which epochs were the head's, which
  fine-tuning's); and the embedding projector: ``projector_config.pbtxt`` naming, by paths relative to
  the folder, ``projector/embeddings.tsv`` (the photos' backbone features: the feature cache's for a
  head-only run, the fine-tuned backbone's otherwise), ``projector/metadata.tsv`` (label and split of
  each photo) and ``projector/sprite.jpg`` (their thumbnails).

Fine-tuning a saved run continues its log: the parent's epoch files (and its earlier confusion matrices
and final scores) are copied, not read, and the new epochs follow; the HParams session and the projector
are the new run's own. Event files are renamed without the machine's name, which a project would carry.

Writing never fails a training run: :func:`write_run_logs` returns a warning (the ``tensorboard_incomplete``
alarm) naming what could not be written, and the rest is kept. The logs are written into a folder beside
the run (:func:`staged_logs`) that :func:`tlcore.models.run.save_run` moves into it, so the run appears
with them. TensorBoard reads these files; Transfer Lab writes them and never reads them back.
"""
from __future__ import annotations

import contextlib
import importlib
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..data.images import ImageDecodeError, load_image
from ..jobs.events import LOGGING, PhaseCallback, Ticker, no_phase
from .alarms import alarm

__all__ = ["RunLog", "write_run_logs", "staged_logs", "confusion_image", "MAX_PROJECTED", "PROJECTOR_FILES"]

# The projector's photos: beyond this many, an even sample (its files grow with the photos: about 10 KB each).
MAX_PROJECTED = 2000
_SPRITE_SIDE = 8192  # the projector's largest sprite image, in pixels a side
_THUMB = 64
# Paths inside the log folder, relative (the projector resolves them against its config's folder).
PROJECTOR_FILES = {"config": "projector_config.pbtxt", "tensor": "projector/embeddings.tsv",
                   "metadata": "projector/metadata.tsv", "sprite": "projector/sprite.jpg"}
_TRAIN, _VALIDATION = "train", "validation"
# Event files as this module names them: the kind of each, so a fine-tune copies its parent's epochs and
# scores but writes its own HParams session (TensorBoard keeps the first session it reads in a folder).
_EVENTS = re.compile(r"^events\.out\.tfevents\.\d+\.tlcore\.\d+\.(epochs|run|hparams)\.v2$")
_INHERITED = ("epochs", "run")
_BATCH = 32


@dataclass
class RunLog:
    """What a finished run logs.

    ``name`` names its HParams session (the run folder's last two parts), ``history`` is the run's whole
    history (``metrics.json``), ``new_from`` the first epoch this run trained (the earlier ones come from
    the run it continues, whose fine-tuning rate was ``earlier_fine_tune_lr``), ``settings`` its
    :class:`~tlcore.training.config.TrainConfig` as a dict, ``metrics`` the held-out metrics (``{"val",
    "test"}`` of :func:`tlcore.analysis.evaluate.classification_metrics`), ``photos`` ``(path, label,
    split)`` of every photo, and their embeddings: ``features`` (rows in the order of ``photos``) or
    ``embed`` (pixels 0..255 ``(n, size, size, 3)`` to features, at ``input_size``).
    """

    name: str
    history: list[dict]
    settings: dict
    input_size: int
    classes: list[str]
    metrics: dict
    photos: list[tuple[str, str, str]]
    fine_tuned_layers: int = 0
    new_from: int = 1
    earlier_fine_tune_lr: float | None = None
    features: np.ndarray | None = None
    embed: Callable[[np.ndarray], np.ndarray] | None = None

    def learning_rate(self, entry: dict) -> float | None:
        """The rate an epoch of the history trained at (constant in each phase), or None when unknown."""
        phase = entry.get("phase")
        if phase == "head":
            return self.settings.get("lr")
        if phase == "fine_tune":
            return self.settings.get("fine_tune_lr") if _epoch(entry) >= self.new_from else self.earlier_fine_tune_lr
        return None


@contextlib.contextmanager
def staged_logs(run_dir: str | Path) -> Iterator[Path]:
    """A new empty folder beside ``run_dir`` for its logs, removed on leaving unless it was moved away."""
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.tensorboard-", dir=run_dir.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_run_logs(folder: str | Path, log: RunLog, parent: str | Path | None = None,
                   on_phase: PhaseCallback = no_phase) -> list[dict]:
    """Write ``log`` into the empty ``folder``, continuing the logs of ``parent`` (a run's log folder) when
    given; returns ``[]``, or the one ``tensorboard_incomplete`` alarm naming the parts that failed.

    ``on_phase(LOGGING, done=, total=)`` hears the projector's photos (decoded, and embedded when
    ``log.embed`` is given). Never raises for a failed part: training must not fail for its logs.
    """
    folder = Path(folder)
    errors: dict[str, str] = {}

    def attempt(part: str, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - any failure of a part is reported, never raised
            errors.setdefault(part, f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:200])

    try:
        import tensorflow as tf

        importlib.import_module("tensorboard.plugins.hparams.api")  # the tensorboard package, checked once
    except Exception as exc:  # noqa: BLE001 - e.g. the tensorboard package missing
        return [_incomplete(["scalars", "hparams", "images", "projector"], f"{type(exc).__name__}: {exc}")]
    inherited: list[bool] = []
    if parent is not None:
        attempt("scalars", lambda: inherited.append(_inherit(Path(parent), folder)))
    first = log.new_from if any(inherited) else 1
    attempt("scalars", lambda: _write_epochs(tf, folder, [e for e in log.history if _epoch(e) >= first], log))
    attempt("hparams", lambda: _write_hparams(tf, folder, log))
    attempt("images", lambda: _write_run_summaries(tf, folder, log))
    attempt("projector", lambda: _write_projector(folder, log, on_phase))
    attempt("scalars", lambda: _rename_events(folder))
    if not errors:
        return []
    return [_incomplete(list(errors), next(iter(errors.values())))]


def _incomplete(parts: list[str], error: str) -> dict:
    return alarm("tensorboard_incomplete", f"the run is saved, but its TensorBoard logs lack the {', '.join(parts)} "
                 f"({error})", parts=", ".join(parts), error=error)


def _epoch(entry: dict) -> int:
    return int(entry.get("epoch", 0))


def _inherit(parent: Path, folder: Path) -> bool:
    """Copy the parent log's epoch and score files (only regular files named as this module names them,
    never a link, never parsed); True when it had epochs to continue."""
    found = False
    for sub in ("", _TRAIN, _VALIDATION):
        source = parent / sub if sub else parent
        if source.is_symlink() or not source.is_dir():
            continue
        for path in sorted(source.iterdir()):
            match = _EVENTS.match(path.name)
            if not match or match.group(1) not in _INHERITED or path.is_symlink() or not path.is_file():
                continue
            (folder / sub).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / sub / path.name)
            found = found or match.group(1) == "epochs"
    return found


def _writer(tf, stack: contextlib.ExitStack, path: Path, kind: str):
    """A summary writer into ``path`` for events of ``kind``, closed (its events flushed) when ``stack`` ends,
    also after a failure: what was written before it is kept."""
    writer = tf.summary.create_file_writer(str(path), filename_suffix=f".{kind}.v2")
    stack.callback(writer.close)
    return writer


def _write_epochs(tf, folder: Path, entries: list[dict], log: RunLog) -> None:
    """Each epoch's numbers: ``val_x`` as ``validation/epoch_x``, the others as ``train/epoch_x``."""
    with contextlib.ExitStack() as stack:
        writers = {}  # made on first use: a run without validation photos has no validation folder
        for entry in entries:
            values = {k: v for k, v in entry.items() if k not in ("epoch", "phase") and _is_number(v)}
            rate = log.learning_rate(entry)
            if rate is not None:
                values["learning_rate"] = rate
            for key, value in values.items():
                split, name = (_VALIDATION, key[4:]) if key.startswith("val_") else (_TRAIN, key)
                if split not in writers:
                    writers[split] = _writer(tf, stack, folder / split, "epochs")
                with writers[split].as_default():
                    tf.summary.scalar(f"epoch_{name}", float(value), step=_epoch(entry))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _hparam_values(log: RunLog) -> dict:
    """The settings as HParams values (bool, number or text): no path leaves the machine (a weights file by
    its name), a pair of values or None as text, the input size as used."""
    values = {}
    for key, value in log.settings.items():
        if key == "input_size":
            value = int(log.input_size)
        elif key == "weights":
            value = "none" if value is None else value if value == "imagenet" else f"file {Path(str(value)).name}"
        elif value is None:
            value = "none"
        elif isinstance(value, (list, tuple)):
            value = "/".join(f"{v:g}" if _is_number(v) else str(v) for v in value)
        elif not isinstance(value, (bool, int, float, str)):
            value = str(value)
        values[key] = value
    values["classes"] = len(log.classes)
    values["fine_tuned_layers"] = int(log.fine_tuned_layers)
    return values


def _write_hparams(tf, folder: Path, log: RunLog) -> None:
    from tensorboard.plugins.hparams import api as hp

    with contextlib.ExitStack() as stack, _writer(tf, stack, folder, "hparams").as_default():
        # Named after the run: two runs with the same settings stay two sessions (not one averaged group).
        hp.hparams(_hparam_values(log), trial_id=log.name)


def _write_run_summaries(tf, folder: Path, log: RunLog) -> None:
    """At the last epoch: the final held-out accuracies, the validation confusion matrix, the phases."""
    step = max((_epoch(e) for e in log.history), default=0)
    with contextlib.ExitStack() as stack, _writer(tf, stack, folder, "run").as_default():
        for split in ("val", "test"):
            accuracy = (log.metrics.get(split) or {}).get("accuracy")
            if _is_number(accuracy):
                tf.summary.scalar(f"final/{split}_accuracy", float(accuracy), step=step)
        tf.summary.text("phases", _phases_text(log.history), step=step)
        matrix = (log.metrics.get("val") or {}).get("confusion") or []
        if matrix:
            tf.summary.image("confusion_matrix/validation", confusion_image(matrix, log.classes)[None], step=step,
                             description="Validation photos: rows are the true class, columns the predicted one; "
                                         "each cell's shade is its share of the row.")


def _phases_text(history: list[dict]) -> str:
    """A Markdown table of the phases and their epochs, in order (a phase may come back after another)."""
    rows: list[list] = []
    for entry in history:
        phase = str(entry.get("phase", "?"))
        if rows and rows[-1][0] == phase:
            rows[-1][2] = _epoch(entry)
        else:
            rows.append([phase, _epoch(entry), _epoch(entry)])
    lines = ["| phase | epochs |", "|---|---|"]
    lines += [f"| {phase} | {a}–{b} |" if a != b else f"| {phase} | {a} |" for phase, a, b in rows]
    return "\n".join(lines)


# The confusion matrix ------------------------------------------------------------------------------------

_CELL, _PAD = 56, 12


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # a Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def confusion_image(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> np.ndarray:
    """The confusion ``matrix`` (rows true, columns predicted) as an RGB ``uint8`` image ``(h, w, 3)``: one
    square of :data:`_CELL` pixels per pair of classes, shaded by its share of the row, with its count, the
    classes' names along both sides."""
    from PIL import Image, ImageDraw

    counts = np.asarray(matrix, dtype=np.int64).reshape(len(classes), len(classes))
    names = [_short(str(c)) for c in classes]
    font, small = _font(14), _font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(int(probe.textlength(n, font=font)) for n in names) + _PAD
    title = "rows: true class · columns: predicted"
    k = len(classes)
    left, top = label_w + _PAD, label_w + 2 * _PAD + 18
    width = max(left + k * _CELL + _PAD, int(probe.textlength(title, font=small)) + 2 * _PAD)
    image = Image.new("RGB", (width, top + k * _CELL + _PAD), "white")
    draw = ImageDraw.Draw(image)
    draw.text((_PAD, _PAD), title, fill=(60, 60, 60), font=small)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    for i in range(k):
        draw.text((_PAD, top + i * _CELL + _CELL // 2), names[i], fill="black", font=font, anchor="lm")
        for j in range(k):
            x, y = left + j * _CELL, top + i * _CELL
            # White to blue by the share of the row (the diagonal is the recall).
            s = float(share[i, j])
            colour = tuple(int(round(255 + (target - 255) * s)) for target in (31, 90, 180))
            draw.rectangle([x, y, x + _CELL - 1, y + _CELL - 1], fill=colour, outline=(200, 200, 200))
            draw.text((x + _CELL // 2, y + _CELL // 2), str(int(counts[i, j])), font=font, anchor="mm",
                      fill="white" if s > 0.55 else "black")
    for j in range(k):  # the predicted classes' names, written upwards above their columns
        text = Image.new("RGB", (label_w, 20), "white")
        ImageDraw.Draw(text).text((0, 10), names[j], fill="black", font=font, anchor="lm")
        rotated = text.rotate(90, expand=True)
        image.paste(rotated, (left + j * _CELL + (_CELL - rotated.width) // 2, top - _PAD // 2 - rotated.height))
    return np.asarray(image, dtype=np.uint8)


# The embedding projector ---------------------------------------------------------------------------------

def _projected(n: int) -> np.ndarray:
    """Which of ``n`` photos the projector shows: all, or :data:`MAX_PROJECTED` evenly spread."""
    if n <= MAX_PROJECTED:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_PROJECTED).round().astype(int))


def _thumbnail(pixels: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    if pixels.shape[0] == side and pixels.shape[1] == side:
        return pixels.astype(np.uint8)
    return np.asarray(Image.fromarray(pixels.astype(np.uint8)).resize((side, side), Image.BILINEAR))


def _embedded_photos(log: RunLog, chosen: np.ndarray, side: int, on_phase: PhaseCallback):
    """``(kept indices, features, thumbnails)`` of the ``chosen`` photos; a photo that cannot be read now is
    left out (it trained, so it was readable then)."""
    ticker = Ticker(lambda done, total: on_phase(LOGGING, done=done, total=total), len(chosen))
    ticker(0)
    kept, features, thumbs = [], [], []
    size = int(log.input_size)
    for start in range(0, len(chosen), _BATCH):
        batch, ids = [], []
        for i in chosen[start:start + _BATCH]:
            try:
                batch.append(load_image(log.photos[i][0], size if log.embed is not None else side))
                ids.append(int(i))
            except ImageDecodeError:
                continue
        if batch:
            pixels = np.stack(batch)
            if log.embed is not None:
                features.append(np.asarray(log.embed(pixels.astype(np.float32)), np.float32))
            else:
                features.append(np.asarray(log.features[ids], np.float32))
            thumbs += [_thumbnail(p, side) for p in pixels]
            kept += ids
        ticker(min(start + _BATCH, len(chosen)))
    if not kept:
        raise ValueError("none of the run's photos can be read")
    return kept, np.concatenate(features).reshape(len(kept), -1), thumbs


def _tsv_field(text: str) -> str:
    return re.sub(r"[\t\r\n]+", " ", text)


def _write_projector(folder: Path, log: RunLog, on_phase: PhaseCallback) -> None:
    from PIL import Image
    from google.protobuf import text_format
    from tensorboard.plugins import projector

    if not log.photos or (log.features is None and log.embed is None):
        return
    chosen = _projected(len(log.photos))
    side = min(_THUMB, _SPRITE_SIDE // math.ceil(math.sqrt(len(chosen))))
    kept, features, thumbs = _embedded_photos(log, chosen, side, on_phase)
    (folder / "projector").mkdir(parents=True, exist_ok=True)
    with open(folder / PROJECTOR_FILES["tensor"], "w", encoding="utf-8") as f:
        np.savetxt(f, features, fmt="%.5g", delimiter="\t")
    # Two columns, so the first line names them (the projector's rule for metadata).
    rows = ["label\tsplit"] + [f"{_tsv_field(log.photos[i][1])}\t{_tsv_field(log.photos[i][2])}" for i in kept]
    (folder / PROJECTOR_FILES["metadata"]).write_text("\n".join(rows) + "\n", encoding="utf-8")
    columns = math.ceil(math.sqrt(len(thumbs)))
    sprite = Image.new("RGB", (columns * side, math.ceil(len(thumbs) / columns) * side), "white")
    for n, thumb in enumerate(thumbs):
        sprite.paste(Image.fromarray(thumb), ((n % columns) * side, (n // columns) * side))
    sprite.save(folder / PROJECTOR_FILES["sprite"], quality=85)
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = f"photos ({len(kept)})"
    embedding.tensor_path = PROJECTOR_FILES["tensor"]
    embedding.tensor_shape.extend(features.shape)
    embedding.metadata_path = PROJECTOR_FILES["metadata"]
    embedding.sprite.image_path = PROJECTOR_FILES["sprite"]
    embedding.sprite.single_image_dim.extend([side, side])
    (folder / PROJECTOR_FILES["config"]).write_text(text_format.MessageToString(config), encoding="utf-8")


def _rename_events(folder: Path) -> None:
    """Give the event files just written a name without the machine's (TensorFlow puts the host name in it):
    ``events.out.tfevents.<time>.tlcore.<n>.<kind>.v2``, in time order after any copied from a parent."""
    n = 0
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        if _EVENTS.match(path.name):
            continue  # named already (copied from the parent)
        kind = next((k for k in ("epochs", "run", "hparams") if path.name.endswith(f".{k}.v2")), None)
        if kind is None:
            continue
        stamp = path.name.split(".")[3]
        target = path
        while target.exists():  # never over a copied file of the same second
            n += 1
            target = path.with_name(f"events.out.tfevents.{stamp}.tlcore.{n}.{kind}.v2")
        os.replace(path, target)
