"""Any TFDS image-classification dataset by name (`image` and `label`
features), with --data_dir as TFDS's data_dir.

Small fixed-size images (CIFAR-10/100, SVHN, MNIST, ...) are held in memory
and get the CIFAR recipe; anything else streams its encoded images (TFDS
decoding skipped) through the ImageNet recipes, decoding only crop windows.
Offline, a failed download ends in a message naming the local forms.
"""

import numpy as np
from absl import logging

from keras_resnet.trainers.data import cifar10
from keras_resnet.trainers.data.pipeline import VALIDATION_FRACTION, shard
from keras_resnet.trainers.data.streaming import Source, image_dataset

# Fixed-size images up to this side and this many bytes decoded: in memory.
IN_MEMORY_SIDE = 64
IN_MEMORY_BYTES = 2 << 30
GENERIC_FORMS = (
    "an image tree train/<class>/<image> with validation/ or test/ beside it, in a folder or "
    "a .tar/.tar.gz (--dataset=folder), or TFRecord shards from python -m keras_resnet.trainers.prepare "
    "(--dataset=tfrecord)"
)


def _builder(name, data_dir, options, local_forms):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(f"--dataset={name!r} is not a TFDS dataset (nor a local reader's: "
                         "cifar10, imagenet2012, folder, tfrecord)") from error
    if builder.is_prepared():
        return builder
    manual_dir = options.tfds_manual_dir
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except Exception as error:  # offline, missing tarballs, ...: all say the same
        raise ValueError(
            f"TFDS could not download or prepare {name!r} into "
            f"{data_dir or 'its default data_dir'} ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). "
            + (f"imagenet2012 needs the ImageNet tarballs in --tfds_manual_dir "
               f"(now {manual_dir!r}). " if name == "imagenet2012" else "")
            + f"Without TFDS, point --data_dir at a local copy: {local_forms}"
        ) from error
    return builder


def _check_features(name, builder):
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(f"TFDS {name!r} has features {list(features)}; image classification "
                         "needs 'image' and 'label'")
    return features["image"].shape, features["label"].names


def _splits(builder, validation_split):
    splits = builder.info.splits
    if validation_split:
        percent = round(100 * (1 - VALIDATION_FRACTION))
        return f"train[:{percent}%]", f"train[{percent}%:]"
    eval_split = next((s for s in ("validation", "test") if s in splits), None)
    if "train" not in splits or eval_split is None:
        raise ValueError(f"TFDS splits {list(splits)} lack train and validation/test; "
                         "pass --validation_split to hold out part of train")
    return "train", eval_split


def _arrays(builder, split, channels):
    import tensorflow_datasets as tfds

    data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    images = np.asarray(data["image"], np.uint8)
    if channels == 1:
        images = np.repeat(images, 3, axis=-1)
    return images, np.asarray(data["label"], np.int64)


def _stream_source(builder, split, options):
    import tensorflow_datasets as tfds

    info = builder.info.splits[split]

    def records(input_context, shuffle, seed, even=False):
        del even  # whole files only where they split the examples evenly: even already
        pipelines = input_context.num_input_pipelines if input_context else 1
        per_file = pipelines == 1 or (info.num_shards % pipelines == 0
                                      and len(set(info.shard_lengths)) == 1)
        read_config = tfds.ReadConfig(
            input_context=input_context if per_file and pipelines > 1 else None,
            shuffle_seed=seed, add_tfds_id=True, try_autocache=False)
        ds = builder.as_dataset(split=split, shuffle_files=shuffle and per_file,
                                decoders={"image": tfds.decode.SkipDecoding()},
                                read_config=read_config)
        ds = ds.map(lambda ex: (ex["image"], ex["label"], ex["tfds_id"], ""))
        if not per_file:
            ds = shard(ds, input_context)
        if shuffle:
            ds = ds.shuffle(options.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return ds

    return Source(info.num_examples, records)


def tfds_dataset(name, data_dir, options, validation_split, local_forms=GENERIC_FORMS):
    """A Dataset of TFDS `name` (downloaded and prepared if it must be)."""
    builder = _builder(name, data_dir, options, local_forms)
    shape, class_names = _check_features(name, builder)
    train_split, eval_split = _splits(builder, validation_split)
    num_train = builder.info.splits[train_split].num_examples
    fixed = None not in shape and shape[0] == shape[1] and shape[0] <= IN_MEMORY_SIDE
    if fixed and num_train * shape[0] * shape[1] * 3 <= IN_MEMORY_BYTES:
        logging.info("TFDS %s: %s images held in memory, CIFAR recipe", name, shape)
        if name == "cifar10":
            # The paper's 45k/5k split, as from the local forms.
            return cifar10.from_arrays(name, class_names, _arrays(builder, "train", 3),
                                       lambda: _arrays(builder, "test", 3), options,
                                       validation_split)
        return cifar10.from_arrays(name, class_names, _arrays(builder, train_split, shape[2]),
                                   lambda: _arrays(builder, eval_split, shape[2]), options,
                                   False)
    sources = [_stream_source(builder, split, options) for split in (train_split, eval_split)]
    return image_dataset(name, class_names, *sources, options)

