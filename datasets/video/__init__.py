"""Video data: sources in real layouts, chunk/pair index logic, proposals, the Ray Data pipeline.

- ``sources``: TrackingNet, GOT-10k and video-file readers.
- ``chunks``: chunks, baseline frames and frame pairs (pure index logic).
- ``proposals``: selective search on shrunk frames, boxes mapped back; IoU and recall.
- ``stages``: the keyed stage cache; ``pipeline``: the Ray Data stages and the command.
- ``config``: :class:`VideoPipelineConfig`, the parameters the stages are keyed by, built by
  a video data source (``datasets.sources.video``), which owns their defaults.

Nothing is imported here, so importing a reader does not pull in Ray.
"""
