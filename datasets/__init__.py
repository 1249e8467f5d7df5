"""Data in: readers of the real on-disk dataset layouts and synthetic generators that write them.

- ``datasets.aloi``: ALOI invariance trajectories (viewpoint, illumination direction/colour).
- ``datasets.got10k``: the one GOT-10k reader (list.txt, frames, annotation files) and occlusion trajectories.
- ``datasets.pascal3d``: PASCAL3D+ ``.mat`` annotations and instance / instance+viewpoint trajectories.
- ``datasets.crops``: annotated boxes cut out once into the cache, for the sets above.
- ``datasets.image_folder``: ImageNet-style class folders and image lists (corrupt files skipped).
- ``datasets.synthetic``: deterministic synthetic ALOI, object-centric, GOT-10k, PASCAL3D+ and tracking-video sets, cached.
- ``datasets.video``: TrackingNet / video-file readers (GOT-10k's through ``datasets.got10k``) and the
  Ray Data video pipeline (frames, chunks, frame pairs, selective-search proposals; cached stages).
- ``datasets.cache``, ``datasets.errors``: the build-once cache and ``DatasetFormatError``.

Nothing is imported here, so ``import datasets.aloi`` does not pull in torch.
"""
