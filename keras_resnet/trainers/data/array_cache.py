"""Decoded arrays of an archive, kept in the user's cache folder so that a
rerun does not decode the same JPEGs again (CIFAR-10's 60k take 15-35 s).

A cache file holds the arrays together with the key they were made under:
the archive's absolute path, size and mtime, the TensorFlow version (its
decoder made the pixels) and how they were read. Any other key, or a file
that does not load, is ignored and rewritten. Files are written to a temp
name and renamed, so a reader never sees a half-written one.

Folder: $KERAS_RESNET_CACHE_DIR, else $XDG_CACHE_HOME/keras_resnet, else
~/.cache/keras_resnet.
"""

import hashlib
import json
import os
import zipfile

import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet import model_dir as model_dir_lib

ENV_VAR = "KERAS_RESNET_CACHE_DIR"
FORMAT = 1  # bump when what is stored changes


def cache_dir():
    """Where cache files go: $KERAS_RESNET_CACHE_DIR, else the XDG cache folder."""
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "keras_resnet")


def _key(archive, **how):
    stat = os.stat(archive)
    return {"archive": os.path.abspath(archive), "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns, "tensorflow": tf.__version__, "format": FORMAT,
            **how}


def cache_path(archive, name, **how):
    """One file per archive and way of reading it; a changed archive
    overwrites its own file instead of leaving stale ones behind."""
    ident = json.dumps([os.path.abspath(archive), how], sort_keys=True)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return os.path.join(cache_dir(), f"{name}-{digest}.npz")


def _load(path, key, fields):
    try:
        with np.load(path, allow_pickle=False) as data:
            if json.loads(str(data["key"])) != key:
                return None
            return tuple(data[f] for f in fields)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        logging.warning("Ignoring the unreadable cache %s (%s); decoding again", path, error)
        return None


def _save(path, key, fields, arrays):
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, key=np.array(json.dumps(key, sort_keys=True)), **dict(zip(fields, arrays)))

    try:
        model_dir_lib.atomic_write(path, write)
    except OSError as error:  # a read-only home: the run goes on, uncached
        logging.warning("Could not write the cache %s (%s); set %s to a writable folder",
                        path, error, ENV_VAR)


def cached(archive, name, fields, build, **how):
    """The arrays `build()` returns for `archive` (a tuple named `fields`),
    from the cache when it holds them for this very archive, else built and
    stored. `how` (JSON values) names the options the arrays depend on."""
    key = _key(archive, **how)
    path = cache_path(archive, name, **how)
    arrays = _load(path, key, fields)
    if arrays is not None:
        logging.info("Read %s of %s from the cache %s", name, archive, path)
        return arrays
    logging.info("Decoding %s of %s; the arrays go to the cache %s", name, archive, path)
    arrays = build()
    _save(path, key, fields, arrays)
    return arrays
