"""Finished trainer runs side by side: one table of final test accuracy and
speed, and one Figure-6 plot, with each run's metrics and results copied
beside them so that the comparison stands on committed files.

    python benchmarks/compare_runs.py --out=benchmarks/results/precision \
        float32=/work/runs/degradation/resnet20 \
        mixed_bfloat16=/work/runs/precision/resnet20_mixed_bfloat16

The first run is the reference of the "difference" column.
"""

import argparse
import json
import os
import shutil
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from keras_resnet.trainers import callbacks as cb  # noqa: E402
from keras_resnet.trainers import curves  # noqa: E402

from keras_resnet.trainers.loop import CURVES_FILE, RESULTS_FILE, RUN_CONFIG_FILE  # noqa: E402

COPIED = (cb.METRICS_FILE, RESULTS_FILE, RUN_CONFIG_FILE, CURVES_FILE)


def parse_run(text):
    label, sep, model_dir = text.partition("=")
    if not sep or not label or not os.path.isfile(os.path.join(model_dir, RESULTS_FILE)):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected label=model_dir of a finished run (with results.json)")
    return label, model_dir


def summary(model_dir):
    with open(os.path.join(model_dir, RESULTS_FILE), encoding="utf-8") as f:
        results = json.load(f)
    with open(os.path.join(model_dir, RUN_CONFIG_FILE), encoding="utf-8") as f:
        config = json.load(f)
    records = cb.read_metrics(os.path.join(model_dir, cb.METRICS_FILE))
    return dict(
        model=results["model"], precision=config.get("mixed_precision"), step=results["step"],
        accuracy=results["eval_accuracy"], examples=results["eval_examples"],
        images_per_sec=statistics.median(r["images_per_sec"] for r in records),
        hours=sum(r["epoch_seconds"] for r in records) / 3600,
    ), records


def table(rows):
    reference = next(iter(rows.values()))["accuracy"]
    lines = ["| run | model | precision | steps | test top-1 (%) | difference (points) "
             "| median images/s | training hours |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['model']} | {r['precision']} | {r['step']} | "
            f"{100 * r['accuracy']:.2f} | {100 * (r['accuracy'] - reference):+.2f} | "
            f"{r['images_per_sec']:.0f} | {r['hours']:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=parse_run, help="label=model_dir")
    parser.add_argument("--out", required=True, help="Folder for the table, plot and copies.")
    args = parser.parse_args()
    rows, curves_by_label = {}, {}
    for label, model_dir in args.runs:
        rows[label], curves_by_label[label] = summary(model_dir)
        os.makedirs(os.path.join(args.out, label), exist_ok=True)
        for name in COPIED:
            if os.path.exists(os.path.join(model_dir, name)):
                shutil.copy(os.path.join(model_dir, name), os.path.join(args.out, label, name))
    command = "python benchmarks/compare_runs.py --out=" + args.out + " " + " ".join(
        f"{label}={model_dir}" for label, model_dir in args.runs)
    text = f"Command: `{command}`\n\n" + table(rows) + "\n![curves](curves.png)\n"
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)
    curves.plot_runs(curves_by_label, os.path.join(args.out, "curves.png"),
                     title="CIFAR-10 test (bold) and train (dashed) error")
    print(text)


if __name__ == "__main__":
    main()
