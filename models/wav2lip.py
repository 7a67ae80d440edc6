"""Wav2Lip generator and visual quality discriminator (SPEC sections 4 and 5; at 288: HD.md)."""
import torch
from torch import nn
from torch.nn import functional as F

from .conv import (Conv2d, Conv2dTranspose, audio_encoder, check_img_size, fold_time, nonorm_Conv2d, residual,
                   residuals, unfold_time, upsample)


def _generator_encoder(img_size):
    """Face encoder blocks, (N, 6, S, S) -> (N, 512, 1, 1); each block's output is a skip."""
    if img_size == 96:  # SPEC section 4
        return [
            [Conv2d(6, 16, 7, 1, 3)],  # 96x96
            [Conv2d(16, 32, 3, 2, 1), *residuals(32, 2)],  # 48x48
            [Conv2d(32, 64, 3, 2, 1), *residuals(64, 3)],  # 24x24
            [Conv2d(64, 128, 3, 2, 1), *residuals(128, 2)],  # 12x12
            [Conv2d(128, 256, 3, 2, 1), *residuals(256, 2)],  # 6x6
            [Conv2d(256, 512, 3, 2, 1), residual(512)],  # 3x3
            [Conv2d(512, 512, 3, 1, 0), Conv2d(512, 512, 1, 1, 0)],  # 1x1
        ]
    return [  # HD.md
        [Conv2d(6, 16, 7, 1, 3)],  # 288x288
        [Conv2d(16, 32, 5, 2, 2), residual(32)],  # 144x144
        [Conv2d(32, 32, 3, 2, 1), *residuals(32, 2)],  # 72x72
        [Conv2d(32, 64, 3, 2, 1), *residuals(64, 3)],  # 36x36
        [Conv2d(64, 128, 3, 2, 1), *residuals(128, 2)],  # 18x18
        [Conv2d(128, 256, 3, 2, 1), *residuals(256, 2)],  # 9x9
        [Conv2d(256, 512, 3, 2, 1), residual(512)],  # 5x5
        [Conv2d(512, 512, 3, 1, 0), Conv2d(512, 512, 1, 1, 0)],  # 3x3
        [Conv2d(512, 512, 3, 1, 0), Conv2d(512, 512, 1, 1, 0)],  # 1x1
    ]


def _generator_decoder(img_size):
    """Face decoder blocks; a block's input is the previous output with its skip concatenated."""
    if img_size == 96:
        return [
            [Conv2d(512, 512, 1, 1, 0)],  # 1x1
            [Conv2dTranspose(1024, 512, 3, 1, 0), residual(512)],  # 3x3
            [upsample(1024, 512), *residuals(512, 2)],  # 6x6
            [upsample(768, 384), *residuals(384, 2)],  # 12x12
            [upsample(512, 256), *residuals(256, 2)],  # 24x24
            [upsample(320, 128), *residuals(128, 2)],  # 48x48
            [upsample(160, 64), *residuals(64, 2)],  # 96x96
        ]
    return [
        [Conv2d(512, 512, 1, 1, 0)],  # 1x1
        [Conv2dTranspose(1024, 512, 3, 1, 0), residual(512)],  # 3x3
        [Conv2dTranspose(1024, 512, 3, 2, 1), *residuals(512, 2)],  # 5x5
        [Conv2dTranspose(1024, 512, 3, 2, 1), *residuals(512, 2)],  # 9x9
        [upsample(768, 384), *residuals(384, 2)],  # 18x18
        [upsample(512, 256), *residuals(256, 2)],  # 36x36
        [upsample(320, 128), *residuals(128, 2)],  # 72x72
        [upsample(160, 64), *residuals(64, 2)],  # 144x144
        [upsample(96, 64), *residuals(64, 2)],  # 288x288
    ]


class Wav2Lip(nn.Module):
    """Generates the img_size x img_size face (96 or 288) whose mouth matches a 0.2 s mel window.

    face: (B, 6, S, S) = target frame with its lower half zeroed, then the
    reference frame; audio: (B, 1, 80, 16). Sequences (B, 6, T, S, S) with
    (B, T, 1, 80, 16) are folded into the batch. Output in [0, 1].
    """

    def __init__(self, img_size=96):
        super().__init__()
        self.img_size = check_img_size(img_size)
        # Built in the published order (encoder, audio, decoder): same random initialisation.
        self.face_encoder_blocks = nn.ModuleList(nn.Sequential(*b) for b in _generator_encoder(self.img_size))
        self.audio_encoder = audio_encoder(residuals_at_256=1)
        self.face_decoder_blocks = nn.ModuleList(nn.Sequential(*b) for b in _generator_decoder(self.img_size))
        self.output_block = nn.Sequential(Conv2d(80, 32, 3, 1, 1),
                                          nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0),
                                          nn.Sigmoid())

    def encode_face(self, face):
        """(N, 6, S, S) -> the encoder outputs the decoder's skips need (7 at 96, 9 at 288)."""
        feats = []
        x = face
        for block in self.face_encoder_blocks:
            x = block(x)
            feats.append(x)
        return feats

    def decode(self, audio_embedding, feats):
        """Audio embedding (N, 512, 1, 1) + encoder outputs -> face (N, 3, S, S)."""
        x = audio_embedding
        for block, skip in zip(self.face_decoder_blocks, reversed(feats)):
            x = torch.cat((block(x), skip), dim=1)
        return self.output_block(x)

    def forward(self, audio_sequences, face_sequences):
        batch_size = audio_sequences.size(0)
        is_sequence = face_sequences.dim() > 4
        if is_sequence:
            audio_sequences = fold_time(audio_sequences.transpose(1, 2))  # (T*B, 1, 80, 16)
            face_sequences = fold_time(face_sequences)  # (T*B, 6, S, S)
        out = self.decode(self.audio_encoder(audio_sequences), self.encode_face(face_sequences))
        return unfold_time(out, batch_size) if is_sequence else out


