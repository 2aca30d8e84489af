"""Section 5.6 end to end on two small generated worlds, through the CLI where the
command exists.

World A plays HICO-DET with two verbs removed (kick, carry); world B plays COCO: its
training boxes become a boxes-only COCO instances file, its test split the V-COCO-style
evaluation set in a "source" vocabulary whose verbs are named like V-COCO's verb-roles
(hold_obj, ...). The mapping maps six onto A's verbs and adds kick_obj and carry_obj as
new verbs (the Unseen ones). Path: train on A -> pseudo-label B -> mix -> cache-teacher
-> train -> evaluate-vcoco.
"""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from eoid.cli import main
from eoid.devices import World
from eoid.pipeline.synth.scenes import synth_vocabulary_json
from eoid.pipeline.synth.world import generate_world

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
NEW = ("kick", "carry")


def _base_vocabulary() -> dict:
    """The synthetic vocabulary without kick and carry (verb ids kept, so A's files stay
    valid).
    """
    raw = synth_vocabulary_json()
    names = [v["name"] for v in raw["verbs"]]
    keep = [i for i, n in enumerate(names) if n not in NEW]
    hois = [[keep.index(v), o] for v, o in raw["hois"] if v in keep]
    return {
        **raw,
        "name": "synth-hico",
        "verbs": [raw["verbs"][i] for i in keep],
        "verb_ids": [raw["verb_ids"][i] for i in keep],
        "hois": hois,
        "rare_hois": [],
        "settings": {},
    }


def _source_vocabulary() -> dict:
    raw = synth_vocabulary_json()
    verbs = [
        {
            **v,
            "name": v["name"] if v["name"] == "no_interaction" else v["name"] + "_obj",
        }
        for v in raw["verbs"]
    ]
    return {
        **raw,
        "name": "synth-vcoco",
        "verbs": verbs,
        "no_interaction": "no_interaction",
        "rare_hois": [],
        "settings": {},
    }


def _mapping(base: dict, source: dict) -> dict:
    objects = {v: [] for v in NEW}
    names = [v["name"] for v in synth_vocabulary_json()["verbs"]]
    obj_names = [o["name"] for o in synth_vocabulary_json()["objects"]]
    for v, o in synth_vocabulary_json()["hois"]:
        if names[v] in NEW:
            objects[names[v]].append(obj_names[o])
    return {
        "name": "synth-hico+vcoco",
        "base": "base_vocabulary.json",
        "source": "source_vocabulary.json",
        "mapped": [
            {"source": v["name"], "verbs": [v["name"][:-4]]}
            for v in source["verbs"]
            if v["name"].endswith("_obj") and v["name"][:-4] not in NEW
        ],
        "added": [
            {
                "source": f"{v}_obj",
                "verb": v,
                "phrase": f"{v}ing",
                "objects": objects[v],
            }
            for v in NEW
        ],
        "dropped": ["no_interaction"],
    }


def _coco_from(hico_json: Path, out: Path) -> None:
    """World B's training boxes as a COCO instances file (boxes only, xywh)."""
    coco = {"images": [], "annotations": [], "categories": []}
    for i, rec in enumerate(json.loads(hico_json.read_text())):
        coco["images"].append(
            {"id": i, "file_name": rec["file_name"], "width": 160, "height": 160}
        )
        for a in rec["annotations"]:
            x1, y1, x2, y2 = a["bbox"]
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]),
                    "image_id": i,
                    "iscrowd": 0,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "category_id": a["category_id"],
                }
            )
    out.write_text(json.dumps(coco))


