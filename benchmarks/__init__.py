"""Benchmarks of model_filer against raw pickle, raw boto3 and DVC.

Run from the repository root: ``python -m benchmarks.run``.
"""
