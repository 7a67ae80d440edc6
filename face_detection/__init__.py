"""S3FD face detection as Wav2Lip uses it (SPEC section 6): boxes only, no landmark networks.

Weights: the published `s3fd.pth`, by default at face_detection/detection/sfd/s3fd.pth
(downloaded there on first use when online). Importing this package builds nothing.
"""
from .api import (S3FD_URL, BatchedDetection, FaceAlignment, LandmarksType, default_weights_path,
                  detect_faces, ensure_weights, load_s3fd)
from .s3fd import S3FD
from .tracking import FACE_RULES, FaceChooser, FaceTrack

__all__ = ["FaceAlignment", "LandmarksType", "BatchedDetection", "detect_faces", "load_s3fd",
           "ensure_weights", "default_weights_path", "S3FD", "S3FD_URL", "FaceChooser", "FaceTrack",
           "FACE_RULES"]
