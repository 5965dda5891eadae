"""Fixed names and limits of the bioimage.io packages Maskloop writes."""

from __future__ import annotations

import re

FORMAT_VERSION = "0.5.4"  # of the model description; 0.5 readers from 2024 on read it as is
RDF_NAME = "rdf.yaml"
CHECKPOINT_NAME = "maskloop_checkpoint.pt"
PACKAGE_MARKER = "maskloop-bioimageio"
DEFAULT_LICENSE = "CC-BY-4.0"  # the licence most bioimage.io models carry
INPUT_ID = "image"
OUTPUT_ID = "probabilities"
TEST_SIDE = 256  # test crop: at most this many pixels per side (a multiple of the pooling)
MIN_SIDE = 64  # the smallest input side the package admits (tiles smaller predict poorly)
MAX_CHECKPOINT_BYTES = 4 << 30  # an embedded checkpoint larger than this is refused
NAME_CHARS = re.compile(r"[A-Za-z0-9_+\- ()]+")
COMMON_LICENSES = ("CC-BY-4.0", "CC0-1.0", "MIT", "BSD-3-Clause", "Apache-2.0", "CC-BY-SA-4.0",
                   "GPL-3.0-or-later")
CITATIONS = {
    "unet": ("Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for Biomedical "
             "Image Segmentation. MICCAI 2015", "10.1007/978-3-319-24574-4_28"),
    "fcn": ("Long J., Shelhamer E., Darrell T. Fully Convolutional Networks for Semantic "
            "Segmentation. CVPR 2015", "10.1109/CVPR.2015.7298965"),
}
ARCHITECTURES = {"unet": "U-Net", "fcn8s": "FCN-8s", "fcn16s": "FCN-16s", "fcn32s": "FCN-32s"}
