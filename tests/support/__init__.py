"""Helpers shared by the tests and the benchmarks: a SeaweedFS S3 server, a fault-injecting
proxy, a git repository builder and environment isolation."""
