"""Seamless paste: the generated face blended into the frame through a feathered lower-face mask.

    weights = lower_face_mask(height, width)      # (height, width) float32 in [0, 1]
    blend_face(frame, face, (y1, y2, x1, x2))     # in place, like lipsync.paste_face

The mask lives in the face box's own coordinates (u across, v down, 0 to 1 from
the box's top-left corner, taken at pixel centres): an ellipse centred on the
mouth region at (u, v) = (0.5, 0.7), half-axes 0.42 across and 0.3 down, so it
spans u 0.08-0.92 and v 0.4-1.0: from just below the eyes to the box's bottom
edge. Weights are 1 out to MASK_CORE of the way to the ellipse's edge (nose,
mouth, chin) and fall to 0 at the edge along a smoothstep, so the generated
pixels fade into the original ones with no seam; outside the ellipse the weights
are exactly 0 and the frame keeps its own pixels (the upper face, the box's
sides and corners, everything outside the box).
"""
import numpy as np

MASK_CENTRE = (0.5, 0.7)  # (u, v) in the box
MASK_RADII = (0.42, 0.3)  # half-axes (across, down) in box widths and heights
MASK_CORE = 0.6  # weight 1 within this fraction of the ellipse's radius


def lower_face_mask(height, width):
    """(height, width) float32 blending weights in [0, 1] for a face box of that size (see the module)."""
    v = (np.arange(height, dtype=np.float64) + 0.5) / height
    u = (np.arange(width, dtype=np.float64) + 0.5) / width
    radius = np.hypot(((u - MASK_CENTRE[0]) / MASK_RADII[0])[None, :],
                      ((v - MASK_CENTRE[1]) / MASK_RADII[1])[:, None])  # 1 on the ellipse
    t = np.clip((1 - radius) / (1 - MASK_CORE), 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep: 0 at the edge, 1 in the core


def blend_face(frame, face, coords):
    """Resize the generated face to the box (y1, y2, x1, x2) and blend it into `frame` (in place)
    with lower_face_mask's weights: frame + weight * (face - frame), rounded."""
    import cv2
    y1, y2, x1, x2 = coords
    generated = cv2.resize(face, (x2 - x1, y2 - y1)).astype(np.float32)
    region = frame[y1:y2, x1:x2]
    weights = lower_face_mask(y2 - y1, x2 - x1)[..., None]  # (h, w, 1)
    frame[y1:y2, x1:x2] = np.rint(region + weights * (generated - region)).astype(np.uint8)
    return frame
