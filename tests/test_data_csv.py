"""CSVDataset: features, labels and class names from small tables written here; the header rule;
and every error naming the file, the line and the column."""
import numpy as np
import pytest

from foveanet.data import CSVDataset, DataLoader, DatasetError


def _csv(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_header_names_features_and_string_classes(tmp_path):
    p = _csv(tmp_path, "x,y,colour\n0.5,1.25,red\n-2,0.75,blue\n3e-1,4,red\n")
    ds = CSVDataset(p)
    assert ds.header and ds.feature_names == ["column 1 (x)", "column 2 (y)"]
    assert ds.label_name == "column 3 (colour)"
    np.testing.assert_array_equal(ds.x, np.array([[0.5, 1.25], [-2, 0.75], [0.3, 4]], np.float32))
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.classes == ["blue", "red"] and ds.y.tolist() == [1, 0, 1] and ds.num_classes == 2
    np.testing.assert_array_equal(ds.targets, ds.y)
    xb, yb = next(iter(DataLoader(ds, batch_size=3)))  # in memory: the fast path
    assert DataLoader(ds).fast_path and xb.shape == (3, 2) and yb.numpy().tolist() == [1, 0, 1]


def test_integer_labels_as_they_are_and_negative_ones_as_names(tmp_path):
    ds = CSVDataset(_csv(tmp_path, "1,2,0\n3,4,2\n5,6,2.0\n"))  # no header: all numbers
    assert not ds.header and ds.y.tolist() == [0, 2, 2] and ds.classes == ["0", "1", "2"]
    assert ds.feature_names == ["column 1", "column 2"]
    pg = CSVDataset(_csv(tmp_path, "x,y,label\n1,1,+1\n-1,2,-1\n0,0,1\n", "pg.csv"))
    assert pg.classes == ["-1", "1"] and pg.y.tolist() == [1, 0, 1]  # Playground's -1/+1 -> 0/1
    first = CSVDataset(_csv(tmp_path, "7,0.5,0.25\n3,1.5,2.5\n", "first.csv"), label_column=0)
    assert first.y.tolist() == [7, 3] and len(first.classes) == 8
    np.testing.assert_array_equal(first.x, [[0.5, 0.25], [1.5, 2.5]])


def test_regression_columns_by_name_and_dialect(tmp_path):
    p = _csv(tmp_path, "\ufeffid;\"a b\";target;c\n1;0.5;1.5;9\n\n2;\"2.5\";-0.25;8\n")  # BOM, quotes
    ds = CSVDataset(p, label_column="target", feature_columns=["c", "a b"], task="regression",
                    delimiter=";")
    assert ds.y.dtype == np.float32 and ds.y.tolist() == [1.5, -0.25] and ds.classes is None
    np.testing.assert_array_equal(ds.x, [[9, 0.5], [8, 2.5]])
    assert ds.feature_names == ["column 4 (c)", "column 2 (a b)"] and ds.num_classes == 0
    feats = CSVDataset(_csv(tmp_path, "1,2\n3,4\n", "f.csv"), label_column=None)
    assert feats.y is None and feats.x.shape == (2, 2) and len(feats.arrays) == 1
    numeric_header = CSVDataset(_csv(tmp_path, "0,1,2\n5,6,1\n", "h.csv"), header=True)
    assert len(numeric_header) == 1 and numeric_header.feature_names[0] == "column 1 (0)"


@pytest.mark.parametrize("text,kwargs,message", [
    ("a,b,c\n1,2,0\n3,x,1\n", {}, r"t\.csv, line 3, column 2 \(b\): 'x' is not a number"),
    ("a,b,c\n1,,0\n", {}, r"t\.csv, line 2, column 2 \(b\): an empty value is not a number"),
    ("1,2,0\n\n3,nan,1\n", {}, r"t\.csv, line 3, column 2: 'nan' is not a finite number"),
    ("a,b,c\n1,2,0\n3,4\n", {}, r"t\.csv, line 3: 2 fields, expected 3 \(as on line 1\)"),
    ("", {}, r"t\.csv: empty file \(no rows\)"),
    ("\n \n", {}, r"t\.csv: empty file"),
    ("a,b,c\n", {}, r"t\.csv: no data rows \(only the header, line 1\)"),
    ("a,b,c\n1,2,0\n", {"label_column": "d"},
     r"t\.csv: no column named 'd' \(label_column\); the columns are: a, b, c"),
    ("a,b,c\n1,2,0\n", {"feature_columns": ["a", "z"]}, r"no column named 'z' \(feature_columns\)"),
    ("1,2,0\n", {"label_column": "c", "header": False}, r"label_column 'c' is a name, but the file "
                                                        r"has no header row"),
    ("1,2,0\n", {"label_column": 3}, r"label_column 3 is not a column: the table has 3 columns"),
    ("a,b,c\n1,2,0.5\n", {}, r"line 2, column 3 \(c\): class label '0.5' is not an integer \(a "
                             r"regression target\? pass task='regression'\)"),
    ("a,b,c\n1,2,\n", {}, r"line 2, column 3 \(c\): empty label"),
    ("a,b,c\n1,2,x\n", {"task": "regression"}, r"line 2, column 3 \(c\): 'x' is not a number"),
    ("a\n1\n", {}, r"t\.csv: no feature columns \(the table has 1 column\)"),
    ("a,b\n1,2\n3," + "9" * 200_000 + "\n", {}, r"t\.csv, line 3: not valid CSV \(field larger "
                                                r"than field limit"),
])
def test_errors_name_the_file_line_and_column(tmp_path, text, kwargs, message):
    p = _csv(tmp_path, text)
    with pytest.raises(DatasetError, match=message):
        CSVDataset(p, **kwargs)


def test_bad_arguments_and_unreadable_files(tmp_path):
    p = _csv(tmp_path, "1,2,0\n")
    with pytest.raises(ValueError, match="task must be 'classification' or 'regression'"):
        CSVDataset(p, task="ranking")
    with pytest.raises(ValueError, match="header must be True, False or 'auto'"):
        CSVDataset(p, header="yes")
    with pytest.raises(ValueError, match="delimiter must be one character, got ''"):
        CSVDataset(p, delimiter="")
    with pytest.raises(ValueError, match="column 1 is both the label and a feature"):
        CSVDataset(p, label_column=0, feature_columns=[0, 1])
    with pytest.raises(DatasetError, match=r"missing\.csv: cannot read"):
        CSVDataset(tmp_path / "missing.csv")
    (tmp_path / "latin.csv").write_bytes(b"a,b\n\xe9,1\n")
    with pytest.raises(DatasetError, match=r"latin\.csv: not UTF-8 text"):
        CSVDataset(tmp_path / "latin.csv")
