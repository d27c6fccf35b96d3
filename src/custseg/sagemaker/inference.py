"""The model server's entry point inside SageMaker: `model_fn`, `input_fn`,
`predict_fn` and `output_fn`, as the scikit-learn container calls them.

They serve custseg's artifact with custseg's scorer and wire format, so an endpoint on
SageMaker takes the same request bodies and gives the same answers as `custseg serve`:
a JSON record, a list of records, `instances`, `dataframe_records`/`dataframe_split`,
CSV with or without a header; JSON predictions, or CSV with `Accept: text/csv`.
`model_fn` verifies every file against the artifact's sha256 manifest (no pickle).

`input_fn` gets no model, and a CSV body without a header (or a list of value lists)
needs the model's input columns, so it hands the body on; `predict_fn` parses and scores
it with `serving.scoring.score_body`, the local endpoint's own function.
"""

from __future__ import annotations

from dataclasses import dataclass

from custseg.artifact.scorer import Model
from custseg.artifact.storage import load_model
from custseg.errors import CustsegError
from custseg.serving.endpoints import segment_names
from custseg.serving.scoring import score_body
from custseg.serving.wire import WireError, render

__all__ = ["InferenceError", "Prediction", "Request", "input_fn", "model_fn", "output_fn",
           "predict_fn"]


class InferenceError(ValueError):
    """A request the model cannot score: the HTTP status the local endpoint answers
    with, and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Prediction:
    labels: list[int]
    distances: list[float]
    names: list[str]


def model_fn(model_dir: str) -> Model:
    """The artifact in `model_dir` (model.tar.gz unpacked), verified against its manifest."""
    return load_model(model_dir)


def input_fn(input_data: bytes | str, content_type: str) -> Request:
    body = input_data.encode("utf-8") if isinstance(input_data, str) else bytes(input_data)
    return Request(body, content_type or "application/json")


def predict_fn(data: Request, model: Model) -> Prediction:
    try:
        labels, distances = score_body(model, data.body, data.content_type)
    except WireError as exc:
        raise InferenceError(exc.status, exc.message) from None
    except CustsegError as exc:
        raise InferenceError(400, str(exc)) from None
    return Prediction(labels, distances, segment_names(model))


def output_fn(prediction: Prediction, accept: str) -> tuple[bytes, str]:
    """The response body and its content type (the container sends both)."""
    return render(prediction.labels, prediction.distances, prediction.names,
                  accept or "application/json")
