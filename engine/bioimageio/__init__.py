"""bioimage.io model packages: a Maskloop model for ilastik, deepImageJ, QuPath and napari.

A package is a zip with ``rdf.yaml`` (the model description, format 0.5) and the files it
names. What we write:

- ``weights.torchscript.pt`` and ``weights.onnx``: the network followed by a softmax over the
  classes, so the output is one probability map per class (channel k = class k). The softmax
  is in the graph rather than a postprocessing step because every consumer runs the graph,
  while the spec's ``softmax`` postprocessing is younger than some consumers.
- preprocessing ``fixed_zero_mean_unit_variance`` along the channel axis with the checkpoint's
  per-channel mean and std of *raw* pixel values: the input tensor is the image's raw values as
  float32 (no scaling to 0..1), exactly what Maskloop feeds its own network.
- ``test_input.npy`` / ``test_output.npy``: a crop of one of the project's images (a size the
  network accepts) and the probabilities for it; ``cover.png``: that crop beside the crop with
  the predicted classes over it; ``README.md``: classes, metrics, training data, how to use it.
- ``maskloop_checkpoint.pt``: the Maskloop checkpoint itself (an attachment), so that Maskloop
  can predict with the package and continue training from it (:func:`read_package_checkpoint`).

Writing needs only torch, onnx, numpy and Pillow; ``bioimageio.spec`` / ``bioimageio.core``
(the ``bioimageio`` extra) are what the tests validate the result with, not what writes it.
The YAML is written by :func:`to_yaml` in a plain subset (quoted strings, floats with a decimal
point and signed exponent) that YAML 1.1 readers (SnakeYAML in Fiji, PyYAML) and 1.2 readers
read the same way.
"""

from engine.bioimageio.constants import (
                                         ARCHITECTURES,
                                         CHECKPOINT_NAME,
                                         CITATIONS,
                                         COMMON_LICENSES,
                                         DEFAULT_LICENSE,
                                         FORMAT_VERSION,
                                         INPUT_ID,
                                         MAX_CHECKPOINT_BYTES,
                                         MIN_SIDE,
                                         NAME_CHARS,
                                         OUTPUT_ID,
                                         PACKAGE_MARKER,
                                         RDF_NAME,
                                         TEST_SIDE,
)
from engine.bioimageio.export import export_bioimageio
from engine.bioimageio.naming import check_authors, check_license, check_name, default_author, default_name
from engine.bioimageio.reading import is_package, read_package_checkpoint
from engine.bioimageio.source import PackageSource, package_source
from engine.bioimageio.tensors import _test_crop, cover_image, tile_sizes
from engine.bioimageio.yaml_writer import to_yaml

__all__ = [
    "ARCHITECTURES", "CHECKPOINT_NAME", "CITATIONS", "COMMON_LICENSES", "DEFAULT_LICENSE",
    "FORMAT_VERSION", "INPUT_ID", "MAX_CHECKPOINT_BYTES", "MIN_SIDE", "NAME_CHARS", "OUTPUT_ID",
    "PACKAGE_MARKER", "RDF_NAME", "TEST_SIDE", "PackageSource", "check_authors", "check_license",
    "check_name", "cover_image", "default_author", "default_name", "export_bioimageio",
    "is_package", "package_source", "read_package_checkpoint", "tile_sizes", "to_yaml",
    "_test_crop",
]
