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


def holds(sizer: ChunkSizer, held: int, chunks: int, head: int = 1, **state: int) -> bool:
    """``wants_more`` for node "n" of 3, ``held`` items in ``chunks`` chunks, the first
    of ``head`` items, with 90,000 items left to hand out unless ``state`` says."""
    state = {"live": 3, "remaining": 90_000, "everyone_held": 3 * held, **state}
    return sizer.wants_more("n", held=held, waiting=held - head, chunks=chunks, **state)


def test_a_node_holds_work_for_a_round_trip_and_a_chunk() -> None:
    sizer = ChunkSizer(100_000)
    sizer.next_size("n", 100_000, 3)
    sizer.record("n", 1, 0.010, round_trip=0.1)  # 100 items a second, 100 ms away
    assert holds(sizer, 11, 2)  # 0.1 s waiting: less than a round trip and a chunk
    assert not holds(sizer, 22, 3)  # 0.21 s waiting
    assert not holds(sizer, 1, MAX_WINDOW)
    assert holds(sizer, 0, 0)


def test_in_the_last_stretch_a_node_takes_no_more_than_its_share() -> None:
    sizer = ChunkSizer(300)
    for node in "abc":
        sizer.next_size(node, 300, 3)
        sizer.record(node, 1, 0.010, round_trip=0.1)
    # 30 items left, 60 held by the three: 30 each is the share; "a" holds 30.
    state = {"live": 3, "remaining": 30, "everyone_held": 60}
    assert not sizer.wants_more("a", held=30, waiting=29, chunks=5, **state)
    assert sizer.wants_more("b", held=15, waiting=14, chunks=5, **state)


def test_before_its_speed_is_known_a_node_gets_1_2_4_items_within_a_quarter_of_its_share() -> None:
    sizer = ChunkSizer(300)
    sizes: list[int] = []
    while holds(sizer, sum(sizes), len(sizes), remaining=300 - sum(sizes)):
        sizes.append(sizer.next_size("n", 300 - sum(sizes), 3))
    assert sizes == [1, 2, 4, 8]
    small = ChunkSizer(8)  # 8 expressions on 8 nodes: one each, none taken ahead
    assert small.next_size("a", 8, 8) == 1
    assert not small.wants_more(
        "a", held=1, waiting=0, chunks=1, live=8, remaining=7, everyone_held=1
    )


def test_a_fixed_chunksize_is_kept_and_still_sent_ahead() -> None:
    sizer = ChunkSizer(1000, chunksize=7)
    assert sizer.next_size("n", 1000, 2) == 7
    sizer.record("n", 7, 0.07, round_trip=0.05)
    assert sizer.next_size("n", 993, 2) == 7
    assert sizer.wants_more(
        "n", held=7, waiting=0, chunks=1, live=2, remaining=986, everyone_held=14
    )
