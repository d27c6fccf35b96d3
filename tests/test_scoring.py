"""Big batches are scored in pieces cut at record boundaries (serving/scoring): the
answer is byte for byte the one-go answer, whatever the body holds, and a bad record
is still named by its index in the whole request."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custseg.artifact.scorer import Model
from custseg.errors import DataError
from custseg.serving.scoring import record_chunks, score_response
from custseg.serving.wire import WireError
from test_model import fit_model, random_frame

NAMES = ["Low, spend", 'The "best"', "Young"]


@pytest.fixture(scope="module")
def model() -> Model:
    rng = np.random.default_rng(4)
    return fit_model(random_frame(rng, 400, 3, 1, 0.0, [["F", "M", "X"]]), 3, 2, 0)


def records(model: Model, n: int, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    cats = model.transform.categories[0]
    out: list[dict[str, object]] = []
    for i in range(n):
        rec: dict[str, object] = {c: float(rng.normal(0, 3)) for c in model.transform.numeric}
        rec[model.transform.categorical[0]] = cats[i % len(cats)]
        out.append(rec)
    return out


def both(model: Model, body: bytes, accept: str = "application/json"
         ) -> tuple[tuple[bytes, str, int], tuple[bytes, str, int]]:
    one_go = score_response(model, body, "application/json", NAMES, accept)
    pieces = score_response(model, body, "application/json", NAMES, accept, chunked=True)
    return one_go, pieces


@pytest.mark.parametrize("accept", ["application/json", "text/csv"])
@pytest.mark.parametrize("wrap", [None, "instances", "dataframe_records", "inputs"])
def test_a_batch_in_pieces_answers_exactly_as_in_one_go(model: Model, wrap: str | None,
                                                          accept: str) -> None:
    recs = records(model, 20_000)
    body = json.dumps(recs if wrap is None else {wrap: recs}, indent=1).encode()
    assert len(record_chunks(body) or []) > 10  # the test exercises the cut
    one_go, pieces = both(model, body, accept)
    assert pieces == one_go and pieces[2] == 20_000
    if accept == "application/json":  # and the same as the model itself
        got = [p["cluster"] for p in orjson.loads(pieces[0])["predictions"]]
        assert got == model.predict(recs).tolist()


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(st.sampled_from(["}, {", "},{", '"}],[{"', "\\", "é", "x", " "]),
                      min_size=1, max_size=6),
       chunk=st.integers(min_value=1, max_value=400))
def test_cutting_never_changes_what_the_body_says(texts: list[str], chunk: int) -> None:
    """Strings holding `},{` (where a cut may fall), escapes and any piece size: either
    every piece parses and together they are the whole list, or the body is not cut."""
    recs = [{"a": i, "t": "".join(texts[: i % len(texts) + 1])} for i in range(30)]
    for body in (orjson.dumps(recs), json.dumps({"instances": recs}).encode()):
        pieces = record_chunks(body, chunk)
        if pieces is None:
            continue
        try:
            parsed = [r for p in pieces for r in orjson.loads(p)]
        except orjson.JSONDecodeError:
            continue  # a cut inside a string: the caller falls back to the whole body
        assert parsed == recs


@pytest.mark.parametrize("body", [
    b'{"instances": [{"a": 1}, {"a": 2}], "other": [{"b": 2}]}',
    b'{"instances": [{"a": 1}], "other": [{"b": 2}, {"b": 3}]}',
    b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}}',
    b'[[1, 2, 3, "F"], [4, 5, 6, "M"]]',
    b'[{"a": 1}, 2, {"a": 3}]',
    b'{"a": 1}',
    b"[]",
])
def test_other_shapes_are_never_read_as_something_else(body: bytes) -> None:
    """Cut into the smallest pieces: a body is either not cut, or some piece is not
    valid JSON (the one-go path then answers), or the pieces hold exactly its list."""
    pieces = record_chunks(body, 1)
    if pieces is None:
        return
    try:
        parsed = [r for p in pieces for r in orjson.loads(p)]
    except orjson.JSONDecodeError:
        return
    whole = orjson.loads(body)
    assert parsed == (whole if isinstance(whole, list) else whole["instances"])
    assert not (isinstance(whole, dict) and len(whole) > 1)


def test_a_bad_record_deep_in_a_big_batch_is_named_by_its_index_in_the_request(
        model: Model) -> None:
    recs = records(model, 30_000)
    recs[25_123][model.transform.numeric[1]] = "lots"
    body = orjson.dumps(recs)
    with pytest.raises(DataError, match=r"record 25123: field 'num1' must be a number"):
        score_response(model, body, "application/json", NAMES, "application/json",
                       chunked=True)
    recs[25_123] = {}
    with pytest.raises(DataError, match=r"record 25123: field 'num0' is missing"):
        score_response(model, orjson.dumps(recs), "application/json", NAMES,
                       "application/json", chunked=True)


def test_a_truncated_big_batch_is_a_json_error(model: Model) -> None:
    body = orjson.dumps(records(model, 30_000))[:-40]
    with pytest.raises(WireError, match="malformed JSON") as caught:
        score_response(model, body, "application/json", NAMES, "application/json",
                       chunked=True)
    assert caught.value.status == 400


@settings(max_examples=200, deadline=None)
@given(names=st.lists(st.text(max_size=12), min_size=1, max_size=6),
       data=st.data())
def test_the_json_answer_is_byte_for_byte_orjsons(names: list[str], data: st.DataObject
                                                  ) -> None:
    """The predictions are assembled from per-cluster heads and one dump of the
    distances (serving/wire): the bytes orjson writes for the dicts, whatever the names
    (quotes, escapes, unicode) and the distances."""
    from custseg.serving.wire import render

    n = data.draw(st.integers(1, 50))
    labels = data.draw(st.lists(st.integers(0, len(names) - 1), min_size=n, max_size=n))
    distances = data.draw(st.lists(st.floats(0, 1e300, allow_nan=False), min_size=n,
                                   max_size=n))
    body, media = render(labels, distances, names, "application/json")
    assert media == "application/json"
    assert body == orjson.dumps({"predictions": [
        {"cluster": c, "segment": names[c], "distance": d}
        for c, d in zip(labels, distances, strict=True)]})


@pytest.mark.parametrize("rows", [1, 1000, 70_000])  # the last spans two blocks
def test_nearest_centres_are_the_plain_sums_bit_for_bit(model: Model, rows: int) -> None:
    """The batch path's distances, summed coordinate by coordinate centre by centre,
    equal a plain sum of squared differences over the coordinates, ties going to the
    first centre as argmin's."""
    rng = np.random.default_rng(rows)
    z = rng.normal(size=(rows, model.centers.shape[1]))
    z[: rows // 3] = model.centers[1]  # on a centre: distance 0
    if rows > 1:
        z[1] = (model.centers[0] + model.centers[1]) / 2  # halfway: a likely tie
    d2 = ((z[:, None, :] - model.centers[None, :, :]) ** 2).sum(axis=2)
    labels, dist = model._assign(z)
    assert labels.tolist() == d2.argmin(axis=1).tolist()
    assert dist.tolist() == np.sqrt(d2.min(axis=1)).tolist()


def _general(model: Model, body: bytes, content_type: str = "application/json"
             ) -> tuple[bytes, str, int] | str:
    """The answer of the general path (dicts from orjson), or its error."""
    from custseg.serving import scoring

    saved = scoring.TYPED_BYTES
    scoring.TYPED_BYTES = 1 << 62
    try:
        return score_response(model, body, content_type, NAMES, "application/json")
    except (WireError, DataError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        scoring.TYPED_BYTES = saved


def _typed(model: Model, body: bytes, content_type: str = "application/json"
           ) -> tuple[bytes, str, int] | str:
    try:
        return score_response(model, body, content_type, NAMES, "application/json")
    except (WireError, DataError) as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("case", [
    "plain", "wrapped", "nulls", "unseen category", "numeric category", "extra fields",
    "number as text", "true as a number", "missing field", "one record", "list of lists",
    "two wrappers", "not json", "out of range"])
def test_typed_batches_answer_exactly_as_the_general_path(model: Model, case: str) -> None:
    """JSON batches decoded into typed records (msgspec) give the general path's answer
    byte for byte, and whatever the typed decoder does not take (text for a number, a
    missing field, other shapes) goes to the general path: same answer, same error."""
    from custseg.serving import scoring

    recs: list[dict[str, object]] = records(model, 300, seed=1)
    num, cat = model.transform.numeric[0], model.transform.categorical[0]
    payload: object = recs
    if case == "wrapped":
        payload = {"dataframe_records": recs}
    elif case == "nulls":
        recs[3][num] = None
        recs[5][cat] = None
    elif case == "unseen category":
        recs[7][cat] = "never seen"
    elif case == "numeric category":
        recs[7][cat] = 3
    elif case == "extra fields":
        for r in recs:
            r["CustomerID"] = "c-1"
    elif case == "number as text":
        recs[9][num] = "2.5"
    elif case == "true as a number":
        recs[9][num] = True
    elif case == "missing field":
        del recs[11][num]
    elif case == "one record":
        payload = {**recs[0], "pad": "x" * 4000}
    elif case == "list of lists":
        payload = [[r[c] for c in model.input_columns] for r in recs]
    elif case == "two wrappers":
        payload = {"instances": recs, "inputs": recs[:5]}
    body = json.dumps(payload).encode()
    if case == "not json":
        body = body[:-5]
    elif case == "out of range":
        body = body.replace(b"]", b', {"' + num.encode() + b'": 1e400}]', 1)
    assert len(body) >= scoring.TYPED_BYTES
    assert _typed(model, body) == _general(model, body)
    if case in ("plain", "wrapped", "nulls", "unseen category", "numeric category",
                "extra fields"):  # the typed decoder took it
        assert scoring._typed(model).decode(body) is not None
