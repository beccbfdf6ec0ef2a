"""Built-in downstream tasks: ``segmentation`` and ``classification``."""
