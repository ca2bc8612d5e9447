"""The compile options of long-running programs: XLA_FLAGS' cheaper compile is undone for them only."""

import pytest

from jaxfrag import xla_options


@pytest.mark.parametrize(
    "flags,expected",
    [
        (None, {}),  # a user's run: XLA's defaults, untouched
        ("", {}),
        ("--xla_backend_optimization_level=2", {}),  # not lowered: nothing to restore
        ("--xla_cpu_use_fusion_emitters=true --xla_backend_optimization_level=1", {}),
        ("--xla_backend_optimization_level=0", {"xla_backend_optimization_level": 1}),
        ("--xla_cpu_use_fusion_emitters=false", {"xla_cpu_use_fusion_emitters": True}),
        (
            "--xla_dump_to=/tmp/x --xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false",
            {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": True},
        ),
        # XLA reads the flags in order, so the last setting of a flag is the one in force.
        ("--xla_backend_optimization_level=0 --xla_backend_optimization_level=3", {}),
        (
            "--xla_backend_optimization_level=3 --xla_backend_optimization_level=0",
            {"xla_backend_optimization_level": 1},
        ),
    ],
)
def test_runtime_bound_restores_only_what_xla_flags_lowered(monkeypatch, flags, expected):
    if flags is None:
        monkeypatch.delenv("XLA_FLAGS", raising=False)
    else:
        monkeypatch.setenv("XLA_FLAGS", flags)
    assert xla_options.runtime_bound() == expected


@pytest.mark.parametrize(
    "flags,expected",
    [
        ("", None),
        ("--xla_dump_to=/tmp/x", None),
        ("--xla_backend_optimization_level=2", "2"),
        ("--xla_backend_optimization_level=0 --xla_dump_to=/tmp/x --xla_backend_optimization_level=3", "3"),
    ],
)
def test_flag_is_the_last_setting_in_xla_flags(monkeypatch, flags, expected):
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert xla_options.flag("xla_backend_optimization_level") == expected
