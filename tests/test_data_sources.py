"""Every source load_dataset reads: CIFAR-10's pickle and binary batches and
image tree (folder and tar), TFDS (its offline failure), ImageNet TFRecord
shards (1-based labels) and the raw folder layout, generic folders."""

import logging
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from data_fixtures import (cifar_arrays, cifar_batches, cifar_tree, imagenet_raw,  # noqa: F401
                           imagenet_records, photo_classes, photo_jpegs)

from keras_resnet.preprocessing import EvalPreprocessing, decode_image
from keras_resnet.trainers.data import InputOptions, cifar10, load_dataset
from keras_resnet.trainers.data.pipeline import hold_out

ORDERED = InputOptions(deterministic=True)


def eval_examples(dataset, batch_size=8):
    """(images, labels) of one eval pass, padding (weight 0) dropped."""
    images, labels = [], []
    for x, y, w in dataset.eval(batch_size):
        keep = w.numpy() > 0
        images.append(x.numpy()[keep])
        labels.append(y.numpy()[keep])
    return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("form", ["py", "bin"])
def test_pickle_and_binary_batches_hold_the_tree_pixels(form, cifar_batches, cifar_arrays):
    for split in ("train", "test"):
        images, labels = cifar10.load_arrays(cifar_batches[form], split)
        np.testing.assert_array_equal(images, cifar_arrays[split][0])
        np.testing.assert_array_equal(labels, cifar_arrays[split][1])
    # The parent folder works as data_dir too, and routes to the local reader.
    dataset = load_dataset("cifar10", cifar_batches[form].rsplit("/", 1)[0], ORDERED)
    assert (dataset.num_train, dataset.num_eval) == (200, 100)
    _, labels = eval_examples(dataset, 32)
    np.testing.assert_array_equal(labels, cifar_arrays["test"][1])


def test_tree_from_folder_and_from_tar_are_identical(cifar_tree, cifar_slice, cifar_arrays):
    images, labels = cifar10.load_arrays(cifar_slice, "train")
    np.testing.assert_array_equal(images, cifar_arrays["train"][0])
    np.testing.assert_array_equal(labels, cifar_arrays["train"][1])
    assert images.shape == (200, 32, 32, 3) and np.bincount(labels).tolist() == [20] * 10
    # Pixels are TensorFlow's decode of the JPEG files.
    first = open(f"{cifar_tree}/train/airplane/0000.jpg", "rb").read()
    np.testing.assert_array_equal(images[0], decode_image(first).numpy())


def test_the_mean_image_is_the_float64_mean_bit_for_bit(cifar_arrays):
    """Exact integer sums: the same float32 mean as averaging float64 copies,
    on the real slice and on 5,001 random images (a count that does not
    divide evenly)."""
    random = np.random.default_rng(0).integers(0, 256, (5_001, 32, 32, 3), dtype=np.uint8)
    for images in (cifar_arrays["train"][0], random):
        want = images.astype(np.float64).mean(axis=0).astype(np.float32)
        assert cifar10.mean_image(images).tobytes() == want.tobytes()
    with pytest.raises(TypeError, match="uint8 images, not float32"):
        cifar10.mean_image(random.astype(np.float32))


def test_cifar_dataset_batches_and_preprocessing(cifar_slice, cifar_arrays):
    dataset = load_dataset("cifar10", cifar_slice, ORDERED)
    assert dataset.class_names == cifar10.CLASS_NAMES and dataset.image_shape == (32, 32, 3)
    x, y = next(iter(dataset.train(16)))
    assert x.shape == (16, 32, 32, 3) and x.dtype == tf.float32 and y.shape == (16,)
    images, labels = eval_examples(dataset, 32)
    expected = dataset.preprocessing(tf.constant(cifar_arrays["test"][0]))
    np.testing.assert_allclose(images, expected.numpy(), atol=1e-5)
    np.testing.assert_array_equal(labels, cifar_arrays["test"][1])


