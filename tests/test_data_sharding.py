"""Sharding across 2 workers: each input pipeline reads a disjoint part, and
together they read everything (file-level for TFRecord shards where there are
enough files, record-level otherwise; per file for image trees)."""

import numpy as np
import pytest
import tensorflow as tf
from data_fixtures import (cifar_arrays, cifar_tree, imagenet_raw,  # noqa: F401
                           imagenet_records, photo_jpegs)

from keras_resnet.trainers.data import InputOptions, load_dataset, tfrecord
from keras_resnet.trainers.data.streaming import list_source


def contexts(n=2):
    return [tf.distribute.InputContext(num_input_pipelines=n, input_pipeline_id=i,
                                       num_replicas_in_sync=n) for i in range(n)]


def names(source, context, shuffle):
    return [n.decode() for _, _, n, _ in
            source.records(context, shuffle, 1).as_numpy_iterator()]


def assert_partition(parts, everything):
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(everything)
    assert all(len(set(p)) == len(p) and p for p in parts)


@pytest.mark.parametrize("split, level", [("train", "file"), ("validation", "record")])
@pytest.mark.parametrize("shuffle", [False, True])
def test_tfrecord_shards_split_between_two_workers(imagenet_records, split, level, shuffle):
    files = tfrecord.find_shards(imagenet_records[0], split)
    assert (len(files) >= 2) == (level == "file")
    source = tfrecord.record_source(files, 0, options=InputOptions())
    everything = names(source, None, False)
    assert len(everything) == len(imagenet_records[1][split])
    parts = [names(source, c, shuffle) for c in contexts()]
    assert_partition(parts, everything)
    if level == "file":  # whole files: no file's records are split
        assert not {n.split(" record ")[0] for n in parts[0]} & \
            {n.split(" record ")[0] for n in parts[1]}


def test_image_tree_files_split_between_two_workers(imagenet_raw):
    files = sorted(tf.io.gfile.glob(f"{imagenet_raw}/train/*/*.JPEG"))
    source = list_source([0] * len(files), files, paths=files)
    assert_partition([names(source, c, True) for c in contexts()], files)


def _eval_pixels(dataset, context):
    keys = []
    for x, y, w in dataset.eval(4, context):
        for image, label, weight in zip(x.numpy(), y.numpy(), w.numpy()):
            if weight > 0:
                keys.append((int(label), image.round(2).tobytes()))
    return keys


@pytest.mark.parametrize("name, fixture", [("imagenet2012", "imagenet_raw"),
                                           ("cifar10", "cifar_tree")])
def test_datasets_eval_and_train_per_worker(name, fixture, request):
    data_dir = request.getfixturevalue(fixture)
    dataset = load_dataset(name, data_dir, InputOptions(deterministic=True, image_size=64))
    everything = _eval_pixels(dataset, None)
    assert len(everything) == dataset.num_eval
    assert_partition([_eval_pixels(dataset, c) for c in contexts()], everything)
    # Training batches are per replica: a global 8 is 4 on each of 2 replicas.
    for context in contexts():
        x, y = next(iter(dataset.train(8, context)))
        assert x.shape[0] == 4 and y.shape == (4,)
