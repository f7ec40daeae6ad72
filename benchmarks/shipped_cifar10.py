"""The shipped CIFAR-10 weights on all 10,000 test images.

Tests check each shipped net on the first test images only (the float32
accuracy trainers.publish recorded); this scores the whole test set the way
a user would, `weights="cifar10"` + `cifar_utils.preprocess_input` in
float32, beside the accuracy the training run evaluated (mixed precision).

    python benchmarks/shipped_cifar10.py

writes benchmarks/results/shipped_cifar10.md (and .json).
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

HEADER = ("| model | run's evaluation (its precision) | shipped float32, all test images "
          "| difference (points) | float32, first test images (recorded / now) |\n"
          "| --- | ---: | ---: | ---: | ---: |\n")


def score(name, images, labels, batch=500):
    import numpy as np

    import keras_resnet
    from keras_resnet import cifar_utils
    from keras_resnet import weights as weights_lib

    results = weights_lib.cifar10_results(name)
    model = keras_resnet.get_model(name, weights="cifar10")
    predicted = model.predict(cifar_utils.preprocess_input(images), batch_size=batch,
                              verbose=0).argmax(axis=1)
    n = results["float32_check"]["test_images"]
    return {"model": name, "step": results["step"], "run_accuracy": results["eval_accuracy"],
            "float32_accuracy": float(np.mean(predicted == labels)),
            "test_images": len(labels), "check_images": n,
            "check_recorded": results["float32_check"]["accuracy"],
            "check_now": float(np.mean(predicted[:n] == labels[:n]))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=SHARED_CIFAR10)
    parser.add_argument("--out", default=os.path.join(RESULTS, "shipped_cifar10"))
    args = parser.parse_args()

    from keras_resnet import weights as weights_lib
    from keras_resnet.trainers.data import cifar10

    start = time.time()
    images, labels = cifar10.load_arrays(args.data_dir, "test")
    rows = [score(name, images, labels) for name in weights_lib.shipped_cifar10()]
    summary = {"rows": rows, "wall_seconds": round(time.time() - start, 1),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "load": machine_load()[0]}
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(HEADER + "".join(
            f"| {r['model']} | {100 * r['run_accuracy']:.2f}% | {100 * r['float32_accuracy']:.2f}% "
            f"| {100 * (r['float32_accuracy'] - r['run_accuracy']):+.2f} "
            f"| {100 * r['check_recorded']:.1f}% / {100 * r['check_now']:.1f}% "
            f"({r['check_images']:,}) |\n" for r in rows))
        f.write(f"\n{summary['date']}, {summary['wall_seconds']} s, "
                f"load average {summary['load'][0]:.1f}\n")
    print(open(args.out + ".md", encoding="utf-8").read())


if __name__ == "__main__":
    main()
