"""Training and inference images/s against plain Keras, in one run:

- ResNet-50 (224x224, batch 32): keras.applications.ResNet50 in float32,
  compiled and fitted the plain Keras way (SGD, sparse cross-entropy,
  `fit(x, y, batch_size=32)` on synthetic arrays, `predict` for inference),
  against keras_resnet's ResNet-50 through the trainer's own code path: the
  model, loss, optimizer and compile that `trainers.loop.build_model` makes
  for a `Run` (after `plan`), fitted on the trainer's synthetic imagenet2012
  Dataset with the trainer's per-step callbacks, as `trainers.loop.train`
  fits it (without checkpoints or evaluation); inference by the export's
  `keras_resnet.inference.optimize_for_inference` graphs.
- ResNet-20 (32x32, batch 128): keras_resnet.ResNet20 built from Keras' own
  layers (`fused_bn=False`), compiled and fitted plainly, against the same
  model with the library's defaults fitted plainly, and through the trainer.

Each model's variants live in one process and run in alternating rounds
(ABC..., then ...CBA), so that the load of other processes on this shared
machine falls on all of them alike; warm-up (tracing, first steps) is
excluded. A matmul of the same precisions gives the machine's attainable
rate under the same load. Writes benchmarks/results/throughput.md and .png.

    nice -n 0 python benchmarks/throughput.py            # about 10 minutes
    python benchmarks/throughput.py --rounds 1 --quick   # smoke test
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import RESULTS, machine_load  # noqa: E402

GOALS = [  # (model, phase, variant compared with the baseline, ratio)
    ("resnet50", "train", "trainer, mixed_bfloat16", 2.0),
    ("resnet50", "infer", "fold_bn_bf16", 3.0),
    ("resnet20", "train", "trainer, mixed_bfloat16", 1.5),
]
# 512-bit FMA units per core, by CPU vendor and family: AMD Zen 4 (family
# 0x19) double-pumps 256-bit units (1 per cycle at 512 bits), Zen 5 (0x1a)
# has two full 512-bit units; Intel server cores with AVX-512 have two.
FMA_UNITS = {("AuthenticAMD", 0x19): 1, ("AuthenticAMD", 0x1A): 2}


# --- the machine ---------------------------------------------------------------


def cpu_info():
    """Vendor, model, cores, clock and the ISA flags that set the peak."""
    lscpu = dict(
        (k.strip(), v.strip()) for k, _, v in (
            line.partition(":") for line in subprocess.run(
                ["lscpu"], capture_output=True, text=True).stdout.splitlines()) if v
    )
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        cpuinfo = f.read()
    flags = set(re.search(r"^flags\s*:(.*)$", cpuinfo, re.M).group(1).split())
    cores = int(lscpu.get("Core(s) per socket", 1)) * int(lscpu.get("Socket(s)", 1))
    cores = min(cores, len(os.sched_getaffinity(0)))
    if "CPU max MHz" in lscpu:
        mhz, clock_source = float(lscpu["CPU max MHz"]), "lscpu CPU max MHz"
    else:
        mhz = float(re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M).group(1))
        clock_source = "/proc/cpuinfo cpu MHz (no max/boost clock exposed)"
    vendor = lscpu.get("Vendor ID", "")
    family = int(lscpu.get("CPU family", 0))
    return dict(model=lscpu.get("Model name", "?"), vendor=vendor, family=family,
                cores=cores, ghz=mhz / 1000, clock_source=clock_source,
                avx512=("avx512f" in flags), avx512_bf16=("avx512_bf16" in flags),
                amx_bf16=("amx_bf16" in flags),
                fma_units=FMA_UNITS.get((vendor, family), 2))


def peaks(cpu):
    """Peak FLOP/s (float32 and bfloat16) and the assumptions behind them."""
    base = cpu["cores"] * cpu["ghz"] * 1e9
    lanes = 16 if cpu["avx512"] else 8
    fp32_cycle = cpu["fma_units"] * lanes * 2
    notes = [f"{cpu['cores']} cores x {cpu['ghz']:.2f} GHz ({cpu['clock_source']})",
             f"float32: {cpu['fma_units']} FMA units x {lanes} lanes x 2 FLOP = "
             f"{fp32_cycle} FLOP/cycle/core"]
    if cpu["amx_bf16"]:
        bf16_cycle = 1024
        notes.append("bfloat16: AMX TMUL, 1024 FLOP/cycle/core")
    elif cpu["avx512_bf16"]:
        bf16_cycle = cpu["fma_units"] * lanes * 4
        notes.append(f"bfloat16: no AMX on this CPU; AVX512_BF16 VDPBF16PS, {cpu['fma_units']} "
                     f"units x {lanes} lanes x 2 products x 2 FLOP = {bf16_cycle} "
                     "FLOP/cycle/core")
    else:
        bf16_cycle = fp32_cycle
        notes.append("bfloat16: no bf16 instructions; same as float32")
    return {"float32": base * fp32_cycle, "bfloat16": base * bf16_cycle}, notes


# --- workers (one process per model) ---------------------------------------------


class Timed:
    """A chunk of work run repeatedly: wall and CPU seconds per call."""

    def __init__(self, name, phase, precision, images, fn, flops_per_image):
        self.name, self.phase, self.precision = name, phase, precision
        self.images, self.fn, self.flops_per_image = images, fn, flops_per_image
        self.wall, self.cpu = [], []

    def __call__(self, record=True):
        wall, cpu = time.perf_counter(), time.process_time()
        self.fn()
        if record:
            self.wall.append(time.perf_counter() - wall)
            self.cpu.append(time.process_time() - cpu)

    def result(self):
        return dict(name=self.name, phase=self.phase, precision=self.precision,
                    images_per_sec=self.images * len(self.wall) / sum(self.wall),
                    images_per_cpu_sec=self.images * len(self.cpu) / sum(self.cpu),
                    rounds=[self.images / w for w in self.wall],
                    flops_per_image=self.flops_per_image)


def alternate(chunks, rounds):
    """Warm-up, then rounds in alternating order (ABC, CBA, ...)."""
    for chunk in chunks:
        chunk(record=False)
        chunk(record=False)
    for r in range(rounds):
        for chunk in (chunks if r % 2 == 0 else chunks[::-1]):
            chunk()
    return [c.result() for c in chunks]


def _plain_train(model, batch, steps, size, classes):
    """compile() and fit(x, y, batch_size) the plain Keras way."""
    import keras
    import numpy as np

    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch * steps, size, size, 3)).astype("float32")
    y = rng.integers(0, classes, len(x))
    return lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0)


def _plain_predict(model, batch, batches, size):
    import numpy as np

    x = np.random.default_rng(1).uniform(0, 255, (batch * batches, size, size, 3))
    x = x.astype("float32")
    return lambda: model.predict(x, batch_size=batch, verbose=0)


def _trainer_train(model_name, dataset_name, precision, batch, steps, model_dir):
    """The trainer's model and compile (trainers.loop.plan and build_model),
    fitted as trainers.loop.train fits it, with its per-step callbacks."""
    import keras

    from keras_resnet.trainers import callbacks as cb
    from keras_resnet.trainers import distribution, loop
    from keras_resnet.trainers.data import load_dataset

    distribution.set_precision(precision)
    try:
        run = loop.Run(model=model_name, model_dir=model_dir, dataset=dataset_name,
                       batch_size=batch, use_synthetic_data=True, skip_eval=True,
                       steps_per_epoch=steps, train_steps=steps)
        dataset = load_dataset(dataset_name, use_synthetic_data=True)
        steps_per_epoch, total, _, execution = loop.plan(run, dataset)
        model, _ = loop.build_model(run, dataset, total, steps_per_epoch, execution)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    callbacks = [cb.Throughput(batch, run.log_steps), cb.NanStop()]
    data = dataset.train(batch)

    def fit():
        model.fit(data, epochs=1, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                  verbose=0, shuffle=False)  # tf.data shuffles; Keras would warn

    return model, fit, execution


def _compare(zoo_name, dataset_name, baselines, batch, steps, batches, rounds):
    """Plain-Keras `baselines` [(name, float32 model)] against `zoo_name`
    through the trainer (float32, mixed_bfloat16) and its inference graphs;
    the first baseline is the one the ratios divide by."""
    import keras_resnet
    from keras_resnet import inference

    reference = baselines[0][1]
    size, classes = reference.input_shape[1], reference.output_shape[-1]
    macs = keras_resnet.count_flops(reference)
    images = batch * steps
    chunks = [Timed(f"{name}, plain fit", "train", "float32", images,
                    _plain_train(model, batch, steps, size, classes), 6 * macs)
              for name, model in baselines]
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for precision in ("float32", "mixed_bfloat16"):
            model, fit, execution = _trainer_train(
                zoo_name, dataset_name, precision, batch, steps, os.path.join(tmp, precision))
            models[precision] = model
            chunks.append(Timed(f"trainer, {precision}", "train", precision, images, fit,
                                6 * macs))
        chunks.append(Timed(f"{baselines[0][0]}, predict", "infer", "float32", batch * batches,
                            _plain_predict(reference, batch, batches, size), 2 * macs))
        for mode, precision in (("fold_bn", "float32"), ("fold_bn_bf16", "bfloat16")):
            fast = inference.optimize_for_inference(models["float32"], mode)
            chunks.append(Timed(mode, "infer", precision, batch * batches,
                                _plain_predict(fast, batch, batches, size), 2 * macs))
        results = alternate(chunks, rounds)
    return dict(model=zoo_name, batch=batch, macs=macs, steps_per_execution=execution,
                results=results)


def worker_resnet50(rounds, quick):
    import keras

    keras.mixed_precision.set_global_policy("float32")
    baselines = [("keras.applications", keras.applications.ResNet50(weights=None))]
    return _compare("resnet50", "imagenet2012", baselines, batch=32,
                    steps=1 if quick else 2, batches=1 if quick else 2, rounds=rounds)


def worker_resnet20(rounds, quick):
    import keras

    import keras_resnet

    keras.mixed_precision.set_global_policy("float32")
    baselines = [("Keras layers (fused_bn=False)", keras_resnet.ResNet20(fused_bn=False)),
                 ("library defaults", keras_resnet.ResNet20())]
    return _compare("resnet20", "cifar10", baselines, batch=128,
                    steps=16 if quick else 32, batches=4 if quick else 16, rounds=rounds)


def worker_matmul(rounds, quick):
    """Attainable FLOP/s: oneDNN matmuls of 2048^3, float32 and bfloat16."""
    import tensorflow as tf

    n, reps = 2048, (2 if quick else 8)
    chunks = []
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.random.normal([n, n], dtype=tf.float32)
        a = tf.cast(a, dtype)
        fn = tf.function(lambda a=a: tf.reduce_sum(tf.cast(
            tf.stack([tf.matmul(a, a + float(i)) for i in range(reps)]), tf.float32)))
        # images = matmuls; flops_per_image = 2 n^3
        chunks.append(Timed(f"matmul {n}^3", "matmul", dtype.name, reps, lambda f=fn: f().numpy(),
                            2 * n ** 3))
    return dict(model="matmul", results=alternate(chunks, rounds))


WORKERS = {"resnet50": worker_resnet50, "resnet20": worker_resnet20, "matmul": worker_matmul}


# --- the report -----------------------------------------------------------------


def _fmt(value):
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def analyse(reports, peak):
    rows, checks = [], []
    for report in reports:
        if report["model"] == "matmul":
            continue
        by_phase = {}
        for r in report["results"]:
            by_phase.setdefault(r["phase"], []).append(r)
        for phase, results in by_phase.items():
            baseline = results[0]
            for r in results:
                flops = r["images_per_sec"] * r["flops_per_image"]
                precision = "bfloat16" if "bfloat16" in r["precision"] else "float32"
                rows.append(dict(
                    model=report["model"], phase=phase, name=r["name"],
                    precision=r["precision"], batch=report["batch"],
                    rate=r["images_per_sec"], cpu_rate=r["images_per_cpu_sec"],
                    ratio=r["images_per_sec"] / baseline["images_per_sec"],
                    cpu_ratio=r["images_per_cpu_sec"] / baseline["images_per_cpu_sec"],
                    gflops=flops / 1e9, share=flops / peak[precision],
                    low=min(r["rounds"]), high=max(r["rounds"]), baseline=r is baseline))
    for model, phase, name, goal in GOALS:
        found = [r for r in rows if r["model"] == model and r["phase"] == phase
                 and r["name"] == name]
        if found:
            checks.append((f"{model} {phase}: {name} >= {goal:.1f}x baseline",
                           found[0]["ratio"], found[0]["ratio"] >= goal))
    return rows, checks


def write_results(rows, checks, reports, cpu, peak, peak_notes, context, command, wall):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(RESULTS, exist_ok=True)
    matmul = next((r for r in reports if r["model"] == "matmul"), None)
    lines = ["# Training and inference throughput", "",
             f"Command: `{command}`", "", f"Wall time: {wall:.0f} s. {context}", "",
             f"CPU: {cpu['model']} (vendor {cpu['vendor']}, family {cpu['family']:#x}), "
             f"{cpu['cores']} cores. Peak: float32 {peak['float32'] / 1e9:,.0f} GFLOP/s, "
             f"bfloat16 {peak['bfloat16'] / 1e9:,.0f} GFLOP/s; assumptions: "
             + "; ".join(peak_notes) + ".", ""]
    if matmul:
        attained = ", ".join(
            f"{r['precision']} {r['images_per_sec'] * r['flops_per_image'] / 1e9:,.0f} GFLOP/s"
            for r in matmul["results"])
        lines += [f"Attainable now (oneDNN 2048^3 matmul, same load): {attained}.", ""]
    lines += [
        "FLOP/s: 2 FLOP per multiply-add of `keras_resnet.count_flops` (the paper's "
        "FLOPs), x3 per training image (forward, backward to inputs, backward to "
        "weights), x1 per inference image; share of the peak of the row's precision. "
        "Ratios: images/s over the first row of the same model and phase (the plain "
        "Keras float32 baseline), all rows measured in alternating rounds in one process. "
        "Per CPU-second: images over the CPU time the process used, the ratio that the "
        "load of other processes sways least.", "",
        "| model | phase | variant | precision | batch | images/s | x baseline "
        "| x baseline per CPU-s | GFLOP/s | % of peak | rounds min-max |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['phase']} | {r['name']} | {r['precision']} | {r['batch']} "
            f"| {_fmt(r['rate'])} | {r['ratio']:.2f} | {r['cpu_ratio']:.2f} "
            f"| {r['gflops']:.0f} | {100 * r['share']:.1f} | {_fmt(r['low'])}-{_fmt(r['high'])} |")
    lines += ["", "| goal | measured | met |", "| --- | ---: | --- |"]
    lines += [f"| {goal} | {value:.2f}x | {'yes' if ok else 'NO'} |"
              for goal, value, ok in checks]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS, "throughput.md"), "w", encoding="utf-8") as f:
        f.write(text)

    groups = [(m, p) for m in ("resnet50", "resnet20") for p in ("train", "infer")]
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 4.5))
    for ax, (model, phase) in zip(axes, groups):
        group = [r for r in rows if r["model"] == model and r["phase"] == phase]
        names = [r["name"].replace(", ", ",\n") for r in group]
        colors = ["tab:gray" if r["baseline"] else
                  "tab:orange" if "bfloat16" in r["precision"] else "tab:blue" for r in group]
        bars = ax.bar(range(len(group)), [r["rate"] for r in group], color=colors)
        for bar, r in zip(bars, group):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(),
                    f"{_fmt(r['rate'])}\n{r['ratio']:.2f}x", ha="center", va="bottom",
                    fontsize=8)
        ax.set_xticks(range(len(group)), names, fontsize=7, rotation=30, ha="right")
        ax.set_title(f"{model} {phase}", fontsize=10)
        ax.set_ylabel("images/s")
        ax.margins(y=0.25)
    fig.suptitle("images/s on this machine (grey: plain Keras float32 baseline; "
                 "orange: bfloat16)", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "throughput.png"), dpi=100)
    return text


def run_worker(name, rounds, quick):
    command = [sys.executable, os.path.abspath(__file__), "--worker", name,
               "--rounds", str(rounds)] + (["--quick"] if quick else [])
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        sys.exit(f"worker {name} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4,
                        help="alternating rounds per model (default 4)")
    parser.add_argument("--quick", action="store_true", help="smaller chunks: a smoke test")
    parser.add_argument("--models", default="matmul,resnet50,resnet20",
                        help="comma-separated workers to run")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        report = WORKERS[args.worker](args.rounds, args.quick)
        print("RESULT " + json.dumps(report), flush=True)
        return

    start = time.time()
    load_before, top = machine_load()
    cpu = cpu_info()
    peak, peak_notes = peaks(cpu)
    reports = []
    for name in args.models.split(","):
        t = time.time()
        reports.append(run_worker(name, args.rounds, args.quick))
        print(f"{name}: {time.time() - t:.0f} s", flush=True)
    load_after, _ = machine_load()
    rows, checks = analyse(reports, peak)
    context = (
        f"Load average (1/5/15 min) {', '.join(f'{x:.1f}' for x in load_before)} before, "
        f"{', '.join(f'{x:.1f}' for x in load_after)} after, on {cpu['cores']} cores; "
        f"busiest processes at the start: {'; '.join(top)}. {args.rounds} rounds per model."
    )
    command = "python benchmarks/throughput.py" + "".join(
        f" --{k}={v}" for k, v in (("rounds", args.rounds),) if v != 4) + (
        " --quick" if args.quick else "") + (
        f" --models={args.models}" if args.models != parser.get_default("models") else "")
    text = write_results(rows, checks, reports, cpu, peak, peak_notes, context, command,
                         time.time() - start)
    print(text)


if __name__ == "__main__":
    main()
