"""Where the teacher's parts come from on this machine, without downloading: open_clip
model configs (by name, from a JSON file or shipped in `eoid/data/clip_configs/`), the
local file of a pretrained tag, the preprocessing a tag family agrees on, the tokenizer
from local files, and the crop spec a built model expects; plus the one-line errors that
say how to pass a weights file. `teacher.load_teacher` puts them together.
"""

from __future__ import annotations

import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

from eoid.errors import ConfigError, WeightsNotFoundError
from eoid.teacher_cache.crops import CropSpec


def register_model_configs(path: str | Path) -> None:
    """Make the open_clip model configs in a JSON file or a folder of them known by file
    stem.
    """
    import open_clip

    open_clip.add_model_config(str(path))


def _register_packaged_configs() -> None:
    folder = resources.files("eoid.data").joinpath("clip_configs")
    if folder.is_dir() and any(p.name.endswith(".json") for p in folder.iterdir()):
        register_model_configs(Path(str(folder)))


def resolve_model_name(model_name: str) -> str:
    """An open_clip model name; a path to a `.json` model config is registered and named
    by its stem.
    """
    if model_name.endswith(".json"):
        path = Path(model_name)
        if not path.is_file():
            raise ConfigError(
                f"{path}: CLIP model config file not found. Pass an open_clip model "
                "name (e.g. --clip RN50x16) or an existing JSON model config."
            )
        register_model_configs(path)
        return path.stem
    return model_name


def _is_torchscript(path: Path) -> bool:
    """OpenAI's RN50x16.pt and friends are TorchScript zip archives (they hold
    constants.pkl).
    """
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            n.endswith("/constants.pkl") or n == "constants.pkl"
            for n in archive.namelist()
        )


def _gist(err: BaseException) -> str:
    """One line of a library's error: its first non-empty line, or the last for a size
    mismatch.
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return "no message"
    line = lines[-1] if "size mismatch" in str(err) else lines[0]
    return line[:200]


def _missing(model_name: str, weights: str, why: str) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"CLIP model {model_name!r}: the weights {weights!r} could not be found on this"
        f" machine ({why}); eoid never downloads weights. Get the file once (e.g."
        " OpenAI's RN50x16.pt or an open_clip .bin/.safetensors) and pass it:"
        " --clip-weights /path/to/RN50x16.pt. For OpenAI's weights use the model name"
        " RN50x16-quickgelu (its text tower uses QuickGELU)."
    )


def _local_file_for_tag(model_name: str, tag: str) -> tuple[str | None, dict]:
    """The file of an open_clip pretrained tag if it is already in the local caches,
    else None.
    """
    import open_clip
    from open_clip import pretrained as oc_pretrained

    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        return None, {}
    if cfg.get("file"):
        return cfg["file"], cfg
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = (
            hub.rsplit("/", 1) if not hub.endswith("/") else (hub[:-1], "")
        )
        filename = filename or oc_pretrained.HF_WEIGHTS_NAME
        for name in (*oc_pretrained._get_safe_alternatives(filename), filename):
            found = try_to_load_from_cache(repo_id, name)
            if isinstance(found, str):
                return found, cfg
    url = cfg.get("url", "")
    if url:
        candidate = Path.home() / ".cache" / "clip" / Path(url).name
        if candidate.is_file():
            return str(candidate), cfg
    return None, cfg


def _tags_preprocess(model_name: str) -> dict:
    """mean, std and interpolation that every pretrained tag of `model_name` agrees on
    ({} if none).

    open_clip takes them from the tag; a local weights file would get CLIP's defaults,
    which are wrong for e.g. SigLIP (mean = std = 0.5). One family's tags agree, so the
    file gets theirs.
    """
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model_name)
    cfgs = [open_clip.get_pretrained_cfg(model_name, t) for t in tags]
    keys = ("mean", "std", "interpolation")
    found = [{k: c[k] for k in keys if k in c} for c in cfgs if c]
    return found[0] if found and all(f == found[0] for f in found) else {}


def _tokenizer(model_name: str) -> Any:
    """open_clip's tokenizer for the model, from local files only (a Hugging Face one,
    e.g. SigLIP's).
    """
    import open_clip

    text_cfg = (open_clip.get_model_config(model_name) or {}).get("text_cfg", {})
    hf_name = text_cfg.get("hf_tokenizer_name")
    try:
        return open_clip.get_tokenizer(
            model_name, **({"local_files_only": True} if hf_name else {})
        )
    except ImportError as err:
        raise ConfigError(
            f"CLIP model {model_name!r}: its tokenizer needs the"
            f" {err.name or 'transformers'} package (pip install transformers"
            " sentencepiece)."
        ) from None
    except OSError as err:
        raise WeightsNotFoundError(
            f"CLIP model {model_name!r}: the files of its tokenizer {hf_name!r} are not"
            f" in the Hugging Face cache ({_gist(err)}); eoid never downloads. Fetch"
            ' them once where there is internet (python -c "import open_clip;'
            f" open_clip.get_tokenizer('{model_name}')\") and copy the Hugging Face"
            " cache folder over (or set HF_HOME)."
        ) from None


def _crop_spec(model: Any) -> CropSpec:
    """Read input size, mean, std and interpolation from the model (open_clip sets
    preprocess_cfg).
    """
    visual = model.visual
    cfg = dict(getattr(visual, "preprocess_cfg", None) or {})
    size = cfg.get("size", getattr(visual, "image_size", 224))
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = tuple(float(v) for v in cfg.get("mean", getattr(visual, "image_mean", None)))
    std = tuple(float(v) for v in cfg.get("std", getattr(visual, "image_std", None)))
    return CropSpec(
        size=int(size),
        mean=mean,
        std=std,  # type: ignore[arg-type]
        interpolation=str(cfg.get("interpolation", "bicubic")),
    )
