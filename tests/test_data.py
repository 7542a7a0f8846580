"""Readers, record building and the all-problems-at-once errors for bad input."""

import json
from collections import Counter

import pytest

from conftest import sentiment_rows, write_csv, write_jsonl
from transferlm.config import build_config
from transferlm.data import read_table, stratified_split
from transferlm.data.records import read_records
from transferlm.errors import DataError
from transferlm.runs.prepare import load_splits
from transferlm.tasks import build_task


def config_for(tmp_path, train, validation=None, test=None, **data):
    section = {"train": str(train), **data}
    if validation:
        section["validation"] = str(validation)
    if test:
        section["test"] = str(test)
    return build_config({"data": section, "output": str(tmp_path / "out")})


def load(config):
    return load_splits(config, build_task(config.task, config.data))


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet"])
def test_every_format_reads_the_same_rows(tmp_path, suffix):
    rows = [{"text": 'said "hi", then left', "label": "pos"}, {"text": "dull", "label": "neg"}]
    path = tmp_path / f"data.{suffix}"
    if suffix == "csv":
        write_csv(path, rows)
    elif suffix == "tsv":  # GLUE-style: unquoted, so the literal quotes must survive
        path.write_text("text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in rows))
    elif suffix == "jsonl":
        write_jsonl(path, rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    table = read_table(path)
    assert table.columns == ["text", "label"]
    assert [r["text"] for r in table.rows] == [r["text"] for r in rows]


def test_missing_column_lists_the_existing_ones(tmp_path):
    train = write_csv(tmp_path / "t.csv", [{"review": "good", "stars": "pos"}])
    with pytest.raises(DataError) as info:
        load(config_for(tmp_path, train))
    text = str(info.value)
    assert "column 'text' (data.text_column) not found; columns are 'review', 'stars'; pass --text-column" in text
    assert "column 'label'" in text and "--label-column" in text


def test_empty_texts_are_counted_and_can_be_dropped(tmp_path):
    rows = sentiment_rows(10, seed=0)
    rows[2]["text"] = ""
    rows[7]["text"] = "   "
    train = write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(DataError, match=r"2 row\(s\) have an empty or missing text \(lines 4, 9\).*--drop-empty"):
        load(config_for(tmp_path, train))
    splits = load(config_for(tmp_path, train, drop_empty=True, validation_split=0.2))
    assert len(splits.train) + len(splits.validation) == 8


def test_null_text_in_jsonl_is_reported(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": None, "label": "a"}, {"text": "x", "label": "b"}])
    with pytest.raises(DataError, match=r"1 row\(s\) have an empty or missing text \(lines 1\)"):
        load(config_for(tmp_path, train))


def test_unseen_validation_label_names_file_line_and_fix(tmp_path):
    train = write_csv(tmp_path / "t.csv", sentiment_rows(10, seed=0))
    dev = write_csv(tmp_path / "d.csv", [{"text": "good", "label": "pos"}, {"text": "meh", "label": "neutral"}])
    with pytest.raises(DataError) as info:
        load(config_for(tmp_path, train, validation=dev))
    assert info.value.problems == [
        f"{dev}: 1 row(s) have label 'neutral', which never occurs in training (lines 3); known labels are neg, pos; "
        "add training examples for it or remove those rows"
    ]


def test_single_class_is_rejected(tmp_path):
    train = write_csv(tmp_path / "t.csv", [{"text": f"good {i}", "label": "pos"} for i in range(6)])
    with pytest.raises(DataError, match="only one class \\(pos\\)"):
        load(config_for(tmp_path, train))


def test_non_utf8_file_names_the_line_and_the_fix(tmp_path):
    train = tmp_path / "t.csv"
    train.write_bytes("text,label\ngood,pos\ncaf\xe9 ok,neg\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"t.csv line 3: not valid UTF-8 \(byte 0xe9.*iconv"):
        load(config_for(tmp_path, train))


def test_malformed_json_lines_are_all_listed(tmp_path):
    train = tmp_path / "t.jsonl"
    train.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", label: neg}\n[1, 2]\n{"text": \n')
    with pytest.raises(DataError) as info:
        load(config_for(tmp_path, train))
    assert [p.split(";")[0] for p in info.value.problems] == [
        f"{train}: 2 row(s) are not valid JSON (lines 2, 4)",
        f"{train}: 1 row(s) are JSON but not objects (lines 3)",
    ]


def test_problems_in_several_files_are_reported_together(tmp_path):
    train = write_csv(tmp_path / "t.csv", [{"text": "", "label": "pos"}] + sentiment_rows(6, seed=0))
    dev = write_csv(tmp_path / "d.csv", [{"sentence": "x", "label": "pos"}])
    with pytest.raises(DataError) as info:
        load(config_for(tmp_path, train, validation=dev))
    assert len(info.value.problems) == 2
    assert "t.csv" in info.value.problems[0] and "d.csv" in info.value.problems[1]


def test_integer_labels_keep_numeric_order_and_type(tmp_path):
    rows = [{"text": f"w{i}", "label": i % 3 * 5} for i in range(12)]
    train = write_jsonl(tmp_path / "t.jsonl", rows)
    config = config_for(tmp_path, train, validation_split=0.25)
    task = build_task(config.task, config.data)
    load_splits(config, task)
    assert task.label_map.labels == ("0", "5", "10") and task.label_map.numeric


def test_multilabel_from_lists_and_from_a_delimiter(tmp_path):
    rows = [{"text": "a", "label": ["sport", "money"]}, {"text": "b", "label": ["sport"]}]
    train = write_jsonl(tmp_path / "t.jsonl", rows * 5)
    single = config_for(tmp_path, train)
    with pytest.raises(DataError, match="have several labels.*task.multi_label: true"):
        load(single)
    multi = build_config({"data": {"train": str(train)}, "task": {"multi_label": True}, "output": "o"})
    task = build_task(multi.task, multi.data)
    load_splits(multi, task)
    assert task.label_map.labels == ("money", "sport")
    delimited = write_csv(
        tmp_path / "t.csv", [{"text": "a", "label": "sport|money"}, {"text": "b", "label": "money"}] * 5
    )
    cfg = build_config(
        {"data": {"train": str(delimited)}, "task": {"multi_label": True, "label_delimiter": "|"}, "output": "o"}
    )
    task = build_task(cfg.task, cfg.data)
    splits = load_splits(cfg, task)
    assert {task.labels_of(r) for r in splits.train + splits.validation} == {("money", "sport"), ("money",)}


def test_stratified_split_is_seeded_and_keeps_class_shares(tmp_path):
    records, _ = read_records(
        write_csv(tmp_path / "t.csv", sentiment_rows(40, 0) + sentiment_rows(20, 1)[:10]),
        build_config({"data": {"train": "x"}, "output": "o"}).data,
    )
    key = lambda r: r.label  # noqa: E731
    train, held = stratified_split(records, key, 0.2, seed=3)
    again_train, again_held = stratified_split(records, key, 0.2, seed=3)
    assert held == again_held and len(train) + len(held) == len(records)
    assert Counter(r.label for r in held) == {"pos": 6, "neg": 4}


def test_unknown_extension_asks_for_a_format(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match=r"cannot tell the format.*set data.format"):
        read_table(path)


def test_ragged_csv_rows_are_located(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\ngood,pos\nbad,neg,extra\n")
    with pytest.raises(DataError, match=r"1 row\(s\) with a field count different from the header's 2 \(lines 3\)"):
        read_table(path)


def test_jsonl_reader_keeps_line_numbers_across_blank_lines(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "a", "label": 1}) + "\n\n" + json.dumps({"text": "b", "label": 2}) + "\n")
    assert read_table(path).lines == [1, 3]


def test_headerless_csv_with_columns_by_position_and_joined_text(tmp_path):
    """AG News style: no header, the class index first, then a title and a description to join."""
    path = tmp_path / "news.csv"
    path.write_text('"3","Wall St. Bears Claw Back","Short-sellers are seeing green again."\n'
                    '"4","New chip",""\n\n"1","Talks end","Leaders met on Monday."\n', encoding="utf-8")
    config = config_for(tmp_path, path, header=False, text_column=[1, 2], label_column=0)
    records, problems = read_records(path, config.data)
    assert problems == []
    assert [(r.text, r.label, r.line) for r in records] == [
        ("Wall St. Bears Claw Back Short-sellers are seeing green again.", "3", 1),
        ("New chip", "4", 2),  # an empty description: the title alone
        ("Talks end Leaders met on Monday.", "1", 4),
    ]


def test_headerless_problems_name_positions_and_formats(tmp_path):
    path = tmp_path / "news.csv"
    path.write_text('"3","title","text"\n"4","only two"\n', encoding="utf-8")
    config = config_for(tmp_path, path, header=False, text_column=[1, 5], label_column=0)
    _, problems = read_records(path, config.data)
    assert any("(lines 2)" in p and "the first row's 3" in p for p in problems), problems
    path.write_text('"3","title","text"\n', encoding="utf-8")
    _, problems = read_records(path, config.data)
    assert any("column '5' (data.text_column) not found; columns are '0', '1', '2' (data.header is false: "
               "columns are named by position from 0)" in p for p in problems), problems
    # "--text-column 1,2" names one column "1,2": the problem says how to give the list it meant
    _, problems = read_records(path, config_for(tmp_path, path, header=False, text_column="1,2", label_column=0).data)
    assert problems == [f"{path}: column '1,2' (data.text_column) not found; columns are '0', '1', '2' (data.header "
                        "is false: columns are named by position from 0); to join several columns give a list: "
                        "--text-column '[1, 2]' (YAML: text_column: [1, 2])"], problems
    jsonl = write_jsonl(tmp_path / "rows.jsonl", [{"text": "a", "label": "b"}])
    _, problems = read_records(jsonl, config_for(tmp_path, jsonl, header=False).data)
    assert any("data.header: false applies to csv and tsv files only" in p for p in problems), problems
    with pytest.raises(Exception, match="an empty list names no column"):
        config_for(tmp_path, path, text_column=[])


# --- csv/tsv reader settings: data.quoting and data.extra_columns (the STS Benchmark's traps) ---

STS_LIKE = (  # headerless, tab-separated: genre, file, year, id, score, sentence1, sentence2 [, 2 attributions]
    'main-news\theadlines\t2016\t0001\t3.8\t"Then the captain was gone.\tThe captain left.\n'
    "main-captions\tMSRvid\t2012test\t0002\t0\tA man plays.\tA cat sleeps.\tEMM (http://emm)\tEMM (http://emm)\n"
    'main-forum\tdeft-forum\t2014\t0003\t2.75\tHe said "no.\tNo" was said.\n'
)
STS_SETTINGS = {"format": "tsv", "header": False, "quoting": False, "extra_columns": "ignore", "text_column": 5,
                "text_pair_column": 6, "label_column": 4}


def test_an_unbalanced_quote_merges_csv_rows_unless_quoting_is_off(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('text,label\n"Then the captain was gone.,pos\nfine,neg\nok "yes",pos\nlast,neg\n')
    merged = read_table(path)  # the quote opened on line 2 closes on line 4: three lines become one row, silently
    assert [r["label"] for r in merged.rows] == ["pos", "neg"]
    table = read_table(path, quoting=False)
    assert [r["text"] for r in table.rows] == ['"Then the captain was gone.', "fine", 'ok "yes"', "last"]
    assert table.lines == [2, 3, 4, 5]


def test_extra_trailing_cells_are_an_error_unless_ignored(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("text\tlabel\ngood\tpos\nbad\tneg\tnote\tmore\nmeh\n")
    with pytest.raises(DataError) as info:
        read_table(path)
    assert "2 row(s) with a field count different from the header's 2 (lines 3, 4)" in str(info.value)
    assert "data.extra_columns: ignore" in str(info.value)
    path.write_text("text\tlabel\ngood\tpos\nbad\tneg\tnote\tmore\n")
    table = read_table(path, extra_columns="ignore")
    assert table.columns == ["text", "label"] and table.rows == [{"text": "good", "label": "pos"},
                                                               {"text": "bad", "label": "neg"}]
    path.write_text("text\tlabel\ngood\tpos\nmeh\n")  # a short row stays an error: nothing to drop
    with pytest.raises(DataError, match=r"lines 3\)"):
        read_table(path, extra_columns="ignore")


def test_sts_style_headerless_tsv_reads_pairs_and_scores(tmp_path):
    from transferlm.config.schema import DataConfig

    path = tmp_path / "sts-mini.csv"  # tab-separated despite the extension, like the real files
    path.write_text(STS_LIKE, encoding="utf-8")
    records, problems = read_records(path, DataConfig(**STS_SETTINGS))
    assert problems == []
    assert [(r.text, r.text_pair, r.label, r.line) for r in records] == [
        ('"Then the captain was gone.', "The captain left.", "3.8", 1),
        ("A man plays.", "A cat sleeps.", "0", 2),
        ('He said "no.', 'No" was said.', "2.75", 3),
    ]
    _, problems = read_records(path, DataConfig(**{**STS_SETTINGS, "extra_columns": "error"}))
    assert any("(lines 2)" in p and "data.extra_columns: ignore" in p for p in problems), problems


def test_the_real_sts_benchmark_reads_every_row(shared_data):
    from transferlm.config.schema import DataConfig

    root = shared_data / "stsb"
    if not (root / "sts-train.csv").is_file():
        pytest.skip(f"STS Benchmark files not found in {root} (see shared/data/stsb/README.md)")
    data = DataConfig(**STS_SETTINGS)
    for name, rows in (("train", 5749), ("dev", 1500), ("test", 1379)):
        records, problems = read_records(root / f"sts-{name}.csv", data)
        assert problems == [] and len(records) == rows, (name, problems[:2])
        scores = [float(r.label) for r in records]
        assert min(scores) == 0.0 and max(scores) == 5.0, name
