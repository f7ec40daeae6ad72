"""Bad input: a corrupt or truncated image or record, a label outside the
class range, an empty or missing directory, train and test class folders
that differ. A clear error that names the file, or with skip_corrupt the bad
example skipped and counted in the log; never a silent drop, never a hang."""

import dataclasses
import logging
import os
import shutil
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from data_fixtures import (cifar_tree, imagenet_raw, imagenet_records,  # noqa: F401
                           photo_jpegs, write_shards)

from keras_resnet.trainers.data import InputOptions, load_dataset, streaming, tfrecord

SKIP = InputOptions(skip_corrupt=True, cache=False)


def real_examples(batches):
    """Examples of an eval pass (weight > 0), read to the end."""
    return int(sum(float(tf.reduce_sum(w)) for _, _, w in batches))


def skipped_lines(caplog):
    return [r.getMessage() for r in caplog.records if "Skipped bad example" in r.getMessage()]


@pytest.fixture
def raw_copy(imagenet_raw, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(imagenet_raw, root)
    return root


def _first(root, split):
    return sorted((root / split).glob("*/*.JPEG"))[0]


def test_truncated_image_is_named_or_skipped_and_counted(raw_copy, caplog):
    bad = _first(raw_copy, "validation")
    bad.write_bytes(bad.read_bytes()[:2000])
    dataset = load_dataset("imagenet2012", str(raw_copy), InputOptions(cache=False))
    with pytest.raises(tf.errors.OpError, match=f"{bad}: unreadable.*--skip_corrupt"):
        real_examples(dataset.eval(4))
    caplog.set_level(logging.WARNING)
    dataset = load_dataset("imagenet2012", str(raw_copy), SKIP)
    assert real_examples(dataset.eval(4)) == 7
    lines = skipped_lines(caplog)
    assert len(lines) == 1 and str(bad) in lines[0] and "#1" in lines[0]


def test_corrupt_image_in_training_is_named_or_skipped(raw_copy, caplog):
    bad = _first(raw_copy, "train")
    bad.write_bytes(b"not an image at all" * 50)
    dataset = load_dataset("imagenet2012", str(raw_copy), InputOptions(cache=False))
    with pytest.raises(tf.errors.OpError, match=str(bad)):
        for _ in dataset.train(16).take(3):
            pass
    caplog.set_level(logging.WARNING)
    dataset = load_dataset("imagenet2012", str(raw_copy), SKIP)
    for x, _ in dataset.train(15).take(2):  # 15 good images an epoch: bad one met
        assert x.shape[0] == 15
    assert any(str(bad) in line for line in skipped_lines(caplog))



def test_truncated_jpeg_in_training_is_caught_whatever_the_crop(photo_jpegs, tmp_path, caplog):
    """Training decodes only its crop window, which a JPEG missing its last
    rows passes while the crop stays above them: each image is checked
    whole (its end marker, else a full decode), so the bad one is named at
    once, or with skip_corrupt never trained on, in any epoch."""
    root = tmp_path / "tree"
    good = [data for _, data in photo_jpegs[:5]]
    cut = good[0][:len(good[0]) * 97 // 100]
    height, width, _ = tf.image.extract_jpeg_shape(cut).numpy()
    window = [0, 0, height * 4 // 5, width]
    assert tf.image.decode_and_crop_jpeg(cut, window).shape == (height * 4 // 5, width, 3)
    for split, files in (("train", {"a/cut.JPEG": cut, **{f"b/{k}.JPEG": good[k]
                                                          for k in range(1, 5)}}),
                         ("validation", {"a/0.JPEG": good[0], "b/1.JPEG": good[1]})):
        for name, data in files.items():
            (root / split / name).parent.mkdir(parents=True, exist_ok=True)
            (root / split / name).write_bytes(data)
    bad = root / "train" / "a" / "cut.JPEG"
    assert streaming.whole(tf.constant(good[0] + b"\0" * 8)).numpy() == good[0] + b"\0" * 8
    with pytest.raises(tf.errors.OpError):
        streaming.whole(tf.constant(cut))
    options = InputOptions(cache=False, image_size=32, seed=1)
    with pytest.raises(tf.errors.OpError, match=f"{bad}: unreadable"):
        for _ in load_dataset("folder", str(root), options).train(4).take(2):  # an epoch
            pass
    caplog.set_level(logging.WARNING)
    dataset = load_dataset("folder", str(root), dataclasses.replace(options, skip_corrupt=True))
    labels = [y.numpy() for _, y in dataset.train(4).take(10)]  # 10 epochs of 4 good images
    assert (np.concatenate(labels) == 1).all()
    lines = skipped_lines(caplog)
    assert len(lines) == 1 and str(bad) in lines[0]


def test_corrupt_image_in_a_cifar_tar(cifar_tree, tmp_path, caplog):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(cifar_tree, arcname="cifar10")
    bad = os.path.join(cifar_tree, "train", "cat", "0003.jpg")
    data = open(bad, "rb").read()
    with tarfile.open(path, "a") as tar:  # a later member of the same name wins
        info = tar.gettarinfo(bad, arcname="cifar10/train/cat/0003.jpg")
        info.size = len(data) // 3
        tar.addfile(info, open(bad, "rb"))
    with pytest.raises(ValueError, match="cifar10/train/cat/0003.jpg: corrupt or truncated"):
        load_dataset("cifar10", str(path))
    caplog.set_level(logging.WARNING)
    dataset = load_dataset("cifar10", str(path), InputOptions(skip_corrupt=True))
    assert dataset.num_train == 200  # the good copy of 0003.jpg is read too
    assert any("Skipped 1 corrupt images" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("damage", ["truncate", "flip_a_byte"])
def test_corrupt_or_truncated_record_names_the_shard(imagenet_records, tmp_path, damage,
                                                     caplog):
    folder = tmp_path / "records"
    shutil.copytree(imagenet_records[0], folder)
    shard = folder / "validation-00000-of-00001"
    data = bytearray(shard.read_bytes())
    if damage == "truncate":
        data = data[:-100]
    else:
        data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    dataset = load_dataset("imagenet2012", str(folder), InputOptions(cache=False))
    with pytest.raises(tf.errors.OpError,
                       match=f"{shard} record [0-9]+: corrupt or truncated record"):
        real_examples(dataset.eval(4))
    caplog.set_level(logging.WARNING)
    dataset = load_dataset("imagenet2012", str(folder), SKIP)
    kept = real_examples(dataset.eval(4))
    assert 0 < kept < 8
    lines = skipped_lines(caplog)
    assert len(lines) == 1 and str(shard) in lines[0]



@pytest.mark.parametrize("cache", [False, True])
def test_shard_cut_at_a_record_boundary_names_the_shard(imagenet_records, tmp_path, cache,
                                                        caplog):
    """Every byte of a shard cut between records reads: only the count that
    dataset.json gives shows the records lost."""
    folder = tmp_path / "records"
    shutil.copytree(imagenet_records[0], folder)
    shards = sorted(p.name for p in folder.glob("*-of-*"))
    counts = tfrecord.count_records([str(folder / name) for name in shards])
    tfrecord.write_metadata(str(folder), {"shards": dict(zip(shards, counts))})
    shard = folder / "validation-00000-of-00001"
    records = list(tf.data.TFRecordDataset(str(shard)).as_numpy_iterator())
    with tf.io.TFRecordWriter(str(shard)) as writer:
        for record in records[:7]:
            writer.write(record)
    options = InputOptions(cache=cache)
    dataset = load_dataset("imagenet2012", str(folder), options)
    with pytest.raises(tf.errors.OpError, match=f"{shard} record 7: 7 records, not the 8 that "
                                                "dataset.json"):
        real_examples(dataset.eval(4))
    caplog.set_level(logging.WARNING)
    dataset = load_dataset("imagenet2012", str(folder),
                           dataclasses.replace(options, skip_corrupt=True))
    assert real_examples(dataset.eval(4)) == 7
    lines = skipped_lines(caplog)
    assert len(lines) == 1 and str(shard) in lines[0]


def test_label_outside_the_class_range(photo_jpegs, tmp_path, caplog):
    folder = str(tmp_path)
    examples = [(data, k % 4 + 1, f"{k}.JPEG") for k, (_, data) in enumerate(photo_jpegs[:6])]
    examples[2] = (examples[2][0], 0, "background.JPEG")  # 0: below 1-based labels
    examples[4] = (examples[4][0], 5, "five.JPEG")  # labels.txt names 4 classes
    write_shards(folder, "train", examples, 2)
    write_shards(folder, "validation", examples, 1)
    with open(os.path.join(folder, "labels.txt"), "w") as f:
        f.write("a\nb\nc\nd\n")
    dataset = load_dataset("tfrecord", folder, InputOptions(cache=False, deterministic=True))
    with pytest.raises(tf.errors.OpError, match="validation-00000-of-00001 record 2: label 0 "
                                                "outside 1..4"):
        real_examples(dataset.eval(2))
    caplog.set_level(logging.WARNING)
    dataset = load_dataset("tfrecord", folder, InputOptions(cache=False, skip_corrupt=True))
    assert real_examples(dataset.eval(2)) == 4
    lines = skipped_lines(caplog)
    assert len(lines) == 2 and any("label 5 outside 1..4" in line for line in lines)


def test_empty_or_missing_directories(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset("cifar10", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no such folder"):
        load_dataset("folder", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no train/ folder"):
        load_dataset("folder", str(tmp_path))
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images found under 'train/<class>/'"):
        load_dataset("imagenet2012", str(tmp_path))
    with pytest.raises(ValueError, match="no train-NNNNN-of-NNNNN shards"):
        load_dataset("tfrecord", str(tmp_path))
    with pytest.raises(ValueError, match="needs --data_dir"):
        load_dataset("folder", None)


def test_missing_shard_is_named(imagenet_records, tmp_path):
    folder = tmp_path / "records"
    shutil.copytree(imagenet_records[0], folder)
    (folder / "train-00001-of-00003").unlink()
    with pytest.raises(ValueError, match="1 of 3 train shards are missing, first "
                                         "train-00001-of-00003"):
        load_dataset("imagenet2012", str(folder))


def test_class_folders_differ_between_train_and_test(raw_copy):
    wnid = sorted(os.listdir(raw_copy / "validation"))[0]
    os.rename(raw_copy / "validation" / wnid, raw_copy / "validation" / "n99999999")
    with pytest.raises(ValueError, match=rf"class folders differ.*only in train: \['{wnid}'\]; "
                                         r"only in test: \['n99999999'\]"):
        load_dataset("imagenet2012", str(raw_copy))


def test_an_image_tree_that_is_not_cifar10(raw_copy):
    with pytest.raises(ValueError, match="are not CIFAR-10's"):
        load_dataset("cifar10", str(raw_copy))
