from streams.dedup import RecentIds


def test_a_resend_at_another_position_is_a_duplicate_but_a_replay_is_not():
    ids = RecentIds(window=3600, max_ids=100)
    assert ids.first_copy(0, "e1", offset=10, index=0, ts=1000)
    assert ids.first_copy(0, "e1", offset=10, index=0, ts=1000)  # the same record read again
    assert not ids.first_copy(0, "e1", offset=11, index=0, ts=1001)  # resent
    assert not ids.first_copy(0, "e1", offset=10, index=1, ts=1000)  # twice in one array
    assert ids.first_copy(1, "e1", offset=11, index=0, ts=1001)  # partitions are separate


def test_ids_older_than_the_window_or_past_the_cap_are_forgotten():
    ids = RecentIds(window=60, max_ids=3)
    ids.first_copy(0, "old", 1, 0, ts=1000)
    ids.first_copy(0, "new", 2, 0, ts=1100)  # 100 s later: "old" leaves the 60 s window
    assert ids.first_copy(0, "old", 3, 0, ts=1100)
    for i in range(5):
        ids.first_copy(0, f"x{i}", 10 + i, 0, ts=1100)
    assert ids.first_copy(0, "x0", 99, 0, ts=1100)  # only the newest 3 are remembered


def test_load_rebuilds_the_index_from_stored_rows():
    ids = RecentIds(window=3600, max_ids=100)
    ids.load(2, [("a", 5, 0, 100.0), ("b", 6, 0, 101.0)])
    assert ids.loaded(2) and not ids.loaded(3)
    assert ids.first_copy(2, "a", 5, 0, 100.0)
    assert not ids.first_copy(2, "b", 9, 0, 105.0)


def test_positions_and_times_survive_packing():
    ids = RecentIds(window=3600, max_ids=10)
    big_offset, big_index, ts = 2**40 - 1, 2**24 - 1, 1_800_000_000.123
    assert ids.first_copy(0, "e", big_offset, big_index, ts)
    assert ids.first_copy(0, "e", big_offset, big_index, ts)  # read again: same position
    assert not ids.first_copy(0, "e", big_offset - 1, big_index, ts)
    assert not ids.first_copy(0, "e", big_offset, big_index - 1, ts)
    ids.first_copy(0, "later", 1, 0, ts + 3600.5)  # "e" is now past the window
    assert len(ids) == 1 and ids.first_copy(0, "e", 5, 0, ts + 3600.5)
