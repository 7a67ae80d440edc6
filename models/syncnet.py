"""SyncNet_color: the lip-sync expert (SPEC section 3)."""
from torch import nn
from torch.nn import functional as F

from .conv import Conv2d, audio_encoder, residual


class SyncNet_color(nn.Module):
    """Embeds a mel window and 5 lower-half faces; their cosine is the sync probability.

    audio: (B, 1, 80, 16); face: (B, 15, 48, 96) = 5 RGB frames stacked on channels.
    Returns L2-normalised (audio_embedding, face_embedding), each (B, 512).
    """

    def __init__(self):
        super().__init__()
        self.face_encoder = nn.Sequential(
            Conv2d(15, 32, 7, 1, 3),
            Conv2d(32, 64, 5, (1, 2), 1), residual(64), residual(64),
            Conv2d(64, 128, 3, 2, 1), residual(128), residual(128), residual(128),
            Conv2d(128, 256, 3, 2, 1), residual(256), residual(256),
            Conv2d(256, 512, 3, 2, 1), residual(512), residual(512),
            Conv2d(512, 512, 3, 2, 1), Conv2d(512, 512, 3, 1, 0), Conv2d(512, 512, 1, 1, 0))
        self.audio_encoder = audio_encoder(residuals_at_256=2)

    def embed_audio(self, audio_sequences):
        """(B, 1, 80, 16) mel windows -> (B, 512) unit vectors."""
        return F.normalize(self.audio_encoder(audio_sequences).flatten(1), p=2, dim=1)

    def embed_faces(self, face_sequences):
        """(B, 15, 48, 96) lower halves of 5 frames -> (B, 512) unit vectors."""
        return F.normalize(self.face_encoder(face_sequences).flatten(1), p=2, dim=1)

    def forward(self, audio_sequences, face_sequences):
        return self.embed_audio(audio_sequences), self.embed_faces(face_sequences)
