"""Utilities that know nothing of models or data: atomic files and JSON digests (io), the hub's offline
check (hub), threads and logging (runtime), registries and plugins, results files, loggers, markdown."""
