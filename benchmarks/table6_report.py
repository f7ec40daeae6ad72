"""The paper's Table 6 on the CIFAR-10 JPEG copy: test error of ResNet-20,
32, 44, 56 and 110 (option A, one recipe; benchmarks/table6_runs.sh trains
them) beside the paper's, error against depth, and the five nets' curves in
the style of Figure 6 (right).

    python benchmarks/table6_report.py --runs=/work/runs/table6 \
        --out=benchmarks/results/table6

A finished net is exported (savedmodels, from its model_dir) and scored
through the SavedModel's serving_default on all 10,000 test JPEGs, the
bytes a client would send; a net still training shows its step and its
latest test error. Each run's metrics, results, run_config and log are
copied into --out, so that the figures stand on committed files. A finished
net whose model_dir this machine no longer holds is read from that copy and
scored from its shipped weights (weights="cifar10") when they are the run's
(a run from another seed shows its trainer's eval only). A net still training
also leaves its newest checkpoint there, under checkpoints/: committed, it
lets table6_runs.sh continue the run on a machine that no longer holds it.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import SHARED_CIFAR10, machine_load  # noqa: E402
from benchmarks.compare_runs import COPIED  # noqa: E402

# Table 6 of the paper: test error (%) on CIFAR-10, option A, 64k iterations.
PAPER_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}
TOTAL_STEPS = 64000
LAST_DROP = 48000  # the paper's second division of the learning rate by 10
TARGET_ACCURACY = {56: 0.895, 110: 0.900}  # through the SavedModel, on the JPEG copy


def served_accuracy(source, data_dir, batch=250):
    """Top-1 of a savedmodels source's export on every test image, from its JPEG bytes."""
    import numpy as np
    import tensorflow as tf

    from keras_resnet.savedmodels import export
    from keras_resnet.trainers.data import image_tree

    split = image_tree.read_split(data_dir, "test")
    with tempfile.TemporaryDirectory() as base:
        path = export.export(source, base, model_name="table6", replay_warmup=False)
        serve = tf.saved_model.load(path).signatures["serving_default"]
        predicted = np.concatenate([
            serve(image_bytes=tf.constant(split.contents[i:i + batch]))["classes"].numpy()
            for i in range(0, len(split.contents), batch)])
    return float(np.mean(predicted == np.asarray(split.labels))), len(predicted)


def read_run(model_dir, depth, data_dir, committed=False):
    """The net's table row and metrics; committed: model_dir is the committed
    copy of a run that this machine no longer holds, scored from the weights
    that ship if they are that run's."""
    from keras_resnet import weights as weights_lib
    from keras_resnet.savedmodels import sources
    from keras_resnet.trainers import callbacks as cb
    from keras_resnet.trainers.loop import RESULTS_FILE

    records = cb.read_metrics(os.path.join(model_dir, cb.METRICS_FILE))
    row = {"depth": depth, "paper_error": PAPER_ERROR[depth],
           "step": records[-1]["step"] if records else 0, "finished": False}
    tested = [r for r in records if "val_accuracy" in r]
    if tested:
        row["latest_error"] = 100 * (1 - tested[-1]["val_accuracy"])
    row.update(final_phase(tested))
    results_path = os.path.join(model_dir, RESULTS_FILE)
    if os.path.exists(results_path):
        with open(results_path, encoding="utf-8") as f:
            results = json.load(f)
        row.update(finished=True, step=results["step"],
                   trainer_error=100 * (1 - results["eval_accuracy"]))
        shipped = weights_lib.cifar10_results(f"resnet{depth}")
        if not committed:
            source, row["scored_from"] = sources.load_source(model_dir=model_dir), "model_dir"
        elif shipped and shipped["weights_sha256"] == results["weights_sha256"]:
            source = sources.load_source(model=f"resnet{depth}", weights="cifar10")
            row["scored_from"] = "shipped float32 weights"
        else:
            return row, records
        accuracy, examples = served_accuracy(source, data_dir)
        row.update(served_error=100 * (1 - accuracy), served_accuracy=accuracy,
                   served_examples=examples)
    return row, records


def final_phase(tested):
    """The raw net's test error over the epochs after the last learning-rate
    drop: how far one run's end point could have landed from where it did."""
    errors = [100 * (1 - r["val_accuracy"]) for r in tested if r["step"] > LAST_DROP]
    if len(errors) < 2:
        return {}
    return {"final_phase": {"epochs": len(errors), "mean_error": statistics.mean(errors),
                            "sd_error": statistics.stdev(errors),
                            "min_error": min(errors), "max_error": max(errors)}}


def copy_run(model_dir, copy):
    """The run's metrics, results, run_config and log, into the committed copy;
    while the net trains, also its newest checkpoint (under checkpoints/, as
    in a model_dir), which table6_runs.sh continues from on a machine that
    lost the run. A copy with a newer checkpoint than the run stays as it is."""
    from keras_resnet import model_dir as model_dir_lib
    from keras_resnet.trainers.loop import RESULTS_FILE

    latest, committed = (model_dir_lib.latest_checkpoint(d) for d in (model_dir, copy))
    if committed and (latest is None or latest[0] < committed[0]):
        print(f"{copy} holds a newer checkpoint (step {committed[0]}) than {model_dir}: "
              "left as it is; rerun benchmarks/table6_runs.sh to continue from it")
        return
    os.makedirs(copy, exist_ok=True)
    for name in COPIED:
        if os.path.exists(os.path.join(model_dir, name)):
            shutil.copy(os.path.join(model_dir, name), os.path.join(copy, name))
    if os.path.exists(model_dir + ".log"):
        shutil.copy(model_dir + ".log", os.path.join(copy, "train.log"))
    checkpoints = os.path.join(copy, model_dir_lib.CHECKPOINT_DIR)
    shutil.rmtree(checkpoints, ignore_errors=True)  # one at a time, none once finished
    if latest and not os.path.exists(os.path.join(model_dir, RESULTS_FILE)):
        os.makedirs(checkpoints)
        shutil.copy(latest[1], checkpoints)


