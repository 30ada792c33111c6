"""This machine's side: a model folder and the object store that holds its bytes.

The folder's layout, temp files and locks, the one freshness check, the store, dumping.
"""
