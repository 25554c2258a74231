"""A fine-tune job on the wire: its inputs (`JobInputs`) as one blob, its events as one JSON document each. The
queue carries them (`segdemo.jobqueue`); both sides of a job use this one format."""

import io
import json
from dataclasses import asdict

import numpy as np

from segdemo.finetune.events import Failed, FinetuneSummary, Finished, JobInputs, RoundDone, Started, StepDone
from segdemo.finetune.options import FinetuneOptions
from segdemo.models.cards import ModelCard

EVENT_TYPES = {cls.__name__: cls for cls in (Started, StepDone, RoundDone, Finished, Failed)}


def encode_event(event):
    """One JSON line for an event (a RoundDone's in-process `prediction` stays behind)."""
    data = asdict(event)
    data.pop("prediction", None)
    if isinstance(event, Finished):
        data["summary"]["card"] = event.summary.card.to_dict()  # the card's JSON form, as its file has it
    return json.dumps({"type": type(event).__name__, **data})


def decode_event(line):
    """The event an `encode_event` line holds (None for a line that is not one: a library's stray output)."""
    try:
        data = json.loads(line)
        cls = EVENT_TYPES[data.pop("type")]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    if cls is Finished:
        summary = data["summary"]
        return Finished(FinetuneSummary(**{**summary, "card": ModelCard.from_dict(summary["card"])}))
    return cls(**data)


def encode_inputs(inputs):
    """`JobInputs` as the bytes of one .npz (arrays as they are; the rest as JSON)."""
    arrays = {}
    for index, (_, image, mask) in enumerate(inputs.pairs):
        arrays[f"image_{index}"], arrays[f"mask_{index}"] = image, mask
    spec = {"names": [name for name, _, _ in inputs.pairs], "options": asdict(inputs.options),
            "palette": [list(map(int, color)) for color in inputs.palette], "base_card": inputs.base_card,
            "base_name": inputs.base_name}
    arrays["spec"] = np.frombuffer(json.dumps(spec).encode(), np.uint8)
    arrays["base_file"] = np.frombuffer(inputs.base_file, np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode_inputs(data):
    with np.load(io.BytesIO(data)) as arrays:
        spec = json.loads(arrays["spec"].tobytes())
        pairs = [(name, arrays[f"image_{i}"], arrays[f"mask_{i}"]) for i, name in enumerate(spec["names"])]
        base_file = arrays["base_file"].tobytes()
    return JobInputs(pairs, FinetuneOptions(**spec["options"]), spec["palette"], base_file, spec["base_name"],
                     spec["base_card"])
