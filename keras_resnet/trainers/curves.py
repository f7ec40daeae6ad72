"""Training curves in the style of the paper's Figure 6: error (%) against
iterations, training dashed and test bold."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from keras_resnet.model_dir import atomic_write  # noqa: E402


def _series(records, key):
    points = [(r["step"], 100.0 * (1.0 - r[key])) for r in records if key in r]
    return [p[0] for p in points], [p[1] for p in points]


def plot_runs(runs, path, title=None):
    """`runs`: {label: metrics records}; one colour per run, train dashed."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (label, records), color in zip(runs.items(), colors * 4):
        steps, err = _series(records, "accuracy")
        ax.plot(steps, err, "--", color=color, linewidth=1, label=f"{label} train")
        steps, err = _series(records, "val_accuracy")
        if steps:
            ax.plot(steps, err, "-", color=color, linewidth=2, label=f"{label} test")
    ax.set_xlabel("iterations")
    ax.set_ylabel("error (%)")
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
