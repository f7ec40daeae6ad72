"""What averaging BN's moving statistics along with the weights is worth.

The newest checkpoint of an --ema_decay run, evaluated on the CIFAR-10 test
set three ways: the raw net; the averaged weights with the raw net's BN
statistics (what Keras' use_ema alone gives); the averaged net, weights and
statistics (what the trainer ends with).

    python benchmarks/ema_statistics.py --model_dir=/work/runs/table6/resnet56

appends a row to benchmarks/results/ema_statistics.md (and .jsonl).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import RESULTS, SHARED_CIFAR10, machine_load  # noqa: E402

HEADER = ("| run | step | raw net | averaged weights, raw BN statistics | averaged net |\n"
          "| --- | ---: | ---: | ---: | ---: |\n")


def accuracies(model_dir, data_dir, batch=500):
    import keras
    import numpy as np

    from keras_resnet import model_dir as model_dir_lib
    from keras_resnet.preprocessing import EvalPreprocessing
    from keras_resnet.trainers import loop, optimizers  # noqa: F401  loop registers the run's loss
    from keras_resnet.trainers.data import cifar10

    step, path = model_dir_lib.latest_checkpoint(model_dir)
    model = keras.models.load_model(path)
    optimizers.prepare(model)  # hands back the checkpoint's averages of the statistics
    averages = model.optimizer._model_variables_moving_average
    if not model.optimizer.use_ema:
        raise ValueError(f"--model_dir={model_dir} was not trained with --ema_decay")
    preprocessing = EvalPreprocessing.load(
        os.path.join(model_dir, model_dir_lib.PREPROCESSING_FILE))
    images, labels = cifar10.load_arrays(data_dir, "test")
    x = np.asarray(preprocessing.normalize(images))

    def top1():
        predicted = np.argmax(model.predict(x, batch_size=batch, verbose=0), axis=-1)
        return float(np.mean(predicted == labels))

    trainable = model.trainable_weights
    statistics = optimizers.averaged_statistics(model)
    raw = top1()
    for variable, average in zip(trainable, averages):
        variable.assign(average)
    weights_only = top1()
    for variable, average in zip(statistics, averages[len(trainable):]):
        variable.assign(average)
    return {"model_dir": model_dir, "step": step, "checkpoint": path, "raw": raw,
            "averaged_weights_raw_statistics": weights_only, "averaged_net": top1(),
            "test_images": len(labels)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", default=SHARED_CIFAR10)
    parser.add_argument("--out", default=os.path.join(RESULTS, "ema_statistics"))
    args = parser.parse_args()
    start = time.time()
    row = accuracies(args.model_dir, args.data_dir)
    row.update({"wall_seconds": round(time.time() - start, 1),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "load": machine_load()[0]})
    with open(args.out + ".jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in open(args.out + ".jsonl", encoding="utf-8")]
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(HEADER + "".join(
            f"| {os.path.basename(r['model_dir'])} | {r['step']:,} | {100 * r['raw']:.2f}% | "
            f"{100 * r['averaged_weights_raw_statistics']:.2f}% | {100 * r['averaged_net']:.2f}% |\n"
            for r in rows))
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
