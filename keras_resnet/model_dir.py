"""The trained-model folder: what the trainer writes and export reads.

    model_dir/
      checkpoints/ckpt-00000391.keras   model + optimizer state, one per save
      model.keras                        the final model, written last
      preprocessing.json                 keras_resnet.preprocessing.EvalPreprocessing
      labels.txt                         class names, one per line, in label order

Every file is written beside its final name, flushed to disk and renamed
into place, so a reader never sees half a file, even after kill -9 or a
power cut.
"""

import json
import os
import re
import tempfile

import keras

import keras_resnet.layers  # noqa: F401  registers ZeroPadShortcut for load_model

CHECKPOINT_DIR = "checkpoints"
MODEL_FILE = "model.keras"
PREPROCESSING_FILE = "preprocessing.json"
LABELS_FILE = "labels.txt"
_CHECKPOINT_RE = re.compile(r"^ckpt-(\d+)\.keras$")


def atomic_write(path, write):
    """Calls write(tmp_path), then renames tmp_path to `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = "." + os.path.basename(path).split(".", 1)[-1]  # load_model wants ".keras"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; readers may be other users
        _fsync(tmp)  # the bytes reach the disk before the name does: a crash leaves old or new
        os.replace(tmp, path)
        _fsync(folder)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path, value):
    """`value` as indented JSON at `path`, written aside and renamed into place."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=2)
            f.write("\n")

    atomic_write(path, write)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def checkpoint_path(model_dir, step):
    return os.path.join(model_dir, CHECKPOINT_DIR, f"ckpt-{int(step):08d}.keras")


def checkpoints(model_dir):
    """(step, path) of every complete checkpoint, oldest first."""
    folder = os.path.join(model_dir, CHECKPOINT_DIR)
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = _CHECKPOINT_RE.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return sorted(found)


def latest_checkpoint(model_dir):
    """(step, path) of the newest checkpoint, or None."""
    found = checkpoints(model_dir)
    return found[-1] if found else None


def save_checkpoint(model, model_dir, step, keep=3):
    """Saves model and optimizer state at `step`; keeps the newest `keep`."""
    path = checkpoint_path(model_dir, step)
    atomic_write(path, model.save)
    for _, old in checkpoints(model_dir)[:-keep]:
        os.remove(old)
    return path


def write_labels(model_dir, class_names):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(f"{name}\n" for name in class_names))

    atomic_write(os.path.join(model_dir, LABELS_FILE), write)


def read_labels(model_dir):
    path = os.path.join(model_dir, LABELS_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def trained_model_path(model_dir):
    """model.keras if training finished, else the newest checkpoint."""
    final = os.path.join(model_dir, MODEL_FILE)
    if os.path.exists(final):
        return final
    latest = latest_checkpoint(model_dir)
    if latest is None:
        raise ValueError(
            f"model_dir={model_dir!r} holds neither {MODEL_FILE} nor a "
            f"checkpoint under {CHECKPOINT_DIR}/; train a model into it first"
        )
    return latest[1]


def load_trained_model(model_dir, compile=False):
    """The trained model of a model_dir (see trained_model_path)."""
    return keras.models.load_model(trained_model_path(model_dir), compile=compile)
