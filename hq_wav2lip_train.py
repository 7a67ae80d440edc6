"""Train the Wav2Lip generator with the visual quality discriminator (SPEC section 8, GAN stage).

    python hq_wav2lip_train.py --data_root lrs2_preprocessed/ --checkpoint_dir checkpoints/wav2lip_gan \\
        --syncnet_checkpoint_path checkpoints/lipsync_expert.pth
    python hq_wav2lip_train.py ... --checkpoint_path checkpoints/wav2lip_gan/checkpoint_step000003000.pth \\
        --disc_checkpoint_path checkpoints/wav2lip_gan/disc_checkpoint_step000003000.pth   # resume
    python hq_wav2lip_train.py ... --resume           # both from the latest in --checkpoint_dir
    torchrun --nproc_per_node 4 hq_wav2lip_train.py --data_root ... --checkpoint_dir ... --syncnet_checkpoint_path ...
    python hq_wav2lip_train.py ... --hparams img_size=288   # HD: 288x288 faces (the 96 expert is accepted)

Writes checkpoint_stepNNNNNNNNN.pth, disc_checkpoint_stepNNNNNNNNN.pth and
samples_stepNNNNNNNNN/ (at step 1 and every checkpoint_interval steps), log.csv
and loss_curves.png into --checkpoint_dir.
"""
from cli import hparams_from_args, run_main


def gan_parser(doc):
    from wav2lip_train import generator_parser
    parser = generator_parser(doc)
    parser.add_argument("--disc_checkpoint_path", default=None, help="resume the discriminator from this")
    return parser


def main(argv=None):
    from trainers import GANTrainer
    args = gan_parser(__doc__).parse_args(argv)
    GANTrainer(args, hparams_from_args(args)).run()


if __name__ == "__main__":
    run_main(main)
