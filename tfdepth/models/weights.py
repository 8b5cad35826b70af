"""Opt-in ImageNet initialisation of :class:`ResnetEncoder` from torchvision weights (spec monodepth_seg.md §A.2,
§A.4, §A.10). Nothing here downloads: the weights are a local ``.npz`` file the user makes once.

File format: a NumPy ``.npz`` whose keys are torchvision ResNet ``state_dict`` names (``conv1.weight``,
``bn1.weight``, ``bn1.bias``, ``bn1.running_mean``, ``bn1.running_var``, ``layer1.0.conv1.weight``, ...,
``layer2.0.downsample.0.weight``, ``layer2.0.downsample.1.running_var``, ...). Conv weights are in PyTorch's OIHW
layout and converted to Keras' HWIO. ``fc.*`` and ``*.num_batches_tracked`` are ignored.

How to make the file, on any machine that has PyTorch + torchvision (tfdepth itself never imports torch except in
the converter below)::

    python -c "import torch, torchvision; torch.save(torchvision.models.resnet18(weights='IMAGENET1K_V1')\\
        .state_dict(), 'resnet18.pth')"
    python -m tfdepth.models.weights convert --torch resnet18.pth --out resnet18.npz

(``resnet34`` / ``resnet50`` likewise; the torchvision weights are cached under ``~/.cache/torch/hub/checkpoints``
once downloaded there.) Then set ``model.encoder_weights: resnet18.npz`` (and ``pose_encoder_weights``) in the
config, or call :func:`load_torchvision_resnet_weights` yourself.

For a pose encoder (``num_input_images = n > 1``) the 3-channel ``conv1.weight`` is tiled n times along the input
channels and divided by n, as Monodepth2 does (§A.4), so the response to n identical frames equals the ImageNet
response to one frame.
"""

import argparse
import os
import sys

import numpy as np

__all__ = ["load_torchvision_resnet_weights", "convert_torch_checkpoint", "main"]

_IGNORED_SUFFIXES = (".num_batches_tracked",)
_BN_FIELDS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def _expected_arrays(encoder):
    """torch key -> (keras variable, kind) for every weight of ``encoder``; kind is "conv" or "bn"."""
    torch_names = getattr(encoder, "torch_names", None)
    if not torch_names:
        raise TypeError(f"encoder must be a tfdepth ResnetEncoder (with torch_names), got {type(encoder).__name__}.")
    expected = {}
    for layer_name, module in torch_names.items():
        layer = encoder.get_layer(layer_name)
        if hasattr(layer, "moving_mean"):
            for field, attr in _BN_FIELDS.items():
                expected[f"{module}.{field}"] = (getattr(layer, attr), "bn")
        else:
            expected[f"{module}.weight"] = (layer.kernel, "conv")
    return expected


def _short_list(keys, limit=8):
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_torchvision_resnet_weights(encoder, path):
    """Load torchvision ResNet weights from the ``.npz`` at ``path`` into ``encoder`` (a ``ResnetEncoder``).

    All arrays are checked before any variable is written, so a failed load leaves the encoder unchanged.
    Raises ``FileNotFoundError`` (missing file, with how to make one) and ``ValueError`` (missing or unexpected
    keys, or a shape mismatch naming the key). Returns the number of arrays loaded.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"ResNet weight file {path!r} does not exist. Make one on a machine with torchvision: save "
            f"torchvision.models.resnet{getattr(encoder, 'depth', 18)}(weights='IMAGENET1K_V1').state_dict() "
            f"with torch.save, then run 'python -m tfdepth.models.weights convert --torch that.pth --out {path}' "
            "(see the tfdepth.models.weights docstring)."
        )
    expected = _expected_arrays(encoder)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if not k.startswith("fc.") and not k.endswith(_IGNORED_SUFFIXES)}

    missing = set(expected) - set(arrays)
    extra = set(arrays) - set(expected)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short_list(missing)}")
        if extra:
            parts.append(f"unexpected keys: {_short_list(extra)}")
        raise ValueError(
            f"{path!r} does not match a torchvision resnet{getattr(encoder, 'depth', '?')} state_dict "
            f"({'; '.join(parts)}). Check the ResNet depth and that the keys use torchvision names."
        )

    n_images = getattr(encoder, "num_input_images", 1)
    values = []
    for key in sorted(expected):
        variable, kind = expected[key]
        value = np.asarray(arrays[key], dtype=np.float32)
        if kind == "conv":
            if value.ndim != 4:
                raise ValueError(f"{path!r}: {key} has shape {value.shape}; expected a 4-D OIHW conv weight.")
            value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
            if key == "conv1.weight" and n_images > 1 and value.shape[2] == 3:
                # §A.4: tile the RGB filters over the n stacked frames and divide by n.
                value = np.tile(value, (1, 1, n_images, 1)) / n_images
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{path!r}: shape mismatch for {key}: file gives {tuple(value.shape)} (after OIHW->HWIO), the "
                f"encoder expects {tuple(variable.shape)}."
            )
        values.append((variable, value))
    for variable, value in values:
        variable.assign(value)
    return len(values)


def convert_torch_checkpoint(torch_path, out_path):
    """Convert a torchvision ResNet checkpoint (``.pth`` state_dict) to the ``.npz`` read above.

    Imports torch lazily (only this function needs it); accepts a bare state_dict or a dict holding one under
    ``"state_dict"``; strips a ``"module."`` prefix left by DataParallel. Never used in tests.
    """
    try:
        import torch  # noqa: PLC0415 (lazy: torch is not a tfdepth dependency)
    except ImportError as err:
        raise ImportError("convert needs PyTorch: run it on a machine with torch installed "
                          "(pip install torch).") from err
    state = torch.load(torch_path, map_location="cpu")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{torch_path!r} holds a {type(state).__name__}, expected a state_dict (dict of tensors).")
    arrays = {}
    for key, tensor in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if hasattr(tensor, "detach"):
            arrays[key] = tensor.detach().cpu().numpy()
    np.savez(out_path, **arrays)
    return out_path


def main(argv=None):
    """CLI: ``python -m tfdepth.models.weights convert --torch resnet18.pth --out resnet18.npz``."""
    parser = argparse.ArgumentParser(prog="python -m tfdepth.models.weights", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    convert = sub.add_parser("convert", help="convert a torchvision ResNet .pth state_dict to .npz")
    convert.add_argument("--torch", required=True, help="path of the torchvision .pth state_dict")
    convert.add_argument("--out", required=True, help="path of the .npz to write")
    args = parser.parse_args(argv)
    out = convert_torch_checkpoint(args.torch, args.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
