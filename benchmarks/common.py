"""What the benchmark scripts (and the multi-worker tests) share: where
results go, the shared CIFAR-10 copy, free ports for a local cluster, and a
reading of the machine's load, so that a figure measured on a
shared machine says what else was running beside it."""

import os
import socket
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
SHARED_CIFAR10 = os.path.join(ROOT, "..", "shared", "datasets", "cifar10-jpeg.tar.gz")


def machine_load():
    """The 1/5/15-minute load averages and the four busiest processes."""
    top = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True,
                         text=True).stdout.splitlines()[1:5]
    return os.getloadavg(), [line.strip()[:100] for line in top]


def free_ports(n):
    """n TCP ports free on 127.0.0.1 now, for a multi-worker cluster."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
