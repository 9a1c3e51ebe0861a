import pytest

from streammood.bus.keys import Keys, SourceIdError, validate_source


def test_key_names_follow_the_contract():
    k = Keys()
    assert k.mood_channel == "streammood:mood"
    assert k.mood_stream("radio1") == "streammood:mood:radio1"
    assert k.frames_stream("mic-0") == "streammood:frames:mic-0"
    assert k.metrics("radio1") == "streammood:metrics:radio1"
    assert Keys("test:ns").mood_channel == "test:ns:mood"


@pytest.mark.parametrize("bad", ["", "a b", "a:b", "-x", "x" * 65, "ü", "a/b", None, 3])
def test_bad_source_ids_are_refused(bad):
    with pytest.raises(SourceIdError):
        validate_source(bad)
    with pytest.raises(SourceIdError):
        Keys().mood_stream(bad)


@pytest.mark.parametrize("good", ["a", "radio_1", "Studio.B-2", "0" * 64])
def test_good_source_ids_pass(good):
    assert validate_source(good) == good


@pytest.mark.parametrize("bad", ["", "x:", "a b", "*"])
def test_bad_prefixes_are_refused(bad):
    with pytest.raises(SourceIdError):
        Keys(bad)