def _offline(monkeypatch):
    import tensorflow_datasets as tfds

    def fail(self, *args, **kwargs):
        raise ConnectionError("Failed to establish a new connection: no network")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fail)


@pytest.mark.parametrize("name, forms", [
    ("cifar10", ["cifar-10-batches-py", "cifar-10-batches-bin", ".tar.gz"]),
    ("imagenet2012", ["train-00000-of-01024", "train/<wnid>/*.JPEG", "keras_resnet.trainers.prepare",
                      "--tfds_manual_dir"]),
    ("cifar100", ["--dataset=folder", "keras_resnet.trainers.prepare"]),
])
def test_tfds_offline_failure_names_the_local_forms(name, forms, monkeypatch, tmp_path):
    _offline(monkeypatch)
    with pytest.raises(ValueError, match="TFDS could not download") as error:
        load_dataset(name, str(tmp_path))
    message = str(error.value)
    assert "ConnectionError" in message
    for form in forms:
        assert form in message, (form, message)


def test_unknown_dataset_name_is_a_clear_error():
    with pytest.raises(ValueError, match="not a TFDS dataset"):
        load_dataset("no_such_dataset_xyz", None)


def _expected_eval(encoded_list, size=224):
    preprocessing = EvalPreprocessing("imagenet", size)
    return np.stack([preprocessing(decode_image(e)).numpy() for e in encoded_list])


def test_imagenet_tfrecords_with_1_based_labels(imagenet_records):
    folder, expected = imagenet_records
    dataset = load_dataset("imagenet2012", folder, InputOptions(deterministic=True, cache=False))
    assert dataset.name == "imagenet2012" and dataset.num_classes == 1000
    assert (dataset.num_train, dataset.num_eval) == (16, 8)
    assert dataset.preprocessing == EvalPreprocessing("imagenet", 224)
    images, labels = eval_examples(dataset)
    validation = list(expected["validation"].values())  # one shard: file order
    np.testing.assert_array_equal(labels, [label - 1 for label, _ in validation])
    np.testing.assert_allclose(images, _expected_eval([e for _, e in validation]), atol=1e-3)
    x, y = next(iter(dataset.train(8)))
    assert x.shape == (8, 224, 224, 3) and set(y.numpy()) <= {label - 1 for label, _ in
                                                              expected["train"].values()}


def test_imagenet_raw_folders(imagenet_raw):
    dataset = load_dataset("imagenet2012", imagenet_raw, InputOptions(deterministic=True))
    assert dataset.class_names == ["n01440764", "n01443537", "n01484850", "n01491361"]
    assert (dataset.num_train, dataset.num_eval) == (16, 8)
    images, labels = eval_examples(dataset)
    files = sorted(tf.io.gfile.glob(f"{imagenet_raw}/validation/*/*.JPEG"))
    np.testing.assert_array_equal(labels, [dataset.class_names.index(f.split("/")[-2])
                                           for f in files])
    expected = _expected_eval([open(f, "rb").read() for f in files])
    np.testing.assert_allclose(images, expected, atol=1e-3)


@pytest.mark.parametrize("cache", [True, False])
def test_generic_folder_dataset_from_a_tar(cifar_slice, cifar_arrays, cache):
    dataset = load_dataset("folder", cifar_slice, InputOptions(deterministic=True, cache=cache,
                                                               image_size=32))
    assert dataset.class_names == cifar10.CLASS_NAMES
    assert (dataset.num_train, dataset.num_eval) == (200, 100)
    _, labels = eval_examples(dataset, 64)
    np.testing.assert_array_equal(labels, cifar_arrays["test"][1])
    x, _ = next(iter(dataset.train(8)))
    assert x.shape == (8, 32, 32, 3)


