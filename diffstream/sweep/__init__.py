"""Sweeps: many traces × arms × link shares × seeds, on a local process pool or a Ray
cluster, with an aggregate report. ``python run_sim.py scenarios/sweep_lte.yaml``; the
guide is docs/sweeps.md, the library entry point ``diffstream.sweep.driver.run_sweep_file``.

Modules, in the order data moves: ``schema`` (the YAML), ``plan`` (expansion and run ids),
``execute`` (one run in a worker), ``executors`` (pool / Ray), ``runner`` (scheduling,
retries, resume), ``store`` (the output folder), ``aggregate`` and ``plots`` (the report),
``driver`` (one invocation), ``progress`` (the bar), ``cli`` (the command line's part).
Importing the package stays light (no scipy, matplotlib or Ray): the command line imports
it for every scenario.
"""
