"""Which frames of a video the video stages use: chunks, baseline frames, frame pairs.

Pure index logic on frame counts (no decoding), following the paper's video setup
(Purushwalkam & Gupta 2020, Sec. 5): each TrackingNet video is cut into 4 chunks of 60
consecutive frames, a chunk is treated as a video from then on; the baseline pretrains
on 3 uniformly spaced frames per video; Frame Temporal Invariance pairs frame z_i with
z_{i+k} for i mod k == 0 within a chunk.
"""
from __future__ import annotations


def chunk_starts(num_frames: int, chunks: int, chunk_frames: int) -> list[int]:
    """First frame of each chunk: up to ``chunks`` runs of ``chunk_frames`` frames, spread out.

    As many non-overlapping chunks as fit (at most ``chunks``); the first starts at frame
    0 and the last ends at the last frame, with the spare frames shared out evenly
    between them, so chunks lie as far apart as the video allows (more diverse pairs
    across chunks). A single chunk is centred. A video shorter than one chunk gets none.
    """
    if chunks < 1 or chunk_frames < 1:
        raise ValueError(f"chunks and chunk_frames must be >= 1, got {chunks} and {chunk_frames}")
    count = min(chunks, max(0, num_frames) // chunk_frames)
    if count == 0:
        return []
    spare = num_frames - count * chunk_frames
    if count == 1:
        return [spare // 2]
    # Integer arithmetic so the last chunk ends exactly at num_frames.
    return [j * chunk_frames + (j * spare) // (count - 1) for j in range(count)]


def chunk_frame_indices(num_frames: int, chunks: int, chunk_frames: int) -> list[list[int]]:
    """The frame indices of every chunk (see :func:`chunk_starts`)."""
    return [list(range(start, start + chunk_frames)) for start in chunk_starts(num_frames, chunks, chunk_frames)]


def baseline_frame_indices(num_frames: int, count: int) -> list[int]:
    """``count`` uniformly spaced frames of a video: the centres of ``count`` equal segments.

    A video with fewer frames than ``count`` gives all its frames. The paper's baseline
    takes 3 frames per video (``count=3``: frames N/6, N/2 and 5N/6).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if num_frames <= count:
        return list(range(max(0, num_frames)))
    return [((2 * j + 1) * num_frames) // (2 * count) for j in range(count)]


def frame_pair_offsets(chunk_frames: int, gap: int) -> list[tuple[int, int]]:
    """Pairs ``(i, i + gap)`` of offsets within a chunk, for every ``i`` with ``i % gap == 0``.

    Frame Temporal Invariance's positives (z_i, z_{i+k}); a pair is kept only when both
    frames lie in the chunk.
    """
    if gap < 1:
        raise ValueError(f"gap must be >= 1, got {gap}")
    return [(i, i + gap) for i in range(0, chunk_frames - gap, gap)]
