import json
import math

import pytest

from streammood.bus.schema import QUADRANTS, SCHEMA_VERSION, MessageError, MoodMessage
from streammood.errors import StreammoodError
from tests.bus.conftest import make_message


def test_json_round_trip_is_exact_and_compact():
    msg = make_message(seq=7, valence=0.1234567890123, arousal=-1.0)
    text = msg.to_json()
    assert " " not in text
    back = MoodMessage.from_json(text)
    assert back == msg
    assert MoodMessage.from_json(text.encode()) == msg
    assert back.valence == 0.1234567890123


def test_key_order_is_the_contract_order():
    data = json.loads(make_message().to_json())
    assert list(data) == ["schema", "source", "seq", "t_start", "t_end", "valence", "arousal",
                          "quadrant", "probs", "window_steps", "segment_start", "segment_steps",
                          "embedding_ready", "changed", "model", "emitted_at"]
    assert list(data["probs"]) == list(QUADRANTS)
    assert data["schema"] == SCHEMA_VERSION
    assert data["model"] == {"name": "cnn-lstm", "version": "1"}


def test_unknown_fields_are_ignored():
    data = json.loads(make_message().to_json())
    data["future_field"] = [1, 2]
    assert MoodMessage.from_dict(data) == make_message()


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("valence"), "lacks field"),
        (lambda d: d.update(schema="3"), "schema '3'"),
        (lambda d: d.pop("segment_start"), "lacks field(s) segment_start"),
        (lambda d: d.update(segment_steps=0), "segment_steps"),
        (lambda d: d.update(segment_start=-1.0), "segment_start"),
        (lambda d: d.update(segment_start=1e9), "segment_start"),
        (lambda d: d.update(embedding_ready="yes"), "embedding_ready"),
        (lambda d: d.update(valence=1.5), "[-1, 1]"),
        (lambda d: d.update(arousal="high"), "must be a number"),
        (lambda d: d.update(quadrant="Q1"), "quadrant 'Q1'"),
        (lambda d: d.update(probs={"AP": 1.0}), "keys"),
        (lambda d: d.update(probs={"AP": 0.5, "AN": 0.5, "PP": 0.5, "PN": 0.5}), "sum"),
        (lambda d: d.update(seq=-1), "seq"),
        (lambda d: d.update(seq=1.5), "seq"),
        (lambda d: d.update(window_steps=0), "window_steps"),
        (lambda d: d.update(source="has space"), "source id"),
        (lambda d: d.update(source="a:b"), "source id"),
        (lambda d: d.update(model={"name": "x"}), "model"),
        (lambda d: d.update(t_start=3.0, t_end=2.0), "t_start"),
    ],
)
def test_invalid_messages_are_rejected_with_the_reason(mutate, reason):
    data = json.loads(make_message().to_json())
    mutate(data)
    with pytest.raises(MessageError) as info:
        MoodMessage.from_json(json.dumps(data))
    assert reason in str(info.value)
    assert isinstance(info.value, StreammoodError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", b"\xff\xfe", '{"schema": "1"}'])
def test_garbage_is_a_message_error(text):
    with pytest.raises(MessageError):
        MoodMessage.from_json(text)


def test_non_finite_values_cannot_be_built_or_serialised():
    with pytest.raises(MessageError, match="finite"):
        make_message(valence=math.nan)
    with pytest.raises(MessageError):
        MoodMessage.from_json(make_message().to_json().replace('"valence":0.25', '"valence":NaN'))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "more than 65536"),
        ("[" * 30_000 + "]" * 30_000, "nested deeper"),  # RecursionError in json
        ('{"schema":"1","x":' + "[" * 17 + "]" * 17 + "}", "nested deeper"),
        ('{"seq": 1' + "0" * 5000 + "}", "JSON"),
        (b"\x00\xff", "not valid JSON"),
        (12, "not text"),
    ],
)
def test_hostile_messages_are_message_errors(text, reason):
    """What a foreign publisher can put on the public channel is a MessageError, whatever it is."""
    with pytest.raises(MessageError, match=reason):
        MoodMessage.from_json(text)


def test_segment_fields_round_trip_and_version_1_is_still_read():
    msg = make_message(seq=40, segment_start=12.5, segment_steps=16, embedding_ready=False)
    data = json.loads(msg.to_json())
    assert data["schema"] == "2" == SCHEMA_VERSION
    assert (data["segment_start"], data["segment_steps"], data["embedding_ready"]) == (
        12.5,
        16,
        False,
    )
    assert MoodMessage.from_json(msg.to_json()) == msg
    assert make_message(seq=7).segment_steps == 8  # default: a segment from the stream start
    old = {k: v for k, v in data.items() if k not in ("segment_start", "segment_steps",
                                                      "embedding_ready")}
    old["schema"] = "1"
    back = MoodMessage.from_dict(old)  # a version-1 message, e.g. history from before
    assert (back.segment_start, back.segment_steps, back.embedding_ready) == (0.0, 41, True)
