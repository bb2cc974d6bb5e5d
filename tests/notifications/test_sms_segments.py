"""SMS segment counting, as carriers bill it."""

import pytest

from notifications.channels.sms import sms_segments


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # an extended GSM-7 character takes two places
        ("€" * 81, 2),
        ("ñ" * 160, 1),  # in the GSM-7 alphabet
        ("ç" * 70, 1),  # lower-case ç is not: the whole message goes UCS-2
        ("ç" * 71, 2),
        ("ç" * 134, 2),
        ("ç" * 135, 3),
    ],
)
def test_segments(body, segments):
    assert sms_segments(body) == segments
