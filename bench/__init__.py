"""Benchmarks (``make bench``): each measures its baselines in the same run and prints ratios.

A package so that ``bench/http.py`` is ``bench.http`` (run it as ``python -m bench.http``), not a
top-level ``http`` module shadowing the standard library's.
"""
