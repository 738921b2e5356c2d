"""Charts as PNG bytes, the one way every report draws them: matplotlib's object API on the Agg canvas (no pyplot:
no global figure state, safe in task threads)."""

from __future__ import annotations

import io
from typing import Any


def png(figure: Any) -> bytes:
    """Draw a matplotlib Figure and encode it as a PNG.

    RGB, not matplotlib's RGBA: the PDF printer then embeds one picture instead of a picture and an alpha mask it
    would first split out and re-encode. Pillow writes no software version: the same figures draw the same bytes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    out = io.BytesIO()
    Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB").save(out, "PNG")
    return out.getvalue()
