"""What every script shares at its command line: user errors and --hparams."""
import sys


class UserError(Exception):
    """A mistake in the user's input: printed as one line, exit status 1, no traceback."""


def run_main(main, argv=None):
    """Run `main(argv)`, turning a UserError into one clear line and exit status 1."""
    try:
        return main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def add_hparams_argument(parser):
    parser.add_argument("--hparams", default="",
                        help='overrides of hparams.py, e.g. "batch_size=8,syncnet_wt=0.03"')


def hparams_from_args(args):
    from hparams import parse_overrides
    try:
        return parse_overrides(args.hparams)
    except ValueError as e:
        raise UserError(str(e)) from None
