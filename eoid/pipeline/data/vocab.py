"""Vocabularies: verbs, objects, HOI categories and zero-shot settings, loaded from JSON
data.

A vocabulary file (`eoid/data/vocab_*.json` for the built-in ones, or a user's own):

    {"name": "hico-det",
     "verbs":   [{"name": "ride", "phrase": "riding"}, ...],  # index = verb index (0-based)
     "objects": [{"name": "person", "id": 1}, ...],          # id = category_id in annotation files
     "verb_ids": [1, 2, ...],                                # optional: verb category_ids
                                                             # (default index + 1)
     "hois":    [[verb_index, object_index], ...],           # official HOI order
     "human": "person", "no_interaction": "no_interaction",  # names (no_interaction may be null)
     "rare_hois": [...],                                     # optional: HOIs with < 10
                                                             # training instances
     "settings": {"ua": {"kind": "verb", "unseen_hois": [...], "about": "..."}, ...}}

A setting's `kind` says how training labels are removed: "verb" drops every label whose
verb is unseen (UA, UV), "hoi" drops labels whose (verb, object) HOI is unseen (UC, UO).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from eoid.config_values import template_problem
from eoid.errors import ConfigError, DataError
from eoid.teacher_cache.distribution import valid_hoi_table

BUILTIN = {"hico-det": "vocab_hico_det.json", "v-coco": "vocab_vcoco.json"}


@dataclass(frozen=True)
class Setting:
    """A zero-shot setting: which HOIs are unseen in training and how their labels are
    removed.
    """

    name: str
    kind: str  # "verb" or "hoi"
    unseen_hois: tuple[int, ...]  # HOI indices held out of the training labels
    about: str = ""  # where the list comes from


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Verbs, objects and HOI categories of one dataset, with its zero-shot settings."""

    name: str
    verbs: list[str]  # verb names, e.g. "hop_on"
    # the gerund phrase prompts use, e.g. "hopping on"
    verb_phrases: list[str]
    objects: list[str]  # object names, e.g. "baseball_bat"
    # category_id of each object in annotation files
    object_ids: list[int]
    verb_ids: list[int]  # category_id of each verb in annotation files
    # (verb_index, object_index) in the official order
    hois: list[tuple[int, int]]
    human: int  # object index of the human class
    # verb index of "no interaction", if the dataset has one
    no_interaction: int | None
    rare_hois: list[int] = field(default_factory=list)
    settings: dict[str, Setting] = field(default_factory=dict)

    @property
    def num_verbs(self) -> int:
        return len(self.verbs)

    @property
    def num_objects(self) -> int:
        return len(self.objects)

    @cached_property
    def _valid(self) -> np.ndarray:
        # built once: checks.py asks for it per record (a 600-HOI loop each time was 14
        # s of the 38k-image start-up of `eoid train`, issue 25)
        mask = np.zeros((self.num_objects, self.num_verbs), dtype=bool)
        for v, o in self.hois:
            mask[o, v] = True
        return mask

    @cached_property
    def object_index(self) -> dict[int, int]:
        """Annotation category_id -> object index (built once, asked per record: do not
        change it).
        """
        return {cid: i for i, cid in enumerate(self.object_ids)}

    @cached_property
    def verb_index(self) -> dict[int, int]:
        """Annotation verb category_id -> verb index (built once, asked per record: do
        not change it).
        """
        return {vid: i for i, vid in enumerate(self.verb_ids)}

    @property
    def valid(self) -> np.ndarray:
        """(num_objects, num_verbs) bool: True where (verb, object) is one of the HOIs
        (a copy).
        """
        return self._valid.copy()

    @property
    def hoi_to_verb(self) -> np.ndarray:
        """(num_hois,) int64 verb index of each HOI."""
        return np.array([v for v, _ in self.hois], dtype=np.int64)

    @property
    def hoi_to_object(self) -> np.ndarray:
        """(num_hois,) int64 object index of each HOI."""
        return np.array([o for _, o in self.hois], dtype=np.int64)

    def hoi_index(self) -> np.ndarray:
        """(num_verbs, num_objects) int64: HOI index of (verb, object), -1 where
        invalid.
        """
        table = np.full((self.num_verbs, self.num_objects), -1, dtype=np.int64)
        for i, (v, o) in enumerate(self.hois):
            table[v, o] = i
        return table

    def setting(self, name: str) -> Setting:
        """The named zero-shot setting; an unknown name is a DataError listing the known
        ones.
        """
        if name not in self.settings:
            raise DataError(
                f"vocabulary {self.name!r} has no zero-shot setting {name!r}; "
                f"known settings: {sorted(self.settings)}"
            )
        return self.settings[name]

    def unseen_hois(self, setting: str) -> list[int]:
        """HOI indices unseen in training under `setting` ("" = none)."""
        return [] if not setting else list(self.setting(setting).unseen_hois)

    def unseen_verbs(self, setting: str) -> list[int]:
        """Verb indices with no seen HOI left under `setting` (the UA/UV verbs; usually
        empty for UC).
        """
        unseen = set(self.unseen_hois(setting))
        seen_verbs = {v for i, (v, _) in enumerate(self.hois) if i not in unseen}
        return sorted({self.hois[i][0] for i in unseen} - seen_verbs)

    @property
    def teacher_excluded_verbs(self) -> list[int]:
        """Verbs the teacher never gives mass: no_interaction (no prompt can describe
        it).
        """
        return [] if self.no_interaction is None else [self.no_interaction]

    def teacher_valid_hois(self) -> np.ndarray:
        """(num_objects, num_hois) bool: the teacher's prior mask, each object's HOIs
        minus no_interaction.
        """
        return valid_hoi_table(
            self.hoi_to_object,
            self.hoi_to_verb,
            self.num_objects,
            self.teacher_excluded_verbs,
        )

    def prompts(self, template: str) -> list[str]:
        """One prompt per HOI: template with {verb_ing} and {object} (underscores ->
        spaces).

        A template with another placeholder is a ConfigError naming teacher.template.
        """
        problem = template_problem(template)
        if problem:
            raise ConfigError(f"teacher.template {template!r} {problem}.")
        return [
            template.format(
                verb_ing=self.verb_phrases[v], object=self.objects[o].replace("_", " ")
            )
            for v, o in self.hois
        ]

    def to_json(self) -> dict:
        """The vocabulary in its file format (stored in cache manifests and
        checkpoints).
        """
        return {
            "name": self.name,
            "verbs": [
                {"name": n, "phrase": p} for n, p in zip(self.verbs, self.verb_phrases)
            ],
            "objects": [
                {"name": n, "id": i} for n, i in zip(self.objects, self.object_ids)
            ],
            "verb_ids": list(self.verb_ids),
            "hois": [list(h) for h in self.hois],
            "human": self.objects[self.human],
            "no_interaction": (
                None if self.no_interaction is None else self.verbs[self.no_interaction]
            ),
            "rare_hois": list(self.rare_hois),
            "settings": {
                k: {
                    "kind": s.kind,
                    "unseen_hois": list(s.unseen_hois),
                    "about": s.about,
                }
                for k, s in self.settings.items()
            },
        }

    def fingerprint(self) -> str:
        """A short hash of verbs, objects and HOIs: what a cache or checkpoint must
        agree on.
        """
        import hashlib

        core = json.dumps([self.verbs, self.objects, [list(h) for h in self.hois]])
        return hashlib.sha256(core.encode()).hexdigest()[:16]


