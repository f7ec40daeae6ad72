"""Sharding across 2 workers: each input pipeline reads a disjoint part, and
together they read everything; file-level for TFRecord shards only where the
files split the records evenly, record-level otherwise; per file for image
trees. Eval gives every worker the same steps, whatever its share, and
counts each example once; each worker shuffles and augments with its own
seed, and pipeline 0 of 1 keeps the stream a single-device run has."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from data_fixtures import (cifar_arrays, cifar_jpegs, cifar_tree,  # noqa: F401
                           imagenet_raw, imagenet_records, photo_jpegs, write_shards)

from keras_resnet.preprocessing import EvalPreprocessing
from keras_resnet.trainers.data import InputOptions, cifar10, load_dataset, tfrecord
from keras_resnet.trainers.data.pipeline import eval_steps, pad_to_full_steps, shuffle_seed
from keras_resnet.trainers.data.streaming import image_dataset, list_source

GLOBAL_BATCH = 8  # 4 on each worker's one replica


def contexts(n=2):
    return [tf.distribute.InputContext(num_input_pipelines=n, input_pipeline_id=i,
                                       num_replicas_in_sync=n) for i in range(n)]


def names(source, context, shuffle, even=False):
    return [n.decode() for _, _, n, _ in
            source.records(context, shuffle, 1, even=even).as_numpy_iterator()]


def assert_partition(parts, everything):
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(everything)
    assert all(len(set(p)) == len(p) and p for p in parts)


def files_of(records):
    return {n.split(" record ")[0] for n in records}


def shard_set(folder, examples, num_shards, metadata=True):
    """TFRecord train shards of `examples` in `folder`, with dataset.json's
    per-shard counts (as prepare writes them) when `metadata`."""
    write_shards(folder, "train", examples, num_shards)
    files = tfrecord.find_shards(folder, "train")
    counts = tfrecord.count_records(files)
    if metadata:
        tfrecord.write_metadata(folder, {"shards": {os.path.basename(f): c
                                                    for f, c in zip(files, counts)}})
    return files, counts


@pytest.mark.parametrize("num_shards, counted, level", [
    (3, False, "record"),  # 3 files do not divide among 2 workers
    (4, True, "file"),     # 4 files of 4 records each
    (4, False, "file"),    # counts unknown: whole files for training...
])
@pytest.mark.parametrize("shuffle", [False, True])
def test_tfrecord_shards_split_between_two_workers(photo_jpegs, tmp_path, num_shards, counted,
                                                   level, shuffle):
    examples = [(data, 1, f"{name}_{k}.JPEG") for k, (name, data) in enumerate(photo_jpegs[:16])]
    files, counts = shard_set(str(tmp_path), examples, num_shards)
    source = tfrecord.record_source(files, 16, options=InputOptions(),
                                    shard_counts=counts if counted else None)
    everything = names(source, None, False)
    assert len(everything) == 16
    parts = [names(source, c, shuffle) for c in contexts()]
    assert_partition(parts, everything)
    assert len(parts[0]) == len(parts[1]) == 8  # balanced: 16 records, 2 workers
    if level == "file":  # whole files: no file's records are split
        assert not files_of(parts[0]) & files_of(parts[1])
    else:
        assert files_of(parts[0]) == files_of(parts[1]) == set(files)
    even = [names(source, c, False, even=True) for c in contexts()]
    assert_partition(even, everything)
    assert len(even[0]) == len(even[1]) == 8


def test_unequal_shards_are_split_per_record(photo_jpegs, tmp_path):
    """2 shards of 12 and 4 records would give 2 workers 12 and 4: known
    counts split them per record; unknown, eval (even) is split per record
    all the same, and only training takes whole files."""
    examples = [(data, 1, f"{name}_{k}.JPEG") for k, (name, data) in enumerate(photo_jpegs[:16])]
    write_shards(str(tmp_path / "a"), "train", examples[:12], 1)
    write_shards(str(tmp_path / "b"), "train", examples[12:], 1)
    files = [str(tmp_path / d / "train-00000-of-00001") for d in "ab"]

    def shares(counts, even):
        source = tfrecord.record_source(files, 16, options=InputOptions(), shard_counts=counts)
        parts = [names(source, c, True, even) for c in contexts()]
        assert_partition(parts, names(source, None, False))
        return sorted(len(p) for p in parts)

    assert shares([12, 4], False) == shares([12, 4], True) == shares(None, True) == [8, 8]
    assert shares(None, False) == [4, 12]


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


# Uneven eval splits. Labels are example ids 0..N-1 (N classes), so that a
# pass shows which examples it counted, and how often.

def in_memory(count, cifar_arrays, train_count=None):
    """CIFAR's in-memory pipelines over real images, labels = ids."""
    images = np.concatenate([cifar_arrays["train"][0], cifar_arrays["test"][0]])
    train_count = train_count or count
    train = np.resize(images, (train_count, *images.shape[1:])), np.arange(train_count)
    test = np.resize(images, (count, *images.shape[1:])), np.arange(count)
    return cifar10.in_memory_dataset(
        "ids", [str(i) for i in range(max(count, train_count))], train, test,
        EvalPreprocessing("cifar", 32, cifar10.mean_image(train[0])),
        InputOptions(seed=3, deterministic=True))


