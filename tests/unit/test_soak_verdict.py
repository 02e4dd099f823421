"""The soak script's verdict: does lag or RSS keep growing?"""

from bench.soak import verdict


def samples(rss, lag):
    return [
        {"t_s": 30.0 * i, "lag": g, "rss_mb": r}
        for i, (r, g) in enumerate(zip(rss, lag, strict=True))
    ]


def test_memory_that_fills_then_stays_level_is_bounded():
    rss = [500 + 20 * i for i in range(30)] + [1100 + (i % 3) for i in range(30)]
    result = verdict(samples(rss, [1000] * 60), rate=2000)
    assert result["rss_bounded"] and result["lag_bounded"]
    assert result["rss_mb_last_quarter"] == [1101, 1101]


def test_memory_still_rising_over_the_last_quarter_is_growing():
    rss = [500 + 10 * i for i in range(60)]  # 1,000 -> 1,090 MB over the last quarter: 9 %
    result = verdict(samples(rss, [1000] * 60), rate=2000)
    assert not result["rss_bounded"]


def test_lag_within_two_seconds_of_traffic_is_bounded_even_if_it_doubled():
    result = verdict(samples([800] * 30, [500] * 10 + [900] * 10 + [3900] * 10), rate=2000)
    assert result["lag_first_third"] == 500 and result["lag_last_third"] == 3900
    assert result["lag_bounded"]


def test_lag_that_keeps_climbing_is_growing():
    lag = [1000 * (i + 1) for i in range(30)]
    assert not verdict(samples([800] * 30, lag), rate=2000)["lag_bounded"]
