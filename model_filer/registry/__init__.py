"""The registry: its model, its one codec, the file and its lock, merging, names, discovery."""
