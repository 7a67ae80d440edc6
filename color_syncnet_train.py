"""Train the lip-sync expert, SyncNet_color (SPEC section 8, first stage).

    python color_syncnet_train.py --data_root lrs2_preprocessed/ --checkpoint_dir checkpoints/expert
    python color_syncnet_train.py --data_root lrs2_preprocessed/ --checkpoint_dir checkpoints/expert \\
        --checkpoint_path checkpoints/expert/checkpoint_step000010000.pth      # resume
    python color_syncnet_train.py ... --resume                                  # resume from the latest
    torchrun --nproc_per_node 4 color_syncnet_train.py --data_root ... --checkpoint_dir ...  # 4 GPUs
    python color_syncnet_train.py ... --max_steps 100 --hparams "syncnet_batch_size=16,syncnet_lr=5e-4"
    python color_syncnet_train.py --data_root lrs2_preprocessed_288x288/ --checkpoint_dir savedmodel \
        --hparams img_size=288                                                  # HD: 288x288 faces

Writes checkpoint_stepNNNNNNNNN.pth (at step 1 and every syncnet_checkpoint_interval
steps), log.csv and loss_curves.png into --checkpoint_dir.
"""
from cli import hparams_from_args, run_main


def main(argv=None):
    from trainers import ExpertTrainer
    from training import base_parser
    args = base_parser(__doc__).parse_args(argv)
    ExpertTrainer(args, hparams_from_args(args)).run()


if __name__ == "__main__":
    run_main(main)
