"""Plain library modules shared by the built-in plugins; nothing here registers a plugin.

``clustering`` (spherical k-means over memory-mapped embeddings), ``cluster_duplicates`` (the
per-cluster duplicate score of MedDEL, SemDeDup and D4), ``discovery`` (roots, file
listing, ids), ``pairing`` (images with masks by stem), ``splits`` (seeded and published
train/test splits), ``masks`` (binary mask reading) and ``folder_dataset`` (the base classes
of every folder dataset).
"""
