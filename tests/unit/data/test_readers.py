import csv
import json
import re

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alignkit.data.readers import SUPPORTED_FORMATS, Record, read_records
from alignkit.errors import DataError

ROWS = [{"prompt": "1+1=", "label": "2"}, {"prompt": "2+2=", "label": "4"}]


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_skips_blank_lines_and_reports_1_based_lines(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [json.dumps(ROWS[0]), "", "  ", json.dumps(ROWS[1])])
    assert read_records(path) == [Record(ROWS[0], f"{path}:1"), Record(ROWS[1], f"{path}:4")]


def test_jsonl_source_keeps_the_path_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    write_lines(tmp_path / "data" / "train.jsonl", [json.dumps(ROWS[0])])
    assert read_records("data/train.jsonl")[0].source == "data/train.jsonl:1"


def test_jsonl_malformed_json_names_line_and_column(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(ROWS[0]), '{"a": 1 "b": 2}'])
    with pytest.raises(DataError) as info:
        read_records(path)
    assert str(info.value) == f"{path}:2: malformed JSON (Expecting ',' delimiter at column 9)"


def test_jsonl_non_object_record(tmp_path):
    path = write_lines(tmp_path / "list.jsonl", [json.dumps(ROWS[0]), json.dumps(ROWS[1]), "[1, 2]"])
    with pytest.raises(DataError, match=re.escape(f"{path}:3: expected a JSON object, got array")):
        read_records(path)


def test_jsonl_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"a": "ok"}\n{"a": "caf\xe9"}\n')
    with pytest.raises(DataError, match=re.escape(f"{path}:2: not UTF-8 text")):
        read_records(path)


def test_json_top_level_list(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(ROWS))
    assert read_records(path) == [Record(ROWS[0], f"{path}:row 1"), Record(ROWS[1], f"{path}:row 2")]


def test_json_object_with_one_list_valued_key(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"version": 2, "data": ROWS}))
    assert [r.data for r in read_records(path)] == ROWS


def test_json_non_object_element_names_the_row(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"data": [ROWS[0], "oops"]}))
    with pytest.raises(DataError) as info:
        read_records(path)
    assert str(info.value) == f"{path}:row 2: expected a JSON object, got string"


def test_json_without_records_list(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"a": 1}))
    with pytest.raises(DataError) as info:
        read_records(path)
    assert str(info.value) == (
        f'{path}: expected a list of objects or an object with one list-valued key such as {{"data": [...]}}, '
        "got an object with no list-valued key"
    )


def test_json_with_several_list_valued_keys(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"train": ROWS, "test": ROWS}))
    with pytest.raises(DataError) as info:
        read_records(path)
    assert (
        str(info.value)
        == f"{path}: several list-valued keys ('train', 'test'); expected exactly one holding the records"
    )


def test_json_lines_misnamed_as_json_gets_a_hint(tmp_path):
    path = write_lines(tmp_path / "train.json", [json.dumps(r) for r in ROWS])
    with pytest.raises(DataError) as info:
        read_records(path)
    assert str(info.value) == (
        f"{path}:2: malformed JSON (Extra data at column 1); if this is one object per line, name the file .jsonl"
    )


def test_parquet(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert read_records(path) == [Record(ROWS[0], f"{path}:row 1"), Record(ROWS[1], f"{path}:row 2")]


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_text("not parquet")
    with pytest.raises(DataError, match=re.escape(f"{path}: not a readable Parquet file (")):
        read_records(path)


def test_csv_cells_are_strings(tmp_path):
    path = tmp_path / "train.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["prompt", "n"], ["a, quoted", "1"], ["b", "2"]])
    assert read_records(path) == [
        Record({"prompt": "a, quoted", "n": "1"}, f"{path}:row 1"),
        Record({"prompt": "b", "n": "2"}, f"{path}:row 2"),
    ]


def test_csv_row_with_wrong_cell_count(tmp_path):
    path = write_lines(tmp_path / "train.csv", ["prompt,label", "a,1", "b,2,extra"])
    with pytest.raises(DataError) as info:
        read_records(path)
    assert str(info.value) == f"{path}:row 2: the row's cell count does not match the 2 header columns"


def test_saved_dataset_folder(tmp_path):
    folder = tmp_path / "ds"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(folder))
    assert read_records(folder) == [Record(ROWS[0], f"{folder}:row 1"), Record(ROWS[1], f"{folder}:row 2")]


@pytest.fixture
def dataset_dict(tmp_path):
    folder = tmp_path / "dd"
    splits = {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])}
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


def test_dataset_dict_defaults_to_train(dataset_dict):
    assert [r.data for r in read_records(dataset_dict)] == ROWS


def test_dataset_dict_split_from_path(dataset_dict):
    assert read_records(f"{dataset_dict}:test") == [Record(ROWS[0], f"{dataset_dict}:test:row 1")]


def test_dataset_dict_unknown_split(dataset_dict):
    with pytest.raises(DataError) as info:
        read_records(f"{dataset_dict}:dev")
    assert str(info.value) == (
        f"{dataset_dict}:dev: no split 'dev' in this DatasetDict; its splits: train, test (pick one as folder:split)"
    )


def test_split_on_single_dataset(tmp_path):
    folder = tmp_path / "ds"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(folder))
    with pytest.raises(DataError) as info:
        read_records(f"{folder}:test")
    assert str(info.value) == f"{folder}:test: '{folder}' holds a single Dataset with no splits; drop ':test'"


def test_plain_folder_is_not_a_dataset(tmp_path):
    with pytest.raises(DataError) as info:
        read_records(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: a folder, but not one saved by datasets' save_to_disk; supported: {SUPPORTED_FORMATS}"
    )


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DataError) as info:
        read_records(path)
    assert str(info.value) == f"{path}: no such file or folder"


def test_unknown_suffix_lists_supported_formats(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("hello")
    with pytest.raises(DataError) as info:
        read_records(path)
    assert str(info.value) == (
        f"{path}: unsupported data format '.txt'; supported: .jsonl, .json, .parquet, .csv, "
        "or a folder saved by datasets' save_to_disk (folder[:split])"
    )