def vocabulary_from_json(raw: dict, where: str) -> Vocabulary:
    """Build and check a Vocabulary from its parsed file; a bad file is a DataError
    naming it.
    """
    try:
        verbs = [v["name"] for v in raw["verbs"]]
        phrases = [v.get("phrase", v["name"].replace("_", " ")) for v in raw["verbs"]]
        objects = [o["name"] for o in raw["objects"]]
        object_ids = [int(o.get("id", i + 1)) for i, o in enumerate(raw["objects"])]
        verb_ids = [int(x) for x in raw.get("verb_ids", range(1, len(verbs) + 1))]
        hois = [(int(v), int(o)) for v, o in raw["hois"]]
        human = objects.index(raw.get("human", "person"))
        noi = raw.get("no_interaction")
        no_interaction = None if noi is None else verbs.index(noi)
        settings = {
            k: Setting(
                k,
                s.get("kind", "hoi"),
                tuple(int(i) for i in s["unseen_hois"]),
                s.get("about", ""),
            )
            for k, s in raw.get("settings", {}).items()
        }
        vocab = Vocabulary(
            name=str(raw["name"]),
            verbs=verbs,
            verb_phrases=phrases,
            objects=objects,
            object_ids=object_ids,
            verb_ids=verb_ids,
            hois=hois,
            human=human,
            no_interaction=no_interaction,
            rare_hois=[int(i) for i in raw.get("rare_hois", [])],
            settings=settings,
        )
    except (KeyError, ValueError, TypeError) as err:
        raise DataError(
            f"{where}: not a valid vocabulary file ({type(err).__name__}: {err}). "
            "See eoid/pipeline/data/vocab.py for the format."
        ) from None
    problems = []
    if len(set(hois)) != len(hois):
        problems.append("a (verb, object) pair is listed twice in 'hois'")
    if any(not (0 <= v < len(verbs) and 0 <= o < len(objects)) for v, o in hois):
        problems.append("a HOI has a verb or object index out of range")
    for s in settings.values():
        if s.kind not in ("verb", "hoi"):
            problems.append(
                f"setting {s.name!r} has kind {s.kind!r} (expected 'verb' or 'hoi')"
            )
        if any(not 0 <= i < len(hois) for i in s.unseen_hois):
            problems.append(f"setting {s.name!r} lists a HOI index out of range")
    if len(verb_ids) != len(verbs) or len(set(object_ids)) != len(object_ids):
        problems.append(
            "verb_ids must have one entry per verb and object ids must be unique"
        )
    if problems:
        raise DataError(f"{where}: invalid vocabulary: " + "; ".join(problems))
    return vocab


def read_named_json(
    name: str | Path, builtin: dict[str, str], what: str, flag: str
) -> tuple[dict, str, Path | None]:
    """A built-in data file of eoid (`builtin` name -> package file) or a user's JSON
    file.

    Returns (parsed JSON, where to name it in messages, the file's folder or None if
    built in).
    """
    if str(name) in builtin:
        text = resources.files("eoid.data").joinpath(builtin[str(name)]).read_text()
        return json.loads(text), f"built-in {what} {name!r}", None
    path = Path(name)
    if not path.is_file():
        raise DataError(
            f"{path}: no such {what} file, and not a built-in name "
            f"({', '.join(builtin)}). Pass {flag}."
        )
    try:
        return json.loads(path.read_text()), str(path), path.parent
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err}).") from None


def load_vocabulary(name: str | Path) -> Vocabulary:
    """A built-in vocabulary ("hico-det", "v-coco") or a vocabulary JSON file."""
    raw, where, _ = read_named_json(
        name, BUILTIN, "vocabulary", "--dataset hico-det, v-coco or a vocabulary JSON"
    )
    return vocabulary_from_json(raw, where)
