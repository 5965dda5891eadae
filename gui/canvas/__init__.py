"""The canvas and its scene items."""

from gui.canvas.view import Canvas

__all__ = ["Canvas"]
