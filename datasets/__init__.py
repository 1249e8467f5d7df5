"""Data in: readers of the real on-disk dataset layouts and synthetic generators that write them.

- ``datasets.aloi``: ALOI invariance trajectories (viewpoint, illumination direction/colour).
- ``datasets.image_folder``: ImageNet-style class folders and image lists (corrupt files skipped).
- ``datasets.synthetic``: deterministic synthetic ALOI, object-centric and tracking-video sets, cached.
- ``datasets.video``: TrackingNet / GOT-10k / video-file readers and the Ray Data video
  pipeline (frames, chunks, frame pairs, selective-search proposals; cached stages).
- ``datasets.cache``, ``datasets.errors``: the build-once cache and ``DatasetFormatError``.

Nothing is imported here, so ``import datasets.aloi`` does not pull in torch.
"""
