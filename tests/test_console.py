from streammood.bus.outbox import PublisherStats
from streammood.console import listen_line, mood_line
from streammood.workers.listen import ListenStats
from tests.bus.conftest import make_message


def test_mood_line_is_compact():
    line = mood_line(make_message("radio", 9, valence=0.3, arousal=-0.25))
    assert "radio" in line and "PP" in line and "v=+0.30" in line and "a=-0.25" in line
    assert "\n" not in line


def test_listen_line_adds_trouble_only_when_there_is_some():
    msg = make_message("radio", 9)
    assert listen_line(msg, ListenStats(), PublisherStats()) == mood_line(msg)
    line = listen_line(
        msg,
        ListenStats(dropped_steps=2, overflows=1),
        PublisherStats(buffered=7, connected=False),
    )
    assert line.startswith(mood_line(msg))
    assert "dropped steps 2, audio overflows 1" in line and "Redis away: 7 buffered" in line


def test_mood_line_says_where_the_segment_began():
    line = mood_line(make_message("radio", 40, segment_start=12.5, segment_steps=16))
    assert "since 12.5 s]" in line and "early" not in line and "change" not in line
    early = mood_line(
        make_message("radio", 40, segment_start=17.0, segment_steps=7, embedding_ready=False,
                     window_steps=7, changed=True)
    )
    assert "[7 steps, since 17.0 s, early]  change" in early
    assert "since 0.0 s" in mood_line(make_message("radio", 3))