def _discriminator_blocks(img_size):
    """Blocks of the visual quality discriminator: lower half (N, 3, S/2, S) -> (N, 512, 1, 1)."""
    if img_size == 96:  # SPEC section 5
        return [
            [nonorm_Conv2d(3, 32, 7, 1, 3)],  # 48x96
            [nonorm_Conv2d(32, 64, 5, (1, 2), 2), nonorm_Conv2d(64, 64, 5, 1, 2)],  # 48x48
            [nonorm_Conv2d(64, 128, 5, 2, 2), nonorm_Conv2d(128, 128, 5, 1, 2)],  # 24x24
            [nonorm_Conv2d(128, 256, 5, 2, 2), nonorm_Conv2d(256, 256, 5, 1, 2)],  # 12x12
            [nonorm_Conv2d(256, 512, 3, 2, 1), nonorm_Conv2d(512, 512, 3, 1, 1)],  # 6x6
            [nonorm_Conv2d(512, 512, 3, 2, 1), nonorm_Conv2d(512, 512, 3, 1, 1)],  # 3x3
            [nonorm_Conv2d(512, 512, 3, 1, 0), nonorm_Conv2d(512, 512, 1, 1, 0)],  # 1x1
        ]
    return [  # HD.md
        [nonorm_Conv2d(3, 32, 7, 1, 3)],  # 144x288
        [nonorm_Conv2d(32, 64, 5, (1, 2), 2), nonorm_Conv2d(64, 64, 5, 1, 2)],  # 144x144
        [nonorm_Conv2d(64, 128, 5, 2, 2), nonorm_Conv2d(128, 128, 5, 1, 2)],  # 72x72
        [nonorm_Conv2d(128, 128, 5, 2, 2), nonorm_Conv2d(128, 128, 5, 1, 2)],  # 36x36
        [nonorm_Conv2d(128, 256, 5, 2, 2), nonorm_Conv2d(256, 256, 5, 1, 2)],  # 18x18
        [nonorm_Conv2d(256, 256, 5, 2, 2), nonorm_Conv2d(256, 256, 5, 1, 2)],  # 9x9
        [nonorm_Conv2d(256, 512, 3, 2, 1), nonorm_Conv2d(512, 512, 3, 1, 1)],  # 5x5
        [nonorm_Conv2d(512, 512, 3, 2, 1), nonorm_Conv2d(512, 512, 3, 1, 1)],  # 3x3
        [nonorm_Conv2d(512, 512, 3, 1, 0), nonorm_Conv2d(512, 512, 1, 1, 0)],  # 1x1
    ]


class Wav2Lip_disc_qual(nn.Module):
    """Visual quality discriminator: probability that lower-half faces are real.

    faces: (B, 3, T, S, S) -> (T*B, 1), time-major. With sigmoid=False it is the
    Wasserstein critic (wloss_hq_wav2lip_train.py): the same network and
    state-dict names, returning the unbounded score instead of a probability.
    """

    def __init__(self, img_size=96, sigmoid=True):
        super().__init__()
        self.img_size = check_img_size(img_size)
        self.face_encoder_blocks = nn.ModuleList(nn.Sequential(*block)
                                                 for block in _discriminator_blocks(self.img_size))
        head = [nn.Conv2d(512, 1, kernel_size=1, stride=1, padding=0)]
        self.binary_pred = nn.Sequential(*head, nn.Sigmoid()) if sigmoid else nn.Sequential(*head)

    def get_lower_half(self, face_sequences):
        return face_sequences[:, :, face_sequences.size(2) // 2:]

    def to_2d(self, face_sequences):
        return fold_time(face_sequences)

    def forward(self, face_sequences):
        x = self.get_lower_half(self.to_2d(face_sequences))  # (T*B, 3, S/2, S)
        for block in self.face_encoder_blocks:
            x = block(x)
        return self.binary_pred(x).view(len(x), -1)

    def perceptual_forward(self, false_face_sequences):
        """The generator's adversarial loss: BCE of D(fake) against "real", on the input's device."""
        pred = self.forward(false_face_sequences)
        return F.binary_cross_entropy(pred, torch.ones_like(pred))
