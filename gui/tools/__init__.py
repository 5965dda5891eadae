"""Canvas tools: brush, eraser, polygon, flood fill, box to GrabCut, eyedropper."""

from gui.tools.base import Tool, ToolContext
from gui.tools.brush import BrushTool, EraserTool
from gui.tools.eyedropper import EyedropperTool
from gui.tools.fill import FloodFillTool
from gui.tools.grabcut import GrabCutTool
from gui.tools.polygon import PolygonTool

# In toolbar order.
TOOL_CLASSES: tuple[type[Tool], ...] = (
    BrushTool, EraserTool, PolygonTool, FloodFillTool, GrabCutTool, EyedropperTool,
)

__all__ = ["TOOL_CLASSES", "Tool", "ToolContext"]