def streamed(count, cifar_jpegs, tmp_path, form, ten_crop=False):
    """The streamed pipelines over real JPEGs, labels = ids: a list in
    memory (cached or not), or 3 TFRecord shards for 2 workers."""
    jpegs = [cifar_jpegs[i % len(cifar_jpegs)] for i in range(count)]
    options = InputOptions(image_size=32, seed=3, deterministic=True, cache=form == "cached",
                           ten_crop=ten_crop)
    if form == "tfrecords":
        folder = str(tmp_path / "records")
        examples = [(data, i + 1, f"{i}.jpg") for i, data in enumerate(jpegs)]
        write_shards(folder, "train", examples, 3)
        write_shards(folder, "validation", examples, 3)
        with open(os.path.join(folder, tfrecord.LABELS_FILE), "w") as f:
            f.write("".join(f"{i}\n" for i in range(count)))
        return load_dataset("tfrecord", folder, options)
    source = list_source(list(range(count)), [f"{i}.jpg" for i in range(count)], contents=jpegs)
    return image_dataset("ids", [str(i) for i in range(count)], source, source, options)


def assert_counted_once(dataset, count, batches=None):
    """Every worker the same steps of full per-replica batches; the weights
    sum to `count` and the weighted ids are 0..count-1, each once."""
    batches = batches or dataset.eval
    steps, ids, weights = [], [], 0.0
    for context in contexts():
        n = 0
        for x, y, w in batches(GLOBAL_BATCH, context):
            assert x.shape[0] == y.shape[0] == w.shape[0] == GLOBAL_BATCH // 2
            ids += y.numpy()[w.numpy() > 0].tolist()
            weights += float(tf.reduce_sum(w))
            n += 1
        steps.append(n)
    assert steps == [eval_steps(count, GLOBAL_BATCH)] * 2
    assert weights == count
    assert sorted(ids) == list(range(count))


@pytest.mark.parametrize("count", [1, 11, 251])
def test_uneven_eval_in_memory_counts_each_example_once(count, cifar_arrays):
    assert_counted_once(in_memory(count, cifar_arrays), count)


@pytest.mark.parametrize("form, count", [("list", 1), ("cached", 11), ("tfrecords", 11),
                                         ("tfrecords", 251)])
def test_uneven_eval_streamed_counts_each_example_once(form, count, cifar_jpegs, tmp_path):
    assert_counted_once(streamed(count, cifar_jpegs, tmp_path, form), count)


