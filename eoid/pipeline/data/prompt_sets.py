"""The texts each HOI is scored against: templates filled in, free-text descriptions, or
both.

A templates file holds several prompt templates: a JSON list of strings, or one template
per line (blank lines and lines starting with '#' are skipped). Each uses {verb_ing} and
{object}.

A descriptions file is a JSON object from a HOI to one description or a list of them,
the HOI named "VERB OBJECT" with the vocabulary's names (underscores kept), e.g.

    {"ride bicycle": ["a person sitting on a bicycle, feet on the pedals"],
     "hold cup": "a hand wrapped around a cup"}

Every HOI the teacher scores must have one; HOIs of verbs it never scores
(no_interaction) may be left out. Texts are used verbatim. Each HOI's prompt set is its
templates' prompts followed by its descriptions; teacher_cache/ensemble.py averages the
set's embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eoid.config import TeacherConfig
from eoid.config_values import template_problem
from eoid.errors import ConfigError
from eoid.pipeline.data.vocab import Vocabulary


def _read_text(path: Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{path}: cannot read the {what} ({err}). Pass an existing UTF-8 text file."
        ) from None


def read_templates(path: Path) -> list[str]:
    """The templates of a file (JSON list, or one per line); a bad template names its
    line.
    """
    text = _read_text(path, "templates file")
    if Path(path).suffix == ".json" or text.lstrip().startswith("["):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"{path}: not valid JSON ({err}); give a JSON list of templates or one "
                "template per line."
            ) from None
        if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
            raise ConfigError(f"{path}: expected a JSON list of template strings.")
        lines = [(f"item {i + 1}", t) for i, t in enumerate(raw)]
    else:
        lines = [
            (f"line {i + 1}", t.strip())
            for i, t in enumerate(text.splitlines())
            if t.strip() and not t.strip().startswith("#")
        ]
    for where, template in lines:
        problem = template_problem(template) or (
            None if template.strip() else "is empty"
        )
        if problem:
            raise ConfigError(f"{path} {where}: template {template!r} {problem}.")
    if not lines:
        raise ConfigError(
            f"{path}: no templates; write one per line, e.g. "
            "a photo of a person {verb_ing} a {object}"
        )
    return [t for _, t in lines]


def hoi_name(vocab: Vocabulary, hoi: int) -> str:
    """The name a descriptions file gives HOI `hoi`: "VERB OBJECT", e.g. "ride bicycle"."""
    verb, obj = vocab.hois[hoi]
    return f"{vocab.verbs[verb]} {vocab.objects[obj]}"


def _texts(value: Any, where: str) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if (
        not isinstance(texts, list)
        or not texts
        or not all(isinstance(t, str) and t.strip() for t in texts)
    ):
        raise ConfigError(
            f"{where}: expected a description or a non-empty list of them, got"
            f" {value!r}."
        )
    return list(texts)


def read_descriptions(path: Path, vocab: Vocabulary) -> dict[int, list[str]]:
    """{HOI index: descriptions} of a file; a missing HOI (one the teacher scores) or
    an unknown key is a ConfigError naming the first one."""
    try:
        raw = json.loads(_read_text(path, "descriptions file"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err}).") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f'{path}: expected a JSON object from "VERB OBJECT" to descriptions.'
        )
    index = {hoi_name(vocab, h): h for h in range(len(vocab.hois))}
    for key in raw:
        if key not in index:
            from difflib import get_close_matches

            near = get_close_matches(str(key), index, n=1)
            raise ConfigError(
                f"{path}: key {key!r} names no HOI of vocabulary {vocab.name!r}"
                f"{f'; did you mean {near[0]!r}' if near else ''}. Keys are "
                '"VERB OBJECT" with the vocabulary\'s names, e.g. "ride bicycle".'
            )
    scored = [
        h
        for h, (v, _) in enumerate(vocab.hois)
        if v not in vocab.teacher_excluded_verbs
    ]
    missing = [h for h in scored if hoi_name(vocab, h) not in raw]
    if missing:
        raise ConfigError(
            f"{path}: no description for HOI {hoi_name(vocab, missing[0])!r} (and "
            f"{len(missing) - 1} more); every HOI the teacher scores needs one."
        )
    return {index[k]: _texts(v, f"{path} [{k!r}]") for k, v in raw.items()}


def prompt_sets(
    vocab: Vocabulary,
    templates: list[str],
    descriptions: dict[int, list[str]] | None = None,
) -> list[list[str]]:
    """One list of texts per HOI: each template filled in, then the HOI's descriptions.

    A HOI left with no text (a no_interaction HOI without a description, descriptions
    alone) gets the default template: the teacher's prior mask never reads its
    embedding.
    """
    filled = [vocab.prompts(t) for t in templates]
    sets = [
        [prompts[h] for prompts in filled] + list((descriptions or {}).get(h, []))
        for h in range(len(vocab.hois))
    ]
    default = vocab.prompts(TeacherConfig().template)
    return [texts or [default[h]] for h, texts in enumerate(sets)]
