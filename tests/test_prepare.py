"""keras_resnet.trainers.prepare: an image tree (folder or tar) to ImageNet-format
TFRecord shards that the ImageNet reader reads back with the same labels and
pixels; its bad inputs; the absl binary."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from data_fixtures import cifar_tree, imagenet_raw, photo_classes, photo_jpegs  # noqa: F401

from keras_resnet.preprocessing import decode_image
from keras_resnet.trainers import prepare
from keras_resnet.trainers.data import InputOptions, cifar10, load_dataset, tfrecord

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    "image/class/synset": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/format": tf.io.FixedLenFeature([], tf.string),
}


def read_all(files):
    return [tf.io.parse_single_example(r, EXAMPLE) for r in tf.data.TFRecordDataset(files)]


@pytest.fixture(scope="module")
def prepared_cifar(cifar_slice, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("prepared") / "cifar")
    return out, prepare.prepare(cifar_slice, out, shards=4)


def test_shards_labels_and_pixels_match_the_tree(prepared_cifar, cifar_tree):
    out, metadata = prepared_cifar
    train = tfrecord.find_shards(out, "train")
    assert [os.path.basename(f) for f in train] == [f"train-0000{i}-of-00004" for i in range(4)]
    assert [os.path.basename(f) for f in tfrecord.find_shards(out, "test")] == \
        ["test-00000-of-00001"]
    assert tfrecord.read_labels(out) == cifar10.CLASS_NAMES
    assert metadata["splits"]["train"] == {"examples": 200, "shards": 4, "skipped": 0}
    examples = read_all(train)
    assert len(examples) == 200
    for shard in train:  # shuffled across shards: each mixes the classes
        assert len({int(e["image/class/label"]) for e in read_all([shard])}) >= 5
    seen = set()
    for example in examples:
        label = int(example["image/class/label"])  # 1-based, as build_imagenet_data
        assert 1 <= label <= 10
        synset = example["image/class/synset"].numpy().decode()
        assert synset == cifar10.CLASS_NAMES[label - 1]
        name = example["image/filename"].numpy().decode()
        original = open(os.path.join(cifar_tree, "train", synset, name), "rb").read()
        assert example["image/encoded"].numpy() == original  # the image's own bytes
        assert example["image/format"].numpy() == b"JPEG" and example["image/height"] == 32
        seen.add((synset, name))
    assert len(seen) == 200


def test_the_tfrecord_reader_reads_prepared_shards_back(prepared_cifar, cifar_tree):
    out, _ = prepared_cifar
    dataset = load_dataset("tfrecord", out, InputOptions(deterministic=True, image_size=32))
    assert dataset.class_names == cifar10.CLASS_NAMES
    assert (dataset.num_train, dataset.num_eval) == (200, 100)
    # The reader's decoded pixels and 0-based labels are the tree's.
    source_images, source_labels = cifar10.load_arrays(cifar_tree, "test")
    by_pixels = {img.tobytes(): int(lbl) for img, lbl in zip(source_images, source_labels)}
    records = read_all(tfrecord.find_shards(out, "test"))
    for example in records:
        pixels = decode_image(example["image/encoded"]).numpy().tobytes()
        assert by_pixels[pixels] == int(example["image/class/label"]) - 1
    labels = np.concatenate([y.numpy()[w.numpy() > 0] for _, y, w in dataset.eval(32)])
    np.testing.assert_array_equal(labels, [int(e["image/class/label"]) - 1 for e in records])


def test_prepared_imagenet_tree_reads_as_imagenet2012(imagenet_raw, tmp_path):
    out = str(tmp_path / "records")
    prepare.prepare(imagenet_raw, out, shards=2)
    options = InputOptions(deterministic=True, cache=False, image_size=96)
    from_records = load_dataset("imagenet2012", out, options)
    from_folders = load_dataset("imagenet2012", imagenet_raw, options)
    assert from_records.class_names == from_folders.class_names
    assert (from_records.num_train, from_records.num_eval) == (16, 8)

    def eval_set(dataset):
        return sorted((int(y), x.round(3).tobytes()) for xs, ys, ws in dataset.eval(8)
                      for x, y, w in zip(xs.numpy(), ys.numpy(), ws.numpy()) if w > 0)

    assert eval_set(from_records) == eval_set(from_folders)


def test_corrupt_images_stop_prepare_or_are_skipped_and_counted(imagenet_raw, tmp_path):
    import shutil

    src = tmp_path / "tree"
    shutil.copytree(imagenet_raw, src)
    bad = sorted((src / "train").glob("*/*.JPEG"))[3]
    bad.write_bytes(bad.read_bytes()[:500])
    with pytest.raises(ValueError, match=f"{bad}: corrupt or truncated image.*--skip_corrupt"):
        prepare.prepare(str(src), str(tmp_path / "out"), shards=2)
    metadata = prepare.prepare(str(src), str(tmp_path / "out2"), shards=2, skip_corrupt=True)
    assert metadata["splits"]["train"] == {"examples": 15, "shards": 2, "skipped": 1}
    assert metadata["skipped"] == [str(bad)]
    with pytest.raises(ValueError, match="already holds train shards"):
        prepare.prepare(str(src), str(tmp_path / "out2"), shards=2, skip_corrupt=True)


def test_a_plain_class_tree_is_prepared_as_the_training_split(photo_classes, tmp_path, caplog):
    """<class>/<image> without train/ (keras.utils.image_dataset_from_directory's
    layout): its images become the train shards, and the log says so."""
    caplog.set_level(logging.INFO)
    out = str(tmp_path / "out")
    metadata = prepare.prepare(photo_classes, out, shards=3)
    assert f"{photo_classes}: no train/ folder; its 3 class folders (astronaut, chelsea, " \
        "coffee) are taken as the training split: 300 images" in caplog.messages
    assert metadata["splits"] == {"train": {"examples": 300, "shards": 3, "skipped": 0}}
    assert tfrecord.read_labels(out) == ["astronaut", "chelsea", "coffee"]
    examples = read_all(tfrecord.find_shards(out, "train"))
    assert len(examples) == 300
    for example in examples[:20]:  # the image's own bytes, labelled by its folder
        synset = example["image/class/synset"].numpy().decode()
        name = example["image/filename"].numpy().decode()
        assert int(example["image/class/label"]) == 1 + ["astronaut", "chelsea", "coffee"].index(
            synset)
        with open(os.path.join(photo_classes, synset, name), "rb") as f:
            assert example["image/encoded"].numpy() == f.read()
    dataset = load_dataset("tfrecord", out, InputOptions(cache=False, image_size=32),
                           validation_split=True)  # evaluated on held-out train shards
    assert dataset.num_train + dataset.num_eval == 300 and dataset.num_eval > 0
    assert ("tfrecord: --validation_split holds out 1 of the 3 train shards: "
            f"{dataset.num_eval} of the 300 training images ({dataset.num_train} left to train "
            "on)") in caplog.messages


def test_bad_trees_are_clear_errors(imagenet_raw, tmp_path):
    import shutil

    with pytest.raises(ValueError, match="no such folder"):
        prepare.prepare(str(tmp_path / "missing"), str(tmp_path / "out"), shards=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no train/ folder, nor images in a plain <class>/<image>"):
        prepare.prepare(str(tmp_path / "empty"), str(tmp_path / "out"), shards=2)
    src = tmp_path / "eval_only"
    shutil.copytree(os.path.join(imagenet_raw, "validation"), src / "validation")
    with pytest.raises(ValueError, match=r"no train/ folder beside \['validation'\]"):
        prepare.prepare(str(src), str(tmp_path / "out"), shards=2)
    src = tmp_path / "tree"
    shutil.copytree(imagenet_raw, src)
    os.rename(src / "validation" / "n01440764", src / "validation" / "n00000001")
    with pytest.raises(ValueError, match="class folders differ"):
        prepare.prepare(str(src), str(tmp_path / "out"), shards=2)


def test_prepare_binary(cifar_slice, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = str(tmp_path / "out")
    proc = subprocess.run([sys.executable, "-m", "keras_resnet.trainers.prepare", f"--src={cifar_slice}",
                           f"--out={out}", "--shards=3"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train: 200 examples in 3 shards (0 corrupt skipped)" in proc.stdout
    assert "test: 100 examples in 1 shards" in proc.stdout
    with open(os.path.join(out, tfrecord.METADATA_FILE)) as f:
        assert sum(json.load(f)["shards"].values()) == 300