def test_ten_crop_eval_is_sharded_and_counts_each_example_once(cifar_jpegs, tmp_path):
    dataset = streamed(11, cifar_jpegs, tmp_path, "tfrecords", ten_crop=True)
    assert_counted_once(dataset, 11, dataset.eval_ten_crop)
    views, _, _ = next(iter(dataset.eval_ten_crop(GLOBAL_BATCH, contexts()[0])))
    assert views.shape == (GLOBAL_BATCH // 2, 10, 32, 32, 3)


def first_epoch(dataset, context, size):
    """Ids of the first `size` training examples of a worker's stream."""
    ids = []
    for _, y in dataset.train(GLOBAL_BATCH, context):
        ids += y.numpy().tolist()
        if len(ids) >= size:
            return ids[:size]


@pytest.mark.parametrize("form", ["in_memory", "list", "tfrecords"])
def test_training_streams_are_disjoint_and_complete_per_epoch(form, cifar_arrays, cifar_jpegs,
                                                              tmp_path):
    count = 251
    if form == "in_memory":
        dataset = in_memory(11, cifar_arrays, train_count=count)
    else:
        dataset = streamed(count, cifar_jpegs, tmp_path, form)
    shares = [(count + 1) // 2, count // 2]  # per record: 126 and 125
    epochs = [first_epoch(dataset, c, n) for c, n in zip(contexts(), shares)]
    assert_partition(epochs, list(range(count)))


def test_workers_shuffle_and_augment_with_their_own_seeds(cifar_arrays):
    options = InputOptions(seed=3)
    assert shuffle_seed(options, None) == shuffle_seed(options, contexts(1)[0]) == 3
    assert len({shuffle_seed(options, c) for c in contexts()}) == 2
    # Each image twice in a row: both workers' shards hold the same examples,
    # so only their seeds can tell their streams apart.
    images, labels = cifar_arrays["train"]
    train = np.repeat(images[:32], 2, axis=0), np.repeat(labels[:32], 2)
    dataset = cifar10.in_memory_dataset(
        "pairs", cifar10.CLASS_NAMES, train, cifar_arrays["test"],
        EvalPreprocessing("cifar", 32, cifar10.mean_image(train[0])), options)
    first = [next(iter(dataset.train(GLOBAL_BATCH, c)))[0].numpy() for c in contexts()]
    assert not np.array_equal(first[0], first[1])


def test_one_pipeline_keeps_the_single_device_stream(cifar_arrays, cifar_jpegs, tmp_path):
    """Pipeline 0 of 1 (what a one-device run's strategy passes) reads what
    no context reads: options.seed itself, every example, one order."""
    for dataset in (in_memory(11, cifar_arrays, train_count=40),
                    streamed(40, cifar_jpegs, tmp_path, "tfrecords")):
        batches = [[(x.numpy(), y.numpy()) for x, y in dataset.train(8, context).take(6)]
                   for context in (None, contexts(1)[0])]
        for (x0, y0), (x1, y1) in zip(*batches):
            np.testing.assert_array_equal(y0, y1)
            np.testing.assert_array_equal(x0, x1)


def test_eval_reads_its_whole_stream_past_the_counted_share():
    """A bad example after the counted ones (a shard's end, or a count on
    loading that stopped at the damage) still stops the pass; examples past
    an estimated count are dropped, padding fills a short split."""
    images = tf.data.Dataset.range(6).map(lambda i: (tf.fill([2, 2, 3], tf.cast(i, tf.float32)), i))

    def fifth_is_bad(x, i):
        with tf.control_dependencies([tf.debugging.assert_less(i, tf.constant(4, tf.int64),
                                                               message="bad example")]):
            return tf.identity(x), i

    with pytest.raises(tf.errors.InvalidArgumentError, match="bad example"):
        list(pad_to_full_steps(images.take(5).map(fifth_is_bad), 4, None, 4))
    [(_, labels, weights)] = list(pad_to_full_steps(images, 4, None, 4))
    assert labels.numpy().tolist() == [0, 1, 2, 3] and weights.numpy().tolist() == [1, 1, 1, 1]
    [(_, labels, weights)] = list(pad_to_full_steps(images.take(3), 4, None, 4))
    assert labels.numpy().tolist() == [0, 1, 2, 0] and weights.numpy().tolist() == [1, 1, 1, 0]
