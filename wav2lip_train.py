"""Train the Wav2Lip generator against a frozen lip-sync expert (SPEC section 8, second stage).

    python wav2lip_train.py --data_root lrs2_preprocessed/ --checkpoint_dir checkpoints/wav2lip \\
        --syncnet_checkpoint_path checkpoints/lipsync_expert.pth
    python wav2lip_train.py ... --checkpoint_path checkpoints/wav2lip/checkpoint_step000003000.pth  # resume
    torchrun --nproc_per_node 4 wav2lip_train.py --data_root ... --checkpoint_dir ... --syncnet_checkpoint_path ...
    python wav2lip_train.py ... --max_steps 10 --hparams "batch_size=4" --amp
    python wav2lip_train.py ... --hparams img_size=288   # HD: 288x288 faces (the 96 expert is accepted)

Writes checkpoint_stepNNNNNNNNN.pth and samples_stepNNNNNNNNN/ (at step 1 and every
checkpoint_interval steps), log.csv and loss_curves.png into --checkpoint_dir.
"""
from cli import hparams_from_args, run_main


def generator_parser(doc):
    from training import base_parser
    parser = base_parser(doc)
    parser.add_argument("--syncnet_checkpoint_path", required=True,
                        help="the trained lip-sync expert (frozen during this training); one smaller than "
                             "img_size (the published 96 expert for a 288 generator) sees downscaled faces")
    return parser


def main(argv=None):
    from trainers import GeneratorTrainer
    args = generator_parser(__doc__).parse_args(argv)
    GeneratorTrainer(args, hparams_from_args(args)).run()


if __name__ == "__main__":
    run_main(main)
