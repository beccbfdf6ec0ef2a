"""delbench's built-in plugins: every concrete dataset, selector, backbone and task.

One sub-package per plugin kind (``datasets``, ``selectors``, ``backbones``, ``tasks``), one
module per method family; each module is a plain pluggy plugin (``@hookimpl`` functions
returning classes) and importing one runs nothing and imports no torch. Like a third-party
plugin, every module here imports only :mod:`delbench.sdk` of delbench. ``lib`` holds the
plain library modules the plugins share (k-means, folder discovery, pairing, splits, masks);
it registers nothing.
"""
