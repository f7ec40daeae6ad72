"""Converts a one-folder-per-class image tree (a folder or a .tar/.tar.gz)
into TFRecord shards in ImageNet's format, so any folder dataset gets the
fast input path:

    python -m keras_resnet.trainers.prepare --src=../shared/datasets/cifar10-jpeg.tar.gz \
        --out=/tmp/cifar10-records --shards=8

writes train-00000-of-00008 ..., and test-/val-/validation- shards for the
eval folders the tree has, of tf.train.Examples as build_imagenet_data
writes them (the image's own bytes in image/encoded, 1-based
image/class/label), plus labels.txt (class names in label order) and
dataset.json (examples per shard). Read them back with
--dataset=tfrecord --data_dir=<out> (or --dataset=imagenet2012 for ImageNet).
A plain <class>/<image> tree without train/ (what
keras.utils.image_dataset_from_directory reads) is taken as the training
split: evaluate on part of it with --validation_split.

Every image is decoded once to check it: a corrupt one is an error naming
it, or skipped and counted with --skip_corrupt. Examples are shuffled across
shards (fixed --seed), so each shard mixes all classes.
"""

import os

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from keras_resnet.arguments import list_flags_in_help
from keras_resnet.preprocessing import decode_image
from keras_resnet.trainers.data import image_tree, tfrecord
from keras_resnet.trainers.data.pipeline import map_encoded

FLAGS = flags.FLAGS
FORMATS = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"))


def define_flags():
    flags.DEFINE_string("src", None, "Image tree: a folder or .tar/.tar.gz holding "
                        "train/<class>/<image> and optionally validation/, val/ or test/, "
                        "or a plain <class>/<image> tree, taken as the training split.")
    flags.DEFINE_string("out", None, "Folder for the shards, labels.txt and dataset.json.")
    flags.DEFINE_integer("shards", 16, "Train shards.")
    flags.DEFINE_integer("eval_shards", None, "Shards of each eval split (default: "
                         "shards/8 rounded up, ImageNet's 1024:128).")
    flags.DEFINE_bool("skip_corrupt", False, "Skip (and count) corrupt images instead of "
                      "stopping with an error.")
    flags.DEFINE_integer("seed", 0, "Seed of the order of examples across shards.")
    flags.mark_flags_as_required(["src", "out"])


def image_format(data):
    return next((name for magic, name in FORMATS if data.startswith(magic)), "UNKNOWN")


def _read(split, i):
    if split.contents is not None:
        return split.contents[i]
    with open(split.paths[i], "rb") as f:
        return f.read()


def check_images(split, skip_corrupt):
    """(index, height, width) of every readable image, decoding each once in
    parallel; a corrupt one raises naming it, or is skipped and counted."""
    shapes = map_encoded(split, lambda data: tf.shape(decode_image(data))[:2],
                         tf.zeros([2], tf.int32), batch=256)
    good, skipped = [], []
    for i, (shape, ok) in enumerate(shapes):
        if ok:
            good.append((i, int(shape[0]), int(shape[1])))
        elif skip_corrupt:
            skipped.append(split.names[i])
            logging.warning("Skipped corrupt image #%d: %s", len(skipped), split.names[i])
        else:
            raise ValueError(f"{split.names[i]}: corrupt or truncated image (TensorFlow cannot "
                             "decode it); pass --skip_corrupt to skip such files")
    return good, skipped


def write_split(split, name, out, num_shards, skip_corrupt, seed):
    """Writes `name`-NNNNN-of-NNNNN shards; returns {shard: examples}, skipped names."""
    good, skipped = check_images(split, skip_corrupt)
    if not good:
        raise ValueError(f"{name}: no readable image among {len(split.names)}")
    order = np.random.default_rng(seed).permutation(len(good))
    num_shards = min(num_shards, len(good))
    counts = {}
    for s, chunk in enumerate(np.array_split(order, num_shards)):
        shard = tfrecord.shard_name(name, s, num_shards)
        with tf.io.TFRecordWriter(os.path.join(out, shard + ".tmp")) as writer:
            for j in chunk:
                i, height, width = good[j]
                data = _read(split, i)
                label = split.labels[i]
                writer.write(tfrecord.make_example(
                    data, label + tfrecord.LABEL_OFFSET,
                    filename=os.path.basename(split.names[i]), height=height, width=width,
                    image_format=image_format(data), synset=split.class_names[label],
                ).SerializeToString())
        os.replace(os.path.join(out, shard + ".tmp"), os.path.join(out, shard))
        counts[shard] = len(chunk)
    logging.info("%s: %d examples in %d shards (%d skipped)", name, len(good), num_shards,
                 len(skipped))
    return counts, skipped


def prepare(src, out, shards, eval_shards=None, skip_corrupt=False, seed=0):
    """Converts the tree `src` into shards in `out`; returns the metadata."""
    if shards < 1 or (eval_shards is not None and eval_shards < 1):
        raise ValueError("--shards and --eval_shards must be >= 1")
    eval_shards = eval_shards or -(-shards // 8)
    names = image_tree.split_names(src)
    splits = {"train": image_tree.read_train(src, names)}
    for name in image_tree.EVAL_SPLITS:
        if name in names:
            splits[name] = image_tree.read_split(src, name)
            image_tree.check_same_classes(src, splits["train"], splits[name])
    os.makedirs(out, exist_ok=True)
    for name in splits:
        if tfrecord.find_shards(out, name):
            raise ValueError(f"{out} already holds {name} shards; remove them or choose another --out")
    class_names = splits["train"].class_names
    metadata = {"source": os.path.abspath(src), "label_offset": tfrecord.LABEL_OFFSET,
                "class_names": class_names, "splits": {}, "shards": {}, "skipped": []}
    for name, split in splits.items():
        counts, skipped = write_split(split, name, out, shards if name == "train" else eval_shards,
                                      skip_corrupt, seed)
        metadata["splits"][name] = {"examples": sum(counts.values()), "shards": len(counts),
                                    "skipped": len(skipped)}
        metadata["shards"].update(counts)
        metadata["skipped"] += skipped
    with open(os.path.join(out, tfrecord.LABELS_FILE), "w", encoding="utf-8") as f:
        f.write("".join(f"{c}\n" for c in class_names))
    tfrecord.write_metadata(out, metadata)
    return metadata


def main(argv):
    del argv
    try:
        metadata = prepare(FLAGS.src, FLAGS.out, FLAGS.shards, FLAGS.eval_shards,
                           FLAGS.skip_corrupt, FLAGS.seed)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    for name, split in metadata["splits"].items():
        print(f"{name}: {split['examples']} examples in {split['shards']} shards"
              f" ({split['skipped']} corrupt skipped)")
    print(f"{len(metadata['class_names'])} classes; written to {FLAGS.out}")


def run():
    """Console-script entry point (keras-resnet-prepare)."""
    define_flags()
    list_flags_in_help(FLAGS)
    app.run(main)


if __name__ == "__main__":
    run()
