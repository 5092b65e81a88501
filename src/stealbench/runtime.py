"""What every workflow script does first: logging to its ``log:`` file, threads, seeds."""

from __future__ import annotations

import logging
import sys
import zlib


def setup(snakemake, use_torch: bool = True) -> logging.Logger:
    """Log to the rule's log file (and to the terminal when one is attached); pin threads.

    Torch gets exactly the threads the rule was given, so parallel jobs do not oversubscribe.
    """
    handlers: list[logging.Handler] = [logging.FileHandler(snakemake.log[0], mode="w")]
    if sys.stderr.isatty():
        handlers.append(logging.StreamHandler())
    logging.basicConfig(
        level=logging.INFO,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logger = logging.getLogger(f"stealbench.{snakemake.rule}")
    previous = sys.excepthook

    def log_then_raise(kind, error, trace):
        # Snakemake shows a failed job's log file: put the cause there, not only on stderr.
        logger.error("the job failed", exc_info=(kind, error, trace))
        previous(kind, error, trace)

    sys.excepthook = log_then_raise
    if use_torch:
        import torch

        torch.set_num_threads(max(1, int(snakemake.threads)))
        logger.info("torch %s, %d thread(s)", torch.__version__, torch.get_num_threads())
    logger.info("rule %s, wildcards %s", snakemake.rule, dict(snakemake.wildcards))
    return logger


def derive_seed(master: int, *names: object) -> int:
    """A stable seed per artefact (crc32 of its names), so adding an axis changes no other."""
    return (master * 1_000_003 + zlib.crc32("/".join(map(str, names)).encode())) % 2**31
