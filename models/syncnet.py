"""SyncNet_color: the lip-sync expert (SPEC section 3; at 288: HD.md)."""
from torch import nn
from torch.nn import functional as F

from .conv import Conv2d, audio_encoder, check_img_size, residuals


def _face_encoder(img_size):
    """5 stacked lower halves (B, 15, S/2, S) -> (B, 512, 1, 1), one Sequential."""
    if img_size == 96:  # SPEC section 3
        return [
            Conv2d(15, 32, 7, 1, 3),  # 48x96
            Conv2d(32, 64, 5, (1, 2), 1), *residuals(64, 2),  # 46x47
            Conv2d(64, 128, 3, 2, 1), *residuals(128, 3),  # 23x24
            Conv2d(128, 256, 3, 2, 1), *residuals(256, 2),  # 12x12
            Conv2d(256, 512, 3, 2, 1), *residuals(512, 2),  # 6x6
            Conv2d(512, 512, 3, 2, 1), Conv2d(512, 512, 3, 1, 0), Conv2d(512, 512, 1, 1, 0)]  # 3x3, 1x1
    return [  # HD.md
        Conv2d(15, 32, 7, 1, 3),  # 144x288
        Conv2d(32, 32, 5, 1, 1), Conv2d(32, 32, 3, 1, 1),  # 142x286
        Conv2d(32, 64, 5, (1, 2), 1), *residuals(64, 2),  # 140x142
        Conv2d(64, 128, 3, 2, 1), *residuals(128, 3),  # 70x71
        Conv2d(128, 256, 3, 2, 1), *residuals(256, 2),  # 35x36
        Conv2d(256, 512, 3, 2, 1), *residuals(512, 2),  # 18x18
        Conv2d(512, 512, 3, 2, 1), Conv2d(512, 512, 3, 2, 0),  # 9x9, 4x4
        Conv2d(512, 512, 3, 1, 0), Conv2d(512, 512, 2, 1, 0), Conv2d(512, 512, 1, 1, 0)]  # 2x2, 1x1, 1x1


class SyncNet_color(nn.Module):
    """Embeds a mel window and 5 lower-half faces; their cosine is the sync probability.

    audio: (B, 1, 80, 16); face: (B, 15, S/2, S) = 5 RGB frames stacked on channels,
    S = img_size (96: (B, 15, 48, 96); 288: (B, 15, 144, 288)).
    Returns L2-normalised (audio_embedding, face_embedding), each (B, 512).
    """

    def __init__(self, img_size=96):
        super().__init__()
        self.img_size = check_img_size(img_size)
        self.face_encoder = nn.Sequential(*_face_encoder(self.img_size))
        self.audio_encoder = audio_encoder(residuals_at_256=2)

    def embed_audio(self, audio_sequences):
        """(B, 1, 80, 16) mel windows -> (B, 512) unit vectors."""
        return F.normalize(self.audio_encoder(audio_sequences).flatten(1), p=2, dim=1)

    def embed_faces(self, face_sequences):
        """(B, 15, S/2, S) lower halves of 5 frames -> (B, 512) unit vectors."""
        return F.normalize(self.face_encoder(face_sequences).flatten(1), p=2, dim=1)

    def forward(self, audio_sequences, face_sequences):
        return self.embed_audio(audio_sequences), self.embed_faces(face_sequences)
