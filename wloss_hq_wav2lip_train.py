"""Train the Wav2Lip generator with a Wasserstein critic (WGAN-GP): the GAN stage of the HD recipe.

    python wloss_hq_wav2lip_train.py --data_root lrs2_preprocessed_288x288/ --checkpoint_dir savedmodel \\
        --syncnet_checkpoint_path savedmodel/checkpoint_step000200000.pth --hparams img_size=288
    python wloss_hq_wav2lip_train.py ... --checkpoint_path savedmodel/checkpoint_step000003000.pth \\
        --disc_checkpoint_path savedmodel/disc_checkpoint_step000003000.pth   # resume (or start from hq's)
    python wloss_hq_wav2lip_train.py ... --resume          # both from the latest in --checkpoint_dir
    python wloss_hq_wav2lip_train.py ... --critic_steps 5 --hparams "wgan_beta1=0,wgan_beta2=0.9"  # the paper's

hq_wav2lip_train.py with the visual quality discriminator replaced by a critic: the
same network without its sigmoid, trained on E[D(fake)] - E[D(real)] + wgan_gp_weight
(10) * gradient penalty at per-sample interpolates (Gulrajani et al. 2017); the generator's
adversarial term is -E[D(g)], weighted by disc_wt as in hq_wav2lip_train.py. Works at 96 and
288 (--hparams img_size=288). Writes checkpoint_stepNNNNNNNNN.pth, disc_checkpoint_stepNNNNNNNNN.pth
(the critic, in the discriminator's state-dict layout) and samples_stepNNNNNNNNN/, log.csv and
loss_curves.png into --checkpoint_dir.
"""
from cli import hparams_from_args, run_main


def main(argv=None):
    from hq_wav2lip_train import gan_parser
    from trainers import WassersteinTrainer
    parser = gan_parser(__doc__)
    parser.add_argument("--critic_steps", type=int, default=1,
                        help="critic updates per generator update, each on its own batch "
                             "(default 1, as the fork; the WGAN-GP paper uses 5)")
    args = parser.parse_args(argv)
    WassersteinTrainer(args, hparams_from_args(args)).run()


if __name__ == "__main__":
    run_main(main)
