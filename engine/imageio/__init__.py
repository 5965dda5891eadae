"""Reading the images labs and factories produce, and showing them on screen.

Formats (recognised by their first bytes, not by the file name, so a JPEG named ``.png``
still reads):

- PNG: 1/2/4/8/16-bit grey, grey + alpha, RGB, RGBA, palette (read with OpenCV, which keeps
  16 bits). Palette PNGs are expanded to RGB (RGBA when they carry transparency); grey + alpha
  becomes RGBA.
- JPEG: grey or colour (CMYK converted to RGB); the EXIF orientation is applied, so the image
  is upright as a photo viewer shows it.
- BMP: grey, palette (expanded to RGB), RGB, RGBA.
- TIFF / BigTIFF (tifffile): 8/16/32-bit integer, float, grey, RGB, RGBA, any number of
  channels, compressed or not. Multi-page: the channel axes of the file (``C`` of ImageJ and
  OME metadata, ``S`` of samples per pixel) become channels; of every other axis (pages, Z,
  time) the first plane is read. ``ImageInfo.pages`` says how many pages the file holds.

:func:`read_image` returns H x W (grey) or H x W x C in the file's own dtype, channels in RGB
order. Float64 is kept as float64; 1-bit images become uint8 0/255.

Bad files (empty, truncated, damaged, not an image, or a "decompression bomb" whose header
claims more than :data:`MAX_PIXELS` pixels) raise :class:`~engine.errors.UserError` naming
the file. Big but sane images (16k x 16k) load; tiling for prediction is the engine's job.

:func:`to_display` turns any of these into 8-bit RGB for the screen; see its doc for the
contrast rule. The conversion for the network is :mod:`engine.normalization`.

Modules: ``checks`` (plain file, format from the first bytes, size limit, :class:`ImageInfo`),
``png``, ``pil`` (JPEG, BMP), ``tiff``, ``reading`` (the two readers), ``display``, ``verify``
(every pixel decoded on import). Callers import from ``engine.imageio``.
"""


from engine.imageio.checks import MAX_PIXELS, SUFFIXES, ImageInfo, check_regular_file, is_image_file
from engine.imageio.display import DISPLAY_HIGH_PERCENTILE, DISPLAY_LOW_PERCENTILE, display_range, to_display
from engine.imageio.pil import configure_pil
from engine.imageio.reading import read_image, read_image_info
from engine.imageio.verify import verify_image

__all__ = [
    "DISPLAY_HIGH_PERCENTILE",
    "DISPLAY_LOW_PERCENTILE",
    "MAX_PIXELS",
    "SUFFIXES",
    "ImageInfo",
    "check_regular_file",
    "configure_pil",
    "display_range",
    "is_image_file",
    "read_image",
    "read_image_info",
    "to_display",
    "verify_image",
]
