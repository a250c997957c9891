"""Data: readers of the file formats (:mod:`.readers`), the registry of named tasks
(:mod:`.tasks`) and the embedded data and models fetched from PyPI packages (:mod:`.fetch`)."""
