"""Files on disk, under every other package: layout, temp files, atomic writes, locks, sha256."""
