"""The malloc thresholds training sets (see embedder/allocator.py)."""

from __future__ import annotations

import platform

import pytest

from embedder.allocator import reuse_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and its thresholds are glibc's")
def test_glibc_accepts_the_thresholds_and_a_second_call_is_harmless():
    assert reuse_freed_memory() is True
    assert reuse_freed_memory() is True
