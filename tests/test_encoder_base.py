"""What every encoder shares: the crop rules and the crop counts."""

from __future__ import annotations

import pytest

from isoformer.encoders.base import CropCounts, crop_sequence


@pytest.mark.parametrize(
    ("length", "kept", "expected"),
    [
        (10, 4, "DEFG"),  # even -> even: 3 dropped on each side
        (10, 5, "DEFGH"),  # even -> odd: F (index 5) lands at index 2, 3 dropped from the start
        (11, 4, "DEFG"),  # odd -> even: F (index 5) lands at index 2, 4 dropped from the end
        (11, 5, "DEFGH"),  # odd -> odd: 3 on each side
    ],
)
def test_centre_crop_keeps_the_middle_unit_at_the_middle_index(length, kept, expected):
    """The unit at len // 2 (a DNA window's TSS) lands at kept // 2, where a window of the
    shorter length has its TSS."""
    sequence = "ABCDEFGHIJK"[:length]
    cropped = crop_sequence(sequence, kept, "center")
    assert cropped == expected
    assert cropped[kept // 2] == sequence[length // 2]


def test_start_and_end_crops_and_short_sequences():
    assert crop_sequence("ABCDEF", 4, "start") == "ABCD"
    assert crop_sequence("ABCDEF", 4, "end") == "CDEF"
    assert crop_sequence("ABC", 4, "center") == "ABC"
    assert crop_sequence([1, 2, 3, 4, 5], 3, "center") == [2, 3, 4]


def test_crop_counts_record_add_and_subtract():
    counts = CropCounts("bases")
    counts.record(["ABCDEF", "AB", "ABCDE"], ["ABCD", "AB", "ABC"])
    assert counts == CropCounts("bases", seen=3, cropped=2, removed=4)
    later = counts + CropCounts("bases", seen=2, cropped=1, removed=1)
    assert later == CropCounts("bases", seen=5, cropped=3, removed=5)
    assert later - counts == CropCounts("bases", seen=2, cropped=1, removed=1)
