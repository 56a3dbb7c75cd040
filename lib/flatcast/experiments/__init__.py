"""Experiment runners that chapters call, and the paper-profile runner that writes ``data/results/``."""
