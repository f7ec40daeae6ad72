"""ImageNet's TFRecord format, as the well-known build_imagenet_data script
writes it: shards `<split>-00000-of-01024` of tf.train.Examples with the JPEG
in `image/encoded` and a 1-based `image/class/label` (0 is "background").

`trainers.prepare` writes the same features, plus `labels.txt` (class names
in label order) and `dataset.json` (examples per shard).
"""

import json
import os
import re

import numpy as np
import tensorflow as tf

from keras_resnet import model_dir as model_dir_lib
from keras_resnet.trainers.data.pipeline import AUTOTUNE, shard
from keras_resnet.trainers.data.streaming import Source

LABEL_OFFSET = 1
LABELS_FILE = "labels.txt"
# build_imagenet_data's labels file: one wnid a line, label = line number.
SYNSETS_FILES = ("imagenet_lsvrc_2015_synsets.txt", "synsets.txt")
METADATA_FILE = "dataset.json"
SHARD_RE = re.compile(r"^(?P<split>[a-z_]+)-(?P<index>\d{5})-of-(?P<total>\d{5})$")
EVAL_SPLITS = ("validation", "val", "test")
RECORD_OVERHEAD = 16  # length (8 bytes) + its CRC (4) + the data's CRC (4)
READ_BUFFER = 8 << 20
CYCLE_LENGTH = 16
FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}


def shard_name(split, index, total):
    return f"{split}-{index:05d}-of-{total:05d}"


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def make_example(encoded, label, *, filename, height, width, image_format, synset, text=""):
    """A tf.train.Example with build_imagenet_data's features; `label` is 1-based."""
    features = {
        "image/height": _int(height),
        "image/width": _int(width),
        "image/colorspace": _bytes(b"RGB"),
        "image/channels": _int(3),
        "image/class/label": _int(label),
        "image/class/synset": _bytes(synset.encode()),
        "image/class/text": _bytes(text.encode()),
        "image/format": _bytes(image_format.encode()),
        "image/filename": _bytes(filename.encode()),
        "image/encoded": _bytes(encoded),
    }
    return tf.train.Example(features=tf.train.Features(feature=features))


def parse(record):
    """(encoded image, 0-based label) of a serialized Example."""
    features = tf.io.parse_single_example(record, FEATURES)
    return features["image/encoded"], features["image/class/label"] - LABEL_OFFSET


def find_shards(data_dir, split):
    """The complete, sorted shard paths of `split` in data_dir ([] if none);
    a missing shard is an error that names it."""
    if not os.path.isdir(data_dir):
        return []
    found = {}
    for name in os.listdir(data_dir):
        match = SHARD_RE.match(name)
        if match and match["split"] == split:
            found.setdefault(int(match["total"]), {})[int(match["index"])] = name
    if not found:
        return []
    if len(found) > 1:
        raise ValueError(f"{data_dir}: {split} shards of different totals {sorted(found)}")
    total, shards = next(iter(found.items()))
    missing = [shard_name(split, i, total) for i in range(total) if i not in shards]
    if missing:
        raise ValueError(f"{data_dir}: {len(missing)} of {total} {split} shards are missing, "
                         f"first {missing[0]}")
    return [os.path.join(data_dir, shards[i]) for i in range(total)]


def eval_split(data_dir):
    """The first of validation, val, test with shards in data_dir, or None."""
    for split in EVAL_SPLITS:
        if find_shards(data_dir, split):
            return split
    return None


def write_metadata(out_dir, metadata):
    """Atomically: a reader never sees half the counts that check the shards."""
    model_dir_lib.write_json(os.path.join(out_dir, METADATA_FILE), metadata)


def read_metadata(data_dir):
    path = os.path.join(data_dir, METADATA_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_labels(data_dir):
    """Class names in label order from labels.txt or a synsets file, or None."""
    for name in (LABELS_FILE,) + SYNSETS_FILES:
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return [line.strip() for line in f if line.strip()]
    return None


def count_records(files):
    """Records per file, by reading them (for shards without dataset.json)."""
    return [int(tf.data.TFRecordDataset(f).ignore_errors().reduce(np.int64(0), lambda n, _: n + 1))
            for f in files]


def _file_records(path, size, expected):
    """(record, -1, name, problem) of one shard. A corrupt or truncated
    record ends the shard: the bytes read then fall short of its size, and a
    final element names the file and the place. So does a shard cut at a
    record boundary, whose bytes all read: it holds other than the
    `expected` records of dataset.json (or of a count on loading; -1: not
    known)."""
    records = tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER).ignore_errors()
    records = records.map(lambda r: (r, False)).concatenate(
        tf.data.Dataset.from_tensors((tf.constant(b""), True)))

    def step(state, element):
        index, consumed = state
        record, end = element
        problem = tf.case([
            (tf.logical_and(end, tf.not_equal(consumed, size)), lambda: tf.strings.format(
                "corrupt or truncated record ({} records read, {} of {} bytes); the rest of "
                "the file is unreadable", (index, consumed, size))),
            (tf.logical_and(end, tf.logical_and(expected >= 0, tf.not_equal(index, expected))),
             lambda: tf.strings.format(
                 "{} records, not the {} that " + METADATA_FILE + " (or a count on loading) "
                 "gives: the shard was cut or replaced", (index, expected))),
        ], default=lambda: tf.constant(""))
        name = tf.strings.join([path, " record ", tf.strings.as_string(index)])
        consumed += tf.cast(tf.strings.length(record), tf.int64) + RECORD_OVERHEAD
        keep = tf.logical_or(tf.logical_not(end), tf.not_equal(problem, ""))
        return (index + 1, consumed), (record, tf.constant(-1, tf.int64), name, problem, keep)

    records = records.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), step)
    records = records.filter(lambda record, label, name, problem, keep: keep)
    return records.map(lambda record, label, name, problem, keep: (record, label, name, problem))


def _unpack(payload, label):
    del label  # inside the record
    return parse(payload)


def record_source(files, count, approximate_count=False, *, options, shard_counts=None):
    """A Source over TFRecord shards: parallel interleave over the files, a
    shuffle buffer of records. Each input pipeline reads its own files where
    that splits the records evenly: the files divide among the pipelines and
    `shard_counts` (records per file, None: not known) are equal; for an
    `even` split (eval) they must be known. Else its own records."""
    files = list(files)
    sizes = [tf.io.gfile.stat(f).length for f in files]
    expected = [-1] * len(files) if shard_counts is None else list(shard_counts)
    equal_files = shard_counts is not None and len(set(shard_counts)) == 1

    def records(input_context, shuffle, seed, even=False):
        pipelines = input_context.num_input_pipelines if input_context else 1
        per_file = pipelines == 1 or (len(files) % pipelines == 0 and (
            equal_files or (shard_counts is None and not even)))
        ds = tf.data.Dataset.from_tensor_slices(
            (files, tf.constant(sizes, tf.int64), tf.constant(expected, tf.int64)))
        if per_file:
            ds = shard(ds, input_context)
            if shuffle:
                ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(_file_records, cycle_length=min(len(files), CYCLE_LENGTH),
                           block_length=1, num_parallel_calls=AUTOTUNE,
                           # Record-level sharding needs one order on every pipeline.
                           deterministic=options.deterministic or not per_file)
        if not per_file:
            ds = shard(ds, input_context)
        if shuffle:
            ds = ds.shuffle(options.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return ds

    return Source(count, records, _unpack, LABEL_OFFSET, approximate_count)
