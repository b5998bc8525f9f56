"""Chunk sizes and windows: a node's speed apart from its round trip, so distance makes
chunks bigger, never smaller, and work waits on a node for it."""

from __future__ import annotations

from sshdist_kernel.chunks import MAX_WINDOW, TARGET_SECONDS, ChunkSizer


def test_a_long_round_trip_does_not_shrink_chunks() -> None:
    near, far = ChunkSizer(100_000), ChunkSizer(100_000)
    for sizer, rtt in ((near, 0.0002), (far, 0.1)):
        sizer.next_size("n", 100_000, 3)
        # One item of 10 ms of the node's own work; the round trip is apart from it.
        sizer.record("n", 1, 0.010, round_trip=rtt)
        for _ in range(5):
            size = sizer.next_size("n", 90_000, 3)
            sizer.record("n", size, size * 0.010)
    assert near.next_size("n", 90_000, 3) == int(TARGET_SECONDS / 0.010)
    assert far.next_size("n", 90_000, 3) >= near.next_size("n", 90_000, 3)


def test_a_node_holds_work_for_a_round_trip_and_a_chunk() -> None:
    sizer = ChunkSizer(100_000)
    sizer.next_size("n", 100_000, 3)
    sizer.record("n", 1, 0.010, round_trip=0.1)  # 100 items a second, 100 ms away
    assert sizer.wants_more("n", 10, 1, 3)  # 0.1 s held: less than a round trip and a chunk
    assert not sizer.wants_more("n", 21, 2, 3)  # 0.21 s held
    assert not sizer.wants_more("n", 1, MAX_WINDOW, 3)
    assert sizer.wants_more("n", 0, 0, 3)


def test_before_its_speed_is_known_a_node_gets_1_2_4_items_within_a_quarter_of_its_share() -> None:
    sizer = ChunkSizer(300)
    sizes = []
    while sizer.wants_more("n", sum(sizes), len(sizes), 3):
        sizes.append(sizer.next_size("n", 300 - sum(sizes), 3))
    assert sizes == [1, 2, 4, 8]
    small = ChunkSizer(8)  # 8 expressions on 8 nodes: one each, none taken ahead
    assert small.next_size("a", 8, 8) == 1
    assert not small.wants_more("a", 1, 1, 8)


def test_a_fixed_chunksize_is_kept_and_still_sent_ahead() -> None:
    sizer = ChunkSizer(1000, chunksize=7)
    assert sizer.next_size("n", 1000, 2) == 7
    sizer.record("n", 7, 0.07, round_trip=0.05)
    assert sizer.next_size("n", 993, 2) == 7
    assert sizer.wants_more("n", 7, 1, 2)
