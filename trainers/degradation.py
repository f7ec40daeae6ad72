"""The paper's degradation experiment (Figure 6): plain and residual nets of
each depth trained on one schedule, drawn on one plot.

    python -m trainers.degradation --depths=20,56 --train_epochs=12 \
        --lr_schedule=piecewise --lr_boundaries=6,9 \
        --data_dir=../shared/datasets/cifar10-jpeg.tar.gz --model_dir=/work/runs/degradation

Each net trains in its own subfolder of --model_dir, so rerunning resumes.
"""

import dataclasses
import json
import os

from absl import app, flags, logging

from keras_resnet.model_dir import atomic_write
from trainers import callbacks as cb
from trainers import curves, distribution
from trainers import flags as trainer_flags
from trainers.loop import Run, train

FLAGS = flags.FLAGS
PLOT_FILE = "degradation.png"
TABLE_FILE = "degradation.md"


def define_flags():
    trainer_flags.define_train_flags()
    flags.DEFINE_list("depths", ["20", "56"], "CIFAR depths (6n+2) to compare.")


def table(results):
    lines = ["| net | steps | final train error (%) | test error (%) |",
             "|---|---|---|---|"]
    for name, (records, result) in results.items():
        last = records[-1] if records else {}
        train_error = 100 * (1 - last["accuracy"]) if "accuracy" in last else float("nan")
        test_error = 100 * (1 - result.get("eval_accuracy", float("nan")))
        lines.append(f"| {name} | {result['step']} | {train_error:.2f} | {test_error:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    depths = [int(d) for d in FLAGS.depths]
    strategy = distribution.from_flags(FLAGS)
    chief = distribution.is_chief(strategy)
    base = Run.from_flags(FLAGS)
    results = {}
    for depth in depths:
        for prefix in ("plain", "resnet"):
            name = f"{prefix}{depth}"
            run = dataclasses.replace(base, model=name,
                                      model_dir=os.path.join(FLAGS.model_dir, name))
            logging.info("Degradation experiment: training %s", name)
            result = train(run, strategy, chief)
            records = cb.read_metrics(os.path.join(run.model_dir, cb.METRICS_FILE))
            results[name] = (records, result)
    if chief:
        curves.plot_runs({n: r for n, (r, _) in results.items()},
                         os.path.join(FLAGS.model_dir, PLOT_FILE),
                         title="CIFAR-10: plain (no shortcuts) vs residual")
        text = table(results)
        atomic_write(os.path.join(FLAGS.model_dir, TABLE_FILE),
                     lambda tmp: open(tmp, "w").write(text))
        print(text)
        print(json.dumps({n: r for n, (_, r) in results.items()}, indent=2))


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
