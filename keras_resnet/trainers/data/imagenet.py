"""ImageNet (imagenet2012) and any image-classification tree or TFRecord
shard set, streamed with the ImageNet recipes of keras_resnet.preprocessing.

imagenet2012 is read from TFRecord shards (build_imagenet_data's format) or
the raw `train/<wnid>/*.JPEG` folders when data_dir holds them, else TFDS.
`--dataset=folder` reads any image tree (folder or tar), `--dataset=tfrecord`
any shard set in that format (`trainers.prepare` makes one from a tree).
"""

import os

import numpy as np
from absl import logging

from keras_resnet.trainers.data import image_tree, tfrecord
from keras_resnet.trainers.data.pipeline import VALIDATION_FRACTION, hold_out
from keras_resnet.trainers.data.streaming import image_dataset, list_source

NUM_CLASSES = 1000
# The standard set: examples and shards of each split.
STANDARD = {"train": (1_281_167, 1024), "validation": (50_000, 128)}
LOCAL_FORMS = (
    "TFRecord shards train-00000-of-01024 ... and validation-00000-of-00128 ... "
    "(image/encoded, 1-based image/class/label, as build_imagenet_data writes them), "
    "the raw folders train/<wnid>/*.JPEG and validation/<wnid>/*.JPEG, or any "
    "image tree converted with `python -m keras_resnet.trainers.prepare --src=<tree> --out=<dir>`"
)
TREE_FORMS = ("an image tree train/<class>/<image> with validation/, val/ or test/ "
              "beside it, or a plain <class>/<image> tree (with --validation_split), "
              "in a folder or a .tar/.tar.gz")


def imagenet2012(data_dir, options, validation_split):
    if data_dir and os.path.isdir(data_dir):
        if tfrecord.find_shards(data_dir, "train"):
            return tfrecords(data_dir, options, validation_split, "imagenet2012", NUM_CLASSES)
        if os.path.isdir(os.path.join(data_dir, "train")):
            return folder(data_dir, options, validation_split, "imagenet2012")
    if data_dir and image_tree.is_tar(data_dir):
        return folder(data_dir, options, validation_split, "imagenet2012")
    from keras_resnet.trainers.data.tfds_source import tfds_dataset

    return tfds_dataset("imagenet2012", data_dir, options, validation_split, LOCAL_FORMS)


def _source(split):
    return list_source(split.labels, split.names, paths=split.paths, contents=split.contents)


def _pick(split, indices):
    def take(values):
        return None if values is None else [values[i] for i in indices]

    return image_tree.Split(split.class_names, take(split.names), take(split.labels),
                            contents=take(split.contents), paths=take(split.paths))


def folder(data_dir, options, validation_split, name="folder"):
    """Any one-folder-per-class tree, in a folder or a tar (held in memory)."""
    if not data_dir:
        raise ValueError(f"--dataset={name} needs --data_dir: {TREE_FORMS}")
    splits = image_tree.split_names(data_dir)
    train = image_tree.read_train(data_dir, splits)
    if validation_split:
        kept, held = hold_out(name, len(train.labels))
        train, test = _pick(train, kept), _pick(train, np.sort(held))
    else:
        eval_name = next((s for s in image_tree.EVAL_SPLITS if s in splits), None)
        if eval_name is None:
            raise ValueError(f"{data_dir}: no validation/, val/ or test/ folder beside the "
                             "training images (pass --validation_split to hold out part of "
                             "them)")
        test = image_tree.read_split(data_dir, eval_name)
        image_tree.check_same_classes(data_dir, train, test)
    return image_dataset(name, train.class_names, _source(train), _source(test), options)


def _counts(files, metadata, name):
    """(examples, approximate, examples per shard or None) of shards: from
    dataset.json, the standard ImageNet split sizes (per shard unknown), or
    by reading them."""
    per_shard = (metadata or {}).get("shards", {})
    names = [os.path.basename(f) for f in files]
    if all(n in per_shard for n in names):
        counts = [per_shard[n] for n in names]
        return sum(counts), False, counts
    split = tfrecord.SHARD_RE.match(names[0])["split"]
    if name == "imagenet2012" and split in STANDARD:
        examples, shards = STANDARD[split]
        total = int(tfrecord.SHARD_RE.match(names[0])["total"])
        if total == shards:
            return round(examples * len(files) / shards), len(files) != shards, None
    logging.info("Counting the records of %d %s shards (no %s)", len(files), split,
                 tfrecord.METADATA_FILE)
    counts = tfrecord.count_records(files)
    return sum(counts), False, counts


def tfrecords(data_dir, options, validation_split, name="tfrecord", num_classes=None):
    """TFRecord shards in build_imagenet_data's format (prepare's output).
    Classes: labels.txt (or a synsets file) in data_dir, else `num_classes`
    named by their 1-based labels."""
    if not data_dir or not os.path.isdir(data_dir):
        raise ValueError(f"--data_dir={data_dir!r} is not a folder of TFRecord shards "
                         "(make them with python -m keras_resnet.trainers.prepare)")
    train_files = tfrecord.find_shards(data_dir, "train")
    if not train_files:
        raise ValueError(f"{data_dir}: no train-NNNNN-of-NNNNN shards; make them with "
                         f"python -m keras_resnet.trainers.prepare --src=<image tree> --out={data_dir}")
    metadata = tfrecord.read_metadata(data_dir)
    class_names = tfrecord.read_labels(data_dir)
    if class_names is None:
        if num_classes is None:
            raise ValueError(f"{data_dir}: no {tfrecord.LABELS_FILE} naming the classes in "
                             "label order (prepare writes one)")
        logging.warning("%s: no %s; classes are named by their 1-based label", data_dir,
                        tfrecord.LABELS_FILE)
        class_names = [str(i + tfrecord.LABEL_OFFSET) for i in range(num_classes)]
    if validation_split:
        if len(train_files) < 2:
            raise ValueError(f"{data_dir}: --validation_split holds out whole train shards "
                             "and needs at least 2")
        held = max(1, round(len(train_files) * VALIDATION_FRACTION))
        train_files, eval_files = train_files[:-held], train_files[-held:]
    else:
        split = tfrecord.eval_split(data_dir)
        if split is None:
            raise ValueError(f"{data_dir}: no validation-, val- or test- shards beside the train "
                             "shards (or pass --validation_split to hold out train shards)")
        eval_files = tfrecord.find_shards(data_dir, split)
    sources = []
    for files in (train_files, eval_files):
        count, approximate, shard_counts = _counts(files, metadata, name)
        sources.append(tfrecord.record_source(files, count, approximate, options=options,
                                              shard_counts=shard_counts))
    if validation_split:
        kept, held = (source.count for source in sources)
        logging.info("%s: --validation_split holds out %d of the %d train shards: %d of the %d "
                     "training images (%d left to train on)", name, len(eval_files),
                     len(train_files) + len(eval_files), held, kept + held, kept)
    return image_dataset(name, class_names, *sources, options)
