"""Fixed input batches the benchmarks time on (numpy; no TensorFlow op runs here, so a script may configure its
devices first)."""

import numpy as np


def street_triplets(batch_size, height, width, seed=0) -> dict:
    """``batch_size`` (t-1, t, t+1) synthetic street triplets rendered at the network size: the self-supervised
    trainer's batch keys (``image``, ``image_prev``, ``image_next`` float32 in [0, 1], ``intrinsics``)."""
    from tfdepth.data.synthetic import render_sequence

    samples = []
    for b in range(batch_size):
        seq = render_sequence("street", seed + b, 3, height, width)
        images = seq["image"].astype(np.float32) / 255.0
        samples.append({"image": images[1], "image_prev": images[0], "image_next": images[2],
                        "intrinsics": seq["intrinsics"].astype(np.float32)})
    return {k: np.stack([s[k] for s in samples]) for k in samples[0]}
