"""Small real datasets for the input-pipeline tests, built once per session:
slices of the shared CIFAR-10 copy in each of its local forms, and
ImageNet-format TFRecords and raw folders made from real skimage photos.

Test modules import the fixtures they use: `from data_fixtures import ...`.
"""

import os
import pickle
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from benchmarks.input_pipeline import PHOTOS, photo_variants
from keras_resnet.trainers.data import cifar10

# A few ImageNet wnids for the raw layout; labels follow their sorted order.
WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361")
SHORTER = (240, 300)  # ImageNet-like photos, small enough for quick tests


@pytest.fixture(scope="session")
def cifar_tree(cifar_slice, tmp_path_factory):
    """The CIFAR slice extracted: <root>/train/<class>/NNNN.jpg, <root>/test/..."""
    root = tmp_path_factory.mktemp("cifar_tree")
    with tarfile.open(cifar_slice) as tar:
        tar.extractall(root, filter="data")
    return str(root / "cifar10")


@pytest.fixture(scope="session")
def cifar_arrays(cifar_tree):
    """{"train"|"test": (images, labels)} of the slice, decoded from the tree."""
    return {split: cifar10.load_arrays(cifar_tree, split) for split in ("train", "test")}


@pytest.fixture(scope="session")
def cifar_batches(cifar_arrays, tmp_path_factory):
    """The slice as python pickle batches and as binary batches:
    {"py": <dir>/cifar-10-batches-py, "bin": <dir>/cifar-10-batches-bin}."""
    root = tmp_path_factory.mktemp("cifar_batches")
    py, binary = root / "cifar-10-batches-py", root / "cifar-10-batches-bin"
    py.mkdir()
    binary.mkdir()
    train_images, train_labels = cifar_arrays["train"]
    chunks = np.array_split(np.arange(len(train_labels)), 5)
    batches = [(f"data_batch_{i + 1}", train_images[c], train_labels[c]) for i, c in enumerate(chunks)]
    batches.append(("test_batch", *cifar_arrays["test"]))
    for name, images, labels in batches:
        planar = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        with open(py / name, "wb") as f:
            pickle.dump({b"data": planar, b"labels": [int(x) for x in labels]}, f)
        records = np.concatenate([labels.astype(np.uint8)[:, None], planar], axis=1)
        records.tofile(str(binary / f"{name}.bin"))
    return {"py": str(py), "bin": str(binary)}


@pytest.fixture(scope="session")
def photo_jpegs():
    """24 distinct real-photo JPEGs (crops/flips of skimage photos, shorter
    side 240-300): a list of (photo name, bytes)."""
    return list(photo_variants(24, shorter=SHORTER, seed=3))


@pytest.fixture(scope="session")
def photo_classes(tmp_path_factory):
    """A plain class tree of 300 real-photo JPEGs, no train/ folder:
    <root>/<photo>/NNN.jpg, 100 crops/flips/resizes (shorter side 40-64) of
    each of 3 skimage photos, the layout keras.utils.image_dataset_from_directory
    reads."""
    root = tmp_path_factory.mktemp("photo_classes")
    names = ("astronaut", "chelsea", "coffee")
    for k, (name, data) in enumerate(photo_variants(300, shorter=(40, 64), seed=5, names=names)):
        (root / name).mkdir(exist_ok=True)
        (root / name / f"{k:03d}.jpg").write_bytes(data)
    return str(root)


def imagenet_example(encoded, label, filename):
    """A tf.train.Example as build_imagenet_data writes it (1-based label),
    made here independently of trainers.data.tfrecord."""
    shape = tf.image.extract_jpeg_shape(encoded).numpy()

    def b(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def i(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    return tf.train.Example(features=tf.train.Features(feature={
        "image/height": i(int(shape[0])), "image/width": i(int(shape[1])),
        "image/colorspace": b(b"RGB"), "image/channels": i(3),
        "image/class/label": i(label), "image/class/synset": b(b"n00000000"),
        "image/class/text": b(b""), "image/format": b(b"JPEG"),
        "image/filename": b(filename.encode()), "image/encoded": b(encoded),
    })).SerializeToString()


def write_shards(folder, split, examples, num_shards):
    """Writes (encoded, 1-based label, filename) examples round-robin into
    `split`-NNNNN-of-NNNNN files; returns the expected {filename: (label, bytes)}."""
    os.makedirs(folder, exist_ok=True)
    writers = [tf.io.TFRecordWriter(os.path.join(folder, f"{split}-{s:05d}-of-{num_shards:05d}"))
               for s in range(num_shards)]
    for k, (encoded, label, filename) in enumerate(examples):
        writers[k % num_shards].write(imagenet_example(encoded, label, filename))
    for writer in writers:
        writer.close()
    return {filename: (label, encoded) for encoded, label, filename in examples}


@pytest.fixture(scope="session")
def imagenet_records(photo_jpegs, tmp_path_factory):
    """ImageNet-format shards: 16 train records in 3 shards, 8 validation
    records in 1; labels 1..len(PHOTOS) (1-based). Returns (dir, expected)
    with expected[split] = {filename: (1-based label, jpeg bytes)}."""
    folder = str(tmp_path_factory.mktemp("imagenet_records"))
    examples = [(data, PHOTOS.index(name) + 1, f"{name}_{k}.JPEG")
                for k, (name, data) in enumerate(photo_jpegs)]
    expected = {"train": write_shards(folder, "train", examples[:16], 3),
                "validation": write_shards(folder, "validation", examples[16:], 1)}
    return folder, expected


@pytest.fixture(scope="session")
def imagenet_raw(photo_jpegs, tmp_path_factory):
    """The raw layout train/<wnid>/*.JPEG and validation/<wnid>/*.JPEG:
    4 classes, 4 train and 2 validation photos each."""
    root = tmp_path_factory.mktemp("imagenet_raw")
    for k, (_, data) in enumerate(photo_jpegs):
        wnid = WNIDS[k % 4]
        split = "train" if k < 16 else "validation"
        folder = root / split / wnid
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{wnid}_{k}.JPEG").write_bytes(data)
    return str(root)


@pytest.fixture(scope="session")
def cifar_jpegs():
    """The shared copy's first 26 test JPEGs of each class (260), as bytes:
    real small images for pipelines that need many distinct examples."""
    import io

    from PIL import Image

    from conftest import _cifar_test_images

    images, _ = _cifar_test_images(26)
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=95)
        encoded.append(buffer.getvalue())
    return encoded
