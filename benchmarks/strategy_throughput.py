"""ResNet-20 training images/s under each strategy that runs on a CPU, from
one run: the default strategy, mirrored over 2 CPU replicas (at the default
16 steps per call and at 1), and multi_worker_mirrored over 2 processes on
127.0.0.1. Rounds alternate the configurations (A B C D A B C D) so that a
loaded machine weighs on each alike; ratios are against the default.

    python benchmarks/strategy_throughput.py --rounds=2

writes benchmarks/results/strategy_throughput.md (and .json).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import RESULTS, free_ports, machine_load  # noqa: E402

CONFIGS = {
    "default": ["--distribution_strategy=default"],
    "mirrored, 2 CPU replicas": ["--distribution_strategy=mirrored", "--num_cpu_replicas=2"],
    "mirrored, 2 CPU replicas, 1 step per call": [
        "--distribution_strategy=mirrored", "--num_cpu_replicas=2", "--steps_per_execution=1"],
    "multi_worker_mirrored, 2 processes": ["--distribution_strategy=multi_worker_mirrored"],
}


def measure(flags, steps, policy):
    """images/s of the last epoch (the first includes tracing)."""
    with tempfile.TemporaryDirectory() as model_dir:
        args = [sys.executable, "-m", "keras_resnet.trainers.train", "--model=resnet20", "--dataset=cifar10",
                "--use_synthetic_data", f"--train_steps={2 * steps}", f"--steps_per_epoch={steps}",
                "--skip_eval", f"--mixed_precision={policy}", f"--model_dir={model_dir}", *flags]
        envs = [{}]
        if "--distribution_strategy=multi_worker_mirrored" in flags:
            workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
            envs = [{"TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                              "task": {"type": "worker", "index": i}})}
                    for i in range(2)]
        procs = [subprocess.Popen(args, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                                        **env},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for env in envs]
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode:
                raise RuntimeError(err[-2000:])
        with open(os.path.join(model_dir, "metrics.jsonl"), encoding="utf-8") as f:
            return [json.loads(line) for line in f][-1]["images_per_sec"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=64, help="steps per epoch; 2 epochs")
    parser.add_argument("--mixed_precision", default="mixed_bfloat16")
    parser.add_argument("--out", default=os.path.join(RESULTS, "strategy_throughput"))
    args = parser.parse_args()
    start = time.time()
    rates = {name: [] for name in CONFIGS}
    for round_ in range(args.rounds):
        for name, flags in CONFIGS.items():
            rates[name].append(measure(flags, args.steps, args.mixed_precision))
            print(f"round {round_ + 1}: {name}: {rates[name][-1]:.1f} images/s", flush=True)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    base = medians["default"]
    load, busiest = machine_load()
    record = {"rates": rates, "medians": medians, "rounds": args.rounds, "steps": args.steps,
              "mixed_precision": args.mixed_precision, "load": load, "busiest": busiest,
              "wall_seconds": round(time.time() - start, 1),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(f"ResNet-20, global batch 128, {args.mixed_precision}, synthetic CIFAR-10 input, "
                f"median of {args.rounds} alternating rounds of {2 * args.steps} steps "
                f"(second epoch), {record['date']}, {record['wall_seconds']} s; load average "
                f"{load[0]:.1f} at the end.\n\n"
                "| strategy | images/s | against default |\n| --- | ---: | ---: |\n")
        for name, rate in medians.items():
            f.write(f"| {name} | {rate:.1f} | {rate / base:.2f}x |\n")
    print(open(args.out + ".md", encoding="utf-8").read())


if __name__ == "__main__":
    main()
