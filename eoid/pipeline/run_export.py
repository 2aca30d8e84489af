"""`eoid export`: a student checkpoint as an ONNX file that runs without torch
(onnxruntime).
"""

from __future__ import annotations

from pathlib import Path

from eoid.files import new_file
from eoid.pipeline.data.student_models import model_from_checkpoint
from eoid.pipeline.evaluation.onnx_student import (
    OnnxStudent,
    example_batch,
    export_onnx,
    max_difference,
    onnx_metadata,
    require_export_packages,
)
from eoid.student.export import INPUT_NAMES, output_names


def run_export(checkpoint: Path, out: Path, opset: int) -> str:
    """Export, then run the file once with onnxruntime against torch on a padded
    two-image batch.
    """
    require_export_packages("eoid export")
    out = new_file(out, "the ONNX file")
    model, vocab, config = model_from_checkpoint(checkpoint, "cpu")
    export_onnx(model, out, opset, onnx_metadata(vocab.to_json(), config, checkpoint))
    # another size than the traced one: the axes are dynamic
    images, mask = example_batch(160, 224)
    diff = max_difference(model, OnnxStudent(out), images, mask)
    return (
        f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, opset {opset}); inputs"
        f" {', '.join(INPUT_NAMES)}, outputs {', '.join(output_names(model))};"
        f" onnxruntime and torch agree within {diff:.1e} on a padded 2 x 3 x 160 x 224"
        f" batch. Run it with `eoid predict IMAGE --onnx {out} --out DIR`."
    )
