"""``hf_mig.core.registry.Registry``: the name -> class registry behind selectors, taggers,
scorers and benchmarks."""

from __future__ import annotations

import pytest

from hf_mig.core.registry import Registry


def test_register_adds_the_class_and_names_it() -> None:
    things = Registry("widget", attribute="widget_name")

    @things.register("round")
    class Round:
        pass

    assert things["round"] is Round and things.lookup("round") is Round
    assert Round.widget_name == "round"
    assert things.register("round")(Round) is Round  # the same class again is accepted
    assert list(things) == ["round"]


def test_default_attribute_is_name() -> None:
    things = Registry("widget")
    cls = things.register("flat")(type("Flat", (), {}))
    assert cls.name == "flat"


def test_another_class_under_a_taken_name_is_refused() -> None:
    things = Registry("widget")
    first = things.register("round")(type("Round", (), {}))
    other = type("Other", (), {})
    with pytest.raises(ValueError, match="widget 'round' is already registered to"):
        things.register("round")(other)
    assert things["round"] is first and not hasattr(other, "name")


def test_lookup_of_an_unknown_name_lists_the_names_sorted() -> None:
    things = Registry("widget")
    for name in ("square", "round", "flat"):
        things.register(name)(type(name.title(), (), {}))
    with pytest.raises(ValueError) as err:
        things.lookup("oval")
    assert str(err.value) == "unknown widget 'oval'; available: flat, round, square"


def test_loader_runs_once_before_the_first_lookup() -> None:
    calls = []

    def load_builtins() -> None:
        calls.append("load")
        things.register("builtin")(type("Builtin", (), {}))

    things = Registry("widget", loader=load_builtins)
    assert calls == [] and "builtin" not in things
    assert things.lookup("builtin").__name__ == "Builtin"
    with pytest.raises(ValueError, match="available: builtin"):
        things.lookup("missing")
    assert things.load() is things
    assert calls == ["load"]
