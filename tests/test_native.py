"""Capturing what native libraries print on file descriptor 2."""

from __future__ import annotations

import os

import pytest

from streammood.native import filter_native_stderr


def test_filter_native_stderr_drops_noise_and_writes_the_rest_back(capfd):
    def noisy(text: bytes, value=None):
        def call():
            os.write(2, text)
            if isinstance(value, BaseException):
                raise value
            return value

        return call

    def is_noise(line: bytes) -> bool:
        return line.startswith(b"noise")

    result, noise = filter_native_stderr(noisy(b"noise 1\nkept\r\nnoise 2\npartial", 42), is_noise)
    assert (result, noise) == (42, [b"noise 1", b"noise 2"])
    assert capfd.readouterr().err == "kept\r\npartial"

    def nested():
        os.write(2, b"outer\n")
        return filter_native_stderr(noisy(b"noise 3\ninner\n", 7), is_noise)

    (inner, inner_noise), outer_noise = filter_native_stderr(nested, is_noise)
    assert (inner, inner_noise, outer_noise) == (7, [b"noise 3"], [])
    assert capfd.readouterr().err == "outer\ninner\n"

    with pytest.raises(ValueError):  # fd 2 is restored and the rest written back
        filter_native_stderr(noisy(b"noise 4\nbefore the error\n", ValueError()), is_noise)
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "before the error\nafter\n"
