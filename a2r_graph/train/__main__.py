"""``python -m a2r_graph.train --config FILE.yaml``: ``a2r train-synthesizer`` without the
graph's imports, for ``accelerate launch`` on GPUs (see the README's training section)::

    accelerate launch --config_file examples/accelerate/zero2.yaml --num_processes 8 \\
        -m a2r_graph.train --config train.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from a2r_graph.train.command import train_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m a2r_graph.train", description="RL-tune the synthesizer (GRPO)"
    )
    parser.add_argument("--config", type=Path, required=True, help="YAML of TrainConfig fields")
    args = parser.parse_args(argv)
    try:
        return train_main(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