def test_validation_split_holds_out_part_of_train(imagenet_raw, imagenet_records):
    dataset = load_dataset("folder", imagenet_raw, InputOptions(), validation_split=True)
    assert (dataset.num_train, dataset.num_eval) == (14, 2)
    # Shards without labels.txt need a class count: only imagenet2012 has one.
    with pytest.raises(ValueError, match="labels.txt"):
        load_dataset("tfrecord", imagenet_records[0])
    dataset = load_dataset("imagenet2012", imagenet_records[0], InputOptions(cache=False),
                           validation_split=True)
    assert dataset.num_train + dataset.num_eval == 16 and dataset.num_eval > 0


def held_out_lines(caplog):
    return [r.getMessage() for r in caplog.records if "--validation_split holds out" in r.getMessage()]


def test_validation_split_of_a_small_cifar_copy_holds_out_a_tenth(cifar_slice, cifar_arrays,
                                                                  caplog):
    caplog.set_level(logging.INFO)
    dataset = load_dataset("cifar10", cifar_slice, ORDERED, validation_split=True)
    assert (dataset.num_train, dataset.num_eval) == (180, 20)
    assert held_out_lines(caplog) == [
        "cifar10: --validation_split holds out 20 of the 200 training images "
        "(evaluated on them; 180 left to train on)"]
    images, _ = eval_examples(dataset)
    train = {bytes(i) for i in cifar_arrays["train"][0]}
    assert len(images) == 20  # training images, none of the test split
    # (evaluated normalized: compare through the inverse of the mean subtraction)
    mean = dataset.preprocessing.mean_image
    assert all(bytes(np.round(x + mean).astype(np.uint8)) in train for x in images)


def test_the_full_cifar_copy_keeps_the_papers_45k_5k_split():
    """10%, at most 5,000: on 50,000 images the very split of before."""
    kept, held = hold_out("cifar10", 50_000, at_most=5_000)
    order = np.random.default_rng(0).permutation(50_000)
    np.testing.assert_array_equal(held, order[:5_000])
    np.testing.assert_array_equal(kept, np.sort(order[5_000:]))
    assert len(hold_out("big", 80_000, at_most=5_000)[1]) == 5_000
    with pytest.raises(ValueError, match="at least 2 training images.*has 1"):
        hold_out("tiny", 1)


@pytest.mark.parametrize("form", ["folder", "tar"])
def test_a_plain_class_tree_of_300_photos_is_the_training_split(photo_classes, form, tmp_path,
                                                                caplog):
    """<class>/<image> without train/, as keras.utils.image_dataset_from_directory
    reads it; --validation_split holds a tenth out for evaluation."""
    source = photo_classes
    if form == "tar":  # under one top folder, as `tar czf photos.tar.gz photos/` makes it
        source = str(tmp_path / "photos.tar.gz")
        with tarfile.open(source, "w:gz") as tar:
            tar.add(photo_classes, arcname="photos")
    caplog.set_level(logging.INFO)
    options = InputOptions(deterministic=True, cache=False, image_size=32, seed=1)
    dataset = load_dataset("folder", source, options, validation_split=True)
    assert dataset.class_names == ["astronaut", "chelsea", "coffee"]
    assert (dataset.num_train, dataset.num_eval) == (270, 30)
    messages = [r.getMessage() for r in caplog.records]
    assert f"{source}: no train/ folder; its 3 class folders (astronaut, chelsea, coffee) are " \
        "taken as the training split: 300 images" in messages
    assert held_out_lines(caplog) == [
        "folder: --validation_split holds out 30 of the 300 training images "
        "(evaluated on them; 270 left to train on)"]
    images, labels = eval_examples(dataset)
    assert images.shape == (30, 32, 32, 3) and set(labels) <= {0, 1, 2}
    x, y = next(iter(dataset.train(16)))
    assert x.shape == (16, 32, 32, 3)
    with pytest.raises(ValueError, match="no validation/, val/ or test/ folder.*--validation_split"):
        load_dataset("folder", source, options)


