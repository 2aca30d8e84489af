"""docs/config-reference.md is generated from the config dataclasses; it must match
them.
"""

from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

from eoid import config, config_loading
from eoid.config_reference import PAGE, PHASES, field_comments, render

ROOT = Path(__file__).resolve().parents[1]


def _documented_fields():
    """(class, field) of every value a recipe can set: the phases' own fields and their
    sections'.
    """
    for _, phase in PHASES:
        for f in fields(phase):
            if f.default is MISSING and is_dataclass(f.default_factory()):
                yield from (
                    (type(f.default_factory()), g) for g in fields(f.default_factory())
                )
            else:
                yield phase, f


def test_the_config_reference_page_is_what_the_configs_generate():
    page = (ROOT / PAGE).read_text()
    assert page == render(), (
        "docs/config-reference.md is stale: run `python -m eoid.config_reference`"
    )


def test_every_field_of_every_config_has_a_meaning_in_the_reference():
    comments = field_comments()
    for cls, f in _documented_fields():
        assert comments.get((cls.__name__, f.name)), (
            f"{cls.__name__}.{f.name}: no comment in config.py"
        )


def test_every_range_is_shown_in_words_beside_its_field():
    page = render()
    for cls, checks in config_loading.RANGES.items():
        for name, check in checks.items():
            assert hasattr(check, "says"), (
                f"{cls.__name__}.{name}: its check has no `says`"
            )
            assert f"| `{name}` |" in page and check.says in page, (cls.__name__, name)


def test_a_changed_default_makes_the_page_stale(monkeypatch):
    # the staleness test above must catch an edit of the configs, not only of the page
    monkeypatch.setattr(
        config.LossConfig.__dataclass_fields__["distill"], "default", 500.0
    )
    assert "`500.0`" in render() and render() != (ROOT / PAGE).read_text()
