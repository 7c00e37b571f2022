#!/usr/bin/env python3
"""Run a diffstream scenario: ``python run_sim.py scenarios/lte_trace.yaml``."""

import sys

from diffstream.cli import run

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
