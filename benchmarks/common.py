"""What the benchmark scripts share: where results go, the shared CIFAR-10
copy, and a reading of the machine's load, so that a figure measured on a
shared machine says what else was running beside it."""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
SHARED_CIFAR10 = os.path.join(ROOT, "..", "shared", "datasets", "cifar10-jpeg.tar.gz")


def machine_load():
    """The 1/5/15-minute load averages and the four busiest processes."""
    top = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True,
                         text=True).stdout.splitlines()[1:5]
    return os.getloadavg(), [line.strip()[:100] for line in top]
