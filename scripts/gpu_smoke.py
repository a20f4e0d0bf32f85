#!/usr/bin/env python3
"""GPU smoke test of `a2r train-synthesizer`: see a2r_graph/train/smoke.py and the README's
"Train the synthesizer" section. Runs from a checkout without installing it:

    python3 scripts/gpu_smoke.py                 # bf16 + gradient checkpointing on the GPU
    python3 scripts/gpu_smoke.py --device cpu    # a quick check anywhere
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from a2r_graph.train.smoke import main

if __name__ == "__main__":
    sys.exit(main())
