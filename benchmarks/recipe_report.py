"""Sets cifar10_recipe_jax.py's runs beside a trainer run of the same recipe:
a table at the iterations they share and one plot of their error curves.

    python benchmarks/recipe_report.py --out=benchmarks/results/cifar10_recipe_jax \
        --trainer=/work/runs/resnet20_paper RUNS.jsonl [RUNS.jsonl ...]

Why: if an independent implementation of the recipe lands on the trainer's
curve, the trainer is not where a gap to the paper comes from.
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PAPER_ERROR = 8.75  # ResNet-20, paper Table 6
TRAINER_LABEL = "trainer (TensorFlow)"


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def trainer_rows(model_dir):
    """The trainer's metrics file as this report's records (errors, not accuracies)."""
    # Imported here: cifar10_recipe_jax.py uses plot() where TensorFlow is absent.
    from keras_resnet.trainers import callbacks as cb

    rows = cb.read_metrics(os.path.join(model_dir, cb.METRICS_FILE))
    return [{"recipe": TRAINER_LABEL, "step": r["step"], "train_error": 1 - r["accuracy"],
             "test_error": 1 - r["val_accuracy"]} for r in rows if "val_accuracy" in r]


def plot(records, path, title):
    """Test (solid) and train (dashed) error against iterations, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name in dict.fromkeys(r["recipe"] for r in records):
        rows = [r for r in records if r["recipe"] == name]
        steps = [r["step"] for r in rows]
        line, = ax.plot(steps, [100 * r["test_error"] for r in rows], label=f"{name} test")
        ax.plot(steps, [100 * r["train_error"] for r in rows], "--", color=line.get_color(), lw=0.8)
        if "test_error_ema" in rows[0]:
            ax.plot(steps, [100 * r["test_error_ema"] for r in rows], ":", color=line.get_color(),
                    label=f"{name} test, EMA weights")
    ax.axhline(PAPER_ERROR, color="gray", lw=0.8, ls="-.", label=f"paper ResNet-20 ({PAPER_ERROR}%)")
    ax.set(xlabel="iterations", ylabel="error (%)", ylim=(0, 30), title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(records, every=4000):
    """Markdown: error at each `every`-th iteration that any run reached."""
    names = list(dict.fromkeys(r["recipe"] for r in records))
    by = {(r["recipe"], r["step"]): r for r in records}
    steps = sorted({r["step"] for r in records if r["step"] % every == 0})
    head = "| iterations | " + " | ".join(f"{n} test / train error (%)" for n in names) + " |"
    lines = [head, "|---:|" + "---:|" * len(names)]
    for step in steps:
        cells = []
        for n in names:
            r = by.get((n, step))
            cell = f"{100 * r['test_error']:.2f} / {100 * r['train_error']:.2f}" if r else "-"
            if r and "test_error_ema" in r:
                cell += f" (EMA test {100 * r['test_error_ema']:.2f})"
            cells.append(cell)
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for comparison.md and comparison.png")
    parser.add_argument("--trainer", help="a trainer model_dir whose metrics.jsonl joins the comparison")
    parser.add_argument("runs", nargs="+", help="runs.jsonl files from cifar10_recipe_jax.py")
    args = parser.parse_args()
    records = trainer_rows(args.trainer) if args.trainer else []
    for path in args.runs:
        records += [dict(r, recipe=f"JAX {r['recipe']}") for r in read_jsonl(path)]
    os.makedirs(args.out, exist_ok=True)
    plot(records, os.path.join(args.out, "comparison.png"),
         "ResNet-20, CIFAR-10 JPEG copy: trainer vs JAX-backend recipe")
    with open(os.path.join(args.out, "comparison.md"), "w", encoding="utf-8") as f:
        f.write(table(records))


if __name__ == "__main__":
    main()
