"""Moving bytes between a model folder and its remote: fetch, upload, resume, progress."""
