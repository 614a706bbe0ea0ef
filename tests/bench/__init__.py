"""`make bench`: the performance figures of the README, measured on this machine.

Run `python -m tests.bench` (or `make bench`); `--quick` runs every part at a toy size to prove
it works (the test suite does that). Timings are noisy here: every figure is a median of
several runs, and comparisons are ratios measured in the same run.
"""
