"""Data in: readers of the real on-disk dataset layouts and synthetic generators that write them.

- ``datasets.aloi``: ALOI invariance trajectories (viewpoint, illumination direction/colour).
- ``datasets.image_folder``: ImageNet-style class folders and image lists (corrupt files skipped).
- ``datasets.synthetic``: deterministic synthetic ALOI and object-centric sets, cached.
- ``datasets.cache``, ``datasets.errors``: the build-once cache and ``DatasetFormatError``.

Nothing is imported here, so ``import datasets.aloi`` does not pull in torch.
"""
