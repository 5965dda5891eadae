"""Maskloop's engine: everything computational, no Qt.

Module map (see README.md "Architecture" for the full picture):

- ``errors``        UserError: bad input, reported as one line (exit status 2).
- ``imageio``       reading every image format; display and model-input conversions.
- ``project``       the project folder: SQLite index, labels, predictions, runs.
- ``formats``       mask and annotation import/export (PNG, COCO, LabelMe, VOC).
- ``models``        network registry: ``build_model(name, num_classes, in_channels)``.
- ``training``      the trainer, its events, data sampling and augmentation.
- ``inference``     tiled prediction with blending.
- ``metrics``       confusion-matrix metrics.
- ``checkpoint``    self-describing checkpoints, loaded with ``weights_only=True``.
- ``cli``           the command line of ``main.py``.
"""

__version__ = "0.1.0"
