"""The student as an ONNX file: written by torch's exporter, run by onnxruntime like the
torch model.

The TorchScript exporter (`torch.onnx.export(..., dynamo=False)`) is used: torch 2.14's
default dynamo exporter fails while decomposing nn.MultiheadAttention with batch_first
(it views the permuted attention output without a copy), and the TorchScript one exports
the student's ops, padding masks and dynamic batch / height / width as they are. The
file carries the vocabulary and the run's resolved config (metadata), so `eoid predict
--onnx` needs no checkpoint. `OnnxStudent` is called as the CDN is and returns a
StudentOutput: the one inference loop and post-processing (evaluation/inference.py) run
on it unchanged.
"""

from __future__ import annotations

import importlib.util
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eoid.checkpoint import recipe_sections
from eoid.errors import CheckpointError, ConfigError, first_line
from eoid.files import write_bytes_atomic
from eoid.pipeline.data.vocab import Vocabulary, vocabulary_from_json
from eoid.student.export import (
    INPUT_NAMES,
    ExportedForward,
    output_names,
    student_output,
)
from eoid.student.model import CDN, StudentOutput

FORMAT = "eoid-onnx-student"
VERSION = "1"
OPSETS = range(14, 21)  # what the TorchScript exporter writes and the student needs


def require_export_packages(
    command: str, packages: tuple[str, ...] = ("onnx", "onnxruntime")
) -> None:
    """ConfigError with the install line when the optional `export` extra is missing."""
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ConfigError(
            f"{command} needs the optional package(s) {', '.join(missing)}; install"
            " them with: pip install 'eoid[export]'"
        )


def example_batch(height: int = 192, width: int = 256) -> tuple[Tensor, Tensor]:
    """Two images, the second padded on the right and bottom, so the traced graph sees a
    real mask.
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, height, width, generator=generator)
    mask = torch.zeros(2, height, width, dtype=torch.bool)
    mask[1, height * 3 // 4 :, :] = True
    mask[1, :, width * 2 // 3 :] = True
    images[1][:, mask[1]] = 0.0
    return images, mask


def export_onnx(model: CDN, path: Path, opset: int, metadata: dict[str, str]) -> None:
    """Write `model`'s forward to `path` (atomically) with dynamic batch, height and
    width.
    """
    import onnx

    if opset not in OPSETS:
        raise ConfigError(
            f"--opset {opset}: the exporter writes opsets {OPSETS[0]}..{OPSETS[-1]};"
            " pick one."
        )
    graph = ExportedForward(model.eval())
    dims = {0: "batch", 2: "height", 3: "width"}
    dynamic = {"images": dims, "padding_mask": {0: "batch", 1: "height", 2: "width"}}
    dynamic.update({name: {0: "batch"} for name in graph.names})
    buffer = io.BytesIO()
    # nn.MultiheadAttention checks static facts (head width, mask rank) with Python
    # `if`s, which the tracer reports as TracerWarnings; run_export then runs the graph
    # on another size to check it
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph,
            example_batch(),
            buffer,
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=list(graph.names),
            dynamic_axes=dynamic,
            opset_version=opset,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.doc_string = (
        f"eoid student ({metadata.get('eoid.preset', '?')}): {ExportedForward.__doc__}"
    )
    for key, value in {
        "eoid.format": FORMAT,
        "eoid.version": VERSION,
        **metadata,
    }.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    write_bytes_atomic(path, proto.SerializeToString(), "the ONNX file")


def onnx_metadata(vocabulary: dict, config: dict, checkpoint: Path) -> dict[str, str]:
    """What `OnnxStudent` needs besides the graph: vocabulary, resolved config,
    provenance.
    """
    return {
        "eoid.vocabulary": json.dumps(vocabulary),
        "eoid.config": json.dumps(config),
        "eoid.checkpoint": str(checkpoint),
        "eoid.preset": str((config.get("student") or {}).get("preset", "")),
    }


class OnnxStudent:
    """An exported student run by onnxruntime: called like the CDN, returns a
    StudentOutput (no aux).
    """

    def __init__(
        self,
        path: Path,
        provider: str = "CPUExecutionProvider",
        optimise: bool = True,
        threads: int = 0,
    ):
        """threads: onnxruntime's intra-op threads (0 = its default, one per physical
        core).
        """
        import onnxruntime as ort

        if not Path(path).is_file():
            raise CheckpointError(
                f"{path}: no such ONNX file. Write one with `eoid export`."
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        if not optimise:  # reading the metadata only
            options.graph_optimization_level = (
                ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            )
        if provider not in ort.get_available_providers():
            raise ConfigError(
                f"onnx_provider {provider!r} is not available here; choose one of "
                f"{ort.get_available_providers()}."
            )
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=[provider]
            )
        # onnxruntime raises its own types for unreadable graphs
        except Exception as err:
            raise CheckpointError(
                f"{path}: onnxruntime cannot load it ({type(err).__name__}: "
                f"{first_line(err)}). Export it again with `eoid export`."
            ) from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if self.metadata.get("eoid.format") != FORMAT:
            raise CheckpointError(
                f"{path}: not a student written by `eoid export` (no {FORMAT!r} "
                "metadata); export the checkpoint with `eoid export`."
            )
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._json: dict[str, Any] = {}
        for key, default in (("eoid.vocabulary", None), ("eoid.config", "{}")):
            try:
                self._json[key] = json.loads(
                    self.metadata[key]
                    if default is None
                    else self.metadata.get(key, default)
                )
            except (KeyError, ValueError, RecursionError):
                raise CheckpointError(
                    f"{path}: its {key!r} metadata is missing or not JSON (the file "
                    "was edited or damaged); export the checkpoint again with "
                    "`eoid export`."
                ) from None
        fixed = [
            d for d in self.session.get_inputs()[0].shape[2:] if isinstance(d, int)
        ]
        if fixed:
            raise CheckpointError(
                f"{path}: exported with a fixed input size "
                f"{self.session.get_inputs()[0].shape}; eoid resizes each image to its "
                "own height and width. Export it with `eoid export` (dynamic batch, "
                "height and width)."
            )

    def eval(self) -> "OnnxStudent":
        return self  # nothing to switch: the graph is the eval-mode forward

    def __call__(self, images: Tensor, padding_mask: Tensor) -> StudentOutput:
        arrays = self.session.run(
            self.output_names,
            {
                "images": images.cpu().numpy().astype(np.float32),
                "padding_mask": padding_mask.cpu().numpy(),
            },
        )
        return student_output(
            {n: torch.from_numpy(a) for n, a in zip(self.output_names, arrays)}
        )

    def vocabulary(self, where: str) -> Vocabulary:
        return vocabulary_from_json(
            self._json["eoid.vocabulary"], f"{where} (vocabulary)"
        )

    def config(self) -> dict[str, Any]:
        return self._json["eoid.config"]


def onnx_evaluation_recipe(path: Path) -> dict[str, Any]:
    """The [augment] and [post] sections stored in an exported student (see
    checkpoint.evaluation_recipe).
    """
    require_export_packages("--onnx", ("onnxruntime",))
    return recipe_sections(OnnxStudent(path, optimise=False).config(), path)


def max_difference(
    model: CDN, student: OnnxStudent, images: Tensor, padding_mask: Tensor
) -> float:
    """Largest absolute difference between the torch model's and the ONNX graph's
    outputs.
    """
    with torch.no_grad():
        ours = model.eval()(images, padding_mask)
    theirs = student(images, padding_mask)
    return max(
        float((getattr(ours, n) - getattr(theirs, n)).abs().max())
        for n in output_names(model)
    )