def test_a_tar_whose_class_folders_sit_in_several_places_is_refused(photo_classes, tmp_path):
    source = str(tmp_path / "mixed.tar")
    with tarfile.open(source, "w") as tar:
        tar.add(f"{photo_classes}/coffee", arcname="a/coffee")
        tar.add(f"{photo_classes}/chelsea", arcname="b/chelsea")
    with pytest.raises(ValueError, match="class folders sit in several places \\(a, b\\)"):
        load_dataset("folder", source, validation_split=True)


def test_any_tfds_image_dataset_streams_its_encoded_images(photo_jpegs, tmp_path):
    """A TFDS dataset of variable-size photos (a tiny builder prepared here,
    offline) streams through the ImageNet recipes; TFDS decoding is skipped."""
    import tensorflow_datasets as tfds

    photos = [decode_image(data).numpy() for _, data in photo_jpegs[:10]]

    class TinyPhotos(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "label": tfds.features.ClassLabel(names=["even", "odd"]),
            }))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(range(8)),
                    "test": self._generate_examples(range(8, 10))}

        def _generate_examples(self, indices):
            for i in indices:
                yield str(i), {"image": photos[i], "label": i % 2}

    TinyPhotos(data_dir=str(tmp_path)).download_and_prepare()
    dataset = load_dataset("tiny_photos", str(tmp_path), InputOptions(image_size=64, cache=False))
    assert dataset.class_names == ["even", "odd"]
    assert (dataset.num_train, dataset.num_eval) == (8, 2)
    assert dataset.preprocessing == EvalPreprocessing("imagenet", 64)
    x, y = next(iter(dataset.train(4)))
    assert x.shape == (4, 64, 64, 3) and set(y.numpy()) <= {0, 1}
    _, labels = eval_examples(dataset, 2)
    assert sorted(labels.tolist()) == [0, 1]
    # Two workers: one eval step each, each example counted once.
    passes = [list(dataset.eval(2, tf.distribute.InputContext(2, i, 2))) for i in range(2)]
    assert [len(p) for p in passes] == [1, 1]
    assert sorted(int(y) for p in passes for _, ys, ws in p for y in ys.numpy()[ws.numpy() > 0]) \
        == [0, 1]
    held = load_dataset("tiny_photos", str(tmp_path), InputOptions(cache=False),
                        validation_split=True)
    assert held.num_train + held.num_eval == 8 and held.num_eval >= 1


def test_cache_decision_estimates_from_a_sample_and_the_memory_free(photo_jpegs, photo,
                                                                    monkeypatch, caplog):
    """A tree whose first image is a 16x16 thumbnail: the first image alone
    made the split look hundreds of times smaller than it decodes."""
    import io
    import logging

    from PIL import Image

    from keras_resnet.trainers.data import streaming

    thumbnail = io.BytesIO()
    Image.fromarray(photo("coffee", 16).astype(np.uint8)).save(thumbnail, format="JPEG")
    jpegs = [thumbnail.getvalue()] + [data for _, data in photo_jpegs] * 4  # 97 images
    source = streaming.list_source([0] * len(jpegs), [f"{i}.jpg" for i in range(len(jpegs))],
                                   contents=jpegs)
    exact = sum(int(np.prod(tf.image.extract_jpeg_shape(j).numpy())) for j in jpegs)
    estimate = streaming.decoded_size(source)
    assert 0.8 < estimate / exact < 1.25
    assert 16 * 16 * 3 * len(jpegs) * 100 < estimate

    caplog.set_level(logging.INFO)
    for memory, cached in ((5 * estimate, True), (estimate, False)):
        monkeypatch.setattr(streaming, "available_memory", lambda m=memory: m)
        caplog.clear()
        streaming.image_dataset("photos", ["a"], source, source, InputOptions(image_size=32))
        decision = [r.getMessage() for r in caplog.records if "decoded images take" in
                    r.getMessage()]
        assert decision and ("cached in memory" in decision[0]) == cached, decision
