import json

import pytest

from training.manifest import ManifestError, Record, parse_lines, read_manifest, select

GOOD = {"id": "tt0086425", "path": "/abs/a.jpg", "genres": ["Comedy", "Drama"], "single_genre": "Comedy", "split": "train"}


def line(**change):
    rec = {**GOOD, **change}
    return json.dumps({k: v for k, v in rec.items() if v is not ...})


def test_reads_the_server_format(small_manifest):
    records = read_manifest(small_manifest, check_files=True)
    assert len(records) == 48
    assert {r.split for r in records} == {"train", "val", "test"}
    r = records[0]
    assert isinstance(r, Record) and r.path.startswith("/") and r.single_genre in r.genres


def test_blank_lines_and_extra_keys_allowed():
    recs = parse_lines(["", line(), "   ", json.dumps({**GOOD, "id": "tt2", "title": "x"})])
    assert [r.id for r in recs] == ["tt0086425", "tt2"]
    assert recs[0].genres == ("Comedy", "Drama")


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (line(path=...), "missing key 'path'"),
        (line(id=""), "'id' must be a non-empty string"),
        (line(path="relative/a.jpg"), "must be absolute"),
        (line(genres="Comedy"), "'genres' must be a list"),
        (line(genres=["Comedy", 3]), "'genres' must be a list"),
        (line(single_genre="Horror"), "not one of 'genres'"),
        (line(split="training"), "'split' must be one of"),
    ],
)
def test_bad_line_reported_with_line_number(bad, message):
    lines = [line(id="tt1"), "", bad, line(id="tt9")]
    with pytest.raises(ManifestError, match=message) as err:
        parse_lines(lines, "m.jsonl")
    assert err.value.line == 3
    assert str(err.value).startswith("m.jsonl:3: ")


def test_duplicate_id_reports_both_lines():
    with pytest.raises(ManifestError, match=r"m.jsonl:3: duplicate id 'tt1' \(first on line 1\)"):
        parse_lines([line(id="tt1"), line(id="tt2"), line(id="tt1")], "m.jsonl")


def test_file_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ManifestError, match="no records"):
        read_manifest(empty)
    missing = tmp_path / "m.jsonl"
    missing.write_text(line(path=str(tmp_path / "nope.jpg")) + "\n")
    assert len(read_manifest(missing)) == 1
    with pytest.raises(ManifestError, match="missing, first: .*nope.jpg"):
        read_manifest(missing, check_files=True)
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ManifestError, match="UTF-8"):
        read_manifest(binary)


def test_select_is_seeded_and_split_only():
    recs = parse_lines([line(id=f"tt{i}", split="train" if i % 3 else "val") for i in range(30)])
    a, b, c = select(recs, "train", 5, 0), select(recs, "train", 5, 0), select(recs, "train", 5, 1)
    assert a == b and a != c and len(a) == 5
    assert all(r.split == "train" for r in a)
    assert len(select(recs, "val", 100, 0)) == 10
    assert select(list(reversed(recs)), "train", 5, 0) == a  # independent of manifest order


def test_rendered_input_is_used_only_at_its_own_size(tmp_path):
    from training.manifest import image_source, parse_lines

    line = (
        '{"id":"a","path":"/x/a.jpg","genres":["Drama"],"single_genre":"Drama","split":"train",'
        '"input":{"path":"/x/a-64x96.png","width":64,"height":96}}'
    )
    (record,) = parse_lines([line])
    assert image_source(record, 64, 96) == "/x/a-64x96.png"
    assert image_source(record, 160, 240) == "/x/a.jpg"


def test_rendered_input_must_be_well_formed():
    import pytest

    from training.manifest import ManifestError, parse_lines

    bad = '{"id":"a","path":"/x/a.jpg","genres":["Drama"],"single_genre":"Drama","split":"train","input":{"path":"rel.png","width":64}}'
    with pytest.raises(ManifestError, match="'input' must be"):
        parse_lines([bad])
