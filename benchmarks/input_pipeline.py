"""Input pipeline throughput, in images/s, in one run:

- CIFAR-10 from the shared archive: the first epoch (reading and decoding the
  archive, then one pass) and cached epochs (the trainer's pipeline);
- an ImageNet-format TFRecord set built in /tmp from real skimage photos
  (each replicated as distinct random crops/flips at ImageNet sizes): the
  training pipelines (scale and inception recipes, decoding only the crop
  window) against a naive one (decode the whole image, resize, then crop) on
  the same files, and the eval pipeline;
- the ResNet-50 training step rate of this machine (float32), to which the
  ImageNet pipeline is compared.

    nice -n 10 python benchmarks/input_pipeline.py

writes benchmarks/results/input_pipeline.md (table) and .png (bar chart).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import RESULTS, SHARED_CIFAR10, machine_load  # noqa: E402

# Real colour photos of skimage.data at 300 px or more.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
          "hubble_deep_field", "stereo_motorcycle", "retina")
GOALS = {"cifar_cached": 20_000, "vs_naive": 1.5, "vs_resnet50": 3.0}


def _photo(name):
    import skimage.data

    image = getattr(skimage.data, name)()
    return image[0] if isinstance(image, tuple) else image


def photo_variants(count, shorter=(300, 450), seed=0, quality=92, names=PHOTOS):
    """`count` distinct JPEGs made from the real photos `names` (of PHOTOS),
    in turn: each a random crop (60-100% of each side) of one, flipped or
    not, resized so its shorter side is random in `shorter` (ImageNet's
    typical sizes). Yields (photo name, JPEG bytes)."""
    rng = np.random.default_rng(seed)
    photos = [(name, _photo(name)) for name in names]
    for i in range(count):
        name, image = photos[i % len(photos)]
        h, w = image.shape[:2]
        ch, cw = (int(s * rng.uniform(0.6, 1.0)) for s in (h, w))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = image[top:top + ch, left:left + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        side = rng.integers(shorter[0], shorter[1] + 1)
        scale = side / min(ch, cw)
        size = [max(round(ch * scale), side), max(round(cw * scale), side)]
        resized = tf.cast(tf.clip_by_value(tf.round(
            tf.image.resize(crop, size, antialias=True)), 0, 255), tf.uint8)
        yield name, tf.io.encode_jpeg(resized, quality=quality).numpy()


def build_records(out, count, shards):
    """An ImageNet-format shard set (train and validation) of photo variants."""
    from keras_resnet.trainers.data import tfrecord

    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    examples = list(photo_variants(count))
    metadata = {"shards": {}}
    for split, n_shards in (("train", shards), ("validation", 1)):
        for s, chunk in enumerate(np.array_split(np.arange(len(examples)), n_shards)):
            name = tfrecord.shard_name(split, s, n_shards)
            with tf.io.TFRecordWriter(os.path.join(out, name)) as writer:
                for i in chunk:
                    photo, data = examples[i]
                    shape = tf.image.extract_jpeg_shape(data).numpy()
                    writer.write(tfrecord.make_example(
                        data, PHOTOS.index(photo) + 1, filename=f"{photo}_{i}.JPEG",
                        height=int(shape[0]), width=int(shape[1]), image_format="JPEG",
                        synset=photo).SerializeToString())
            metadata["shards"][name] = len(chunk)
    with open(os.path.join(out, tfrecord.LABELS_FILE), "w") as f:
        f.write("".join(f"{p}\n" for p in PHOTOS))
    tfrecord.write_metadata(out, metadata)
    return sum(len(d) for _, d in examples) / len(examples)


def naive_train(files, batch_size, image_size=224):
    """The naive pipeline: decode the whole image, resize its shorter side to
    S in [256, 480], then crop, flip, normalize (same interleave, same maps)."""
    from keras_resnet.preprocessing import (SCALE_RANGE, decode_image, imagenet_normalize,
                                            resize_shorter_side)
    from keras_resnet.trainers.data import tfrecord

    def preprocess(record):
        image_bytes, label = tfrecord.parse(record)
        scale = tf.random.uniform([], SCALE_RANGE[0], SCALE_RANGE[1] + 1, tf.int32)
        image = resize_shorter_side(decode_image(image_bytes), scale)
        image = tf.image.random_crop(image, [image_size, image_size, 3])
        return imagenet_normalize(tf.image.random_flip_left_right(image)), label

    ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files)).repeat()
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=len(files), block_length=1,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.shuffle(1000).map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def rate(iterator, batches):
    """(images/s, images per CPU-second of this process) of taking `batches`
    batches from a running iterator. On a shared machine the second says
    what the pipeline costs, whatever share of the cores it got."""
    wall, cpu = time.perf_counter(), time.process_time()
    images = 0
    for _ in range(batches):
        images += int(tf.shape(next(iterator)[0])[0])
    return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


def interleaved(pipelines, batches, rounds, warmup=5):
    """{name: [rate() of each round]}: the pipelines take turns, `rounds`
    times, so that a shared machine's changing load hits them alike. Each
    turn starts a fresh iterator and ends it, so that no other pipeline's
    prefetching runs (or fills its buffers) meanwhile."""
    rates = {name: [] for name in pipelines}
    for _ in range(rounds):
        for name, dataset in pipelines.items():
            iterator = iter(dataset)
            for _ in range(warmup):
                next(iterator)
            rates[name].append(rate(iterator, batches))
            del iterator
    return rates


def median(rates):
    """(median images/s, median images per CPU-second) of rate() pairs."""
    return tuple(float(np.median([r[i] for r in rates])) for i in (0, 1))


def spread(rates):
    walls = [wall for wall, _ in rates]
    return f"median of {len(rates)} rounds; range {_number(min(walls))}-{_number(max(walls))}"


def cifar(rows, rounds):
    from keras_resnet.trainers.data import load_dataset

    # An empty cache folder: this row times a decode, not a read of the
    # user's cache (benchmarks/start_time.py times both).
    user_cache = os.environ.get("KERAS_RESNET_CACHE_DIR")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["KERAS_RESNET_CACHE_DIR"] = cache
        start = time.perf_counter()
        dataset = load_dataset("cifar10", SHARED_CIFAR10)
        loaded = time.perf_counter() - start
    os.environ.pop("KERAS_RESNET_CACHE_DIR")
    if user_cache is not None:
        os.environ["KERAS_RESNET_CACHE_DIR"] = user_cache
    batch = 128
    steps = dataset.num_train // batch
    iterator = iter(dataset.train(batch))
    for _ in range(steps):
        next(iterator)
    first = time.perf_counter() - start
    rows.append(("CIFAR-10 first epoch (read + decode the archive, one pass)",
                 steps * batch / first, None, f"archive read and decoded in {loaded:.1f} s"))
    rates = [rate(iterator, steps) for _ in range(rounds)]
    rows.append(("CIFAR-10 cached epochs (trainer pipeline, batch 128)", *median(rates),
                 f"one epoch a round, {spread(rates)}"))
    return rates


def imagenet(rows, records, count, shards, batches, rounds):
    from keras_resnet.trainers.data import InputOptions, load_dataset, tfrecord

    mean_bytes = build_records(records, count, shards)
    files = tfrecord.find_shards(records, "train")
    batch = 32
    pipelines = {
        recipe: load_dataset("tfrecord", records, InputOptions(
            cache=False, train_preprocessing=recipe, shuffle_buffer=1000)).train(batch)
        for recipe in ("scale", "inception")
    }
    pipelines["naive"] = naive_train(files, batch)
    rates = interleaved(pipelines, batches, rounds)
    results = {name: median(r) for name, r in rates.items()}
    note = f"{count} JPEGs, mean {mean_bytes / 1024:.0f} KiB, {shards} shards; "
    for recipe in ("scale", "inception"):
        rows.append((f"ImageNet TFRecords, training pipeline ({recipe}, crop-window decode)",
                     *results[recipe], note + spread(rates[recipe])))
    rows.append(("ImageNet TFRecords, naive (decode whole, resize, crop)", *results["naive"],
                 note + spread(rates["naive"])))
    dataset = load_dataset("tfrecord", records, InputOptions(cache=False))
    iterator = iter(dataset.eval(batch))
    next(iterator)
    rows.append(("ImageNet TFRecords, eval pipeline (shorter side 256, centre 224)",
                 *rate(iterator, max(count // batch - 1, 1)), note + "one pass"))
    return dataset, results


def resnet50_rate(dataset, steps, batch=32):
    """rate() of ResNet-50 training steps (float32, SGD, real images)."""
    import keras

    import keras_resnet

    keras.mixed_precision.set_global_policy("float32")
    model = keras_resnet.ResNet50(weights=None, input_shape=(224, 224, 3),
                                  classes=len(dataset.class_names))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    images, labels = next(iter(dataset.train(batch)))
    model.train_on_batch(images, labels)  # trace and build
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        model.train_on_batch(images, labels)
    return (steps * batch / (time.perf_counter() - wall),
            steps * batch / (time.process_time() - cpu))


def _number(value):
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def write_results(rows, checks, context, command, wall):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(RESULTS, exist_ok=True)
    lines = ["# Input pipeline benchmark", "", f"Command: `{command}`", "",
             f"Wall time: {wall:.0f} s. {context}", "",
             "Images per CPU-second: images over the CPU time this process used meanwhile "
             "(all its threads), what a pipeline costs whatever share of the cores the other "
             "processes left it; on 2 idle cores a pipeline that uses both could reach about "
             "twice that.", "",
             "| pipeline | images/s | images per CPU-second | notes |",
             "| --- | ---: | ---: | --- |"]
    lines += [f"| {name} | {_number(value)} | {'-' if cpu is None else _number(cpu)} | {note} |"
              for name, value, cpu, note in rows]
    lines += ["", "| goal | measured | met |", "| --- | ---: | --- |"]
    lines += [f"| {goal} | {value} | {'yes' if ok else 'NO'} |" for goal, value, ok in checks]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS, "input_pipeline.md"), "w") as f:
        f.write(text)
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(rows) + 1.5))
    names = [row[0] for row in rows][::-1]
    values = [row[1] for row in rows][::-1]
    ax.barh(names, values, color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("images/s (log scale)")
    for y, value in enumerate(values):
        ax.text(value, y, f" {_number(value)}", va="center", fontsize=8)
    ax.set_title("Input pipelines vs ResNet-50 training step, this machine", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "input_pipeline.png"), dpi=100)
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="/tmp/keras_resnet_bench_records",
                        help="Where the ImageNet-format TFRecord set is built.")
    parser.add_argument("--count", type=int, default=800, help="Photo variants (records).")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20,
                        help="Batches of 32 timed per ImageNet pipeline and round.")
    parser.add_argument("--rounds", type=int, default=3,
                        help="Timed rounds (CIFAR: an epoch each); medians are reported.")
    parser.add_argument("--resnet50_steps", type=int, default=3)
    args = parser.parse_args()
    command = "nice -n 10 python " + " ".join(["benchmarks/input_pipeline.py", *sys.argv[1:]])
    start = time.perf_counter()
    load_before, top = machine_load()
    rows = []
    cifar_rates = cifar(rows, args.rounds)
    dataset, results = imagenet(rows, args.records, args.count, args.shards, args.batches,
                                args.rounds)
    step_rate = resnet50_rate(dataset, args.resnet50_steps)
    rows.append(("ResNet-50 training step (float32, batch 32)", *step_rate,
                 f"{args.resnet50_steps} steps after one warm-up step"))
    load_after, _ = machine_load()
    cifar_wall, cifar_cpu = median(cifar_rates)
    scale, naive = results["scale"], results["naive"]
    checks = [
        (f"CIFAR-10 cached >= {GOALS['cifar_cached']:,} img/s",
         f"median {cifar_wall:,.0f}, best {max(r[0] for r in cifar_rates):,.0f} "
         f"({cifar_cpu:,.0f} per CPU-second)", cifar_wall >= GOALS["cifar_cached"]),
        (f"ImageNet training (scale) >= {GOALS['vs_naive']}x naive",
         f"{scale[0] / naive[0]:.2f}x ({scale[1] / naive[1]:.2f}x per CPU-second)",
         scale[0] / naive[0] >= GOALS["vs_naive"]),
        (f"ImageNet training (scale) >= {GOALS['vs_resnet50']}x ResNet-50 step",
         f"{scale[0] / step_rate[0]:.1f}x ({scale[1] / step_rate[1]:.1f}x per CPU-second)",
         scale[0] / step_rate[0] >= GOALS["vs_resnet50"]),
    ]
    context = (f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}; load average "
               f"{load_before[0]:.1f} at the start and {load_after[0]:.1f} at the end "
               f"(shared machine; busiest processes at the start: {'; '.join(top)}).")
    text = write_results(rows, checks, context, command, time.perf_counter() - start)
    print(text)
    print(f"Written to {RESULTS}/input_pipeline.md and input_pipeline.png")


if __name__ == "__main__":
    main()
