"""The paper's degradation experiment (Figure 6): plain and residual nets of
each depth trained on one schedule, drawn on one plot.

    python -m keras_resnet.trainers.degradation --depths=20,56 --train_epochs=12 \
        --lr_schedule=piecewise --lr_boundaries=6,9 \
        --data_dir=../shared/datasets/cifar10-jpeg.tar.gz --model_dir=/work/runs/degradation

Each net trains in its own subfolder of --model_dir, so rerunning resumes.
"""

import dataclasses
import json
import os

from absl import app, flags, logging

from keras_resnet.model_dir import atomic_write
from keras_resnet.trainers import callbacks as cb
from keras_resnet.trainers import curves, distribution, preemption
from keras_resnet.trainers import flags as trainer_flags
from keras_resnet.trainers.loop import Run, train

FLAGS = flags.FLAGS
PLOT_FILE = "degradation.png"
TABLE_FILE = "degradation.md"


def define_flags():
    trainer_flags.define_train_flags()
    flags.DEFINE_list("depths", ["20", "56"], "CIFAR depths (6n+2) to compare.")
    flags.DEFINE_bool("plot_only", False,
                      "Draw the plot and table from the metrics written so far; train nothing.")


def table(runs):
    """Markdown rows from each net's metrics: its newest epoch so far."""
    lines = ["| net | epochs | steps | train error (%) | test error (%) |",
             "|---|---:|---:|---:|---:|"]
    for name, records in runs.items():
        if not records:
            lines.append(f"| {name} | 0 | 0 | - | - |")
            continue
        last = records[-1]
        test = f"{100 * (1 - last['val_accuracy']):.2f}" if "val_accuracy" in last else "-"
        lines.append(f"| {name} | {last['epoch']} | {last['step']} | "
                     f"{100 * (1 - last['accuracy']):.2f} | {test} |")
    return "\n".join(lines) + "\n"


def draw(model_dir, names):
    """The Figure-6 plot and the table, from the metrics files in model_dir."""
    runs = {n: cb.read_metrics(os.path.join(model_dir, n, cb.METRICS_FILE)) for n in names}
    curves.plot_runs(runs, os.path.join(model_dir, PLOT_FILE),
                     title="CIFAR-10: plain (no shortcuts) vs residual")
    text = table(runs)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(os.path.join(model_dir, TABLE_FILE), write)
    return text


@preemption.exits_when_preempted
def main(argv):
    del argv
    names = [f"{prefix}{depth}" for depth in FLAGS.depths for prefix in ("plain", "resnet")]
    if FLAGS.plot_only:
        print(draw(FLAGS.model_dir, names))
        return
    strategy = distribution.from_flags(FLAGS)
    chief = distribution.is_chief(strategy)
    base = Run.from_flags(FLAGS)
    results = {}
    for name in names:
        run = dataclasses.replace(base, model=name, model_dir=os.path.join(FLAGS.model_dir, name))
        logging.info("Degradation experiment: training %s", name)
        results[name] = train(run, strategy, chief)
    if chief:
        print(draw(FLAGS.model_dir, names))
        print(json.dumps(results, indent=2))


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
