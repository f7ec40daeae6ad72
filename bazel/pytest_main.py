"""Runs the test files named on the command line under pytest (Bazel's py_test main)."""

import sys

import pytest

if __name__ == "__main__":
    # Runfiles are read-only: no .pytest_cache.
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
