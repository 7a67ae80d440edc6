"""Wav2Lip generator and visual quality discriminator (SPEC sections 4 and 5)."""
import torch
from torch import nn
from torch.nn import functional as F

from .conv import Conv2d, Conv2dTranspose, audio_encoder, fold_time, nonorm_Conv2d, residual, unfold_time


class Wav2Lip(nn.Module):
    """Generates the 96x96 face whose mouth matches a 0.2 s mel window.

    face: (B, 6, 96, 96) = target frame with its lower half zeroed, then the
    reference frame; audio: (B, 1, 80, 16). Sequences (B, 6, T, 96, 96) with
    (B, T, 1, 80, 16) are folded into the batch. Output in [0, 1].
    """

    def __init__(self):
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(Conv2d(6, 16, 7, 1, 3)),  # 96x96
            nn.Sequential(Conv2d(16, 32, 3, 2, 1), residual(32), residual(32)),  # 48x48
            nn.Sequential(Conv2d(32, 64, 3, 2, 1), residual(64), residual(64), residual(64)),  # 24x24
            nn.Sequential(Conv2d(64, 128, 3, 2, 1), residual(128), residual(128)),  # 12x12
            nn.Sequential(Conv2d(128, 256, 3, 2, 1), residual(256), residual(256)),  # 6x6
            nn.Sequential(Conv2d(256, 512, 3, 2, 1), residual(512)),  # 3x3
            nn.Sequential(Conv2d(512, 512, 3, 1, 0), Conv2d(512, 512, 1, 1, 0)),  # 1x1
        ])
        self.audio_encoder = audio_encoder(residuals_at_256=1)
        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(Conv2d(512, 512, 1, 1, 0)),
            nn.Sequential(Conv2dTranspose(1024, 512, 3, 1, 0), residual(512)),  # 3x3
            nn.Sequential(Conv2dTranspose(1024, 512, 3, 2, 1, output_padding=1),
                          residual(512), residual(512)),  # 6x6
            nn.Sequential(Conv2dTranspose(768, 384, 3, 2, 1, output_padding=1),
                          residual(384), residual(384)),  # 12x12
            nn.Sequential(Conv2dTranspose(512, 256, 3, 2, 1, output_padding=1),
                          residual(256), residual(256)),  # 24x24
            nn.Sequential(Conv2dTranspose(320, 128, 3, 2, 1, output_padding=1),
                          residual(128), residual(128)),  # 48x48
            nn.Sequential(Conv2dTranspose(160, 64, 3, 2, 1, output_padding=1),
                          residual(64), residual(64)),  # 96x96
        ])
        self.output_block = nn.Sequential(Conv2d(80, 32, 3, 1, 1),
                                          nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0),
                                          nn.Sigmoid())

    def encode_face(self, face):
        """(N, 6, 96, 96) -> the 7 encoder outputs the decoder's skips need."""
        feats = []
        x = face
        for block in self.face_encoder_blocks:
            x = block(x)
            feats.append(x)
        return feats

    def decode(self, audio_embedding, feats):
        """Audio embedding (N, 512, 1, 1) + encoder outputs -> face (N, 3, 96, 96)."""
        x = audio_embedding
        for block, skip in zip(self.face_decoder_blocks, reversed(feats)):
            x = torch.cat((block(x), skip), dim=1)
        return self.output_block(x)

    def forward(self, audio_sequences, face_sequences):
        batch_size = audio_sequences.size(0)
        is_sequence = face_sequences.dim() > 4
        if is_sequence:
            audio_sequences = fold_time(audio_sequences.transpose(1, 2))  # (T*B, 1, 80, 16)
            face_sequences = fold_time(face_sequences)  # (T*B, 6, 96, 96)
        out = self.decode(self.audio_encoder(audio_sequences), self.encode_face(face_sequences))
        return unfold_time(out, batch_size) if is_sequence else out


class Wav2Lip_disc_qual(nn.Module):
    """Visual quality discriminator: probability that lower-half faces are real.

    faces: (B, 3, T, 96, 96) -> (T*B, 1), time-major.
    """

    def __init__(self):
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(nonorm_Conv2d(3, 32, 7, 1, 3)),  # 48x96
            nn.Sequential(nonorm_Conv2d(32, 64, 5, (1, 2), 2), nonorm_Conv2d(64, 64, 5, 1, 2)),  # 48x48
            nn.Sequential(nonorm_Conv2d(64, 128, 5, 2, 2), nonorm_Conv2d(128, 128, 5, 1, 2)),  # 24x24
            nn.Sequential(nonorm_Conv2d(128, 256, 5, 2, 2), nonorm_Conv2d(256, 256, 5, 1, 2)),  # 12x12
            nn.Sequential(nonorm_Conv2d(256, 512, 3, 2, 1), nonorm_Conv2d(512, 512, 3, 1, 1)),  # 6x6
            nn.Sequential(nonorm_Conv2d(512, 512, 3, 2, 1), nonorm_Conv2d(512, 512, 3, 1, 1)),  # 3x3
            nn.Sequential(nonorm_Conv2d(512, 512, 3, 1, 0), nonorm_Conv2d(512, 512, 1, 1, 0)),  # 1x1
        ])
        self.binary_pred = nn.Sequential(nn.Conv2d(512, 1, kernel_size=1, stride=1, padding=0),
                                         nn.Sigmoid())

    def get_lower_half(self, face_sequences):
        return face_sequences[:, :, face_sequences.size(2) // 2:]

    def to_2d(self, face_sequences):
        return fold_time(face_sequences)

    def forward(self, face_sequences):
        x = self.get_lower_half(self.to_2d(face_sequences))  # (T*B, 3, 48, 96)
        for block in self.face_encoder_blocks:
            x = block(x)
        return self.binary_pred(x).view(len(x), -1)

    def perceptual_forward(self, false_face_sequences):
        """The generator's adversarial loss: BCE of D(fake) against "real", on the input's device."""
        pred = self.forward(false_face_sequences)
        return F.binary_cross_entropy(pred, torch.ones_like(pred))
