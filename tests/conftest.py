import os

import torch

# Two cores: keep each test process to one intra-op thread so parallel pieces do not oversubscribe.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