def _cli(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


TINY = [
    "--set",
    "data.val_images=0",
    "--set",
    "optim.epochs=1",
    "--set",
    "optim.max_iters=2",
    "--set",
    "optim.batch_size=4",
    "--set",
    "data.test_annotations=''",
    "--set",
    "optim.num_workers=0",
]


@pytest.mark.slow
def test_hico_plus_pseudo_labelled_vcoco_runs_end_to_end(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    a = generate_world(tmp_path / "a", 24, 0, progress=False)
    b = generate_world(tmp_path / "b", 24, 1, progress=False)
    base, source = _base_vocabulary(), _source_vocabulary()
    Path("base_vocabulary.json").write_text(json.dumps(base))
    Path("source_vocabulary.json").write_text(json.dumps(source))
    Path("mapping.json").write_text(json.dumps(_mapping(base, source)))
    removed = {v["name"]: i + 1 for i, v in enumerate(synth_vocabulary_json()["verbs"])}
    a_train = json.loads(a.train_json.read_text())
    for rec in a_train:  # "HICO-DET" has no kick / carry labels
        rec["hoi_annotation"] = [
            h
            for h in rec["hoi_annotation"]
            if h["category_id"] not in {removed[v] for v in NEW}
        ]
    Path("hico_train.json").write_text(json.dumps(a_train))
    _coco_from(b.train_json, Path("coco_instances.json"))

    # 1. the "HICO-DET" student (no teacher), a couple of iterations
    _cli(
        [
            "train",
            "--config",
            str(CONFIGS / "synth_ua.toml"),
            "--annotations",
            "hico_train.json",
            "--images",
            str(a.image_dir),
            "--out",
            "run_hico",
            "--setting",
            "",
            "--set",
            "data.dataset=base_vocabulary.json",
            "--set",
            "loss.distill=0",
            "--set",
            "cache=''",
            "--set",
            "loss.a_u_only=false",
            *TINY,
        ]
    )
    # 2. pseudo labels on the boxes-only "COCO" images (threshold 0: keep whatever
    #    matches)
    args = dict(
        checkpoint=Path("run_hico/checkpoint.pt"),
        coco=Path("coco_instances.json"),
        images=b.image_dir,
        out=Path("pseudo.json"),
        world=World(),
    )
    if "pseudo-label" in main.commands:
        _cli(
            [
                "pseudo-label",
                "--checkpoint",
                "run_hico/checkpoint.pt",
                "--coco",
                "coco_instances.json",
                "--images",
                str(b.image_dir),
                "--out",
                "pseudo.json",
                "--threshold",
                "0",
            ]
        )
    else:
        from eoid.pipeline.run_pseudo_label import run_pseudo_label

        run_pseudo_label(**args, threshold=0.0, num_workers=0, progress=False)
    pseudo = json.loads(Path("pseudo.json").read_text())
    assert len(pseudo) == len(json.loads(b.train_json.read_text()))
    assert all("provenance" in h for e in pseudo for h in e["hoi_annotation"])
    # 3. one training set in the merged vocabulary
    if "mix" in main.commands:
        _cli(
            [
                "mix",
                "--mapping",
                "mapping.json",
                "--out",
                "mixed",
                "--source",
                "hico_train.json",
                str(a.image_dir),
                "base_vocabulary.json",
                "--source",
                "pseudo.json",
                str(b.image_dir),
                "base_vocabulary.json",
            ]
        )
    else:
        from eoid.pipeline.run_mix import MixSource, run_mix

        run_mix(
            [
                MixSource(Path("hico_train.json"), a.image_dir, "base_vocabulary.json"),
                MixSource(Path("pseudo.json"), b.image_dir, "base_vocabulary.json"),
            ],
            "mapping.json",
            Path("mixed"),
        )
    merged = json.loads(Path("mixed/vocabulary.json").read_text())
    assert [v["name"] for v in merged["verbs"]][-2:] == list(NEW)
    # 4. the teacher over both sets with prompts for the union of the verbs
    _cli(
        [
            "cache-teacher",
            "--config",
            str(CONFIGS / "cache_synth.toml"),
            "--dataset",
            "mixed/vocabulary.json",
            "--annotations",
            "mixed/train.json",
            "--images",
            "mixed/images",
            "--out",
            "cache",
            "--set",
            "teacher.num_workers=0",
        ]
    )
    # 5. EoID on the mix: the added verbs are unseen, learned from the teacher only
    _cli(
        [
            "train",
            "--config",
            str(CONFIGS / "synth_ua.toml"),
            "--annotations",
            "mixed/train.json",
            "--images",
            "mixed/images",
            "--out",
            "run_mix",
            "--cache",
            "cache",
            "--setting",
            "new-verbs",
            "--set",
            "data.dataset=mixed/vocabulary.json",
            *TINY,
        ]
    )
    # 6. V-COCO-style role AP with Seen / Unseen by the mapping
    if "evaluate-vcoco" in main.commands:
        _cli(
            [
                "evaluate-vcoco",
                "--checkpoint",
                "run_mix/checkpoint.pt",
                "--mapping",
                "mapping.json",
                "--annotations",
                str(b.test_json),
                "--images",
                str(b.image_dir),
                "--out",
                "eval",
            ]
        )
    else:
        from eoid.pipeline.run_evaluate_vcoco import run_evaluate_vcoco

        run_evaluate_vcoco(
            Path("run_mix/checkpoint.pt"),
            b.test_json,
            b.image_dir,
            "mapping.json",
            Path("eval"),
            World(),
            progress=False,
        )
    results = json.loads(Path("eval/vcoco_results.json").read_text())
    assert (results["num_seen"], results["num_unseen"]) == (6, 2)
    for s in (1, 2):
        assert set(results[f"scenario_{s}"]) >= {"full", "seen", "unseen"}
        assert results[f"scenario_{s}"]["unseen"] is not None
