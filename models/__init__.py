"""The three Wav2Lip networks, with the state-dict names of the published checkpoints."""
from .syncnet import SyncNet_color
from .wav2lip import Wav2Lip, Wav2Lip_disc_qual

__all__ = ["Wav2Lip", "Wav2Lip_disc_qual", "SyncNet_color"]