def targets(rows):
    """The claims of the table, each True/False, or None while a net is missing."""
    err = {r["depth"]: r["served_error"] for r in rows if "served_error" in r}

    def claim(*depths, test):
        return test() if all(d in err for d in depths) else None

    return {
        "error falls with depth: 20 > 56 > 110":
            claim(20, 56, 110, test=lambda: err[20] > err[56] > err[110]),
        "ResNet-32 no worse than ResNet-20": claim(20, 32, test=lambda: err[32] <= err[20]),
        "ResNet-44 no worse than ResNet-20": claim(20, 44, test=lambda: err[44] <= err[20]),
        **{f"ResNet-{d} at least {100 * a:.1f}% top-1": claim(d, test=lambda d=d, a=a:
                                                               100 - err[d] >= 100 * a)
           for d, a in TARGET_ACCURACY.items()},
    }


def table(rows):
    lines = ["| net | layers | paper error (%) | our error, SavedModel on 10k (%) "
             "| trainer's eval, training precision (%) "
             "| raw net after the last lr drop, per epoch: mean ± sd (min-max) (%) | state |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        phase = r.get("final_phase")
        spread = (f"{phase['mean_error']:.2f} ± {phase['sd_error']:.2f} "
                  f"({phase['min_error']:.2f}-{phase['max_error']:.2f}, {phase['epochs']} epochs)"
                  if phase else "")
        if "served_error" in r:
            ours, trainer, state = (f"{r['served_error']:.2f}", f"{r['trainer_error']:.2f}",
                                    f"finished; exported from its {r['scored_from']}")
        elif r["finished"]:
            ours, trainer, state = ("", f"{r['trainer_error']:.2f}",
                                    "finished; its model_dir is not on this machine and its "
                                    "weights do not ship: not exported")
        else:
            latest = f", latest test error {r['latest_error']:.2f}%" if "latest_error" in r else ""
            ours, trainer, state = "", "", f"training: step {r['step']:,} of {TOTAL_STEPS:,}{latest}"
        lines.append(f"| ResNet-{r['depth']} | {r['depth']} | {r['paper_error']:.2f} | {ours} "
                     f"| {trainer} | {spread} | {state} |")
    return "\n".join(lines) + "\n"


def plot_error_vs_depth(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_resnet.model_dir import atomic_write

    fig, ax = plt.subplots(figsize=(6, 4))
    depths = sorted(PAPER_ERROR)
    ax.plot(depths, [PAPER_ERROR[d] for d in depths], "o--", color="gray",
            label="paper (lossless CIFAR-10)")
    ours = [(r["depth"], r["served_error"]) for r in rows if "served_error" in r]
    if ours:
        ax.plot(*zip(*ours), "o-", color="C0", linewidth=2, label="ours (JPEG q75 copy)")
    ax.set_xscale("log")
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.minorticks_off()
    ax.set_xlabel("layers")
    ax.set_ylabel("test error (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("CIFAR-10 test error against depth (Table 6)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="/work/runs/table6",
                        help="benchmarks/table6_runs.sh's folder: resnet<depth>/ and their logs.")
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "table6"))
    parser.add_argument("--data_dir", default=SHARED_CIFAR10)
    args = parser.parse_args()
    from keras_resnet.trainers import curves

    started = time.time()
    load_before, _ = machine_load()
    rows, runs = [], {}
    for depth in sorted(PAPER_ERROR):
        model_dir = os.path.join(args.runs, f"resnet{depth}")
        copy = os.path.join(args.out, f"resnet{depth}")
        if os.path.isdir(model_dir):
            row, records = read_run(model_dir, depth, args.data_dir)
            copy_run(model_dir, copy)
        elif os.path.exists(os.path.join(copy, "results.json")):
            row, records = read_run(copy, depth, args.data_dir, committed=True)
        else:
            continue
        rows.append(row)
        runs[f"ResNet-{depth}"] = records
    if not rows:
        parser.error(f"--runs={args.runs}: no resnet<depth>/ run folder in it")
    os.makedirs(args.out, exist_ok=True)
    plot_error_vs_depth(rows, os.path.join(args.out, "error_vs_depth.png"))
    curves.plot_runs(runs, os.path.join(args.out, "curves.png"),
                     title="CIFAR-10 test (bold) and train (dashed) error, option A")
    claims = targets(rows)
    load_after, busiest = machine_load()
    command = (f"python benchmarks/table6_report.py --runs={args.runs} --out={args.out}"
               + (f" --data_dir={args.data_dir}" if args.data_dir != SHARED_CIFAR10 else ""))
    text = (
        f"Command: `{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{time.time() - started:.0f} s wall; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after.\n\n" + table(rows) + "\n"
        + "".join(f"- {name}: {'not yet measured' if ok is None else ('met' if ok else 'MISSED')}\n"
                  for name, ok in claims.items())
        + "\n![error against depth](error_vs_depth.png)\n\n![curves](curves.png)\n")
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(args.out, "table6.json"), "w", encoding="utf-8") as f:
        json.dump({"rows": rows, "targets": claims, "busiest_processes": busiest}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
